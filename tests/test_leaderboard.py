"""The committed leaderboard results: reference rows (the HR and LR scans themselves) and adding
scored entries, with every refusal."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bonesr_bench import scoring
from bonesr_bench.cli import app
from bonesr_bench.evaluation import EvaluateOptions, evaluate, reference_result, result
from bonesr_bench.leaderboard import LeaderboardError, add, load_results, write_references

ROOT = Path(__file__).parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def scored_bicubic(mini_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    outcome = evaluate(str(ROOT / "baselines" / "bicubic.py"),
                       EvaluateOptions(split=mini_split, out=out, device="cpu"))
    assert outcome.exit_code == 0
    return outcome


def test_reference_rows_are_the_scans_scored_like_entries(mini_split, scored_bicubic):
    refs = scored_bicubic.result["references"]
    hr, lr = reference_result("hr", mini_split), reference_result("lr", mini_split)
    for res in (hr, lr):
        result.validate(res)
        assert res["status"] == "reference" and res["model"] is None
        assert res["split"]["fingerprint"] == scored_bicubic.result["split"]["fingerprint"]
        assert res["aggregates"]["psnr_db"]["mean"] is None
    # HR against itself is exact; against truth it is the HR error every result quotes
    assert hr["aggregates"]["bio_err_vs_hr"]["mean"] == 0
    assert all(v in (0, None) for row in hr["specimens"] for v in row["rel_err_vs_hr"].values())
    assert hr["aggregates"]["bio_err_vs_truth"] == \
        scored_bicubic.result["aggregates"]["hr_bio_err_vs_truth"]
    # the LR row is the LR scan's figure of every entry's verdict
    assert lr["aggregates"]["bio_err_vs_hr"] == \
        scored_bicubic.result["aggregates"]["lr_bio_err_vs_hr"]
    for row in lr["specimens"]:
        ref = refs[row["specimen"]]
        assert row["values"]["bv_tv_pct"] == pytest.approx(ref["lr"]["bv_tv_pct"])
        assert row["bio_err_vs_hr"] == pytest.approx(
            scoring.biological_error(ref["lr"], ref["hr"]))
    assert lr["summary"]["sentence"].startswith("Reference row: the LR scan (21 µm)")


def test_add_copies_a_scored_result_and_references_join(mini_split, scored_bicubic, tmp_path):
    results = tmp_path / "results"
    written = write_references(mini_split, results)
    assert sorted(p.name for p in written) == ["hr-scan.json", "lr-scan.json"]
    r = runner.invoke(app, ["leaderboard", "add", str(scored_bicubic.path), "--results",
                            str(results), "--allow-other-split"])
    assert r.exit_code == 0, r.output
    copy_ = results / "bicubic.json"
    assert result.read(copy_) == scored_bicubic.result
    assert stat.S_IMODE(copy_.stat().st_mode) & 0o044  # readable by others once committed


def _variant(tmp_path, res, name, **changes):
    res = copy.deepcopy(res)
    for dotted, value in changes.items():
        *head, last = dotted.split(".")
        target = res
        for k in head:
            target = target[k]
        target[last] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(res))
    return path


def test_add_refuses_what_does_not_belong(scored_bicubic, tmp_path):
    res = scored_bicubic.result
    results = tmp_path / "results"
    before = {}
    cases = [
        (_variant(tmp_path, res, "failed", status="failed", reason="boom", aggregates=None,
                  **{"summary.verdict": "failed"}), "only scored results"),
        (_variant(tmp_path, res, "noncanonical"), "neither the canonical"),
        (_variant(tmp_path, res, "reserved", entry="hr-scan", **{"split.canonical": True}),
         "reserved"),
        (_variant(tmp_path, res, "badschema", schema_version="0"), "schema"),
        (tmp_path / "missing.json", "cannot read"),
    ]
    (tmp_path / "garbage.json").write_text("{not json")
    cases.append((tmp_path / "garbage.json", "not JSON"))
    for path, message in cases:
        with pytest.raises(LeaderboardError, match=message) as e:
            add(path, results)
        assert "\n" not in str(e.value)
    assert not results.exists() or not any(results.iterdir())
    # a result of another split fingerprint than the leaderboard's is refused
    add(_variant(tmp_path, res, "ok", **{"split.canonical": True}), results)
    before = {p: p.read_bytes() for p in results.iterdir()}
    other = _variant(tmp_path, res, "other", entry="other", **{"split.canonical": True,
                                                              "split.fingerprint": "f" * 64})
    r = runner.invoke(app, ["leaderboard", "add", str(other), "--results", str(results)])
    assert r.exit_code == 2 and "differs from the leaderboard" in r.output
    assert {p: p.read_bytes() for p in results.iterdir()} == before


def test_a_comparable_result_joins_with_its_own_fingerprint(scored_bicubic, tmp_path):
    """A result scored on a rebuild that differs from the canonical split only within tolerance
    (`data verify`: comparable) joins the leaderboard, keeping its fingerprint; the site keeps
    it too. One that is neither canonical nor comparable is refused."""
    res = scored_bicubic.result
    results = tmp_path / "results"
    add(_variant(tmp_path, res, "ok", **{"split.canonical": True}), results)
    near = _variant(tmp_path, res, "near", entry="near", **{
        "split.canonical": False, "split.comparable": True, "split.fingerprint": "e" * 64})
    copied = add(near, results)
    assert json.loads(copied.read_text())["split"]["fingerprint"] == "e" * 64
    kept, excluded, _ = load_results(results)
    assert {"bicubic", "near"} <= set(kept) and not excluded
    far = _variant(tmp_path, res, "far", entry="far", **{
        "split.canonical": False, "split.comparable": False, "split.fingerprint": "d" * 64})
    with pytest.raises(LeaderboardError, match="nor comparable"):
        add(far, results)


def test_a_result_on_the_canonical_test_part_alone_joins_the_committed_board(tmp_path):
    """What a new user's first evaluate builds is the test part only: its fingerprint (of the
    test arrays) is not the whole split's, yet it is the canonical split and joins the committed
    leaderboard; a result claiming the canonical split with any other fingerprint is refused."""
    from bonesr_bench.split import canonical, canonical_fingerprints, fingerprint

    committed = ROOT / "leaderboard" / "results"
    table = canonical("synth-v2")
    test_fp = fingerprint({k: v["sha256"] for k, v in table["arrays"].items()
                           if k.startswith("test/")})
    assert test_fp in canonical_fingerprints("synth-v2") and test_fp != table["fingerprint"]
    results = tmp_path / "results"
    results.mkdir()
    for f in committed.glob("*.json"):
        (results / f.name).write_bytes(f.read_bytes())
    res = result.read(committed / "bicubic.json")
    fresh = _variant(tmp_path, res, "fresh", entry="fresh", **{"split.fingerprint": test_fp})
    add(fresh, results, allow_unconfined=True)
    kept, excluded, _ = load_results(results)
    assert "fresh" in kept and not excluded
    stale = _variant(tmp_path, res, "stale", entry="stale", **{"split.fingerprint": "c" * 64})
    with pytest.raises(LeaderboardError, match="differs from the leaderboard"):
        add(stale, results, allow_unconfined=True)


def test_committed_results_validate_and_share_one_split():
    files = sorted((ROOT / "leaderboard" / "results").glob("*.json"))
    assert {"hr-scan.json", "lr-scan.json"} <= {f.name for f in files}
    loaded = [result.read(f) for f in files]
    assert len({r["split"]["fingerprint"] for r in loaded}) == 1
    assert all(r["split"]["canonical"] is True and r["split"]["subset"] == "test"
               for r in loaded)
    assert all(r["status"] in ("scored", "reference") for r in loaded)
    assert all(f.stem == r["entry"] for f, r in zip(files, loaded, strict=True))


def test_v1_results_are_kept_apart_and_still_validate():
    files = sorted((ROOT / "leaderboard" / "results-v1").glob("*.json"))
    assert {"hr-scan.json", "lr-scan.json", "fsrcnn.json", "bicubic.json"} <= {f.name for f in
                                                                             files}
    loaded = [result.read(f) for f in files]
    assert {r["split"]["id"] for r in loaded} == {"synth-v1"}
    assert len({r["split"]["fingerprint"] for r in loaded}) == 1
    current = {result.read(f)["split"]["id"] for f in (ROOT / "leaderboard" / "results").glob(
        "*.json")}
    assert current == {"synth-v2"}


def test_table_one_has_the_study_layout(mini_split, scored_bicubic, tmp_path):
    from bonesr_bench.leaderboard import load_results, markdown, table_one

    results = tmp_path / "results"
    write_references(mini_split, results)
    add(scored_bicubic.path, results, allow_other_split=True)
    rows = table_one(load_results(results)[0])
    assert rows[0] == ["parameter", "HR", "bicubic", "LR", "truth"]
    assert [r[0] for r in rows[1:6]] == ["Tb.Th (µm)", "BV/TV (%)", "Tb.Sp (µm)", "DA (ratio)",
                                          "Conn.D (1/mm³)"]
    s = scored_bicubic.result["aggregates"]["params"]["bv_tv_pct"]["entry"]
    assert rows[2][2] == f"{s['mean']:.1f} ± {s['sd']:.1f}"
    psnr = scored_bicubic.result["aggregates"]["psnr_db"]
    assert rows[11][2] == f"{psnr['mean']:.2f} ± {psnr['sd']:.2f}" and rows[11][1] == "-"
    md = markdown(rows)
    assert md.count("\n") == len(rows) and md.startswith("| parameter | HR |")


def test_results_carry_the_same_gallery_crop(mini_split, scored_bicubic):
    import base64
    import io

    import numpy as np
    import zarr
    from PIL import Image

    from bonesr_bench.split import from_raw

    hr = reference_result("hr", mini_split)
    lr = reference_result("lr", mini_split)
    g_sr, g_hr, g_lr = (scored_bicubic.result["gallery"], hr["gallery"], lr["gallery"])
    where = ("specimen", "z", "y", "x", "size")
    assert [g_sr[k] for k in where] == [g_hr[k] for k in where] == [g_lr[k] for k in where]
    assert set(g_sr["images"]) == {"sr"} and set(g_hr["images"]) == {"hr", "truth"}
    assert set(g_lr["images"]) == {"lr"}

    def decode(png):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))), dtype=float) / 255

    root = zarr.open_group(str(mini_split), mode="r")
    spec = g_hr
    lo, hi = hr["conventions"]["segmentation"]["window"]
    vol = from_raw(np.asarray(root[f"test/{spec['specimen']}/hr/0"][...]))
    s = spec["size"]
    expect = np.clip((vol[spec["z"], spec["y"]:spec["y"] + s, spec["x"]:spec["x"] + s] - lo)
                     / (hi - lo), 0, 1)
    assert np.abs(decode(g_hr["images"]["hr"]) - expect).max() <= 0.5 / 255 + 1e-9
    assert decode(g_lr["images"]["lr"]).shape == (s, s)  # LR pixels shown at HR size
    assert set(np.unique(decode(g_hr["images"]["truth"]))) <= {0.0, 1.0}
