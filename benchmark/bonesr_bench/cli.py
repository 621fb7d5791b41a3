"""The ``bonesr-bench`` command line. Thin: parse, call the library, print."""

from __future__ import annotations

import json
import math
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .labels import PARAM_LABELS

app = typer.Typer(
    name="bonesr-bench",
    help="Benchmark super-resolution of bone micro-CT on bone morphometry, not only PSNR/SSIM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

DEFAULT_VOXEL_UM = 10.5

UNITS = PARAM_LABELS


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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


@app.command()
def morphometry(
    volume: Annotated[Path, typer.Argument(
        help="Volume to measure: .npy, .tif/.tiff stack, .nrrd, .nii/.nii.gz, a zarr array, "
        "a Scanco .isq or .aim (AIM needs itk-ioscanco), or a DICOM series (folder or .dcm).",
        show_default=False)],
    voxel_um: Annotated[float | None, typer.Option(
        "--voxel-um", help="Isotropic voxel size in µm. Default: the file's, else 10.5.",
        show_default=False)] = None,
    mask: Annotated[Path | None, typer.Option(
        "--mask", help="Region volume of the same shape: 1 = trabecular VOI, 2 = cortical "
        "envelope (cortical bone with its pores). A 0/k mask is a trabecular VOI. "
        "Overrides --regions.", show_default=False)] = None,
    regions_mode: Annotated[str, typer.Option(
        "--regions", help="Without --mask: auto finds the periosteal and endosteal surfaces, "
        "the cortical envelope and the trabecular VOI from the bone (a volume with no cortex "
        "around a marrow cavity is measured whole, as a trabecular VOI); whole: the whole "
        "volume is the trabecular VOI.")] = "auto",
    save_regions: Annotated[Path | None, typer.Option(
        "--save-regions", help="Write the regions used (0/1/2) to this file (.npy, .tif, "
        ".nrrd, .nii.gz) to inspect or edit them, then pass it back with --mask.",
        show_default=False)] = None,
    trabecula_um: Annotated[float, typer.Option(
        "--trabecula-um", help="Automatic regions: half the thickness (µm) of the thickest "
        "trabecula; the cortex must be thicker than twice this.")] = 50.0,
    grey: Annotated[bool, typer.Option(
        "--grey", help="Segment a grey volume first (TV denoising then two-class Otsu).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (NaN/undefined values as null).")] = False,
    device: Annotated[str, typer.Option(
        "--device", help="auto: CUDA when torch sees a GPU, else CPU; cpu; cuda.")] = "auto",
):
    """Measure trabecular and cortical bone parameters (BoneJ definitions, physical units).

    A whole bone section (a tibia scan) is split automatically into its cortical envelope and
    trabecular VOI; check them with --save-regions, correct them and pass them with --mask.

    \b
    Examples:
      bonesr-bench morphometry C0001234.ISQ --grey --save-regions regions.nrrd
      bonesr-bench morphometry bone.nrrd --voxel-um 10.5
      bonesr-bench morphometry scan.tif --grey --mask regions.npy --json
    """
    from .io import VolumeReadError, read_volume, write_volume
    from .morphometry import CONVENTIONS
    from .morphometry import morphometry as measure
    from .result import jsonable
    from .segmentation import segment

    try:
        vol = read_volume(volume)
        regions = None
        if mask is not None:
            regions = read_volume(mask).data
            if regions.shape != vol.data.shape:
                raise fail(f"mask {mask} has shape {regions.shape} but {volume} has "
                           f"{vol.data.shape}; give a mask of the same shape")
            if not np.any(regions):
                raise fail(f"mask {mask} is all zero: mark the trabecular VOI with 1 and the "
                           "cortical envelope with 2")
    except VolumeReadError as exc:
        raise fail(str(exc)) from None
    if regions_mode not in ("auto", "whole"):
        raise fail(f"--regions must be auto or whole, got {regions_mode!r}")
    if not trabecula_um > 0:
        raise fail(f"--trabecula-um must be a positive number of micrometres, got {trabecula_um}")
    if device not in ("auto", "cpu", "cuda"):
        raise fail(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise fail("--device cuda: torch sees no CUDA GPU; use --device cpu (or auto)")
    size = voxel_um if voxel_um is not None else (vol.voxel_um or DEFAULT_VOXEL_UM)
    if not (math.isfinite(size) and size > 0):
        raise fail(f"--voxel-um must be a positive number of micrometres, got {size}")
    data = vol.data
    if grey:
        try:
            bone = segment(data)
        except ValueError as exc:
            raise fail(f"{volume}: {exc}") from None
    else:
        values = np.unique(data)
        if values.size > 2 or (values.size == 2 and values[0] != 0):
            raise fail(f"{volume} is not binary ({values.size} distinct values); pass --grey to "
                       "segment it (TV + Otsu), or give a 0/1 volume")
        bone = data != 0
    if not bone.any():
        raise fail(f"{volume} contains no bone (every voxel is background)")
    if regions is None and regions_mode == "auto":
        from .masks import NoCortexError, auto_regions

        try:
            with err.status("finding regions...", spinner="dots") if not as_json else \
                    nullcontext():
                regions = auto_regions(bone, float(size), trabecula_um=trabecula_um)
            err.print(f"regions found automatically: cortical envelope "
                      f"{int((regions == 2).sum())} voxels, trabecular VOI "
                      f"{int((regions == 1).sum())} voxels", highlight=False)
        except NoCortexError:
            err.print("no cortex around a marrow cavity: the whole volume is measured as a "
                      "trabecular VOI (--mask to give regions)", highlight=False)
    if save_regions is not None:
        try:
            write_volume(save_regions, regions if regions is not None else
                         np.ones(bone.shape, np.uint8), float(size))
        except (VolumeReadError, OSError) as exc:
            raise fail(f"--save-regions: {exc}") from None
    try:
        with err.status("measuring...", spinner="dots") if not as_json else nullcontext():
            result = measure(bone, float(size), regions=regions, device=device)
    except ValueError as exc:
        raise fail(f"{volume}: {exc}") from None
    if as_json:
        print(json.dumps(jsonable(result)))
        return
    table = Table(title=f"{volume.name}  ({data.shape[0]}×{data.shape[1]}×{data.shape[2]} voxels, "
                  f"{size:g} µm)", title_justify="left")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("key", style="dim")
    for key, value in result.items():
        label, unit = UNITS[key]
        text = "undefined" if jsonable(value) is None else (
            f"{value:d}" if isinstance(value, int) else f"{value:.4g}")
        table.add_row(label, text, unit, key)
    Console().print(table)
    Console().print(f"[dim]conventions v{CONVENTIONS['version']}: Tb.N = {CONVENTIONS['tb_n']}; "
                    "thickness as BoneJ; structures cut by the image border continue.[/]")


data_app = typer.Typer(help="Build, verify and inspect benchmark splits (zarr stores).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

SPLIT_HELP = "test | train | all (the split's parts), or mini (a tiny split for tests)."
VERSION_HELP = ("v2 (default: the LR scan a separate, registered acquisition, calibrated against "
                "the reference study; each grid segmented with its own TV weight) or v1 (the "
                "first split, kept buildable with its committed fingerprint).")
SplitPath = Annotated[Path | None, typer.Argument(
    help="A split's zarr store. Default: the v2 split in the per-user cache.", show_default=False)]


def _split_config(split: str, version: str = "v2"):
    from .split import SPLITS

    if split not in ("test", "train", "all", "mini"):
        raise fail(f"--split must be test, train, all or mini, got {split!r}")
    if version not in ("v1", "v2"):
        raise fail(f"--version must be v1 or v2, got {version!r}")
    if split == "mini":
        return SPLITS["mini" if version == "v2" else "mini-v1"], "all"
    return SPLITS[version], split


def _default_split(path: Path | None) -> Path:
    from .split import DEFAULT_SPLIT, SPLITS, default_path

    return path or default_path(SPLITS[DEFAULT_SPLIT])


@data_app.command("build")
def data_build(
    split: Annotated[str, typer.Option("--split", help=SPLIT_HELP)] = "all",
    version: Annotated[str, typer.Option("--version", help=VERSION_HELP)] = "v2",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the zarr store. Default: the per-user cache.",
        show_default=False)] = None,
    device: Annotated[str, typer.Option(
        "--device", help="auto: CUDA when torch sees a GPU; cpu; cuda.")] = "auto",
    donor: Annotated[str | None, typer.Option(
        "--donor", help="bonebox: an out-of-distribution, trabecular-only test split made from "
        "the real human trabecular ROIs shipped with the package, through the same scanner.",
        show_default=False)] = None,
    from_scans: Annotated[Path | None, typer.Option(
        "--from-scans", help="Build a split from your own scans instead: a CSV with one row per "
        "specimen, `hr,lr,split` (HR scan, LR scan, train or test) and optional `name`, "
        "`regions`, `hr_voxel_um`, `lr_voxel_um` columns. Needs --out.",
        show_default=False, rich_help_panel="Splits from real scans")] = None,
    split_id: Annotated[str | None, typer.Option(
        "--id", help="The split's id in results (default: scans-<name of --out>).",
        show_default=False, rich_help_panel="Splits from real scans")] = None,
    scale: Annotated[int, typer.Option(
        "--scale", help="SR factor: the LR scan is resampled onto the exact grid of this many "
        "HR voxels per LR voxel.", rich_help_panel="Splits from real scans")] = 2,
    trabecula_um: Annotated[float, typer.Option(
        "--trabecula-um", help="Automatic regions: half the thickness (µm) of the thickest "
        "trabecula; the cortex must be thicker than twice this.",
        rich_help_panel="Splits from real scans")] = 50.0,
    pore_um: Annotated[float, typer.Option(
        "--pore-um", help="Automatic regions: radius (µm) of the largest cortical pore.",
        rich_help_panel="Splits from real scans")] = 20.0,
    tv_weight: Annotated[float, typer.Option(
        "--tv-weight", help="TV weight of the HR grid's segmentation (every entry; intensities "
        "mapped to [0, 1] by the split's window). A split from scans has no true geometry to "
        "choose it by (`data protocol` does that for synthetic splits): check it on your scans.",
        rich_help_panel="Splits from real scans")] = 0.08,
    lr_tv_weight: Annotated[float | None, typer.Option(
        "--lr-tv-weight", help="TV weight of the LR grid's segmentation (the LR reference row). "
        "Default: --tv-weight. The same weight smooths an LR scan twice as far in micrometres: "
        "a smaller one is fairer to it.", show_default=False,
        rich_help_panel="Splits from real scans")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Specimens built at once, each in its own single-threaded "
        "process (the bytes do not depend on it). Default: one per core, as memory allows "
        "(2.5 GB each).", show_default=False)] = None,
):
    """Build the synthetic split (specimens, simulated HR and LR scans, true geometry), or a split
    from your own HR/LR scans (--from-scans).

    Re-running resumes an interrupted build and repairs altered specimens; complete ones are kept.

    \b
    Examples:
      bonesr-bench data build                      # the v2 split, in the per-user cache
      bonesr-bench data build --version v1         # the first split
      bonesr-bench data build --split mini --out mini.zarr
      bonesr-bench data build --from-scans scans.csv --out my_split.zarr
      bonesr-bench evaluate baselines/fsrcnn.py --split my_split.zarr
    """
    if from_scans is not None:
        if split != "all" or donor is not None:
            raise fail("--from-scans builds a split from your table; leave out --split and "
                       "--donor")
        if out is None:
            raise fail("--from-scans needs --out: where to write the split, e.g. "
                       "--out my_split.zarr")
        return _build_from_scans(from_scans, out, split_id, scale, trabecula_um, pore_um,
                                 tv_weight, lr_tv_weight)
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .morphometry.torch_backend import resolve_device
    from .split import SplitError, build, default_path

    config, part = _split_config(split, version)
    if donor is not None:
        from .split import SPLITS

        if donor != "bonebox":
            raise fail(f"--donor must be bonebox, got {donor!r}")
        config, part = SPLITS["bonebox"], "all"
    path = out or default_path(config)
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise fail(str(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} specimens"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(f"building {path.name} ({part})", total=len(config.specimens(part)))
        try:
            fp = build(path, config, part=part, device=dev, workers=workers,
                       progress=lambda name, done, total: bar.update(task, completed=done))
        except SplitError as exc:
            bar.update(task, visible=False)
            problem = str(exc)
        else:
            problem = None
    if problem:
        raise fail(problem)
    err.print(f"built {path}  fingerprint {fp[:16]}")


def _build_from_scans(table: Path, out: Path, split_id, scale, trabecula_um, pore_um,
                      tv_weight: float, lr_tv_weight: float | None):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .scans import MaskOptions, ScansError, build_from_scans

    if not (trabecula_um > 0 and pore_um >= 0):
        raise fail("--trabecula-um must be positive and --pore-um at least 0 (micrometres)")
    if tv_weight < 0 or (lr_tv_weight is not None and lr_tv_weight < 0):
        raise fail("--tv-weight and --lr-tv-weight must be at least 0 (0: no TV denoising)")
    stages = {"survey": "reading scans", "register": "registering LR to HR",
              "masks": "finding regions", "write": "writing", "specimens": "specimens"}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        tasks = {}

        def progress(stage, done, total, info=""):
            key = "survey" if stage == "survey" else "specimens"
            if key not in tasks:
                tasks[key] = bar.add_task(stages[key], total=total, info="")
            bar.update(tasks[key], completed=done, total=total,
                       info=f"{stages[stage]} {info}" if key == "specimens" else info)

        try:
            report = build_from_scans(table, out, scale=scale, split_id=split_id,
                                      masks=MaskOptions(pore_um=pore_um,
                                                        trabecula_um=trabecula_um),
                                      tv_weight=tv_weight, lr_tv_weight=lr_tv_weight,
                                      progress=progress)
        except ScansError as exc:
            for task in tasks.values():
                bar.update(task, visible=False)
            report, problem = None, str(exc)
        else:
            problem = None
    if problem:
        raise fail(problem)
    for note in report.warnings:
        err.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    table_out = Table(title=f"{report.split_id}: {report.n_specimens} specimens",
                      title_justify="left")
    for col in ("specimen", "NCC", "regions in LR view", "registration"):
        table_out.add_column(col, justify="left" if col == "specimen" else "right")
    for name, r in report.registration.items():
        table_out.add_row(name, f"{r['ncc']:.3f}", f"{100 * r['coverage']:.1f} %",
                          "[red]poor[/]" if r["poor"] else "ok")
    err.print(table_out)
    kept = f"; {len(report.kept)} unchanged specimen(s) kept" if report.kept else ""
    removed = f"; removed {', '.join(report.removed)}" if report.removed else ""
    err.print(f"built {out}  fingerprint {report.fingerprint[:16]}{kept}{removed}",
              highlight=False, soft_wrap=True)
    err.print(f"score a model on it: bonesr-bench evaluate <model.py> --split {out}",
              highlight=False, soft_wrap=True)


@data_app.command("verify")
def data_verify(
    path: SplitPath = None,
):
    """Recompute every array's sha256 and compare with the recorded table and fingerprint."""
    from .split import SplitError, verify

    path = _default_split(path)
    try:
        report = verify(path)
    except SplitError as exc:
        raise fail(str(exc)) from None
    if report.ok:
        Console().print(f"[green]ok[/] {path}: every array matches its recorded hash; "
                        f"fingerprint {report.fingerprint}")
        if report.canonical is None:
            Console().print("no canonical fingerprint is committed for this split")
        elif report.canonical:
            which = "" if len(report.parts) == 2 else f" ({report.parts[0]} part)"
            Console().print(f"identical to the canonical split committed in the package{which}")
        else:
            for key, what in report.canonical_diffs.items():
                Console().print(f"  {key}: {what}", highlight=False)
            verdict = ("scores are comparable with the canonical split" if report.comparable
                       else "scores are NOT comparable with the canonical split")
            Console().print(f"differs from the canonical split: {verdict}")
        return
    problems = []
    if report.missing:
        problems.append(f"missing or incomplete specimens: {', '.join(report.missing)}")
    if report.altered:
        problems.append(f"altered arrays: {', '.join(report.altered)}")
    if not problems:
        problems.append("the recorded fingerprint does not match the arrays")
    raise fail(f"{path}: " + "; ".join(problems)
               + f"; run `{report.repair}` to repair it")


@data_app.command("protocol")
def data_protocol(
    path: SplitPath = None,
    specimens: Annotated[int, typer.Option(
        "--specimens", help="How many train specimens (the first, by name) the rule uses.")] = 8,
):
    """Rerun the rule that chose each grid's TV weight on the train part of a split, and compare
    with the weights the split records.

    Per grid (HR 10.5 µm: every entry; LR 21 µm: the LR reference row), every candidate weight
    segments the grid's own scan of each train specimen; the weight with the lowest mean
    biological error against the true geometry is the rule's choice. Needs the train part
    (`bonesr-bench data build --split train`); about 40 s a specimen on 2 cores.
    """
    from rich.table import Table

    from .protocol import TV_CANDIDATES, choose_tv_weights
    from .split import SplitError, segmentation_params

    path = _default_split(path)
    try:
        with _progress_bar() as bar:
            task = bar.add_task("segmenting train specimens", total=specimens, info="",
                                unit="specimens")
            choice = choose_tv_weights(path, n_specimens=specimens, progress=lambda n, d, t:
                                       bar.update(task, completed=d, total=t, info=n))
        import zarr

        meta = dict(zarr.open_group(str(path), mode="r").attrs["bonesr"])
    except SplitError as exc:
        raise fail(str(exc)) from None
    recorded = segmentation_params(meta)
    table = Table(title=f"mean biological error vs truth (%), {len(choice.specimens)} train "
                        "specimens")
    table.add_column("TV weight", justify="right")
    for grid in ("hr", "lr"):
        table.add_column(f"{grid.upper()} grid", justify="right")
    for w in TV_CANDIDATES:
        cells = []
        for grid in ("hr", "lr"):
            v = 100 * choice.errors[grid][w]
            mark = " *" if choice.chosen[grid] == w else ""
            cells.append(f"{v:.1f}{mark}")
        table.add_row(f"{w:g}", *cells)
    Console().print(table)
    same = all(recorded[g].tv_weight == choice.chosen[g] for g in ("hr", "lr"))
    Console().print(f"rule's choice: HR {choice.chosen['hr']:g}, LR {choice.chosen['lr']:g}; "
                    f"the split records HR {recorded['hr'].tv_weight:g}, LR "
                    f"{recorded['lr'].tv_weight:g}: "
                    + ("[green]the same[/]" if same else "[red]different[/]"))
    if not same:
        raise typer.Exit(1)


@data_app.command("info")
def data_info(
    path: SplitPath = None,
):
    """A table of the specimens with their true morphometry (splits from scans: registration
    quality and regions)."""
    import zarr

    from .split import is_from_scans, repair_hint

    path = _default_split(path)
    if not path.exists():
        raise fail(f"{path}: no split here; build it with `bonesr-bench data build`")
    root = zarr.open_group(str(path), mode="r")
    meta = dict(root.attrs.get("bonesr", {}))
    repair = repair_hint(path, meta)
    keys = ["bv_tv_pct", "tb_th_um", "tb_sp_um", "conn_d_per_mm3", "da_ratio", "ct_th_um",
            "ct_po_pct"]
    table = Table(title=f"{meta.get('split', path.name)} v{meta.get('version', '?')}  "
                  f"fingerprint {str(meta.get('fingerprint', '-'))[:16]}", title_justify="left")
    table.add_column("subset")
    table.add_column("specimen", no_wrap=True)
    from_scans = is_from_scans(meta)
    if from_scans:  # no truth: the registration and regions of each specimen instead
        for col in ("HR voxels", "NCC", "regions in LR view", "regions", "HR scan"):
            table.add_column(col, justify="left" if col in ("regions", "HR scan") else "right")
    else:
        for k in keys:
            label, unit = UNITS[k]
            table.add_column(f"{label}\n{unit}".strip(), justify="right")
    incomplete = []
    for subset in ("train", "test"):
        if subset not in root:
            continue
        for name in sorted(root[subset].group_keys()):
            attrs = root[f"{subset}/{name}"].attrs
            if not attrs.get("complete", False):
                incomplete.append(f"{subset}/{name}")
                continue
            if from_scans:
                r = attrs["registration"]
                table.add_row(subset, name, "×".join(map(str, root[f"{subset}/{name}/hr/0"].shape)),
                              f"{r['ncc']:.3f}" + (" [red]poor[/]" if r["poor"] else ""),
                              f"{100 * r['coverage']:.1f} %", attrs["masks"]["method"].split()[0],
                              Path(attrs["source"]["hr"]).name)
                continue
            m = attrs.get("truth_morphometry", {})
            table.add_row(subset, name,
                          *[("-" if m.get(k) is None else f"{m[k]:.3g}") for k in keys])
    Console().print(table)
    if incomplete:
        Console().print(f"[yellow]incomplete:[/] {', '.join(incomplete)} (run `{repair}` to "
                        "finish them)", soft_wrap=True)


EVAL_KEYS = ("bv_tv_pct", "tb_th_um", "tb_sp_um", "tb_n_per_mm", "da_ratio", "conn_d_per_mm3",
             "smi", "ct_th_um", "ct_po_pct", "po_n")


def _progress_bar():
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

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[info]}", style="dim"), Rate(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)


