"""Per-specimen scoring in parallel on dask.distributed (`evaluate --workers N`, `--scheduler`).

What runs as a Dask task is the scoring of one stored volume against the split (segmentation,
morphometry, PSNR/SSIM: :func:`score_task`) and one specimen's reference rows
(:func:`reference_task`). Each task opens the split itself by its path, so a worker on another
machine needs the split on storage it shares with the client; the SR volume travels with the
task. The model never runs in a Dask worker: it stays in its confined worker process
(``models.worker``), which sees the LR scans only.

Tasks pin their numerical libraries to ``threads`` threads (1 by default: one task per core), and
the numbers are the same as in one process (tested). A worker that dies is replaced and its
task retried by Dask (``distributed.scheduler.allowed-failures``, 3 by default); a task that
keeps failing fails the run in one line, and every specimen scored before it stays in the SR
store, so the next call resumes from there.

The inline :class:`Scorer` (one process, the default) calls the same functions directly.
:func:`shared_scorer` keeps one cluster for several evaluations (``leaderboard rescore``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bonesr_bench.evaluation.common import EvaluationError

#: Dask configuration for the workers of our own ``LocalCluster``. distributed starts its
#: workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off glibc's sliding mmap
#: threshold: then every temporary over 128 KiB (the SSIM kernels' per-plane buffers, the
#: morphometry's maps) is a fresh mmap whose pages fault in again. Measured on the v2 test
#: split, 2 workers on 2 cores: 890 000 -> 300 000 page faults and 3.2 -> 1.6 s of system time
#: per specimen, and the 11 specimens scored in 54.5 s instead of 67.8 s. Clusters the user
#: starts (``--scheduler``) keep their own settings.
LOCAL_WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def local_cluster(workers: int):
    """A ``distributed.LocalCluster`` of ``workers`` one-thread processes, as ``--workers``
    starts it (:data:`LOCAL_WORKER_CONFIG`), this process's environment left as it was.

    No ``env=``: distributed writes the workers' environment into this process's own
    ``os.environ`` too, where the model's worker would inherit it; each task pins its threads
    instead (:func:`_pin_threads`)."""
    import dask
    from distributed import LocalCluster

    environ = dict(os.environ)  # distributed's nanny writes OMP_NUM_THREADS=1 etc. here
    try:
        with dask.config.set(LOCAL_WORKER_CONFIG):
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                dashboard_address=None, silence_logs=40)
    finally:
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)


def _pin_threads(threads: int | None) -> None:
    """One task per core: numba's and torch's thread pools held to ``threads`` in a worker."""
    if not threads:
        return
    import numba
    import torch

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)


def _kill_hook() -> None:
    """For the failure test only: with BONESR_TEST_KILL_ONCE=PATH the first task to find PATH
    missing creates it and kills its worker process (a crash mid-task)."""
    marker = os.environ.get("BONESR_TEST_KILL_ONCE")
    if not marker:
        return
    try:  # only ever inside a Dask worker, never the caller's own process
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    if not Path(marker).exists():
        Path(marker).write_text("killed")
        os._exit(1)


def _open(split_path: str, subset: str, name: str):
    from bonesr_bench.split import calibration, open_group

    root = open_group(split_path, mode="r")
    meta = dict(root.attrs["bonesr"])
    return root[f"{subset}/{name}"], meta, calibration(meta)


def score_task(split_path: str, subset: str, name: str, sr_raw: np.ndarray, params,
               device: str | None = None, threads: int | None = None):
    """The :class:`~bonesr_bench.scoring.SpecimenScore` of the stored (raw uint16) SR volume of
    specimen ``name``, against the split's HR and inside its regions."""
    from bonesr_bench import scoring
    from bonesr_bench.split import from_raw

    _pin_threads(threads)
    _kill_hook()
    g, meta, cal = _open(split_path, subset, name)
    hr = from_raw(np.asarray(g["hr/0"][...]), cal)
    regions = np.asarray(g["labels/regions/0"][...])
    return scoring.score_specimen(name, from_raw(sr_raw, cal), hr, regions,
                                  voxel_um=float(meta["hr_voxel_um"]),
                                  window=tuple(params.window), shave=int(meta["scale"]),
                                  params=params, device=device)


def reference_task(split_path: str, subset: str, name: str, params, lr_params,
                   device: str | None = None, threads: int | None = None) -> dict:
    """One specimen's reference rows: the HR scan (HR grid's parameters), the LR scan on its own
    grid (the LR grid's), and the true geometry where the split has it."""
    from bonesr_bench import scoring
    from bonesr_bench.files import jsonable
    from bonesr_bench.split import from_raw

    _pin_threads(threads)
    g, meta, cal = _open(split_path, subset, name)
    s = int(meta["scale"])
    hr_um, lr_um = float(meta["hr_voxel_um"]), float(meta["lr_voxel_um"])
    regions = np.asarray(g["labels/regions/0"][...])
    hr = from_raw(np.asarray(g["hr/0"][...]), cal)
    lr = from_raw(np.asarray(g["lr/0"][...]), cal)
    row = {"hr": scoring.measure(hr, hr_um, regions, params, device=device),
           "lr": scoring.measure(lr, lr_um, regions[::s, ::s, ::s], lr_params, device=device),
           "truth": None}
    if "labels/truth" in g:
        from bonesr_bench.morphometry import morphometry

        truth = np.asarray(g["labels/truth/0"][...]) != 0
        row["truth"] = morphometry(truth, hr_um, regions=regions, device=device)
    return jsonable(row)


@dataclass
class _Done:
    """An inline result, shaped like a Dask future."""

    value: object

    def result(self):
        return self.value

    def done(self) -> bool:
        return True


