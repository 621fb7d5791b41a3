"""Training data as the harness presents slices at evaluation: the train subset in [0, 1] by the
split's window, LR on the HR slice positions, random patch pairs (or HR patches alone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bonesr_bench.training.recipe import Progress, TrainingError, _noop


@dataclass
class Volume:
    """One train specimen in [0, 1]: ``lr`` interpolated along z to the HR slices (None in
    HR-only mode), ``hr``; both (z, y, x) float32 tensors."""

    name: str
    lr: torch.Tensor | None
    hr: torch.Tensor


def load_volumes(path: str | Path, *, hr_only: bool = False, scale: int = 2,
                 progress: Progress = _noop) -> list[Volume]:
    """The train subset of the split at ``path`` as :class:`Volume` s (the test subset is never
    read)."""
    from bonesr_bench.models.inference import lr_on_hr_slices
    from bonesr_bench.split import iter_specimens, normalise

    root_names, window = _train_split(path)
    out = []
    for i, sp in enumerate(iter_specimens(path, "train")):
        hr = torch.from_numpy(normalise(sp.hr, window))
        lr = None
        if not hr_only:
            lr = torch.from_numpy(normalise(sp.lr, window))
            lr = lr_on_hr_slices(lr, hr.shape[0])
            if tuple(lr.shape[1:]) != (hr.shape[1] // scale, hr.shape[2] // scale):
                raise TrainingError(f"{path}: specimen {sp.name} is not a x{scale} pair "
                                    f"(LR {tuple(lr.shape)} vs HR {tuple(hr.shape)}); "
                                    "train on a split of this scale")
        out.append(Volume(sp.name, lr, hr))
        progress("data", i + 1, len(root_names), sp.name)
    return out


def _train_split(path) -> tuple[list[str], tuple[float, float]]:
    """(train specimen names, the split's intensity window in 1/cm: what evaluate maps to
    [0, 1])."""
    from bonesr_bench.split import open_group

    root = open_group(path, mode="r")
    if "train" not in root:
        raise TrainingError(f"{path}: the split has no train subset; build it with "
                            f"`bonesr-bench data build --split train --out {path}`")
    window = tuple(root.attrs["bonesr"]["segmentation"]["window"])
    return sorted(root["train"].group_keys()), window


def _draw(vols: list[Volume], rng: np.random.Generator, size: int, grid: str, depth: int = 1):
    """A random specimen, first of ``depth`` consecutive slices and square corner of side
    ``size`` on its ``grid`` ("lr" or "hr") plane, the side clamped to the plane: (volume, z, y,
    x, side)."""
    v = vols[int(rng.integers(len(vols)))]
    plane = getattr(v, grid)
    s = min(size, plane.shape[1], plane.shape[2])
    z = int(rng.integers(v.hr.shape[0] - depth + 1))
    y = int(rng.integers(0, plane.shape[1] - s + 1))
    x = int(rng.integers(0, plane.shape[2] - s + 1))
    return v, z, y, x, s


def sample_pairs(vols: list[Volume], rng: np.random.Generator, n: int, patch: int,
                 scale: int = 2, stack: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (LR patch, HR patch) pairs of ``stack`` consecutive slices (on the HR slice
    positions, as a slice model sees them): (n, stack, p, p) and (n, stack, s*p, s*p)."""
    lrs, hrs = [], []
    for _ in range(n):
        v, z, y, x, p = _draw(vols, rng, patch, "lr", stack)
        lrs.append(v.lr[z:z + stack, y:y + p, x:x + p])
        hrs.append(v.hr[z:z + stack, scale * y:scale * (y + p), scale * x:scale * (x + p)])
    return torch.stack(lrs), torch.stack(hrs)


def sample_hr(vols: list[Volume], rng: np.random.Generator, n: int, size: int) -> torch.Tensor:
    """``n`` random HR patches, (n, 1, size, size)."""
    out = []
    for _ in range(n):
        v, z, y, x, s = _draw(vols, rng, size, "hr")
        out.append(v.hr[z, y:y + s, x:x + s])
    return torch.stack(out)[:, None]
