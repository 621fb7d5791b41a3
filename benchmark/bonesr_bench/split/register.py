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

__all__ = ["Registration", "register", "refine", "resample", "block_mean", "ncc", "POOR_NCC",
           "RegistrationWarning"]

POOR_NCC = 0.8
#: the coarsest level of ANTs' pyramid keeps at least this many HR voxels (half as many grid
#: voxels) along the shortest axis
MIN_LEVEL_VOXELS = 16


class RegistrationWarning(UserWarning):
    """The registered LR scan agrees poorly with the HR scan."""


@dataclass
class Registration:
    lr_on_grid: np.ndarray  # (z, y, x) LR scan on the exact x``scale`` grid of the HR scan
    ncc: float  # normalised cross-correlation with the block-averaged HR scan, in the LR's view
    #: 3 x 4 affine, rounded: LR µm = A x + b for x in HR µm (both with voxel 0 at 0; grid voxel
    #: i at 0.5 (scale - 1) hr_um + i scale hr_um), for the record
    matrix: list[list[float]]
    poor: bool
    inside: np.ndarray | None = None  # bool, on the grid: inside the LR scan's field of view
    iterations: int = 0  # of the Gauss-Newton refinement (REFINE_ITERATIONS: not converged)

    def record(self, method: str) -> dict:
        """What a split stores of it: ``method``, NCC, poor, the affine, the iterations."""
        return {"method": method, "ncc": self.ncc, "poor": self.poor, "matrix": self.matrix,
                "refine_iterations": self.iterations}

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
    # both padded (masked out) to the larger extent along each axis, as the masked correlation
    # wants two images of one shape; its 'full' correlation then covers every overlap. (Padding
    # to the sum of the extents gave the same shifts at 8 times the FFT size: 4.1 s against 0.3.)
    shape = tuple(max(m, n) for m, n in zip(a.shape, b.shape, strict=True))
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
    return s * f


