"""Running a loaded model on an LR volume: the "model -> SR volume" stage
(``benchmark/docs/DESIGN.md`` §2.3).

The harness, not the model, owns batching, device placement, ``torch.inference_mode``, optional
autocast and the validation of every output: shape (scale x in-plane, and in z for volume
models), dtype float32, finite values; values outside [0, 1] are clipped and counted. A model
that breaks any of this gets an :class:`OutputError` naming the problem in one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["OutputError", "RunStats", "run_model", "lr_on_hr_slices"]


class OutputError(RuntimeError):
    """A model's output broke the interface; one line, naming the problem."""


@dataclass
class RunStats:
    n_calls: int
    n_clipped: int  # output values outside [0, 1], clipped
    seconds_in_model: float
    batch_size: int | None = None  # slices per call (slice models; after any OOM halving)

    def as_dict(self) -> dict:
        return asdict(self)


def _validate(sr, expected: tuple[int, ...], what: str) -> torch.Tensor:
    if not isinstance(sr, torch.Tensor):
        raise OutputError(f"{what}: the model returned {type(sr).__name__}, not a torch tensor")
    if tuple(sr.shape) != expected:
        raise OutputError(f"{what}: output shape {tuple(sr.shape)}, expected {expected}")
    if sr.dtype != torch.float32:
        raise OutputError(f"{what}: output dtype {sr.dtype}, expected torch.float32")
    if not bool(torch.isfinite(sr).all()):
        n = int((~torch.isfinite(sr)).sum())
        raise OutputError(f"{what}: output has {n} non-finite values (NaN or inf)")
    return sr


def lr_on_hr_slices(lr: torch.Tensor, n_slices: int) -> torch.Tensor:
    """The LR volume (z, y, x) interpolated linearly along z to ``n_slices`` slices (the HR
    slice positions: LR slice k sits between HR slices s k and s k + s - 1), in-plane
    untouched: what a slice model is given, at evaluation and in training."""
    return torch.nn.functional.interpolate(lr[None, None], size=(n_slices, *lr.shape[1:]),
                                           mode="trilinear", align_corners=False)[0, 0]


def run_model(model, lr01: np.ndarray, *, device="cpu", batch_size: int | None = 8,
              amp: bool = False,
              progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, RunStats]:
    """SR volume (float32 in [0, 1]) of an LR volume ``lr01`` (Z, H, W) already in [0, 1].

    "slice" models get (B, 1, h, w) batches of LR slices and must return (B, 1, s h, s w). As in
    the reference study (LR interpolated to the HR slice positions, then paired slice by slice),
    the harness first interpolates the LR linearly along z to s Z slices (LR slice k sits between
    HR slices s k and s k + s - 1), so the SR volume has the HR grid. "volume" models get the LR
    as (1, 1, Z, h, w) and return (1, 1, s Z, s h, s w). ``progress(done, total)`` in SR slices
    after each batch. ``batch_size`` None: 8 slices on the CPU; on CUDA it starts at 64 and is
    halved whenever the GPU runs out of memory (the batch is then retried).
    """
    import time

    dev = torch.device(device)
    s = int(model.scale)
    z, h, w = lr01.shape
    lr = torch.as_tensor(np.ascontiguousarray(lr01, dtype=np.float32))
    autocast = (torch.autocast(device_type=dev.type, dtype=torch.bfloat16 if dev.type == "cpu"
                               else torch.float16) if amp else contextlib.nullcontext())
    clipped, calls, t_model = 0, 0, 0.0
    out = np.empty((z * s, h * s, w * s), dtype=np.float32)
    with torch.inference_mode(), autocast:
        if model.input == "volume":
            t0 = time.perf_counter()
            sr = model(lr[None, None].to(dev))
            t_model += time.perf_counter() - t0
            calls = 1
            batch_used = 1
            sr = _validate(sr.float() if amp else sr, (1, 1, z * s, h * s, w * s), "volume")
            clipped = int(((sr < 0) | (sr > 1)).sum())
            out[...] = sr.clamp(0, 1)[0, 0].cpu().numpy()
            if progress:
                progress(z * s, z * s)
        else:
            lr = lr_on_hr_slices(lr, s * lr.shape[0])
            z = lr.shape[0]
            auto = batch_size is None
            bs = (64 if dev.type == "cuda" else 8) if auto else int(batch_size)
            a = 0
            while a < z:
                batch = lr[a : a + bs, None].to(dev)
                t0 = time.perf_counter()
                try:
                    sr = model(batch)
                except torch.cuda.OutOfMemoryError:
                    if not auto or bs == 1:
                        raise
                    del batch
                    torch.cuda.empty_cache()
                    bs //= 2
                    continue
                t_model += time.perf_counter() - t0
                calls += 1
                if amp and isinstance(sr, torch.Tensor):
                    sr = sr.float()
                sr = _validate(sr, (batch.shape[0], 1, h * s, w * s),
                               f"slices {a}-{a + batch.shape[0] - 1}")
                clipped += int(((sr < 0) | (sr > 1)).sum())
                sl = sr.clamp(0, 1)[:, 0].cpu().numpy()
                out[a : a + batch.shape[0]] = sl
                a += batch.shape[0]
                if progress:
                    progress(a, z)
            batch_used = bs
    return out, RunStats(calls, clipped, t_model, batch_used)
