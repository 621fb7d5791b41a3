"""End-to-end speed of `evaluate` (benchmarks, not tests: minutes of CPU).

    python -m pytest tests/benchmarks/test_bench_evaluate.py -o addopts="" --benchmark-only

On the v2 test split (the default; 11 specimens; ``BONESR_SPLIT`` or the per-user cache, built
first if missing). In one run, side by side: the bicubic model's forward pass alone over the
split (the peer: what any harness must spend), the first evaluation (reference rows of HR, LR and
truth computed and cached), and a repeat evaluation with the references cached (what every later
entry costs). Goal on 2 CPU cores (issue 17): the cached evaluation in at most 40 s. The
harness's overhead is the cached evaluation minus the forward pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bonesr_bench.evaluation import EvaluateOptions, evaluate
from bonesr_bench.models import load_model
from bonesr_bench.models.inference import run_model
from bonesr_bench.scoring.segmentation import normalise
from bonesr_bench.split import PROTOCOLS, iter_specimens

BICUBIC = str(Path(__file__).parents[2] / "baselines" / "bicubic.py")
GROUP = "evaluate bicubic on the v2 test split (2 cores)"


@pytest.mark.benchmark(group=GROUP)
def test_forward_only(benchmark, v2_test_split):
    model = load_model(BICUBIC, expected_scale=2)
    window = PROTOCOLS["v2"].segmentation["hr"].window
    lrs = [normalise(s.lr, window) for s in iter_specimens(v2_test_split, "test")]
    benchmark.pedantic(lambda: [run_model(model, lr) for lr in lrs], rounds=1, iterations=1)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("references", ["computed", "cached"])
def test_evaluate(benchmark, v2_test_split, tmp_path, tmp_path_factory, references, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "bench-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    if references == "computed":
        shutil.rmtree(cache, ignore_errors=True)
    else:
        evaluate(BICUBIC, EvaluateOptions(split=v2_test_split, out=tmp_path / "warm", device="cpu"))
    out = tmp_path / "runs"
    outcome = benchmark.pedantic(
        lambda: evaluate(BICUBIC, EvaluateOptions(split=v2_test_split, out=out, device="cpu")),
        rounds=1, iterations=1)
    t = outcome.result["timings"]
    benchmark.extra_info.update({k: float(np.round(v, 2)) for k, v in t.items()
                                 if isinstance(v, float)})
    assert outcome.exit_code == 0
