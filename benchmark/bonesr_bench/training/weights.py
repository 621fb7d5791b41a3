"""Weights as safetensors (never pickles), written atomically, and their sidecar record;
:func:`load_weights` (the model stage's: ``bonesr_bench.models.wrapper``) is re-exported here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from bonesr_bench.files import write_atomic
from bonesr_bench.models.wrapper import load_weights

__all__ = ["save_weights", "load_weights", "weights_record"]


def save_weights(net: nn.Module, path: str | Path, dtype: str = "float32",
                 metadata: dict | None = None) -> str:
    """Write ``net``'s state as safetensors (atomically) in ``dtype``; returns its sha256."""
    from safetensors.torch import save

    path = Path(path)
    cast = torch.float16 if dtype == "float16" else torch.float32
    state = {k: (t.detach().to("cpu", cast) if t.is_floating_point() else t.detach().cpu())
             .contiguous() for k, t in net.state_dict().items()}
    write_atomic(path, save(state, metadata={k: str(v) for k, v in (metadata or {}).items()}))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_record(path: str | Path) -> dict | None:
    """The sidecar ``<weights>.json`` written at the end of training (None if absent)."""
    side = Path(str(path) + ".json")
    return json.loads(side.read_text()) if side.is_file() else None
