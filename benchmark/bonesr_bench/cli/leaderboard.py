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
def _require_folder(results_dir: Path) -> None:
    """--results must be a folder; one line naming it (and where a checkout has it) if not."""
    if not results_dir.is_dir():
        raise fail(f"--results {results_dir}: no such folder; give the folder of result JSONs"
                   f"{_CHECKOUT if results_dir == Path('leaderboard/results') else ''}")


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
    workers: Annotated[int, typer.Option(
        "--workers", help="Dask worker processes for the rows not yet cached.")] = 1,
):
    """Write the reference rows: the HR scan and the LR scan themselves, segmented and measured
    like every entry, with their errors against HR and the true geometry (hr-scan.json,
    lr-scan.json)."""
    from bonesr_bench.leaderboard import write_references

    labels = {"build": ("building the split", "specimens"),
              "references": ("scoring HR, LR and truth", "specimens")}
    with errors(), progress(labels) as report:
        paths = write_references(split, results_dir, progress=report, workers=workers)
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

    _require_folder(results_dir)
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

    _require_folder(results_dir)
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


@leaderboard_app.command("compare")
def leaderboard_compare(
    a: Annotated[str, typer.Argument(help="An entry of the leaderboard or a result.json.",
                                     show_default=False)],
    b: Annotated[str, typer.Argument(help="The entry to compare it with.",
                                     show_default=False)],
    results_dir: ResultsDir = Path("leaderboard/results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")]
    = False,
):
    """Compare two entries specimen by specimen: A - B for the biological error, PSNR/SSIM and
    each parameter's |relative error| against HR, with paired bootstrap 95 % intervals
    (resampling specimens). An interval below zero: A's error is lower on these specimens.

    \b
    Examples:
      bonesr-bench leaderboard compare bioaware fsrcnn
      bonesr-bench leaderboard compare runs/my_model/result.json fsrcnn --json
    """
    import json

    from bonesr_bench.leaderboard import compare

    with errors():
        c = compare(a, b, results_dir)
    if as_json:
        print(json.dumps(c, indent=1))
        return
    print(f"{c['a']} - {c['b']}, paired over {len(c['specimens'])} specimens of {c['split']} "
          "(mean of the per-specimen differences, 95 % bootstrap interval; pt: percentage "
          "points)\n")
    print(f"| measure | {c['a']} | {c['b']} | difference | 95 % CI |")
    print("|---|---|---|---|---|")

    def line(label, d, scale, unit, digits=2):
        m, (lo, hi) = d["difference"]["mean"], d["difference"]["ci95"]

        def fmt(v, sign=""):  # a difference of percentages is in points
            u = " pt" if sign and unit == " %" else unit
            return "n/a" if v is None else f"{scale * v:{sign}.{digits}f}{u}"

        print(f"| {label} | {fmt(d['a'])} | {fmt(d['b'])} | {fmt(m, '+')} | "
              f"{fmt(lo, '+')} to {fmt(hi, '+')} |")

    for key, label, scale, unit, digits in (
            ("bio_err_vs_hr", "biological error vs HR", 100, " %", 2),
            ("bio_err_vs_truth", "biological error vs truth", 100, " %", 2),
            ("psnr_db", "PSNR", 1, " dB", 2), ("ssim", "SSIM", 1, "", 3)):
        if key in c:
            line(label, c[key], scale, unit, digits)
    for key, d in c["abs_rel_err_vs_hr"].items():
        if d["difference"]["n"]:
            line(f"\\|rel. error\\| {key}", d, 100, " %")


@leaderboard_app.command("rescore")
def leaderboard_rescore(
    results_dir: ResultsDir = Path("leaderboard/results"),
    runs: Annotated[Path, typer.Option(
        "--runs", help="The runs folder holding each entry's kept SR volumes "
        "(RUNS/ENTRY/sr.zarr).")] = Path("runs"),
    split: Annotated[str | None, typer.Option(
        "--split", help="The leaderboard's split (default: v2).", show_default=False)] = None,
    entries: Annotated[str | None, typer.Option(
        "--entries", help="Only these entries, comma-separated. Default: every scored entry.",
        show_default=False)] = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="Dask worker processes for the scoring (1: this process).")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Send the scoring tasks to the Dask cluster at this address.",
        show_default=False)] = None,
):
    """Score every committed entry again from the SR volumes its run kept, under today's
    conventions (after a protocol change), without running any model; then the reference rows.

    Each new result replaces the committed one atomically, and only once every entry has been
    scored: an entry whose volumes are missing is named and nothing is written.

    \b
    Examples:
      bonesr-bench leaderboard rescore --workers 2
      bonesr-bench leaderboard rescore --entries fsrcnn,bicubic --runs /cluster/runs
    """
    from bonesr_bench.leaderboard import rescore

    labels = {"build": ("building the split", "specimens"),
              "references": ("scoring HR, LR and truth", "specimens"),
              "score": ("rescoring", "specimens")}
    _require_folder(results_dir)
    with errors(), progress(labels) as report:
        done = rescore(results_dir, runs, split=split,
                       entries=[e.strip() for e in entries.split(",")] if entries else None,
                       workers=workers, scheduler=scheduler, progress=report)
    for d in done:
        print(f"{d['entry']}: biological error vs HR {100 * d['bio_err_vs_hr_before']:.2f} % -> "
              f"{100 * d['bio_err_vs_hr_after']:.2f} %")
    print(f"rescored {len(done)} entries and the reference rows in {results_dir}")
