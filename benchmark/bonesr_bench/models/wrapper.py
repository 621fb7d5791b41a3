"""The one model wrapper for torch networks: what every trainable baseline (and the worked example)
hands the harness, so that each declares only its network, name and metadata; and loading their
weights (safetensors, never unpickled), whole or in parts.

Weights larger than :data:`PART_BYTES` (RCAN's 31 MB, pix2pix's 84 MB) are kept as parts
``<name>.safetensors.part-K-of-N`` beside their sidecar ``<name>.safetensors.json``, whose
``parts`` list each part's size and sha256 and whose ``sha256`` is that of the whole file: a
file host, a transfer or a review tool then never meets a file over 16 MiB. Loading reassembles
them in memory and verifies every part and the whole; the sha256 a result records is the whole
file's either way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

__all__ = ["TorchModel", "load_weights", "weights_bytes", "weights_sha256", "split_weights",
           "part_files", "PART_BYTES"]

#: the largest weights file kept whole (and the size of each part): under 16 MiB
PART_BYTES = 15 * 2**20


def _sidecar(path: Path) -> dict:
    side = Path(str(path) + ".json")
    try:
        return json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, ValueError):
        return {}


def part_files(path: str | Path) -> list[Path]:
    """The parts of ``path`` present beside it (``<name>.part-K-of-N``), in order."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.name}.part-*-of-*"),
                  key=lambda f: int(f.name.rsplit(".part-", 1)[1].split("-of-")[0]))


def weights_bytes(path: str | Path, *, train_hint: str = "") -> bytes:
    """The bytes of the weights file ``path``: the file itself, or its parts reassembled, each
    part and the whole checked against the sha256 its sidecar records."""
    from bonesr_bench.models import SubmissionError

    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    record = _sidecar(path)
    parts = record.get("parts") or []
    if not parts:
        hint = f"; train them with `{train_hint}`" if train_hint else ""
        raise SubmissionError(f"{path}: weights file missing{hint}")
    chunks = []
    for i, part in enumerate(parts, 1):
        f = path.parent / part["file"]
        if not f.is_file():
            raise SubmissionError(f"{f}: part {i} of {len(parts)} of {path.name} missing; "
                                  "restore it (git checkout) or retrain")
        blob = f.read_bytes()
        if hashlib.sha256(blob).hexdigest() != part["sha256"]:
            raise SubmissionError(f"{f}: part {i} of {len(parts)} of {path.name} is damaged "
                                  "(its sha256 is not the sidecar's); restore it (git checkout)")
        chunks.append(blob)
    whole = b"".join(chunks)
    if hashlib.sha256(whole).hexdigest() != record.get("sha256"):
        raise SubmissionError(f"{path}: its parts do not reassemble the recorded weights "
                              "(sha256 differs); restore the parts and the sidecar together")
    return whole


def weights_sha256(path: str | Path) -> str | None:
    """sha256 of the whole weights file ``path`` (reassembled from its parts if need be);
    None when there are neither."""
    path = Path(path)
    if not path.is_file() and not _sidecar(path).get("parts"):
        return None
    return hashlib.sha256(weights_bytes(path)).hexdigest()


def split_weights(path: str | Path, part_bytes: int = PART_BYTES) -> list[dict]:
    """Cut the weights file ``path`` into parts of at most ``part_bytes`` (written atomically
    beside it) and return their records (file, bytes, sha256) for the sidecar's ``parts``;
    the whole file is left for the caller to remove once the sidecar is written. Stale parts of
    an earlier, other split are removed."""
    from bonesr_bench.files import write_atomic

    path = Path(path)
    blob = path.read_bytes()
    n = max(1, -(-len(blob) // part_bytes))
    for old in part_files(path):
        old.unlink()
    out = []
    for k in range(n):
        chunk = blob[k * part_bytes:(k + 1) * part_bytes]
        f = path.parent / f"{path.name}.part-{k + 1}-of-{n}"
        write_atomic(f, chunk)
        out.append({"file": f.name, "bytes": len(chunk),
                    "sha256": hashlib.sha256(chunk).hexdigest()})
    return out


def load_weights(net: nn.Module, path: str | Path, *, train_hint: str = "") -> nn.Module:
    """Load safetensors weights into ``net`` (cast to its dtype; never unpickles anything),
    from the file or its verified parts."""
    from safetensors.torch import load

    from bonesr_bench.models import SubmissionError

    path = Path(path)
    state = load(weights_bytes(path, train_hint=train_hint))
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
