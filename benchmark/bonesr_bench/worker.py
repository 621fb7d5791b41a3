"""Running a submission in an isolated worker process that is handed LR arrays only.

The worker is a fresh Python process (``python -m bonesr_bench.worker``) started in an empty
temporary directory that is also its HOME, with an environment reduced to a short whitelist, so
its working directory, HOME and environment variables lead nowhere near the split, the HR
scans, the truth or the masks. It receives the LR volume (already in [0, 1]) as ``lr.npy`` in
that directory and writes ``sr.npy`` and ``status.json`` back. Its stdout and stderr go to a log
file (the last lines are kept for the error message), it is killed after ``timeout_s``, and on
the CPU its address space is capped (``memory_gb``) so that a runaway allocation fails inside
the worker instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .inference import RunStats
from .models import SubmissionError

__all__ = ["run_isolated", "ENV_WHITELIST"]

ENV_WHITELIST = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "LD_LIBRARY_PATH")


def _limit_memory(gb: float):
    def apply():  # runs in the child before exec
        import resource

        limit = int(gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.setsid()

    return apply


def run_isolated(source: str, lr01: np.ndarray, *, device: str = "cpu", batch_size: int = 8,
                 amp: bool = False, timeout_s: float = 600.0, memory_gb: float | None = 16.0,
                 expected_scale: int | None = None) -> tuple[np.ndarray, RunStats, dict]:
    """(SR volume, run statistics, model manifest) of ``source`` run on ``lr01`` in a worker."""
    src = str(Path(source).resolve()) if Path(source).is_file() else source
    with tempfile.TemporaryDirectory(prefix="bonesr-worker-") as tmp:
        work = Path(tmp)
        np.save(work / "lr.npy", np.ascontiguousarray(lr01, dtype=np.float32))
        job = {"source": src, "device": device, "batch_size": batch_size, "amp": amp,
               "expected_scale": expected_scale}
        (work / "job.json").write_text(json.dumps(job))
        env = {k: os.environ[k] for k in ENV_WHITELIST if k in os.environ}
        env.update(HOME=tmp, TMPDIR=tmp, PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
        log_path = work / "worker.log"
        limit = memory_gb if (memory_gb and str(device).startswith("cpu")) else None
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bonesr_bench.worker"], cwd=tmp, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_limit_memory(limit) if limit else os.setsid)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise SubmissionError(f"{source}: the model ran past the {timeout_s:g} s timeout "
                                      "and was stopped; raise --timeout or make it faster") \
                    from None
        status_path = work / "status.json"
        if not status_path.exists():
            tail = _tail(log_path)
            raise SubmissionError(f"{source}: the worker died (exit {proc.returncode}) without a "
                                  f"result{': ' + tail if tail else ''}")
        status = json.loads(status_path.read_text())
        if "error" in status:
            raise SubmissionError(status["error"])
        sr = np.load(work / "sr.npy")
        return sr, RunStats(**status["stats"]), status["manifest"]


def _tail(path: Path, n_chars: int = 300) -> str:
    text = path.read_bytes()[-4096:].decode("utf-8", "replace").strip().splitlines()
    return " | ".join(text[-3:])[-n_chars:] if text else ""


def _main() -> int:  # pragma: no cover - runs in the worker process
    work = Path.cwd()
    status = work / "status.json"
    try:
        job = json.loads((work / "job.json").read_text())
        from .inference import OutputError, run_model
        from .models import load_model, manifest

        model = load_model(job["source"], job["device"], expected_scale=job["expected_scale"])
        lr = np.load(work / "lr.npy")
        sr, stats = run_model(model, lr, device=job["device"], batch_size=job["batch_size"],
                              amp=job["amp"])
        np.save(work / "sr.npy", sr)
        status.write_text(json.dumps({"stats": stats.as_dict(),
                                      "manifest": manifest(model, job["source"]).as_dict()}))
        return 0
    except (SubmissionError, OutputError) as exc:
        status.write_text(json.dumps({"error": str(exc)}))
        return 1
    except MemoryError:
        status.write_text(json.dumps({"error": f"{job['source']}: the model ran out of memory "
                                      "(the worker's limit); use less memory or a GPU"}))
        return 1
    except Exception as exc:  # noqa: BLE001 - the model's own failure, reported in one line
        msg = f"{job.get('source', '?')}: the model raised {type(exc).__name__}: {exc}"
        status.write_text(json.dumps({"error": msg.splitlines()[0][:500]}))
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
