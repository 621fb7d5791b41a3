"""The bio-aware baseline and what its ablation needs: recipe variants (`train --variant`), files
that offer several models (`evaluate FILE.py:FACTORY`), scoring some specimens of a part
(`evaluate --specimens`, kept off the leaderboard) and paired comparisons of two entries
(`leaderboard compare`)."""

from __future__ import annotations

import json
import math
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.evaluation import EvaluateOptions, EvaluationError, evaluate
from bonesr_bench.evaluation.references import reference_rows
from bonesr_bench.evaluation.run import _run_key
from bonesr_bench.leaderboard import LeaderboardError, add, compare, load_results
from bonesr_bench.models import SubmissionError, entry_name, resolve, source_file
from bonesr_bench.models.wrapper import load_weights
from bonesr_bench.scoring import paired_difference

from conftest import load_baseline

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "leaderboard" / "results"
runner = CliRunner()


@pytest.fixture(scope="module")
def bioaware():
    return load_baseline("bioaware")


def test_bioaware_is_fsrcnn_started_from_its_trained_weights(bioaware):
    fsrcnn = load_baseline("fsrcnn")
    net = bioaware.network()
    assert sum(p.numel() for p in net.parameters()) <= 25_000
    trained = load_weights(fsrcnn.network(), fsrcnn.WEIGHTS).state_dict()
    assert all(torch.equal(t, trained[k]) for k, t in net.state_dict().items())
    fresh = bioaware.network({**bioaware.CONFIG, "init": None}).state_dict()
    assert not all(torch.equal(t, trained[k]) for k, t in fresh.items())
    with pytest.raises(ValueError, match="init"):
        bioaware.network({**bioaware.CONFIG, "init": "rcan"})


def test_every_variant_is_a_recipe_with_its_own_factory(bioaware):
    assert bioaware.CHOSEN in bioaware.VARIANTS and "none" in bioaware.VARIANTS
    assert bioaware.RECIPE == replace(bioaware.BASE, **bioaware.VARIANTS[bioaware.CHOSEN])
    for v, overrides in bioaware.VARIANTS.items():
        recipe = replace(bioaware.RECIPE, **overrides)  # as `train --variant` derives it
        assert recipe.loss == "l1" and recipe.iterations == bioaware.BASE.iterations
        assert callable(getattr(bioaware, f"load_{v}"))
    # the control: the same fine-tuning, L1 only
    assert replace(bioaware.RECIPE, **bioaware.VARIANTS["none"]).morphometry_weights == {}
    singles = [v for v, o in bioaware.VARIANTS.items()
               if len(o["morphometry_weights"]) == 1 and o["stack"] == 1]
    assert sorted(singles) == sorted(["bv_tv", "euler", "cldice", "thickness"])


def test_shipped_variants_load_and_record_how_they_were_made(bioaware):
    fsrcnn_sha = json.loads((ROOT / "baselines/weights/fsrcnn.safetensors.json").read_text())
    for v, overrides in bioaware.VARIANTS.items():
        side = json.loads(Path(str(bioaware.HERE / "weights" / f"bioaware-{v}.safetensors")
                               + ".json").read_text())
        assert side["variant"] == v and side["name"] == f"bioaware-{v}"
        want = replace(bioaware.RECIPE, **overrides).as_dict()
        got = {k: side["recipe"][k] for k in want}
        assert json.loads(json.dumps(got)) == json.loads(json.dumps(want, default=str)), v
        assert side["split"]["fingerprint"] == fsrcnn_sha["split"]["fingerprint"]
        assert side["config"] == bioaware.CONFIG
        model = getattr(bioaware, f"load_{v}")("cpu")
        sr = model(torch.rand(2, 1, 12, 10))
        assert sr.shape == (2, 1, 24, 20) and model.name == f"bioaware-{v}"
    chosen = bioaware.load("cpu")
    assert chosen.name == "bioaware" and chosen.weights == bioaware.WEIGHTS


