"""The one model wrapper for torch networks: what every trainable baseline (and the worked example)
hands the harness, so that each declares only its network, name and metadata; and loading their
weights (safetensors, never unpickled)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["TorchModel", "load_weights"]


def load_weights(net: nn.Module, path: str | Path, *, train_hint: str = "") -> nn.Module:
    """Load safetensors weights into ``net`` (cast to its dtype; never unpickles anything)."""
    from safetensors.torch import load_file

    from bonesr_bench.models import SubmissionError

    path = Path(path)
    if not path.is_file():
        hint = f"; train them with `{train_hint}`" if train_hint else ""
        raise SubmissionError(f"{path}: weights file missing{hint}")
    state = load_file(str(path))
    own = net.state_dict()
    state = {k: t.to(own[k].dtype) if k in own and t.is_floating_point() else t
             for k, t in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SubmissionError(f"{path}: weights do not fit the network ({first}); retrain them "
                              f"or restore the file{'' if not train_hint else ': ' + train_hint}"
                              ) from exc
    return net


class TorchModel:
    """A submission model around a torch network: ``__call__`` runs it on a batch of LR slices
    and clamps to [0, 1]; ``parameters()`` lets the harness count them. Subclasses set ``name``
    and the optional metadata (``authors``, ``paper``, ``licence``, ``training_data``,
    ``weights``) as class attributes."""

    name: str
    scale = 2
    input = "slice"

    def __init__(self, net: nn.Module):
        self.net = net

    def parameters(self):
        return self.net.parameters()

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr).clamp(0.0, 1.0)

    @classmethod
    def from_weights(cls, net: nn.Module, weights: str | Path, device, *,
                     train_hint: str = "") -> TorchModel:
        """``net`` with its trained ``weights`` loaded (safetensors; ``train_hint``: the
        command that makes them, said when they are missing), on ``device``, in eval mode."""
        return cls(load_weights(net, weights, train_hint=train_hint).to(device).eval())
