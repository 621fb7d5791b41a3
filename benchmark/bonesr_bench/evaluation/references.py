"""The reference rows: the HR scan, the LR scan on its own grid and the true geometry,
segmented and measured like every entry, cached per split fingerprint and scoring conventions;
and the HR/LR reference results of a leaderboard."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import zarr

from bonesr_bench import scoring
from bonesr_bench.evaluation import result
from bonesr_bench.evaluation.common import (
    EvaluationError,
    Progress,
    _gallery,
    _header,
    _noop,
    _open_scored_split,
)
from bonesr_bench.files import jsonable, write_json
from bonesr_bench.morphometry import CONVENTIONS as MORPHOMETRY_CONVENTIONS
from bonesr_bench.scoring import SpecimenScore
from bonesr_bench.scoring import perceptual as metrics
from bonesr_bench.scoring.segmentation import SegmentationParams
from bonesr_bench.split import (
    segmentation_params,
)


def _scoring_key(params: SegmentationParams, lr_params: SegmentationParams | None = None) -> str:
    """What scores depend on besides the data: conventions and segmentation parameters (of the
    HR grid, and of the LR grid for the reference rows)."""
    seg = params.as_dict() if lr_params is None else {"hr": params.as_dict(),
                                                       "lr": lr_params.as_dict()}
    blob = json.dumps({"metrics": metrics.CONVENTIONS, "morphometry": MORPHOMETRY_CONVENTIONS,
                       "segmentation": seg, "errors": scoring.ERROR_CONVENTIONS},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reference_rows(path: Path, root: zarr.Group, meta: dict, subset: str,
                   params: SegmentationParams, *, device: str | None = None,
                   progress: Progress = _noop, cache_dir: Path | None = None,
                   names: list[str] | None = None, scorer=None) -> dict:
    """{specimen: {"hr": ..., "lr": ..., "truth": ... or None}} morphometry of ``names`` (default:
    every specimen of ``subset``), cached per split fingerprint, subset and scoring conventions
    (rows computed once, whichever run asked first). The HR scan is segmented with ``params``
    (the HR grid's), the LR scan on its own grid with the LR grid's parameters of the split.
    ``scorer`` (an :class:`evaluation.parallel.Scorer`): where the rows are computed, one task
    per specimen (default inline)."""
    from platformdirs import user_cache_dir

    from bonesr_bench.evaluation.parallel import Scorer, reference_task

    lr_params = segmentation_params(meta)["lr"]
    cache_dir = cache_dir or Path(user_cache_dir("bonesr-bench")) / "references"
    cache = cache_dir / (f"{meta['fingerprint'][:16]}-{subset}-"
                         f"{_scoring_key(params, lr_params)}.json")
    names = sorted(names if names is not None else root[subset].group_keys())
    rows = {}
    if cache.exists():
        try:
            rows = dict(json.loads(cache.read_text())["rows"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            rows = {}  # a damaged cache is recomputed
    todo = [n for n in names if n not in rows]
    if not todo:
        return {n: rows[n] for n in names}
    scorer = scorer or Scorer()
    futures = {}
    for i, name in enumerate(todo):
        if not scorer.parallel:  # inline: each row is computed here
            progress("references", i, len(todo), name)
        futures[name] = scorer.submit(reference_task, str(path), subset, name, params,
                                      lr_params, device,
                                      key=f"reference-{subset}-{name}-{cache.stem}")
    for i, (name, future) in enumerate(scorer.wait_all(futures)):
        rows[name] = scorer.gather(future)
        if scorer.parallel:
            progress("references", i + 1, len(todo), name)
    progress("references", len(todo), len(todo), "")
    write_json(cache, {"split": meta.get("split"), "fingerprint": meta["fingerprint"],
                       "subset": subset, "path": str(path), "rows": rows})
    return {n: rows[n] for n in names}


#: The reference rows of a leaderboard: the scans themselves, segmented like every entry.
REFERENCE_SCANS = {
    "hr": ("hr-scan", "the HR scan ({hr:g} µm) segmented like every entry"),
    "lr": ("lr-scan", "the LR scan ({lr:g} µm) segmented on its own grid, as in the study's "
                      "Table I"),
}


def reference_result(scan: str, split: str | Path | None = None, subset: str = "test",
                     progress: Progress = _noop) -> dict:
    """A result (status ``reference``) for the HR or the LR scan itself: its parameters per
    specimen, its errors against HR and the true geometry, aggregated like an entry's; no
    PSNR/SSIM (there is no SR image). The leaderboard's HR and LR rows."""
    return reference_results((scan,), split, subset, progress)[scan]


def reference_results(scans=tuple(REFERENCE_SCANS), split: str | Path | None = None,
                      subset: str = "test", progress: Progress = _noop, *, workers: int = 1,
                      scheduler: str | None = None) -> dict[str, dict]:
    """{scan: :func:`reference_result`} for several scans, opening and verifying the split once;
    rows not yet cached are computed on ``workers`` Dask processes (or at ``scheduler``)."""
    from bonesr_bench.evaluation.parallel import Scorer

    for scan in scans:
        if scan not in REFERENCE_SCANS:
            raise EvaluationError(f"reference scan {scan!r}: use one of "
                                  f"{', '.join(REFERENCE_SCANS)}")
    t0 = time.perf_counter()
    split_path, report, root, meta, params = _open_scored_split(split, subset, progress)
    scorer = Scorer(workers, scheduler)
    scorer.check_location(split_path)
    with scorer:
        refs = reference_rows(split_path, root, meta, subset, params, progress=progress,
                              scorer=scorer)
    names = sorted(root[subset].group_keys())
    return {scan: _reference_result(scan, split_path, report, root, meta, params, subset, refs,
                                    names, t0) for scan in scans}


def _reference_result(scan: str, split_path, report, root, meta, params, subset, refs, names,
                      t0) -> dict:
    blank = {"psnr_db": None, "ssim": None, "psnr_3d_db": None, "ssim_3d": None, "n_slices": 0}
    scores = [SpecimenScore(n, dict(blank), refs[n][scan], 0.0) for n in names]
    rows, agg = scoring.aggregate(scores, refs)
    entry, what = REFERENCE_SCANS[scan]
    what = what.format(hr=float(meta["hr_voxel_um"]), lr=float(meta["lr_voxel_um"]))

    def pct(s):
        return "n/a" if s["mean"] is None else (f"{100 * s['mean']:.1f} % (95 % CI "
                                                f"{100 * s['ci95'][0]:.1f}-"
                                                f"{100 * s['ci95'][1]:.1f})")

    sentence = f"Reference row: {what}. Biological error against the true geometry " \
               f"{pct(agg['bio_err_vs_truth'])}" if "bio_err_vs_truth" in agg else \
               f"Reference row: {what}"
    if scan == "lr":
        sentence += f"; against the HR scan {pct(agg['bio_err_vs_hr'])}"
    run = {"device": "cpu", "batch_size": None, "amp": False, "timeout_s": None, "n_clipped": 0,
           "determinism": {"checked": False, "identical": None}, "resumed": []}
    g = root[f"{subset}/{names[0]}"]
    images = {scan: (g[f"{scan}/0"], 1 if scan == "hr" else int(meta["scale"]), True)}
    if scan == "hr" and "labels/truth" in g:  # the true geometry shown once, with HR
        images["truth"] = (g["labels/truth/0"], 1, False)
    res = {**_header(entry, split_path, report, root, meta, subset, params, "cpu", refs,
                     {"source": f"reference:{scan}", "source_sha256": None}),
           "status": "reference", "reason": None, "model": None, "run": run,
           "timings": {"total_s": time.perf_counter() - t0}, "specimens": rows,
           "aggregates": agg, "summary": {"verdict": "reference", "sentence": sentence + "."},
           "gallery": _gallery(root, subset, names, params.window, images)}
    res = jsonable(res)
    result.validate(res)
    return res
