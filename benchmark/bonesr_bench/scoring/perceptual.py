"""Perceptual metrics as the reference study computed them (README, "Evaluate a model", step 4).

Per 2D axial slice: intensities on the split's fixed window mapped to [0, 255] (clipped, not
rounded), ``shave`` pixels removed from each border (the scale, 2 for x2), PSNR with peak 255,
and SSIM of Wang et al. (2004) with an 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01,
K2 = 0.03 and population (not sample) covariances, averaged over the valid window positions.
A specimen's figure is the mean over its slices. 3D PSNR/SSIM per volume are secondary figures
(3D Gaussian window, same constants).

Implemented in torch so it runs where the model runs; ``tests/test_metrics.py`` proves SSIM equals
scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)`` to 1e-6.

References
----------
Wang Z, Bovik AC, Sheikh HR, Simoncelli EP (2004) Image quality assessment: from error
visibility to structural similarity. IEEE Trans Image Process 13:600-612.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["CONVENTIONS", "to_255", "psnr_slices", "ssim_slices", "psnr_3d", "ssim_3d",
           "SliceScores", "score_volume"]

K1, K2, SIGMA, WIN = 0.01, 0.03, 1.5, 11
#: recorded with every result
CONVENTIONS = {"version": "3", "sums": "float64; each plane summed by one thread in a fixed "
               "order, the planes by numpy",
               "range": "split window -> [0, 255], clipped", "peak": 255,
               "shave": "scale pixels per border", "ssim": "Wang 2004, Gaussian 11/1.5, "
               "K1 0.01, K2 0.03, population covariance, valid positions"}


def to_255(volume, window: tuple[float, float]) -> torch.Tensor:
    """Map intensities so that ``window`` becomes [0, 255] (float64, clipped)."""
    lo, hi = window
    t = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
    return ((t.double() - lo) / (hi - lo)).clamp(0, 1) * 255.0


def _shave(t: torch.Tensor, shave: int) -> torch.Tensor:
    return t[..., shave:-shave, shave:-shave] if shave > 0 else t


def psnr_slices(reference: torch.Tensor, test: torch.Tensor, *, shave: int = 2) -> torch.Tensor:
    """PSNR (dB, peak 255) of each slice of (Z, H, W) volumes already on the 0-255 scale."""
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(test.shape)}")
    r, t = _shave(reference, shave), _shave(test, shave)
    mse = ((r - t) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse)  # inf where identical


def _gauss1d(device, dtype) -> torch.Tensor:
    x = torch.arange(WIN, device=device, dtype=dtype) - (WIN - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return g / g.sum()


def _filter(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """Gaussian window filter over ``axes`` ("valid" positions only), applied separably as a
    weighted sum of shifted views: memory of two copies of ``x``, no im2col buffers."""
    g = _gauss1d(x.device, x.dtype).tolist()
    for ax in axes:
        n = x.shape[ax] - WIN + 1
        out = x.narrow(ax, 0, n) * g[0]
        for k in range(1, WIN):
            out.add_(x.narrow(ax, k, n), alpha=g[k])
        x = out
    return x


def _ssim_map(r: torch.Tensor, t: torch.Tensor, dim: int) -> torch.Tensor:
    axes = tuple(range(-dim, 0))
    mu_r, mu_t = _filter(r, axes), _filter(t, axes)
    s_rr = _filter(r * r, axes) - mu_r**2
    s_tt = _filter(t * t, axes) - mu_t**2
    s_rt = _filter(r * t, axes) - mu_r * mu_t
    c1, c2 = (K1 * 255) ** 2, (K2 * 255) ** 2
    num = (2 * mu_r * mu_t + c1) * (2 * s_rt + c2)
    return num / ((mu_r**2 + mu_t**2 + c1) * (s_rr + s_tt + c2))


def ssim_slices(reference: torch.Tensor, test: torch.Tensor, *, shave: int = 2) -> torch.Tensor:
    """SSIM of each slice of (Z, H, W) volumes on the 0-255 scale (mean over valid positions)."""
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(test.shape)}")
    r, t = _shave(reference, shave)[:, None], _shave(test, shave)[:, None]
    if min(r.shape[-2:]) < WIN:
        raise ValueError(f"slices of {tuple(r.shape[-2:])} after shaving are smaller than the "
                         f"{WIN} x {WIN} SSIM window")
    if r.device.type == "cpu":  # fused (scoring._ssim); the torch formulation on CUDA
        from bonesr_bench.scoring._ssim import ssim_slice_means

        return torch.from_numpy(ssim_slice_means(*_planes(r[:, 0], t[:, 0]), *_constants()))
    return _ssim_map(r, t, 2).flatten(1).mean(1)


def _planes(r: torch.Tensor, t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(r.numpy(), dtype=np.float64),
            np.ascontiguousarray(t.numpy(), dtype=np.float64))


def _constants() -> tuple[np.ndarray, float, float]:
    return _gauss1d("cpu", torch.float64).numpy(), (K1 * 255) ** 2, (K2 * 255) ** 2


def psnr_3d(reference: torch.Tensor, test: torch.Tensor, *, shave: int = 2) -> float:
    """PSNR (dB) of the whole volume, in-plane border shaved."""
    r, t = _shave(reference, shave), _shave(test, shave)
    return float(10 * np.log10(255.0**2 / _mean((r - t) ** 2)))


def _mean(t: torch.Tensor) -> float:
    """The mean of a tensor's values, summed by numpy in float64 (pairwise, one thread): a
    whole-volume figure that does not depend on torch's thread count, as its parallel
    reductions do."""
    return float(np.sum(t.detach().cpu().numpy(), dtype=np.float64)) / t.numel()


def ssim_3d(reference: torch.Tensor, test: torch.Tensor, *, shave: int = 2) -> float:
    """SSIM with an 11³ Gaussian window over the volume (in-plane border shaved)."""
    r, t = _shave(reference, shave)[None, None], _shave(test, shave)[None, None]
    if min(r.shape[-3:]) < WIN:
        raise ValueError(f"volume {tuple(r.shape[-3:])} is smaller than the {WIN}³ SSIM window")
    if r.device.type == "cpu":
        from bonesr_bench.scoring._ssim import ssim_volume_plane_sums

        sums = ssim_volume_plane_sums(*_planes(r[0, 0], t[0, 0]), *_constants())
        n = np.prod([d - WIN + 1 for d in r.shape[-3:]])
        return float(np.sum(sums) / n)
    return float(_mean(_ssim_map(r, t, 3)))


@dataclass(frozen=True)
class SliceScores:
    """A volume's perceptual scores: slice means (the study's figures) and 3D figures."""

    psnr_db: float
    ssim: float
    psnr_3d_db: float
    ssim_3d: float
    n_slices: int

    def as_dict(self) -> dict:
        return asdict(self)


def score_volume(reference, test, window: tuple[float, float], *, shave: int = 2,
                 device="cpu") -> SliceScores:
    """Score ``test`` against ``reference`` (same shape, same units) on the split's window."""
    r = to_255(reference, window).to(device)
    t = to_255(test, window).to(device)
    psnr = psnr_slices(r, t, shave=shave)
    finite = psnr[torch.isfinite(psnr)]
    return SliceScores(
        psnr_db=float(finite.mean()) if finite.numel() else float("inf"),
        ssim=float(ssim_slices(r, t, shave=shave).mean()),
        psnr_3d_db=psnr_3d(r, t, shave=shave),
        ssim_3d=ssim_3d(r, t, shave=shave) if min(r.shape) >= WIN else float("nan"),
        n_slices=int(r.shape[0]),
    )
