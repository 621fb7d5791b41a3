"""`leaderboard rescore`: committed entries scored again from their kept SR volumes, never
running a model, in one process or on Dask; an entry without volumes stops it before anything
is written."""

from __future__ import annotations

import json
import shutil

import pytest
import zarr
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.evaluation import EvaluateOptions, EvaluationError, evaluate
from bonesr_bench.leaderboard import LeaderboardError, add, rescore, write_references

from conftest import tree_sha

runner = CliRunner()
MODEL = """
import torch.nn.functional as F


class Up:
    name, scale, input = "up", 2, "slice"

    def __call__(self, lr):
        return F.interpolate(lr, scale_factor=2, mode="bilinear", align_corners=False).clamp(0, 1)


def load(device):
    return Up()
"""


@pytest.fixture()
def board(mini_split, tmp_path):
    """A leaderboard of one entry (a bilinear model in its own file) on the mini split, its
    runs folder, and the model's file."""
    src = tmp_path / "up.py"
    src.write_text(MODEL)
    runs, results = tmp_path / "runs", tmp_path / "results"
    out = evaluate(str(src), EvaluateOptions(split=mini_split, out=runs, device="cpu"))
    add(out.path, results, allow_other_split=True, allow_unconfined=True)
    write_references(mini_split, results)
    return results, runs, src, out


def _forget_scores(runs):
    """What a change of the conventions does to stored scores: their key no longer matches."""
    store = zarr.open_group(str(next(runs.glob("up*")) / "sr.zarr"), mode="a")
    for name in store["test"].group_keys():
        g = store[f"test/{name}"]
        g.attrs["score"] = {**g.attrs["score"], "scoring_key": "an older convention"}


@pytest.mark.parametrize("workers", [1, 2])
def test_rescore_scores_the_kept_volumes_without_the_model(board, mini_split, workers,
                                                           monkeypatch):
    import distributed

    started = []

    class Counted(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            started.append(kwargs.get("n_workers"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", Counted)
    results, runs, src, out = board
    before = json.loads((results / "up.json").read_text())
    src.write_text("raise SystemExit('the model must not run')\n")  # importing it would fail
    _forget_scores(runs)
    done = rescore(results, runs, split=mini_split, workers=workers)
    # one cluster for the entry and the reference rows (parallel.shared_scorer), none inline
    assert started == ([2] if workers == 2 else [])
    after = json.loads((results / "up.json").read_text())
    assert [d["entry"] for d in done] == ["up"]
    assert after["aggregates"] == before["aggregates"]
    def figures(res):  # the scoring time is the one thing a rescore may change
        return [{k: v for k, v in s.items() if k != "scoring_seconds"} for s in res["specimens"]]

    assert figures(after) == figures(before)
    assert after["submission"] == before["submission"]
    assert after["run"]["rescored"]["from_created"] == before["created"]
    assert after["model"] == before["model"]
    assert (results / "hr-scan.json").exists()


def test_rescore_refuses_an_entry_without_its_volumes_and_writes_nothing(board, mini_split):
    results, runs, _, _ = board
    before = tree_sha(results)
    shutil.rmtree(next(runs.glob("up*")) / "sr.zarr" / "test" / "s2001")
    with pytest.raises(LeaderboardError, match=r"up: .*no complete SR volume of s2001"):
        rescore(results, runs, split=mini_split)
    assert tree_sha(results) == before
    with pytest.raises(LeaderboardError, match="nope: not a scored entry"):
        rescore(results, runs, split=mini_split, entries=["nope"])
    r = runner.invoke(app, ["leaderboard", "rescore", "--results", str(results), "--runs",
                            str(runs), "--split", str(mini_split)])
    assert r.exit_code == 2 and "no complete SR volume of s2001" in r.output
    assert tree_sha(results) == before


def test_rescore_never_forces_a_model_run(mini_split, tmp_path):
    with pytest.raises(EvaluationError, match="a rescore never runs the model"):
        evaluate("bicubic", EvaluateOptions(split=mini_split, out=tmp_path, rescore=True,
                                            force=True))


def test_a_rescore_that_cannot_score_an_entry_writes_nothing(board, mini_split):
    results, runs, _, _ = board
    before = tree_sha(results)
    store = zarr.open_group(str(next(runs.glob("up*")) / "sr.zarr"), mode="a")
    sr = store["test/s2001/sr/0"]
    sr[...] = 0  # a constant volume: segmentation has no threshold
    _forget_scores(runs)
    with pytest.raises(LeaderboardError, match=r"up: its kept SR volumes could not be scored "
                                               r".*nothing was written"):
        rescore(results, runs, split=mini_split)
    assert tree_sha(results) == before


def test_a_rescore_refuses_volumes_of_other_weights(board, mini_split):
    results, runs, _, _ = board
    res = json.loads((results / "up.json").read_text())
    res["model"]["weights_sha256"] = "0" * 64  # the committed entry had other weights
    (results / "up.json").write_text(json.dumps(res))
    before = tree_sha(results)
    with pytest.raises(LeaderboardError, match="made with other weights"):
        rescore(results, runs, split=mini_split)
    assert tree_sha(results) == before
