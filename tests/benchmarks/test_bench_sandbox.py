"""What confinement costs: the worker's start-up and one small volume, unconfined against
confined (Landlock + PID and network namespaces), side by side in one run.

    python -m pytest tests/benchmarks/test_bench_sandbox.py -o addopts="" --benchmark-only
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bonesr_bench.models.worker import run_isolated

BICUBIC = str(Path(__file__).parents[2] / "baselines" / "bicubic.py")


@pytest.mark.benchmark(group="worker start-up + one 8 x 64 x 64 volume")
@pytest.mark.parametrize("sandbox", ["off", "auto"])
def test_worker(benchmark, sandbox):
    lr = np.random.default_rng(0).random((8, 64, 64), dtype=np.float32)
    sr, stats, manifest = benchmark.pedantic(
        lambda: run_isolated(BICUBIC, lr, sandbox=sandbox), rounds=5, iterations=1)
    assert sr.shape == (16, 128, 128) and manifest["name"] == "bicubic"
