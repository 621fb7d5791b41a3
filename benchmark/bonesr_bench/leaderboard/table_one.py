"""The study's Table I for a leaderboard's results: mean ± SD of every parameter per row (HR,
the entries by PSNR, LR), the truth, PSNR/SSIM and the biological errors."""

from __future__ import annotations

from bonesr_bench.params import PARAMS, SCORES, TABLE_ONE_KEYS


def _order(results: dict[str, dict]) -> list[dict]:
    """HR first, the entries by PSNR (best first), LR last, as the study's Table I."""
    refs = {r["entry"]: r for r in results.values() if r["status"] == "reference"}
    entries = [r for r in results.values() if r["status"] == "scored"]
    entries.sort(key=lambda r: -(r["aggregates"]["psnr_db"]["mean"] or -1e9))
    return [refs[e] for e in ("hr-scan",) if e in refs] + entries + \
        [refs[e] for e in ("lr-scan",) if e in refs]


def _label(res: dict) -> str:
    return {"hr-scan": "HR", "lr-scan": "LR"}.get(res["entry"], res["entry"])


def table_one(results: dict[str, dict]) -> list[list[str]]:
    """The study's Table I for these results: mean ± SD over the test specimens of every
    parameter, one column per row of the leaderboard (HR, entries by PSNR, LR); then the true
    geometry's values, PSNR/SSIM and the biological errors against HR and truth (%)."""
    cols = _order(results)
    if not cols:
        return []

    def ms(s, d):
        if s["mean"] is None:
            return "-"
        return f"{s['mean']:.{d}f} ± {s['sd']:.{d}f}"

    truth = next((r["aggregates"]["params"][TABLE_ONE_KEYS[0]].get("truth") is not None
                  for r in cols), False)
    head = ["parameter", *(_label(r) for r in cols)] + (["truth"] if truth else [])
    rows = [head]
    for key in TABLE_ONE_KEYS:
        p = PARAMS[key]
        row = [p.table_label]
        row += [ms(r["aggregates"]["params"][key]["entry"], p.digits) for r in cols]
        if truth:
            row.append(ms(cols[0]["aggregates"]["params"][key]["truth"], p.digits))
        rows.append(row)
    for p in SCORES.values():
        key, d, f = p.key, p.digits, 100 if p.percent else 1
        row = [p.table_label]
        for r in cols:
            s = r["aggregates"].get(key) or {"mean": None}
            row.append("-" if s["mean"] is None else
                       f"{f * s['mean']:.{d}f} ± {f * s['sd']:.{d}f}")
        rows.append(row + ([""] if truth else []))
    return rows


def markdown(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)
