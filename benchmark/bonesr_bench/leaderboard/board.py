"""The committed results of a leaderboard: loading them (which belong, which are excluded and
why), adding a scored entry, writing the HR and LR reference rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bonesr_bench.errors import BenchError
from bonesr_bench.evaluation import REFERENCE_SCANS, reference_results, result
from bonesr_bench.evaluation.common import _noop
from bonesr_bench.files import write_json

RESULTS = Path("leaderboard") / "results"


class LeaderboardError(BenchError, RuntimeError):
    """A result that cannot join the leaderboard: one line naming the problem and the fix."""


def _expected_fingerprint(valid: dict[str, dict]) -> tuple[str | None, set[str]]:
    """The leaderboard's split: (the committed canonical fingerprint of the results' (most
    common) split id, else the most common fingerprint; every fingerprint of that split, its
    test part alone included, :func:`split.canonical_fingerprints`)."""
    from bonesr_bench.split import canonical, canonical_fingerprints

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
        allow_other_split: bool = False, allow_unconfined: bool = False) -> Path:
    """Copy a scored result into ``results_dir`` as ``<entry>.json`` (atomically), after checking
    it validates, is scored, was scored on the leaderboard's split and with its model confined
    (``run.sandbox``; ``allow_unconfined`` takes it anyway, and the site says so)."""
    from bonesr_bench.models.sandbox import describe, is_confined

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
    sandbox = res["run"].get("sandbox")
    if not allow_unconfined and not is_confined(sandbox):
        raise LeaderboardError(f"{path}: the model ran {describe(sandbox)}; evaluate it again "
                               "where the kernel confines it (`--sandbox required`), or pass "
                               "--allow-unconfined to add it marked unconfined")
    return write_json(results_dir / f"{res['entry']}.json", res)


def write_references(split: str | Path | None = None, results_dir: str | Path = RESULTS,
                     subset: str = "test", progress=None) -> list[Path]:
    """Write the HR and LR reference rows (``hr-scan.json``, ``lr-scan.json``)."""
    results_dir = Path(results_dir)
    out = []
    for scan, res in reference_results(tuple(REFERENCE_SCANS), split, subset,
                                       progress or _noop).items():
        _check_split(res, results_dir, f"reference row {scan}", split not in (None, "v1", "v2"))
        out.append(write_json(results_dir / f"{res['entry']}.json", res))
    return out
