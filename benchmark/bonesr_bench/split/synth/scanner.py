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
from typing import TYPE_CHECKING

import numpy as np

from bonesr_bench.split.synth import _raster

if TYPE_CHECKING:  # torch is imported where the v1 (torch) path runs: a v2 build never loads it
    import torch

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
    #: blur along the bone axis (slice sensitivity: detector rows, focal spot's extent along z),
    #: µm; None: ``blur_sigma_um`` (v1). The v2 path only.
    blur_z_um: float | None = None
    #: detector pixel and slice pitch, µm, when not a whole number of HR samples (the study's LR
    #: scans: 19 µm, interpolated onto the 21 µm grid); None: ``binning`` HR samples. v2 only.
    pixel_um: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def voxel_um(self, hr_voxel_um: float) -> float:
        """The reconstruction's voxel size (µm)."""
        return self.pixel_um if self.pixel_um is not None else self.binning * hr_voxel_um

    def dose_per_voxel(self, hr_voxel_um: float) -> float:
        """Incident photons per µm² of the scan's voxel face, summed over projections."""
        return self.photons * self.n_angles / self.voxel_um(hr_voxel_um) ** 2


HR_SCAN = ScanParams("hr", binning=1, n_angles=256, photons=12000.0, blur_sigma_um=5.0,
                     gain_sd=0.004)
LR_SCAN = ScanParams("lr", binning=2, n_angles=128, photons=20000.0, blur_sigma_um=13.0,
                     gain_sd=0.004)


