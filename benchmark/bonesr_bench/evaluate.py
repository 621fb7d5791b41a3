"""Evaluate a submission on a split: split -> model (isolated worker) -> SR -> scores -> result.

:func:`evaluate` is what ``bonesr-bench evaluate`` calls. It never writes to the split; it writes
only inside ``<out>/<entry>/``: ``sr.zarr`` (the SR volumes, OME-Zarr like the split, with each
specimen's run statistics and scores), ``worker.log`` (the model's own output) and the result
JSON, written atomically. A specimen is marked complete in ``sr.zarr`` only after its volume and
scores are written, so an interrupted run resumes where it stopped. A failed run writes a result
marked ``failed`` with the reason, to ``result.json`` unless a scored result is already there, in
which case to ``result.failed.json``: an earlier score is never replaced by a failure.

Reference rows (the segmented morphometry of the HR scan, of the LR scan on its own grid, and of
the true geometry) are computed once per split fingerprint and scoring conventions, and cached in
the per-user cache directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from . import metrics, result, scoring
from .models import SubmissionError, entry_name, is_file_source, source_sha256
from .morphometry import CONVENTIONS as MORPHOMETRY_CONVENTIONS
from .scoring import SpecimenScore
from .segmentation import SegmentationParams, normalise
from .split import (
    DEFAULT_SPLIT,
    SPLITS,
    SplitError,
    VerifyReport,
    array_sha256,
    calibration,
    default_path,
    ensure_report,
    from_raw,
    is_from_scans,
    require_ok,
    segmentation_params,
    to_raw,
    verify,
    write_image,
)

__all__ = ["EvaluationError", "EvaluateOptions", "Outcome", "evaluate", "reference_rows",
           "reference_result", "reference_results", "REFERENCE_SCANS", "resolve_split"]

#: Progress callback: (stage, done, total, info). Stages: build, references, model, score,
#: determinism.
Progress = Callable[[str, float, float, str], None]


class EvaluationError(RuntimeError):
    """A usage or data error (exit code 2): one line naming the problem and the fix."""


@dataclass
class EvaluateOptions:
    split: str | Path | None = None  # a split name (v1, mini, bonebox) or a store path
    subset: str = "test"
    out: Path = Path("runs")
    entry: str | None = None  # run folder name; default from the source
    device: str = "auto"
    batch_size: int | None = None  # None: auto
    amp: bool = False
    timeout_s: float = 600.0  # per specimen (the first includes loading the model)
    force: bool = False
    check_determinism: bool = False
    memory_gb: float | None = 16.0  # the worker's address-space cap on the CPU


@dataclass
class Outcome:
    result: dict
    path: Path
    exit_code: int  # 0 scored, 1 the submission failed


def _noop(stage, done, total, info=""):
    pass


def resolve_split(split: str | Path | None, subset: str = "test",
                  progress: Progress = _noop) -> tuple[Path, VerifyReport | None]:
    """(store to score on, its verification report if already verified): a named split in the
    cache (built on first use) or a path."""
    if split is None or str(split) in SPLITS:
        config = SPLITS[str(split) if split is not None else DEFAULT_SPLIT]
        path = default_path(config)
        part = subset if config.name in ("v1", "v2") else "all"
        n = len(config.specimens(part))
        return ensure_report(path, config, part=part, workers=None,
                             progress=lambda name, done, total: progress("build", done, n, name))
    path = Path(split)
    if not path.exists():
        raise EvaluationError(f"--split {path}: no split there; give a split name "
                              f"({', '.join(SPLITS)}) or build one with `bonesr-bench data build "
                              f"--out {path}`")
    return path, None


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
                   progress: Progress = _noop, cache_dir: Path | None = None) -> dict:
    """{specimen: {"hr": ..., "lr": ..., "truth": ... or None}} morphometry, cached per split
    fingerprint, subset and scoring conventions. The HR scan is segmented with ``params`` (the
    HR grid's), the LR scan on its own grid with the LR grid's parameters of the split."""
    from platformdirs import user_cache_dir

    lr_params = segmentation_params(meta)["lr"]
    cache_dir = cache_dir or Path(user_cache_dir("bonesr-bench")) / "references"
    cache = cache_dir / (f"{meta['fingerprint'][:16]}-{subset}-"
                         f"{_scoring_key(params, lr_params)}.json")
    if cache.exists():
        try:
            return json.loads(cache.read_text())["rows"]
        except (json.JSONDecodeError, KeyError):
            pass  # a damaged cache is recomputed
    s = int(meta["scale"])
    hr_um, lr_um = float(meta["hr_voxel_um"]), float(meta["lr_voxel_um"])
    names = sorted(root[subset].group_keys())
    cal = calibration(meta)
    rows = {}
    for i, name in enumerate(names):
        progress("references", i, len(names), name)
        g = root[f"{subset}/{name}"]
        regions = np.asarray(g["labels/regions/0"][...])
        hr = from_raw(np.asarray(g["hr/0"][...]), cal)
        lr = from_raw(np.asarray(g["lr/0"][...]), cal)
        row = {"hr": scoring.measure(hr, hr_um, regions, params, device=device),
               "lr": scoring.measure(lr, lr_um, regions[::s, ::s, ::s], lr_params,
                                     device=device),
               "truth": None}
        if "labels/truth" in g:
            from .morphometry import morphometry

            truth = np.asarray(g["labels/truth/0"][...]) != 0
            row["truth"] = morphometry(truth, hr_um, regions=regions, device=device)
        rows[name] = result.jsonable(row)
    progress("references", len(names), len(names), "")
    result.write_atomic(cache, {"split": meta.get("split"), "fingerprint": meta["fingerprint"],
                                "subset": subset, "path": str(path), "rows": rows})
    return rows


def _open_scored_split(split, subset: str, progress: Progress = _noop):
    """(path, verification report, root group, split metadata, segmentation parameters) of a
    split that verifies and has ``subset``; what every scored run starts from."""
    try:
        split_path, report = resolve_split(split, subset, progress)
        report = require_ok(report or verify(split_path))
    except SplitError as exc:
        raise EvaluationError(str(exc)) from None
    root = zarr.open_group(str(split_path), mode="r")
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
            params: SegmentationParams, device: str, refs: dict, submission: dict) -> dict:
    """The fields every result shares: schema, entry, code, split, conventions, environment."""
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
    from . import gallery

    cal = calibration(dict(root.attrs.get("bonesr", {})))
    spec = gallery.crop_spec(names, np.asarray(
        root[f"{subset}/{sorted(names)[0]}/labels/regions/0"][...]))
    out = {}
    for label, (array, scale, intensity) in images.items():
        c = gallery.crop(array, spec, scale)
        out[label] = (gallery.png_base64(from_raw(c, cal), window, spec["size"]) if intensity else
                      gallery.png_base64(c != 0, None, spec["size"]))
    return {**spec, "images": out}


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
                      subset: str = "test", progress: Progress = _noop) -> dict[str, dict]:
    """{scan: :func:`reference_result`} for several scans, opening and verifying the split once."""
    for scan in scans:
        if scan not in REFERENCE_SCANS:
            raise EvaluationError(f"reference scan {scan!r}: use one of "
                                  f"{', '.join(REFERENCE_SCANS)}")
    t0 = time.perf_counter()
    split_path, report, root, meta, params = _open_scored_split(split, subset, progress)
    refs = reference_rows(split_path, root, meta, subset, params, progress=progress)
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
    res = result.jsonable(res)
    result.validate(res)
    return res


def _run_key(source_sha: str | None, source: str, fp: str, subset: str, amp: bool) -> str:
    blob = json.dumps([source_sha or source, fp, subset, amp])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _open_store(run_dir: Path, key: str, force: bool) -> tuple[zarr.Group, Path]:
    """(store, its path) to write SR volumes to. ``sr.zarr`` when it is absent or holds this
    run's volumes; with ``force`` and another run's volumes there, a staging ``sr.next.zarr``
    that replaces ``sr.zarr`` only once the new run is scored."""
    sr_path = run_dir / "sr.zarr"
    if sr_path.exists():
        try:
            old = zarr.open_group(str(sr_path), mode="r").attrs.get("bonesr_run", {})
        except Exception:  # noqa: BLE001 - an unreadable store is replaced only with --force
            old = {"run_key": "unreadable"}
        if old.get("run_key") not in (key, None):
            if not force:
                raise EvaluationError(
                    f"{sr_path} holds SR volumes of another version of this submission (or of "
                    "another split); pass --force to replace them, or --name to keep both")
            sr_path = run_dir / "sr.next.zarr"
            shutil.rmtree(sr_path, ignore_errors=True)
    return zarr.open_group(str(sr_path), mode="a", zarr_format=2), sr_path


def _score_from_store(g, key: str) -> SpecimenScore | None:
    s = g.attrs.get("score")
    if not s or s.get("scoring_key") != key:
        return None
    return SpecimenScore(s["name"], s["perceptual"], s["morphometry"], s["seconds"])


def _sentence(entry: str, agg: dict, verdict: str, ref: str = "HR") -> str:
    e, lr = agg["bio_err_vs_hr"], agg["lr_bio_err_vs_hr"]
    d = agg["bio_err_minus_lr_vs_hr"]

    def fmt(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    def ci(c):
        return "n/a" if c[0] is None else f"{100 * c[0]:.1f}-{100 * c[1]:.1f} %"

    what = {"better": "beats the LR scan biologically",
            "worse": "is biologically worse than the LR scan it was given",
            "tied": "does not beat the LR scan biologically (the difference is within the "
                    "bootstrap interval)"}[verdict]
    diff = "n/a" if d["mean"] is None else f"{100 * d['mean']:+.1f} points"
    dci = ("" if d["ci95"][0] is None else
           f", 95 % CI {100 * d['ci95'][0]:+.1f} to {100 * d['ci95'][1]:+.1f}")
    return (f"{entry} {what}: its biological error against {ref} is {fmt(e['mean'])} "
            f"(95 % CI {ci(e['ci95'])}) against {fmt(lr['mean'])} for the LR scan "
            f"(difference {diff}{dci}).")


def evaluate(source: str, opts: EvaluateOptions | None = None,
             progress: Progress = _noop) -> Outcome:
    """Run ``source`` on a split and score it; see the module docstring."""
    from .morphometry.torch_backend import resolve_device
    from .worker import IsolatedRun

    opts = opts or EvaluateOptions()
    t_start = time.perf_counter()
    try:
        device = resolve_device(opts.device).type  # "cpu" or "cuda"
    except (ValueError, RuntimeError) as exc:
        raise EvaluationError(str(exc)) from None
    if opts.batch_size is not None and opts.batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {opts.batch_size}")
    if not opts.timeout_s > 0:
        raise EvaluationError(f"--timeout must be a positive number of seconds, got "
                              f"{opts.timeout_s}")
    if opts.subset not in ("test", "train"):
        raise EvaluationError(f"subset must be test or train, got {opts.subset!r}")
    if is_file_source(source) and not Path(source).is_file():
        raise EvaluationError(f"{source}: no such file; give a submission .py file, a "
                              "package.module:attribute or an installed model name "
                              "(`bonesr-bench models`)")
    entry = opts.entry or entry_name(source)
    if not entry or not (entry[0].isalnum() and all(c.isalnum() or c in "._-" for c in entry)):
        raise EvaluationError(f"--name {entry!r}: use letters, digits, '.', '_' and '-' only")

    # the split: built on first use when named, verified always, opened read-only
    t0 = time.perf_counter()
    split_path, report, root, meta, params = _open_scored_split(opts.split, opts.subset,
                                                                 progress)
    window = tuple(params.window)
    cal = calibration(meta)
    scale = int(meta["scale"])
    hr_um = float(meta["hr_voxel_um"])
    names = sorted(root[opts.subset].group_keys())
    split_s = time.perf_counter() - t0

    run_dir = Path(opts.out) / entry
    run_dir.mkdir(parents=True, exist_ok=True)
    src_sha = source_sha256(source)
    key = _run_key(src_sha, source, meta["fingerprint"], opts.subset, opts.amp)
    store, store_path = _open_store(run_dir, key, opts.force)
    morph_device = "cuda" if device == "cuda" else None

    t0 = time.perf_counter()
    refs = reference_rows(split_path, root, meta, opts.subset, params, device=morph_device,
                          progress=progress)
    references_s = time.perf_counter() - t0

    skey = _scoring_key(params)
    base = _header(entry, split_path, report, root, meta, opts.subset, params, device, refs,
                   {"source": source, "source_sha256": src_sha})
    run_info = {"device": device, "batch_size": opts.batch_size, "amp": opts.amp,
                "timeout_s": opts.timeout_s, "n_clipped": 0,
                "determinism": {"checked": opts.check_determinism, "identical": None},
                "resumed": []}
    manifest = store.attrs.get("bonesr_run", {}).get("manifest")
    timings = {"split_s": split_s, "references_s": references_s, "model_s": 0.0,
               "worker_s": 0.0, "scoring_s": 0.0}
    scores: dict[str, SpecimenScore] = {}

    def fail(reason: str) -> Outcome:
        res = {**base, "status": "failed", "reason": reason, "model": manifest, "run": run_info,
               "timings": {**timings, "total_s": time.perf_counter() - t_start},
               "specimens": [], "aggregates": None,
               "summary": {"verdict": "failed", "sentence": f"{entry} failed: {reason}"}}
        res = result.jsonable(res)
        result.validate(res)
        target = run_dir / "result.json"
        if target.exists():
            try:
                if json.loads(target.read_text()).get("status") == "scored":
                    target = run_dir / "result.failed.json"
            except json.JSONDecodeError:
                pass
        return Outcome(res, result.write_atomic(target, res), 1)

    def hr_and_regions(name):
        g = root[f"{opts.subset}/{name}"]
        return (from_raw(np.asarray(g["hr/0"][...]), cal),
                np.asarray(g["labels/regions/0"][...]))

    def score(name: str, sr_mu: np.ndarray) -> SpecimenScore:
        hr, regions = hr_and_regions(name)
        return scoring.score_specimen(name, sr_mu, hr, regions, voxel_um=hr_um, window=window,
                                      shave=scale, params=params, device=morph_device)

    lo, hi = window

    def to_store(sr01):  # [0, 1] model output -> uint16 raw in the split's calibration
        return to_raw(lo + sr01.astype(np.float32) * (hi - lo), cal)

    done = [n for n in names if not opts.force and f"{opts.subset}/{n}" in store
            and store[f"{opts.subset}/{n}"].attrs.get("complete")]
    todo = [n for n in names if n not in done]
    run_info["resumed"] = done
    n_slices = {n: scale * int(root[f"{opts.subset}/{n}/lr/0"].shape[0]) for n in names}

    def worker(which: list[str], stage: str, log: str) -> tuple[IsolatedRun, dict, int]:
        """(worker over the LR of ``which``, SR slices before each specimen, total slices)."""
        lrs = [normalise(from_raw(np.asarray(root[f"{opts.subset}/{n}/lr/0"][...]), cal),
                         window)
               for n in which]
        total = sum(n_slices[n] for n in which)
        before = {n: sum(n_slices[m] for m in which[:i]) for i, n in enumerate(which)}
        run = IsolatedRun(source, lrs, device=device, batch_size=opts.batch_size, amp=opts.amp,
                          timeout_s=opts.timeout_s, memory_gb=opts.memory_gb,
                          expected_scale=scale, log_path=run_dir / log,
                          progress=lambda i, d, t: progress(stage, before[which[i]] + d, total,
                                                            which[i]))
        return run, before, total

    try:
        if todo:
            t0 = time.perf_counter()
            run, before, total = worker(todo, "model", "worker.log")
            with run:
                for out in run:
                    name = todo[out.index]
                    if manifest is not None and run.manifest is not None and \
                            manifest.get("weights_sha256") != run.manifest.get("weights_sha256"):
                        raise EvaluationError(
                            f"{store_path}: the model's weights changed since its "
                            "stored SR volumes were made; pass --force to recompute them")
                    manifest = run.manifest
                    progress("model", before[name] + n_slices[name], total, name)
                    raw = to_store(out.sr)
                    g = store.require_group(f"{opts.subset}/{name}")
                    g.attrs["complete"] = False
                    sha = write_image(g, "sr", raw, hr_um)
                    s = score(name, from_raw(raw, cal))
                    scores[name] = s
                    g.attrs.update({"sha256": sha, "stats": out.stats.as_dict(),
                                    "score": result.jsonable({**s.as_dict(),
                                                              "scoring_key": skey})})
                    g.attrs["complete"] = True
                    store.attrs["bonesr_run"] = {"run_key": key, "entry": entry,
                                                 "source": source,
                                                 "split_fingerprint": meta["fingerprint"],
                                                 "manifest": manifest}
                    progress("score", len(scores), len(names), name)
            timings["worker_s"] = time.perf_counter() - t0
        for name in done:
            g = store[f"{opts.subset}/{name}"]
            s = _score_from_store(g, skey)
            if s is None:  # scored under other conventions: score the stored volume again
                s = score(name, from_raw(np.asarray(g["sr/0"][...]), cal))
                g.attrs["score"] = result.jsonable({**s.as_dict(), "scoring_key": skey})
            scores[name] = s
            progress("score", len(scores), len(names), name)
        stats = [store[f"{opts.subset}/{n}"].attrs["stats"] for n in names]
        run_info["n_clipped"] = int(sum(st["n_clipped"] for st in stats))
        run_info["batch_size"] = opts.batch_size or stats[0].get("batch_size")
        timings["model_s"] = float(sum(st["seconds_in_model"] for st in stats))

        if opts.check_determinism:
            differ = []
            run, _, _ = worker(names, "determinism", "worker.determinism.log")
            with run:
                for out in run:
                    name = names[out.index]
                    if array_sha256(to_store(out.sr)) != \
                            store[f"{opts.subset}/{name}"].attrs["sha256"]:
                        differ.append(name)
            run_info["determinism"]["identical"] = not differ
            if differ:
                raise SubmissionError(
                    f"{source}: the output changed between two runs on the same input "
                    f"({len(differ)} of {len(names)} specimens: {', '.join(differ[:3])}); make "
                    "the model deterministic (fixed seeds, no dropout at inference, "
                    "torch.use_deterministic_algorithms)")
    except SubmissionError as exc:
        return fail(str(exc))

    timings["scoring_s"] = float(sum(scores[n].seconds for n in names))
    rows, agg = scoring.aggregate([scores[n] for n in names], refs)
    verdict = scoring.verdict(agg)
    timings["total_s"] = time.perf_counter() - t_start
    slices = sum(n_slices.values())
    timings["slices"] = slices
    timings["slices_per_s_model"] = slices / timings["model_s"] if timings["model_s"] else None
    timings["overhead_s"] = timings["total_s"] - timings["model_s"]
    sr_first = store[f"{opts.subset}/{sorted(names)[0]}/sr/0"]
    res = {**base, "status": "scored", "reason": None, "model": manifest, "run": run_info,
           "timings": timings, "specimens": rows, "aggregates": agg,
           "gallery": _gallery(root, opts.subset, names, window, {"sr": (sr_first, 1, True)}),
           "summary": {"verdict": verdict,
                       "sentence": _sentence(manifest["name"] if manifest else entry, agg,
                                             verdict)}}
    res = result.jsonable(res)
    result.validate(res)
    if store_path.name != "sr.zarr":  # a forced run of a changed submission: replace the volumes
        shutil.rmtree(run_dir / "sr.zarr")
        store_path.rename(run_dir / "sr.zarr")
    return Outcome(res, result.write_atomic(run_dir / "result.json", res), 0)
