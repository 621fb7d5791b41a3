"""The isolated worker: LR in, SR out; hangs, crashes, memory hogs, chatter and snooping."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from bonesr_bench.models import SubmissionError
from bonesr_bench.models.worker import run_isolated

BICUBIC = str(Path(__file__).parents[1] / "baselines" / "bicubic.py")
LR = np.random.default_rng(0).random((4, 12, 12)).astype(np.float32)

HEAD = """
import torch
import torch.nn.functional as F
class M:
    name, scale, input = "m", 2, "slice"
    def __call__(self, lr):
        BODY
        return F.interpolate(lr, scale_factor=2)
def load(device):
    return M()
"""


def submission(tmp_path, body, name="m.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(HEAD).replace("BODY", body))
    return str(path)


def test_bicubic_runs_in_the_worker():
    sr, stats, man = run_isolated(BICUBIC, LR, expected_scale=2)
    assert sr.shape == (8, 24, 24) and stats.n_calls == 1 and man["name"] == "bicubic"


def test_a_hanging_model_is_stopped(tmp_path):
    src = submission(tmp_path, "import time; time.sleep(60)")
    with pytest.raises(SubmissionError, match="timeout"):
        run_isolated(src, LR, timeout_s=5)


def test_an_exception_and_nan_are_reported_in_one_line(tmp_path):
    src = submission(tmp_path, "raise ValueError('weights missing')")
    with pytest.raises(SubmissionError, match="raised ValueError: weights missing"):
        run_isolated(src, LR)
    src = submission(tmp_path, "return F.interpolate(lr, scale_factor=2) * float('nan')", "n.py")
    with pytest.raises(SubmissionError, match="non-finite") as info:
        run_isolated(src, LR)
    assert "\n" not in str(info.value)


def test_a_memory_hog_fails_inside_the_worker(tmp_path):
    src = submission(tmp_path, "x = torch.empty(64 * 1024**3, dtype=torch.uint8); x.fill_(1)")
    with pytest.raises(SubmissionError, match="out of memory|raised RuntimeError"):
        run_isolated(src, LR, memory_gb=8)


def test_heavy_output_goes_to_the_log_not_the_terminal(tmp_path, capfd):
    src = submission(tmp_path, "print('x' * 100000); import sys; sys.stderr.write('y' * 100000)")
    sr, _, _ = run_isolated(src, LR)
    out, err = capfd.readouterr()
    assert sr.shape == (8, 24, 24) and len(out) + len(err) < 1000


def test_the_worker_finds_no_split_data(tmp_path, monkeypatch):
    """A model that searches its working directory, HOME and environment finds LR only."""
    monkeypatch.setenv("BONESR_SPLIT", "/secret/split.zarr")
    body = """import os, json, pathlib
        found = [str(p) for d in {os.getcwd(), os.path.expanduser('~')}
                 for p in pathlib.Path(d).rglob('*')]
        found += [f'{k}={v}' for k, v in os.environ.items()]
        pathlib.Path(os.getcwd(), 'found.json').write_text(json.dumps(found))
        hits = [f for f in found if any(w in f.lower() for w in ('zarr', 'hr', 'truth',
                                                                   'region', 'split', 'secret'))]
        assert not hits, hits"""
    src = submission(tmp_path, body)
    sr, _, _ = run_isolated(src, LR)
    assert sr.shape == (8, 24, 24)


def test_an_early_failure_is_reported_in_one_line_not_an_unbound_name(tmp_path):
    """The worker started where there is no job: its status says why, in one line (it raised
    UnboundLocalError when OutputError was imported inside the try)."""
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "bonesr_bench.models.worker"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "UnboundLocalError" not in r.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert "job.json" in status["error"] and "\n" not in status["error"]
