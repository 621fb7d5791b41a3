"""Structure model index (Hildebrand & Rüegsegger 1997, surface-based).

SMI = 6 · BV · (dBS/dr) / BS², where BS is the area of the bone surface, dBS/dr its rate of
change when every surface point moves outward along its normal and BV the volume the surface
encloses (as BoneJ, which takes BV from its mesh). Ideal plates give 0, rods 3 and spheres 4;
concave surfaces (marrow cavities in dense bone) make it negative.

The surface is the 0.5 iso-surface of the bone smoothed by a Gaussian of :data:`SIGMA_VOX`
voxels, measured cube by cube by :func:`_surface.surface_sums` (marching tetrahedra; no mesh is
built). It is taken where the structure meets marrow: no artificial faces where the image border
or the VOI cut a trabecula (the BoneJ convention that cut structures continue), and each grid
cube's volume, area and rate count for the VOI voxels among its eight corners (1/8 each).

Why the volume enclosed and not the voxel count: smoothing moves a convex surface inward by about
sigma² times its mean curvature, so a thin rod's surface encloses less than its voxels; with the
voxel count a rod of 3 voxels read SMI 4.05 (v4 of the conventions; a rod of 64 voxels 3.04 in
24 slices, 3.11 in 16, 2.96 in 64), the thin trabeculae of a coarse scan reading as spheres.
With the enclosed volume the shrink cancels
(a sphere's SMI does not depend on its radius), and the staircase's ripples, the other bias, are
removed by measuring each facet as seen along the smoothed normal (``_surface._triangle``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from bonesr_bench.morphometry import _surface

__all__ = ["SIGMA_VOX", "structure_model_index"]

#: Gaussian smoothing (voxels) of the binary bone before the iso-surface; recorded in every
#: result. The smallest that meets BoneJ's own tolerances on its large test shapes (a sphere 4 +-
#: 0.01: radius 64 reads 3.995; a rod of diameter 64 3 +- 0.03: 2.979). Smoothing lowers thin
#: structures below the level: a 2 x 2-voxel rod from sigma 0.85 on, a 2-voxel plate from 1.45
#: and a 3 x 3 rod from 1.5 on (a 1-voxel plate at any sigma of 0.8 or more).
SIGMA_VOX = 1.1
#: the iso-level of the smoothed binary volume that is the bone surface
LEVEL = 0.5


def structure_model_index(
    bone: np.ndarray, mask: np.ndarray | None = None, *, sigma_vox: float = SIGMA_VOX
) -> float:
    """SMI of the bone inside ``mask`` (the whole image by default). NaN without bone surface.

    Parameters
    ----------
    bone : (z, y, x) bool array
    mask : optional (z, y, x) bool volume of interest.
    sigma_vox : Gaussian smoothing (voxels) of the binary volume before the 0.5 iso-surface.
        Rods thinner than about 2 sigma and plates thinner than about 1.4 sigma fall below the
        level and are not measured.

    Notes
    -----
    BV, BS and dBS/dr are those of the piecewise-linear interpolant of the smoothed volume on
    Freudenthal's tetrahedra, the surface normals from its gradient, over the grid cubes inside
    the image (a VOI voxel on the image border owns only those of its cubes, for BV and BS
    alike). On smooth analytic shapes the estimate is exact to 0.2 %
    (``tests/test_anisotropy_smi.py``). Freudenthal's diagonals all run along (1, 1, 1), so a
    mirrored volume can read slightly differently (0.318 against 0.312 on a random structure).

    References
    ----------
    Hildebrand T, Rüegsegger P (1997) Quantification of bone microarchitecture with the structure
    model index. Comput Methods Biomech Biomed Engin 1:15-23.
    """
    b = np.asarray(bone, dtype=bool)
    m = np.ones_like(b) if mask is None else np.asarray(mask, dtype=bool)
    bone_in = int((b & m).sum())
    if bone_in == 0 or bone_in == int(m.sum()):
        return float("nan")
    zs, ys, xs = (np.flatnonzero(np.any(m, axis=ax)) for ax in ((1, 2), (0, 2), (0, 1)))
    # the Gaussian's reach (scipy's radius, 4 sigma) plus a cube and its gradients: the VOI's
    # sums are those of the whole image smoothed
    pad = int(4.0 * sigma_vox + 0.5) + 2
    box = tuple(slice(max(a[0] - pad, 0), min(a[-1] + pad + 1, n))
                for a, n in zip((zs, ys, xs), b.shape, strict=True))
    sub = b[box].astype(np.float32)
    if sigma_vox > 0:
        sub = ndi.gaussian_filter(sub, sigma_vox, mode="nearest")
    # the cubes measured are those inside the image; a one-voxel halo, the field continued
    # linearly (odd reflection), gives their border corners a gradient (one-sided there). A halo
    # of repeated edge values with cubes in it bent oblique structures towards the border's
    # normal (a plate along (1, 1, 1) read -0.14 instead of 0)
    field = np.pad(sub, 1, mode="reflect", reflect_type="odd")
    voi = np.pad(m[box], 1)
    bv, bs, dsdr = (float(np.sum(s)) for s in _surface.surface_sums(field, voi, LEVEL))
    if bs == 0:
        return float("nan")
    return float(6.0 * bv * dsdr / bs**2)
