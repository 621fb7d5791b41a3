"""RCAN (Zhang et al. 2018), x2, one channel, at the size the reference study ran it.

Zhang Y, Li K, Li K, Wang L, Zhong B, Fu Y (2018) Image super-resolution using very deep residual
channel attention networks. ECCV 2018, LNCS 11211:294-310.

    head        conv 3 x 3, 1 -> 64
    body        10 residual groups, each 20 residual channel-attention blocks (RCAB: conv 3 x 3,
                ReLU, conv 3 x 3, channel attention: global average pool, 1 x 1 conv 64 -> 4,
                ReLU, 1 x 1 conv 4 -> 64, sigmoid; short skip) and a 3 x 3 conv, with a skip
                around each group; a 3 x 3 conv and the long skip around the body
    tail        conv 3 x 3, 64 -> 256, pixel shuffle x2, conv 3 x 3, 64 -> 1

15.3 M parameters (the RGB x2 network has 15.4 M; one channel removes a few thousand weights of
head and tail). Deviations: one channel; the RGB mean shift is replaced by subtracting and adding
a fixed 0.5 on our [0, 1] intensities. Trained with L1, Adam (beta 0.9/0.999), LR patches of
48 x 48, batch 16, learning rate 1e-4 halved at fixed points, as the paper (which trains for
1000 epochs; ``RECIPE`` fits about 20 minutes on one H100 instead). Weights are stored in half
precision (``weights/rcan.safetensors``, 31 MB) and run in float32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bonesr_bench.models import TorchModel
from bonesr_bench.training import Recipe

WEIGHTS = Path(__file__).resolve().parent / "weights" / "rcan.safetensors"
CONFIG = {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16, "scale": 2}
TINY_CONFIG = {"n_resgroups": 2, "n_resblocks": 2, "n_feats": 16, "reduction": 4, "scale": 2}
RECIPE = Recipe(
    loss="l1", optimiser="adam", learning_rate=1e-4, betas=(0.9, 0.999), schedule="step",
    milestones=(0.5, 0.75), gamma=0.5, iterations=12000, batch_size=16, patch=48, seed=0,
    validate_every=1000, checkpoint_every=1000, keep="best", weights_dtype="float16",
)


def conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ChannelAttention(nn.Module):
    def __init__(self, n_feats: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(n_feats, n_feats // reduction, 1),
            nn.ReLU(inplace=True), nn.Conv2d(n_feats // reduction, n_feats, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.body(x)


class RCAB(nn.Module):
    def __init__(self, n_feats: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(conv3(n_feats, n_feats), nn.ReLU(inplace=True),
                                  conv3(n_feats, n_feats), ChannelAttention(n_feats, reduction))

    def forward(self, x):
        return x + self.body(x)


class ResidualGroup(nn.Module):
    def __init__(self, n_feats: int, reduction: int, n_resblocks: int):
        super().__init__()
        self.body = nn.Sequential(*[RCAB(n_feats, reduction) for _ in range(n_resblocks)],
                                  conv3(n_feats, n_feats))

    def forward(self, x):
        return x + self.body(x)


class RCAN(nn.Module):
    def __init__(self, n_resgroups=10, n_resblocks=20, n_feats=64, reduction=16, scale=2):
        super().__init__()
        self.head = conv3(1, n_feats)
        self.body = nn.Sequential(*[ResidualGroup(n_feats, reduction, n_resblocks)
                                    for _ in range(n_resgroups)], conv3(n_feats, n_feats))
        self.tail = nn.Sequential(conv3(n_feats, n_feats * scale * scale),
                                  nn.PixelShuffle(scale), conv3(n_feats, 1))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(lr - 0.5)
        return self.tail(x + self.body(x)) + 0.5


def network(config: dict | None = None) -> RCAN:
    return RCAN(**(config or CONFIG))


class RCANModel(TorchModel):
    name = "rcan"
    authors = "bonesr-bench (after Zhang et al. 2018)"
    paper = ("Zhang Y et al. (2018) Image super-resolution using very deep residual channel "
             "attention networks. ECCV")
    licence = "BSD-3-Clause"
    training_data = "bonesr-bench synth-v2 train split"
    weights = WEIGHTS


def load(device) -> RCANModel:
    return RCANModel.from_weights(network(), WEIGHTS, device, train_hint="bonesr-bench train "
                                  "baselines/rcan.py (GPU, about 20 minutes)")
