"""Differentiable morphometry: gradients checked in float64, and each soft term equal to the hard
engine on binary maps (phantoms and the shipped real ROIs)."""

from __future__ import annotations

import pytest
import torch
from skimage.measure import euler_number

from bonesr_bench.morphometry import bone_volume_fraction
from bonesr_bench.morphometry.connectivity import euler_characteristic
from bonesr_bench.morphometry.soft import (
    cl_dice,
    erosion_profile,
    soft_bone,
    soft_bv_tv,
    soft_conn_d,
    soft_euler,
    soft_skeleton,
    thickness_term,
)

from conftest import random_structure


def _p(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.05 + 0.9 * torch.rand(shape, generator=g, dtype=torch.float64)).requires_grad_()


@pytest.mark.parametrize("ndim,shape", [(3, (2, 4, 5, 6)), (2, (2, 7, 8))])
def test_every_term_has_the_gradient_of_its_finite_differences(ndim, shape):
    p, q = _p(shape, 0), _p(shape, 1).detach()
    for f in (lambda x: soft_bv_tv(x, ndim), lambda x: soft_euler(x, ndim),
              lambda x: cl_dice(x, q, iterations=2, ndim=ndim),
              lambda x: thickness_term(x, q, steps=2, ndim=ndim),
              lambda x: soft_skeleton(x, 2, ndim).sum()):
        assert torch.autograd.gradcheck(f, (p,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_the_expected_euler_characteristic_of_a_binary_map_is_the_engines(seed):
    bone = random_structure((14, 15, 16), 1.2, 0.35, seed)
    chi = soft_euler(torch.tensor(bone, dtype=torch.float64))
    assert float(chi) == euler_characteristic(bone) == euler_number(bone, connectivity=3)
    sl = bone[7]
    assert float(soft_euler(torch.tensor(sl, dtype=torch.float64), ndim=2)) == \
        euler_number(sl, connectivity=2)


def test_on_the_real_rois_the_soft_terms_at_tau_to_zero_are_the_hard_ones(roi_bone):
    for name, bone in roi_bone.items():
        grey = torch.tensor(bone, dtype=torch.float64) * 2.0 - 1.0  # bone +1, marrow -1
        p = soft_bone(grey, 0.0, tau=1e-3)  # the hard map, up to exp(-1000)
        assert float(soft_euler(p)) == pytest.approx(euler_characteristic(bone), abs=1e-6), name
        assert 100 * float(soft_bv_tv(p)) == pytest.approx(bone_volume_fraction(bone), abs=1e-7)
        conn = float(soft_conn_d(p, 10.5))
        tv_mm3 = bone.size * (10.5e-3) ** 3
        assert conn == pytest.approx((1 - euler_characteristic(bone)) / tv_mm3, rel=1e-9)
    # softer maps move the expectation smoothly away from it
    p = soft_bone(grey, 0.0, tau=0.5)
    assert float(soft_euler(p)) != pytest.approx(euler_characteristic(bone), abs=1e-3)


def test_the_erosion_profile_of_a_plate_measures_its_thickness():
    for t in (3, 5, 9):
        slab = torch.zeros(1, 30, 24, 24, dtype=torch.float64)
        slab[:, 10:10 + t] = 1.0
        prof = erosion_profile(slab, steps=6)[0]
        want = torch.tensor([max(t - 2 * k, 0) / t for k in range(1, 7)], dtype=torch.float64)
        torch.testing.assert_close(prof, want)
        assert float(prof.sum()) == pytest.approx(((t - 1) / 2) ** 2 / t)
    thick, thin = torch.zeros(1, 30, 24, 24, dtype=torch.float64), \
        torch.zeros(1, 30, 24, 24, dtype=torch.float64)
    thick[:, 10:19], thin[:, 10:13] = 1.0, 1.0
    assert float(thickness_term(thick, thick)) == 0.0 < float(thickness_term(thin, thick))


def test_cl_dice_rewards_the_same_network_and_punishes_a_broken_one():
    rod = torch.zeros(1, 9, 9, 40, dtype=torch.float64)
    rod[:, 3:6, 3:6, :] = 1.0
    broken = rod.clone()
    broken[:, :, :, 18:22] = 0.0
    assert float(cl_dice(rod, rod)) == pytest.approx(1.0)
    assert float(cl_dice(broken, rod)) < float(cl_dice(rod, rod))
    skel = soft_skeleton(rod)
    assert float(skel[0, 4, 4, 20]) == pytest.approx(1.0) and float(skel[0, 0, 0, 20]) == 0.0


def test_bad_dimensions_are_one_clear_error():
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        soft_euler(torch.zeros(3), ndim=3)


TRAINABLE = '''
import torch
from torch import nn
from bonesr_bench.models import TorchModel
from bonesr_bench.training import Recipe

RECIPE = Recipe(iterations=4, batch_size=2, patch=16, validate_every=2, checkpoint_every=2,
                morphometry_weights={"bv_tv": 1.0, "euler": 0.1, "cldice": 0.5,
                                     "thickness": 0.5})
CONFIG = {"features": 4}


class Net(nn.Module):
    def __init__(self, features=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, features, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(features, 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x):
        return torch.sigmoid(self.body(x))


def network(config=None):
    return Net(**(config or CONFIG))


class Model(TorchModel):
    name = "bio-tiny"


def load(device):
    return Model(network().to(device).eval())
'''


def test_a_recipe_with_morphometry_terms_trains_through_the_loop(mini_split, tmp_path):
    """`train` runs a recipe whose loss adds the soft terms: their values are logged per
    validation, the soft threshold is the train HR's Otsu level; unknown terms are refused and
    recipes without terms keep their checkpoint keys."""
    import hashlib
    import json
    from pathlib import Path

    from bonesr_bench.training import Recipe, TrainingError, TrainOptions, train

    src = tmp_path / "bio" / "model.py"
    src.parent.mkdir()
    src.write_text(TRAINABLE)
    out = train(str(src), TrainOptions(split=str(mini_split), run_dir=tmp_path / "run",
                                       device="cpu"))
    assert out.record["iterations"] == 4 and len(out.history) == 2
    assert {"bv_tv", "euler", "cldice", "thickness"} <= set(out.history[-1])
    log = (tmp_path / "run" / "train.log").read_text()
    threshold = float(log.split("at threshold ")[1].split(" ")[0])
    assert 0.05 < threshold < 0.95
    assert json.loads(Path(str(out.weights) + ".json").read_text())[
        "recipe"]["morphometry_weights"]["cldice"] == 0.5
    with pytest.raises(TrainingError, match="morphometry_weights"):
        Recipe(iterations=1, morphometry_weights={"smi": 1.0})
    plain = Recipe(iterations=10)  # its checkpoint key is the one it had before the terms
    old = {k: v for k, v in plain.as_dict().items()
           if k not in ("iterations", "morphometry_weights", "bone_threshold", "bone_tau",
                        "stack")}
    blob = json.dumps({"recipe": old, "config": None}, sort_keys=True, default=str)
    assert plain.key(None) == hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_a_slice_model_trains_on_stacks_with_the_3d_terms(mini_split, tmp_path):
    """stack > 1: the slice model super-resolves consecutive slices together and the terms are
    computed in 3D on the stack (their shapes say so); one specimen's patches stay within it."""
    import numpy as np

    from bonesr_bench.training import SupervisedTask, TrainOptions, sample_pairs, train
    from bonesr_bench.training.data import Volume

    vol = Volume("v", torch.rand(6, 10, 10), torch.rand(6, 20, 20))
    lr, hr = sample_pairs([vol], np.random.default_rng(0), 4, 8, 2, stack=3)
    assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16)
    src = tmp_path / "bio3d" / "model.py"
    src.parent.mkdir()
    src.write_text(TRAINABLE.replace("checkpoint_every=2,", "checkpoint_every=2, stack=3,"))
    out = train(str(src), TrainOptions(split=str(mini_split), run_dir=tmp_path / "run",
                                       device="cpu"))
    assert {"euler", "cldice"} <= set(out.history[-1]) and out.record["recipe"]["stack"] == 3
    seen = []
    real = SupervisedTask.step

    def spy(self, lr, hr, aux=None):
        seen.append(tuple(lr.shape))
        return real(self, lr, hr, aux)

    SupervisedTask.step = spy
    try:
        train(str(src), TrainOptions(split=str(mini_split), run_dir=tmp_path / "run2",
                                     device="cpu", iterations=1))
    finally:
        SupervisedTask.step = real
    assert seen and seen[0][1] == 3
