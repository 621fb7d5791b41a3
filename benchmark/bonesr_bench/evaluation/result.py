"""The result file of a scored (or failed) entry: schema, provenance, atomic writes
(``benchmark/docs/DESIGN.md`` §4).

A result is one JSON object, versioned by ``schema_version`` and validated against
``data/result.schema.json`` (JSON Schema 2020-12) before it is written. Provenance follows
lm-evaluation-harness: the package version, the git commit when the code runs from a checkout,
and the sha256 of the package's own source files (``code_sha256``), so two results computed by
different code can be told apart even without git; the split's id and fingerprint; the model's
manifest with the sha256 of its weights; library versions and the device.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from functools import cache
from pathlib import Path

import numpy as np

from bonesr_bench import __version__
from bonesr_bench.files import jsonable

__all__ = ["SCHEMA_VERSION", "schema", "validate", "ResultSchemaError", "read",
           "code_sha256", "git_commit", "environment", "jsonable"]

SCHEMA_VERSION = "1"
PACKAGE = Path(__file__).parents[1]  # the bonesr_bench package


class ResultSchemaError(ValueError):
    """A result file does not follow the schema; the message names the first problem."""


@cache
def schema() -> dict:
    return json.loads((PACKAGE / "data" / "result.schema.json").read_text())


def validate(result: dict) -> None:
    """Raise :class:`ResultSchemaError` (one line: where and what) unless ``result`` is valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(result), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ResultSchemaError(f"{where}: {e.message}"[:300])


def read(path: str | Path) -> dict:
    """Load and validate a result file."""
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ResultSchemaError(f"{path}: not JSON ({exc})") from None
    validate(obj)
    return obj


@cache
def code_sha256() -> str:
    """sha256 over the package's Python sources (path and content, sorted by path)."""
    h = hashlib.sha256()
    for f in sorted(PACKAGE.rglob("*.py")):
        h.update(str(f.relative_to(PACKAGE)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@cache
def git_commit() -> str | None:
    """The commit of the checkout the package runs from (``+dirty`` if modified), else None."""
    try:
        root = subprocess.run(["git", "-C", str(PACKAGE), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if root.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(PACKAGE), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return root.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> dict:
    """Library versions and the device, as recorded in a result."""
    import numba
    import scipy
    import skimage
    import torch
    import zarr

    dev = {"type": device}
    if device == "cuda" and torch.cuda.is_available():
        dev["name"] = torch.cuda.get_device_name(0)
    else:
        dev["name"] = platform.processor() or platform.machine()
        dev["cpu_count"] = os.cpu_count()
    return {"python": platform.python_version(), "platform": platform.platform(),
            "device": dev, "torch": torch.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-image": skimage.__version__,
            "numba": numba.__version__, "zarr": zarr.__version__,
            "bonesr_bench": __version__}
