"""The committed leaderboard results: one JSON per scored entry plus the HR and LR reference rows.

``leaderboard/results/<entry>.json`` files are copies of ``bonesr-bench evaluate`` results
(validated against the result schema, scored on the canonical split) and the two reference rows
written by :func:`write_references`. The page is rendered from these files alone.
"""

from __future__ import annotations

from bonesr_bench.leaderboard.board import (
    RESULTS,
    LeaderboardError,
    add,
    compare,
    load_results,
    rescore,
    write_references,
)
from bonesr_bench.leaderboard.table_one import (
    markdown,
    table_one,
)

__all__ = [
    "RESULTS",
    "LeaderboardError",
    "load_results",
    "add",
    "compare",
    "write_references",
    "rescore",
    "table_one",
    "markdown",
]
