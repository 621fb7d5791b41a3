"""Scoring: SR volume -> segmentation -> morphometry -> errors and aggregates
(`benchmark/docs/DESIGN.md` §3).

Arrays in, plain dicts and dataclasses out. One protocol for every volume (HR, the LR scan on its
own grid, each SR output): TV denoising then two-class Otsu with the split's fixed parameters,
morphometry inside the split's region masks, in physical units.

Errors, per specimen and parameter ``k``:

    relative error vs HR     e_k = (entry_k - HR_k) / |HR_k|          (signed; x 100 for %)
    relative error vs truth  same with the true geometry's value

The **biological error** of a specimen is the mean of |e_k| over :data:`BIO_KEYS` (the study's
five trabecular parameters plus cortical thickness and porosity). A parameter whose reference is
undefined or zero for a specimen is left out of that specimen's mean for every entry alike; an
entry whose own value is undefined where the reference is defined (e.g. Conn.D of a volume with
no bone) counts as a 100 % error, so failing to produce structure is never rewarded. Aggregates
are means over specimens with percentile bootstrap confidence intervals (resampling specimens).
"""

from __future__ import annotations

from bonesr_bench.scoring.aggregate import (
    BOOTSTRAP,
    ERROR_CONVENTIONS,
    aggregate,
    bootstrap_ci,
    paired_difference,
    summarise,
    verdict,
)
from bonesr_bench.scoring.score import (
    BIO_KEYS,
    PARAM_KEYS,
    SpecimenScore,
    biological_error,
    measure,
    relative_errors,
    score_specimen,
)

__all__ = [
    "PARAM_KEYS",
    "BIO_KEYS",
    "measure",
    "relative_errors",
    "biological_error",
    "SpecimenScore",
    "score_specimen",
    "BOOTSTRAP",
    "ERROR_CONVENTIONS",
    "bootstrap_ci",
    "summarise",
    "aggregate",
    "verdict",
    "paired_difference",
]
