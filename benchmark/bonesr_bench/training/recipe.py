"""What a trainable submission declares: its :class:`Recipe`, and the :class:`Task` protocol
(plain supervised training by default); the optimiser and schedule a recipe names."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from bonesr_bench.errors import BenchError

#: Progress callback: (stage, done, total, info). Stages: data, train.
Progress = Callable[[str, float, float, str], None]


def _noop(*_args) -> None:
    return None


class TrainingError(BenchError, RuntimeError):
    """A usage or data error: one line naming the problem and the fix."""


@dataclass(frozen=True)
class Recipe:
    """How a submission is trained. Patch sizes are LR pixels (the HR patch is ``scale`` times
    larger); learning-rate milestones are fractions of ``iterations``."""

    iterations: int
    loss: str = "l1"  # l1 | mse (SupervisedTask); a custom task may ignore it
    optimiser: str = "adam"  # adam | adamw
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "step"  # step (x gamma at each milestone) | cosine | constant
    milestones: tuple[float, ...] = (0.5,)
    gamma: float = 0.5
    batch_size: int = 16
    patch: int = 48  # LR pixels
    scale: int = 2
    seed: int = 0
    data: str = "pairs"  # pairs (LR, HR) | hr (HR only; the task degrades it)
    n_validation: int = 2  # held-out train specimens
    validate_every: int = 500
    checkpoint_every: int = 500
    keep: str = "best"  # best (validation L1) | last
    weights_dtype: str = "float32"  # float32 | float16
    notes: str = ""
    #: morphometry terms added to the loss, by weight (``morphometry.soft.TERMS``: bv_tv, euler,
    #: cldice, thickness), on the soft bone maps sigmoid((x - bone_threshold) / bone_tau) of SR
    #: and HR per patch (2D); bone_threshold None: the Otsu level of the train HR slices
    morphometry_weights: dict = field(default_factory=dict)
    bone_threshold: float | None = None
    bone_tau: float = 0.05
    #: consecutive slices per training patch: with more than 1 the slice model super-resolves
    #: the stack and the morphometry terms are computed in 3D on it (3D connectivity)
    stack: int = 1

    def __post_init__(self):
        checks = {"loss": ("l1", "mse"), "optimiser": ("adam", "adamw"),
                  "schedule": ("step", "cosine", "constant"), "data": ("pairs", "hr"),
                  "keep": ("best", "last"), "weights_dtype": ("float32", "float16")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise TrainingError(f"Recipe.{name}={getattr(self, name)!r}: use one of "
                                    f"{', '.join(allowed)}")
        from bonesr_bench.morphometry.soft import TERMS

        unknown = set(self.morphometry_weights) - set(TERMS)
        if unknown or any(w < 0 for w in self.morphometry_weights.values()):
            raise TrainingError(f"Recipe.morphometry_weights: terms are {', '.join(TERMS)} with "
                                f"weights >= 0, got {self.morphometry_weights}")
        if not self.bone_tau > 0:
            raise TrainingError("Recipe.bone_tau must be > 0")
        if self.stack < 1 or (self.stack > 1 and self.data != "pairs"):
            raise TrainingError("Recipe.stack: at least 1 slice, and stacks need data='pairs'")
        if self.iterations < 1 or self.batch_size < 1 or self.patch < 4:
            raise TrainingError("Recipe: iterations and batch_size must be >= 1, patch >= 4 "
                                "LR pixels")

    def tiny(self) -> Recipe:
        """A few iterations on small patches: a smoke run of the whole loop (``--tiny``)."""
        return replace(self, iterations=4, batch_size=2, patch=min(self.patch, 16),
                       validate_every=2, checkpoint_every=2)

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self, config: dict | None) -> str:
        """What a checkpoint must match to be resumed: the recipe and the network config (not
        the number of iterations: a finished run can be extended)."""
        recipe = {k: v for k, v in self.as_dict().items() if k != "iterations"}
        if not self.morphometry_weights:  # recipes without them keep the keys they had
            for k in ("morphometry_weights", "bone_threshold", "bone_tau"):
                recipe.pop(k)
        if self.stack == 1:
            recipe.pop("stack")
        blob = json.dumps({"recipe": recipe, "config": config}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Task(Protocol):
    """What the training loop drives. ``networks["generator"]`` (or the only network) is the one
    saved as the submission's weights; the others (a discriminator) live in checkpoints only."""

    networks: dict[str, nn.Module]
    optimisers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]

    def step(self, lr: torch.Tensor, hr: torch.Tensor, aux) -> dict[str, float]:
        """One optimisation step on a batch; returns the losses to log."""

    def predict(self, lr: torch.Tensor) -> torch.Tensor:
        """SR of an LR batch (B, 1, h, w) -> (B, 1, s*h, s*w), for validation."""


def make_optimiser(params, recipe: Recipe, learning_rate: float | None = None):
    lr = recipe.learning_rate if learning_rate is None else learning_rate
    cls = torch.optim.AdamW if recipe.optimiser == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(recipe.betas), weight_decay=recipe.weight_decay)


def make_scheduler(optimiser, recipe: Recipe):
    n = recipe.iterations
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, n)
    if recipe.schedule == "step":
        steps = sorted({max(1, int(round(m * n))) for m in recipe.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimiser, steps, gamma=recipe.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)


class SupervisedTask:
    """Plain supervised training: ``recipe.loss`` between ``net(lr)`` and HR, one optimiser."""

    def __init__(self, net: nn.Module, recipe: Recipe, device="cpu", param_groups=None):
        self.net = net
        self.loss = F.l1_loss if recipe.loss == "l1" else F.mse_loss
        self.morphometry_weights = dict(recipe.morphometry_weights)
        self.bone_threshold = recipe.bone_threshold  # None: set by the loop from the train HR
        self.bone_tau = recipe.bone_tau
        opt = make_optimiser(param_groups if param_groups is not None else net.parameters(),
                             recipe)
        self.networks = {"generator": net}
        self.optimisers = {"generator": opt}
        self.schedulers = {"generator": make_scheduler(opt, recipe)}

    def step(self, lr, hr, aux=None) -> dict[str, float]:
        b, stack = lr.shape[:2]  # (B, stack, h, w): a slice model sees B * stack slices
        sr = self.net(lr.reshape(b * stack, 1, *lr.shape[2:])).reshape(b, stack,
                                                                        *hr.shape[2:])
        loss = self.loss(sr, hr)
        parts = {}
        if self.morphometry_weights:
            from bonesr_bench.morphometry.soft import morphometry_loss

            extra, parts = morphometry_loss(sr, hr, self.morphometry_weights,
                                            self.bone_threshold if self.bone_threshold is not None
                                            else 0.5, self.bone_tau,
                                            ndim=3 if stack > 1 else 2)
            loss = loss + extra
        opt = self.optimisers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.schedulers["generator"].step()
        return {"loss": float(loss.detach()), **parts}

    def predict(self, lr):
        return self.net(lr)
