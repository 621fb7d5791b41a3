"""Registering an LR scan onto its HR scan, as the reference study did (affine, ANTsPy).

``register(hr, lr, hr_um, lr_um)`` estimates an affine transform taking the LR scan onto the HR
scan (ANTs, mutual information, multi-resolution), started from the translation that a masked
normalised cross-correlation finds, so that scans of different extents along the bone register
(a v1 specimen's HR slices 0-79 against its whole LR stack: NCC 0.95; 0.77 from ANTs' own start
at the centres of mass). The LR scan is then resampled onto the exact ``scale``-times coarser
grid of the HR scan: voxel ``scale * hr_um``, LR voxel (i, j, k) covering HR voxels
``scale*i ... scale*i + scale - 1`` along each axis (its centre half an LR voxel inside the HR
grid's corner, minus half an HR voxel). The quality figure is the normalised
cross-correlation between the registered LR and the HR scan block-averaged to that grid, over the
grid voxels inside the LR scan's field of view (their share is ``coverage``); below
:data:`POOR_NCC` the registration is flagged as poor.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Registration", "register", "block_mean", "ncc", "POOR_NCC", "RegistrationWarning"]

POOR_NCC = 0.8
#: the coarsest level of the registration pyramid keeps at least this many voxels per axis
MIN_LEVEL_VOXELS = 16


class RegistrationWarning(UserWarning):
    """The registered LR scan agrees poorly with the HR scan."""


@dataclass
class Registration:
    lr_on_grid: np.ndarray  # (z, y, x) LR scan on the exact x``scale`` grid of the HR scan
    ncc: float  # normalised cross-correlation with the block-averaged HR scan, in the LR's view
    matrix: list[list[float]]  # the affine (ANTs parameters, physical µm space), for the record
    poor: bool
    inside: np.ndarray | None = None  # bool, on the grid: inside the LR scan's field of view

    @property
    def coverage(self) -> float:
        """Fraction of the x``scale`` grid inside the LR scan's field of view."""
        return 1.0 if self.inside is None else float(self.inside.mean())


