"""pix2pix (Isola, Zhu, Zhou & Efros 2017) as same-size x2 SR, one channel: a reference baseline.

Isola P, Zhu J-Y, Zhou T, Efros AA (2017) Image-to-image translation with conditional adversarial
networks. CVPR 2017:1125-1134 (arXiv:1611.07004). Re-implemented in torch after the authors' code
(github.com/junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``: ``UnetGenerator``,
``UnetSkipConnectionBlock``, ``NLayerDiscriminator``, ``GANLoss``; ``models/pix2pix_model.py``).

As in the reference study, pix2pix translates at the HR size: the LR slice is up-sampled x2 by
torch's bicubic kernel and the network maps that image to the HR slice.

Generator: the U-Net with skips of the official code, ``depth`` stride-2 down-samplings (4 x 4
convolutions; LeakyReLU 0.2 before each but the first, batch norm after each but the first and the
innermost) and as many 4 x 4 transposed convolutions back (ReLU before, batch norm after, tanh
after the last), each decoder level but the outermost fed the concatenation of its encoder skip.
Channels 64, 128, 256, 512, 512, ... Dropout 0.5 follows the decoder levels of the depth - 5
inner 512 -> 512 blocks (the code's placement; the paper's table puts it on the first three
decoder layers, which includes the innermost one). Depth 7 (the official ``unet_128``, 41.82 M
parameters here) because training patches are 128 HR pixels (64 LR): seven halvings bring a 128
patch to a 1 x 1 bottleneck, as ``unet_256``'s eight do for its 256-pixel crops; eight would need
256-pixel patches, i.e. whole v1 slices (256 x 256 HR), leaving no crop diversity. Whole slices of
any size run at evaluation: the bicubic input is reflect-padded to a multiple of 2^depth and the
output cropped back, so the result is exactly (B, 1, 2h, 2w).

Discriminator: the 70 x 70 PatchGAN (``NLayerDiscriminator`` with n_layers=3, ndf=64; 4 x 4
convolutions, strides 2, 2, 2, 1, 1, batch norm but on the first and last, LeakyReLU 0.2, one logit
per patch), conditioned on the input: it sees the pair (bicubic input, HR or generated), 2
channels. 2.76 M parameters.

Training (``task``): per step, D on the real and (detached) fake pairs with the vanilla GAN loss
(binary cross-entropy on logits, the real and fake terms halved), then G with the GAN loss plus
100 x L1 (lambda_L1 = 100), Adam lr 2e-4, betas (0.5, 0.999) for both; the learning rate is held
for the first half of the iterations then decays linearly to zero (the code's ``lr_policy=linear``
with n_epochs = n_epochs_decay), by this file's own ``LambdaLR`` since ``Recipe.schedule`` has no
linear decay (``RECIPE.milestones[0]`` is where the decay starts). No image pool (pool_size 0, as
the code's pix2pix default). Initialisation N(0, 0.02) for (transposed) convolutions, zero
biases, batch-norm scales N(1, 0.02). The last iterate is kept (``keep="last"``), as the original
saves the final epoch: validation L1 does not choose a GAN's weights.

Deviations from the original: one channel in and out (D: two); intensities [0, 1] mapped to
[-1, 1] inside the network (the tanh output mapped back; L1 and D work on [-1, 1] as the original's
images); the bicubic up-sampling is part of the network; reflect padding for sizes that are not a
multiple of 2^depth (the original only sees fixed 256 crops); depth 7 rather than unet_256's 8 (see
above); batch 16 of random 128 x 128 HR patches from the train slices rather than batch 1 of
jittered, flipped 256 crops (no flips or jitter); iterations instead of epochs; at test time the
network is in eval mode (dropout off, batch norm on its running statistics): the original runs the
test in train mode (dropout as noise, batch statistics), which is not deterministic for a fixed
input. Only the generator is saved (float16 safetensors); the discriminator lives in checkpoints.
Trained by ``bonesr-bench train baselines/pix2pix.py``; weights in ``weights/pix2pix.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bonesr_bench.models import TorchModel
from bonesr_bench.training import Recipe, make_optimiser

WEIGHTS = Path(__file__).resolve().parent / "weights" / "pix2pix.safetensors"
CONFIG = {"ngf": 64, "depth": 7, "dropout": 0.5, "norm": "batch", "ndf": 64, "d_layers": 3,
          "scale": 2}
TINY_CONFIG = {"ngf": 4, "depth": 5, "dropout": 0.5, "norm": "batch", "ndf": 4, "d_layers": 2,
               "scale": 2}
# One step (batch 16 of 128 x 128 HR patches: G forward and backward, D three times) is about
# 334 GFLOP (torch's FlopCounterMode), ~10-20 ms on one H100 with cuDNN's default TF32
# convolutions (an estimate, not a measurement): 60 000 iterations take about 10-20 minutes.
RECIPE = Recipe(
    loss="l1", optimiser="adam", learning_rate=2e-4, betas=(0.5, 0.999), schedule="constant",
    milestones=(0.5,), iterations=60000, batch_size=16, patch=64, seed=0, validate_every=2000,
    checkpoint_every=2000, keep="last", weights_dtype="float16",
    notes="pix2pix task: D (vanilla GAN, BCE on logits) then G (GAN + 100 x L1); lr 2e-4 held "
          "for the first milestones[0] of the iterations, then linear decay to 0 (own LambdaLR); "
          "loss='l1' names the reconstruction term; generator saved only",
)

LAMBDA_L1 = 100.0


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    raise ValueError(f"norm={kind!r}: use batch or instance")


def _init(module: nn.Module) -> None:
    """The original's ``init_type='normal'``, gain 0.02."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect padding of any width (repeated when wider than the image)."""
    while top or bottom or left or right:
        h, w = x.shape[-2] - 1, x.shape[-1] - 1
        if h == 0 or w == 0:  # a single row or column: nothing to reflect, replicate instead
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        t, b, lf, r = min(top, h), min(bottom, h), min(left, w), min(right, w)
        x = F.pad(x, (lf, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - lf, right - r
    return x


class UNetSR(nn.Module):
    """The pix2pix U-Net generator on the bicubic x2 up-sampling; [0, 1] in and out."""

    def __init__(self, ngf: int = 64, depth: int = 7, dropout: float = 0.5, norm: str = "batch",
                 ndf: int = 64, d_layers: int = 3, scale: int = 2):
        super().__init__()
        if depth < 5:
            raise ValueError("depth must be at least 5 (the official U-Net's fixed levels)")
        self.scale, self.depth = scale, depth
        self.discriminator_config = {"ndf": ndf, "n_layers": d_layers, "norm": norm}
        bias = norm != "batch"  # the original: convolutions before batch norm carry no bias
        ch = [ngf * min(2 ** k, 8) for k in range(depth)]
        enc = [nn.Conv2d(1, ch[0], 4, 2, 1, bias=bias)]
        for k in range(1, depth):
            layers = [nn.LeakyReLU(0.2), nn.Conv2d(ch[k - 1], ch[k], 4, 2, 1, bias=bias)]
            if k < depth - 1:
                layers.append(_norm(norm, ch[k]))
            enc.append(nn.Sequential(*layers))
        dec = [nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * ch[0], 1, 4, 2, 1), nn.Tanh())]
        for k in range(1, depth):
            c_in = ch[k] if k == depth - 1 else 2 * ch[k]
            layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, ch[k - 1], 4, 2, 1, bias=bias),
                      _norm(norm, ch[k - 1])]
            if 4 <= k < depth - 1 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            dec.append(nn.Sequential(*layers))
        self.encoder, self.decoder = nn.ModuleList(enc), nn.ModuleList(dec)
        _init(self)

    def upsample(self, lr: torch.Tensor) -> torch.Tensor:
        return F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net on an HR-size image in [-1, 1] -> [-1, 1], any size (padded, cropped)."""
        h, w = x.shape[-2:]
        m = 2 ** self.depth
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = _reflect(x, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
        skips = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        y = self.decoder[-1](skips[-1])
        for k in range(self.depth - 2, -1, -1):
            y = self.decoder[k](torch.cat([skips[k], y], 1))
        return y[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return (self.translate(self.upsample(lr) * 2 - 1) + 1) / 2


class PatchGAN(nn.Module):
    """The original's ``NLayerDiscriminator``: n_layers=3 is the 70 x 70 PatchGAN; logits."""

    def __init__(self, in_channels: int = 2, ndf: int = 64, n_layers: int = 3,
                 norm: str = "batch"):
        super().__init__()
        bias = norm != "batch"
        layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias),
                       _norm(norm, ndf * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        _init(self)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.model(pair)


def _linear_decay(iterations: int, start: float):
    """LR factor of step t + 1: 1 for the first n0 = ``start`` x ``iterations`` steps, then
    linearly down, reaching 0 after the last step; the original's ``lr_policy=linear``
    (1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)) counted in iterations."""
    n0 = min(max(int(round(start * iterations)), 0), iterations)

    def factor(t: int) -> float:
        return max(0.0, 1.0 - max(0, t + 1 - n0) / (iterations - n0 + 1))

    return factor


class Pix2PixTask:
    """One pix2pix step per batch: D on (input, HR) and (input, G(input)), then G."""

    def __init__(self, net: UNetSR, recipe: Recipe, device="cpu"):
        self.net = net
        self.disc = PatchGAN(2, **net.discriminator_config).to(device)
        self.networks = {"generator": net, "discriminator": self.disc}
        self.optimisers = {k: make_optimiser(m.parameters(), recipe)
                           for k, m in self.networks.items()}
        start = recipe.milestones[0] if recipe.milestones else 0.5
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(
            o, _linear_decay(recipe.iterations, start)) for k, o in self.optimisers.items()}

    @staticmethod
    def _gan(logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)

    def step(self, lr, hr, aux=None) -> dict[str, float]:
        """Logs g_gan, d_real, d_fake (BCE) and g_l1: mean |SR - HR| on the [0, 1] scale of the
        validation L1 (the loss itself takes 100 x L1 on [-1, 1], as the original)."""
        a = self.net.upsample(lr) * 2 - 1  # the condition, in the network's [-1, 1]
        b = hr * 2 - 1
        fake = self.net.translate(a)
        opt_g, opt_d = self.optimisers["generator"], self.optimisers["discriminator"]

        self.disc.requires_grad_(True)
        d_fake = self._gan(self.disc(torch.cat([a, fake.detach()], 1)), False)
        d_real = self._gan(self.disc(torch.cat([a, b], 1)), True)
        opt_d.zero_grad(set_to_none=True)
        ((d_fake + d_real) * 0.5).backward()
        opt_d.step()

        self.disc.requires_grad_(False)
        g_gan = self._gan(self.disc(torch.cat([a, fake], 1)), True)
        g_l1 = F.l1_loss(fake, b)
        opt_g.zero_grad(set_to_none=True)
        (g_gan + LAMBDA_L1 * g_l1).backward()
        opt_g.step()
        self.disc.requires_grad_(True)

        for s in self.schedulers.values():
            s.step()
        return {"g_gan": float(g_gan.detach()), "g_l1": float(g_l1.detach()) / 2,
                "d_real": float(d_real.detach()), "d_fake": float(d_fake.detach())}

    def predict(self, lr):
        return self.net(lr)


def network(config: dict | None = None) -> UNetSR:
    return UNetSR(**(config or CONFIG))


def task(net: UNetSR, recipe: Recipe, device="cpu") -> Pix2PixTask:
    return Pix2PixTask(net, recipe, device)


class Pix2PixModel(TorchModel):
    name = "pix2pix"
    authors = "bonesr-bench (after Isola, Zhu, Zhou & Efros 2017)"
    paper = ("Isola P, Zhu J-Y, Zhou T, Efros AA (2017) Image-to-image translation with "
             "conditional adversarial networks. CVPR")
    licence = "BSD-3-Clause"
    training_data = "bonesr-bench synth-v2 train split"
    weights = WEIGHTS


def load(device) -> Pix2PixModel:
    return Pix2PixModel.from_weights(
        network(), WEIGHTS, device, train_hint="bonesr-bench train baselines/pix2pix.py")
