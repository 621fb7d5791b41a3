"""`bonesr-bench leaderboard ...`: the committed results, Table I and the site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bonesr_bench.cli.common import (
    ResultsDir,
    app,
    err,
    errors,
    fail,
    progress,
)

_CHECKOUT = (" (the committed leaderboard/results come with a checkout of bonesr-bench: run "
             "from its root)")
leaderboard_app = typer.Typer(help="The committed results: add a scored entry, write the HR "
                               "and LR reference rows, print Table I, build the site.",
                               no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")


@leaderboard_app.command("add")
def leaderboard_add(
    results: Annotated[list[Path], typer.Argument(
        help="result.json files written by `bonesr-bench evaluate`.", show_default=False)],
    results_dir: ResultsDir = Path("leaderboard/results"),
    allow_other_split: Annotated[bool, typer.Option(
        "--allow-other-split", help="Accept a result scored on a non-canonical split (a "
        "leaderboard of your own split).")] = False,
    allow_unconfined: Annotated[bool, typer.Option(
        "--allow-unconfined", help="Accept a result whose model ran unconfined (no Landlock "
        "or --sandbox off); the site marks it.")] = False,
):
    """Copy scored results into the leaderboard as ENTRY.json, after checking each validates
    against the result schema and was scored on the leaderboard's (canonical) split.

    \b
    Example:
      bonesr-bench leaderboard add runs/fsrcnn/result.json
    """
    from bonesr_bench.leaderboard import LeaderboardError, add

    for path in results:
        try:
            added = add(path, results_dir, allow_other_split=allow_other_split,
                        allow_unconfined=allow_unconfined)
            print(f"added: {added}")
        except LeaderboardError as exc:
            raise fail(str(exc)) from None


@leaderboard_app.command("references")
def leaderboard_references(
    split: Annotated[str | None, typer.Option(
        "--split", help="A split name or store path (default: v2, built on first use).",
        show_default=False)] = None,
    results_dir: ResultsDir = Path("leaderboard/results"),
):
    """Write the reference rows: the HR scan and the LR scan themselves, segmented and measured
    like every entry, with their errors against HR and the true geometry (hr-scan.json,
    lr-scan.json)."""
    from bonesr_bench.leaderboard import write_references

    labels = {"build": ("building the split", "specimens"),
              "references": ("scoring HR, LR and truth", "specimens")}
    with errors(), progress(labels) as report:
        paths = write_references(split, results_dir, progress=report)
    for p in paths:
        print(f"written: {p}")


@leaderboard_app.command("build")
def leaderboard_build(
    results_dir: ResultsDir = Path("leaderboard/results"),
    out: Annotated[Path, typer.Option("--out", help="The site folder (replaced).")] =
    Path("leaderboard/site"),
):
    """Render the static leaderboard site from the result files alone (offline: plotly.js is
    served from the site). A bad or outdated result file is listed as excluded, with the reason,
    and never breaks the build.

    \b
    Example:
      bonesr-bench leaderboard build && python -m http.server -d leaderboard/site
    """
    from bonesr_bench.leaderboard.site import build

    if not results_dir.is_dir():
        raise fail(f"--results {results_dir}: no such folder; give the folder of result JSONs"
                   f"{_CHECKOUT if results_dir == Path('leaderboard/results') else ''}")
    report = build(results_dir, out)
    print(f"site: {report.out / 'index.html'} ({len(report.entries)} entries, "
          f"{len(report.references)} reference rows, {len(report.excluded)} excluded)")
    for name, why in report.excluded:
        err.print(f"[yellow]excluded:[/] {name}: {why}", highlight=False, soft_wrap=True)


@leaderboard_app.command("validate")
def leaderboard_validate(
    results_dir: ResultsDir = Path("leaderboard/results"),
):
    """Check every result file: valid against the schema, scored or a reference row, all on one
    split. Exit 1 listing the bad files (what CI runs before publishing)."""
    from bonesr_bench.leaderboard import load_results

    if not results_dir.is_dir():
        raise fail(f"--results {results_dir}: no such folder; give the folder of result JSONs"
                   f"{_CHECKOUT if results_dir == Path('leaderboard/results') else ''}")
    kept, excluded, fp = load_results(results_dir)
    for name, why in excluded:
        err.print(f"[bold red]invalid:[/] {name}: {why}", highlight=False, soft_wrap=True)
    print(f"{len(kept)} valid result files on split {fp[:16] if fp else '-'}, "
          f"{len(excluded)} invalid")
    if excluded:
        raise typer.Exit(1)


@leaderboard_app.command("table")
def leaderboard_table(
    results_dir: ResultsDir = Path("leaderboard/results"),
):
    """Print the study's Table I for the committed results (Markdown): mean ± SD of every
    parameter for HR, each entry (by PSNR) and LR, the true geometry, PSNR/SSIM and the
    biological errors."""
    from bonesr_bench.leaderboard import load_results, markdown, table_one

    results = load_results(results_dir)[0]
    if not results:
        raise fail(f"{results_dir}: no valid result files; add some with `bonesr-bench "
                   "leaderboard add runs/ENTRY/result.json`")
    print(markdown(table_one(results)))
