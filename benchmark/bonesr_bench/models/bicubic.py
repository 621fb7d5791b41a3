"""Bicubic x2 up-sampling: the first baseline and the harness's reference, inside the package so
that an installed wheel has it (`bonesr-bench evaluate bicubic`, entry point ``bicubic``).

A submission in the public interface (``benchmark/docs/DESIGN.md`` §2): :func:`load` returns
the model. Slices are up-sampled in-plane with torch's bicubic kernel (a = -0.75, the kernel of
Keys 1981 used by most SR code); no weights, no training. ``baselines/bicubic.py`` is the same
model as a submission file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["Bicubic", "load"]


class Bicubic:
    name = "bicubic"
    scale = 2
    input = "slice"
    authors = "bonesr-bench"
    paper = "Keys R (1981) Cubic convolution interpolation for digital image processing"
    licence = "BSD-3-Clause"
    training_data = "none"

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        sr = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return sr.clamp(0.0, 1.0)


def load(device) -> Bicubic:
    return Bicubic()
