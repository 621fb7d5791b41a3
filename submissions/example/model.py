"""A small trainable x2 SR model: the worked example to copy when you start a submission.

The public interface (``benchmark/docs/DESIGN.md`` §2, ``submissions/README.md``): a
``load(device)`` function returning an object with ``name``, ``scale``, ``input`` and
``__call__(lr) -> sr``. The harness hands ``__call__`` batches of LR slices, shape (B, 1, h, w),
float32 in [0, 1] on ``device`` (already interpolated along z to the HR slice positions), and
expects (B, 1, 2h, 2w) float32 back. It owns batching, ``torch.inference_mode``, autocast and
output checks.

The network: a residual on top of bicubic up-sampling, four 3 x 3 / 5 x 5 convolutions (32
features, PReLU) ending in a sub-pixel convolution (Shi et al. 2016), about 21 k parameters.
``RECIPE`` says how it is trained; ``bonesr-bench train submissions/example/model.py`` runs it
on the v2 train split (validation on held-out train specimens; progress, checkpoints, resume) and
writes ``weights.safetensors`` (loading never unpickles anything) with a sidecar
``weights.safetensors.json`` recording its sha256 and how it was made.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bonesr_bench.models import TorchModel
from bonesr_bench.training import Recipe

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights.safetensors"
CONFIG = {"features": 32, "scale": 2}  # network(config) builds it; TINY_CONFIG for --tiny
TINY_CONFIG = {"features": 4, "scale": 2}
RECIPE = Recipe(loss="l1", optimiser="adam", learning_rate=1e-3, schedule="cosine",
                iterations=3000, batch_size=16, patch=48, seed=0, validate_every=250,
                checkpoint_every=500)


class ExampleNet(nn.Module):
    def __init__(self, features: int = 32, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(1, features, 5, padding=2), nn.PReLU(features),
            nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features),
            nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features),
            nn.Conv2d(features, scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.body(lr)


class ExampleSR(TorchModel):
    """The submission object the harness calls: ``__call__`` (the network, clamped to [0, 1])
    and ``parameters()`` come from :class:`bonesr_bench.models.TorchModel`; a model that is not
    one torch network writes its own class with ``name``, ``scale``, ``input`` and
    ``__call__``."""

    name = "example-cnn"
    authors = "bonesr-bench"
    paper = "worked example (residual CNN + sub-pixel convolution, Shi et al. 2016)"
    licence = "BSD-3-Clause"
    training_data = "bonesr-bench synth-v2 train split"
    weights = WEIGHTS


def network(config: dict | None = None) -> ExampleNet:
    return ExampleNet(**(config or CONFIG))


def load(device) -> ExampleSR:
    return ExampleSR.from_weights(
        network(), WEIGHTS, device, train_hint="bonesr-bench train submissions/example/model.py")
