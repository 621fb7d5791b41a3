"""`bonesr-bench morphometry`: bone parameters of one volume (a scan of your own)."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from bonesr_bench.cli.common import (
    DEFAULT_VOXEL_UM,
    Device,
    app,
    console,
    err,
    errors,
    fail,
)
from bonesr_bench.params import label_unit


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
    device: Device = "auto",
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
    from bonesr_bench.files import jsonable
    from bonesr_bench.morphometry import morphometry as measure

    vol, regions = _read(volume, mask)
    if regions_mode not in ("auto", "whole"):
        raise fail(f"--regions must be auto or whole, got {regions_mode!r}")
    if not trabecula_um > 0:
        raise fail(f"--trabecula-um must be a positive number of micrometres, got {trabecula_um}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise fail("--device cuda: torch sees no CUDA GPU; use --device cpu (or auto)")
    size = voxel_um if voxel_um is not None else (vol.voxel_um or DEFAULT_VOXEL_UM)
    if not (math.isfinite(size) and size > 0):
        raise fail(f"--voxel-um must be a positive number of micrometres, got {size}")
    bone = _bone(vol.data, volume, grey)
    if regions is None and regions_mode == "auto":
        regions = _auto_regions(bone, float(size), trabecula_um, quiet=as_json)
    if save_regions is not None:
        _save_regions(save_regions, regions, bone.shape, float(size))
    try:
        with err.status("measuring...", spinner="dots") if not as_json else nullcontext():
            result = measure(bone, float(size), regions=regions, device=device)
    except ValueError as exc:
        raise fail(f"{volume}: {exc}") from None
    if as_json:
        from bonesr_bench.files import jsonable

        print(json.dumps(jsonable(result)))
    else:
        _print_table(result, volume, vol.data.shape, size)


def _read(volume: Path, mask: Path | None):
    """(the volume read, its regions from --mask or None)."""
    from bonesr_bench.split.readers import read_volume

    with errors():
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
    return vol, regions


def _bone(data: np.ndarray, volume: Path, grey: bool) -> np.ndarray:
    """The bone mask: segmented (--grey) or the binary volume itself."""
    if grey:
        from bonesr_bench.scoring.segmentation import segment

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
    return bone


def _auto_regions(bone: np.ndarray, voxel_um: float, trabecula_um: float, *, quiet: bool):
    """Regions found from the bone, or None (measured whole) where there is no cortex."""
    from bonesr_bench.split.regions import NoCortexError, auto_regions

    try:
        with err.status("finding regions...", spinner="dots") if not quiet else nullcontext():
            regions = auto_regions(bone, voxel_um, trabecula_um=trabecula_um)
    except NoCortexError:
        err.print("no cortex around a marrow cavity: the whole volume is measured as a "
                  "trabecular VOI (--mask to give regions)", highlight=False)
        return None
    err.print(f"regions found automatically: cortical envelope {int((regions == 2).sum())} "
              f"voxels, trabecular VOI {int((regions == 1).sum())} voxels", highlight=False)
    return regions


def _save_regions(path: Path, regions, shape, voxel_um: float) -> None:
    from bonesr_bench.split.readers import VolumeReadError, write_volume

    try:
        write_volume(path, regions if regions is not None else np.ones(shape, np.uint8),
                     voxel_um)
    except (VolumeReadError, OSError) as exc:
        raise fail(f"--save-regions: {exc}") from None


def _print_table(result: dict, volume: Path, shape, size: float) -> None:
    from bonesr_bench.files import jsonable
    from bonesr_bench.morphometry import CONVENTIONS

    table = Table(title=f"{volume.name}  ({shape[0]}×{shape[1]}×{shape[2]} voxels, "
                  f"{size:g} µm)", title_justify="left")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("key", style="dim")
    for key, value in result.items():
        label, unit = label_unit(key)
        text = "undefined" if jsonable(value) is None else (
            f"{value:d}" if isinstance(value, int) else f"{value:.4g}")
        table.add_row(label, text, unit, key)
    console.print(table)
    console.print(f"[dim]conventions v{CONVENTIONS['version']}: Tb.N = {CONVENTIONS['tb_n']}; "
                  "thickness as BoneJ; structures cut by the image border continue.[/]")
