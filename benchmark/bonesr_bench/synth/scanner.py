"""A simulated micro-CT scanner: both scans of a specimen from the same geometry, as a scanner
makes them.

Per scan, every axial slice is imaged in parallel-beam geometry (torch, batched over slices, so
it runs on the GPU when there is one):

1. attenuation: bone fraction f per HR voxel -> mu = f mu_bone + (1 - f) mu_soft inside a
   cylinder of soft tissue (the specimen holder's medium, 99 % of the field of view), air outside;
2. line integrals over ``n_angles`` angles in [0, pi), sampled every 10.5 µm across and along
   the slice stack (the HR grid);
3. detector integration: each detector pixel (scan voxel size: 10.5 µm HR, 21 µm LR) integrates
   the *intensity* exp(-p) over its footprint (1 x 1 HR samples for HR, 2 x 2 for LR: across the
   detector row and over the two HR slices that one LR slice spans), so partial volume is
   physical (non-linear);
4. focal-spot and detector blur: a Gaussian on the detector plane (across and along z);
5. per-detector-column gain errors (not flat-field corrected: rings);
6. Poisson photon noise with ``photons`` incident per detector pixel and projection;
7. log, Shepp-Logan ramp filter, filtered back-projection onto the scan's voxel grid (256² HR,
   128² LR, registered: LR voxel i covers HR voxels 2i and 2i + 1 exactly).

Output is attenuation in 1/cm (float32). HR gets more photons per voxel than LR (the dose per
voxel, photons x angles / voxel area, is recorded), as in the reference study's scans.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import _raster

__all__ = ["ScanParams", "HR_SCAN", "LR_SCAN", "MU_BONE_CM", "MU_SOFT_CM", "line_integrals",
           "scan_from_projections", "scan", "scan_pair"]

MU_BONE_CM = 2.9  # mineralised bone, ~35 keV effective
MU_SOFT_CM = 0.27  # marrow / soft tissue / fixative (about water)


@dataclass(frozen=True)
class ScanParams:
    """One scan protocol. ``binning``: detector pixel / HR sample (1 HR, 2 LR)."""

    name: str
    binning: int
    n_angles: int
    photons: float  # incident photons per detector pixel and projection
    blur_sigma_um: float  # focal spot + detector, Gaussian on the detector plane
    gain_sd: float  # relative SD of the per-column detector gain

    def as_dict(self) -> dict:
        return asdict(self)

    def dose_per_voxel(self, hr_voxel_um: float) -> float:
        """Incident photons per µm² of the scan's voxel face, summed over projections."""
        return self.photons * self.n_angles / (self.binning * hr_voxel_um) ** 2


HR_SCAN = ScanParams("hr", binning=1, n_angles=256, photons=12000.0, blur_sigma_um=5.0,
                     gain_sd=0.004)
LR_SCAN = ScanParams("lr", binning=2, n_angles=128, photons=20000.0, blur_sigma_um=13.0,
                     gain_sd=0.004)


