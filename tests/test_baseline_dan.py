"""DAN v1 (baselines/dan.py): the official x2 architecture and its parameter count, the setting-1
degradation (Gaussian kernels, MATLAB bicubic x1/2) and its PCA codes, one training step, and a
tiny run of ``bonesr-bench train``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bonesr_bench.models import SubmissionError
from bonesr_bench.training import TrainOptions, load_weights, train

from conftest import load_baseline

SOURCE = Path(__file__).parents[1] / "baselines" / "dan.py"


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def crb(nf: int, n_cond: int) -> int:
    n = nf + n_cond
    return conv(n, n, 3) + conv(n, nf, 3) + conv(nf, nf // 16, 1) + conv(nf // 16, nf, 1)


def official_parameters(channels: int) -> int:
    """DAN v1 x2 setting 1 counted layer by layer from the official code
    (greatlog/DAN codes/config/DANv1/models/modules/dan_arch.py with nf=64, nb=40, input_para=10
    from options/setting1/train/train_setting1_x2.yml; the Estimator at its defaults nf=64,
    num_blocks=5). The paper gives no figure."""
    restorer = (conv(channels, 64, 3) + 40 * crb(64, 10) + conv(64, 64, 3) + conv(64, 256, 3)
                + conv(64, channels, 3))
    estimator = conv(channels, 32, 1) + conv(channels, 32, 9) + 5 * crb(32, 32) + conv(32, 10, 3)
    return restorer + estimator


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and spares OpenMP barriers on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dan():
    return load_baseline("dan")


@pytest.fixture(scope="module")
def full_net(dan):
    torch.manual_seed(0)
    return dan.network().eval()


@pytest.fixture
def tiny_task(dan):
    torch.manual_seed(0)
    return dan.task(dan.network(dan.TINY_CONFIG), dan.RECIPE, "cpu")


def total_variation(x: torch.Tensor) -> float:
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean()
                 + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


# ----------------------------------------------------------------------------------------------
# Network


@pytest.mark.parametrize("h, w", [(5, 7), (3, 4), (6, 1)])
def test_full_network_gives_twice_the_size_for_any_size(dan, full_net, h, w):
    lr = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        srs, codes = full_net.unfold(lr)
        sr = dan.DANModel(full_net)(lr)
    assert len(srs) == len(codes) == 4
    assert all(s.shape == (2, 1, 2 * h, 2 * w) for s in srs)
    assert all(c.shape == (2, 10) for c in codes)
    assert sr.shape == (2, 1, 2 * h, 2 * w) and 0 <= sr.min() and sr.max() <= 1
    assert torch.equal(srs[-1].clamp(0, 1), sr)


def test_parameter_count_is_the_official_x2_network(dan, full_net):
    n = sum(p.numel() for p in full_net.parameters())
    assert official_parameters(3) == 4_181_799
    # one channel in and out: only the two heads and the last conv shrink (7 554 weights)
    assert n == official_parameters(1) == 4_174_245
    assert abs(n - official_parameters(3)) / official_parameters(3) < 0.002
    tiny = sum(p.numel() for p in dan.network(dan.TINY_CONFIG).parameters())
    assert tiny < 20_000
    assert dan.RECIPE.weights_dtype == "float16" and dan.RECIPE.data == "hr"


def test_architecture_is_the_official_one(full_net):
    r, e = full_net.restorer, full_net.estimator
    assert full_net.loop == 4 and len(r.body) == 40 and len(e.body) == 5
    first = r.body[0].body
    assert (first[0].in_channels, first[0].out_channels, first[2].out_channels) == (74, 74, 64)
    assert first[3].body[0].out_channels == 64 // 16
    assert (e.head_sr.kernel_size, e.head_sr.stride, e.head_lr.kernel_size) == ((9, 9), (2, 2),
                                                                              (1, 1))
    assert e.body[0].body[0].in_channels == 64 and e.out.out_channels == 10
    assert full_net.pca.shape == (441, 10)
    assert torch.allclose(full_net.pca.T @ full_net.pca, torch.eye(10), atol=1e-5)
    assert {"pca", "pca_mean", "init_code"} <= set(full_net.state_dict())


def test_unfolding_without_the_early_graphs_gives_the_same_outputs_and_gradients(dan):
    torch.manual_seed(1)
    net = dan.network(dan.TINY_CONFIG)
    lr, hr = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16)
    code = torch.rand(2, 10)
    grads = []
    for last_only in (False, True):
        net.zero_grad()
        srs, codes = net.unfold(lr, graph_last_only=last_only)
        (F.l1_loss(srs[-1], hr) + F.l1_loss(codes[-1], code)).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Degradation and kernel codes


def test_degrade_is_deterministic_and_halves_the_size(tiny_task):
    hr = torch.rand(3, 1, 32, 30, generator=torch.Generator().manual_seed(0))
    lr1, c1 = tiny_task.degrade(hr, torch.Generator().manual_seed(5))
    lr2, c2 = tiny_task.degrade(hr, torch.Generator().manual_seed(5))
    lr3, c3 = tiny_task.degrade(hr, torch.Generator().manual_seed(6))
    assert lr1.shape == (3, 1, 16, 15) and c1.shape == (3, 10)
    assert torch.equal(lr1, lr2) and torch.equal(c1, c2)
    assert not torch.allclose(lr1, lr3) and not torch.allclose(c1, c3)
    odd, _ = tiny_task.degrade(torch.rand(2, 1, 33, 31), torch.Generator().manual_seed(5))
    assert odd.shape == (2, 1, 17, 16)


def test_kernel_codes_round_trip_and_kernels_are_the_setting(tiny_task):
    net = tiny_task.net
    kernels = tiny_task.draw_kernels(256, torch.Generator().manual_seed(7))
    _, codes = tiny_task.degrade(torch.rand(256, 1, 16, 16), torch.Generator().manual_seed(7))
    assert torch.allclose(codes, net.encode(kernels))
    assert torch.allclose(kernels.sum((1, 2)), torch.ones(256), atol=1e-5)
    err = (net.decode(codes) - kernels).flatten(1).norm(dim=1) / kernels.flatten(1).norm(dim=1)
    assert err.max() < 0.05, err.max()
    # sigma uniform in [0.2, 4]: sampled variances below 4^2 (truncated to 21 taps), both ends
    ax = torch.arange(21.0) - 10
    var = (kernels * ax[None, None, :] ** 2).sum((1, 2))
    assert var.max() < 16 and var.min() < 0.1 and var.max() > 10


def test_dirac_code_is_the_initial_code(dan, full_net):
    dirac = torch.zeros(1, 21, 21)
    dirac[0, 10, 10] = 1
    assert torch.allclose(full_net.encode(dirac), full_net.init_code)
    narrowest = dan.gaussian_kernels(torch.tensor([0.2]), 21)
    assert torch.allclose(full_net.encode(narrowest), full_net.init_code, atol=1e-3)


def test_wider_kernel_gives_smoother_lr_and_constants_stay(dan):
    hr = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    tv = [total_variation(dan.blur_downsample(hr, dan.gaussian_kernels(torch.tensor([s]))))
          for s in (0.3, 1.5, 3.0)]
    assert tv[0] > 2 * tv[1] > 2 * tv[2] > 0, tv
    flat = dan.blur_downsample(torch.full((1, 1, 40, 36), 0.7),
                               dan.gaussian_kernels(torch.tensor([2.0])))
    assert torch.allclose(flat, torch.full((1, 1, 20, 18), 0.7), atol=1e-6)


def matlab_half(n: int) -> np.ndarray:
    """MATLAB imresize(., 0.5) 'bicubic' with anti-aliasing along one axis of length n, as a
    matrix, following its weights-and-indices algorithm (1-based, symmetric index mirroring)."""

    def cubic(x):
        a = abs(x)
        if a <= 1:
            return 1.5 * a ** 3 - 2.5 * a ** 2 + 1
        return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2 if a <= 2 else 0.0

    scale, width = 0.5, 4 / 0.5
    out = math.ceil(n * scale)
    mirror = list(range(1, n + 1)) + list(range(n, 0, -1))
    m = np.zeros((out, n))
    for x in range(1, out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        idx = range(left, left + math.ceil(width) + 2)
        w = np.array([scale * cubic(scale * (u - j)) for j in idx])
        for j, wj in zip(idx, w / w.sum(), strict=True):
            m[x - 1, mirror[(j - 1) % (2 * n)] - 1] += wj
    return m


@pytest.mark.parametrize("h, w", [(20, 16), (11, 14)])
def test_downsampling_is_matlab_bicubic(dan, h, w):
    x = torch.rand(1, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(h))
    expected = matlab_half(h) @ x[0, 0].numpy() @ matlab_half(w).T
    got = dan.bicubic_half(x)[0, 0].numpy()
    assert got.shape == expected.shape == (math.ceil(h / 2), math.ceil(w / 2))
    np.testing.assert_allclose(got, expected, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Training


def test_one_step_changes_both_modules_and_stays_finite(tiny_task):
    hr = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    lr, aux = tiny_task.degrade(hr, torch.Generator().manual_seed(1))
    net = tiny_task.net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses = tiny_task.step(lr, hr, aux)
    assert set(losses) == {"loss", "l_sr", "l_ker"}
    assert all(math.isfinite(v) for v in losses.values())
    assert losses["loss"] == pytest.approx(losses["l_sr"] + losses["l_ker"], rel=1e-5)
    after = net.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    for prefix in ("restorer.", "estimator."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix))
    for k in ("pca", "pca_mean", "init_code"):
        assert torch.equal(before[k], after[k])
    assert tiny_task.predict(lr).shape == hr.shape


def test_train_tiny_end_to_end(dan, mini_split, tmp_path):
    shipped = dan.WEIGHTS.is_file()
    out = train(str(SOURCE), TrainOptions(split=mini_split, tiny=True, run_dir=tmp_path / "run"))
    assert out.weights.is_file() and out.weights.parent == tmp_path / "run"
    assert out.record["dtype"] == "float16" and out.record["iterations"] == 4
    assert {"l_sr", "l_ker", "validation_l1"} <= set(out.history[-1])
    net = load_weights(dan.network(dan.TINY_CONFIG), out.weights)
    assert out.record["n_parameters"] == sum(p.numel() for p in net.parameters())
    fresh = dan.network(dan.TINY_CONFIG)
    assert torch.allclose(net.pca, fresh.pca, atol=1e-3)
    with torch.no_grad():
        assert net(torch.rand(1, 1, 9, 7)).shape == (1, 1, 18, 14)
    assert dan.WEIGHTS.is_file() == shipped


def test_load_needs_the_trained_weights(dan):
    if dan.WEIGHTS.is_file():
        model = dan.load("cpu")
        assert model.name == "dan" and model.scale == 2 and model.input == "slice"
        return
    with pytest.raises(SubmissionError, match="bonesr-bench train baselines/dan.py") as e:
        dan.load("cpu")
    assert "\n" not in str(e.value)
