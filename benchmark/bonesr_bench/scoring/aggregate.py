"""Aggregating specimens: means with percentile bootstrap intervals (resampling specimens),
the entry against the LR scan, and the verdict."""

from __future__ import annotations

import math

import numpy as np

from bonesr_bench.scoring.score import (
    BIO_KEYS,
    PARAM_KEYS,
    SpecimenScore,
    _finite,
    biological_error,
    relative_errors,
)

BOOTSTRAP = {"n_resamples": 2000, "level": 0.95, "seed": 0, "method": "percentile, specimens"}


ERROR_CONVENTIONS = {
    "relative_error": "(entry - reference) / |reference| per specimen; undefined if the "
                      "reference is undefined or zero",
    "biological_error": f"mean of |relative error| over {', '.join(BIO_KEYS)}; an undefined "
                        "entry value where the reference is defined counts as 1 (100 %)",
    "bootstrap": BOOTSTRAP,
}


def bootstrap_ci(x, *, n_resamples: int = BOOTSTRAP["n_resamples"],
                 level: float = BOOTSTRAP["level"], seed: int = BOOTSTRAP["seed"]):
    """Percentile bootstrap interval of the mean of ``x`` (NaNs dropped); (lo, hi)."""
    a = np.asarray([v for v in x if _finite(v)], dtype=float)
    if a.size == 0:
        return (math.nan, math.nan)
    if a.size == 1:
        return (float(a[0]), float(a[0]))
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, (n_resamples, a.size))].mean(1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return (float(lo), float(hi))


def summarise(x) -> dict:
    """Mean, SD (sample, as the study's Table I), bootstrap CI of the mean and n, NaNs dropped."""
    a = np.asarray([v for v in x if _finite(v)], dtype=float)
    if a.size == 0:
        return {"mean": None, "sd": None, "ci95": [None, None], "n": 0}
    lo, hi = bootstrap_ci(a)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "ci95": [lo, hi], "n": int(a.size)}


def _clean(v):
    return float(v) if _finite(v) else None


def aggregate(scores: list[SpecimenScore], references: dict[str, dict]
              ) -> tuple[list[dict], dict]:
    """(per-specimen rows, aggregates) of an entry against the cached reference rows.

    ``references[name]`` holds ``hr``, ``lr`` and (synthetic splits) ``truth`` morphometry.
    Aggregates: perceptual means; per parameter the mean/SD of the entry, HR, LR and truth, the
    signed and absolute relative errors against HR and truth (entry and LR); the biological
    error of the entry and of the LR scan with CIs, and their paired difference.
    """
    rows = []
    for s in scores:
        ref = references[s.name]
        row = {"specimen": s.name, **s.perceptual,
               "values": {k: _clean(s.morphometry.get(k)) for k in PARAM_KEYS},
               "rel_err_vs_hr": {k: _clean(v) for k, v in
                                 relative_errors(s.morphometry, ref["hr"]).items()},
               "bio_err_vs_hr": _clean(biological_error(s.morphometry, ref["hr"])),
               "lr_bio_err_vs_hr": _clean(biological_error(ref["lr"], ref["hr"])),
               "scoring_seconds": s.seconds}
        if ref.get("truth"):
            row["rel_err_vs_truth"] = {k: _clean(v) for k, v in
                                       relative_errors(s.morphometry, ref["truth"]).items()}
            row["bio_err_vs_truth"] = _clean(biological_error(s.morphometry, ref["truth"]))
            row["lr_bio_err_vs_truth"] = _clean(biological_error(ref["lr"], ref["truth"]))
            row["hr_bio_err_vs_truth"] = _clean(biological_error(ref["hr"], ref["truth"]))
        rows.append(row)
    names = [s.name for s in scores]
    has_truth = all(references[n].get("truth") for n in names)
    agg: dict = {k: summarise([r[k] for r in rows])
                 for k in ("psnr_db", "ssim", "psnr_3d_db", "ssim_3d")}
    params = {}
    for k in PARAM_KEYS:
        p = {"entry": summarise([r["values"][k] for r in rows]),
             "hr": summarise([references[n]["hr"].get(k) for n in names]),
             "lr": summarise([references[n]["lr"].get(k) for n in names])}
        refs = [("hr", [references[n]["hr"] for n in names])]
        if has_truth:
            p["truth"] = summarise([references[n]["truth"].get(k) for n in names])
            refs.append(("truth", [references[n]["truth"] for n in names]))
        for ref_name, ref_rows in refs:
            for who, vals in (("entry", [s.morphometry for s in scores]),
                              ("lr", [references[n]["lr"] for n in names])):
                e = [relative_errors(v, r, (k,))[k] for v, r in zip(vals, ref_rows, strict=True)]
                p[f"{who}_rel_err_vs_{ref_name}"] = summarise(e)
                p[f"{who}_abs_rel_err_vs_{ref_name}"] = summarise(np.abs(e))
        params[k] = p
    agg["params"] = params
    for ref_name in ("hr", "truth") if has_truth else ("hr",):
        entry = [r[f"bio_err_vs_{ref_name}"] for r in rows]
        lr = [r[f"lr_bio_err_vs_{ref_name}"] for r in rows]
        diff = [a - b for a, b in zip(entry, lr, strict=True) if _finite(a) and _finite(b)]
        agg[f"bio_err_vs_{ref_name}"] = summarise(entry)
        agg[f"lr_bio_err_vs_{ref_name}"] = summarise(lr)
        agg[f"bio_err_minus_lr_vs_{ref_name}"] = summarise(diff)
    if has_truth:
        agg["hr_bio_err_vs_truth"] = summarise([r["hr_bio_err_vs_truth"] for r in rows])
    return rows, agg


