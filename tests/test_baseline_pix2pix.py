"""The pix2pix baseline (``baselines/pix2pix.py``): architecture against the official code's
figures, the 70 x 70 PatchGAN, same-size SR on any slice size, one training step and a run of the
project's trainer (tiny config, mini split) with its resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bonesr_bench.models import SubmissionError
from bonesr_bench.training import TrainOptions, load_weights, train

from conftest import load_baseline

FILE = Path(__file__).parents[1] / "baselines" / "pix2pix.py"


@pytest.fixture(scope="module")
def p2p():
    return load_baseline("pix2pix")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def unet_count(in_nc: int, out_nc: int, ngf: int, depth: int) -> int:
    """Parameters of the official UnetGenerator (batch norm: no conv bias before a norm), from
    its layer shapes: 4 x 4 kernels, channels ngf * min(2^k, 8)."""
    ch = [ngf * min(2 ** k, 8) for k in range(depth)]
    total = 16 * in_nc * ch[0] + 16 * 2 * ch[0] * out_nc + out_nc  # outermost down, up (+bias)
    for k in range(1, depth - 1):  # down conv + BN(inner), up conv (2 inner -> outer) + BN(outer)
        total += 16 * ch[k - 1] * ch[k] + 2 * ch[k] + 16 * 2 * ch[k] * ch[k - 1] + 2 * ch[k - 1]
    inner, outer = ch[-1], ch[-2]
    return total + 16 * outer * inner + 16 * inner * outer + 2 * outer  # innermost: no down BN


def patchgan_count(in_nc: int, ndf: int, n_layers: int) -> int:
    """Parameters of the official NLayerDiscriminator (batch norm) from its layer shapes."""
    total, prev = 16 * in_nc * ndf + ndf, ndf
    for n in range(1, n_layers + 1):
        c = ndf * min(2 ** n, 8)
        total, prev = total + 16 * prev * c + 2 * c, c
    return total + 16 * prev + 1


def test_counts_formula_reproduces_the_official_printout():
    # The official code prints 54.414 M (unet_256, RGB) and 2.769 M (basic D on RGB pairs).
    assert unet_count(3, 3, 64, 8) == 54_413_955
    assert patchgan_count(6, 64, 3) == 2_768_705


def test_parameter_counts(p2p):
    g = p2p.network()
    assert g.depth == 7  # unet_128 on 128-pixel HR training patches
    assert n_params(g) == unet_count(1, 1, 64, 7) == 41_822_849
    assert n_params(p2p.network({**p2p.CONFIG, "depth": 8})) == unet_count(1, 1, 64, 8) \
        == 54_407_809
    d = p2p.PatchGAN(2, **g.discriminator_config)
    assert n_params(d) == patchgan_count(2, 64, 3) == 2_764_609
    tiny = p2p.network(p2p.TINY_CONFIG)
    assert n_params(tiny) == unet_count(1, 1, 4, 5) == 65_449
    assert n_params(p2p.PatchGAN(2, **tiny.discriminator_config)) == patchgan_count(2, 4, 2)
    # dropout follows the depth - 5 inner 512 -> 512 decoder levels, as the official code
    assert sum(isinstance(m, torch.nn.Dropout) for m in g.modules()) == 2


def test_patchgan_receptive_field_is_70(p2p):
    d = p2p.PatchGAN(2).double().eval()
    x = torch.randn(1, 2, 160, 160, dtype=torch.float64, requires_grad=True)
    out = d(x)
    assert out.shape[-2:] == (18, 18)
    out[0, 0, 9, 9].backward()
    support = x.grad.abs().sum(dim=(0, 1)) > 0
    for axis in (0, 1):
        idx = torch.nonzero(support.any(dim=1 - axis)).flatten()
        assert len(idx) == 70 and int(idx[-1] - idx[0]) == 69  # one contiguous 70-pixel window
    assert int(support.sum()) == 70 * 70


@pytest.mark.parametrize("h,w", [(5, 7), (1, 3), (33, 17)])
def test_full_generator_any_size(p2p, h, w):
    torch.manual_seed(0)
    g = p2p.network().eval()
    lr = torch.rand(2, 1, h, w)
    with torch.no_grad():
        sr = g(lr)
    assert sr.shape == (2, 1, 2 * h, 2 * w)
    assert torch.isfinite(sr).all()


def test_untrained_generator_on_a_constant_slice(p2p):
    torch.manual_seed(0)
    g = p2p.network().eval()
    model = p2p.Pix2PixModel(g)
    lr = torch.full((1, 1, 24, 20), 0.3)
    with torch.no_grad():
        sr, again = model(lr), model(lr)
        g.train()
        noisy = [g(lr) for _ in range(2)]
    assert sr.shape == (1, 1, 48, 40) and sr.dtype == torch.float32
    # N(0, 0.02) weights: tanh near 0, i.e. mid-grey, everywhere finite and in range
    assert torch.isfinite(sr).all() and (sr > 0.4).all() and (sr < 0.6).all()
    assert torch.equal(sr, again)  # eval mode: dropout off, deterministic for a fixed input
    assert not torch.equal(noisy[0], noisy[1])  # the dropout is there in train mode
    assert torch.allclose(g.upsample(lr), torch.full((1, 1, 48, 40), 0.3))


def test_one_step_changes_both_networks(p2p):
    torch.manual_seed(0)
    g = p2p.network(p2p.TINY_CONFIG)
    recipe = p2p.RECIPE.tiny()
    t = p2p.task(g, recipe, "cpu")
    assert set(t.networks) == set(t.optimisers) == set(t.schedulers) == {"generator",
                                                                          "discriminator"}
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in t.networks.items()}
    lr, hr = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 32, 32)
    losses = t.step(lr, hr, None)
    assert set(losses) == {"g_gan", "g_l1", "d_real", "d_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert 0.0 < losses["g_l1"] < 1.0
    for k, m in t.networks.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[k], m.parameters(), strict=True))
        assert all(p.requires_grad for p in m.parameters())
    assert t.predict(lr).shape == (2, 1, 32, 32)


def test_learning_rate_constant_then_linear_to_zero(p2p):
    g = p2p.network(p2p.TINY_CONFIG)
    t = p2p.task(g, replace(p2p.RECIPE, iterations=10), "cpu")
    lrs = []
    for _ in range(10):
        lrs.append(t.optimisers["generator"].param_groups[0]["lr"])
        for o in t.optimisers.values():
            o.step()
        for s in t.schedulers.values():
            s.step()
    assert lrs == pytest.approx([2e-4] * 5 + [2e-4 * f / 6 for f in (5, 4, 3, 2, 1)])
    assert t.optimisers["discriminator"].param_groups[0]["lr"] == pytest.approx(0.0)


def test_recipe_and_interface(p2p, tmp_path, monkeypatch):
    r = p2p.RECIPE
    assert (r.keep, r.weights_dtype, r.loss, r.learning_rate, r.betas) == \
        ("last", "float16", "l1", 2e-4, (0.5, 0.999))
    assert r.patch * r.scale == 2 ** p2p.CONFIG["depth"]  # 1 x 1 bottleneck on training patches
    m = p2p.Pix2PixModel
    assert (m.name, m.scale, m.input, m.licence, m.weights) == \
        ("pix2pix", 2, "slice", "BSD-3-Clause", p2p.WEIGHTS)
    assert p2p.WEIGHTS.name == "pix2pix.safetensors" and p2p.WEIGHTS.parent.name == "weights"
    monkeypatch.setattr(p2p, "WEIGHTS", tmp_path / "missing.safetensors")
    with pytest.raises(SubmissionError, match="bonesr-bench train baselines/pix2pix.py"):
        p2p.load("cpu")


def test_trainer_end_to_end_and_resume(p2p, mini_split, tmp_path, monkeypatch):
    run = tmp_path / "run"
    out = train(str(FILE), TrainOptions(split=mini_split, tiny=True, run_dir=run, device="cpu"))
    assert out.resumed_from == 0 and out.weights.is_file()
    assert out.record["dtype"] == "float16" and out.record["n_parameters"] == 65_449
    net = load_weights(p2p.network(p2p.TINY_CONFIG), out.weights)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert set(ckpt["networks"]) == {"generator", "discriminator"}
    saved = ckpt["networks"]["generator"]
    assert set(saved) == set(net.state_dict())  # only the generator is the submission's weights
    for k, v in net.state_dict().items():  # keep="last": the final iterate, rounded to float16
        assert torch.allclose(v.float(), saved[k].float(), atol=1e-3, rtol=1e-3), k

    again = train(str(FILE), TrainOptions(split=mini_split, tiny=True, run_dir=run, device="cpu",
                                          iterations=6))
    assert again.resumed_from == 4
    assert [h["iteration"] for h in again.history] == [2, 4, 6]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 6

    monkeypatch.setattr(p2p, "CONFIG", p2p.TINY_CONFIG)
    monkeypatch.setattr(p2p, "WEIGHTS", again.weights)
    model = p2p.load("cpu")
    assert not any(m.training for m in model.net.modules())
    lr = torch.rand(1, 1, 11, 9)
    with torch.no_grad():
        sr = model(lr)
        assert torch.equal(sr, model(lr))
    assert sr.shape == (1, 1, 22, 18) and float(sr.min()) >= 0.0 and float(sr.max()) <= 1.0