def _stage_progress(bar, labels: dict[str, tuple[str, str]]):
    """A ``progress(stage, done, total, info)`` callback that adds one bar per stage;
    ``labels[stage]`` = (description, unit of the rate column or "")."""
    tasks: dict = {}

    def progress(stage, done, total, info=""):
        if stage not in tasks:
            desc, unit = labels.get(stage, (stage, ""))
            tasks[stage] = bar.add_task(desc, total=total, info="", unit=unit)
        bar.update(tasks[stage], completed=done, total=total, info=info)

    return progress


@app.command()
def evaluate(
    submission: Annotated[str, typer.Argument(
        help="A submission .py file, a package.module:attribute, or an installed model name "
        "(see `bonesr-bench models`).", show_default=False)],
    split: Annotated[str | None, typer.Option(
        "--split", help="A split name (v2, v1, mini, bonebox: kept in the per-user cache and built "
        "on first use) or the path of a split's zarr store, such as one built from your own "
        "scans with `bonesr-bench data build --from-scans`. Default: v2.",
        show_default=False)] = None,
    subset: Annotated[str, typer.Option("--subset", help="test or train.")] = "test",
    out: Annotated[Path, typer.Option("--out", help="Runs folder: one sub-folder per entry with "
                                      "sr.zarr, worker.log and result.json.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(
        "--name", help="Entry (run folder) name. Default: the submission file's stem.",
        show_default=False)] = None,
    device: Annotated[str, typer.Option(
        "--device", help="auto: CUDA when torch sees a GPU, else CPU; cpu; cuda.")] = "auto",
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
):
    """Run an SR model on a split and score it: PSNR/SSIM and every bone parameter.

    The model runs in an isolated worker that sees the LR scans only. Its SR volumes go to
    OUT/ENTRY/sr.zarr, the result to OUT/ENTRY/result.json (written atomically). Re-running
    resumes finished specimens. Exit codes: 0 scored, 1 the submission failed (the result says
    why), 2 usage or data error.

    \b
    Examples:
      bonesr-bench evaluate baselines/bicubic.py
      bonesr-bench evaluate my_model.py --device cuda --amp --check-determinism
      bonesr-bench evaluate bicubic --split mini --json
    """
    from .evaluate import EvaluateOptions, EvaluationError
    from .evaluate import evaluate as run_evaluation

    opts = EvaluateOptions(split=split, subset=subset, out=out, entry=name, device=device,
                           batch_size=batch_size, amp=amp, timeout_s=timeout, force=force,
                           check_determinism=check_determinism, memory_gb=memory_gb)
    labels = {"build": ("building the split", ""),
              "references": ("scoring HR, LR and truth (once per split)", ""),
              "model": ("running the model", "slices"), "score": ("scoring", ""),
              "determinism": ("second run (determinism)", "slices")}
    with _progress_bar() as bar:
        progress = _stage_progress(bar, labels)
        try:
            outcome = run_evaluation(submission, opts, progress)
        except EvaluationError as exc:
            raise fail(str(exc)) from None
    res = outcome.result
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