def _gauss_kernel(sigma_px: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def _blur_1d(t: torch.Tensor, sigma_px: float, dim: int) -> torch.Tensor:
    if sigma_px <= 0:
        return t
    k = _gauss_kernel(sigma_px).to(t.device)
    moved = t.movedim(dim, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    pad = k.numel() // 2
    out = F.conv1d(F.pad(flat, (pad, pad), mode="replicate"), k.view(1, 1, -1))
    return out.reshape(shape).movedim(-1, dim)


def _project(mu: torch.Tensor, angles: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Line integrals (in HR-voxel units) of mu (Z, N, N) -> (Z, A, N), detector sampled at the
    pixel pitch, rays through the pixel grid at unit step (bilinear)."""
    z, n, _ = mu.shape
    dev = mu.device
    coord = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) - n / 2  # centred, pixels
    out = torch.empty((z, angles.numel(), n), device=dev, dtype=torch.float32)
    img = mu[None]  # (1, Z, N, N): slices as channels share the sampling grid
    for a0 in range(0, angles.numel(), chunk):
        th = angles[a0 : a0 + chunk]
        c, s = torch.cos(th), torch.sin(th)
        # point on ray (angle k, detector u) at parameter t: (x, y) = u (c, s) + t (-s, c)
        u = coord[None, None, :]
        t = coord[None, :, None]
        x = u * c[:, None, None] - t * s[:, None, None]
        y = u * s[:, None, None] + t * c[:, None, None]
        grid = torch.stack([x / (n / 2), y / (n / 2)], dim=-1)  # (A, T, U, 2), align_corners=False
        grid = grid.permute(1, 0, 2, 3).reshape(1, n, -1, 2)  # (1, T, A*U, 2)
        samp = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)  # (1, Z, T, A*U)
        out[:, a0 : a0 + th.numel()] = samp[0].sum(1).reshape(z, th.numel(), n)
    return out


def _ramp_filter(sino: torch.Tensor) -> torch.Tensor:
    """Shepp-Logan filtered projections along the last axis (zero-padded FFT)."""
    n = sino.shape[-1]
    size = 1 << (2 * n - 1).bit_length()
    freq = torch.fft.rfftfreq(size, device=sino.device)
    ramp = freq * torch.sinc(freq)  # |f| sinc(f): Shepp-Logan (torch.sinc is normalised)
    spec = torch.fft.rfft(sino, n=size, dim=-1) * ramp
    return torch.fft.irfft(spec, n=size, dim=-1)[..., :n]


def _backproject(filt: torch.Tensor, angles: torch.Tensor, n_out: int, det_px: float,
                 chunk: int = 8) -> torch.Tensor:
    """FBP of filtered projections (Z, A, U) sampled every ``det_px`` HR pixels onto an
    ``n_out``² grid of the same pitch. Returns (Z, n_out, n_out)."""
    z, a, u = filt.shape
    dev = filt.device
    coord = (torch.arange(n_out, device=dev, dtype=torch.float32) + 0.5) - n_out / 2
    yy, xx = torch.meshgrid(coord, coord, indexing="ij")
    out = torch.zeros((z, n_out * n_out), device=dev, dtype=torch.float32)
    sino = filt[None]  # (1, Z, A, U)
    for a0 in range(0, a, chunk):
        th = angles[a0 : a0 + chunk]
        k = th.numel()
        s = xx.reshape(1, -1) * torch.cos(th)[:, None] + yy.reshape(1, -1) * torch.sin(th)[:, None]
        gx = s / (u / 2)  # detector coordinate, align_corners=False
        gy = ((torch.arange(a0, a0 + k, device=dev, dtype=torch.float32) + 0.5) / a * 2 - 1)
        grid = torch.stack([gx, gy[:, None].expand_as(gx)], dim=-1)[None]  # (1, K, P, 2)
        samp = F.grid_sample(sino, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)  # (1, Z, K, P)
        out += samp[0].sum(1)
    return (out * (math.pi / a)).reshape(z, n_out, n_out)


def _angles(n_angles: int) -> np.ndarray:
    return np.arange(n_angles) * (math.pi / n_angles)


def line_integrals(fraction: np.ndarray, n_angles: int, *, hr_voxel_um: float = 10.5,
                   device="cpu") -> torch.Tensor:
    """Noise-free line integrals (dimensionless) of the specimen, (Z, n_angles, N), HR sampling.
    The medium fills a cylinder of 99 % of the field of view. CPU: Joseph's method (numba);
    CUDA: bilinear ray sampling (torch), within 0.2 % of it."""
    dev = torch.device(device)
    z, n, _ = fraction.shape
    medium_radius_um = 0.495 * n * hr_voxel_um
    coord = (np.arange(n) + 0.5 - n / 2) * hr_voxel_um
    inside = (coord[None, :] ** 2 + coord[:, None] ** 2) <= medium_radius_um**2
    mu_px = ((fraction * MU_BONE_CM + (1 - fraction) * MU_SOFT_CM) * 1e-4 * hr_voxel_um
             * inside).astype(np.float32)  # attenuation per HR pixel length
    ang = _angles(n_angles)
    if dev.type == "cpu":
        return torch.from_numpy(_raster.project_joseph(mu_px, np.cos(ang), np.sin(ang)))
    return _project(torch.as_tensor(mu_px, device=dev), torch.as_tensor(ang, dtype=torch.float32,
                                                                           device=dev))


def scan_from_projections(p: torch.Tensor, params: ScanParams, *, hr_voxel_um: float = 10.5,
                          seed: int = 0) -> np.ndarray:
    """Detector, noise and reconstruction of one scan from line integrals ``p`` (Z, A, N) taken
    at ``A`` = a multiple of ``params.n_angles`` equally spaced angles (every k-th is used)."""
    dev = p.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z, a_all, n = p.shape
    b = params.binning
    if z % b or n % b or a_all % params.n_angles:
        raise ValueError(f"projections {tuple(p.shape)} do not fit binning {b} and "
                         f"{params.n_angles} angles")
    p = p[:, :: a_all // params.n_angles]
    intensity = torch.exp(-p)
    sig = params.blur_sigma_um / hr_voxel_um
    intensity = _blur_1d(_blur_1d(intensity, sig, dim=2), sig, dim=0)
    intensity = intensity.reshape(z // b, b, params.n_angles, n // b, b).mean(dim=(1, 4))
    gain = 1 + params.gain_sd * torch.randn(n // b, generator=gen)
    expected = params.photons * intensity * gain.to(dev)
    counts = torch.poisson(expected.cpu(), generator=gen).to(dev).clamp_min(1.0)
    filt = _ramp_filter(-torch.log(counts / params.photons))
    ang = _angles(params.n_angles)
    if dev.type == "cpu":
        recon = torch.from_numpy(_raster.backproject_linear(
            filt.contiguous().numpy().astype(np.float32), np.cos(ang), np.sin(ang), n // b))
    else:
        recon = _backproject(filt, torch.as_tensor(ang, dtype=torch.float32, device=dev),
                             n // b, 1.0)
    return (recon / (b * hr_voxel_um) * 1e4).cpu().numpy().astype(np.float32)  # 1/cm


def scan(fraction: np.ndarray, params: ScanParams, *, hr_voxel_um: float = 10.5, seed: int = 0,
         device="cpu") -> np.ndarray:
    """Simulated reconstruction (1/cm, float32) of the bone ``fraction`` volume (Z, N, N) on the
    HR grid with the scan protocol ``params``; shape (Z / b, N / b, N / b) for binning b."""
    p = line_integrals(fraction, params.n_angles, hr_voxel_um=hr_voxel_um, device=device)
    return scan_from_projections(p, params, hr_voxel_um=hr_voxel_um, seed=seed)


def scan_pair(fraction: np.ndarray, *, hr_voxel_um: float = 10.5, seed: int = 0, device="cpu",
              hr: ScanParams = HR_SCAN, lr: ScanParams = LR_SCAN):
    """(HR scan, LR scan) of one specimen, sharing one set of line integrals."""
    p = line_integrals(fraction, hr.n_angles, hr_voxel_um=hr_voxel_um, device=device)
    return (scan_from_projections(p, hr, hr_voxel_um=hr_voxel_um, seed=seed * 2 + 1),
            scan_from_projections(p, lr, hr_voxel_um=hr_voxel_um, seed=seed * 2 + 2))