class Scorer:
    """Where per-specimen tasks run: inline (``workers`` 1 and no ``scheduler``), on a
    ``LocalCluster`` of ``workers`` processes, or on the Dask cluster at ``scheduler``. Use it as
    a context manager; :meth:`submit` returns a future, :meth:`finished` yields the futures that
    are done."""

    def __init__(self, workers: int = 1, scheduler: str | None = None,
                 threads_per_task: int = 1):
        if workers < 1:
            raise EvaluationError(f"--workers must be at least 1, got {workers}")
        if workers > 1 and scheduler is not None:
            raise EvaluationError("--workers starts a cluster on this machine and --scheduler "
                                  "uses a running one: give one of them")
        self.workers, self.scheduler = workers, scheduler
        self.parallel = workers > 1 or scheduler is not None
        self.threads = threads_per_task if self.parallel else None
        self.client = self.cluster = None

    def check_location(self, split_path) -> None:
        """Refuse a store that only this process can read when the tasks run elsewhere."""
        from bonesr_bench.split import in_one_process

        if self.parallel and in_one_process(split_path):
            raise EvaluationError(f"--split {split_path}: a memory:// store lives in this "
                                  "process only and Dask workers cannot read it; use --workers "
                                  "1, or a path, a file:// or an object-store URL")

    def __enter__(self) -> Scorer:
        if not self.parallel:
            return self
        shared = _SHARED.get()
        if shared is not None and (shared.workers, shared.scheduler) == (self.workers,
                                                                          self.scheduler):
            self.client, self._borrowed = shared.client, True  # closed by its owner
            return self
        try:
            from distributed import Client
        except ImportError:
            raise EvaluationError("--workers/--scheduler need dask.distributed: "
                                  "pip install 'dask[distributed]'") from None
        # as it is now, for __exit__: a nanny that respawns a dead worker writes its limits again
        self._environ = dict(os.environ)
        self._start(Client)
        return self

    def _restore_environ(self) -> None:
        """This process's environment as it was: the model's worker, started later, inherits
        it, and must not run with the thread limits meant for the Dask workers."""
        if getattr(self, "_environ", None) is not None and dict(os.environ) != self._environ:
            os.environ.clear()
            os.environ.update(self._environ)

    def _start(self, Client) -> None:  # noqa: N803 - the class, imported late
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout="10s")
            except OSError as exc:
                raise EvaluationError(f"--scheduler {self.scheduler}: cannot reach it ({exc}); "
                                      "start one with `dask scheduler` or drop --scheduler"
                                      ) from None
        else:
            self.cluster = local_cluster(self.workers)
            try:
                self.client = Client(self.cluster)
            except BaseException:
                self.cluster.close()
                raise

    def __exit__(self, *exc) -> None:
        if getattr(self, "_borrowed", False):
            self.client = None
            return
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
            self._restore_environ()

    def describe(self) -> dict:
        """What the result records in ``run.scoring``."""
        if not self.parallel:
            return {"mode": "inline", "workers": 1}
        n = len(self.client.scheduler_info().get("workers", {})) if self.client else None
        return {"mode": "dask", "workers": n,
                "scheduler": self.scheduler or "LocalCluster",
                "threads_per_task": self.threads}

    def submit(self, fn: Callable, *args, key: str | None = None, **kwargs):
        if not self.parallel:
            return _Done(fn(*args, **kwargs))
        # a volume goes to a worker directly, not through the scheduler's task graph
        args = [self.client.scatter(a, direct=True) if isinstance(a, np.ndarray)
                and a.nbytes > 2**20 else a for a in args]
        return self.client.submit(fn, *args, threads=self.threads, pure=False,
                                  key=key, **kwargs)

    def gather(self, future):
        """The task's value, or EvaluationError in one line when Dask gave up on it."""
        try:
            return future.result()
        except (EvaluationError, ValueError):
            raise  # ValueError: an output scoring cannot take (the submission's failure), as inline
        except Exception as exc:  # noqa: BLE001 - a worker's failure, said in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise EvaluationError(f"a scoring task failed on the Dask cluster: "
                                  f"{type(exc).__name__}: {first}; the specimens scored so far "
                                  "are kept: run the same command again to resume") from None

    def finished(self, futures: dict) -> Iterator:
        """(key, future) of the futures of ``futures`` that are done, removed from it."""
        for key in [k for k, f in futures.items() if f.done()]:
            yield key, futures.pop(key)

    def wait_all(self, futures: dict) -> Iterator:
        """(key, future) as each of ``futures`` finishes, until none is left."""
        if not self.parallel:
            yield from list(self.finished(futures))
            return
        from distributed import as_completed

        back = {id(f): k for k, f in futures.items()}
        for f in as_completed(list(futures.values())):
            yield back[id(f)], futures.pop(back[id(f)])


_SHARED: ContextVar[Scorer | None] = ContextVar("bonesr_shared_scorer", default=None)


@contextlib.contextmanager
def shared_scorer(workers: int = 1, scheduler: str | None = None) -> Iterator[Scorer]:
    """One cluster for several evaluations (``leaderboard rescore``: every entry, then the
    reference rows): each :class:`Scorer` of the same ``workers`` and ``scheduler`` entered
    inside borrows this one's client instead of starting, and warming up, a cluster of its own.
    Inline (``workers`` 1, no ``scheduler``) it changes nothing."""
    scorer = Scorer(workers, scheduler)
    if not scorer.parallel:
        yield scorer
        return
    with scorer:
        token = _SHARED.set(scorer)
        try:
            yield scorer
        finally:
            _SHARED.reset(token)