def _levels(grid: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
    """ANTs' pyramid on the x``scale`` grid (shrink 4, 2: the last, full-resolution level is the
    refinement's), less the levels that leave fewer than :data:`MIN_LEVEL_VOXELS` HR voxels
    along the shortest axis (thin stacks register badly there)."""
    levels = [(f, s, n) for f, s, n in ((4, 2, 400), (2, 1, 200))
              if min(grid) / f >= MIN_LEVEL_VOXELS // 2]
    if not levels:
        levels = [(1, 0, 200)]
    return tuple(tuple(x) for x in zip(*levels, strict=True))


#: Gauss-Newton refinement: at most this many iterations, stopping when no parameter moves by
#: more than REFINE_TOL (µm for translations, per µm for the linear part: near float64's noise
#: floor); the refined affine is rounded to REFINE_DIGITS decimals (1e-6 µm, a displacement of
#: at most 0.003 µm across a 2.7 mm field), so that what is left of the start, the CPU or the
#: thread count (about 1e-12) changes a rounded parameter with a chance of about 1e-6
REFINE_ITERATIONS = 60
REFINE_TOL = 1e-12
REFINE_DIGITS = 6
#: the refinement leaves out this many grid voxels at each face of the grid (a fixed set of
#: points, whatever the pose, so that the misfit does not jump as points leave the LR image)
REFINE_MARGIN = 2
#: both images are smoothed by a Gaussian of this many grid voxels before the refinement
SMOOTH_GRID_VOXELS = 1.0


def _points(grid: tuple[int, ...], origin_um: float, spacing_um: float, step: int = 1,
            margin: int = 0) -> np.ndarray:
    """Physical coordinates (µm, (n, 3)) of every ``step``-th grid voxel along each axis,
    leaving out ``margin`` voxels at each face."""
    axes = [origin_um + spacing_um * np.arange(margin, n - margin, step, dtype=np.float64)
            for n in grid]
    return np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)


def _lr_index(affine: np.ndarray, pts: np.ndarray, lr_um: float) -> np.ndarray:
    """Voxel coordinates (n, 3) in the moving (LR) image of ``affine`` (3 x 4, µm) of ``pts``."""
    return (pts @ affine[:, :3].T + affine[:, 3]) / lr_um


def _warp(coeffs: np.ndarray, idx: np.ndarray, order: int) -> np.ndarray:
    """Values of the moving image (spline ``coeffs`` for order 3, the image itself for order 1)
    at voxel coordinates ``idx``; outside it, the nearest border value. Order 3 by
    :func:`split._interp.spline3_nearest` (scipy's values, bit for bit, on every core)."""
    if order == 3:
        from bonesr_bench.split._interp import spline3_nearest

        return spline3_nearest(coeffs, idx)
    from scipy import ndimage as ndi

    return ndi.map_coordinates(coeffs, idx.T, order=order, mode="nearest", prefilter=False)


def resample(lr: np.ndarray, affine, grid: tuple[int, ...], hr_um: float, lr_um: float, *,
             scale: int = 2, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The LR scan on the exact x``scale`` grid of an HR scan given the affine (3 x 4: LR µm =
    A (HR µm) + b, both with voxel 0 at 0), by linear interpolation; (values, inside its field
    of view). What :func:`register` returns once it has found the affine."""
    half = 0.5 * (scale - 1) * hr_um
    idx = _lr_index(np.asarray(affine, np.float64), _points(grid, half, scale * hr_um), lr_um)
    lr = np.asarray(lr, np.float64)
    vals = _warp(lr, idx, 1).reshape(grid).astype(np.float32)
    # inside: within half a voxel of the outer voxel centres, as a linear interpolator with
    # border extension sees the image
    inside = np.all((idx >= -0.5) & (idx <= np.asarray(lr.shape) - 0.5), axis=1).reshape(grid)
    vals[~inside] = fill
    return vals, inside


def refine(fixed: np.ndarray, moving: np.ndarray, affine: np.ndarray, *, origin_um: float,
           spacing_um: float, lr_um: float, step: int = 2) -> tuple[np.ndarray, int]:
    """Refine ``affine`` (3 x 4: moving µm = A fixed µm + b) to the minimum of the least squares
    misfit between ``gain * moving(affine x) + offset`` and ``fixed``, both smoothed by
    :data:`SMOOTH_GRID_VOXELS`, over every ``step``-th voxel of the fixed grid (less
    :data:`REFINE_MARGIN` at its faces), by Gauss-Newton on a cubic-spline interpolant.

    Why by hand: ANTs' multi-threaded optimiser stops at a slightly different point on every run
    and thread count (measured: translations 0.1 µm apart), which would change the stored bytes
    of a split; Gauss-Newton converges to one fixed point whatever the start, so the rounded
    result is the same everywhere. Returns (affine, iterations)."""
    from scipy import ndimage as ndi

    inner = tuple(slice(REFINE_MARGIN, n - REFINE_MARGIN, step) for n in fixed.shape)
    pts = _points(fixed.shape, origin_um, spacing_um, step, REFINE_MARGIN)
    # both images smoothed by a Gaussian of one grid voxel: the least-squares optimum between a
    # sharp HR and a blurrier LR is otherwise pulled off the true pose (measured on a v2
    # specimen: a 0.3 degree tilt)
    sigma_um = SMOOTH_GRID_VOXELS * spacing_um
    target = ndi.gaussian_filter(np.asarray(fixed, np.float64), sigma_um / spacing_um)
    target = target[inner].ravel()
    m = ndi.gaussian_filter(np.asarray(moving, np.float64), sigma_um / lr_um)
    coeffs = ndi.spline_filter(m, order=3, mode="nearest")
    h = 0.01 * lr_um  # central differences of the spline itself: its gradient to ~1e-4
    a = np.asarray(affine, np.float64).copy()
    gain, offset = 1.0, 0.0
    it = 0
    while it < REFINE_ITERATIONS:
        it += 1
        w = _warp(coeffs, _lr_index(a, pts, lr_um), 3)
        g = np.empty((w.size, 3))
        for i in range(3):
            plus, minus = a.copy(), a.copy()
            plus[i, 3] += h
            minus[i, 3] -= h
            g[:, i] = (_warp(coeffs, _lr_index(plus, pts, lr_um), 3)
                       - _warp(coeffs, _lr_index(minus, pts, lr_um), 3)) / (2 * h)
        r = gain * w + offset - target
        # d r / d A_ij = gain g_i x_j, d r / d b_i = gain g_i, d r / d gain = w, d r / d offset = 1
        jac = np.concatenate([gain * (g[:, :, None] * pts[:, None, :]).reshape(-1, 9),
                              gain * g, w[:, None], np.ones((w.size, 1))], axis=1)
        scale = np.sqrt((jac * jac).sum(0)) + 1e-30
        js = jac / scale
        delta = -np.linalg.lstsq(js, r, rcond=None)[0] / scale
        a[:, :3] += delta[:9].reshape(3, 3)
        a[:, 3] += delta[9:12]
        gain += delta[12]
        offset += delta[13]
        if max(np.abs(delta[:9]).max(), np.abs(delta[9:12]).max()) < REFINE_TOL:
            break
    return np.round(a, REFINE_DIGITS), it


def _ants_affine(tx) -> np.ndarray:
    """An ANTs affine transform (fixed physical -> moving physical) as a 3 x 4 matrix."""
    par = np.asarray(tx.parameters, dtype=np.float64)
    mat = par[:9].reshape(3, 3)
    centre = np.asarray(tx.fixed_parameters, dtype=np.float64)
    t = par[9:12]
    return np.concatenate([mat, (t + centre - mat @ centre)[:, None]], axis=1)


def register(hr: np.ndarray, lr: np.ndarray, hr_um: float, lr_um: float, *, scale: int = 2,
             seed: int = 0, fill: float = 0.0) -> Registration:
    """Affine registration of ``lr`` onto ``hr`` and resampling onto the x``scale`` grid;
    ``fill``: the value given to grid voxels outside the LR scan's field of view (their fraction
    is reported as ``1 - coverage``).

    The fixed image is the HR scan block-averaged onto the x``scale`` grid (what the LR scan is
    resampled onto). ANTs (Mattes mutual information, a coarse-to-fine pyramid, started from the
    translation found by masked cross-correlation) finds the pose; :func:`refine` then takes it
    to the exact least-squares optimum at full resolution, so that the result is reproducible
    bit for bit; the LR scan is resampled by linear interpolation."""
    import ants

    hr = np.asarray(hr, dtype=np.float32)
    lr = np.asarray(lr, dtype=np.float32)
    grid = tuple(n // scale for n in hr.shape)
    half = 0.5 * (scale - 1) * hr_um  # centre of LR voxel 0 in HR physical space
    hr_blocks = block_mean(hr, scale)
    # numpy (z, y, x) arrays go to ANTs as they are: axis k has spacing, origin as given
    fixed = ants.from_numpy(hr_blocks.astype(np.float32), origin=(half,) * 3,
                            spacing=(scale * hr_um,) * 3)
    moving = ants.from_numpy(lr, spacing=(lr_um,) * 3)
    shrink, sigmas, iterations = _levels(grid)

    def attempt(initial, prefix: str):
        reg = ants.registration(fixed, moving, type_of_transform="Affine", aff_metric="mattes",
                                aff_sampling=32, aff_shrink_factors=shrink,
                                aff_smoothing_sigmas=sigmas, aff_iterations=iterations,
                                initial_transform=initial, random_seed=seed, verbose=False,
                                outprefix=prefix)
        start = _ants_affine(ants.read_transform(reg["fwdtransforms"][0]))
        affine, its = refine(hr_blocks, lr, start, origin_um=half, spacing_um=scale * hr_um,
                             lr_um=lr_um)
        lr_grid, inside = resample(lr, affine, grid, hr_um, lr_um, scale=scale, fill=fill)
        q = ncc(lr_grid[inside], hr_blocks[inside]) if inside.any() else 0.0
        return q, lr_grid, inside, affine, its

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
        q, lr_grid, inside, affine, its = attempt([path], str(Path(tmp) / "start_"))
        if q < POOR_NCC:
            other = attempt(None, str(Path(tmp) / "centres_"))
            if other[0] > q:
                q, lr_grid, inside, affine, its = other
    poor = q < POOR_NCC
    if poor:
        warnings.warn(f"LR-to-HR registration is poor (NCC {q:.2f} < {POOR_NCC}); check that "
                      "the two scans show the same region", RegistrationWarning, stacklevel=2)
    return Registration(lr_grid, q, affine.tolist(), poor, inside, its)
