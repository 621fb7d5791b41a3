"""A split built from scans (``bonesr-bench data build --from-scans``): HR/LR files in several
formats, the LR moved by a known shift, registered back, written in the split layout, verified,
scored by ``evaluate`` unchanged; resuming, updating, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.split import calibration, from_raw, verify
from bonesr_bench.split import from_scans as scans
from bonesr_bench.split.from_scans import ScansError, build_from_scans, read_table
from test_readers import write_isq

pytest.importorskip("ants", reason="pip install antspyx")

BICUBIC = str(Path(__file__).resolve().parents[1] / "baselines" / "bicubic.py")
SHIFT_LR = (0.0, 0.6, -0.4)  # LR voxels: 1.2 and 0.8 HR voxels in-plane
runner = CliRunner()


def _write_lr(path: Path, data: np.ndarray, voxel_um: float) -> Path:
    if path.suffix == ".nrrd":
        import nrrd

        nrrd.write(str(path), data, {"space directions": np.eye(3) * voxel_um / 1000,
                                     "space units": ["mm"] * 3}, index_order="C")
    else:
        import tifffile

        tifffile.imwrite(path, data, imagej=True, resolution=(1 / voxel_um, 1 / voxel_um),
                         metadata={"unit": "um", "spacing": voxel_um})
    return path


@pytest.fixture(scope="module")
def scan_dir(mini_split, tmp_path_factory):
    """The mini split's scans written as files a lab would have: HR as Scanco ISQ (int16, 1000
    units per 1/cm), LR as NRRD or TIFF after a shift of ``SHIFT_LR``; train specimens carry
    their own regions file, test specimens get automatic regions. Returns (folder, originals)."""
    root = zarr.open_group(str(mini_split), mode="r")
    d = tmp_path_factory.mktemp("scans")
    lines, originals = ["name,hr,lr,split,regions"], {}
    for i, (subset, name) in enumerate([(s, n) for s in ("train", "test")
                                        for n in sorted(root[s].group_keys())]):
        g = root[f"{subset}/{name}"]
        hr = np.rint(1000 * from_raw(np.asarray(g["hr/0"][...]))).astype(np.int16)
        lr = from_raw(np.asarray(g["lr/0"][...]))
        moved = ndi.shift(lr, SHIFT_LR, order=1, mode="nearest")
        write_isq(d / f"{name}_hr.isq", hr, 10.5)
        lr_file = _write_lr(d / f"{name}_lr{'.nrrd' if i % 2 else '.tif'}",
                            np.rint(1000 * moved).astype(np.int16), 21.0)
        regions = np.asarray(g["labels/regions/0"][...])
        reg = ""
        if subset == "train":
            np.save(d / f"{name}_regions.npy", regions)
            reg = f"{name}_regions.npy"
        lines.append(f"{name},{name}_hr.isq,{lr_file.name},{subset},{reg}")
        originals[name] = {"hr": hr, "lr": np.rint(1000 * lr), "regions": regions}
    (d / "scans.csv").write_text("\n".join(lines) + "\n")
    return d, originals


@pytest.fixture(scope="module")
def built(scan_dir, tmp_path_factory):
    d, _ = scan_dir
    out = tmp_path_factory.mktemp("built") / "lab.zarr"
    report = build_from_scans(d / "scans.csv", out, masks=scans.MaskOptions(trabecula_um=30))
    return out, report


def test_split_from_scans_has_the_split_layout_and_verifies(built, scan_dir):
    out, report = built
    _, originals = scan_dir
    rep = verify(out)
    assert rep.ok and rep.fingerprint == report.fingerprint and rep.canonical is None
    root = zarr.open_group(str(out), mode="r")
    meta = dict(root.attrs["bonesr"])
    assert meta["split"] == "scans-lab" and meta["source"] == "scans" and meta["scale"] == 2
    assert meta["hr_voxel_um"] == pytest.approx(10.5, abs=0.01)
    assert meta["lr_voxel_um"] == pytest.approx(21.0, abs=0.02)
    assert meta["parts"] == ["test", "train"]
    cal = calibration(meta)
    assert cal["slope"] == 1.0 and cal["offset"] == -32768  # int16 scans: stored losslessly
    for subset, name in meta["specimens"]:
        g = root[f"{subset}/{name}"]
        assert "labels/truth" not in g and g.attrs["complete"]
        hr = from_raw(np.asarray(g["hr/0"][...]), cal)
        assert np.array_equal(hr, originals[name]["hr"])  # lossless, voxel for voxel
        assert g["lr/0"].shape == tuple(n // 2 for n in hr.shape)
        assert g["hr"].attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0][
            "scale"] == pytest.approx([10.5] * 3, abs=0.01)
        assert set(np.unique(g["labels/regions/0"][...])) <= {0, 1, 2}
        assert g.attrs["registration"]["ncc"] == report.registration[name]["ncc"] > 0.9


def test_the_known_shift_is_undone_within_a_fifth_of_an_hr_voxel(built, scan_dir):
    from skimage.registration import phase_cross_correlation

    out, _ = built
    _, originals = scan_dir
    root = zarr.open_group(str(out), mode="r")
    cal = calibration(dict(root.attrs["bonesr"]))
    inner = (slice(1, -1), slice(4, -4), slice(4, -4))
    for subset, name in root.attrs["bonesr"]["specimens"]:
        lr = from_raw(np.asarray(root[f"{subset}/{name}/lr/0"][...]), cal)
        before, _, _ = phase_cross_correlation(originals[name]["lr"][inner],
                                               ndi.shift(originals[name]["lr"], SHIFT_LR,
                                                         order=1, mode="nearest")[inner],
                                               upsample_factor=20)
        after, _, _ = phase_cross_correlation(originals[name]["lr"][inner], lr[inner],
                                              upsample_factor=20)
        assert np.abs(before).max() >= 0.4  # the shift was there
        assert np.abs(after).max() * 2 <= 0.2, (name, after)  # LR voxels -> HR voxels


def test_regions_are_the_users_where_given_and_automatic_elsewhere(built, scan_dir):
    from bonesr_bench.split.regions import dice

    out, _ = built
    _, originals = scan_dir
    root = zarr.open_group(str(out), mode="r")
    for subset, name in root.attrs["bonesr"]["specimens"]:
        g = root[f"{subset}/{name}"]
        regions = np.asarray(g["labels/regions/0"][...])
        if subset == "train":
            assert g.attrs["masks"]["method"] == "user"
            assert np.array_equal(regions, originals[name]["regions"])
        else:
            assert g.attrs["masks"]["method"].startswith("automatic")
            assert g.attrs["masks"]["trabecula_um"] == 30
            # mini cortices are 73-95 µm thin: a looser bound than the v1 test (test_masks.py)
            assert dice(regions == 2, originals[name]["regions"] == 2) > 0.85


def test_evaluate_scores_a_model_on_the_split_unchanged(built, tmp_path, capsys):
    from bonesr_bench.evaluation import EvaluateOptions, evaluate

    out, report = built
    res = evaluate(BICUBIC, EvaluateOptions(split=str(out), out=tmp_path)).result
    assert res["status"] == "scored"
    assert res["split"]["id"] == "scans-lab" and res["split"]["fingerprint"] == report.fingerprint
    assert res["split"]["source"] == "scans"
    assert res["split"]["registration_ncc"] == {n: report.registration[n]["ncc"]
                                                for n in ("s2000", "s2001")}
    assert res["conventions"]["segmentation"]["window_unit"] == "scan units"
    assert [s["specimen"] for s in res["specimens"]] == ["s2000", "s2001"]
    assert 10 < res["aggregates"]["psnr_db"]["mean"] < 40
    assert "bio_err_vs_truth" not in res["aggregates"]  # no truth in a split of real scans

    # a poorly registered specimen is pointed out with the scores
    from bonesr_bench.cli.evaluate import _print_summary

    _print_summary(res, tmp_path / "result.json")
    assert "registration is poor" not in capsys.readouterr().err
    _print_summary({**res, "split": {**res["split"], "registration_ncc": {
        "s2000": 0.55, "s2001": 0.95}}}, tmp_path / "result.json")
    assert "registration is poor for s2000 (NCC 0.55" in capsys.readouterr().err

    # and on to a leaderboard page of its own, with the HR and LR reference rows
    from bonesr_bench.evaluation import reference_results
    from bonesr_bench.files import write_json
    from bonesr_bench.leaderboard import site

    results = tmp_path / "results"
    write_json(results / "bicubic.json", res)
    for scan, ref in reference_results(split=str(out)).items():
        write_json(results / f"{scan}-scan.json", ref)
    built_site = site.build(results, tmp_path / "site")
    assert not built_site.excluded and built_site.entries == ["bicubic"]
    assert sorted(built_site.references) == ["hr-scan", "lr-scan"]
    assert "bicubic" in (tmp_path / "site" / "index.html").read_text()


def test_rebuild_keeps_unchanged_specimens_and_follows_the_table(scan_dir, tmp_path):
    d, _ = scan_dir
    out = tmp_path / "s.zarr"
    table = tmp_path / "t.csv"
    rows = (d / "scans.csv").read_text().splitlines()
    # absolute paths this time: the table lives elsewhere
    table.write_text("\n".join([rows[0]] + [
        ",".join(str(d / c) if c.endswith((".isq", ".tif", ".nrrd", ".npy")) else c
                 for c in r.split(",")) for r in rows[1:]]) + "\n")
    opts = {"masks": scans.MaskOptions(trabecula_um=30), "split_id": "lab-two"}
    first = build_from_scans(table, out, **opts)
    again = build_from_scans(table, out, **opts)
    assert again.fingerprint == first.fingerprint and len(again.kept) == 4
    table.write_text("\n".join(table.read_text().splitlines()[:-1]) + "\n")  # drop s2001
    fewer = build_from_scans(table, out, **opts)
    assert fewer.removed == ["test/s2001"] and len(fewer.kept) == 3
    assert verify(out).ok and "s2001" not in zarr.open_group(str(out), mode="r")["test"]


def test_an_interrupted_build_leaves_a_split_that_refuses_scoring_and_resumes(
        scan_dir, tmp_path, monkeypatch):
    from bonesr_bench.evaluation import EvaluateOptions, EvaluationError, evaluate
    from bonesr_bench.split import register as reg_module

    d, _ = scan_dir
    out = tmp_path / "cut.zarr"
    real, calls = reg_module.register, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(reg_module, "register", interrupted)
    opts = {"masks": scans.MaskOptions(trabecula_um=30)}
    with pytest.raises(KeyboardInterrupt):
        build_from_scans(d / "scans.csv", out, **opts)
    assert not verify(out).ok
    with pytest.raises(EvaluationError, match="--from-scans"):
        evaluate(BICUBIC, EvaluateOptions(split=str(out), out=tmp_path))
    monkeypatch.setattr(reg_module, "register", real)
    done = build_from_scans(d / "scans.csv", out, **opts)
    assert len(done.kept) == 2 and verify(out).ok


def _table(tmp_path, text: str) -> Path:
    p = tmp_path / "scans.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, message", [
    ("", "no rows"),
    ("hr,lr\na.isq,b.tif\n", "no `split` column"),
    ("hr,lr,split,colour\n", "unknown column(s) colour"),
    ("a.isq,b.tif,validation\n", "must be train or test"),
    ("a.isq,b.tif\n", "2 field(s)"),
    ("missing.isq,b.tif,test\n", "HR scan"),
    ("a.isq,b.tif,test,x\na.isq,b.tif,train,x\n", "appears twice"),
    ("a.isq,b.tif,test,bad/name\n", "specimen name"),
    ("hr,lr,split,hr_voxel_um\na.isq,b.tif,test,-3\n", "positive"),
])
def test_bad_tables_name_the_line_and_the_fix(tmp_path, text, message):
    (tmp_path / "a.isq").write_bytes(b"")
    (tmp_path / "b.tif").write_bytes(b"")
    with pytest.raises(ScansError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_table(_table(tmp_path, text))


def test_bad_scans_are_refused_before_anything_is_written(scan_dir, tmp_path):
    d, originals = scan_dir
    out = tmp_path / "never.zarr"
    raw = (d / "s2000_hr.isq").read_bytes()
    (tmp_path / "cut.isq").write_bytes(raw[:-1000])  # truncated
    cases = {
        "truncated": (f"{tmp_path / 'cut.isq'},{d / 's2000_lr.tif'},test\n", "truncated"),
        "swapped": (f"{d / 's2000_lr.tif'},{d / 's2000_hr.isq'},test\n", "swapped"),
        "no voxel": (f"{tmp_path / 'v.npy'},{d / 's2000_lr.tif'},test\n", "hr_voxel_um column"),
        "ratio": (f"hr,lr,split,lr_voxel_um\n{d / 's2000_hr.isq'},{d / 's2000_lr.tif'},test,"
                  "42\n", "--scale 4"),
        "protocols": (f"hr,lr,split,name,hr_voxel_um\n{d / 's2000_hr.isq'},{d / 's2000_lr.tif'},"
                      f"test,a,10.5\n{d / 's2001_hr.isq'},{d / 's2001_lr.nrrd'},test,b,9\n",
                      "HR voxel sizes differ"),
        "regions": (f"hr,lr,split,regions\n{d / 's2000_hr.isq'},{d / 's2000_lr.tif'},test,"
                    f"{tmp_path / 'r.npy'}\n", "regions of shape"),
    }
    np.save(tmp_path / "v.npy", originals["s2000"]["hr"])
    np.save(tmp_path / "r.npy", np.ones((3, 3, 3), np.uint8))
    for what, (text, message) in cases.items():
        with pytest.raises(ScansError, match=message):
            build_from_scans(_table(tmp_path, text), out)
        assert not out.exists(), what


def test_cli_builds_and_errors_in_one_line(scan_dir, tmp_path):
    d, _ = scan_dir
    table = _table(tmp_path, "\n".join((d / "scans.csv").read_text().splitlines()[:2]) + "\n")
    table.write_text(table.read_text().replace("s1000_", str(d / "s1000_")))
    res = runner.invoke(app, ["data", "build", "--from-scans", str(table), "--out",
                              str(tmp_path / "one.zarr")])
    assert res.exit_code == 0, res.output
    assert "fingerprint" in res.stderr and "NCC" in res.stderr
    info = runner.invoke(app, ["data", "info", str(tmp_path / "one.zarr")])
    assert info.exit_code == 0 and "s1000" in info.stdout and "NCC" in info.stdout
    for args, message in [
        (["--from-scans", str(table)], "needs --out"),
        (["--from-scans", str(table), "--out", str(tmp_path / "x.zarr"), "--split", "mini"],
         "leave out --split"),
        (["--from-scans", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.zarr")],
         "no such file"),
    ]:
        res = runner.invoke(app, ["data", "build", *args])
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and message in lines[0], res.stderr


def test_a_generated_split_is_not_overwritten_by_scans_and_vice_versa(built, mini_split,
                                                                      scan_dir):
    from bonesr_bench.split import SPLITS, SplitError, build

    d, _ = scan_dir
    before = json.dumps(dict(zarr.open_group(str(mini_split), mode="r").attrs["bonesr"]))
    with pytest.raises(ScansError, match="generated split"):
        build_from_scans(d / "scans.csv", mini_split)
    assert json.dumps(dict(zarr.open_group(str(mini_split), mode="r").attrs["bonesr"])) == before
    with pytest.raises(SplitError, match="--from-scans"):
        build(built[0], SPLITS["mini"])
    res = runner.invoke(app, ["data", "build", "--split", "mini", "--out", str(built[0])])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "error" in ln]
    assert res.exit_code == 2 and len(lines) == 1 and "--from-scans" in lines[0], res.stderr
    assert verify(built[0]).ok

