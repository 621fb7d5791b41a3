"""The one atomic writer: a reader sees the old file or the new one; an error keeps the old."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

from bonesr_bench.files import jsonable, write_atomic, write_json


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"a": 1})

    def broken(f):
        f.write(b'{"a": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_json_of_numpy_values_and_readable_permissions(tmp_path):
    path = write_json(tmp_path / "x" / "r.json", {"n": np.int64(3), "v": np.float32(0.5),
                                                  "bad": math.nan, "ok": np.bool_(True)})
    assert json.loads(path.read_text()) == {"n": 3, "v": 0.5, "bad": None, "ok": True}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert jsonable((1, np.float64(math.inf))) == [1, None]
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_weights_and_checkpoints_get_readable_permissions(tmp_path):
    """Written through the one atomic writer: not mkstemp's 0600, which would hide committed
    weights from the other users of a checkout."""
    import torch

    from bonesr_bench.training import save_weights

    path = tmp_path / "w.safetensors"
    save_weights(torch.nn.Linear(2, 3), path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
