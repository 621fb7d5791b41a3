"""The package's layout: folders by stage in the order data flow, nothing importing back up the
flow, short functions, one parameter registry, one name rule."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

PKG = Path(__file__).parents[1] / "benchmark" / "bonesr_bench"
#: the stages in the order data flows; a module may import its own stage and those above it
FLOW = ("split", "models", "training", "scoring", "evaluation", "leaderboard", "cli")
#: what any stage may use: the foundation (no imports of the package beyond itself) and the two
#: engines, pure functions of arrays (the split from scans segments its HR scans and measures
#: nothing; the synthetic split measures its true geometry)
FREE = {"errors", "files", "names", "params", "__version__", "morphometry",
        "scoring.segmentation"}


def _modules():
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__")
        yield mod, f, ast.parse(f.read_text())


def _imports(tree) -> set[str]:
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("bonesr_bench"):
            base = n.module.removeprefix("bonesr_bench").lstrip(".")
            out |= {f"{base}.{a.name}".lstrip(".") for a in n.names} if not base else {base}
        elif isinstance(n, ast.Import):
            out |= {a.name.removeprefix("bonesr_bench.") for a in n.names
                    if a.name.startswith("bonesr_bench.")}
    return out


def _stage(mod: str) -> str:
    return mod.split(".")[0]


def test_the_top_level_is_the_data_flow_and_the_foundation():
    tops = {p.name for p in PKG.iterdir() if not p.name.startswith("_") and p.name != "data"}
    folders = {p for p in tops if (PKG / p).is_dir()}
    assert folders == {*FLOW, "morphometry"}
    assert {p.removesuffix(".py") for p in tops - folders} == {"errors", "files", "names",
                                                                "params"}


def test_nothing_imports_back_up_the_flow():
    bad = []
    for mod, _, tree in _modules():
        here = _stage(mod)
        if here == "__main__":  # `python -m bonesr_bench`: the command line
            continue
        for dep in _imports(tree):
            if any(dep == f or dep.startswith(f + ".") for f in FREE) or _stage(dep) == here:
                continue
            if here in FREE or _stage(dep) not in FLOW or here not in FLOW or \
                    FLOW.index(_stage(dep)) > FLOW.index(here):
                bad.append(f"{mod} -> {dep}")
    assert not bad, bad


def test_the_foundation_and_the_morphometry_engine_import_nothing_of_the_stages():
    for mod, _, tree in _modules():
        if _stage(mod) in ("errors", "files", "names", "params", "morphometry"):
            deps = {_stage(d) for d in _imports(tree)} - {_stage(mod), "__version__"}
            assert not deps, (mod, deps)


def test_no_function_is_longer_than_about_100_lines():
    lengths = sorted(((n.end_lineno - n.lineno + 1, f"{mod}.{n.name}")
                      for mod, _, tree in _modules() for n in ast.walk(tree)
                      if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), reverse=True)
    assert lengths[0][0] <= 110, lengths[:3]


def test_one_parameter_registry_covers_every_measured_parameter():
    from bonesr_bench.morphometry import CORTICAL_KEYS, TRABECULAR_KEYS
    from bonesr_bench.params import (
        BIO_KEYS,
        INFO_KEYS,
        PARAMS,
        SCORES,
        SHOWN_KEYS,
        SUMMARY_KEYS,
        TABLE_ONE_KEYS,
    )
    from bonesr_bench.scoring import PARAM_KEYS

    assert tuple(PARAMS) == TRABECULAR_KEYS + CORTICAL_KEYS == PARAM_KEYS
    for keys in (BIO_KEYS, INFO_KEYS, SHOWN_KEYS, SUMMARY_KEYS, TABLE_ONE_KEYS):
        assert set(keys) <= set(PARAMS)
    assert all(p.unit in ("µm", "%", "1/mm", "1/mm³", "µm³", "") for p in PARAMS.values())
    assert SCORES["psnr_db"].lower_is_better is False and SCORES["bio_err_vs_hr"].lower_is_better
    # no second list of labels or units anywhere in the package
    for mod, f, _ in _modules():
        if mod != "params":
            assert '("Tb.Th", "µm")' not in f.read_text() and "PARAM_LABELS" not in f.read_text()


def test_one_name_rule_for_entries_specimens_and_the_result_schema():
    from bonesr_bench.names import NAME_PATTERN, check_name

    schema = json.loads((PKG / "data" / "result.schema.json").read_text())
    assert schema["properties"]["entry"]["pattern"] == f"^{NAME_PATTERN}$"
    assert check_name("fsrcnn-v2.1_b", "--name") == "fsrcnn-v2.1_b"
    for bad in ("modèle", "../x", "-x", "", "a b"):
        with pytest.raises(ValueError, match="ASCII letters"):
            check_name(bad, "--name")
    assert not re.fullmatch(NAME_PATTERN, "modèle")


def test_every_error_carries_its_exit_code():
    from bonesr_bench.errors import BenchError
    from bonesr_bench.evaluation import EvaluationError
    from bonesr_bench.leaderboard import LeaderboardError
    from bonesr_bench.models import SubmissionError
    from bonesr_bench.split import SplitError
    from bonesr_bench.split.from_scans import ScansError
    from bonesr_bench.split.readers import VolumeReadError
    from bonesr_bench.training import TrainingError

    for e in (EvaluationError, LeaderboardError, SplitError, ScansError, VolumeReadError,
              TrainingError):
        assert issubclass(e, BenchError) and e.exit_code == 2
    assert issubclass(SubmissionError, BenchError) and SubmissionError.exit_code == 1
