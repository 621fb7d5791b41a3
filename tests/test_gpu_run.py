"""The prepared GPU run (issue 18, ``baselines/gpu_run.py``): its very path rehearsed on the CPU
with the tiny networks, and its parts: weights kept in parts and verified on load, the length of
a recipe fitted to a time budget, bf16 steps, the return limits."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bonesr_bench.models import SubmissionError, manifest
from bonesr_bench.models.wrapper import (
    load_weights,
    part_files,
    split_weights,
    weights_sha256,
)
from bonesr_bench.training import TrainingError, TrainOptions, save_weights, train

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "baselines" / "gpu_run.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_run", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.Conv2d(16, 1, 3))


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _as_parts(tmp_path, part_bytes=500):
    w = tmp_path / "w.safetensors"
    save_weights(_net(), w)
    whole = w.read_bytes()
    parts = split_weights(w, part_bytes)
    Path(str(w) + ".json").write_text(json.dumps({"sha256": _sha(whole), "parts": parts}))
    w.unlink()
    return w, whole, parts


def test_weights_in_parts_reassemble_to_the_same_file_and_network(tmp_path):
    w, whole, parts = _as_parts(tmp_path)
    assert len(parts) == -(-len(whole) // 500) > 2
    assert all(p["bytes"] <= 500 for p in parts) and sum(p["bytes"] for p in parts) == len(whole)
    assert [f.name for f in part_files(w)] == [p["file"] for p in parts]
    assert weights_sha256(w) == _sha(whole)
    net = load_weights(_net().apply(lambda m: torch.nn.init.zeros_(m.weight)
                                    if hasattr(m, "weight") else None), w)
    for a, b in zip(net.state_dict().values(), _net().state_dict().values(), strict=True):
        assert torch.equal(a, b)

    class Model:
        name, scale, input, weights = "m", 2, "slice", w

        def parameters(self):
            return _net().parameters()

    assert manifest(Model(), "m.py").weights_sha256 == _sha(whole)


def test_a_damaged_or_missing_part_is_named(tmp_path):
    w, _, parts = _as_parts(tmp_path)
    second = tmp_path / parts[1]["file"]
    blob = bytearray(second.read_bytes())
    blob[10] ^= 1
    second.write_bytes(bytes(blob))
    with pytest.raises(SubmissionError, match=r"part 2 of \d+ of w.safetensors is damaged"):
        load_weights(_net(), w)
    second.unlink()
    with pytest.raises(SubmissionError, match=r"part 2 of \d+ of w.safetensors missing"):
        weights_sha256(w)
    Path(str(w) + ".json").unlink()
    with pytest.raises(SubmissionError, match="weights file missing"):
        load_weights(_net(), w)
    assert weights_sha256(w) is None


def test_a_budget_fits_the_length_and_a_resumed_run_keeps_it(mini_split, tmp_path, monkeypatch):
    import bonesr_bench.training.loop as loop

    monkeypatch.setattr(loop, "PART_BYTES", 1000)  # the tiny FSRCNN's weights go in parts
    opts = TrainOptions(split=str(mini_split), tiny=True, run_dir=tmp_path / "run",
                        weights=tmp_path / "f.safetensors", iterations=10**6, budget_s=0.5,
                        probe=5, precision="bf16")
    out = train(str(ROOT / "baselines" / "fsrcnn.py"), opts)
    rec, fitted = out.record, out.record["fitted"]
    assert fitted["recipe_iterations"] == 10**6 and fitted["probe_iterations"] == 5
    assert rec["iterations"] == fitted["iterations"] == min(10**6, fitted["fits"]) >= 1
    assert fitted["fits"] == int(0.5 / (fitted["step_s"] + fitted["validation_s"] / 2
                                        + fitted["checkpoint_s"] / 2))
    assert rec["precision"] == "bf16" and rec["channels_last"] is False
    size = sum(p["bytes"] for p in rec["parts"])
    assert not out.weights.exists() and len(rec["parts"]) == -(-size // 1000) >= 2
    assert weights_sha256(out.weights) == rec["sha256"] == out.sha256
    assert "length fitted to 0.5 s" in (tmp_path / "run" / "train.log").read_text()
    # the same command again resumes the finished run: no new probe, the same length
    again = train(str(ROOT / "baselines" / "fsrcnn.py"), opts)
    assert again.record["fitted"] == fitted and again.resumed_from == rec["iterations"]
    # the probe leaves no trace: the fitted run is the plain run of that many iterations
    plain = train(str(ROOT / "baselines" / "fsrcnn.py"), TrainOptions(
        split=str(mini_split), tiny=True, run_dir=tmp_path / "plain", precision="bf16",
        weights=tmp_path / "p.safetensors", iterations=rec["iterations"]))
    assert plain.sha256 == out.sha256


@pytest.mark.parametrize("change, message", [
    ({"precision": "fp8"}, "--precision 'fp8': use float32 or bf16"),
    ({"budget_s": 0.0}, "--budget-s must be > 0"),
    ({"budget_s": 1.0, "barrier": "nocount"}, "give DIR:N"),
])
def test_bad_training_options_are_refused_in_one_line(mini_split, tmp_path, change, message):
    opts = TrainOptions(split=str(mini_split), tiny=True, run_dir=tmp_path / "run",
                        weights=tmp_path / "f.safetensors", probe=1, **change)
    with pytest.raises(TrainingError, match=message.replace("(", r"\(").replace("'", ".")):
        train(str(ROOT / "baselines" / "fsrcnn.py"), opts)


def test_a_resumed_run_keeps_its_budget_or_is_refused(mini_split, tmp_path):
    base = dict(split=str(mini_split), tiny=True, run_dir=tmp_path / "run", probe=2,
                weights=tmp_path / "f.safetensors", iterations=6)
    train(str(ROOT / "baselines" / "fsrcnn.py"), TrainOptions(**base))  # no budget
    with pytest.raises(TrainingError, match="not trained to a budget"):
        train(str(ROOT / "baselines" / "fsrcnn.py"), TrainOptions(**base, budget_s=1.0))
    train(str(ROOT / "baselines" / "fsrcnn.py"), TrainOptions(**base, budget_s=1.0,
                                                               restart=True))
    with pytest.raises(TrainingError, match="fitted to 1 s in float32; resume with --budget-s 1"):
        train(str(ROOT / "baselines" / "fsrcnn.py"), TrainOptions(**base, budget_s=2.0))


def test_a_barrier_without_its_peers_gives_up_in_one_line(mini_split, tmp_path, monkeypatch):
    import bonesr_bench.training.loop as loop

    monkeypatch.setattr(loop, "BARRIER_TIMEOUT_S", 0.3)
    opts = TrainOptions(split=str(mini_split), tiny=True, run_dir=tmp_path / "run", probe=2,
                        weights=tmp_path / "f.safetensors", budget_s=1.0,
                        barrier=f"{tmp_path / 'barrier'}:2")
    with pytest.raises(TrainingError, match="2 runs never met"):
        train(str(ROOT / "baselines" / "fsrcnn.py"), opts)
    (tmp_path / "barrier" / "the-other-run").touch()  # the peer arrives: the run goes on
    train(str(ROOT / "baselines" / "fsrcnn.py"), opts)


def test_channels_last_takes_2d_and_3d_layers():
    from bonesr_bench.training.loop import _channels_last

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Conv3d(2, 4, 3),
                              torch.nn.Linear(3, 3))
    params = list(net.parameters())
    _channels_last(net)
    assert [p is q for p, q in zip(params, net.parameters(), strict=True)] == [True] * 6
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert net[1].weight.is_contiguous(memory_format=torch.channels_last_3d)


def test_the_carried_wheels_are_what_the_gpu_machine_lacks():
    carried = _script().carried_packages()
    for name in ("zarr", "numcodecs", "edt", "connected-components-3d", "antspyx", "dask",
                 "distributed", "jsonschema", "platformdirs"):
        assert name in carried, name
    for name in ("numpy", "scipy", "torch", "scikit-image", "numba", "typer", "safetensors"):
        assert name not in carried, name


def test_parts_keep_to_the_return_limits(tmp_path):
    plan = _script().plan_parts
    mib = 2**20
    files = [(Path("meta"), mib), *[(Path(f"p{k}"), 15 * mib) for k in range(6)],
             *[(Path(f"s{k}"), 1000) for k in range(9)]]
    parts = plan(files)
    sizes = dict(files)
    assert [f for p in parts for f in p] == [f for f, _ in files]
    assert all(len(p) <= 7 and sum(sizes[f] for f in p) <= 60 * mib for p in parts)  # + marker
    assert len(parts) == 3
    with pytest.raises(ValueError, match="more than one returned file may hold"):
        plan([(Path("huge"), 16 * mib + 1)])


# about a minute on 2 cores (a split build, three trainings, three evaluations): kept out of the
# default suite, which stays under 10 minutes; run it with `-m slow` before a device session
@pytest.mark.slow
def test_the_gpu_run_rehearsed_on_the_cpu_with_the_tiny_networks(tmp_path):
    """The script's own path, start to end: build, references beside training, the three
    trainings at once with a fitted length, evaluation, packing, collecting, unpacking."""
    work, out = tmp_path / "work", tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, str(SCRIPT), "run", "--tiny", "--device", "cpu",
                        "--precision", "bf16", "--work", str(work), "--out", str(out),
                        "--budget-s", "1", "--build-workers", "1", "--reference-workers", "1",
                        "--eval-workers", "1"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rec = json.loads((work / "campaign.json").read_text())
    assert set(rec["models"]) == {"rcan", "dan", "pix2pix"}
    for m, info in rec["models"].items():
        assert info["status"] == "scored" and info["train_exit"] == 0, m
        f = info["fitted"]
        assert f["budget_s"] == 1 and info["iterations"] == f["iterations"] == max(1, min(
            f["recipe_iterations"], f["fits"])), m  # at least one, even where none fits
        res = json.loads((work / info["result"]).read_text())
        assert res["split"]["id"] == "synth-v2-mini" and res["model"]["weights_sha256"] == \
            info["sha256"], m
    assert {"build", "train", "evaluate"} <= set(rec["stages"])
    assert (out / "meta.tar.gz").is_file() and (out / "part-1-of-1").is_file()
    assert len(list(out.iterdir())) <= 8  # the device returns 8 files a call
    # collect writes the same part again; unpack verifies and places it
    again = tmp_path / "again"
    assert subprocess.run([sys.executable, str(SCRIPT), "collect", "--part", "1", "--out",
                           str(again), "--work", str(work)], cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in out.iterdir())
    bad = subprocess.run([sys.executable, str(SCRIPT), "collect", "--part", "2", "--out",
                          str(again), "--work", str(work)], capture_output=True, text=True)
    assert "this run has parts 1 to 1" in bad.stderr
    weights, runs = tmp_path / "weights", tmp_path / "runs"
    weights.mkdir()
    (weights / "rcan.safetensors").write_bytes(b"earlier")
    # a folder that says it is part 1 of 2, the other not given: refused, nothing replaced
    lone = tmp_path / "lone"
    __import__("shutil").copytree(out, lone)
    (lone / "part-1-of-1").rename(lone / "part-1-of-2")
    u = subprocess.run([sys.executable, str(SCRIPT), "unpack", str(lone), "--weights-dir",
                        str(weights), "--runs", str(runs)], capture_output=True, text=True)
    assert u.returncode == 1 and "give every part folder of the run" in u.stderr
    assert (weights / "rcan.safetensors").read_bytes() == b"earlier"
    gone = subprocess.run([sys.executable, str(SCRIPT), "collect", "--part", "1", "--out",
                           str(tmp_path / "x"), "--work", str(tmp_path / "nowhere")],
                          capture_output=True, text=True)
    assert gone.returncode == 1 and "no finished run here" in gone.stderr
    u = subprocess.run([sys.executable, str(SCRIPT), "unpack", str(out), "--weights-dir",
                        str(weights), "--runs", str(runs)], capture_output=True, text=True)
    assert u.returncode == 0, u.stdout + u.stderr
    for m in ("rcan", "dan", "pix2pix"):
        side = json.loads((weights / f"{m}.safetensors.json").read_text())
        assert weights_sha256(weights / f"{m}.safetensors") == side["sha256"]
        assert (runs / f"{m}@synth-v2-mini" / "result.json").is_file()
