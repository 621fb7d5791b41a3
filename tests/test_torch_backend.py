"""The torch kernels (for CUDA) against the numba kernels: identical integers, float32-close
thickness; CUDA against CPU where a GPU is present (pyiqa-style consistency tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bonesr_bench.morphometry import connectivity as C
from bonesr_bench.morphometry import thickness as T
from bonesr_bench.morphometry import torch_backend as TB
from bonesr_bench.morphometry import trabecular_morphometry

from conftest import BONEJ, random_structure

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.mark.parametrize("seed", range(4))
def test_cpu_torch_equals_numba(seed):
    phase = random_structure((22, 28, 34), 2.0 + seed, 0.5, seed)
    sq = T.squared_distance_map(phase)
    sq_t = TB.squared_distance_map(phase, "cpu")
    np.testing.assert_array_equal(sq_t.numpy(), sq)
    ridge = np.zeros(phase.shape, bool)
    balls = T._ridge_balls(sq)
    ridge[balls[:3]] = True
    np.testing.assert_array_equal(TB._ridge(sq_t).numpy(), ridge)
    np.testing.assert_array_equal(TB._max_ball_map(sq_t).numpy(), T.max_ball_map(sq, balls))
    np.testing.assert_allclose(TB.local_thickness_map(phase, "cpu").numpy(),
                               T.local_thickness_map(phase), rtol=1e-6, atol=1e-5)
    assert TB.euler_characteristic(phase, "cpu") == C.euler_characteristic(phase)


def test_undefined_and_device_errors():
    full = np.ones((6, 6, 6), bool)
    assert np.isnan(TB.thickness_stats(full, "cpu")[0])
    with pytest.raises(ValueError, match="fills the whole image"):
        TB.squared_distance_map(full, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            TB.resolve_device("cuda")


@pytest.mark.slow
def test_torch_equals_bonej_on_real_bone(roi_bone):
    name = "isodata_06604_roi_52.nrrd"
    mean, sd, _ = TB.thickness_stats(roi_bone[name], "cpu")
    assert mean == pytest.approx(BONEJ[name]["tb_th_vox"], rel=1e-6)
    assert sd == pytest.approx(BONEJ[name]["tb_th_sd_vox"], rel=1e-5)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("seed", range(3))
def test_cuda_equals_cpu(seed):
    phase = random_structure((40, 48, 56), 2.0 + seed, 0.3, seed)
    for p in (phase, ~phase):
        np.testing.assert_array_equal(TB.squared_distance_map(p, "cuda").cpu().numpy(),
                                      T.squared_distance_map(p))
        np.testing.assert_allclose(TB.local_thickness_map(p, "cuda").cpu().numpy(),
                                   T.local_thickness_map(p), rtol=1e-6, atol=1e-5)
    assert TB.euler_characteristic(phase, "cuda") == C.euler_characteristic(phase)


@cuda
@pytest.mark.cuda
def test_cuda_morphometry_equals_cpu(roi_bone):
    bone = roi_bone["isodata_06604_roi_52.nrrd"]
    cpu = trabecular_morphometry(bone, 10.5).as_dict()
    gpu = trabecular_morphometry(bone, 10.5, device="cuda").as_dict()
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-6), key