@app.command()
def train(
    submission: Annotated[Path, typer.Argument(
        help="A submission .py file that declares a training RECIPE (all baselines/ do).",
        show_default=False)],
    split: Annotated[str | None, typer.Option(
        "--split", help="A split name (v2, v1, mini: built in the per-user cache on first use) or "
        "a split's zarr store. Only its train subset is read. Default: v2.",
        show_default=False)] = None,
    run_dir: Annotated[Path | None, typer.Option(
        "--run-dir", help="Checkpoint, log and best weights. Default: runs/train/NAME.",
        show_default=False)] = None,
    weights: Annotated[Path | None, typer.Option(
        "--weights", help="Where the trained weights go. Default: the file's WEIGHTS (with "
        "--tiny: inside the run folder).", show_default=False)] = None,
    device: Annotated[str, typer.Option(
        "--device", help="auto: CUDA when torch sees a GPU, else CPU; cpu; cuda.")] = "auto",
    iterations: Annotated[int | None, typer.Option(
        "--iterations", help="Override the recipe's number of iterations.",
        show_default=False)] = None,
    tiny: Annotated[bool, typer.Option(
        "--tiny", help="Smoke run: the file's TINY_CONFIG network, 4 iterations on small "
        "patches; never touches the shipped weights.")] = False,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Ignore the checkpoint in the run folder and start over.")] = False,
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
      bonesr-bench train baselines/pix2pix.py --split mini --tiny
    """
    from .training import TrainingError, TrainOptions
    from .training import train as run_training

    opts = TrainOptions(split=split, run_dir=run_dir, weights=weights, device=device,
                        iterations=iterations, tiny=tiny, restart=restart)
    labels = {"data": ("loading the train split", ""), "train": ("training", "it")}
    with _progress_bar() as bar:
        progress = _stage_progress(bar, labels)
        try:
            outcome = run_training(str(submission), opts, progress,
                                   log=lambda line: bar.console.print(line, highlight=False,
                                                                      soft_wrap=True))
        except TrainingError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; the checkpoint is saved: run the same command to resume",
                       130) from None
    rec = outcome.record
    print(f"{outcome.name}: {rec['n_parameters']:,} parameters, {rec['iterations']} iterations "
          f"in {rec['seconds']:.0f} s, best validation L1 {rec['best_validation_l1']:.5f}")
    print(f"weights: {outcome.weights} (sha256 {outcome.sha256})")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:+.1f} %"


def _print_summary(res: dict, path: Path):
    agg = res["aggregates"]
    con = Console()
    m = res["model"]
    ps, ss = agg["psnr_db"], agg["ssim"]

    def ci(s, f):
        return (f"[{f.format(s['ci95'][0])}, {f.format(s['ci95'][1])}]"
                if s["ci95"][0] is not None else "")

    con.print(f"[bold]{m['name']}[/] on {res['split']['id']} {res['split']['subset']} "
              f"({res['split']['n_specimens']} specimens): PSNR {ps['mean']:.2f} dB "
              f"{ci(ps, '{:.2f}')}, SSIM {ss['mean']:.4f} {ci(ss, '{:.4f}')}", highlight=False)
    from .register import POOR_NCC

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
    table.add_column("entry vs HR", justify="right")
    table.add_column("LR vs HR", justify="right")
    for k in EVAL_KEYS:
        p = agg["params"][k]
        label, unit = UNITS[k]
        def f(s):
            return "-" if s["mean"] is None else f"{s['mean']:.3g}"

        cells = [f"{label} {unit}".strip(), f(p["entry"]), f(p["hr"]), f(p["lr"])]
        if has_truth:
            cells.append(f(p["truth"]))
        cells += [_pct(p["entry_rel_err_vs_hr"]["mean"]), _pct(p["lr_rel_err_vs_hr"]["mean"])]
        table.add_row(*cells)
    con.print(table)
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


leaderboard_app = typer.Typer(help="The committed results: add a scored entry, write the HR "
                               "and LR reference rows, print Table I, build the site.",
                               no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")
RESULTS_OPTION = typer.Option("--results", help="The leaderboard's results folder.")


@leaderboard_app.command("add")
def leaderboard_add(
    results: Annotated[list[Path], typer.Argument(
        help="result.json files written by `bonesr-bench evaluate`.", show_default=False)],
    results_dir: Annotated[Path, RESULTS_OPTION] = Path("leaderboard/results"),
    allow_other_split: Annotated[bool, typer.Option(
        "--allow-other-split", help="Accept a result scored on a non-canonical split (a "
        "leaderboard of your own split).")] = False,
):
    """Copy scored results into the leaderboard as ENTRY.json, after checking each validates
    against the result schema and was scored on the leaderboard's (canonical) split.

    \b
    Example:
      bonesr-bench leaderboard add runs/fsrcnn/result.json
    """
    from .leaderboard import LeaderboardError, add

    for path in results:
        try:
            print(f"added: {add(path, results_dir, allow_other_split=allow_other_split)}")
        except LeaderboardError as exc:
            raise fail(str(exc)) from None


@leaderboard_app.command("references")
def leaderboard_references(
    split: Annotated[str | None, typer.Option(
        "--split", help="A split name or store path (default: v2, built on first use).",
        show_default=False)] = None,
    results_dir: Annotated[Path, RESULTS_OPTION] = Path("leaderboard/results"),
):
    """Write the reference rows: the HR scan and the LR scan themselves, segmented and measured
    like every entry, with their errors against HR and the true geometry (hr-scan.json,
    lr-scan.json)."""
    from .evaluate import EvaluationError
    from .leaderboard import LeaderboardError, write_references

    with _progress_bar() as bar:
        progress = _stage_progress(bar, {"build": ("building the split", ""),
                                         "references": ("scoring HR, LR and truth", "")})
        try:
            paths = write_references(split, results_dir, progress=progress)
        except (EvaluationError, LeaderboardError) as exc:
            raise fail(str(exc)) from None
    for p in paths:
        print(f"written: {p}")


@leaderboard_app.command("build")
def leaderboard_build(
    results_dir: Annotated[Path, RESULTS_OPTION] = Path("leaderboard/results"),
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
    from .site import build

    if not results_dir.is_dir():
        raise fail(f"--results {results_dir}: no such folder; give the folder of result JSONs")
    report = build(results_dir, out)
    print(f"site: {report.out / 'index.html'} ({len(report.entries)} entries, "
          f"{len(report.references)} reference rows, {len(report.excluded)} excluded)")
    for name, why in report.excluded:
        err.print(f"[yellow]excluded:[/] {name}: {why}", highlight=False, soft_wrap=True)


@leaderboard_app.command("validate")
def leaderboard_validate(
    results_dir: Annotated[Path, RESULTS_OPTION] = Path("leaderboard/results"),
):
    """Check every result file: valid against the schema, scored or a reference row, all on one
    split. Exit 1 listing the bad files (what CI runs before publishing)."""
    from .leaderboard import load_results

    if not results_dir.is_dir():
        raise fail(f"--results {results_dir}: no such folder; give the folder of result JSONs")
    kept, excluded, fp = load_results(results_dir)
    for name, why in excluded:
        err.print(f"[bold red]invalid:[/] {name}: {why}", highlight=False, soft_wrap=True)
    print(f"{len(kept)} valid result files on split {fp[:16] if fp else '-'}, "
          f"{len(excluded)} invalid")
    if excluded:
        raise typer.Exit(1)


@leaderboard_app.command("table")
def leaderboard_table(
    results_dir: Annotated[Path, RESULTS_OPTION] = Path("leaderboard/results"),
):
    """Print the study's Table I for the committed results (Markdown): mean ± SD of every
    parameter for HR, each entry (by PSNR) and LR, the true geometry, PSNR/SSIM and the
    biological errors."""
    from .leaderboard import load_results, markdown, table_one

    results = load_results(results_dir)[0]
    if not results:
        raise fail(f"{results_dir}: no valid result files; add some with `bonesr-bench "
                   "leaderboard add runs/ENTRY/result.json`")
    print(markdown(table_one(results)))


@app.command()
def models():
    """List the installed models (entry points in the group bonesr_bench.models).

    A submission file or a package.module:attribute needs no installation: pass it directly.
    """
    from .models import ENTRY_POINT_GROUP, installed_models

    found = installed_models()
    if not found:
        Console().print(f"no installed models (entry point group {ENTRY_POINT_GROUP})")
        return
    table = Table(title="installed models", title_justify="left")
    table.add_column("name")
    table.add_column("entry point")
    for name, target in found:
        table.add_row(name, target)
    Console().print(table)


def run() -> None:  # pragma: no cover - console entry for `python -m bonesr_bench`
    sys.exit(app())