def _gauss_kernel(sigma_px: float) -> torch.Tensor:
    import torch

    radius = max(1, int(math.ceil(3 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def _blur_1d(t: torch.Tensor, sigma_px: float, dim: int) -> torch.Tensor:
    import torch.nn.functional as F

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
    import torch
    import torch.nn.functional as F

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
    import torch

    n = sino.shape[-1]
    size = 1 << (2 * n - 1).bit_length()
    freq = torch.fft.rfftfreq(size, device=sino.device)
    ramp = freq * torch.sinc(freq)  # |f| sinc(f): Shepp-Logan (torch.sinc is normalised)
    spec = torch.fft.rfft(sino, n=size, dim=-1) * ramp
    return torch.fft.irfft(spec, n=size, dim=-1)[..., :n]


def _backproject(filt: torch.Tensor, angles: torch.Tensor, n_out: int,
                 chunk: int = 8) -> torch.Tensor:
    """FBP of filtered projections (Z, A, U) onto an ``n_out``² grid of the detector's pitch.
    Returns (Z, n_out, n_out)."""
    import torch
    import torch.nn.functional as F

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
    import torch

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
    import torch

    dev = p.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z, a_all, n = p.shape
    b = params.binning
    if z % b or n % b or a_all % params.n_angles:
        raise ValueError(f"projections {tuple(p.shape)} do not fit binning {b} and "
                         f"{params.n_angles} angles")
    if params.pixel_um is not None or params.blur_z_um is not None:
        raise ValueError(f"scan protocol {params.name!r} sets pixel_um or blur_z_um, which only "
                         "the reproducible CPU path (scan_exact) simulates")
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
                             n // b)
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


# --- v2: a reproducible CPU path and the LR scan as a separate acquisition -------------------
#
# Why a second path: v1's scans go through torch (MKL/pocketfft FFT, oneDNN convolution, SLEEF
# exp/log), whose float32 results depend on the CPU's instruction set and on the thread count, so
# a v1 split rebuilt on another CPU differs in every scan array (within tolerance). v2 keeps the
# numba projector and back-projector (no fast-math: each output is computed by one thread in a
# fixed order, so they are exact on any x86-64 CPU and thread count) and does everything between
# them in float64 with numpy/scipy (exp, Gaussian blur, Poisson noise from a PCG64 stream, ramp
# filter by pocketfft): a last-bit difference of a float64 there stays far below the uint16
# quantum (1.2e-4 1/cm) of the stored scan. v1 keeps its own path, so its committed fingerprint
# is unchanged.


def _trig(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of ``angles`` by the C library one at a time (numpy's SIMD versions differ
    in the last bit between CPUs)."""
    return (np.array([math.cos(a) for a in angles]), np.array([math.sin(a) for a in angles]))


def _gauss_kernel64(sigma_px: float) -> np.ndarray:
    """:func:`_gauss_kernel` in float64 by the C library's exp and a sum in a fixed order."""
    radius = max(1, int(math.ceil(3 * sigma_px)))
    k = [math.exp(-0.5 * (x / sigma_px) ** 2) for x in range(-radius, radius + 1)]
    total = math.fsum(k)
    return np.array([v / total for v in k])


def _gauss_blur64(a: np.ndarray, sigma_px: float, axis: int) -> np.ndarray:
    from scipy import ndimage as ndi

    if sigma_px <= 0:
        return a
    return ndi.correlate1d(a, _gauss_kernel64(sigma_px), axis=axis, mode="nearest")


def _ramp_filter64(sino: np.ndarray) -> np.ndarray:
    """Shepp-Logan filtered projections along the last axis (float64, zero-padded FFT)."""
    import scipy.fft

    n = sino.shape[-1]
    size = 1 << (2 * n - 1).bit_length()
    freq = np.arange(size // 2 + 1) / size
    ramp = freq * np.sinc(freq)
    return scipy.fft.irfft(scipy.fft.rfft(sino, n=size, axis=-1) * ramp, n=size,
                           axis=-1)[..., :n]


def _box_weights(n_in: int, pitch: float, centred: bool) -> np.ndarray:
    """(n_out, n_in) weights that integrate ``n_in`` unit samples into bins of ``pitch`` samples
    (the overlap of each bin with each sample, over the bin's width): a detector of another
    pixel size. ``centred``: the bins are centred on the samples' centre (the rotation axis),
    else they start at the first sample (the stack's first slice)."""
    n_out = int(n_in // pitch)  # whole bins only: one past the edge would read as attenuation
    lo = ((np.arange(n_out) - n_out / 2) * pitch + n_in / 2 if centred
          else np.arange(n_out) * pitch)
    edges_in = np.arange(n_in + 1, dtype=np.float64)
    a = np.maximum(lo[:, None], edges_in[None, :-1])
    b = np.minimum(lo[:, None] + pitch, edges_in[None, 1:])
    return np.clip(b - a, 0.0, None) / pitch


def line_integrals_exact(fraction: np.ndarray, n_angles: int, *,
                         hr_voxel_um: float = 10.5) -> np.ndarray:
    """:func:`line_integrals` on the CPU, reproducible on any CPU and thread count; (Z, A, N)
    float32 (the numba projector's own precision, exact)."""
    z, n, _ = fraction.shape
    medium_radius_um = 0.495 * n * hr_voxel_um
    coord = (np.arange(n) + 0.5 - n / 2) * hr_voxel_um
    inside = (coord[None, :] ** 2 + coord[:, None] ** 2) <= medium_radius_um**2
    f = np.asarray(fraction, dtype=np.float64)
    mu_px = ((f * MU_BONE_CM + (1 - f) * MU_SOFT_CM) * (1e-4 * hr_voxel_um) * inside)
    cos_t, sin_t = _trig(_angles(n_angles))
    return _raster.project_joseph(mu_px.astype(np.float32), cos_t, sin_t)


def scan_exact(p: np.ndarray, params: ScanParams, *, hr_voxel_um: float = 10.5,
               seed: int = 0, keep: slice = slice(None)) -> np.ndarray:
    """:func:`scan_from_projections` on the CPU, reproducible bit for bit (see above): detector
    blur and binning, gain errors, Poisson noise, Shepp-Logan FBP; attenuation in 1/cm, float64.
    ``p``: line integrals (Z, A, N) at a multiple of ``params.n_angles`` angles. ``keep``: the
    detector rows (slices) reconstructed and returned; noise is drawn for every row, so a kept
    slice is the same as in the whole reconstruction (each slice is back-projected alone)."""
    rng = np.random.default_rng([int(seed), 2])
    z, a_all, n = p.shape
    b = params.binning
    if (params.pixel_um is None and (z % b or n % b)) or a_all % params.n_angles:
        raise ValueError(f"projections {tuple(p.shape)} do not fit binning {b} and "
                         f"{params.n_angles} angles")
    intensity = np.exp(-np.asarray(p[:, :: a_all // params.n_angles], dtype=np.float64))
    sig = params.blur_sigma_um / hr_voxel_um
    sig_z = (params.blur_sigma_um if params.blur_z_um is None else params.blur_z_um) / hr_voxel_um
    intensity = _gauss_blur64(_gauss_blur64(intensity, sig, 2), sig_z, 0)
    if params.pixel_um is None:
        intensity = intensity.reshape(z // b, b, params.n_angles, n // b, b).mean(axis=(1, 4))
    else:  # a detector pitch that is not a whole number of HR samples
        q = params.pixel_um / hr_voxel_um
        wz, wu = _box_weights(z, q, centred=False), _box_weights(n, q, centred=True)
        intensity = np.einsum("iz,zau,ju->iaj", wz, intensity, wu, optimize=True)
    n_det = intensity.shape[-1]
    gain = 1 + params.gain_sd * rng.standard_normal(n_det)
    counts = np.maximum(rng.poisson(params.photons * intensity * gain), 1).astype(np.float64)
    filt = _ramp_filter64(-np.log(counts / params.photons))
    cos_t, sin_t = _trig(_angles(params.n_angles))
    recon = _raster.backproject_linear(filt[keep].astype(np.float32), cos_t, sin_t, n_det)
    return recon.astype(np.float64) * (1e4 / params.voxel_um(hr_voxel_um))


@dataclass(frozen=True)
class Pose:
    """Where the specimen sat in the LR acquisition, relative to the HR one: rotations (degrees)
    about the z, y and x axes through the centre of the volume, then a shift (µm, z y x)."""

    rotation_deg: tuple[float, float, float]
    shift_um: tuple[float, float, float]

    def as_dict(self) -> dict:
        return asdict(self)

    def matrix(self) -> np.ndarray:
        """The 3 x 3 rotation (z y x coordinates)."""
        out = np.eye(3)
        for axis, deg in enumerate(self.rotation_deg):
            c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
            i, j = [k for k in range(3) if k != axis]
            r = np.eye(3)
            r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
            out = r @ out
        return out


def draw_pose(seed: int, max_deg: float, max_shift_um: float) -> Pose:
    """A random pose: each rotation uniform in +-``max_deg``, each shift in +-``max_shift_um``."""
    rng = np.random.default_rng([int(seed), 3])
    return Pose(tuple(float(v) for v in rng.uniform(-max_deg, max_deg, 3)),
                tuple(float(v) for v in rng.uniform(-max_shift_um, max_shift_um, 3)))


def posed(fraction: np.ndarray, pose: Pose, voxel_um: float) -> np.ndarray:
    """The bone ``fraction`` (z, y, x) moved to ``pose`` (rotated about the volume's centre,
    then shifted), resampled by linear interpolation on the same grid (float64; no bone where
    the moved volume leaves the grid). The interpolation smooths at the HR voxel's scale, well
    below what the LR scan resolves."""
    from scipy import ndimage as ndi

    r = pose.matrix()
    centre = (np.asarray(fraction.shape, np.float64) - 1) / 2
    shift = np.asarray(pose.shift_um, np.float64) / voxel_um
    # output voxel o shows input voxel R^T (o - centre - shift) + centre
    offset = centre - r.T @ (centre + shift)
    return ndi.affine_transform(np.asarray(fraction, np.float64), r.T, offset=offset, order=1,
                                mode="constant", cval=0.0)
