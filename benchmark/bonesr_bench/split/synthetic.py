"""Building the synthetic split: generate each specimen, scan it twice (HR; LR at its own pose,
registered onto HR), write it to the store; in worker processes, resumable."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bonesr_bench.files import jsonable
from bonesr_bench.split.config import DEFAULT_SPLIT, SPLITS, Protocol, SplitConfig, _subsets
from bonesr_bench.split.intensity import CALIBRATION, to_raw
from bonesr_bench.split.store import (
    SplitError,
    VerifyReport,
    _check_specimen,
    _specimen_complete,
    _versions,
    as_location,
    default_path,
    fingerprint,
    in_one_process,
    is_from_scans,
    location_exists,
    open_group,
    repair_hint,
    verify,
    write_specimen,
)


def _build_specimen(root, config: SplitConfig, subset: str, name: str, seed: int, device) -> dict:
    from bonesr_bench.morphometry import morphometry
    from bonesr_bench.split.synth.specimen import draw_params, generate

    proto = config.proto
    pad = proto.pad_slices
    if config.donor == "bonebox":
        from bonesr_bench.split.synth.donor import bonebox_specimen

        spec = bonebox_specimen(name, config.hr_shape)
        generator = {"donor": "bonebox", "roi": name, "licence": "BSD-3-Clause (BoneBox)"}
    else:
        params = draw_params(seed, proto.population)
        z, y, x = config.hr_shape
        spec = generate(params, shape=(z + 2 * pad, y, x), voxel_um=config.hr_voxel_um)
        generator = params.as_dict()
    um = config.hr_voxel_um
    scanner = {"hr": proto.hr_scan.as_dict(), "lr": proto.lr_scan.as_dict(),
               "hr_dose_per_um2": proto.hr_scan.dose_per_voxel(um),
               "lr_dose_per_um2": proto.lr_scan.dose_per_voxel(um)}
    extra = {}
    if proto.exact:
        hr, lr, extra = _acquire(spec.fraction, proto, um, config.scale, seed)
    else:
        from bonesr_bench.split.synth.scanner import scan_pair

        hr, lr = scan_pair(spec.fraction, hr_voxel_um=um, seed=seed, device=device,
                           hr=proto.hr_scan, lr=proto.lr_scan)
    inner = slice(pad, pad + config.hr_shape[0]) if pad else slice(None)
    truth, regions = spec.truth[inner], spec.regions[inner]
    truth_m = morphometry(truth, um, regions=regions)
    return write_specimen(
        root, f"{subset}/{name}", to_raw(hr), to_raw(lr), um, um * config.scale,
        {"truth": truth, "regions": regions},
        {"seed": seed, "generator": generator, "scanner": scanner, **extra,
         "truth_morphometry": jsonable(truth_m)})


def _acquire(fraction: np.ndarray, proto: Protocol, um: float, scale: int,
             seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """v2's two acquisitions of a specimen generated ``proto.pad_slices`` beyond each end: HR
    (the middle of its stack kept) and LR at its own random pose, registered onto HR and
    resampled onto the exact x``scale`` grid by :func:`split.register.register`, the code a split
    from scans uses. Returns (HR, LR on the grid, attributes: pose and registration)."""
    from bonesr_bench.split.register import register
    from bonesr_bench.split.synth.scanner import draw_pose, line_integrals_exact, posed, scan_exact

    pad = proto.pad_slices
    p = line_integrals_exact(fraction, proto.hr_scan.n_angles, hr_voxel_um=um)
    hr = scan_exact(p, proto.hr_scan, hr_voxel_um=um, seed=2 * seed + 1,
                    keep=slice(pad, p.shape[0] - pad))
    del p
    pose = draw_pose(seed, proto.pose_deg, proto.pose_shift_um)
    p = line_integrals_exact(posed(fraction, pose, um), proto.lr_scan.n_angles, hr_voxel_um=um)
    lr = scan_exact(p, proto.lr_scan, hr_voxel_um=um, seed=2 * seed + 2)
    del p
    reg = register(hr.astype(np.float32), lr.astype(np.float32), um,
                   proto.lr_scan.voxel_um(um), scale=scale, seed=seed,
                   fill=float(np.percentile(lr, 0.5)))
    record = {**reg.record("register.register (as --from-scans): ANTsPy affine (Mattes MI) "
                           "from a cross-correlation start, Gauss-Newton refinement, linear "
                           "resampling"), "coverage": reg.coverage}
    return hr, reg.lr_on_grid, {"pose": pose.as_dict(), "registration": record,
                                "lr_scan_shape": list(lr.shape),
                                "lr_scan_voxel_um": proto.lr_scan.voxel_um(um)}


#: what each build worker process runs with: one thread in every library that starts its own
#: (OpenMP, BLAS, ITK), so that n workers use n cores; numba may start one per core, but a
#: worker uses one (``numba.set_num_threads``) except on the build's last specimen, which has
#: the cores that the finished workers leave idle (the bytes do not depend on numba's threads)
WORKER_ENV = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                            "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"), "1")


#: memory one worker needs (peak RSS of a v2 specimen's build: 2.2 GB), bytes
WORKER_MEMORY = 2.5e9


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _available_memory() -> float | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_workers(specimens: int) -> int:
    """How many specimens to build at once: one per usable core, as memory allows
    (:data:`WORKER_MEMORY` each), at most ``specimens``, at least 1."""
    mem = _available_memory()
    by_memory = int(mem // WORKER_MEMORY) if mem else specimens
    return max(1, min(_usable_cores(), by_memory, specimens))


def _worker_main() -> None:
    """A build worker process (see :func:`_build_specimens`): reads one JSON job a line on stdin
    (store path, split config, subset, name, seed, numba threads), builds that specimen,
    answers one JSON line on stdout ({"name"} or {"name", "error"}); exits at the end of
    stdin."""
    import sys

    import numba

    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a library prints goes to the log, not into the replies
    sys.stdout = sys.stderr
    for line in sys.stdin:
        job = json.loads(line)
        try:
            numba.set_num_threads(max(1, min(int(job.get("threads", 1)),
                                             numba.config.NUMBA_NUM_THREADS)))
            c = job["config"]
            config = SplitConfig(**{**c, **{k: tuple(c[k]) for k in
                                            ("hr_shape", "train_seeds", "test_seeds")}})
            root = open_group(job["path"], mode="a", zarr_format=2)
            _build_specimen(root, config, job["subset"], job["name"], job["seed"], "cpu")
            replies.write(json.dumps({"name": job["name"]}) + "\n")
        except Exception as exc:  # reported by the parent, which stops the build
            replies.write(json.dumps({"name": job["name"],
                                      "error": f"{type(exc).__name__}: {exc}"}) + "\n")


def _build_specimens(path: Path, root, config: SplitConfig, todo: list[tuple[str, str, int]],
                     device, workers: int) -> Iterator[str]:
    """Build ``todo`` (subset, name, seed), yielding each name when its specimen is written: in
    this process when ``workers`` is 1, else in that many single-threaded worker processes
    (:data:`WORKER_ENV`), each given the next specimen when it is done with one (the last one
    with numba on every core). The bytes do
    not depend on it; an interrupted build leaves the specimens in progress incomplete, which
    the next build redoes.

    By hand rather than multiprocessing: a spawned pool re-runs the caller's main script in
    every worker, which breaks an unguarded script; a worker here imports only the package."""
    # v2's scans are made on the CPU whatever the device (the same bytes everywhere)
    if workers <= 1 or len(todo) <= 1 or (str(device) != "cpu" and not config.proto.exact):
        for subset, name, seed in todo:
            _build_specimen(root, config, subset, name, seed, device)
            yield name
        return
    import queue
    import subprocess
    import sys
    import threading

    # the last specimen runs while the other workers finish and then idle: it gets every core
    cores = _usable_cores()
    jobs = iter([json.dumps({"path": str(path), "config": asdict(config), "subset": subset,
                             "name": name, "seed": seed,
                             "threads": cores if k == len(todo) - 1 else 1}) + "\n"
                 for k, (subset, name, seed) in enumerate(todo)])
    lock, replies = threading.Lock(), queue.Queue()
    procs = [subprocess.Popen([sys.executable, "-c",
                               "from bonesr_bench.split.synthetic import _worker_main; "
                               "_worker_main()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **WORKER_ENV})
             for _ in range(min(workers, len(todo)))]

    def feed(proc):
        while True:
            with lock:
                job = next(jobs, None)
            if job is None:
                break
            proc.stdin.write(job)
            proc.stdin.flush()
            line = proc.stdout.readline()
            replies.put(json.loads(line) if line else
                        {"name": json.loads(job)["name"],
                         "error": f"the worker process died (exit {proc.wait()})"})
        proc.stdin.close()

    threads = [threading.Thread(target=feed, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()
    finished = False
    try:
        for _ in todo:
            reply = replies.get()
            if "error" in reply:
                raise SplitError(f"building specimen {reply['name']} failed: {reply['error']}")
            yield reply["name"]
        finished = True
    finally:
        for p in procs:
            if not finished:  # an error or an interrupt: the specimens in progress stay incomplete
                p.kill()
            p.wait()


def build(path: str | Path, config: SplitConfig = SPLITS[DEFAULT_SPLIT], *,
          part: str = "all", device="cpu",
          progress: Callable[[str, int, int], None] | None = None,
          workers: int | None = 1) -> str:
    """Build (or resume, or repair) the split at ``path``; returns its fingerprint.

    Complete specimens whose arrays still match their recorded hashes are kept; incomplete or
    altered ones are rebuilt, ``workers`` at a time (None: :func:`auto_workers`; CPU builds
    only). ``progress(name, done, total)`` is called after each specimen.
    """
    path = as_location(path)
    proto = config.proto
    root = open_group(path, mode="a", zarr_format=2)
    old = dict(root.attrs.get("bonesr", {}))
    if is_from_scans(old):
        raise SplitError(f"{path} was built from scans; resume or repair it with "
                         f"`{repair_hint(path, old)}`, not as a synthetic split")
    if old.get("config") not in (None, config.name):
        raise SplitError(f"{path} holds the {old.get('split')} split, not {config.split_id}; "
                         f"resume it with `{repair_hint(path, old)}` or build "
                         f"{config.split_id} at another --out")
    parts = set(old.get("parts", []))
    parts |= _subsets(part)
    specimens = config.specimens(part)
    todo, done = [], 0
    for subset, name, seed in specimens:
        if _specimen_complete(root, subset, name) and not _check_specimen(root, subset, name):
            done += 1
            if progress:
                progress(name, done, len(specimens))
        else:
            todo.append((subset, name, seed))
    workers = auto_workers(len(todo)) if workers is None else workers
    if in_one_process(path):  # the workers' processes would not see it (same bytes in-process)
        workers = 1
    for name in _build_specimens(path, root, config, todo, device, workers):
        done += 1
        if progress:
            progress(name, done, len(specimens))
    root = open_group(path, mode="a", zarr_format=2)  # what the workers wrote
    table = {}
    for subset, name, _ in config.specimens("all"):
        if subset in parts and _specimen_complete(root, subset, name):
            table.update(root[f"{subset}/{name}"].attrs["sha256"])
    fp = fingerprint(table)
    root.attrs["bonesr"] = {
        "split": config.split_id,
        "version": proto.version, "config": config.name, "parts": sorted(parts),
        "scale": config.scale,
        "hr_voxel_um": config.hr_voxel_um, "lr_voxel_um": config.hr_voxel_um * config.scale,
        "hr_shape": list(config.hr_shape),
        "intensity_calibration": CALIBRATION,
        "segmentation": proto.record(),
        "scanner": {"hr": proto.hr_scan.as_dict(), "lr": proto.lr_scan.as_dict(),
                    **({"exact_cpu_path": True, "lr_pose_max_deg": proto.pose_deg,
                        "lr_pose_max_shift_um": proto.pose_shift_um,
                        "pad_slices": proto.pad_slices} if proto.exact else {})},
        "seeds": {"train": list(config.train_seeds), "test": list(config.test_seeds)},
        "donor": config.donor,
        "versions": _versions(),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": table,
        "fingerprint": fp,
    }
    return fp


def ensure(path: str | Path | None = None, config: SplitConfig = SPLITS[DEFAULT_SPLIT], *,
           part: str = "test", device="cpu",
           progress: Callable[[str, int, int], None] | None = None,
           workers: int | None = 1) -> Path:
    """The split at ``path`` (default: the per-user cache), built first if it is missing,
    incomplete or altered; what ``evaluate`` calls before scoring. Returns the path."""
    return ensure_report(path, config, part=part, device=device, progress=progress,
                         workers=workers)[0]


def ensure_report(path: str | Path | None = None,
                  config: SplitConfig = SPLITS[DEFAULT_SPLIT], *,
                  part: str = "test", device="cpu",
                  progress: Callable[[str, int, int], None] | None = None,
                  workers: int | None = 1) -> tuple[Path, VerifyReport | None]:
    """:func:`ensure`, also returning the verification report when the split was already
    there and verified (None when it was just built), so a caller need not verify it twice."""
    path = as_location(path) if path is not None else default_path(config)
    if location_exists(path):
        report = verify(path, config)
        if report.ok and _subsets(part) <= set(report.parts):
            return path, report
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    build(path, config, part=part, device=device, progress=progress, workers=workers)
    return path, None


def resolve(split: str | Path | None, subset: str = "test",
            progress: Callable[[str, int, int], None] | None = None,
            ) -> tuple[Path, VerifyReport | None]:
    """(store, its verification report if already verified) for ``--split``: a split name
    (:data:`SPLITS`; kept in the per-user cache and built on first use, its ``subset`` part for
    v1/v2, whole for the small ones) or a store's path. What ``evaluate`` and ``train`` open."""
    if split is None or str(split) in SPLITS:
        config = SPLITS[str(split) if split is not None else DEFAULT_SPLIT]
        part = subset if config.name in ("v1", "v2") else "all"
        return ensure_report(default_path(config), config, part=part, workers=None,
                             progress=progress)
    path = as_location(split)
    if not location_exists(path):
        raise SplitError(f"--split {path}: no split there; give a split name "
                         f"({', '.join(SPLITS)}) or build one with `bonesr-bench data build "
                         f"--out {path}`")
    return path, None
