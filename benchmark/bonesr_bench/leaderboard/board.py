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


def _partial(res: dict) -> bool:
    """Whether a result was scored on less than the whole test part: the train part, or some
    specimens (``split.selected``, evaluate --specimens). Such a result is kept off the board."""
    return res["split"].get("subset") != "test" or bool(res["split"].get("selected"))


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
        if _partial(res):
            excluded.append((f.name, "scored on part of the split (the train part or some "
                                     "specimens), not the whole test part"))
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
    if _partial(res):
        some = res["split"].get("selected")
        raise LeaderboardError(
            f"{path}: scored on {'specimens ' + ', '.join(some) + ' of ' if some else ''}the "
            f"{res['split'].get('subset')} part; the leaderboard takes results on the whole test "
            "part (evaluate without --subset and --specimens)")
    _check_split(res, results_dir, str(path), allow_other_split)
    sandbox = res["run"].get("sandbox")
    if not allow_unconfined and not is_confined(sandbox):
        raise LeaderboardError(f"{path}: the model ran {describe(sandbox)}; evaluate it again "
                               "where the kernel confines it (`--sandbox required`), or pass "
                               "--allow-unconfined to add it marked unconfined")
    return write_json(results_dir / f"{res['entry']}.json", res)


def _entry_result(which: str, results_dir: Path) -> dict:
    """A scored result by committed entry name (``results_dir/<entry>.json``) or by path."""
    path = Path(which)
    if not path.suffix == ".json":
        path = results_dir / f"{which}.json"
    if not path.is_file():
        have = sorted(p.stem for p in results_dir.glob("*.json")) if results_dir.is_dir() else []
        raise LeaderboardError(f"{which}: no such entry or result file"
                               + (f" (the leaderboard has {', '.join(have)})" if have else ""))
    try:
        res = result.read(path)
    except result.ResultSchemaError as exc:
        raise LeaderboardError(str(exc)) from None
    if res["status"] != "scored" or not res.get("specimens"):
        raise LeaderboardError(f"{path}: not a scored entry (status {res['status']!r}); "
                               "compare two scored results")
    return res


def compare(a: str, b: str, results_dir: str | Path = RESULTS) -> dict:
    """Entry ``a`` against entry ``b`` (names of committed entries or result.json paths), paired
    by specimen: :func:`bonesr_bench.scoring.paired_difference` plus both entries' names. They
    must have been scored on the same split (fingerprint) and part."""
    from bonesr_bench.scoring import paired_difference

    results_dir = Path(results_dir)
    ra, rb = _entry_result(a, results_dir), _entry_result(b, results_dir)
    for key in ("fingerprint", "subset"):
        if ra["split"][key] != rb["split"][key]:
            raise LeaderboardError(f"{a} and {b} were scored on different splits ({key} "
                                   f"{str(ra['split'][key])[:16]} vs {str(rb['split'][key])[:16]}"
                                   "); pairing their specimens would mean nothing")
    out = paired_difference(ra["specimens"], rb["specimens"])
    if not out["specimens"]:
        raise LeaderboardError(f"{a} and {b} share no specimen")
    return {"a": ra["entry"], "b": rb["entry"], "split": ra["split"]["id"], **out}


def rescore(results_dir: str | Path = RESULTS, runs: str | Path = "runs", *,
            split: str | Path | None = None, entries: list[str] | None = None,
            workers: int = 1, scheduler: str | None = None, progress=None) -> list[dict]:
    """Score every committed entry (or ``entries``) again from the SR volumes its run kept in
    ``runs`` (``runs/<entry>/sr.zarr``), under today's conventions, without running any model;
    then write the reference rows again. Each new result replaces the committed one atomically,
    and only once every entry has been scored (one that cannot be is reported and nothing is
    written). Returns, per entry, its biological error against HR before and after."""
    results_dir = Path(results_dir)
    kept, _, _ = load_results(results_dir)
    refs = {e for e, _ in REFERENCE_SCANS.values()}
    todo = {res["entry"]: res for res in kept.values()
            if res["status"] == "scored" and res["entry"] not in refs
            and (entries is None or res["entry"] in entries)}
    unknown = sorted(set(entries or ()) - set(todo))
    if unknown:
        raise LeaderboardError(f"{', '.join(unknown)}: not a scored entry of {results_dir}")
    from bonesr_bench.evaluation import EvaluationError
    from bonesr_bench.evaluation.parallel import shared_scorer

    try:
        with shared_scorer(workers, scheduler):  # one cluster for every entry and the references
            return _rescore(todo, results_dir, runs, split, workers, scheduler, progress)
    except EvaluationError as exc:  # the cluster could not start, or the references failed
        raise LeaderboardError(str(exc)) from None


def _rescore(todo: dict, results_dir: Path, runs, split, workers: int, scheduler: str | None,
             progress) -> list[dict]:
    from bonesr_bench.evaluation import EvaluateOptions, EvaluationError, evaluate

    new = {}
    for entry, old in sorted(todo.items()):
        opts = EvaluateOptions(split=split, out=Path(runs), entry=entry, device="cpu",
                               rescore=True, workers=workers, scheduler=scheduler,
                               rescore_model=old.get("model"))
        try:
            outcome = evaluate(old["submission"]["source"], opts,
                               progress or (lambda *a: None))
        except EvaluationError as exc:
            raise LeaderboardError(f"{entry}: {exc}") from None
        if outcome.exit_code != 0:
            raise LeaderboardError(f"{entry}: its kept SR volumes could not be scored "
                                   f"({outcome.result['reason']}); nothing was written to "
                                   f"{results_dir}")
        res = dict(outcome.result, submission=old["submission"])
        res["run"] = {**res["run"], "rescored": {"from_created": old["created"],
                                                 "code": old["code"].get("git_commit")}}
        result.validate(res)
        new[entry] = (old, res)
    out = []
    for entry, (old, res) in new.items():
        write_json(results_dir / f"{entry}.json", res)
        out.append({"entry": entry, "bio_err_vs_hr_before": old["aggregates"]["bio_err_vs_hr"]
                    ["mean"], "bio_err_vs_hr_after": res["aggregates"]["bio_err_vs_hr"]["mean"]})
    write_references(split, results_dir, progress=progress, workers=workers,
                     scheduler=scheduler)
    return out


def write_references(split: str | Path | None = None, results_dir: str | Path = RESULTS,
                     subset: str = "test", progress=None, *, workers: int = 1,
                     scheduler: str | None = None) -> list[Path]:
    """Write the HR and LR reference rows (``hr-scan.json``, ``lr-scan.json``)."""
    results_dir = Path(results_dir)
    out = []
    for scan, res in reference_results(tuple(REFERENCE_SCANS), split, subset,
                                       progress or _noop, workers=workers,
                                       scheduler=scheduler).items():
        _check_split(res, results_dir, f"reference row {scan}", split not in (None, "v1", "v2"))
        out.append(write_json(results_dir / f"{res['entry']}.json", res))
    return out
