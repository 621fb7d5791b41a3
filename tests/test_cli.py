"""``bonesr-bench morphometry``: JSON keys, masks, grey input and every error path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bonesr_bench.cli import app

from conftest import grid, random_structure

TRAB = ["bv_tv_pct", "tb_th_um", "tb_th_sd_um", "tb_sp_um", "tb_sp_sd_um", "tb_n_per_mm",
        "conn_d_per_mm3", "da_bonej", "da_ratio", "smi"]
CORT = ["ct_th_um", "ct_po_pct", "ct_po_closed_pct", "ct_po_open_pct", "po_n",
        "po_mean_volume_um3"]
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def bone_file(tmp_path):
    bone = random_structure((32, 36, 40), 2.0, 0.25, seed=0)
    path = tmp_path / "bone.npy"
    np.save(path, bone.astype(np.uint8) * 255)
    return path, bone


def test_json_has_exactly_the_trabecular_keys_in_physical_units(bone_file):
    path, bone = bone_file
    res = run("morphometry", path, "--json", "--voxel-um", 10.5)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out) == TRAB
    assert out["bv_tv_pct"] == pytest.approx(100 * bone.mean())
    half = json.loads(run("morphometry", path, "--json", "--voxel-um", 5.25).stdout)
    assert half["tb_th_um"] == pytest.approx(out["tb_th_um"] / 2)
    assert half["conn_d_per_mm3"] == pytest.approx(out["conn_d_per_mm3"] * 8)


def test_mask_with_both_regions_and_cortical_only(tmp_path):
    z, y, x = grid((30, 50, 50))
    r = np.hypot(y - 25, x - 25)
    regions = np.zeros(r.shape, np.uint8)
    regions[(r >= 15) & (r < 21)] = 2
    regions[r < 15] = 1
    bone = (regions == 2) | ((regions == 1) & ((x % 7) < 2))
    np.save(tmp_path / "b.npy", bone)
    np.save(tmp_path / "m.npy", regions)
    out = json.loads(run("morphometry", tmp_path / "b.npy", "--mask", tmp_path / "m.npy",
                         "--json").stdout)
    assert list(out) == TRAB + CORT
    np.save(tmp_path / "c.npy", np.where(regions == 2, 2, 0).astype(np.uint8))
    out = json.loads(run("morphometry", tmp_path / "b.npy", "--mask", tmp_path / "c.npy",
                         "--json").stdout)
    assert list(out) == CORT


def test_grey_input_is_segmented(tmp_path, bone_file):
    _, bone = bone_file
    rng = np.random.default_rng(0)
    grey = (np.where(bone, 800, 250) + rng.normal(0, 40, bone.shape)).astype(np.int16)
    np.save(tmp_path / "grey.npy", grey)
    res = run("morphometry", tmp_path / "grey.npy", "--grey", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["bv_tv_pct"] == pytest.approx(100 * bone.mean(), abs=1.0)
    res = run("morphometry", tmp_path / "grey.npy")
    assert res.exit_code == 2
    assert "not binary" in res.stderr and "--grey" in res.stderr


def test_table_output(bone_file):
    res = run("morphometry", bone_file[0])
    assert res.exit_code == 0
    assert "Tb.Th" in res.stdout and "µm" in res.stdout and "Conn.D" in res.stdout


def test_bone_without_marrow_gives_null_not_a_crash(tmp_path):
    np.save(tmp_path / "full.npy", np.ones((10, 10, 10), np.uint8))
    res = run("morphometry", tmp_path / "full.npy", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["bv_tv_pct"] == 100.0
    assert out["tb_sp_um"] is None and out["tb_th_um"] is None and out["smi"] is None


@pytest.mark.parametrize("case", ["missing", "no_bone", "zero_mask", "bad_shape", "bad_values",
                                  "bad_voxel"])
def test_errors_are_one_line_with_exit_2(tmp_path, bone_file, case):
    path, bone = bone_file
    args = ["morphometry", path]
    if case == "missing":
        args = ["morphometry", tmp_path / "nope.tif"]
    elif case == "no_bone":
        np.save(tmp_path / "empty.npy", np.zeros((5, 5, 5), np.uint8))
        args = ["morphometry", tmp_path / "empty.npy"]
    elif case == "zero_mask":
        np.save(tmp_path / "m.npy", np.zeros(bone.shape, np.uint8))
        args += ["--mask", tmp_path / "m.npy"]
    elif case == "bad_shape":
        np.save(tmp_path / "m.npy", np.ones((3, 3, 3), np.uint8))
        args += ["--mask", tmp_path / "m.npy"]
    elif case == "bad_values":
        np.save(tmp_path / "m.npy", np.where(bone, 1, 3).astype(np.uint8) * (np.arange(
            bone.shape[2]) % 3))
        args += ["--mask", tmp_path / "m.npy"]
    elif case == "bad_voxel":
        args += ["--voxel-um", "-2"]
    res = run(*args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    expected = {"missing": "no such file", "no_bone": "no bone", "zero_mask": "all zero",
                "bad_shape": "shape", "bad_values": "mask values", "bad_voxel": "positive"}[case]
    assert expected in lines[0]


def test_version_and_help():
    assert run("--version").stdout.startswith("bonesr-bench ")
    res = run("morphometry", "--help")
    assert res.exit_code == 0 and "--voxel-um" in res.stdout and "cortical" in res.stdout


def test_a_bone_section_gets_automatic_regions_that_can_be_saved_and_reused(tmp_path):
    from bonesr_bench.split.readers import read_volume
    from bonesr_bench.split.regions import dice
    from test_readers import write_isq

    from conftest import tibia_section

    bone, regions = tibia_section()
    rng = np.random.default_rng(0)
    grey = np.where(bone, 3000, 400) + rng.normal(0, 150, bone.shape)
    scan = write_isq(tmp_path / "C0000001.ISQ", grey.astype(np.int16), 10.5)  # voxel from file
    res = run("morphometry", scan, "--grey", "--json", "--save-regions",
              tmp_path / "regions.nrrd")
    assert res.exit_code == 0, res.output
    assert "regions found automatically" in res.stderr
    out = json.loads(res.stdout)
    assert list(out) == TRAB + CORT
    assert out["ct_th_um"] == pytest.approx(140, rel=0.1)  # the analytic cortex is 140 µm
    saved = read_volume(tmp_path / "regions.nrrd")
    assert saved.voxel_um == pytest.approx(10.5)
    assert dice(saved.data == 2, regions == 2) >= 0.95 and dice(saved.data == 1,
                                                                 regions == 1) >= 0.95
    again = json.loads(run("morphometry", scan, "--grey", "--json", "--mask",
                           tmp_path / "regions.nrrd").stdout)
    assert again == out  # the saved regions are the ones measured
    whole = json.loads(run("morphometry", scan, "--grey", "--json", "--regions",
                           "whole").stdout)
    assert list(whole) == TRAB and whole["bv_tv_pct"] > out["bv_tv_pct"]


def test_a_volume_without_cortex_is_measured_whole(bone_file, tmp_path):
    res = run("morphometry", bone_file[0], "--json", "--save-regions", tmp_path / "r.npy")
    assert res.exit_code == 0 and "whole volume" in res.stderr
    assert list(json.loads(res.stdout)) == TRAB
    assert (np.load(tmp_path / "r.npy") == 1).all()
    for args, message in [(["--regions", "cortex"], "auto or whole"),
                          (["--save-regions", tmp_path / "r.bmp"], "cannot write"),
                          (["--trabecula-um", "0"], "positive")]:
        res = run("morphometry", bone_file[0], *args)
        assert res.exit_code == 2 and message in res.stderr, res.output


def test_progress_off_a_terminal_is_plain_lines_with_counts_and_an_eta(tmp_path, monkeypatch):
    """Output to a file or a CI log: one line per stage at its start, then every few seconds,
    and at its end; counts, unit, ETA (rich bars show nothing off a terminal)."""
    from bonesr_bench.cli import common

    lines, clock = [], iter(range(0, 1000, 2))  # two seconds a step
    monkeypatch.setattr(common.time, "monotonic", lambda: next(clock))
    common.err.print = lambda text, **kw: lines.append(text)  # the module's console
    try:
        report = common._Lines({"build": ("building", "specimens")}, every_s=0.0)
        for done in range(0, 5):
            report("build", done, 4, f"s{done}")
        report("build", 4, 4, "")  # the end is said once
    finally:
        del common.err.print
        monkeypatch.undo()
    assert lines[0].startswith("building: 0/4 specimens (s0)")
    assert "ETA" in lines[2] and lines[-1].startswith("building: 4/4 specimens")
    assert sum(line.startswith("building: 4/4") for line in lines) == 1
    r = runner.invoke(app, ["data", "build", "--split", "mini", "--out", str(tmp_path / "m.zarr")])
    assert r.exit_code == 0, r.output
    assert "building m.zarr (all): 4/4 specimens" in r.output
