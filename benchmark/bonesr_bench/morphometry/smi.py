"""Structure model index (Hildebrand & Rüegsegger 1997, surface-based).

SMI = 6 · BV · (dBS/dr) / BS², where BS is the area of a marching-cubes mesh of the bone surface
and dBS/dr its rate of change when every vertex moves outward along its normal. Ideal plates give
0, rods 3 and spheres 4; concave surfaces (marrow cavities in dense bone) make it negative.

Surfaces are taken where the structure meets marrow inside the volume of interest: the mesh is
built on the bone as it is (no artificial faces where the image border or the VOI cut a
trabecula, following the BoneJ convention that cut structures continue), and only the triangles
whose centre lies in the VOI are counted.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import marching_cubes

from bonesr_bench.morphometry._kernels import mesh_area_rate

__all__ = ["SIGMA_VOX", "structure_model_index"]

#: Gaussian smoothing (voxels) before meshing; recorded in every result.
SIGMA_VOX = 0.8


def structure_model_index(
    bone: np.ndarray, mask: np.ndarray | None = None, *, sigma_vox: float = SIGMA_VOX
) -> float:
    """SMI of the bone inside ``mask`` (the whole image by default). NaN without bone surface.

    Parameters
    ----------
    bone : (z, y, x) bool array
    mask : optional (z, y, x) bool volume of interest.
    sigma_vox : Gaussian smoothing (voxels) of the binary volume before marching cubes at 0.5.
        A mesh of the raw binary staircase overestimates the area (SMI of a sphere reads 3.5,
        of a cylinder 2.75); with 0.8 a sphere reads 3.97, a cylinder 3.00, a plate 0.00.

    Notes
    -----
    dBS/dr is the exact derivative of the mesh area when each vertex moves along its unit
    (area-weighted) normal; BV is the voxel count of bone in the VOI.

    References
    ----------
    Hildebrand T, Rüegsegger P (1997) Quantification of bone microarchitecture with the structure
    model index. Comput Methods Biomech Biomed Engin 1:15-23.
    """
    b = np.asarray(bone, dtype=bool)
    m = np.ones_like(b) if mask is None else np.asarray(mask, dtype=bool)
    bv = int((b & m).sum())
    if bv == 0 or bv == int(m.sum()):
        return float("nan")
    zs, ys, xs = (np.flatnonzero(np.any(m, axis=ax)) for ax in ((1, 2), (0, 2), (0, 1)))
    pad = int(np.ceil(3 * sigma_vox)) + 1
    box = tuple(slice(max(a[0] - pad, 0), min(a[-1] + pad + 1, n))
                for a, n in zip((zs, ys, xs), b.shape, strict=True))
    sub, msub = b[box].astype(np.float32), m[box]
    if sigma_vox > 0:
        sub = ndi.gaussian_filter(sub, sigma_vox, mode="nearest")
    if sub.max() <= 0.5 or sub.min() >= 0.5:
        return float("nan")
    verts, faces, _, _ = marching_cubes(sub, 0.5)  # degenerate triangles have zero area
    areas, rates = mesh_area_rate(verts, faces, msub)
    bs, dsdr = float(np.sum(areas)), float(np.sum(rates))  # one thread: the same for any count
    if bs == 0:
        return float("nan")
    return float(6.0 * bv * dsdr / bs**2)
