"""The segmentation protocol of a split, per grid: the rule that chooses the TV weight of the HR
grid (10.5 µm: every entry is segmented with it) and of the LR grid (21 µm: the LR reference row),
rerun by anyone on the train part of a split (``bonesr-bench data protocol``).

The rule (:data:`split.TV_RULE`): per grid, among :data:`TV_CANDIDATES`, the TV weight that
minimises the mean biological error (:func:`scoring.biological_error`, seven parameters) of the
grid's own scan against the true geometry over the first :data:`N_SPECIMENS` train specimens.
Each grid's scan is segmented in its own voxels (the LR scan with the regions taken every second
voxel), so neither grid is smoothed with a weight chosen for the other: v1 used HR's weight for
both, which smoothed the LR scan twice as far in micrometres and made every entry "beat" it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bonesr_bench.scoring import biological_error, measure
from bonesr_bench.scoring.segmentation import SegmentationParams

__all__ = ["TV_CANDIDATES", "N_SPECIMENS", "ProtocolChoice", "choose_tv_weights"]

TV_CANDIDATES = (0.0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12)
N_SPECIMENS = 8


@dataclass
class ProtocolChoice:
    """Mean biological error against the truth (fraction) per grid and candidate weight, the
    chosen weight per grid and the specimens used."""

    errors: dict[str, dict[float, float]] = field(default_factory=dict)
    chosen: dict[str, float] = field(default_factory=dict)
    specimens: list[str] = field(default_factory=list)


def choose_tv_weights(path: str | Path, *, n_specimens: int = N_SPECIMENS,
                      candidates=TV_CANDIDATES,
                      progress: Callable[[str, int, int], None] | None = None) -> ProtocolChoice:
    """Rerun the rule on the train part of the split at ``path`` (it needs the true geometry)."""
    import zarr

    from bonesr_bench.split import (
        SplitError,
        calibration,
        from_raw,
        open_split,
        segmentation_params,
    )

    if n_specimens < 1:
        raise SplitError(f"--specimens {n_specimens}: the rule needs at least one specimen")
    root = open_split(path)
    meta = dict(root.attrs["bonesr"])
    if "train" not in meta.get("parts", []) or "train" not in root:
        raise SplitError(f"{path} has no train part; build it with `bonesr-bench data build "
                         f"--split train --out {path}`")
    names = sorted(root["train"].group_keys())[:n_specimens]
    if not names or "labels/truth" not in root[f"train/{names[0]}"]:
        raise SplitError(f"{path}: the rule needs the true geometry, which a split from scans "
                         "does not have")
    recorded = segmentation_params(meta)
    cal = calibration(meta)
    s = int(meta["scale"])
    hr_um, lr_um = float(meta["hr_voxel_um"]), float(meta["lr_voxel_um"])
    per: dict[str, dict[float, list[float]]] = {"hr": {}, "lr": {}}
    for i, name in enumerate(names):
        g: zarr.Group = root[f"train/{name}"]
        truth = dict(g.attrs["truth_morphometry"])
        regions = np.asarray(g["labels/regions/0"][...])
        for grid, voxel, reg in (("hr", hr_um, regions), ("lr", lr_um, regions[::s, ::s, ::s])):
            grey = from_raw(np.asarray(g[f"{grid}/0"][...]), cal)
            for w in candidates:
                params = SegmentationParams(w, recorded[grid].tv_max_iter, recorded[grid].window)
                m = measure(grey, voxel, reg, params)
                per[grid].setdefault(w, []).append(biological_error(m, truth))
        if progress:
            progress(name, i + 1, len(names))
    out = ProtocolChoice(specimens=names)
    for grid, table in per.items():
        out.errors[grid] = {w: float(np.mean(v)) if v else math.nan for w, v in table.items()}
        out.chosen[grid] = min(out.errors[grid], key=lambda w: out.errors[grid][w])
    return out
