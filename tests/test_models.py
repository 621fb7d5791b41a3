"""Loading submissions: file, module:attribute and entry point; a one-line error for each way a
submission can break the interface."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.models import SubmissionError, installed_models, load_model, manifest

BICUBIC = str(Path(__file__).parents[1] / "baselines" / "bicubic.py")


def test_bicubic_file_loads_and_upsamples():
    model = load_model(BICUBIC, "cpu", expected_scale=2)
    assert (model.name, model.scale, model.input) == ("bicubic", 2, "slice")
    lr = torch.rand(3, 1, 16, 20)
    sr = model(lr)
    assert sr.shape == (3, 1, 32, 40) and sr.dtype == torch.float32
    assert 0.0 <= float(sr.min()) and float(sr.max()) <= 1.0
    m = manifest(model, BICUBIC)
    assert m.n_parameters is None and m.metadata["licence"] == "BSD-3-Clause"


def test_entry_point_and_module_attribute():
    assert ("bicubic", "bonesr_bench.models.bicubic:load") in installed_models()
    assert load_model("bicubic").name == "bicubic"
    assert load_model("bonesr_bench.models.bicubic:load").scale == 2
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0 and "bicubic" in res.stdout


GOOD = """
class M:
    name, scale, input = "m", 2, "slice"
    def __call__(self, lr):
        return lr
def load(device):
    return M()
"""


@pytest.mark.parametrize("case, source, message", [
    ("import", "import not_a_module_anywhere\n", "importing it failed: ModuleNotFoundError"),
    ("noload", "x = 1\n", "defines no load(device)"),
    ("raises", "def load(device):\n    raise RuntimeError('no weights')\n",
     "load(device) failed: RuntimeError: no weights"),
    ("noname", GOOD.replace('name, scale, input = "m", 2, "slice"', 'scale, input = 2, "slice"'),
     "no 'name' attribute"),
    ("scale", GOOD.replace('"m", 2,', '"m", 4,'), "split's scale is 2"),
    ("input", GOOD.replace('"slice"', '"video"'), "must be 'slice' or 'volume'"),
    ("notcallable", GOOD.replace("def __call__", "def forward"), "not callable"),
])
def test_broken_submissions_fail_in_one_line(tmp_path, case, source, message):
    path = tmp_path / f"{case}.py"
    path.write_text(textwrap.dedent(source))
    with pytest.raises(SubmissionError, match=re.escape(message)) as info:
        load_model(str(path), expected_scale=2)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_sources():
    with pytest.raises(SubmissionError, match="no such file"):
        load_model("missing/model.py")
    with pytest.raises(SubmissionError, match="bonesr-bench models"):
        load_model("not-installed")
    with pytest.raises(SubmissionError, match="cannot import"):
        load_model("no_such_pkg.mod:load")
