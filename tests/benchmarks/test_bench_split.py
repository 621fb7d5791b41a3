"""Build speed of the v2 split (benchmarks, not tests: minutes of CPU).

    python -m pytest tests/benchmarks/test_bench_split.py -o addopts="" --benchmark-only

Goals on 2 CPU cores: the test split (11 specimens) in at most 3 minutes, the whole split (40)
in at most 12 minutes. Side by side: one specimen at a time in this process (numba on every
core) against one single-threaded worker process per core (``workers=None``, what `data build`
does). Each round builds into a fresh directory and must give the canonical fingerprint.
"""

from __future__ import annotations

import pytest

from bonesr_bench.split import SPLITS, build, canonical_fingerprints


@pytest.mark.benchmark(group="split build (2 cores)")
@pytest.mark.parametrize("workers", [1, None], ids=["in-process", "worker-per-core"])
@pytest.mark.parametrize("part", ["test", "all"])
def test_build(benchmark, tmp_path, part, workers):
    counter = iter(range(100))

    def run():
        return build(tmp_path / f"v2-{next(counter)}.zarr", SPLITS["v2"], part=part,
                     workers=workers)

    fp = benchmark.pedantic(run, rounds=1, iterations=1)
    assert fp in canonical_fingerprints("synth-v2")
    benchmark.extra_info["fingerprint"] = fp
    benchmark.extra_info["specimens"] = len(SPLITS["v2"].specimens(part))
