"""Running a submission in an isolated worker process that is handed LR arrays only.

The worker is a fresh Python process (``python -m bonesr_bench.models.worker``) started in an empty
temporary directory that is also its HOME, with an environment reduced to a short whitelist, so
its working directory, HOME and environment variables lead nowhere near the split, the HR
scans, the truth or the masks. It receives the LR volumes (already in [0, 1]) as ``lr_NNN.npy``
in that directory, loads the model once, and writes ``sr_NNN.npy`` plus ``done_NNN.json`` for
each volume as soon as it is finished, so the harness scores one specimen while the model runs
on the next. Its stdout and stderr are drained by the harness (the first MiB kept in a log
file, the last lines kept for the error message), it is killed when one volume takes longer
than ``timeout_s`` (the first one includes loading the model), and on the CPU its address space
is capped (``memory_gb``) so that a runaway allocation fails inside the worker instead of taking
the machine down.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bonesr_bench.files import write_json
from bonesr_bench.models import SubmissionError
from bonesr_bench.models.inference import OutputError, RunStats, run_model

__all__ = ["IsolatedRun", "WorkerOutput", "run_isolated", "ENV_WHITELIST", "LOG_LIMIT_BYTES"]

#: PYTHONPATH: packages installed with pip --target (a machine whose site-packages are read
#: only); the confined worker may read its folders, as every folder on the import path
ENV_WHITELIST = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "LD_LIBRARY_PATH", "PYTHONPATH")
#: how much of the worker's stdout/stderr is kept in its log file
LOG_LIMIT_BYTES = 1 << 20
POLL_S = 0.05


@dataclass
class WorkerOutput:
    index: int
    sr: np.ndarray  # float32 in [0, 1], on the HR grid
    stats: RunStats


def _preexec(memory_gb: float | None):
    def apply():  # runs in the child before exec
        os.setsid()
        if memory_gb:
            import resource

            limit = int(memory_gb * 1024**3)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class _Drain(threading.Thread):
    """Reads the worker's output pipe: the first LOG_LIMIT_BYTES to a file, the tail in memory."""

    def __init__(self, pipe, log_path: Path):
        super().__init__(daemon=True)
        self.pipe, self.log_path = pipe, log_path
        self.tail: collections.deque[bytes] = collections.deque(maxlen=8)
        self.n_bytes = 0

    def run(self):
        with open(self.log_path, "wb") as log:
            for chunk in iter(lambda: self.pipe.read1(65536), b""):
                if self.n_bytes < LOG_LIMIT_BYTES:
                    log.write(chunk[: LOG_LIMIT_BYTES - self.n_bytes])
                self.n_bytes += len(chunk)
                self.tail.append(chunk)

    def last_lines(self, n_chars: int = 300) -> str:
        text = b"".join(self.tail)[-4096:].decode("utf-8", "replace").strip().splitlines()
        return " | ".join(line[:200] for line in text[-3:])[-n_chars:] if text else ""


class IsolatedRun:
    """One worker process running ``source`` over several LR volumes, streamed back in order.

    Use as a context manager; iterate to get :class:`WorkerOutput` per volume. ``manifest``
    (the model's name, scale, parameter count, weights hash...) is set once the model loaded.
    ``progress(index, slices_done, slices_total)`` is called while a volume runs.
    """

    def __init__(self, source: str, volumes: Sequence[np.ndarray], *, device: str = "cpu",
                 batch_size: int = 8, amp: bool = False, timeout_s: float = 600.0,
                 memory_gb: float | None = 16.0, expected_scale: int | None = None,
                 log_path: str | Path | None = None,
                 progress: Callable[[int, int, int], None] | None = None,
                 sandbox: str = "auto"):
        from bonesr_bench.models import is_file_source, source_file, split_file_source
        from bonesr_bench.models.sandbox import namespace_prefix

        self.source = source
        self.sandbox: dict | None = None  # what held the worker (sandbox.json), once it started
        self.n = len(volumes)
        self.timeout_s = timeout_s
        self.progress = progress
        self.manifest: dict | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="bonesr-worker-"))
        own = source_file(source)
        src = source
        if own is not None and is_file_source(source):  # the file by its absolute path
            factory = split_file_source(source)[1]
            src = str(own.resolve()) + ("" if factory == "load" else f":{factory}")
        inputs = []
        for i, lr in enumerate(volumes):
            np.save(self._tmp / f"lr_{i:03d}.npy", np.ascontiguousarray(lr, dtype=np.float32))
            inputs.append(f"lr_{i:03d}.npy")
        prefix = list(namespace_prefix()) if sandbox != "off" else []
        job = {"source": src, "device": device, "batch_size": batch_size, "amp": amp,
               "expected_scale": expected_scale, "inputs": inputs,
               "sandbox": {"mode": sandbox, "namespaces": bool(prefix),
                           "source_dir": str(own.resolve().parent) if own else None}}
        (self._tmp / "job.json").write_text(json.dumps(job))
        env = {k: os.environ[k] for k in ENV_WHITELIST if k in os.environ}
        env.update(HOME=str(self._tmp), TMPDIR=str(self._tmp), PYTHONNOUSERSITE="1",
                   PYTHONUNBUFFERED="1")
        limit = memory_gb if (memory_gb and str(device).startswith("cpu")) else None
        self.log_path = Path(log_path) if log_path else self._tmp / "worker.log"
        self._proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "bonesr_bench.models.worker"], cwd=self._tmp, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=_preexec(limit))
        self._drain = _Drain(self._proc.stdout, self.log_path)
        self._drain.start()
        self._t0 = time.time()

    # -- lifecycle
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
        self._drain.join(timeout=5)
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- protocol
    def _read_json(self, name: str) -> dict | None:
        path = self._tmp / name
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def _fail(self, message: str):
        self.close()
        raise SubmissionError(message)

    def __iter__(self) -> Iterator[WorkerOutput]:
        started = self._t0
        for i in range(self.n):
            while True:
                if self.sandbox is None:
                    self.sandbox = self._read_json("sandbox.json")
                if self.manifest is None:
                    self.manifest = self._read_json("manifest.json")
                done = self._read_json(f"done_{i:03d}.json")
                if done is not None:
                    break
                status = self._read_json("status.json")
                if status is not None and "error" in status:
                    self._fail(status["error"])
                died = self._proc.poll() is not None
                if died and not (self._tmp / f"done_{i:03d}.json").exists():
                    tail = self._drain.last_lines()
                    self._fail(f"{self.source}: the worker died (exit {self._proc.returncode}) "
                               f"without a result{': ' + tail if tail else ''}")
                if time.time() - started > self.timeout_s:
                    self._fail(f"{self.source}: the model ran past the {self.timeout_s:g} s "
                               f"timeout on volume {i + 1} of {self.n} and was stopped; raise "
                               "--timeout or make it faster")
                if self.progress:
                    p = self._read_json("progress.json") if (self._tmp / "progress.json").exists() \
                        else None
                    if p and p.get("index") == i:
                        self.progress(i, p["done"], p["total"])
                time.sleep(POLL_S)
            sr_path = self._tmp / f"sr_{i:03d}.npy"
            sr = np.load(sr_path)
            sr_path.unlink()
            started = done["t_end"]
            yield WorkerOutput(i, sr, RunStats(**done["stats"]))


