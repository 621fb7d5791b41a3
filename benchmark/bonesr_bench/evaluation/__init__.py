"""Evaluate a submission on a split: split -> model (isolated worker) -> SR -> scores -> result.

:func:`evaluate` is what ``bonesr-bench evaluate`` calls. It never writes to the split; it writes
only inside ``<out>/<entry>/``: ``sr.zarr`` (the SR volumes, OME-Zarr like the split, with each
specimen's run statistics and scores), ``worker.log`` (the model's own output) and the result
JSON, written atomically. A specimen is marked complete in ``sr.zarr`` only after its volume and
scores are written, so an interrupted run resumes where it stopped. A failed run writes a result
marked ``failed`` with the reason, to ``result.json`` unless a scored result is already there, in
which case to ``result.failed.json``: an earlier score is never replaced by a failure.

Reference rows (the segmented morphometry of the HR scan, of the LR scan on its own grid, and of
the true geometry) are computed once per split fingerprint and scoring conventions, and cached in
the per-user cache directory.
"""

from __future__ import annotations

from bonesr_bench.evaluation.common import (
    EvaluationError,
    Progress,
)
from bonesr_bench.evaluation.references import (
    REFERENCE_SCANS,
    reference_result,
    reference_results,
    reference_rows,
)
from bonesr_bench.evaluation.run import (
    EvaluateOptions,
    Outcome,
    evaluate,
)

__all__ = [
    "EvaluationError",
    "Progress",
    "REFERENCE_SCANS",
    "reference_rows",
    "reference_result",
    "reference_results",
    "EvaluateOptions",
    "Outcome",
    "evaluate",
]
