"""The worked example in submissions/example: it loads, runs, is trainable, and its weights are
the ones recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.models import load_model, manifest
from bonesr_bench.models.inference import run_model

EXAMPLE = Path(__file__).parents[1] / "submissions" / "example"


def test_example_loads_runs_and_records_its_weights():
    model = load_model(str(EXAMPLE / "model.py"), expected_scale=2)
    man = manifest(model, str(EXAMPLE / "model.py"))
    assert 15_000 < man.n_parameters < 30_000
    sha = hashlib.sha256((EXAMPLE / "weights.safetensors").read_bytes()).hexdigest()
    assert man.weights_sha256 == sha
    lr = torch.rand(3, 20, 24).numpy()
    sr, stats = run_model(model, lr)
    assert sr.shape == (6, 40, 48) and sr.min() >= 0 and sr.max() <= 1
    # trained: not the bicubic start (the residual branch is non-zero)
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert float(model.net.body(x).abs().mean()) > 1e-4


def test_example_trains_on_the_mini_split(mini_split, tmp_path):
    r = CliRunner().invoke(app, ["train", str(EXAMPLE / "model.py"), "--split", str(mini_split),
                                 "--iterations", "20", "--run-dir", str(tmp_path),
                                 "--weights", str(tmp_path / "w.safetensors")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "w.safetensors"
    assert out.stat().st_size > 50_000 and "validation L1" in r.output
    record = json.loads((EXAMPLE / "weights.safetensors.json").read_text())
    assert record["sha256"] == hashlib.sha256((EXAMPLE / "weights.safetensors").read_bytes()
                                              ).hexdigest()
