"""The shipped baselines: each loads through the public interface, runs on a tiny input on the
CPU, has the declared scale and parameter count, and its weights are the ones recorded; and
``bonesr-bench train`` (recipe, validation split, checkpoints, exact resume, errors)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.models import SubmissionError, load_model, manifest
from bonesr_bench.models.inference import run_model
from bonesr_bench.models.wrapper import part_files, weights_sha256
from bonesr_bench.training import Recipe, TrainingError, TrainOptions, load_weights, train

from conftest import load_baseline

BASELINES = Path(__file__).parents[1] / "baselines"
NAMES = ("bicubic", "fsrcnn", "rcan", "dan", "pix2pix")
TRAINABLE = NAMES[1:]
#: Parameter counts: FSRCNN(56, 12, 4) 12.5 k in the paper (12 809 with biases and PReLU
#: slopes); RCAN x2 15.4 M (Zhang et al. 2018, Table 5).
PARAMETERS = {"fsrcnn": (12_000, 13_200), "rcan": (15.3e6, 15.5e6)}
runner = CliRunner()


module = load_baseline


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_baseline_declares_the_interface(name):
    mod = module(name)
    assert callable(mod.load)
    if name in TRAINABLE:
        assert isinstance(mod.RECIPE, Recipe) and mod.RECIPE.scale == 2
        assert mod.WEIGHTS.parent == BASELINES / "weights" and mod.WEIGHTS.suffix == ".safetensors"
        assert mod.TINY_CONFIG != mod.CONFIG


@pytest.mark.parametrize("name", TRAINABLE)
def test_full_network_has_the_scale_and_parameter_count(name):
    mod = module(name)
    net = mod.network().eval()
    n = sum(p.numel() for p in net.parameters())
    lo, hi = PARAMETERS.get(name, (1, 1e9))
    assert lo <= n <= hi, n
    with torch.no_grad():
        sr = net(torch.rand(1, 1, 13, 11))
    assert sr.shape == (1, 1, 26, 22) and torch.isfinite(sr).all()
    big = n > 1e6
    assert (mod.RECIPE.weights_dtype == "float16") == big, "half precision for the large ones"


@pytest.mark.parametrize("name", NAMES)
def test_baseline_loads_runs_and_matches_its_recorded_weights(name):
    mod = module(name)
    weights = getattr(mod, "WEIGHTS", None)
    if weights is not None and weights_sha256(weights) is None:
        with pytest.raises(SubmissionError, match=f"bonesr-bench train baselines/{name}.py") as e:
            load_model(str(BASELINES / f"{name}.py"))
        assert "\n" not in str(e.value)
        pytest.skip(f"{name}: not trained yet ({weights.name} missing)")
    model = load_model(str(BASELINES / f"{name}.py"), expected_scale=2)
    man = manifest(model, str(BASELINES / f"{name}.py"))
    assert man.name == name and man.scale == 2 and man.input == "slice"
    if weights is not None:
        record = json.loads(Path(str(weights) + ".json").read_text())
        assert record["sha256"] == weights_sha256(weights) == man.weights_sha256
        assert record["n_parameters"] == man.n_parameters
        assert record["split"]["fingerprint"] and record["iterations"] >= 1
    sr, stats = run_model(model, np.random.default_rng(0).random((2, 12, 10)).astype(np.float32))
    assert sr.shape == (4, 24, 20) and 0 <= sr.min() and sr.max() <= 1


def test_every_weights_file_has_its_record():
    """Whole files and files kept in parts (RCAN's, pix2pix's): the sidecar's sha256 is the
    whole file's; every part on disk is one the sidecar lists."""
    folder = BASELINES / "weights"
    for side in folder.glob("*.safetensors.json"):
        w = folder / side.name.removesuffix(".json")
        record = json.loads(side.read_text())
        assert record["sha256"] == weights_sha256(w), w.name
        assert [f.name for f in part_files(w)] == [p["file"] for p in record.get("parts", [])]
    for w in folder.glob("*.safetensors*"):
        assert w.name.endswith(".json") or (folder / (w.name.split(".safetensors")[0]
                                                      + ".safetensors.json")).is_file(), w


def test_fsrcnn_is_the_published_architecture():
    mod = module("fsrcnn")
    net = mod.network()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [5, 1, 3, 3, 3, 3, 1]
    assert [c.out_channels for c in convs] == [56, 12, 12, 12, 12, 12, 56]
    assert net.deconv.kernel_size == (9, 9) and net.deconv.stride == (2, 2)


def test_rcan_is_the_published_architecture():
    mod = module("rcan")
    net = mod.network()
    assert len(net.body) == 11 and all(len(g.body) == 21 for g in net.body[:10])
    ca = net.body[0].body[0].body[3].body
    assert ca[1].out_channels == 64 // 16