def run_isolated(source: str, lr01: np.ndarray, **kwargs) -> tuple[np.ndarray, RunStats, dict]:
    """(SR volume, run statistics, model manifest) of ``source`` run on one LR volume."""
    with IsolatedRun(source, [lr01], **kwargs) as run:
        (out,) = list(run)
        return out.sr, out.stats, run.manifest


def _write_json(path: Path, obj: dict):
    write_json(path, obj, indent=None, fsync=False)  # read by the harness while it polls


#: what a confined worker's denied attempts fail with: no permission (Landlock), no network
#: (the empty network namespace)
_DENIED = {errno.EACCES, errno.EPERM, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


def _confine(spec: dict, work: Path) -> dict:
    """Confine this worker as ``spec`` says (mode, namespaces, the submission's folder), before
    the submission is imported; the record a result keeps."""
    from bonesr_bench.models import sandbox

    record = {"mode": spec["mode"], "namespaces": bool(spec.get("namespaces")),
              "filesystem": None}
    if spec["mode"] == "off":
        return record
    try:
        record.update(sandbox.confine(sandbox.default_read_only(spec.get("source_dir")),
                                      sandbox.default_read_write(work)))
    except sandbox.SandboxUnavailable as exc:
        if spec["mode"] == "required":
            raise SubmissionError(f"--sandbox required: {exc}") from None
        record["reason"] = str(exc)
    return record


def _main() -> int:  # pragma: no cover - runs in the worker process
    work = Path.cwd()
    status = work / "status.json"
    job: dict = {}
    try:
        job = json.loads((work / "job.json").read_text())
        _write_json(work / "sandbox.json", _confine(job.get("sandbox") or {"mode": "off"}, work))
        from bonesr_bench.models import load_model, manifest

        model = load_model(job["source"], job["device"], expected_scale=job["expected_scale"])
        _write_json(work / "manifest.json", manifest(model, job["source"]).as_dict())
        for i, name in enumerate(job["inputs"]):
            lr = np.load(work / name)
            last = [0.0]

            def progress(done, total, i=i, last=last):
                now = time.time()
                if now - last[0] > 0.2 or done == total:
                    last[0] = now
                    _write_json(work / "progress.json", {"index": i, "done": done, "total": total})

            sr, stats = run_model(model, lr, device=job["device"], batch_size=job["batch_size"],
                                  amp=job["amp"], progress=progress)
            (work / name).unlink()
            with open(work / f"sr_{i:03d}.tmp", "wb") as f:
                np.save(f, sr)
            os.replace(work / f"sr_{i:03d}.tmp", work / f"sr_{i:03d}.npy")
            _write_json(work / f"done_{i:03d}.json",
                        {"stats": stats.as_dict(), "t_end": time.time()})
        _write_json(status, {"ok": True})
        return 0
    except SubmissionError as exc:
        _write_json(status, {"error": str(exc)})
        return 1
    except OutputError as exc:
        _write_json(status, {"error": f"{job['source']}: {exc}"})
        return 1
    except MemoryError:
        _write_json(status, {"error": f"{job.get('source', '?')}: the model ran out of memory "
                                      "(the worker's limit); use less memory or a GPU"})
        return 1
    except OSError as exc:
        if job.get("sandbox", {}).get("mode", "off") != "off" and exc.errno in _DENIED:
            msg = (f"{job.get('source', '?')}: the sandbox denied it: {exc} (a submission reads "
                   "its LR arrays and its own folder, writes nothing outside its temporary "
                   "folder and has no network)")
        else:
            msg = f"{job.get('source', '?')}: the model raised {type(exc).__name__}: {exc}"
        _write_json(status, {"error": msg.splitlines()[0][:500]})
        return 1
    except Exception as exc:  # noqa: BLE001 - the model's own failure, reported in one line
        msg = f"{job.get('source', '?')}: the model raised {type(exc).__name__}: {exc}"
        lines = msg.splitlines() or [msg]
        _write_json(status, {"error": lines[0][:500]})
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
