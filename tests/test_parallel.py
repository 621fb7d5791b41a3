"""Scoring on Dask (`evaluate --workers N`, `--scheduler`): the same numbers as in one process,
a killed worker retried, bad options refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.evaluation import EvaluateOptions, EvaluationError, evaluate
from bonesr_bench.evaluation.parallel import Scorer
from bonesr_bench.morphometry import structure_model_index, thickness_stats
from bonesr_bench.scoring.perceptual import psnr_3d, ssim_3d

from conftest import random_structure

pytest.importorskip("distributed")
runner = CliRunner()


def _comparable(res: dict) -> str:
    """The result without what may differ between two runs of the same thing: times, the
    creation stamp and how the scoring ran."""
    res = json.loads(json.dumps(res))
    res.pop("timings"), res.pop("created")
    res["run"].pop("scoring")
    for s in res["specimens"]:
        s.pop("scoring_seconds")
    return json.dumps(res, sort_keys=True)


@pytest.fixture(scope="module")
def inline_and_dask(mini_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    one = evaluate("bicubic", EvaluateOptions(split=mini_split, out=out / "one", device="cpu"))
    two = evaluate("bicubic", EvaluateOptions(split=mini_split, out=out / "two", device="cpu",
                                              workers=2))
    return one, two


def test_two_workers_give_the_result_of_one_process(inline_and_dask):
    one, two = inline_and_dask
    assert one.exit_code == two.exit_code == 0
    assert one.result["run"]["scoring"] == {"mode": "inline", "workers": 1}
    assert two.result["run"]["scoring"]["mode"] == "dask"
    assert two.result["run"]["scoring"]["workers"] == 2
    assert _comparable(one.result) == _comparable(two.result)


def test_whole_volume_figures_do_not_depend_on_the_thread_count():
    """What made 1-thread workers differ from a 2-thread process in the last bits: numba's and
    torch's parallel reductions. Summed in a fixed order, they agree bit for bit."""
    import numba
    import torch

    bone = random_structure((40, 48, 48), 2.0, 0.3, 3)
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.random((24, 40, 40), dtype=np.float32) * 255)
    b = (a + torch.from_numpy(rng.normal(0, 8, a.shape).astype(np.float32))).clamp(0, 255)
    old_numba, old_torch = numba.get_num_threads(), torch.get_num_threads()
    seen = []
    try:
        for n in sorted({1, max(2, old_numba)}):
            numba.set_num_threads(n)
            torch.set_num_threads(n)
            seen.append((thickness_stats(bone), structure_model_index(bone),
                         ssim_3d(a, b), psnr_3d(a, b)))
    finally:
        numba.set_num_threads(old_numba)
        torch.set_num_threads(old_torch)
    assert all(s == seen[0] for s in seen)


