"""`bonesr-bench data ...`: build, verify and inspect splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bonesr_bench.cli.common import (
    SPLIT_HELP,
    VERSION_HELP,
    Device,
    SplitPath,
    app,
    console,
    default_split,
    err,
    errors,
    fail,
    progress,
    split_config,
    store_name,
)
from bonesr_bench.params import label_unit

data_app = typer.Typer(help="Build, verify and inspect benchmark splits (zarr stores).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build(
    split: Annotated[str, typer.Option("--split", help=SPLIT_HELP)] = "all",
    version: Annotated[str, typer.Option("--version", help=VERSION_HELP)] = "v2",
    out: Annotated[str | None, typer.Option(
        "--out", help="Where to write the zarr store: a path, or a URL (file://, s3://, gs://, "
        "memory://) that workers on other machines can read. Default: the per-user cache.",
        show_default=False)] = None,
    device: Device = "auto",
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
        from bonesr_bench.split import is_url

        if is_url(out):
            raise fail(f"--out {out}: --from-scans writes a local store; give a path (and copy "
                       "it to shared or object storage afterwards)")
        return _build_from_scans(from_scans, Path(out), split_id, scale, trabecula_um, pore_um,
                                 tv_weight, lr_tv_weight)
    from bonesr_bench.morphometry.torch_backend import resolve_device
    from bonesr_bench.split import as_location, build, default_path

    config, part = split_config(split, version)
    if donor is not None:
        from bonesr_bench.split import SPLITS

        if donor != "bonebox":
            raise fail(f"--donor must be bonebox, got {donor!r}")
        config, part = SPLITS["bonebox"], "all"
    path = as_location(out) if out else default_path(config)
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    n = len(config.specimens(part))
    with errors(), progress({"build": (f"building {store_name(path)} ({part})",
                                       "specimens")}) as report:
        fp = build(path, config, part=part, device=dev, workers=workers,
                   progress=lambda name, done, total: report("build", done, n, name))
    err.print(f"built {path}  fingerprint {fp[:16]}")


def _build_from_scans(table: Path, out: Path, split_id, scale, trabecula_um, pore_um,
                      tv_weight: float, lr_tv_weight: float | None):
    from bonesr_bench.split.from_scans import MaskOptions, build_from_scans

    if not (trabecula_um > 0 and pore_um >= 0):
        raise fail("--trabecula-um must be positive and --pore-um at least 0 (micrometres)")
    if tv_weight < 0 or (lr_tv_weight is not None and lr_tv_weight < 0):
        raise fail("--tv-weight and --lr-tv-weight must be at least 0 (0: no TV denoising)")
    stages = {"survey": "reading scans", "register": "registering LR to HR",
              "masks": "finding regions", "write": "writing", "specimens": "specimens"}
    labels = {"survey": ("reading scans", "scans"), "specimens": ("specimens", "specimens")}
    with errors(), progress(labels) as report:

        def on_stage(stage, done, total, info=""):
            if stage == "survey":
                report("survey", done, total, info)
            else:
                report("specimens", done, total, f"{stages[stage]} {info}")

        result = build_from_scans(table, out, scale=scale, split_id=split_id,
                                  masks=MaskOptions(pore_um=pore_um, trabecula_um=trabecula_um),
                                  tv_weight=tv_weight, lr_tv_weight=lr_tv_weight,
                                  progress=on_stage)
    for note in result.warnings:
        err.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    table_out = Table(title=f"{result.split_id}: {result.n_specimens} specimens",
                      title_justify="left")
    for col in ("specimen", "NCC", "regions in LR view", "registration"):
        table_out.add_column(col, justify="left" if col == "specimen" else "right")
    for name, r in result.registration.items():
        table_out.add_row(name, f"{r['ncc']:.3f}", f"{100 * r['coverage']:.1f} %",
                          "[red]poor[/]" if r["poor"] else "ok")
    err.print(table_out)
    kept = f"; {len(result.kept)} unchanged specimen(s) kept" if result.kept else ""
    removed = f"; removed {', '.join(result.removed)}" if result.removed else ""
    err.print(f"built {out}  fingerprint {result.fingerprint[:16]}{kept}{removed}",
              highlight=False, soft_wrap=True)
    err.print(f"score a model on it: bonesr-bench evaluate <model.py> --split {out}",
              highlight=False, soft_wrap=True)


@data_app.command("verify")
def data_verify(
    path: SplitPath = None,
):
    """Recompute every array's sha256 and compare with the recorded table and fingerprint."""
    from bonesr_bench.split import SplitError, verify

    path = default_split(path)
    try:
        report = verify(path)
    except SplitError as exc:
        raise fail(str(exc)) from None
    if report.ok:
        console.print(f"[green]ok[/] {path}: every array matches its recorded hash; "
                        f"fingerprint {report.fingerprint}")
        if report.canonical is None:
            console.print("no canonical fingerprint is committed for this split")
        elif report.canonical:
            which = "" if len(report.parts) == 2 else f" ({report.parts[0]} part)"
            console.print(f"identical to the canonical split committed in the package{which}")
        else:
            for key, what in report.canonical_diffs.items():
                console.print(f"  {key}: {what}", highlight=False)
            verdict = ("scores are comparable with the canonical split" if report.comparable
                       else "scores are NOT comparable with the canonical split")
            console.print(f"differs from the canonical split: {verdict}")
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

    from bonesr_bench.scoring.protocol import TV_CANDIDATES, choose_tv_weights
    from bonesr_bench.split import open_group, segmentation_params

    path = default_split(path)

    with errors(), progress({"segment": ("segmenting train specimens", "specimens")}) as report:
        choice = choose_tv_weights(path, n_specimens=specimens, progress=lambda n, d, t:
                                   report("segment", d, t, n))
        meta = dict(open_group(path, mode="r").attrs["bonesr"])
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
    console.print(table)
    same = all(recorded[g].tv_weight == choice.chosen[g] for g in ("hr", "lr"))
    console.print(f"rule's choice: HR {choice.chosen['hr']:g}, LR {choice.chosen['lr']:g}; "
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
    from bonesr_bench.split import is_from_scans, location_exists, open_group, repair_hint

    path = default_split(path)
    with errors():
        if not location_exists(path):
            raise fail(f"{path}: no split here; build it with `bonesr-bench data build`")
        root = open_group(path, mode="r")
    meta = dict(root.attrs.get("bonesr", {}))
    repair = repair_hint(path, meta)
    keys = ["bv_tv_pct", "tb_th_um", "tb_sp_um", "conn_d_per_mm3", "da_ratio", "ct_th_um",
            "ct_po_pct"]
    table = Table(title=f"{meta.get('split', store_name(path))} v{meta.get('version', '?')}  "
                  f"fingerprint {str(meta.get('fingerprint', '-'))[:16]}", title_justify="left")
    table.add_column("subset")
    table.add_column("specimen", no_wrap=True)
    from_scans = is_from_scans(meta)
    if from_scans:  # no truth: the registration and regions of each specimen instead
        for col in ("HR voxels", "NCC", "regions in LR view", "regions", "HR scan"):
            table.add_column(col, justify="left" if col in ("regions", "HR scan") else "right")
    else:
        for k in keys:
            label, unit = label_unit(k)
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
    console.print(table)
    if incomplete:
        console.print(f"[yellow]incomplete:[/] {', '.join(incomplete)} (run `{repair}` to "
                        "finish them)", soft_wrap=True)
