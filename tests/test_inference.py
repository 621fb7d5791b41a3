"""The model -> SR volume stage: batching, both input modes, and output validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bonesr_bench.models import load_model
from bonesr_bench.models.inference import OutputError, run_model

BICUBIC = str(Path(__file__).parents[1] / "baselines" / "bicubic.py")
LR = np.random.default_rng(0).random((5, 12, 14)).astype(np.float32)


class Model:
    name, scale, input = "m", 2, "slice"

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, lr):
        return self.fn(lr)


def test_bicubic_slices_in_batches_equal_one_pass():
    model = load_model(BICUBIC)
    seen = []
    sr, stats = run_model(model, LR, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert sr.shape == (10, 24, 28) and sr.dtype == np.float32
    assert stats.n_calls == 5 and seen[-1] == (10, 10)
    # LR first interpolated linearly along z to the HR slice positions, then x2 slice by slice
    z_up = F.interpolate(torch.as_tensor(LR)[None, None], scale_factor=(2, 1, 1),
                         mode="trilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(z_up[1].numpy(), 0.75 * LR[0] + 0.25 * LR[1], atol=1e-6)
    ref = F.interpolate(z_up[:, None], scale_factor=2, mode="bicubic",
                        align_corners=False).clamp(0, 1)[:, 0].numpy()
    np.testing.assert_allclose(sr, ref, atol=1e-6)


def test_volume_mode():
    m = Model(lambda v: F.interpolate(v, scale_factor=2, mode="trilinear", align_corners=False))
    m.input = "volume"
    sr, stats = run_model(m, LR)
    assert sr.shape == (10, 24, 28) and stats.n_calls == 1


def test_out_of_range_values_are_clipped_and_counted():
    m = Model(lambda b: F.interpolate(b, scale_factor=2) * 3 - 1)
    sr, stats = run_model(m, LR)
    assert sr.min() >= 0 and sr.max() <= 1 and stats.n_clipped > 0


@pytest.mark.parametrize("fn, message", [
    (lambda b: F.interpolate(b, scale_factor=2) * float("nan"), "non-finite"),
    (lambda b: F.interpolate(b, scale_factor=3), "output shape"),
    (lambda b: F.interpolate(b, scale_factor=2).double(), "dtype torch.float64"),
    (lambda b: F.interpolate(b, scale_factor=2).numpy(), "not a torch tensor"),
])
def test_bad_outputs_are_named(fn, message):
    with pytest.raises(OutputError, match=message) as info:
        run_model(Model(fn), LR)
    assert "\n" not in str(info.value)


def test_one_z_interpolation_for_evaluation_and_training():
    """The LR on the HR slice positions: the same function at evaluation and in training, equal
    to torch's trilinear x2 along z and untouched in-plane."""
    from bonesr_bench.models.inference import lr_on_hr_slices

    lr = torch.rand(7, 10, 12)
    up = lr_on_hr_slices(lr, 14)
    ref = F.interpolate(lr[None, None], scale_factor=(2, 1, 1), mode="trilinear",
                        align_corners=False)[0, 0]
    assert up.shape == (14, 10, 12) and torch.equal(up, ref)
    # slice 2k + 1 lies between LR slices k and k + 1 (a quarter of the way)
    assert torch.allclose(up[3], 0.75 * lr[1] + 0.25 * lr[2])
    src = (Path(__file__).parents[1] / "benchmark" / "bonesr_bench" / "training" / "data.py")
    assert "lr_on_hr_slices" in src.read_text() and "F.interpolate" not in src.read_text()