def test_train_variant_writes_its_own_weights_and_refuses_unknown_ones(mini_split, tmp_path):
    path = str(ROOT / "baselines" / "bioaware.py")
    r = runner.invoke(app, ["train", path, "--split", str(mini_split), "--tiny", "--variant",
                            "euler3d", "--run-dir", str(tmp_path / "run"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    weights = tmp_path / "run" / "bioaware-euler3d.safetensors"
    side = json.loads(Path(str(weights) + ".json").read_text())
    assert side["variant"] == "euler3d" and side["recipe"]["stack"] == 4
    assert side["recipe"]["morphometry_weights"] == {"euler": 0.2}
    r = runner.invoke(app, ["train", path, "--split", str(mini_split), "--tiny", "--variant",
                            "nope", "--run-dir", str(tmp_path / "run2")])
    assert r.exit_code == 2
    assert "--variant 'nope': the file's variants are none, bv_tv" in r.output
    assert not (tmp_path / "run2").exists()


def test_a_variant_that_is_no_recipe_is_refused(mini_split, tmp_path):
    src = tmp_path / "m.py"
    src.write_text((ROOT / "submissions/example/model.py").read_text()
                   + "\nVARIANTS = {'bad': {'learning_rat': 1.0}}\n")
    r = runner.invoke(app, ["train", str(src), "--split", str(mini_split), "--tiny",
                            "--variant", "bad", "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 2 and "VARIANTS['bad']" in r.output and "Recipe fields" in r.output
    r = runner.invoke(app, ["train", str(src), "--split", str(mini_split), "--tiny",
                            "--variant", "x"])
    assert r.exit_code == 2 and "variants are bad" in r.output


TWO_MODELS = textwrap.dedent("""
    import torch.nn.functional as F

    class Up:
        scale, input = 2, "slice"

        def __init__(self, name, gain):
            self.name, self.gain = name, gain

        def __call__(self, lr):
            return (F.interpolate(lr, scale_factor=2, mode="nearest") * self.gain).clamp(0, 1)

    def load(device):
        return Up("plain", 1.0)

    def load_dim(device):
        return Up("dim", 0.5)

    not_a_factory = 3
""")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    path = tmp_path_factory.mktemp("two") / "two.py"
    path.write_text(TWO_MODELS)
    return path


def test_a_file_may_offer_several_models(two_models):
    assert entry_name(f"{two_models}:load_dim") == "two-dim"
    assert entry_name(str(two_models)) == "two"
    assert source_file(f"{two_models}:load_dim") == two_models
    assert resolve(f"{two_models}:load_dim")("cpu").name == "dim"
    assert resolve(str(two_models))("cpu").name == "plain"
    with pytest.raises(SubmissionError, match=r"defines no load_x\(device\).*has load, load_dim"):
        resolve(f"{two_models}:load_x")
    with pytest.raises(SubmissionError, match="defines no not_a_factory"):
        resolve(f"{two_models}:not_a_factory")
    key = _run_key("sha", str(two_models), "fp", "test", False)
    assert key == _run_key("sha", str(two_models), "fp", "test", False, "auto", None)
    assert key != _run_key("sha", f"{two_models}:load_dim", "fp", "test", False)
    assert key != _run_key("sha", str(two_models), "fp", "test", False, "auto", ("s2000",))


@pytest.fixture(scope="module")
def some_specimens(mini_split, two_models, tmp_path_factory):
    """The dim model of the two-model file scored on one train specimen of the mini split."""
    out = tmp_path_factory.mktemp("runs")
    outcome = evaluate(f"{two_models}:load_dim",
                       EvaluateOptions(split=mini_split, subset="train", out=out, device="cpu",
                                       specimens=("s1001",)))
    return out, outcome


def test_some_specimens_of_a_part_are_scored_and_said(some_specimens):
    out, outcome = some_specimens
    res = outcome.result
    assert outcome.exit_code == 0 and res["entry"] == "two-dim"
    assert res["model"]["name"] == "dim"
    assert res["split"]["subset"] == "train" and res["split"]["selected"] == ["s1001"]
    assert [s["specimen"] for s in res["specimens"]] == ["s1001"]
    assert list(res["references"]) == ["s1001"]
    assert outcome.path == out / "two-dim@synth-v2-mini" / "result.json"


def test_unknown_specimens_are_refused_before_anything_runs(mini_split, two_models, tmp_path):
    with pytest.raises(EvaluationError, match=r"--specimens: s9 not in the test part .* \(it has "
                                              r"s2000, s2001"):
        evaluate(str(two_models), EvaluateOptions(split=mini_split, out=tmp_path, device="cpu",
                                                  specimens=("s2000", "s9")))
    assert not any(tmp_path.iterdir())


def test_partial_or_train_results_never_join_the_leaderboard(some_specimens, mini_split,
                                                             tmp_path):
    _, outcome = some_specimens
    board = tmp_path / "board"
    with pytest.raises(LeaderboardError, match="specimens s1001 of the train part"):
        add(outcome.path, board, allow_other_split=True)
    res = json.loads(outcome.path.read_text())
    res["split"].pop("selected")
    (tmp_path / "train.json").write_text(json.dumps(res))
    with pytest.raises(LeaderboardError, match="the train part; the leaderboard takes"):
        add(tmp_path / "train.json", board, allow_other_split=True)
    assert not board.exists()
    board.mkdir()  # copied in by hand, they are excluded from the board and its site
    shutil.copy(outcome.path, board / "partial.json")
    shutil.copy(tmp_path / "train.json", board / "train.json")
    kept, excluded, _ = load_results(board)
    assert kept == {} and [f for f, _ in excluded] == ["partial.json", "train.json"]
    assert all("part of the split" in why for _, why in excluded)


def test_reference_rows_are_computed_once_whoever_asks(mini_split, monkeypatch, tmp_path):
    import zarr

    from bonesr_bench import scoring
    from bonesr_bench.split import SegmentationParams

    root = zarr.open_group(str(mini_split), mode="r")
    meta = dict(root.attrs["bonesr"])
    calls = []
    real = scoring.measure
    monkeypatch.setattr(scoring, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    params = SegmentationParams(**meta["segmentation"]["grids"]["hr"]) \
        if "grids" in meta.get("segmentation", {}) else SegmentationParams()
    one = reference_rows(mini_split, root, meta, "test", params, cache_dir=tmp_path,
                         names=["s2001"])
    assert list(one) == ["s2001"] and len(calls) == 2  # HR and LR
    both = reference_rows(mini_split, root, meta, "test", params, cache_dir=tmp_path)
    assert list(both) == ["s2000", "s2001"] and len(calls) == 4  # only s2000 was new
    assert both["s2001"] == one["s2001"]
    reference_rows(mini_split, root, meta, "test", params, cache_dir=tmp_path)
    assert len(calls) == 4


def _rows(values):
    return [{"specimen": f"s{i}", "bio_err_vs_hr": v, "psnr_db": 30.0 + v, "ssim": 0.5,
             "rel_err_vs_hr": {"bv_tv_pct": -v, "conn_d_per_mm3": math.nan}}
            for i, v in enumerate(values)]


def test_paired_difference_is_paired_and_antisymmetric():
    a, b = _rows([0.1, 0.2, 0.3, 0.4]), _rows([0.2, 0.2, 0.5, 0.5])
    d = paired_difference(a, b)
    assert d["specimens"] == ["s0", "s1", "s2", "s3"]
    e = d["bio_err_vs_hr"]
    assert e["a"] == pytest.approx(0.25) and e["b"] == pytest.approx(0.35)
    assert e["difference"]["mean"] == pytest.approx(-0.1)
    lo, hi = e["difference"]["ci95"]
    assert -0.2 <= lo <= -0.1 <= hi <= 0.0  # the paired differences are -0.1, 0, -0.2, -0.1
    back = paired_difference(b, a)["bio_err_vs_hr"]["difference"]
    assert back["mean"] == pytest.approx(0.1)
    assert back["ci95"][0] == pytest.approx(-hi) and back["ci95"][1] == pytest.approx(-lo)
    assert d["abs_rel_err_vs_hr"]["bv_tv_pct"]["difference"]["mean"] == pytest.approx(-0.1)
    assert d["abs_rel_err_vs_hr"]["conn_d_per_mm3"]["difference"]["n"] == 0
    only = paired_difference(a[:2], b[1:])  # only s1 in both
    assert only["specimens"] == ["s1"]


def test_compare_committed_entries():
    same = compare("fsrcnn", "fsrcnn", RESULTS)
    assert same["bio_err_vs_hr"]["difference"]["mean"] == 0
    assert same["bio_err_vs_hr"]["difference"]["ci95"] == [0.0, 0.0]
    c = compare("fsrcnn", "bicubic", RESULTS)
    fs = json.loads((RESULTS / "fsrcnn.json").read_text())["aggregates"]
    bi = json.loads((RESULTS / "bicubic.json").read_text())["aggregates"]
    assert c["bio_err_vs_hr"]["a"] == pytest.approx(fs["bio_err_vs_hr"]["mean"])
    assert c["bio_err_vs_hr"]["difference"]["mean"] == pytest.approx(
        fs["bio_err_vs_hr"]["mean"] - bi["bio_err_vs_hr"]["mean"])
    assert c["bio_err_vs_hr"]["difference"]["ci95"][1] < 0  # FSRCNN beats bicubic
    r = runner.invoke(app, ["leaderboard", "compare", "fsrcnn", "bicubic"])
    assert r.exit_code == 0 and "| biological error vs HR | 17.77 % | 26.64 % |" in r.output
    r = runner.invoke(app, ["leaderboard", "compare", "fsrcnn", "nope"])
    assert r.exit_code == 2 and "nope: no such entry or result file" in r.output
    r = runner.invoke(app, ["leaderboard", "compare", "fsrcnn", "hr-scan"])
    assert r.exit_code == 2 and "not a scored entry" in r.output


def test_compare_refuses_results_of_another_split(some_specimens):
    _, outcome = some_specimens
    with pytest.raises(LeaderboardError, match="different splits"):
        compare("fsrcnn", str(outcome.path), RESULTS)
