"""`bonesr-bench evaluate` and its terminal summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from bonesr_bench.cli.common import (
    Device,
    app,
    console,
    err,
    errors,
    progress,
)
from bonesr_bench.params import SUMMARY_KEYS, label_unit


@app.command()
def evaluate(
    submission: Annotated[str, typer.Argument(
        help="A submission .py file (FILE.py:FACTORY for a file offering several models, "
        "such as an ablation's variants), a package.module:attribute, or an installed model "
        "name (see `bonesr-bench models`).", show_default=False)],
    split: Annotated[str | None, typer.Option(
        "--split", help="A split name (v2, v1, mini, bonebox: kept in the per-user cache and built "
        "on first use) or the path of a split's zarr store, such as one built from your own "
        "scans with `bonesr-bench data build --from-scans`, or its URL (file://, s3://, gs://, "
        "memory://: what Dask workers on other machines read). Default: v2.",
        show_default=False)] = None,
    subset: Annotated[str, typer.Option("--subset", help="test or train.")] = "test",
    specimens: Annotated[str | None, typer.Option(
        "--specimens", help="Score only these specimens of the subset, comma-separated (e.g. "
        "a model's validation specimens: --subset train --specimens s1027,s1028). Such a "
        "result cannot join the leaderboard.", show_default=False)] = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="Score specimens (segmentation, morphometry, PSNR/SSIM) and the "
        "reference rows in this many Dask worker processes on this machine, while the model "
        "runs in its own confined worker. 1: in this process. The numbers are the same.")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Send the scoring tasks to the Dask cluster at this address (e.g. "
        "tcp://head:8786) instead; its workers must see the split at the same path.",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Runs folder: one sub-folder per entry with "
                                      "sr.zarr, worker.log and result.json.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(
        "--name", help="Entry (run folder) name. Default: the submission file's stem.",
        show_default=False)] = None,
    device: Device = "auto",
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="LR slices per model call (slice models). Default: 8 on the CPU; on "
        "CUDA 64, halved whenever the GPU runs out of memory.", show_default=False)] = None,
    amp: Annotated[bool, typer.Option("--amp", help="Run the model under autocast (float16 on "
                                      "CUDA, bfloat16 on the CPU).")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds allowed per specimen (the first also loads the model); the "
        "worker is stopped past it.")] = 600.0,
    force: Annotated[bool, typer.Option(
        "--force", help="Recompute every SR volume instead of resuming finished specimens.")] \
        = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the result JSON instead of the summary.")] = False,
    check_determinism: Annotated[bool, typer.Option(
        "--check-determinism", help="Run the model twice and fail if any SR volume differs.")] \
        = False,
    memory_gb: Annotated[float, typer.Option(
        "--memory-gb", help="Address-space cap of the model's worker on the CPU (GiB).")] = 16.0,
    sandbox: Annotated[Literal["required", "auto", "off"], typer.Option(
        "--sandbox", help="Confine the model's worker (Linux: Landlock for files and TCP, PID "
        "and network namespaces): it reads its LR arrays, Python and its own folder, writes "
        "its temporary folder only, sees no other process and has no network. required: refuse "
        "to run where the kernel cannot; auto: confine what it can and record it; off. The "
        "result records what held the run; `leaderboard add` refuses unconfined entries.")]
    = "auto",
):
    """Run an SR model on a split and score it: PSNR/SSIM and every bone parameter.

    The model runs in an isolated worker that sees the LR scans only. Its SR volumes go to
    OUT/ENTRY/sr.zarr, the result to OUT/ENTRY/result.json (written atomically); on a split
    other than v2 the folder is OUT/ENTRY@SPLIT (e.g. runs/bicubic@synth-v2-mini), so that runs
    on two splits never collide. Re-running resumes finished specimens. Exit codes: 0 scored,
    1 the submission failed (the result says why), 2 usage or data error.

    \b
    Examples:
      bonesr-bench evaluate baselines/bicubic.py
      bonesr-bench evaluate my_model.py --device cuda --amp --check-determinism
      bonesr-bench evaluate bicubic --split mini --json
      bonesr-bench evaluate baselines/fsrcnn.py --workers 2
      bonesr-bench evaluate baselines/bioaware.py:load_euler --subset train \\
          --specimens s1027,s1028
    """
    from bonesr_bench.evaluation import EvaluateOptions
    from bonesr_bench.evaluation import evaluate as run_evaluation

    opts = EvaluateOptions(split=split, subset=subset, out=out, entry=name, device=device,
                           batch_size=batch_size, amp=amp, timeout_s=timeout, force=force,
                           check_determinism=check_determinism, memory_gb=memory_gb,
                           sandbox=sandbox,
                           specimens=tuple(s.strip() for s in specimens.split(",") if s.strip())
                           if specimens else None,
                           workers=workers, scheduler=scheduler)
    labels = {"build": ("building the split", ""),
              "references": ("scoring HR, LR and truth (once per split)", ""),
              "model": ("running the model", "slices"), "score": ("scoring", ""),
              "determinism": ("second run (determinism)", "slices")}
    with errors(), progress(labels) as report:
        outcome = run_evaluation(submission, opts, report)
    res = outcome.result
    _say_confinement(res)
    if as_json:
        print(json.dumps(res, indent=1))
    elif res["status"] == "failed":
        err.print(f"[bold red]failed:[/] {res['reason']}", highlight=False, soft_wrap=True)
        err.print(f"result marked failed: {outcome.path}; the model's output: "
                  f"{outcome.path.parent / 'worker.log'}", highlight=False)
    else:
        _print_summary(res, outcome.path)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _say_confinement(res: dict) -> None:
    """One line when the model ran unconfined (recorded in the result)."""
    from bonesr_bench.models.sandbox import describe, is_confined

    run = res.get("run") or {}
    if res.get("status") == "scored" and not is_confined(run.get("sandbox")):
        err.print(f"[yellow]warning:[/] the model ran {describe(run['sandbox'])}; the result "
                  "records it and `leaderboard add` refuses it without --allow-unconfined",
                  highlight=False, soft_wrap=True)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:+.1f} %"


def _print_summary(res: dict, path: Path):
    agg = res["aggregates"]
    con = console
    m = res["model"]
    ps, ss = agg["psnr_db"], agg["ssim"]

    def ci(s, f):
        return (f"[{f.format(s['ci95'][0])}, {f.format(s['ci95'][1])}]"
                if s["ci95"][0] is not None else "")

    con.print(f"[bold]{m['name']}[/] on {res['split']['id']} {res['split']['subset']} "
              f"({res['split']['n_specimens']} specimens): PSNR {ps['mean']:.2f} dB "
              f"{ci(ps, '{:.2f}')}, SSIM {ss['mean']:.4f} {ci(ss, '{:.4f}')}", highlight=False)
    from bonesr_bench.split.register import POOR_NCC

    poor = {n: q for n, q in res["split"].get("registration_ncc", {}).items() if q < POOR_NCC}
    if poor:
        err.print(f"[yellow]warning:[/] LR-to-HR registration is poor for {', '.join(poor)} "
                  f"(NCC {', '.join(f'{q:.2f}' for q in poor.values())} < {POOR_NCC}): their "
                  "scores compare misaligned scans", highlight=False, soft_wrap=True)
    table = Table(title_justify="left", title="bone parameters (mean over specimens)")
    table.add_column("parameter")
    table.add_column("entry", justify="right")
    table.add_column("HR", justify="right")
    table.add_column("LR", justify="right")
    has_truth = "truth" in agg["params"]["bv_tv_pct"]
    if has_truth:
        table.add_column("truth", justify="right")
    # the mean over specimens of each specimen's relative error, not the relative difference of
    # the means (which can differ much: Conn.D 47.8 vs 64.5 with a mean error of +50 %)
    table.add_column("entry vs HR¹", justify="right")
    table.add_column("LR vs HR¹", justify="right")
    for k in SUMMARY_KEYS:
        p = agg["params"][k]
        label, unit = label_unit(k)
        def f(s):
            return "-" if s["mean"] is None else f"{s['mean']:.3g}"

        cells = [f"{label} {unit}".strip(), f(p["entry"]), f(p["hr"]), f(p["lr"])]
        if has_truth:
            cells.append(f(p["truth"]))
        cells += [_pct(p["entry_rel_err_vs_hr"]["mean"]), _pct(p["lr_rel_err_vs_hr"]["mean"])]
        table.add_row(*cells)
    con.print(table)
    con.print("[dim]¹ mean over specimens of each specimen's relative error against its HR "
              "scan (not the difference of the means)[/]", highlight=False)
    be, bl = agg["bio_err_vs_hr"], agg["lr_bio_err_vs_hr"]
    line = (f"biological error vs HR: entry {100 * be['mean']:.1f} %, LR scan "
            f"{100 * bl['mean']:.1f} %")
    if has_truth:
        line += (f"; vs truth: entry {100 * agg['bio_err_vs_truth']['mean']:.1f} %, LR "
                 f"{100 * agg['lr_bio_err_vs_truth']['mean']:.1f} %, HR "
                 f"{100 * agg['hr_bio_err_vs_truth']['mean']:.1f} %")
    con.print(line, highlight=False)
    style = {"better": "green", "worse": "red", "tied": "yellow"}[res["summary"]["verdict"]]
    con.print(f"[{style}]{res['summary']['sentence']}[/]", highlight=False)
    t = res["timings"]
    con.print(f"[dim]{res['run']['n_clipped']} output values clipped to [0, 1]; "
              f"{t['total_s']:.0f} s in all, {t['model_s']:.1f} s in the model; result: "
              f"{path}[/]", highlight=False)
