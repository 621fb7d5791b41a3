"""Errors, the biological error and bootstrap intervals (scoring.py) on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bonesr_bench.scoring import (
    BIO_KEYS,
    biological_error,
    bootstrap_ci,
    relative_errors,
    summarise,
    verdict,
)


def test_relative_errors_are_signed_and_undefined_where_the_reference_is():
    e = relative_errors({"tb_th_um": 66.0, "bv_tv_pct": 9.0, "ct_po_pct": 1.0, "po_n": None},
                        {"tb_th_um": 60.0, "bv_tv_pct": 10.0, "ct_po_pct": 0.0, "po_n": 5},
                        ("tb_th_um", "bv_tv_pct", "ct_po_pct", "po_n"))
    assert e["tb_th_um"] == pytest.approx(0.1) and e["bv_tv_pct"] == pytest.approx(-0.1)
    assert math.isnan(e["ct_po_pct"]) and math.isnan(e["po_n"])


def test_biological_error_skips_undefined_references_and_penalises_missing_values():
    ref = {k: 10.0 for k in BIO_KEYS}
    assert biological_error(ref, ref) == 0.0
    entry = {**ref, "bv_tv_pct": 12.0, "tb_th_um": 7.0}  # +20 %, -30 %
    assert biological_error(entry, ref) == pytest.approx(0.5 / len(BIO_KEYS))
    ref0 = {**ref, "ct_po_pct": 0.0}  # undefined reference: left out
    assert biological_error(entry, ref0) == pytest.approx(0.5 / (len(BIO_KEYS) - 1))
    no_conn = {**ref, "conn_d_per_mm3": float("nan")}  # entry undefined: 100 %
    assert biological_error(no_conn, ref) == pytest.approx(1.0 / len(BIO_KEYS))


def test_bootstrap_interval_agrees_with_scipy():
    x = np.random.default_rng(3).normal(5.0, 2.0, 11)
    lo, hi = bootstrap_ci(x)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile",
                          confidence_level=0.95, random_state=1).confidence_interval
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.1 * width and abs(hi - ref.high) < 0.1 * width
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert bootstrap_ci([1.0, None, float("nan"), 3.0])[0] >= 1.0


def test_summarise_is_the_table_i_form():
    x = [1.0, 2.0, 4.0, float("nan")]
    s = summarise(x)
    assert s["mean"] == pytest.approx(7 / 3) and s["n"] == 3
    assert s["sd"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert summarise([None])["mean"] is None


@pytest.mark.parametrize("ci, expected", [((-0.2, -0.01), "better"), ((0.01, 0.3), "worse"),
                                          ((-0.1, 0.1), "tied"), ((None, None), "tied")])
def test_verdict_follows_the_paired_interval(ci, expected):
    assert verdict({"bio_err_minus_lr_vs_hr": {"ci95": list(ci)}}) == expected
