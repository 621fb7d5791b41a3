"""Torch implementations of the heavy kernels, for CUDA (they also run on the CPU).

Same definitions and the same integer arithmetic as the numba kernels, so the two backends agree
voxel for voxel (squared distances, ridge, max-ball map) and to float32 rounding after BoneJ's
clean-up (its neighbour means are summed in another order). ``tests/test_torch_backend.py``
checks CPU torch against numba on every run and CUDA against CPU where a GPU is present.

- :func:`squared_distance_map`: exact separable squared EDT (pass 1 by running nearest-background
  indices, passes 2 and 3 by the minimum over each line of f(j) + (i - j)^2, chunked);
- :func:`euler_characteristic`: the closed-cube cell count, as in ``connectivity``;
- :func:`local_thickness_map`: BoneJ's ridge by shifted comparisons against the template table,
  the max-ball map by painting every ball row into a sparse table of interval maxima
  (``scatter_reduce`` amax), then BoneJ's clean-up with 3x3x3 convolutions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bonesr_bench.morphometry import _kernels
from bonesr_bench.morphometry.connectivity import cell_count_chi

__all__ = ["resolve_device", "squared_distance_map", "euler_characteristic",
           "local_thickness_map", "thickness_stats"]

_BIG = 1 << 40  # "no background on this line" (outside the image is not background)
_CHUNK = 1 << 24  # elements per temporary, to bound memory


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
    return dev


def _as_tensor(a, device, dtype=torch.bool) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(a), device=device).to(dtype)


def _line_min_plus_parabola(f: torch.Tensor) -> torch.Tensor:
    """g[..., i] = min_j f[..., j] + (i - j)^2 along the last axis (int64, exact)."""
    n = f.shape[-1]
    lines = f.reshape(-1, n)
    idx = torch.arange(n, device=f.device)
    para = (idx[:, None] - idx[None, :]) ** 2  # (i, j)
    out = torch.empty_like(lines)
    step = max(1, _CHUNK // (n * n))
    for s in range(0, lines.shape[0], step):
        block = lines[s : s + step]
        out[s : s + step] = (block[:, None, :] + para[None]).amin(dim=-1)
    return out.reshape(f.shape)


def squared_distance_map(phase, device=None) -> torch.Tensor:
    """Integer squared EDT (int64) of a bool phase; 0 outside it; outside the image is not
    background. Raises ``ValueError`` if the phase fills the image."""
    dev = resolve_device(device)
    p = _as_tensor(phase, dev)
    if bool(p.all()):
        raise ValueError("the phase fills the whole image: its distance map is undefined")
    n = p.shape[-1]
    idx = torch.arange(n, device=dev).expand_as(p)
    neg = torch.full_like(idx, -(1 << 30))
    pos = torch.full_like(idx, 1 << 30)
    left = torch.where(~p, idx, neg).cummax(dim=-1).values
    right = torch.where(~p, idx, pos).flip(-1).cummin(dim=-1).values.flip(-1)
    d1 = torch.minimum(idx - left, right - idx).to(torch.int64)
    f = torch.where(d1 >= (1 << 29), torch.full_like(d1, _BIG), d1 * d1)
    f = _line_min_plus_parabola(f.transpose(1, 2).contiguous()).transpose(1, 2)
    f = _line_min_plus_parabola(f.transpose(0, 2).contiguous()).transpose(0, 2)
    return torch.where(p, f, torch.zeros_like(f)).contiguous()


def euler_characteristic(bone, device=None) -> int:
    """χ of the 26-connected foreground: vertices - edges + faces - cubes of its closed voxels."""
    dev = resolve_device(device)
    return cell_count_chi(F.pad(_as_tensor(bone, dev).to(torch.uint8), (1, 1, 1, 1, 1, 1)).bool())


def _shift(t: torch.Tensor, dz: int, dy: int, dx: int, fill=0) -> torch.Tensor:
    """out[z, y, x] = t[z + dz, y + dy, x + dx], ``fill`` outside the image."""
    out = torch.full_like(t, fill)
    d, h, w = t.shape
    src = tuple(slice(max(o, 0), n + min(o, 0)) for o, n in zip((dz, dy, dx), (d, h, w),
                                                                strict=True))
    dst = tuple(slice(max(-o, 0), n + min(-o, 0)) for o, n in zip((dz, dy, dx), (d, h, w),
                                                                  strict=True))
    out[dst] = t[src]
    return out


def _ridge(sq: torch.Tensor) -> torch.Tensor:
    present = torch.zeros(int(sq.max()) + 1, dtype=torch.bool, device=sq.device)
    present[sq.flatten()] = True
    present[0] = False
    values = torch.nonzero(present).flatten()
    templ = torch.as_tensor(_kernels.ridge_templates(values.cpu().numpy()), device=sq.device)
    lut = torch.zeros(present.numel(), dtype=torch.int64, device=sq.device)
    lut[values] = torch.arange(values.numel(), device=sq.device)
    col = lut[sq]
    ridge = sq > 0
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                n = (dz != 0) + (dy != 0) + (dx != 0)
                if n == 0:
                    continue
                ridge &= _shift(sq, dz, dy, dx) < templ[n - 1][col]
    return ridge


def _max_ball_map(sq: torch.Tensor) -> torch.Tensor:
    """Diameter 2 sqrt(max R) (float32) of the largest ridge ball containing each voxel."""
    dev = sq.device
    d, h, w = sq.shape
    ridge = _ridge(sq)
    zc, yc, xc = torch.nonzero(ridge, as_tuple=True)
    rc = sq[zc, yc, xc]
    levels = max(1, int(w).bit_length())
    table = torch.zeros((levels, d * h * w), dtype=torch.int32, device=dev)
    rho = torch.floor(torch.sqrt(rc.double())).long()
    for r in torch.unique(rho).tolist():
        sel = rho == r
        bz, by, bx, br = zc[sel], yc[sel], xc[sel], rc[sel]
        off = torch.arange(-r, r + 1, device=dev)
        oz, oy = torch.meshgrid(off, off, indexing="ij")
        keep = oz**2 + oy**2 <= (r + 1) ** 2 - 1
        oz, oy = oz[keep], oy[keep]
        step = max(1, _CHUNK // oz.numel())
        for s in range(0, bz.numel(), step):
            z = bz[s : s + step, None] + oz[None]
            y = by[s : s + step, None] + oy[None]
            rem = br[s : s + step, None] - oz[None] ** 2 - oy[None] ** 2
            ok = (rem >= 0) & (z >= 0) & (z < d) & (y >= 0) & (y < h)
            z, y, rem = z[ok], y[ok], rem[ok]
            x = bx[s : s + step, None].expand_as(ok)[ok]
            val = br[s : s + step, None].expand_as(ok)[ok]
            half = torch.floor(torch.sqrt(rem.double())).long()
            half -= (half * half > rem).long()
            half += ((half + 1) * (half + 1) <= rem).long()
            a = (x - half).clamp_min(0)
            e = (x + half).clamp_max(w - 1)
            length = e - a + 1
            lev = torch.floor(torch.log2(length.double())).long()
            lev -= ((1 << lev) > length).long()
            lev += ((2 << lev) <= length).long()
            base = (z * h + y) * w
            flat = table.view(-1)
            val = val.to(torch.int32)
            for pos in (a, e - (1 << lev) + 1):
                flat.scatter_reduce_(0, lev * (d * h * w) + base + pos, val, reduce="amax")
    table = table.view(levels, d, h, w)
    for lev in range(levels - 1, 0, -1):
        half = 1 << (lev - 1)
        table[lev - 1] = torch.maximum(table[lev - 1], table[lev])
        table[lev - 1, :, :, half:] = torch.maximum(table[lev - 1, :, :, half:],
                                                    table[lev, :, :, : w - half])
    return (2.0 * torch.sqrt(table[0].double())).float()


def _clean_up(lt: torch.Tensor) -> torch.Tensor:
    covered = lt > 0
    uncovered = (~covered).float()[None, None]
    near_uncovered = F.max_pool3d(uncovered, 3, stride=1, padding=1)[0, 0] > 0
    surface = covered & near_uncovered
    interior = covered & ~surface
    ones = torch.ones((1, 1, 3, 3, 3), dtype=torch.float64, device=lt.device)
    vals = torch.where(interior, lt, torch.zeros_like(lt)).double()[None, None]
    total = F.conv3d(vals, ones, padding=1)[0, 0]
    count = F.conv3d(interior.double()[None, None], ones, padding=1)[0, 0]
    mean = torch.where(count > 0, total / count.clamp_min(1), lt.double()).float()
    return torch.where(surface, mean, lt)


def local_thickness_map(phase, device=None) -> torch.Tensor:
    """BoneJ local-thickness map (voxels, float32 tensor on ``device``), 0 outside the phase."""
    dev = resolve_device(device)
    p = _as_tensor(phase, dev)
    if not bool(p.any()):
        return torch.zeros(p.shape, dtype=torch.float32, device=dev)
    lt = _clean_up(_max_ball_map(squared_distance_map(p, dev)))
    return torch.where(p, lt, torch.zeros_like(lt))


def thickness_stats(phase, device=None) -> tuple[float, float, float]:
    """(mean, population SD, max) of the local thickness over the phase in voxels; NaN where
    undefined."""
    dev = resolve_device(device)
    p = _as_tensor(phase, dev)
    n = int(p.sum())
    if n == 0 or n == p.numel():
        nan = float("nan")
        return nan, nan, nan
    v = local_thickness_map(p, dev)[p].double()
    return float(v.mean()), float(v.std(unbiased=False)), float(v.max())