def test_a_killed_worker_is_retried_and_loses_nothing(mini_split, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv("BONESR_TEST_KILL_ONCE", str(marker))  # the first task kills its worker
    out = evaluate("bicubic", EvaluateOptions(split=mini_split, out=tmp_path / "runs",
                                              device="cpu", workers=2))
    assert marker.read_text() == "killed"
    assert out.exit_code == 0 and len(out.result["specimens"]) == 2


def test_bad_parallel_options_are_refused_in_one_line(mini_split, tmp_path):
    with pytest.raises(EvaluationError, match="--workers must be at least 1"):
        Scorer(0)
    r = runner.invoke(app, ["evaluate", "bicubic", "--split", str(mini_split), "--out",
                            str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == 2
    assert "--scheduler tcp://127.0.0.1:9: cannot reach it" in r.output


def test_a_running_cluster_takes_the_tasks(mini_split, inline_and_dask, tmp_path):
    import os

    from distributed import LocalCluster

    one, _ = inline_and_dask
    environ = dict(os.environ)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            out = evaluate("bicubic", EvaluateOptions(split=mini_split, out=tmp_path,
                                                      device="cpu",
                                                      scheduler=cluster.scheduler_address))
    finally:  # distributed's nanny leaves thread limits in this process's environment
        os.environ.clear()
        os.environ.update(environ)
    assert out.result["run"]["scoring"]["scheduler"] == cluster.scheduler_address
    assert _comparable(out.result) == _comparable(one.result)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_output_that_cannot_be_scored_fails_the_submission_either_way(mini_split, tmp_path,
                                                                          workers):
    src = tmp_path / "flat.py"
    src.write_text("import torch\n\nclass M:\n    name, scale, input = 'flat', 2, 'slice'\n\n"
                   "    def __call__(self, lr):\n"
                   "        return torch.zeros(lr.shape[0], 1, 2 * lr.shape[2], 2 * lr.shape[3])"
                   "\n\ndef load(device):\n    return M()\n")
    out = evaluate(str(src), EvaluateOptions(split=mini_split, out=tmp_path / "runs",
                                             device="cpu", workers=workers))
    assert out.exit_code == 1 and out.result["status"] == "failed"
    assert "its output could not be scored: the volume is constant" in out.result["reason"]


def test_scores_finished_before_a_model_failure_are_kept(mini_split, tmp_path):
    """The model fails on the second specimen; the first one's score, still running on a
    worker, is recorded, so the next call does not run the model on it again."""
    import zarr

    src = tmp_path / "late.py"
    src.write_text("import torch.nn.functional as F\n\nclass M:\n"
                   "    name, scale, input = 'late', 2, 'slice'\n    calls = 0\n\n"
                   "    def __call__(self, lr):\n        M.calls += lr.shape[0]\n"
                   "        if M.calls > 16:\n            raise RuntimeError('second specimen')\n"
                   "        return F.interpolate(lr, scale_factor=2, mode='bilinear')\n\n"
                   "def load(device):\n    return M()\n")
    out = evaluate(str(src), EvaluateOptions(split=mini_split, out=tmp_path / "runs",
                                             device="cpu", workers=2))
    assert out.exit_code == 1 and "second specimen" in out.result["reason"]
    store = zarr.open_group(str(out.path.parent / "sr.zarr"), mode="r")
    assert store["test/s2000"].attrs["complete"] is True
    assert "score" in store["test/s2000"].attrs


def test_workers_and_a_scheduler_are_one_or_the_other():
    with pytest.raises(EvaluationError, match="give one of them"):
        Scorer(2, "tcp://127.0.0.1:8786")


def test_the_callers_environment_is_left_as_it_was():
    """distributed's nanny writes thread limits into the caller's os.environ; the model's
    worker, started afterwards, would inherit them."""
    import os

    before = dict(os.environ)
    with Scorer(2) as scorer:
        assert dict(os.environ) == before
        workers = scorer.client.run(_malloc_environ)
    assert dict(os.environ) == before
    # and the workers run without distributed's MALLOC_TRIM_THRESHOLD_ (see LOCAL_WORKER_CONFIG)
    assert len(workers) == 2
    assert all(env == before.get("MALLOC_TRIM_THRESHOLD_") for env in workers.values())


def _malloc_environ():
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


# ----------------------------------------------------------------------------------------------
# stores addressed by URL (fsspec): what workers on other machines read


def _without_path(res: dict) -> str:
    res = json.loads(_comparable(res))
    res["split"].pop("path")
    return json.dumps(res, sort_keys=True)


def test_a_split_built_at_a_url_is_the_same_split(mini_split, tmp_path):
    from bonesr_bench.split import SPLITS, build, verify

    want = verify(mini_split).fingerprint
    for url in ("memory://bonesr-test/mini.zarr", (tmp_path / "mini.zarr").as_uri()):
        assert build(url, SPLITS["mini"], workers=2) == want, url  # memory://: in-process
        report = verify(url)
        assert report.ok and report.fingerprint == want and report.path == url


def test_dask_workers_read_the_split_by_url(inline_and_dask, mini_split, tmp_path):
    import shutil

    one, _ = inline_and_dask
    copy = tmp_path / "copy.zarr"
    shutil.copytree(mini_split, copy)
    url = copy.as_uri()  # file:///...: opened through fsspec, as s3:// or gs:// would be
    two = evaluate("bicubic", EvaluateOptions(split=url, out=tmp_path / "runs", device="cpu",
                                              workers=2))
    assert two.exit_code == 0 and two.result["split"]["path"] == url
    assert _without_path(two.result) == _without_path(one.result)


def test_a_memory_store_is_scored_in_process_and_refused_to_workers(inline_and_dask,
                                                                    mini_split, tmp_path):
    from bonesr_bench.split import SPLITS, build

    one, _ = inline_and_dask
    url = "memory://bonesr-test/scored.zarr"
    build(url, SPLITS["mini"])
    same = evaluate("bicubic", EvaluateOptions(split=url, out=tmp_path / "a", device="cpu"))
    assert _without_path(same.result) == _without_path(one.result)
    with pytest.raises(EvaluationError, match="memory:// store lives in this process only"):
        evaluate("bicubic", EvaluateOptions(split=url, out=tmp_path / "b", device="cpu",
                                            workers=2))


@pytest.mark.parametrize("url, message", [
    ("foo://x.zarr", "Protocol not known: foo; install the fsspec backend"),
    ("memory://nothing/here.zarr", "no split here; build it with"),
])
def test_a_url_that_cannot_be_read_is_one_line(url, message):
    r = runner.invoke(app, ["data", "verify", url])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) <= 3