# ----------------------------------------------------------------------------------------------
# bonesr-bench train


def test_train_tiny_through_the_cli(mini_split, tmp_path):
    shipped = {p: sha256(p) for p in (BASELINES / "weights").glob("*")}
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", str(BASELINES / "fsrcnn.py"), "--split", str(mini_split),
                            "--tiny", "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert "best validation L1" in r.output
    w = run / "fsrcnn.safetensors"
    record = json.loads(Path(str(w) + ".json").read_text())
    assert record["sha256"] == sha256(w) and record["iterations"] == 4
    assert record["split"]["validation"] and not set(record["split"]["validation"]) & set(
        record["split"]["train"])
    assert (run / "checkpoint.pt").is_file() and "validation L1" in (run / "train.log").read_text()
    mod = module("fsrcnn")
    load_weights(mod.network(mod.TINY_CONFIG), w)
    assert {p: sha256(p) for p in (BASELINES / "weights").glob("*")} == shipped


def test_training_reads_the_train_subset_only(mini_split, tmp_path, monkeypatch):
    import bonesr_bench.split as split

    seen = []
    real = split.iter_specimens

    def spy(path, subset="test", **kw):
        seen.append(subset)
        return real(path, subset, **kw)

    monkeypatch.setattr(split, "iter_specimens", spy)
    train(str(BASELINES / "rcan.py"), TrainOptions(split=mini_split, tiny=True,
                                                   run_dir=tmp_path / "r"))
    assert seen == ["train"]


def test_interrupted_training_resumes_exactly(mini_split, tmp_path):
    src = str(BASELINES / "fsrcnn.py")
    straight = train(src, TrainOptions(split=mini_split, tiny=True, run_dir=tmp_path / "a"))

    def interrupt(stage, done, total, info=""):
        if stage == "train" and done == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, held until the iteration is done

    with pytest.raises(KeyboardInterrupt):
        train(src, TrainOptions(split=mini_split, tiny=True, run_dir=tmp_path / "b"), interrupt)
    assert "interrupted after iteration 2" in (tmp_path / "b" / "train.log").read_text()
    resumed = train(src, TrainOptions(split=mini_split, tiny=True, run_dir=tmp_path / "b"))
    assert resumed.resumed_from == 2
    assert sha256(resumed.weights) == sha256(straight.weights)
    # a finished run can be extended
    more = train(src, TrainOptions(split=mini_split, tiny=True, run_dir=tmp_path / "b",
                                   iterations=6))
    assert more.resumed_from == 4 and more.history[-1]["iteration"] == 6


def test_a_checkpoint_of_another_recipe_is_refused(mini_split, tmp_path):
    src = str(BASELINES / "fsrcnn.py")
    train(src, TrainOptions(split=mini_split, tiny=True, run_dir=tmp_path / "r"))
    r = runner.invoke(app, ["train", src, "--split", str(mini_split), "--run-dir",
                            str(tmp_path / "r"), "--iterations", "1"])
    assert r.exit_code == 2 and "checkpoint of another recipe" in r.output
    assert "--restart" in r.output


@pytest.mark.parametrize("args, message", [
    (["baselines/bicubic.py"], "declares no training recipe"),
    (["no_such_model.py"], "no such file"),
    (["bicubic"], "give the submission's .py file"),
    (["baselines/fsrcnn.py", "--split", "/nonexistent/split.zarr"], "no split there"),
    (["baselines/fsrcnn.py", "--iterations", "0", "--split", "mini"], "at least 1"),
    (["baselines/fsrcnn.py", "--device", "cuda", "--split", "mini"], "CUDA"),
])
def test_train_usage_errors_are_one_line(args, message, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    r = runner.invoke(app, ["train", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and r.output.count("error:") == 1


def test_recipe_rejects_unknown_choices():
    with pytest.raises(TrainingError, match="Recipe.loss"):
        Recipe(iterations=10, loss="huber")


def test_training_on_a_split_without_its_train_part_names_a_real_option(tmp_path, monkeypatch):
    """The hint is a command that exists (`data build --split train`, not `--part`)."""
    from bonesr_bench.split import SPLITS, build

    monkeypatch.chdir(Path(__file__).parents[1])
    path = tmp_path / "test-only.zarr"
    build(path, SPLITS["mini"], part="test")
    r = runner.invoke(app, ["train", "baselines/fsrcnn.py", "--split", str(path), "--tiny",
                            "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 2 and "--part" not in r.output
    text = " ".join(r.output.split())
    assert f"bonesr-bench data build --split train --out {path}" in text
    data = runner.invoke(app, ["data", "build", "--help"])
    assert "--split" in data.output and "--part" not in data.output
