"""What every scored run and reference row shares: the error, progress, opening a split that
verifies, and the header and gallery of a result."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bonesr_bench import scoring
from bonesr_bench.errors import BenchError
from bonesr_bench.evaluation import result
from bonesr_bench.morphometry import CONVENTIONS as MORPHOMETRY_CONVENTIONS
from bonesr_bench.scoring import perceptual as metrics
from bonesr_bench.scoring.segmentation import SegmentationParams
from bonesr_bench.split import (
    SplitError,
    VerifyReport,
    calibration,
    from_raw,
    is_from_scans,
    open_group,
    require_ok,
    resolve,
    segmentation_params,
    verify,
)

#: Progress callback: (stage, done, total, info). Stages: build, references, model, score,
#: determinism.
Progress = Callable[[str, float, float, str], None]


class EvaluationError(BenchError, RuntimeError):
    """A usage or data error (exit code 2): one line naming the problem and the fix."""


def _noop(stage, done, total, info=""):
    pass


def _open_scored_split(split, subset: str, progress: Progress = _noop):
    """(path, verification report, root group, split metadata, segmentation parameters) of a
    split that verifies and has ``subset``; what every scored run starts from."""
    try:
        split_path, report = resolve(
            split, subset, lambda name, done, total: progress("build", done, total, name))
        report = require_ok(report or verify(split_path))
    except SplitError as exc:
        raise EvaluationError(str(exc)) from None
    root = open_group(split_path, mode="r")
    meta = dict(root.attrs["bonesr"])
    if subset not in meta.get("parts", []) or subset not in root:
        raise EvaluationError(f"{split_path} has no {subset} part; build it with "
                              f"`bonesr-bench data build --split {subset} --out {split_path}`")
    return split_path, report, root, meta, segmentation_params(meta)["hr"]


def _scan_record(root, meta: dict, subset: str) -> dict:
    """What a result says of the split's origin: generated, or built from scans with each
    scored specimen's registration NCC (a poorly registered specimen makes its scores suspect)."""
    if not is_from_scans(meta):
        return {"source": "synthetic"}
    return {"source": "scans", "registration_ncc": {
        name: float(root[f"{subset}/{name}"].attrs["registration"]["ncc"])
        for name in sorted(root[subset].group_keys())}}


def _header(entry: str, split_path: Path, report: VerifyReport, root, meta: dict, subset: str,
            params: SegmentationParams, device: str, refs: dict, submission: dict,
            selected: list[str] | None = None) -> dict:
    """The fields every result shares: schema, entry, code, split, conventions, environment.
    ``selected``: the specimens scored when only some of the subset were (--specimens)."""
    return {
        "schema_version": result.SCHEMA_VERSION,
        "entry": entry,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": {"bonesr_bench": result.__version__, "git_commit": result.git_commit(),
                 "code_sha256": result.code_sha256()},
        "split": {"id": meta.get("split"), "version": str(meta.get("version")),
                  "path": str(split_path), "subset": subset,
                  "fingerprint": meta["fingerprint"], "scale": int(meta["scale"]),
                  "hr_voxel_um": float(meta["hr_voxel_um"]),
                  "lr_voxel_um": float(meta["lr_voxel_um"]), "canonical": report.canonical,
                  "comparable": report.comparable,
                  "n_specimens": len(list(root[subset].group_keys())),
                  **({"selected": list(selected)} if selected else {}),
                  **_scan_record(root, meta, subset)},
        "conventions": {"metrics": metrics.CONVENTIONS, "morphometry": MORPHOMETRY_CONVENTIONS,
                        "segmentation": {**params.as_dict(),
                                         "window_unit": calibration(meta)["unit"],
                                         "grids": {g: p.as_dict() for g, p in
                                                   segmentation_params(meta).items()},
                                         "rule": meta["segmentation"].get("rule")},
                        "errors": {**scoring.ERROR_CONVENTIONS,
                                   "bio_keys": list(scoring.BIO_KEYS)}},
        "submission": submission,
        "environment": result.environment(device),
        "references": refs,
    }


def _gallery(root, subset: str, names: list[str], window, images: dict) -> dict:
    """The result's gallery crop (see :mod:`gallery`). ``images`` maps a label to (stored array
    of the split's first specimen, HR voxels per voxel, intensity or mask); only the crop's slice
    is read; intensity arrays are raw uint16 in the split's calibration."""
    from bonesr_bench.evaluation import gallery

    cal = calibration(dict(root.attrs.get("bonesr", {})))
    spec = gallery.crop_spec(names, np.asarray(
        root[f"{subset}/{sorted(names)[0]}/labels/regions/0"][...]))
    out = {}
    for label, (array, scale, intensity) in images.items():
        c = gallery.crop(array, spec, scale)
        out[label] = (gallery.png_base64(from_raw(c, cal), window, spec["size"]) if intensity else
                      gallery.png_base64(c != 0, None, spec["size"]))
    return {**spec, "images": out}
