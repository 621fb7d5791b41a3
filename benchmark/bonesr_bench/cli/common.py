"""What every command shares: the app, the error console and the one error handler, option types
(typer ``Annotated`` aliases), and one progress helper (rich bars on a terminal, plain lines
with counts and an ETA elsewhere: a file, a CI log)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from bonesr_bench import __version__
from bonesr_bench.errors import BenchError

app = typer.Typer(
    name="bonesr-bench",
    help="Benchmark super-resolution of bone micro-CT on bone morphometry, not only PSNR/SSIM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
console = Console()  # standard output

DEFAULT_VOXEL_UM = 10.5

#: ``--device`` of every command that computes: a choice, so that a typo is one clear line
Device = Annotated[Literal["auto", "cpu", "cuda"], typer.Option(
    "--device", help="auto: CUDA when torch sees a GPU, else the CPU; cpu; cuda.")]
SplitPath = Annotated[str | None, typer.Argument(
    help="A split's zarr store: a path, or a URL (file://, s3://, gs://, memory://; s3:// and "
    "gs:// need s3fs or gcsfs). Default: the v2 split in the per-user cache.",
    show_default=False)]
ResultsDir = Annotated[Path, typer.Option("--results", help="The leaderboard's results folder.")]

SPLIT_HELP = "test | train | all (the split's parts), or mini (a tiny split for tests)."
VERSION_HELP = ("v2 (default: the LR scan a separate, registered acquisition, calibrated against "
                "the reference study; each grid segmented with its own TV weight) or v1 (the "
                "first split, kept buildable with its committed fingerprint).")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def errors(*also: type[Exception]) -> Iterator[None]:
    """The one error handler: a :class:`BenchError` (or one of ``also``) inside the block ends
    the command with its one line and exit code, no traceback."""
    try:
        yield
    except BenchError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except also as exc:
        raise fail(str(exc)) from None


def _version(value: bool):
    if value:
        print(f"bonesr-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    """Benchmark super-resolution of bone micro-CT on bone morphometry, not only PSNR/SSIM."""


def split_config(split: str, version: str = "v2"):
    """(config, part) for `data build --split/--version`."""
    from bonesr_bench.split import SPLITS

    if split not in ("test", "train", "all", "mini"):
        raise fail(f"--split must be test, train, all or mini, got {split!r}")
    if version not in ("v1", "v2"):
        raise fail(f"--version must be v1 or v2, got {version!r}")
    if split == "mini":
        return SPLITS["mini" if version == "v2" else "mini-v1"], "all"
    return SPLITS[version], split


def default_split(path: str | Path | None):
    """``path`` (a local ``Path``, or a URL string), else the default split in the per-user
    cache."""
    from bonesr_bench.split import DEFAULT_SPLIT, SPLITS, as_location, default_path

    return as_location(path) if path else default_path(SPLITS[DEFAULT_SPLIT])


def store_name(location) -> str:
    """The last part of a store's path or URL (``synth-v2.zarr``)."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


#: a progress callback: (stage, done, total, info)
Progress = Callable[[str, float, float, str], None]


class _Lines:
    """Plain progress lines (not a terminal): one per stage at its start, then at most one every
    ``every_s`` seconds, and one at its end; count, rate and ETA."""

    def __init__(self, labels: dict[str, tuple[str, str]], every_s: float = 10.0):
        self.labels, self.every_s = labels, every_s
        self.start: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, stage, done, total, info=""):
        now = time.monotonic()
        first = stage not in self.start
        self.start.setdefault(stage, now)
        end = total and done >= total
        if not (first or end or now - self.last.get(stage, 0) >= self.every_s):
            return
        if end and self.last.get(stage) == -1:
            return
        desc, unit = self.labels.get(stage, (stage, ""))
        took = now - self.start[stage]
        eta = (f", ETA {took / done * (total - done):.0f} s" if done and not end and took >= 1
               else "")
        what = f" {unit}" if unit else ""
        note = f" ({info})" if info else ""
        err.print(f"{desc}: {done:g}/{total:g}{what}{note}, {took:.0f} s{eta}", highlight=False,
                  soft_wrap=True)
        self.last[stage] = -1 if end else now


@contextlib.contextmanager
def progress(labels: dict[str, tuple[str, str]]) -> Iterator[Progress]:
    """A ``progress(stage, done, total, info)`` callback for long work: one rich bar per stage
    on a terminal, else :class:`_Lines`. ``labels[stage]`` = (description, unit or "")."""
    if not err.is_terminal:
        yield _Lines(labels)
        return
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            unit = task.fields.get("unit", "")
            if not task.speed or not unit:
                return Text("")
            return Text(f"{task.speed:.1f} {unit}/s", style="cyan")

    tasks: dict = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[info]}", style="dim"), Rate(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=err,
                  transient=False) as bar:

        def update(stage, done, total, info=""):
            if stage not in tasks:
                desc, unit = labels.get(stage, (stage, ""))
                tasks[stage] = bar.add_task(desc, total=total, info="", unit=unit)
            bar.update(tasks[stage], completed=done, total=total, info=info)

        yield update
