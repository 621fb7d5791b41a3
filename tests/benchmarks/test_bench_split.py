"""Build speed of the v1 split (benchmarks, not tests: minutes of CPU).

    python -m pytest tests/benchmarks/test_bench_split.py -o addopts="" --benchmark-only

Goals on 2 CPU cores: the test split (11 specimens) in at most 3 minutes, the whole split (40)
in at most 12 minutes. Each round builds into a fresh directory.
"""

from __future__ import annotations

import pytest

from bonesr_bench.split import SPLITS, build


@pytest.mark.benchmark(group="split build (2 cores)")
@pytest.mark.parametrize("part", ["test", "all"])
def test_build(benchmark, tmp_path, part):
    counter = iter(range(100))

    def run():
        return build(tmp_path / f"v1-{next(counter)}.zarr", SPLITS["v1"], part=part, device="cpu")

    benchmark.extra_info["fingerprint"] = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["specimens"] = len(SPLITS["v1"].specimens(part))
