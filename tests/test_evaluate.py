"""`bonesr-bench evaluate`: a scored run end to end on the mini split, resume, the result file,
and the suite of bad submissions (each fails in one line, leaving everything else untouched)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.evaluation import EvaluateOptions, EvaluationError, evaluate
from bonesr_bench.evaluation import result as result_mod
from bonesr_bench.models import load_model
from bonesr_bench.models.inference import run_model
from bonesr_bench.models.worker import LOG_LIMIT_BYTES
from bonesr_bench.scoring.segmentation import normalise
from bonesr_bench.split import PROTOCOLS, from_raw, iter_specimens

from conftest import tree_sha

ROOT = Path(__file__).parents[1]
BICUBIC = str(ROOT / "baselines" / "bicubic.py")
runner = CliRunner()


@pytest.fixture(scope="module")
def scored(mini_split, tmp_path_factory):
    """The bicubic baseline scored on the mini split: (out dir, outcome)."""
    out = tmp_path_factory.mktemp("runs")
    outcome = evaluate(BICUBIC, EvaluateOptions(split=mini_split, out=out, device="cpu"))
    return out, outcome


def test_bicubic_is_scored_and_the_result_is_complete(scored, mini_split):
    out, outcome = scored
    res = outcome.result
    assert outcome.exit_code == 0 and outcome.path == out / "bicubic@synth-v2-mini" / "result.json"
    assert result_mod.read(outcome.path) == res  # valid against the schema, round trip
    assert res["status"] == "scored" and res["model"]["name"] == "bicubic"
    assert res["split"]["fingerprint"] == zarr.open_group(str(mini_split), mode="r").attrs[
        "bonesr"]["fingerprint"]
    assert len(res["code"]["code_sha256"]) == 64 and res["split"]["n_specimens"] == 2
    assert res["split"]["source"] == "synthetic" and "registration_ncc" not in res["split"]
    agg = res["aggregates"]
    assert 10 < agg["psnr_db"]["mean"] < 40 and 0 < agg["ssim"]["mean"] < 1
    for row in res["specimens"]:
        ref = res["references"][row["specimen"]]
        # relative errors follow from the recorded values
        for k in ("bv_tv_pct", "tb_th_um", "tb_sp_um", "ct_th_um"):
            expected = (row["values"][k] - ref["hr"][k]) / abs(ref["hr"][k])
            assert row["rel_err_vs_hr"][k] == pytest.approx(expected, rel=1e-9)
    p = agg["params"]["tb_th_um"]
    assert p["entry"]["mean"] == pytest.approx(np.mean([r["values"]["tb_th_um"]
                                                        for r in res["specimens"]]))
    lo, hi = agg["bio_err_vs_hr"]["ci95"]
    assert lo <= agg["bio_err_vs_hr"]["mean"] <= hi
    assert res["summary"]["verdict"] in ("better", "worse", "tied")
    assert "LR scan" in res["summary"]["sentence"]


def test_sr_store_holds_what_was_scored(scored, mini_split):
    """sr.zarr has the split's OME metadata and the model's output (to the storage step)."""
    out, outcome = scored
    store = zarr.open_group(str(out / "bicubic@synth-v2-mini" / "sr.zarr"), mode="r")
    model = load_model(BICUBIC, expected_scale=2)
    for spec in iter_specimens(mini_split, "test"):
        g = store[f"test/{spec.name}"]
        assert g.attrs["complete"]
        ms = g["sr"].attrs["multiscales"][0]
        assert ms["axes"][0]["unit"] == "micrometer"
        assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [10.5] * 3
        stored = from_raw(np.asarray(g["sr/0"][...]))
        assert stored.shape == spec.hr.shape
        window = PROTOCOLS["v2"].segmentation["hr"].window  # the mini split is a v2 split
        sr01, _ = run_model(model, normalise(spec.lr, window))
        lo, hi = window
        assert np.abs(stored - (lo + sr01 * (hi - lo))).max() < 1e-3  # uint16 storage step


def test_rerun_resumes_and_force_recomputes(scored, mini_split, monkeypatch):
    out, first = scored
    import bonesr_bench.models.worker as worker

    class NoWorker:
        def __init__(self, *a, **k):
            raise AssertionError("finished specimens must not be recomputed")

    monkeypatch.setattr(worker, "IsolatedRun", NoWorker)
    again = evaluate(BICUBIC, EvaluateOptions(split=mini_split, out=out, device="cpu"))
    assert again.result["aggregates"] == first.result["aggregates"]
    assert sorted(again.result["run"]["resumed"]) == ["s2000", "s2001"]
    with pytest.raises(AssertionError, match="must not be recomputed"):
        evaluate(BICUBIC, EvaluateOptions(split=mini_split, out=out, device="cpu", force=True))


def test_a_changed_submission_does_not_mix_with_stored_volumes(scored, mini_split, tmp_path):
    out, _ = scored
    changed = tmp_path / "bicubic.py"
    changed.write_text(Path(BICUBIC).read_text() + "\n# changed\n")
    with pytest.raises(EvaluationError, match="another version .* --force"):
        evaluate(str(changed), EvaluateOptions(split=mini_split, out=out, device="cpu"))


# ---------------------------------------------------------------- the bad submissions

TEMPLATE = """
import torch
import torch.nn.functional as F
HEADER
class M:
    name, scale, input = "bad", SCALE, "slice"
    def __call__(self, lr):
        BODY
        return F.interpolate(lr, scale_factor=2, mode="bilinear", align_corners=False)
