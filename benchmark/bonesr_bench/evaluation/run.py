"""Scoring one submission: run it in the isolated worker on the split's LR scans, store and
score each SR volume, aggregate, write the result (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
from bonesr_bench.evaluation.references import _scoring_key, reference_rows
from bonesr_bench.files import jsonable, write_json
from bonesr_bench.models import (
    SubmissionError,
    entry_name,
    is_file_source,
    source_sha256,
    split_file_source,
)
from bonesr_bench.scoring import SpecimenScore
from bonesr_bench.split import (
    array_sha256,
    calibration,
    from_raw,
    normalise,
    to_raw,
    write_image,
)


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
    sandbox: str = "auto"  # required | auto | off: the worker's confinement (models.sandbox)
    #: score only these specimens of the subset (e.g. a model's validation specimens); such a
    #: result records them (split.selected) and cannot join the leaderboard
    specimens: tuple[str, ...] | None = None
    #: per-specimen scoring and reference rows as Dask tasks (evaluation.parallel): on a
    #: LocalCluster of ``workers`` processes, or on the cluster at ``scheduler``; 1: inline
    workers: int = 1
    scheduler: str | None = None
    #: score the SR volumes an earlier run stored, under today's conventions, never running the
    #: model (``leaderboard rescore``); every specimen must be stored and complete
    rescore: bool = False
    #: with ``rescore``: the committed result's model manifest, which the stored volumes' must
    #: match (their weights' sha256), so that the volumes are the committed entry's
    rescore_model: dict | None = None


@dataclass
class Outcome:
    result: dict
    path: Path
    exit_code: int  # 0 scored, 1 the submission failed


def _run_key(source_sha: str | None, source: str, fp: str, subset: str, amp: bool,
             sandbox: str = "auto", specimens: tuple[str, ...] | None = None) -> str:
    """What stored SR volumes must match to be resumed. The factory of a ``file.py:factory``
    source and a --specimens choice enter the key only when given (older keys stay valid)."""
    factory = split_file_source(source)[1]  # "load" for anything but FILE.py:FACTORY
    blob = json.dumps([source_sha or source, fp, subset, amp]
                      + ([sandbox] if sandbox != "auto" else [])
                      + ([factory] if factory != "load" else [])
                      + ([sorted(specimens)] if specimens else []))
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


def _check_options(source: str, opts: EvaluateOptions) -> tuple[str, str]:
    """(device "cpu" or "cuda", entry name) once the options are valid; else EvaluationError."""
    from bonesr_bench.morphometry.torch_backend import resolve_device
    from bonesr_bench.names import check_name

    try:
        device = resolve_device(opts.device).type
    except (ValueError, RuntimeError) as exc:
        raise EvaluationError(str(exc)) from None
    if opts.batch_size is not None and opts.batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {opts.batch_size}")
    if not opts.timeout_s > 0:
        raise EvaluationError(f"--timeout must be a positive number of seconds, got "
                              f"{opts.timeout_s}")
    if not opts.rescore:  # a rescore runs no model: nothing to confine, no file to import
        _check_sandbox(opts.sandbox)
    if opts.rescore and (opts.force or opts.check_determinism):
        raise EvaluationError("a rescore never runs the model: drop --force and "
                              "--check-determinism")
    if opts.subset not in ("test", "train"):
        raise EvaluationError(f"subset must be test or train, got {opts.subset!r}")
    if is_file_source(source) and not opts.rescore:
        path = Path(split_file_source(source)[0])
        if not path.is_file():
            where = (" (baselines/ and submissions/ come with a checkout of bonesr-bench; an "
                     "installed package has the bicubic model: `bonesr-bench evaluate bicubic`)"
                     if path.parts and path.parts[0] in ("baselines", "submissions") else "")
            raise EvaluationError(f"{source}: no such file; give a submission .py file, a "
                                  "package.module:attribute or an installed model name "
                                  f"(`bonesr-bench models`){where}")
        if path.suffix != ".py":
            raise EvaluationError(f"{source}: a submission file is Python source (.py); give "
                                  "the model's .py file, a package.module:attribute or an "
                                  "installed model name")
    entry = opts.entry or entry_name(source)
    try:
        check_name(entry, "--name")
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    return device, entry


def _check_sandbox(mode: str) -> None:
    """--sandbox: one of required | auto | off; required refuses a kernel that cannot confine."""
    from bonesr_bench.models.sandbox import MODES, landlock_abi, namespace_prefix

    if mode not in MODES:
        raise EvaluationError(f"--sandbox must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "required":
        abi = landlock_abi()
        if abi < 4 or not namespace_prefix():
            what = (f"Landlock ABI {abi} (needs >= 4 for its network rules)" if abi else
                    "no Landlock") + ("" if namespace_prefix() else
                                      ", no unprivileged user namespaces (unshare)")
            raise EvaluationError(f"--sandbox required: this kernel cannot confine the model "
                                  f"({what}); run on Linux >= 6.7 with user namespaces, or "
                                  "pass --sandbox auto to run it unconfined (recorded)")


class _Run:
    """One evaluation's state: the split opened, the run folder and its SR store, the reference
    rows, and what has been scored; each step below is one method."""

    def __init__(self, source: str, opts: EvaluateOptions, progress: Progress):
        self.t_start = time.perf_counter()
        self.source, self.opts, self.progress = source, opts, progress
        self.device, self.entry = _check_options(source, opts)
        self.morph_device = "cuda" if self.device == "cuda" else None
        self.timings = {"split_s": 0.0, "references_s": 0.0, "model_s": 0.0, "worker_s": 0.0,
                        "scoring_s": 0.0}
        self.scores: dict[str, SpecimenScore] = {}
        self.pending: dict = {}  # specimen -> its score's future
        from bonesr_bench.evaluation.parallel import Scorer

        self.scorer = Scorer(opts.workers, opts.scheduler)

    # -- open split, run store, references ------------------------------------------------
    def open_split(self) -> None:
        """The split built on first use when named, verified always, opened read-only."""
        t0 = time.perf_counter()
        (self.split_path, self.report, self.root, self.meta,
         self.params) = _open_scored_split(self.opts.split, self.opts.subset, self.progress)
        self.scorer.check_location(self.split_path)
        self.window = tuple(self.params.window)
        self.cal = calibration(self.meta)
        self.scale = int(self.meta["scale"])
        self.hr_um = float(self.meta["hr_voxel_um"])
        self.names = sorted(self.root[self.opts.subset].group_keys())
        if self.opts.specimens:
            unknown = sorted(set(self.opts.specimens) - set(self.names))
            if unknown:
                raise EvaluationError(
                    f"--specimens: {', '.join(unknown)} not in the {self.opts.subset} part of "
                    f"{self.split_path} (it has {', '.join(self.names)})")
            self.names = sorted(set(self.opts.specimens))
        self.n_slices = {n: self.scale * int(self.group(n)["lr/0"].shape[0]) for n in self.names}
        self.timings["split_s"] = time.perf_counter() - t0

    def group(self, name: str):
        return self.root[f"{self.opts.subset}/{name}"]

    def open_run_store(self) -> None:
        """The run folder OUT/ENTRY (one per split: see :func:`run_dir`) and its SR store."""
        self.run_dir = run_dir(self.opts.out, self.entry, self.meta.get("split"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.src_sha = source_sha256(self.source)
        self.key = _run_key(self.src_sha, self.source, self.meta["fingerprint"],
                            self.opts.subset, self.opts.amp, self.opts.sandbox,
                            self.opts.specimens)
        if self.opts.rescore:
            self._open_for_rescore()
        else:
            self.store, self.store_path = _open_store(self.run_dir, self.key, self.opts.force)
        self.manifest = self.store.attrs.get("bonesr_run", {}).get("manifest")
        self.done = [] if self.opts.force else [
            n for n in self.names if (g := self.stored(n)) is not None and g.attrs.get("complete")]
        self.run_info = {"device": self.device, "batch_size": self.opts.batch_size,
                         "amp": self.opts.amp, "timeout_s": self.opts.timeout_s, "n_clipped": 0,
                         "determinism": {"checked": self.opts.check_determinism,
                                         "identical": None},
                         "resumed": self.done,
                         "sandbox": self.store.attrs.get("bonesr_run", {}).get("sandbox")}

    def _open_for_rescore(self) -> None:
        """The run's own store, whatever the source file's sha256 is today: its volumes, run
        key and manifest are kept; only their scores are made again."""
        path = self.run_dir / "sr.zarr"
        try:
            store = zarr.open_group(str(path), mode="a", zarr_format=2)
            info = dict(store.attrs["bonesr_run"])
        except Exception:  # noqa: BLE001 - absent or unreadable: nothing to rescore
            raise EvaluationError(f"{path}: no stored SR volumes to rescore; evaluate the entry "
                                  "again (bonesr-bench evaluate SOURCE --name ENTRY)") from None
        if info.get("split_fingerprint") != self.meta["fingerprint"]:
            raise EvaluationError(f"{path}: its SR volumes were made on another split "
                                  f"({str(info.get('split_fingerprint'))[:16]}); evaluate the "
                                  "entry again on this one")
        want = (self.opts.rescore_model or {}).get("weights_sha256")
        have = (info.get("manifest") or {}).get("weights_sha256")
        if self.opts.rescore_model is not None and want != have:
            raise EvaluationError(f"{path}: its SR volumes were made with other weights "
                                  f"({str(have)[:16]}) than the committed entry's "
                                  f"({str(want)[:16]}); evaluate the entry again and add it")
        missing = [n for n in self.names if f"{self.opts.subset}/{n}" not in store
                   or not store[f"{self.opts.subset}/{n}"].attrs.get("complete")]
        if missing:
            raise EvaluationError(f"{path}: no complete SR volume of {', '.join(missing)}; "
                                  "evaluate the entry again to make them")
        self.store, self.store_path, self.key = store, path, info["run_key"]

    def stored(self, name: str):
        key = f"{self.opts.subset}/{name}"
        return self.store[key] if key in self.store else None

    def references(self) -> None:
        t0 = time.perf_counter()
        self.refs = reference_rows(self.split_path, self.root, self.meta, self.opts.subset,
                                   self.params, device=self.morph_device,
                                   progress=self.progress, names=self.names,
                                   scorer=self.scorer)
        self.timings["references_s"] = time.perf_counter() - t0
        self.skey = _scoring_key(self.params)
        self.base = _header(self.entry, self.split_path, self.report, self.root, self.meta,
                            self.opts.subset, self.params, self.device, self.refs,
                            {"source": self.source, "source_sha256": self.src_sha},
                            selected=self.names if self.opts.specimens else None)

    # -- run model, score ----------------------------------------------------------------
    def to_store(self, sr01: np.ndarray) -> np.ndarray:
        """[0, 1] model output -> uint16 raw in the split's calibration."""
        lo, hi = self.window
        return to_raw(lo + sr01.astype(np.float32) * (hi - lo), self.cal)

    def worker(self, which: list[str], stage: str, log: str):
        """(the isolated worker over the LR of ``which``, SR slices before each specimen,
        total slices)."""
        from bonesr_bench.models.worker import IsolatedRun

        lrs = [normalise(from_raw(np.asarray(self.group(n)["lr/0"][...]), self.cal),
                         self.window) for n in which]
        total = sum(self.n_slices[n] for n in which)
        before = {n: sum(self.n_slices[m] for m in which[:i]) for i, n in enumerate(which)}
        o = self.opts
        run = IsolatedRun(self.source, lrs, device=self.device, batch_size=o.batch_size,
                          amp=o.amp, timeout_s=o.timeout_s, memory_gb=o.memory_gb,
                          expected_scale=self.scale, log_path=self.run_dir / log,
                          sandbox=o.sandbox,
                          progress=lambda i, d, t: self.progress(stage, before[which[i]] + d,
                                                                 total, which[i]))
        return run, before, total

    def run_model(self) -> None:
        """SR volumes of the specimens not yet done, each stored and scored as it arrives."""
        todo = [n for n in self.names if n not in self.done]
        if not todo:
            return
        t0 = time.perf_counter()
        run, before, total = self.worker(todo, "model", "worker.log")
        with run:
            for out in run:
                name = todo[out.index]
                self._check_weights(run.manifest)
                self.manifest = run.manifest
                self.run_info["sandbox"] = run.sandbox
                self.progress("model", before[name] + self.n_slices[name], total, name)
                self._store_and_score(name, out)
        self.timings["worker_s"] = time.perf_counter() - t0
        self.wait_scores()

    def _check_weights(self, manifest: dict | None) -> None:
        old = self.manifest
        if old is not None and manifest is not None and \
                old.get("weights_sha256") != manifest.get("weights_sha256"):
            raise EvaluationError(f"{self.store_path}: the model's weights changed since its "
                                  "stored SR volumes were made; pass --force to recompute them")

    def _store_and_score(self, name: str, out) -> None:
        """Store the SR volume, then score it (a task of the scorer: inline, or on Dask while
        the model goes on); the specimen is complete once its score is recorded."""
        raw = self.to_store(out.sr)
        g = self.store.require_group(f"{self.opts.subset}/{name}")
        g.attrs["complete"] = False
        sha = write_image(g, "sr", raw, self.hr_um)
        g.attrs.update({"sha256": sha, "stats": out.stats.as_dict()})
        self.pending[name] = self.submit_score(name, raw)
        for done, future in self.scorer.finished(self.pending):
            self._record(done, self.scorer.gather(future), complete=True)

    def submit_score(self, name: str, raw: np.ndarray):
        from bonesr_bench.evaluation.parallel import score_task

        return self.scorer.submit(score_task, str(self.split_path), self.opts.subset, name,
                                  raw, self.params, self.morph_device,
                                  key=f"score-{self.entry}-{name}-{self.key}")

    def _record(self, name: str, s: SpecimenScore, complete: bool = False) -> None:
        g = self.stored(name)
        self.scores[name] = s
        g.attrs["score"] = jsonable({**s.as_dict(), "scoring_key": self.skey})
        if complete:
            g.attrs["complete"] = True
            self.store.attrs["bonesr_run"] = {"run_key": self.key, "entry": self.entry,
                                              "source": self.source,
                                              "split_fingerprint": self.meta["fingerprint"],
                                              "manifest": self.manifest,
                                              "sandbox": self.run_info.get("sandbox")}
        self.progress("score", len(self.scores), len(self.names), name)

    def wait_scores(self, after_failure: bool = False) -> None:
        """Every score still running, recorded as it arrives. ``after_failure`` (the model or
        another score failed): those specimens still become complete for the next call, as
        inline, and a score that fails too is left for the next call instead of raising."""
        for name, future in self.scorer.wait_all(self.pending):
            try:
                self._record(name, self.scorer.gather(future), complete=True)
            except (EvaluationError, ValueError):
                if not after_failure:
                    raise

    def score_resumed(self) -> None:
        """Scores of the specimens an earlier run stored (rescored under new conventions)."""
        again = {}
        for name in self.done:
            g = self.stored(name)
            s = _score_from_store(g, self.skey)
            if s is None:
                again[name] = self.submit_score(name, np.asarray(g["sr/0"][...]))
                continue
            self.scores[name] = s
            self.progress("score", len(self.scores), len(self.names), name)
        for name, future in self.scorer.wait_all(again):
            self._record(name, self.scorer.gather(future))
        stats = [self.stored(n).attrs["stats"] for n in self.names]
        self.run_info["n_clipped"] = int(sum(st["n_clipped"] for st in stats))
        self.run_info["batch_size"] = self.opts.batch_size or stats[0].get("batch_size")
        self.timings["model_s"] = float(sum(st["seconds_in_model"] for st in stats))

    def check_determinism(self) -> None:
        """With --check-determinism: a second run must give the same SR bytes."""
        if not self.opts.check_determinism:
            return
        differ = []
        run, _, _ = self.worker(self.names, "determinism", "worker.determinism.log")
        with run:
            for out in run:
                name = self.names[out.index]
                if array_sha256(self.to_store(out.sr)) != self.stored(name).attrs["sha256"]:
                    differ.append(name)
        self.run_info["determinism"]["identical"] = not differ
        if differ:
            raise SubmissionError(
                f"{self.source}: the output changed between two runs on the same input "
                f"({len(differ)} of {len(self.names)} specimens: {', '.join(differ[:3])}); make "
                "the model deterministic (fixed seeds, no dropout at inference, "
                "torch.use_deterministic_algorithms)")

    # -- aggregate, write -----------------------------------------------------------------
    def scored(self) -> Outcome:
        """Aggregate, write the scored result, put the SR volumes in place."""
        names, t = self.names, self.timings
        t["scoring_s"] = float(sum(self.scores[n].seconds for n in names))
        rows, agg = scoring.aggregate([self.scores[n] for n in names], self.refs)
        verdict = scoring.verdict(agg)
        t["total_s"] = time.perf_counter() - self.t_start
        t["slices"] = slices = sum(self.n_slices.values())
        t["slices_per_s_model"] = slices / t["model_s"] if t["model_s"] else None
        t["overhead_s"] = t["total_s"] - t["model_s"]
        sr_first = self.stored(names[0])["sr/0"]
        name = self.manifest["name"] if self.manifest else self.entry
        res = {**self.base, "status": "scored", "reason": None, "model": self.manifest,
               "run": self.run_info, "timings": t, "specimens": rows, "aggregates": agg,
               "gallery": _gallery(self.root, self.opts.subset, names, self.window,
                                   {"sr": (sr_first, 1, True)}),
               "summary": {"verdict": verdict, "sentence": _sentence(name, agg, verdict)}}
        res = jsonable(res)
        result.validate(res)
        if self.store_path.name != "sr.zarr":  # a forced run of a changed submission
            shutil.rmtree(self.run_dir / "sr.zarr")
            self.store_path.rename(self.run_dir / "sr.zarr")
        return Outcome(res, write_json(self.run_dir / "result.json", res), 0)

    def failed(self, reason: str) -> Outcome:
        """A result marked failed, written where it replaces no scored result."""
        res = {**self.base, "status": "failed", "reason": reason, "model": self.manifest,
               "run": self.run_info,
               "timings": {**self.timings, "total_s": time.perf_counter() - self.t_start},
               "specimens": [], "aggregates": None,
               "summary": {"verdict": "failed", "sentence": f"{self.entry} failed: {reason}"}}
        res = jsonable(res)
        result.validate(res)
        target = self.run_dir / "result.json"
        if target.exists():
            try:
                if json.loads(target.read_text()).get("status") == "scored":
                    target = self.run_dir / "result.failed.json"
            except json.JSONDecodeError:
                pass
        return Outcome(res, write_json(target, res), 1)


