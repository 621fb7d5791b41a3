"""Split v2: the same bytes on every thread count and code-generation target, the LR scan as a
separate acquisition registered onto HR, a segmentation protocol per grid, and v1 kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

from bonesr_bench.scoring.protocol import choose_tv_weights
from bonesr_bench.scoring.segmentation import SegmentationParams
from bonesr_bench.split import (
    DEFAULT_SPLIT,
    PROTOCOLS,
    SPLITS,
    build,
    segmentation_params,
    verify,
)
from bonesr_bench.split.synth.scanner import Pose, draw_pose, posed

BUILD = ("import sys, json; from bonesr_bench.split import SPLITS, build; "
         "print(json.dumps(build(sys.argv[1], SPLITS[sys.argv[2]])))")


def _start_build(path, split: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILD, str(path), split],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})


def _fingerprint(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_v2_is_the_default_and_v1_stays():
    assert DEFAULT_SPLIT == "v2" and SPLITS["v2"].split_id == "synth-v2"
    assert SPLITS["v1"].split_id == "synth-v1" and SPLITS["mini"].split_id == "synth-v2-mini"
    assert PROTOCOLS["v2"].exact and not PROTOCOLS["v1"].exact


def test_the_same_fingerprint_with_one_or_two_threads_and_a_generic_target(tmp_path,
                                                                        mini_split):
    """The v2 mini split built in fresh processes with 1 thread (numba, OpenMP, BLAS, ITK) and
    with numba compiling for a generic x86-64 CPU (its own cache, so the kernels are really
    recompiled) has the fingerprint of the session's build (2 threads, this CPU's target)."""
    fp = dict(zarr.open_group(str(mini_split), mode="r").attrs["bonesr"])["fingerprint"]
    # side by side: each is single-threaded most of the time (the generic one compiling)
    one = _start_build(tmp_path / "one.zarr", "mini", NUMBA_NUM_THREADS="1",
                       OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1")
    generic = _start_build(tmp_path / "generic.zarr", "mini", NUMBA_CPU_NAME="generic",
                           NUMBA_CACHE_DIR=str(tmp_path / "numba-generic"))
    assert _fingerprint(one) == _fingerprint(generic) == fp


def test_two_worker_processes_build_the_same_bytes_and_resume(tmp_path, mini_split):
    """Built by two single-threaded worker processes, the mini split has the session's
    fingerprint; a specimen removed afterwards is rebuilt alone (the others kept)."""
    fp = dict(zarr.open_group(str(mini_split), mode="r").attrs["bonesr"])["fingerprint"]
    path = tmp_path / "two.zarr"
    seen = []
    assert build(path, SPLITS["mini"], workers=2,
                 progress=lambda name, done, total: seen.append((name, done, total))) == fp
    assert sorted(n for n, _, _ in seen) == ["s1000", "s1001", "s2000", "s2001"]
    assert [d for _, d, _ in seen] == [1, 2, 3, 4] and {t for _, _, t in seen} == {4}
    kept = (path / "train" / "s1000" / ".zattrs").stat().st_mtime_ns
    del zarr.open_group(str(path), mode="a", zarr_format=2)["test/s2001"]
    assert build(path, SPLITS["mini"], workers=2) == fp
    assert (path / "train" / "s1000" / ".zattrs").stat().st_mtime_ns == kept
    assert (path / "test" / "s2001" / ".zattrs").exists()


def test_a_failing_worker_reports_the_specimen_and_the_reason(tmp_path):
    """A worker answers a job it cannot do with one line naming the specimen and the error."""
    job = {"path": str(tmp_path / "x.zarr"), "subset": "test", "name": "s2000", "seed": 2000,
           "config": {"name": "mini", "hr_shape": [16, 96, 96], "train_seeds": [],
                      "test_seeds": [2000], "protocol": "v9"}}
    out = subprocess.run([sys.executable, "-c", "from bonesr_bench.split.synthetic import "
                          "_worker_main; _worker_main()"], input=json.dumps(job) + "\n",
                         capture_output=True, text=True, check=True, timeout=120)
    reply = json.loads(out.stdout)
    assert reply["name"] == "s2000" and reply["error"].startswith("KeyError")


def test_the_lr_scan_is_a_separate_acquisition_registered_onto_hr(mini_split):
    root = zarr.open_group(str(mini_split), mode="r")
    for name in ("test/s2000", "train/s1001"):
        attrs = dict(root[name].attrs)
        pose = Pose(**{k: tuple(v) for k, v in attrs["pose"].items()})
        assert pose == draw_pose(attrs["seed"], 2.0, 21.0)
        assert max(abs(d) for d in pose.rotation_deg) > 0.1
        reg = attrs["registration"]
        # the mini field of view is 1 mm wide: a 2 degree turn takes its corners out of view
        assert reg["ncc"] > 0.9 and not reg["poor"] and reg["coverage"] > 0.95
        # the registration undoes the pose: the LR scan saw x at R (x - c) + c + shift, so
        # the grid-to-LR affine's linear part is R: in-plane to within 0.5 degrees here (the
        # mini stack is 16 slices thin, which leaves the terms along z loose; over the 40
        # specimens of the full split every term is within 0.07 degrees)
        a = np.asarray(reg["matrix"])[1:, 1:3]
        assert np.abs(a - pose.matrix()[1:, 1:]).max() < np.radians(0.5), a


def test_posed_moves_a_point_where_the_pose_says():
    vol = np.zeros((21, 41, 41))
    vol[10, 10, 30] = 1.0  # 10 voxels off centre along x, 10 along -y
    pose = Pose((90.0, 0.0, 0.0), (0.0, 0.0, 0.0))  # a quarter turn about z
    out = posed(vol, pose, 10.5)
    r = pose.matrix()
    c = np.array([10.0, 20.0, 20.0])
    want = r @ (np.array([10.0, 10.0, 30.0]) - c) + c
    assert np.unravel_index(out.argmax(), out.shape) == tuple(np.rint(want).astype(int))
    shifted = posed(vol, Pose((0.0, 0.0, 0.0), (0.0, 21.0, 0.0)), 10.5)
    assert shifted[10, 12, 30] == pytest.approx(1.0)


def test_each_grid_has_its_own_segmentation_parameters(mini_split):
    meta = dict(zarr.open_group(str(mini_split), mode="r").attrs["bonesr"])
    seg = segmentation_params(meta)
    v2 = PROTOCOLS["v2"].segmentation
    assert seg["hr"] == v2["hr"] and seg["lr"] == v2["lr"]
    assert meta["segmentation"]["rule"].startswith("per grid")
    # v1 (and splits from scans before v2) record one set: both grids use it
    v1 = {"segmentation": {"tv_weight": 0.08, "tv_max_iter": 100, "window": [-0.5, 3.5]}}
    assert segmentation_params(v1) == {"hr": SegmentationParams(0.08, 100, (-0.5, 3.5)),
                                       "lr": SegmentationParams(0.08, 100, (-0.5, 3.5))}


def test_the_lr_reference_row_is_segmented_with_the_lr_grids_weight(mini_split, tmp_path):
    from bonesr_bench import scoring
    from bonesr_bench.evaluation import reference_rows
    from bonesr_bench.split import calibration, from_raw

    root = zarr.open_group(str(mini_split), mode="r")
    meta = dict(root.attrs["bonesr"])
    seg = segmentation_params(meta)
    rows = reference_rows(mini_split, root, meta, "test", seg["hr"], cache_dir=tmp_path)
    g = root["test/s2000"]
    lr = from_raw(np.asarray(g["lr/0"][...]), calibration(meta))
    regions = np.asarray(g["labels/regions/0"][...])[::2, ::2, ::2]
    want = scoring.measure(lr, 21.0, regions, seg["lr"])
    assert rows["s2000"]["lr"]["bv_tv_pct"] == pytest.approx(want["bv_tv_pct"], rel=1e-12)
    if seg["lr"] != seg["hr"]:
        other = scoring.measure(lr, 21.0, regions, seg["hr"])
        assert other["bv_tv_pct"] != want["bv_tv_pct"]


def test_the_rule_picks_the_weight_with_the_lowest_error(mini_split):
    choice = choose_tv_weights(mini_split, n_specimens=2, candidates=(0.0, 0.3))
    assert choice.specimens == ["s1000", "s1001"]
    for grid in ("hr", "lr"):
        errs = choice.errors[grid]
        assert choice.chosen[grid] == min(errs, key=errs.get)
        assert errs[0.3] != errs[0.0]


def test_v1_still_builds_and_verifies(tmp_path):
    path = tmp_path / "v1.zarr"
    fp = build(path, SPLITS["mini-v1"])
    meta = dict(zarr.open_group(str(path), mode="r").attrs["bonesr"])
    assert meta["split"] == "synth-v1-mini" and meta["version"] == "1.1"
    assert verify(path).ok and verify(path).fingerprint == fp
    assert "pose" not in zarr.open_group(str(path), mode="r")["test/s2000"].attrs


def test_the_same_structure_measures_alike_on_both_grids():
    """A rod-and-plate lattice whose every feature is an even number of HR voxels, imaged by
    the v2 scanner at 10.5 µm and at 19 µm (resampled onto the 21 µm grid as every v2 LR scan
    is, with the known affine: a periodic lattice has no unique registration), each segmented
    with its grid's own TV weight, reads the same BV/TV to 5 % and the same Tb.Th and Tb.Sp to
    one HR voxel (10.5 µm: half an LR voxel, the resolution of a thickness measured on the LR
    grid). v1's protocol (HR's weight 0.08 on the LR grid) reads the LR scan's trabeculae
    thicker than its own weight does. Conn.D is left out: on a few lattice cells a single
    noise speck moves it by tens of percent."""
    from bonesr_bench.morphometry import trabecular_morphometry
    from bonesr_bench.scoring.segmentation import segment
    from bonesr_bench.split.register import resample
    from bonesr_bench.split.synth.scanner import line_integrals_exact, scan_exact

    z, y, x = np.meshgrid(*(np.arange(n) for n in (64, 128, 128)), indexing="ij")
    plates = ((z % 32) < 8)
    rods = (((y - 4) % 32) < 8) & (((x - 4) % 32) < 8)  # 8 x 8-voxel square rods along z
    bone = (plates | rods) & (np.hypot(y - 63.5, x - 63.5) < 56)
    proto = PROTOCOLS["v2"]
    p = line_integrals_exact(bone.astype(np.float64), proto.hr_scan.n_angles)
    hr = scan_exact(p, proto.hr_scan, seed=1)
    lr19 = scan_exact(p, proto.lr_scan, seed=2)
    # centred in-plane on the rotation axis, from the stack's first slice along z
    b_yx = (lr19.shape[1] / 2 - 0.5) * 19.0 - (128 / 2 - 0.5) * 10.5
    affine = np.concatenate([np.eye(3), [[5.25 - 9.5], [b_yx], [b_yx]]], axis=1)
    lr, inside = resample(lr19, affine, (32, 64, 64), 10.5, 19.0)
    assert inside.all()
    voi = np.zeros(bone.shape, bool)
    voi[8:56, 24:104, 24:104] = True
    seg = proto.segmentation
    h = trabecular_morphometry(segment(hr, seg["hr"]), 10.5, mask=voi)
    lo = trabecular_morphometry(segment(lr, seg["lr"]), 21.0, mask=voi[::2, ::2, ::2])
    t = trabecular_morphometry(bone, 10.5, mask=voi)
    assert h.bv_tv_pct == pytest.approx(t.bv_tv_pct, rel=0.05)
    assert lo.bv_tv_pct == pytest.approx(h.bv_tv_pct, rel=0.05)
    assert abs(lo.tb_th_um - h.tb_th_um) <= 10.5 and abs(lo.tb_sp_um - h.tb_sp_um) <= 10.5
    v1_way = trabecular_morphometry(segment(lr, SegmentationParams(0.08, 100, seg["hr"].window)),
                                    21.0, mask=voi[::2, ::2, ::2])
    assert v1_way.tb_th_um - h.tb_th_um > lo.tb_th_um - h.tb_th_um
