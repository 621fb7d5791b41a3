"""FSRCNN (Dong, Loy & Tang 2016), x2, one channel: a baseline of the reference study.

Dong C, Loy CC, Tang X (2016) Accelerating the super-resolution convolutional neural network.
ECCV 2016, LNCS 9906:391-407. The network as published, FSRCNN(d=56, s=12, m=4):

    feature extraction  conv 5 x 5, 1 -> d, PReLU
    shrinking           conv 1 x 1, d -> s, PReLU
    mapping             m x (conv 3 x 3, s -> s, PReLU)
    expanding           conv 1 x 1, s -> d, PReLU
    deconvolution       transposed conv 9 x 9, d -> 1, stride 2 (the x2 up-sampling)

It works on the LR slice directly (no pre-up-sampling). 12.8 k parameters with biases and one
PReLU slope per channel (the paper counts 12.5 k weights). Initialisation as the paper: He normal
for the convolutions, N(0, 0.001) for the deconvolution, zero biases, PReLU slopes 0.25. Trained
with MSE, Adam (the deconvolution at a tenth of the learning rate, as the paper's SGD rates), by
``bonesr-bench train baselines/fsrcnn.py``; weights in ``weights/fsrcnn.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bonesr_bench.models import TorchModel
from bonesr_bench.training import Recipe, SupervisedTask

WEIGHTS = Path(__file__).resolve().parent / "weights" / "fsrcnn.safetensors"
CONFIG = {"d": 56, "s": 12, "m": 4, "scale": 2}
TINY_CONFIG = {"d": 8, "s": 4, "m": 1, "scale": 2}
RECIPE = Recipe(
    loss="mse", optimiser="adam", learning_rate=1e-3, schedule="step", milestones=(0.6, 0.85),
    gamma=0.2, iterations=20000, batch_size=32, patch=32, seed=0, validate_every=1000,
    checkpoint_every=1000, keep="best", weights_dtype="float32",
    notes="deconvolution layer at 0.1 x the learning rate",
)


class FSRCNN(nn.Module):
    def __init__(self, d: int = 56, s: int = 12, m: int = 4, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.extract = nn.Sequential(nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d, 0.25))
        layers = [nn.Conv2d(d, s, 1), nn.PReLU(s, 0.25)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s, 0.25)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d, 0.25)]
        self.mid = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4,
                                         output_padding=scale - 1)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.deconv.weight, std=0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.mid(self.extract(lr)))


def network(config: dict | None = None) -> FSRCNN:
    return FSRCNN(**(config or CONFIG))


def task(net: FSRCNN, recipe: Recipe, device="cpu") -> SupervisedTask:
    deconv = list(net.deconv.parameters())
    ids = {id(p) for p in deconv}
    rest = [p for p in net.parameters() if id(p) not in ids]
    groups = [{"params": rest}, {"params": deconv, "lr": recipe.learning_rate * 0.1}]
    return SupervisedTask(net, recipe, device, param_groups=groups)


class FSRCNNModel(TorchModel):
    name = "fsrcnn"
    authors = "bonesr-bench (after Dong, Loy & Tang 2016)"
    paper = "Dong C, Loy CC, Tang X (2016) Accelerating the super-resolution CNN. ECCV"
    licence = "BSD-3-Clause"
    training_data = "bonesr-bench synth-v2 train split"
    weights = WEIGHTS


def load(device) -> FSRCNNModel:
    return FSRCNNModel.from_weights(
        network(), WEIGHTS, device, train_hint="bonesr-bench train baselines/fsrcnn.py")
