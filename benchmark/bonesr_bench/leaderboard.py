"""The committed leaderboard results: one JSON per scored entry plus the HR and LR reference rows.

``leaderboard/results/<entry>.json`` files are copies of ``bonesr-bench evaluate`` results
(validated against the result schema, scored on the canonical split) and the two reference rows
written by :func:`write_references`. The page is rendered from these files alone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import result
from .evaluate import REFERENCE_SCANS, _noop, reference_results

__all__ = ["LeaderboardError", "RESULTS", "add", "write_references", "load_results"]

RESULTS = Path("leaderboard") / "results"


class LeaderboardError(RuntimeError):
    """A result that cannot join the leaderboard: one line naming the problem and the fix."""


def _expected_fingerprint(valid: dict[str, dict]) -> tuple[str | None, set[str]]:
    """The leaderboard's split: (the committed canonical fingerprint of the results' (most
    common) split id, else the most common fingerprint; every fingerprint of that split, its
    test part alone included, :func:`split.canonical_fingerprints`)."""
    from .split import canonical, canonical_fingerprints

    ids = Counter(r["split"].get("id") for r in valid.values())
    top = ids.most_common(1)[0][0] if ids else None
    table = canonical(top) if top else None
    if table and table.get("fingerprint"):
        return table["fingerprint"], canonical_fingerprints(top)
    fps = Counter(r["split"]["fingerprint"] for r in valid.values())
    fp = fps.most_common(1)[0][0] if fps else None
    return fp, {fp} if fp else set()


def load_results(results_dir: str | Path) -> tuple[dict[str, dict], list[tuple[str, str]],
                                                   str | None]:
    """(results kept by entry name, [(file, why excluded)], the leaderboard's fingerprint)."""
    valid, excluded = {}, []
    for f in sorted(Path(results_dir).glob("*.json")):
        try:
            res = result.read(f)
        except result.ResultSchemaError as exc:
            excluded.append((f.name, f"not a valid result (schema v{result.SCHEMA_VERSION}): "
                                     f"{str(exc).split(': ', 1)[-1][:200]}"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            excluded.append((f.name, f"unreadable: {exc}"))
            continue
        if res["status"] == "failed":
            excluded.append((f.name, f"a failed run: {res['reason']}"))
            continue
        valid[f.name] = res
    fp, same = _expected_fingerprint(valid)
    board = _leaderboard_id(valid)
    kept: dict[str, dict] = {}
    for name, res in valid.items():
        if fp is not None and res["split"]["fingerprint"] not in same and \
                not _comparable(res, board):
            excluded.append((name, f"scored on another split (fingerprint "
                                   f"{res['split']['fingerprint'][:12]}, the leaderboard's is "
                                   f"{fp[:12]}): outdated or not comparable; rescore it"))
        elif res["entry"] in kept:
            excluded.append((name, f"a second result for entry {res['entry']!r}"))
        else:
            kept[res["entry"]] = res
    return kept, sorted(excluded), fp


def _leaderboard_id(valid: dict[str, dict]) -> tuple | None:
    """(split id, version) of most of the results."""
    ids = Counter((r["split"].get("id"), r["split"].get("version")) for r in valid.values())
    return ids.most_common(1)[0][0] if ids else None


def _comparable(res: dict, board: tuple | None) -> bool:
    """A result scored on a rebuild of the leaderboard's split (same id and version) that
    differs from the canonical one only within tolerance (another machine's build), which
    ``data verify`` called comparable: it joins, with its own fingerprint recorded. A result
    that claims the canonical split with another fingerprint is outdated, not comparable.
    ``board``: the leaderboard's (split id, version), :func:`_leaderboard_id`."""
    split = res["split"]
    return (split.get("comparable") is True and split.get("canonical") is not True
            and (split.get("id"), split.get("version")) == board)


def _check_split(res: dict, results_dir: Path, source: str, allow_other_split: bool) -> None:
    split = res["split"]
    if allow_other_split:
        return
    if split.get("canonical") is not True and split.get("comparable") is not True:
        raise LeaderboardError(f"{source}: scored on a split that is neither the canonical "
                               f"{split.get('id')} split nor comparable to it; evaluate on the "
                               "canonical split (`--split v2`) or pass --allow-other-split")
    valid, _, fp = load_results(results_dir)
    if not valid or fp is None or split["fingerprint"] in _expected_fingerprint(valid)[1]:
        return
    board = _leaderboard_id(valid)
    if _comparable(res, board):
        return
    raise LeaderboardError(f"{source}: split {split.get('id')} fingerprint "
                           f"{split['fingerprint'][:16]} differs from the leaderboard's "
                           f"({board[0]} v{board[1]}, {fp[:16]}); rescore it on the "
                           "leaderboard's split")


def add(path: str | Path, results_dir: str | Path = RESULTS, *,
        allow_other_split: bool = False) -> Path:
    """Copy a scored result into ``results_dir`` as ``<entry>.json`` (atomically), after checking
    it validates, is scored, and was scored on the leaderboard's split."""
    results_dir = Path(results_dir)
    try:
        res = result.read(path)
    except result.ResultSchemaError as exc:
        raise LeaderboardError(f"{exc}; only results written by `bonesr-bench evaluate` can "
                               "join the leaderboard") from None
    except OSError as exc:
        raise LeaderboardError(f"{path}: cannot read it ({exc.strerror})") from None
    if res["status"] != "scored":
        raise LeaderboardError(f"{path}: status {res['status']!r}; only scored results join the "
                               "leaderboard (fix the submission and evaluate it again)")
    if res["entry"] in {e for e, _ in REFERENCE_SCANS.values()}:
        raise LeaderboardError(f"{path}: entry name {res['entry']!r} is reserved for the "
                               "reference rows; evaluate with another --name")
    _check_split(res, results_dir, str(path), allow_other_split)
    return result.write_atomic(results_dir / f"{res['entry']}.json", res)


def write_references(split: str | Path | None = None, results_dir: str | Path = RESULTS,
                     subset: str = "test", progress=None) -> list[Path]:
    """Write the HR and LR reference rows (``hr-scan.json``, ``lr-scan.json``)."""
    results_dir = Path(results_dir)
    out = []
    for scan, res in reference_results(tuple(REFERENCE_SCANS), split, subset,
                                       progress or _noop).items():
        _check_split(res, results_dir, f"reference row {scan}", split not in (None, "v1", "v2"))
        out.append(result.write_atomic(results_dir / f"{res['entry']}.json", res))
    return out


#: Table I rows: (result key, label, unit, digits); the study's five, then the rest we measure.
TABLE_ONE = (
    ("tb_th_um", "Tb.Th", "µm", 1), ("bv_tv_pct", "BV/TV", "%", 1), ("tb_sp_um", "Tb.Sp", "µm", 0),
    ("da_ratio", "DA (ratio)", "", 2), ("conn_d_per_mm3", "Conn.D", "1/mm³", 1),
    ("tb_n_per_mm", "Tb.N", "1/mm", 2), ("smi", "SMI", "", 2), ("ct_th_um", "Ct.Th", "µm", 0),
    ("ct_po_pct", "Ct.Po", "%", 2), ("po_n", "Po.N", "", 0),
)


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

    truth = next((r["aggregates"]["params"][TABLE_ONE[0][0]].get("truth") is not None
                  for r in cols), False)
    head = ["parameter", *(_label(r) for r in cols)] + (["truth"] if truth else [])
    rows = [head]
    for key, label, unit, d in TABLE_ONE:
        row = [f"{label} ({unit})" if unit else label]
        row += [ms(r["aggregates"]["params"][key]["entry"], d) for r in cols]
        if truth:
            row.append(ms(cols[0]["aggregates"]["params"][key]["truth"], d))
        rows.append(row)
    for key, label, d, f in (("psnr_db", "PSNR (dB)", 2, 1), ("ssim", "SSIM", 3, 1),
                             ("bio_err_vs_hr", "bio. error vs HR (%)", 1, 100),
                             ("bio_err_vs_truth", "bio. error vs truth (%)", 1, 100)):
        row = [label]
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