def load(device):
    return M()
"""

BAD = {
    "import_error": ("import no_such_module_for_bonesr", "pass", 2,
                     "importing it failed: ModuleNotFoundError"),
    "raises": ("", "raise RuntimeError('kaboom')", 2, "raised RuntimeError: kaboom"),
    "nan": ("", "return F.interpolate(lr, scale_factor=2) * float('nan')", 2, "non-finite"),
    "wrong_shape": ("", "return lr", 2, "output shape"),
    "wrong_scale": ("", "pass", 3, "the split's scale is 2"),
    "wrong_dtype": ("", "return F.interpolate(lr, scale_factor=2).double()", 2,
                    "expected torch.float32"),
    "hangs": ("import time", "time.sleep(600)", 2, "timeout"),
    "memory_hog": ("", "x = torch.empty(48 * 1024**3, dtype=torch.uint8); x.fill_(1)", 2,
                   "out of memory|RuntimeError"),
    "nondeterministic": ("", "return (F.interpolate(lr, scale_factor=2) + 0.05 * "
                             "torch.rand(lr.shape[0], 1, 2 * lr.shape[2], 2 * lr.shape[3]))"
                             ".clamp(0, 1)", 2, "changed between two runs"),
}


def bad_submission(tmp_path: Path, case: str) -> str:
    header, body, scale, _ = BAD[case]
    text = textwrap.dedent(TEMPLATE).replace("HEADER", header).replace("BODY", body)
    path = tmp_path / f"{case}.py"
    path.write_text(text.replace("SCALE", str(scale)))
    return str(path)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_submissions_fail_cleanly_and_touch_nothing(case, scored, mini_split, tmp_path):
    out, _ = scored
    before = {"split": tree_sha(mini_split), "earlier": tree_sha(out / "bicubic@synth-v2-mini"),
              "leaderboard": tree_sha(ROOT / "leaderboard")}
    args = ["evaluate", bad_submission(tmp_path, case), "--split", str(mini_split),
            "--out", str(out), "--device", "cpu", "--timeout", "8", "--memory-gb", "6"]
    if case == "nondeterministic":
        args.append("--check-determinism")
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    res = result_mod.read(out / f"{case}@synth-v2-mini" / "result.json")
    assert res["status"] == "failed" and res["aggregates"] is None
    import re

    assert re.search(BAD[case][3], res["reason"]), res["reason"]
    assert "\n" not in res["reason"] and case in res["reason"]
    assert "failed:" in r.output
    after = {"split": tree_sha(mini_split), "earlier": tree_sha(out / "bicubic@synth-v2-mini"),
             "leaderboard": tree_sha(ROOT / "leaderboard")}
    assert after == before


def test_a_failure_never_replaces_an_earlier_score(scored, mini_split, tmp_path):
    out, _ = scored
    earlier = (out / "bicubic@synth-v2-mini" / "result.json").read_bytes()
    volumes = tree_sha(out / "bicubic@synth-v2-mini" / "sr.zarr")
    path = tmp_path / "bicubic.py"
    path.write_text(textwrap.dedent(TEMPLATE).replace("HEADER", "").replace("SCALE", "2")
                    .replace("BODY", "raise ValueError('regressed')"))
    r = runner.invoke(app, ["evaluate", str(path), "--split", str(mini_split), "--out",
                            str(out), "--device", "cpu", "--force"])
    assert r.exit_code == 1
    assert (out / "bicubic@synth-v2-mini" / "result.json").read_bytes() == earlier
    assert tree_sha(out / "bicubic@synth-v2-mini" / "sr.zarr") == volumes
    failed = result_mod.read(out / "bicubic@synth-v2-mini" / "result.failed.json")
    assert "regressed" in failed["reason"]


def test_snooping_model_finds_nothing_and_chatter_stays_in_the_log(mini_split, tmp_path,
                                                                    monkeypatch):
    """A model that searches cwd, HOME and the environment for the split finds nothing (and is
    scored); one that prints megabytes leaves the terminal clean and its log capped."""
    monkeypatch.setenv("BONESR_SECRET_SPLIT", str(mini_split))
    body = """import os, pathlib
        places = {os.getcwd(), os.path.expanduser('~'), os.environ.get('TMPDIR', '')}
        found = [str(p) for d in places if d for p in pathlib.Path(d).rglob('*')]
        found += [f'{k}={v}' for k, v in os.environ.items()]
        hits = [f for f in found if any(w in f.lower() for w in
                ('zarr', 'hr', 'truth', 'region', 'mini', 'secret', 'split'))]
        if hits:
            raise RuntimeError(f'found {hits[:3]}')
        print('x' * 300000)
        import sys; sys.stderr.write('y' * 300000)"""
    path = tmp_path / "snoop.py"
    path.write_text(textwrap.dedent(TEMPLATE).replace("HEADER", "").replace("SCALE", "2")
                    .replace("BODY", body))
    out = tmp_path / "runs"
    r = runner.invoke(app, ["evaluate", str(path), "--split", str(mini_split), "--out", str(out),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(r.output) < 20000
    assert (out / "snoop@synth-v2-mini" / "worker.log").stat().st_size == LOG_LIMIT_BYTES


def test_usage_and_data_errors_exit_2(mini_split, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    cases = [
        (["evaluate", "missing.py", "--split", str(mini_split)], "no such file"),
        (["evaluate", BICUBIC, "--split", str(tmp_path / "nowhere.zarr")], "no split there"),
        (["evaluate", BICUBIC, "--split", str(mini_split), "--batch-size", "0"], "batch-size"),
        (["evaluate", BICUBIC, "--split", str(mini_split), "--name", "../x"], "--name"),
        # non-ASCII: refused before the run (the result schema would refuse it after)
        (["evaluate", BICUBIC, "--split", str(mini_split), "--name", "modèle"], "ASCII"),
        # a file that is not Python source: a usage error, not a failed submission
        (["evaluate", str(notes), "--split", str(mini_split)], "Python source (.py)"),
    ]
    for args, message in cases:
        r = runner.invoke(app, [*args, "--out", str(tmp_path / "runs")])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and r.output.count("error:") == 1
        assert not r.output.startswith("\n") and "\n\n" not in r.output.strip()
        assert not (tmp_path / "runs").exists()  # nothing written
    # --device is a choice: one line naming the choices, not torch's list of device types
    r = runner.invoke(app, ["evaluate", BICUBIC, "--device", "gpu"])
    text = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and "'gpu' is not one of 'auto', 'cpu', 'cuda'" in text


def test_a_tampered_split_is_refused(mini_split, tmp_path):
    import shutil

    copy = tmp_path / "mini.zarr"
    shutil.copytree(mini_split, copy)
    g = zarr.open_group(str(copy), mode="a")
    a = g["test/s2000/hr/0"]
    a[0, 0, 0] = int(a[0, 0, 0]) + 1
    r = runner.invoke(app, ["evaluate", BICUBIC, "--split", str(copy), "--out",
                            str(tmp_path / "runs")])
    assert r.exit_code == 2 and "fails verification" in r.output
    assert not (tmp_path / "runs").exists()  # nothing written


def test_json_output_is_the_result(scored, mini_split):
    out, first = scored
    r = runner.invoke(app, ["evaluate", BICUBIC, "--split", str(mini_split), "--out", str(out),
                            "--json"])
    assert r.exit_code == 0
    printed = json.loads(r.stdout)
    assert printed["aggregates"] == first.result["aggregates"]



def test_the_terminal_summary_says_what_its_error_columns_are(scored, mini_split):
    """'entry vs HR' is the mean of per-specimen relative errors, not the difference of the
    means: the header marks it and a note says so."""
    out, _ = scored
    r = runner.invoke(app, ["evaluate", BICUBIC, "--split", str(mini_split), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "entry vs HR¹" in r.output
    assert "mean over specimens of each specimen's relative error" in " ".join(r.output.split())