def verdict(agg: dict, ref_name: str = "hr") -> str:
    """'better', 'worse' or 'tied' against the LR scan, from the paired bootstrap interval."""
    lo, hi = agg[f"bio_err_minus_lr_vs_{ref_name}"]["ci95"]
    if lo is None:
        return "tied"
    if hi < 0:
        return "better"
    if lo > 0:
        return "worse"
    return "tied"


def paired_difference(rows_a: list[dict], rows_b: list[dict]) -> dict:
    """Entry A minus entry B, paired by specimen (the specimens both scored), from their
    per-specimen result rows: for the biological errors (against HR and, where both have it,
    the truth), PSNR/SSIM and each parameter's |relative error| against HR, the mean of A, of B
    and of the per-specimen difference A - B with its percentile bootstrap interval (resampling
    specimens, :data:`BOOTSTRAP`). A difference whose interval lies below zero means A is lower
    on that measure for these specimens (for an error: better)."""
    by_b = {r["specimen"]: r for r in rows_b}
    pairs = [(a, by_b[a["specimen"]]) for a in rows_a if a["specimen"] in by_b]

    def one(get) -> dict:  # over the specimens where both are defined: a - b == difference
        both = [(get(a), get(b)) for a, b in pairs]
        both = [(x, y) for x, y in both if _finite(x) and _finite(y)]
        return {"a": summarise([x for x, _ in both])["mean"],
                "b": summarise([y for _, y in both])["mean"],
                "difference": summarise([x - y for x, y in both])}

    out = {"specimens": [a["specimen"] for a, _ in pairs]}
    for k in ("bio_err_vs_hr", "bio_err_vs_truth", "psnr_db", "ssim"):
        if all(_finite(a.get(k)) and _finite(b.get(k)) for a, b in pairs):
            out[k] = one(lambda r, k=k: r[k])
    out["abs_rel_err_vs_hr"] = {
        k: one(lambda r, k=k: abs(r["rel_err_vs_hr"][k]) if _finite(r["rel_err_vs_hr"].get(k))
               else math.nan)
        for k in PARAM_KEYS}
    return out
