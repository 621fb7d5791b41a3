"""`bonesr-bench train`: train a submission by its recipe on the train split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bonesr_bench.cli.common import (
    Device,
    app,
    err,
    errors,
    fail,
    progress,
)


@app.command()
def train(
    submission: Annotated[Path, typer.Argument(
        help="A submission .py file that declares a training RECIPE (all baselines/ do).",
        show_default=False)],
    split: Annotated[str | None, typer.Option(
        "--split", help="A split name (v2, v1, mini: built in the per-user cache on first use) or "
        "a split's zarr store (a path or a file://, s3://, gs://, memory:// URL). Only its "
        "train subset is read. Default: v2.",
        show_default=False)] = None,
    run_dir: Annotated[Path | None, typer.Option(
        "--run-dir", help="Checkpoint, log and best weights. Default: runs/train/NAME.",
        show_default=False)] = None,
    weights: Annotated[Path | None, typer.Option(
        "--weights", help="Where the trained weights go. Default: the file's WEIGHTS (with "
        "--tiny: inside the run folder).", show_default=False)] = None,
    device: Device = "auto",
    iterations: Annotated[int | None, typer.Option(
        "--iterations", help="Override the recipe's number of iterations.",
        show_default=False)] = None,
    tiny: Annotated[bool, typer.Option(
        "--tiny", help="Smoke run: the file's TINY_CONFIG network, 4 iterations on small "
        "patches; never touches the shipped weights.")] = False,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Ignore the checkpoint in the run folder and start over.")] = False,
    variant: Annotated[str | None, typer.Option(
        "--variant", help="Train one of the file's VARIANTS (recipe overrides, such as an "
        "ablation's): run folder runs/train/NAME-VARIANT, weights NAME-VARIANT.safetensors "
        "beside the file's WEIGHTS.", show_default=False)] = None,
    budget_s: Annotated[float | None, typer.Option(
        "--budget-s", help="Fit the length to this many seconds of training: time 100 "
        "iterations of a throw-away copy first, then train min(recipe, what fits) iterations "
        "from scratch (the schedule follows); recorded in the sidecar's 'fitted'.",
        show_default=False)] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="float32, or bf16: each step autocast to bfloat16 (GPUs with "
        "bf16 tensor cores; weights, optimiser state and validation stay float32). On CUDA "
        "the networks are also laid out channels-last.")] = "float32",
    probe_iterations: Annotated[int, typer.Option(
        "--probe-iterations", min=1, help="With --budget-s: how many iterations are timed "
        "(after 3 of warm-up).")] = 100,
    probe_barrier: Annotated[str | None, typer.Option(
        "--probe-barrier", help="DIR:N. With --budget-s, for N runs started together on one "
        "device: each waits until all N have reached their probe (a file each in DIR), so "
        "that each times the load it trains under.", show_default=False)] = None,
):
    """Train a submission by the recipe it declares, on the train split only.

    Random LR/HR patch pairs, as the harness presents slices at evaluation
    (fixed intensity window, LR interpolated along z). The last train
    specimens are held out for validation; the test subset is never read.
    Progress, a log and a checkpoint go to the run folder: the same command
    resumes after an interruption. At the end the best weights (safetensors)
    are written with a sidecar WEIGHTS.json recording their sha256.

    \b
    Examples:
      bonesr-bench train baselines/fsrcnn.py
      bonesr-bench train baselines/rcan.py --device cuda
      bonesr-bench train baselines/rcan.py --device cuda --precision bf16 --budget-s 200
      bonesr-bench train baselines/pix2pix.py --split mini --tiny
      bonesr-bench train baselines/bioaware.py --variant euler
    """
    from bonesr_bench.training import TrainOptions
    from bonesr_bench.training import train as run_training

    opts = TrainOptions(split=split, run_dir=run_dir, weights=weights, device=device,
                        iterations=iterations, tiny=tiny, restart=restart,
                        variant=variant, budget_s=budget_s, precision=precision,
                        barrier=probe_barrier, probe=probe_iterations)
    labels = {"data": ("loading the train split", ""), "train": ("training", "it")}
    try:
        with errors(), progress(labels) as report:
            outcome = run_training(str(submission), opts, report,
                                   log=lambda line: err.print(line, highlight=False,
                                                              soft_wrap=True))
    except KeyboardInterrupt:
        raise fail("interrupted; the checkpoint is saved: run the same command to resume",
                   130) from None
    rec = outcome.record
    print(f"{outcome.name}: {rec['n_parameters']:,} parameters, {rec['iterations']} iterations "
          f"in {rec['seconds']:.0f} s, best validation L1 {rec['best_validation_l1']:.5f}")
    print(f"weights: {outcome.weights} (sha256 {outcome.sha256})")