def run_dir(out: str | Path, entry: str, split_id: str | None) -> Path:
    """OUT/ENTRY for the default split (synth-v2), OUT/ENTRY@SPLIT for any other, so that runs
    on different splits never share a folder (an SR store of one split is refused by another)."""
    from bonesr_bench.split import DEFAULT_SPLIT, SPLITS

    if split_id in (None, SPLITS[DEFAULT_SPLIT].split_id):
        return Path(out) / entry
    return Path(out) / f"{entry}@{split_id}"


def evaluate(source: str, opts: EvaluateOptions | None = None,
             progress: Progress = _noop) -> Outcome:
    """Run ``source`` on a split and score it; see the package docstring. Steps: check the
    options, open the split, open the run store, the reference rows, run the model (storing and
    scoring each SR volume), score what an earlier run stored, check determinism, aggregate and
    write."""
    run = _Run(source, opts or EvaluateOptions(), progress)
    run.open_split()
    with run.scorer:
        run.open_run_store()
        run.run_info["scoring"] = run.scorer.describe()
        run.references()
        try:
            run.run_model()
            run.score_resumed()
            run.check_determinism()
        except SubmissionError as exc:
            run.wait_scores(after_failure=True)
            return run.failed(str(exc))
        except ValueError as exc:  # e.g. a constant SR volume that segmentation cannot threshold
            run.wait_scores(after_failure=True)
            return run.failed(f"{source}: its output could not be scored: {exc}")
    return run.scored()
