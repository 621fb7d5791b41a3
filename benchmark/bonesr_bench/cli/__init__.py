"""The ``bonesr-bench`` command line. Thin: parse, call the library, print.

One module per command group (``measure``: morphometry of a volume; ``data``: splits;
``evaluate``, ``train``, ``models``; ``leaderboard``); what they share (the app, option types,
the error handler, progress) is in :mod:`bonesr_bench.cli.common`.
"""

from __future__ import annotations

from bonesr_bench.cli import data, evaluate, leaderboard, measure, models, train  # noqa: F401
from bonesr_bench.cli.common import app

__all__ = ["app", "run"]


def run() -> None:  # pragma: no cover - console entry for `python -m bonesr_bench`
    app()