def block_mean(volume: np.ndarray, scale: int) -> np.ndarray:
    """Mean over ``scale``^3 blocks (the HR scan seen on the LR grid); trailing voxels dropped."""
    z, y, x = (n // scale for n in volume.shape)
    v = np.asarray(volume[:z * scale, :y * scale, :x * scale], dtype=np.float64)
    return v.reshape(z, scale, y, scale, x, scale).mean(axis=(1, 3, 5))


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation (Pearson) of two arrays of one shape."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def coarse_shift(hr_blocks: np.ndarray, lr: np.ndarray, zoom: float = 1.0, *,
                 max_voxels: int = 2_000_000) -> np.ndarray:
    """The translation (LR-grid voxels, z y x) that best aligns ``lr`` (resampled by ``zoom``
    onto the grid of ``hr_blocks``) with ``hr_blocks``: masked normalised cross-correlation
    (Padfield 2012, scikit-image) over every overlap of at least a third, on copies reduced by
    block averaging until the padded volume holds at most ``max_voxels``; ``lr`` shifted by it
    overlays ``hr_blocks`` to within the reduction factor."""
    from scipy import ndimage as ndi
    from skimage.registration import phase_cross_correlation

    b = ndi.zoom(lr, zoom, order=1) if abs(zoom - 1) > 0.01 else np.asarray(lr, np.float32)
    a = np.asarray(hr_blocks, np.float32)
    f = 1
    while np.prod([(m + n) // f for m, n in zip(a.shape, b.shape, strict=True)]) > max_voxels:
        f += 1
    if f > 1:
        a, b = block_mean(a, f), block_mean(b, f)
    shape = tuple(m + n for m, n in zip(a.shape, b.shape, strict=True))
    padded, masks = [], []
    for v in (a, b):
        p, m = np.zeros(shape, np.float32), np.zeros(shape, bool)
        p[tuple(slice(0, n) for n in v.shape)] = v
        m[tuple(slice(0, n) for n in v.shape)] = True
        padded.append(p)
        masks.append(m)
    s = phase_cross_correlation(padded[0], padded[1], reference_mask=masks[0],
                                moving_mask=masks[1], overlap_ratio=1 / 3)
    s = np.asarray(s[0] if isinstance(s, tuple) else s, dtype=float)
    size = np.asarray(shape)
    return np.where(s > size / 2, s - size, s) * f


def register(hr: np.ndarray, lr: np.ndarray, hr_um: float, lr_um: float, *, scale: int = 2,
             seed: int = 0, fill: float = 0.0) -> Registration:
    """Affine registration of ``lr`` onto ``hr`` and resampling onto the x``scale`` grid;
    ``fill``: the value given to grid voxels outside the LR scan's field of view (their fraction
    is reported as ``1 - coverage``)."""
    import ants

    hr = np.asarray(hr, dtype=np.float32)
    lr = np.asarray(lr, dtype=np.float32)
    # numpy (z, y, x) arrays go to ANTs as they are: axis k has spacing hr_um / lr_um, origin 0
    fixed = ants.from_numpy(hr, spacing=(hr_um,) * 3)
    moving = ants.from_numpy(lr, spacing=(lr_um,) * 3)
    # ANTs' default pyramid (shrink 6, 4, 2, 1), less the levels that leave fewer than
    # MIN_LEVEL_VOXELS HR voxels along the shortest axis (thin stacks register badly there)
    levels = [(f, s, n) for f, s, n in ((6, 3, 2100), (4, 2, 1200), (2, 1, 1200), (1, 0, 10))
              if f == 1 or min(hr.shape) / f >= MIN_LEVEL_VOXELS]
    if len(levels) == 1:
        levels = [(1, 0, 1200)]
    shrink, sigmas, iterations = (tuple(x) for x in zip(*levels, strict=True))
    grid = tuple(n // scale for n in hr.shape)
    half = 0.5 * (scale - 1) * hr_um  # centre of LR voxel 0 in HR physical space
    target = ants.from_numpy(np.zeros(grid, dtype=np.float32), origin=(half,) * 3,
                             spacing=(scale * hr_um,) * 3)
    hr_blocks = block_mean(hr, scale)

    def attempt(initial, prefix: str):
        reg = ants.registration(fixed, moving, type_of_transform="Affine", aff_metric="mattes",
                                aff_sampling=32, aff_shrink_factors=shrink,
                                aff_smoothing_sigmas=sigmas, aff_iterations=iterations,
                                initial_transform=initial, random_seed=seed, verbose=False,
                                outprefix=prefix)
        out = ants.apply_transforms(target, moving, reg["fwdtransforms"], interpolator="linear",
                                    defaultvalue=fill)
        inside = ants.apply_transforms(
            target, moving.new_image_like(np.ones(lr.shape, np.float32)), reg["fwdtransforms"],
            interpolator="linear", defaultvalue=0).numpy() > 0.5
        lr_grid = out.numpy().astype(np.float32)
        q = ncc(lr_grid[inside], hr_blocks[inside]) if inside.any() else 0.0
        return q, lr_grid, inside, ants.read_transform(reg["fwdtransforms"][0])

    # start from the translation that the masked cross-correlation finds (scans of different
    # extents, e.g. an HR stack inside a longer LR one); ANTs' own start (centres of mass) is
    # tried too when that ends poorly
    with tempfile.TemporaryDirectory(prefix="bonesr-register-") as tmp:  # ANTs' files too
        path = str(Path(tmp) / "initial.mat")
        shift = coarse_shift(hr_blocks, lr, lr_um / (scale * hr_um))
        # centred on the HR scan, as ANTs' own start is: about the corner, the optimiser
        # converges twice as slowly (measured)
        ants.write_transform(ants.create_ants_transform(
            transform_type="AffineTransform", dimension=3,
            translation=tuple(float(-d * scale * hr_um - half) for d in shift),
            center=tuple(float((n - 1) * hr_um / 2) for n in hr.shape)), path)
        q, lr_grid, inside, tx = attempt([path], str(Path(tmp) / "start_"))
        if q < POOR_NCC:
            other = attempt(None, str(Path(tmp) / "centres_"))
            if other[0] > q:
                q, lr_grid, inside, tx = other
        matrix = np.asarray(tx.parameters, dtype=float).reshape(4, 3).tolist()
    poor = q < POOR_NCC
    if poor:
        warnings.warn(f"LR-to-HR registration is poor (NCC {q:.2f} < {POOR_NCC}); check that "
                      "the two scans show the same region", RegistrationWarning, stacklevel=2)
    return Registration(lr_grid, q, matrix, poor, inside)
