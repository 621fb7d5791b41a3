"""Writing files so that a reader never sees a torn one, and JSON that numpy values survive.

Every file the harness writes for others to read (results, the reference-row cache, weights and
their sidecars, checkpoints, the worker's status files) goes through :func:`write_atomic`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["jsonable", "write_atomic", "write_json"]


def jsonable(obj):
    """``obj`` with numpy scalars made plain and non-finite floats made null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None] | bytes | str, *,
                 fsync: bool = True) -> Path:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``, so that a
    reader sees the old file or the new one, never a torn one; an error leaves the old file.
    ``write``: the bytes or text, or a function writing them to a binary file object. The file
    gets the usual permissions (not mkstemp's 0600, which would hide results from others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj, *, indent: int | None = 1, fsync: bool = True) -> Path:
    """:func:`write_atomic` of ``jsonable(obj)`` as JSON (NaN refused: written as null)."""
    text = json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return write_atomic(path, text, fsync=fsync)
