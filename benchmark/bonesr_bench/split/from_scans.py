"""A split built from real scans: ``bonesr-bench data build --from-scans scans.csv``.

One row of the table per specimen: its HR scan, its LR scan (any format
:func:`split.readers.read_volume` reads, voxel sizes from the files) and ``train`` or ``test``.
Each pair goes through the reference study's pipeline and is written in the layout of the synthetic
split (``benchmark/docs/DESIGN.md`` §1.1, §1.10), without ``labels/truth``:

1. survey (before anything is written): read every scan, check voxel sizes and shapes, and fix the
   split's intensity calibration (uint16 storage: lossless for integer scans whose values span at
   most 65 536 levels, with an offset of 0 or -32768 that does not depend on which specimens are
   in) and its intensity window (median over specimens of the HR scans' 0.5th and 99.5th
   percentiles, in the files' unit), the window of scoring and of its segmentation;
2. the HR scan is cropped to a multiple of ``scale`` voxels; the LR scan is registered onto it
   (affine, ANTsPy, :mod:`register`) and resampled onto the exact x``scale`` grid; the normalised
   cross-correlation and the share of the regions inside the LR field of view are stored with
   the specimen, and a warning raised below :data:`register.POOR_NCC` or :data:`MIN_COVERAGE`;
3. the regions (trabecular VOI, cortical envelope) come from the HR scan segmented in its own
   window (:func:`split.regions.auto_regions`), or from the row's own ``regions`` file;
4. arrays are hashed; the specimen is marked complete last, the split's table and fingerprint
   written at the end, as :func:`split.build` does. Re-running with the same table keeps the
   specimens whose sources, calibration and parameters are unchanged; specimens no longer in the
   table are removed.

Table (CSV, header optional): ``hr,lr,split`` plus optional ``name`` (default: the HR file's stem),
``regions`` (a 0/1/2 volume on the HR grid), ``hr_voxel_um`` and ``lr_voxel_um`` (for files
that state none). Relative paths are relative to the table's folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import zarr

from bonesr_bench.errors import BenchError
from bonesr_bench.names import check_name
from bonesr_bench.scoring.segmentation import SegmentationParams
from bonesr_bench.split.readers import VolumeReadError, read_volume

__all__ = ["ScanRow", "ScansError", "MaskOptions", "ScanBuildReport", "read_table", "survey",
           "build_from_scans", "MIN_COVERAGE"]

SPLIT_VERSION = "1"
#: changes whenever the registration's result can change (2: Gauss-Newton refinement)
REGISTRATION_VERSION = 2
#: the fraction of the regions (VOI and cortex) that must lie inside the LR scan's field of view
MIN_COVERAGE = 0.99
#: relative spread allowed between the voxel sizes of the HR (or LR) scans of one split
VOXEL_TOLERANCE = 0.01
COLUMNS = ("hr", "lr", "split", "name", "regions", "hr_voxel_um", "lr_voxel_um")

Progress = Callable[[str, int, int, str], None]


def _noop(stage: str, done: int, total: int, info: str = "") -> None:
    pass


class ScansError(BenchError, ValueError):
    """A scan table or scan that cannot make a split; the message names it and the fix."""


@dataclass(frozen=True)
class ScanRow:
    """One specimen of the table: paths resolved, voxel sizes in µm where the table gives them."""

    name: str
    subset: str  # train | test
    hr: Path
    lr: Path
    regions: Path | None = None
    hr_voxel_um: float | None = None
    lr_voxel_um: float | None = None
    line: int = 0


@dataclass(frozen=True)
class MaskOptions:
    """Parameters of the automatic regions (:func:`split.regions.auto_regions`), in µm."""

    pore_um: float = 20.0
    trabecula_um: float = 50.0
    voi_margin_um: float = 30.0


@dataclass
class ScanBuildReport:
    path: Path
    fingerprint: str
    split_id: str
    n_specimens: int
    kept: list[str] = field(default_factory=list)  # unchanged specimens not rebuilt
    removed: list[str] = field(default_factory=list)  # in the store, no longer in the table
    registration: dict[str, dict] = field(default_factory=dict)  # name -> ncc, coverage, poor
    warnings: list[str] = field(default_factory=list)


def _float(value: str, what: str, where: str) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        v = float(value)
    except ValueError:
        raise ScansError(f"{where}: {what} {value!r} is not a number of micrometres") from None
    if not (np.isfinite(v) and v > 0):
        raise ScansError(f"{where}: {what} must be a positive number of micrometres, got {v}")
    return v


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".tiff", ".tif", ".npy", ".zarr",
                   ".isq", ".aim", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_table(path: str | Path) -> list[ScanRow]:
    """The rows of a scan table (see the module docstring); every problem is a
    :class:`ScansError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ScansError(f"{path}: no such file; give a CSV with one row per specimen: "
                         "hr,lr,split (HR scan, LR scan, train or test)")
    try:
        lines = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ScansError(f"{path}: not a readable CSV file ({exc})") from None
    numbered = [(i + 1, [c.strip() for c in row]) for i, row in enumerate(lines)
                if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
    if not numbered:
        raise ScansError(f"{path}: no rows; give one row per specimen: hr,lr,split")
    first = [c.lower() for c in numbered[0][1]]
    if "hr" in first and "lr" in first:
        unknown = [c for c in first if c not in COLUMNS]
        if unknown:
            raise ScansError(f"{path} line {numbered[0][0]}: unknown column(s) "
                             f"{', '.join(unknown)}; use {', '.join(COLUMNS)}")
        if "split" not in first:
            raise ScansError(f"{path} line {numbered[0][0]}: no `split` column; say train or "
                             "test for each specimen")
        header, numbered = first, numbered[1:]
    else:
        header = list(COLUMNS[:4])
    rows, names = [], {}
    for line, cells in numbered:
        where = f"{path} line {line}"
        if len(cells) < 3 or len(cells) > len(header):
            raise ScansError(f"{where}: {len(cells)} field(s); expected "
                             f"{', '.join(header[:3])}"
                             + (f" (and optionally {', '.join(header[3:])})"
                                if len(header) > 3 else ""))
        rec = dict(zip(header, cells, strict=False))
        subset = rec.get("split", "").lower()
        if subset not in ("train", "test"):
            raise ScansError(f"{where}: split {rec.get('split', '')!r} must be train or test")
        files = {}
        for key in ("hr", "lr", "regions"):
            value = rec.get(key, "")
            if not value:
                if key != "regions":
                    raise ScansError(f"{where}: no {key.upper()} scan given")
                continue
            p = Path(value).expanduser()
            p = p if p.is_absolute() else path.parent / p
            if not p.exists():
                what = "regions file" if key == "regions" else f"{key.upper()} scan"
                raise ScansError(f"{where}: {what} {p}: no such file or directory")
            files[key] = p
        name = rec.get("name") or _stem(files["hr"])
        try:
            check_name(name, "specimen name")
        except ValueError as exc:
            raise ScansError(f"{where}: {exc} (give a `name` column)") from None
        if name in names:
            raise ScansError(f"{where}: specimen {name!r} appears twice (also line "
                             f"{names[name]}); give each row its own `name`")
        names[name] = line
        rows.append(ScanRow(name, subset, files["hr"], files["lr"], files.get("regions"),
                            _float(rec.get("hr_voxel_um"), "hr_voxel_um", where),
                            _float(rec.get("lr_voxel_um"), "lr_voxel_um", where), line))
    return rows


def _read(path: Path, voxel_um: float | None, what: str, row: ScanRow):
    try:
        vol = read_volume(path)
    except VolumeReadError as exc:
        raise ScansError(f"specimen {row.name} ({what}): {exc}") from None
    size = voxel_um if voxel_um is not None else vol.voxel_um
    if size is None:
        raise ScansError(f"{path}: the file states no voxel size; add a "
                         f"{'hr' if what == 'HR' else 'lr'}_voxel_um column to the table")
    data = vol.data
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ScansError(f"{path}: voxels of type {data.dtype} are not a scan; give grey values")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ScansError(f"{path}: the scan has NaN or infinite voxels; replace them first")
    return data, float(size)


@dataclass
class _Surveyed:
    row: ScanRow
    hr_um: float
    lr_um: float
    hr_shape: tuple[int, int, int]
    lr_shape: tuple[int, int, int]
    sources: dict  # sha256 of every input array
    lo: float  # min over both scans
    hi: float
    p_lo: float  # HR 0.5th / 99.5th percentile
    p_hi: float
    integer: bool


@dataclass(frozen=True)
class Survey:
    """What the first pass fixes for the whole split."""

    specimens: list[_Surveyed]
    scale: int
    hr_voxel_um: float
    lr_voxel_um_measured: float
    calibration: dict
    window: tuple[float, float]


def survey(rows: list[ScanRow], *, scale: int = 2, progress: Progress = _noop) -> Survey:
    """Read every scan once: voxel sizes, shapes, value ranges and hashes; the split's
    calibration and window. Raises :class:`ScansError`; writes nothing."""
    from bonesr_bench.split.store import array_sha256

    if scale < 2:
        raise ScansError(f"--scale must be at least 2, got {scale}")
    out = []
    for i, row in enumerate(rows):
        progress("survey", i, len(rows), row.name)
        hr, hr_um = _read(row.hr, row.hr_voxel_um, "HR", row)
        lr, lr_um = _read(row.lr, row.lr_voxel_um, "LR", row)
        if lr_um <= hr_um:
            raise ScansError(f"specimen {row.name}: the LR voxel ({lr_um:g} µm) must be larger "
                             f"than the HR voxel ({hr_um:g} µm); are HR and LR swapped?")
        ratio = lr_um / hr_um
        if abs(ratio / scale - 1) > 0.25:
            raise ScansError(f"specimen {row.name}: LR/HR voxel ratio {ratio:.2f} ({lr_um:g} / "
                             f"{hr_um:g} µm) does not match --scale {scale}; pass --scale "
                             f"{max(2, round(ratio))}, or check the voxel sizes")
        if min(hr.shape) < 2 * scale or min(lr.shape) < 2:
            raise ScansError(f"specimen {row.name}: HR {hr.shape} / LR {lr.shape} voxels are "
                             "too small to register")
        sources = {"hr": array_sha256(hr), "lr": array_sha256(lr)}
        if row.regions is not None:
            try:
                regions = read_volume(row.regions).data
            except VolumeReadError as exc:
                raise ScansError(f"specimen {row.name} (regions): {exc}") from None
            if regions.shape != hr.shape:
                raise ScansError(f"{row.regions}: regions of shape {regions.shape} but the HR "
                                 f"scan {row.hr} has {hr.shape}; give them on the HR grid")
            bad = np.setdiff1d(np.unique(regions), [0, 1, 2])
            if bad.size:
                raise ScansError(f"{row.regions}: region values {bad[:5].tolist()}; use 0 "
                                 "outside, 1 trabecular VOI, 2 cortical envelope")
            if not np.any(regions):
                raise ScansError(f"{row.regions}: all zero; mark the trabecular VOI with 1 and "
                                 "the cortical envelope with 2")
            sources["regions"] = array_sha256(np.asarray(regions, np.uint8))
        p_lo, p_hi = np.percentile(hr, [0.5, 99.5])
        out.append(_Surveyed(
            row, hr_um, lr_um, tuple(hr.shape), tuple(lr.shape), sources,
            float(min(hr.min(), lr.min())), float(max(hr.max(), lr.max())), float(p_lo),
            float(p_hi), all(np.issubdtype(a.dtype, np.integer) for a in (hr, lr))))
        del hr, lr
    progress("survey", len(rows), len(rows), "")
    for key, what in (("hr_um", "HR"), ("lr_um", "LR")):
        sizes = np.array([getattr(s, key) for s in out])
        if sizes.max() > sizes.min() * (1 + VOXEL_TOLERANCE):
            a = min(out, key=lambda s: getattr(s, key))
            b = max(out, key=lambda s: getattr(s, key))
            raise ScansError(f"{what} voxel sizes differ: {getattr(a, key):g} µm "
                             f"({a.row.name}) vs {getattr(b, key):g} µm ({b.row.name}); a "
                             f"split holds scans of one protocol: make one split per "
                             "protocol")
    lo, hi = min(s.lo for s in out), max(s.hi for s in out)
    offset, slope = lo, (hi - lo) / 65535 if hi > lo else 1.0
    if all(s.integer for s in out):  # lossless, and independent of which specimens are in
        for start in (0.0, -32768.0, lo):
            if start <= lo and hi <= start + 65535:
                offset, slope = start, 1.0
                break
    calibration = {"unit": "scan units", "offset": offset, "slope": slope,
                   "note": "value = offset + slope * raw; the unit of the scan files"}
    window = (float(np.median([s.p_lo for s in out])), float(np.median([s.p_hi for s in out])))
    if not window[1] > window[0]:
        raise ScansError("the HR scans are constant (no intensity range): nothing to segment")
    return Survey(out, scale, float(np.mean([s.hr_um for s in out])),
                  float(np.mean([s.lr_um for s in out])), calibration, window)


def _recipe(s: _Surveyed, sv: Survey, masks: MaskOptions, params: SegmentationParams) -> str:
    """What a specimen's stored arrays depend on; an unchanged recipe keeps the specimen."""
    blob = {"sources": s.sources, "hr_um": s.hr_um, "lr_um": s.lr_um, "scale": sv.scale,
            "registration": REGISTRATION_VERSION,
            "calibration": sv.calibration, "hr_voxel_um": sv.hr_voxel_um,
            "masks": "user" if s.row.regions is not None else {
                **asdict(masks), "tv_weight": params.tv_weight,
                "tv_max_iter": params.tv_max_iter}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _build_one(root: zarr.Group, s: _Surveyed, sv: Survey, masks: MaskOptions,
               params: SegmentationParams, recipe: str, progress: Progress, i: int,
               n: int) -> tuple[dict, dict, list[str]]:
    """Register, mask and write one specimen; (hashes, registration record, warnings)."""
    from bonesr_bench.scoring.segmentation import segment
    from bonesr_bench.split.intensity import to_raw
    from bonesr_bench.split.regions import auto_regions
    from bonesr_bench.split.register import POOR_NCC, RegistrationWarning, register
    from bonesr_bench.split.store import write_specimen

    row, k = s.row, sv.scale
    hr, _ = _read(row.hr, row.hr_voxel_um, "HR", row)
    lr, _ = _read(row.lr, row.lr_voxel_um, "LR", row)
    grid = tuple(d // k for d in hr.shape)
    hr = np.asarray(hr[:grid[0] * k, :grid[1] * k, :grid[2] * k], dtype=np.float32)
    progress("register", i, n, row.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistrationWarning)  # reported below, once
        reg = register(hr, np.asarray(lr, dtype=np.float32), sv.hr_voxel_um, s.lr_um, scale=k,
                       fill=float(np.percentile(lr, 0.5)))
    del lr
    notes = []
    if reg.poor:
        notes.append(f"{row.name}: LR-to-HR registration is poor (NCC {reg.ncc:.2f} < "
                     f"{POOR_NCC}); check that both scans show the same region of the same bone")
    progress("masks", i, n, row.name)
    if row.regions is not None:
        regions = np.asarray(read_volume(row.regions).data, dtype=np.uint8)
        regions = regions[:grid[0] * k, :grid[1] * k, :grid[2] * k]
        mask_record = {"method": "user", "path": str(row.regions)}
    else:
        try:
            # the scan's own window: a specimen's regions do not depend on the others
            own = SegmentationParams(params.tv_weight, params.tv_max_iter, None)
            regions = auto_regions(segment(hr, own), sv.hr_voxel_um, **asdict(masks))
        except ValueError as exc:
            raise ScansError(f"specimen {row.name}: automatic regions failed ({exc}); give "
                             "its regions in a `regions` column, or lower --trabecula-um for "
                             "thin cortices") from None
        mask_record = {"method": "automatic (masks.auto_regions on the HR scan segmented by "
                                 "TV-Otsu in its own 0.5-99.5 percentile window)",
                       **asdict(masks)}
    if not (regions == 1).any() and not (regions == 2).any():
        raise ScansError(f"specimen {row.name}: the regions hold no trabecular VOI and no "
                         "cortex; give its regions in a `regions` column")
    # what matters is the bone: the regions' share inside the LR scan's field of view
    coverage = float(reg.inside[regions[::k, ::k, ::k] > 0].mean())
    if coverage < MIN_COVERAGE:
        notes.append(f"{row.name}: {100 * (1 - coverage):.1f} % of the regions (VOI and cortex) "
                     "lie outside the LR scan's field of view (filled with background); crop "
                     "the HR scan to the LR scan's field of view")
    progress("write", i, n, row.name)
    record = {**reg.record("ANTsPy affine (Mattes mutual information) from a cross-correlation "
                           "start, Gauss-Newton refinement (register.refine), LR onto HR, "
                           f"linear resampling onto the exact x{k} grid"),
              "coverage": coverage, "grid_coverage": reg.coverage}
    hashes = write_specimen(
        root, f"{row.subset}/{row.name}", to_raw(hr, sv.calibration),
        to_raw(reg.lr_on_grid, sv.calibration), sv.hr_voxel_um, sv.hr_voxel_um * k,
        {"regions": regions},
        {"source": {"hr": str(row.hr), "lr": str(row.lr),
                    "regions": None if row.regions is None else str(row.regions),
                    "hr_voxel_um": s.hr_um, "lr_voxel_um": s.lr_um,
                    "hr_shape": list(s.hr_shape), "lr_shape": list(s.lr_shape),
                    "sha256": s.sources},
         "registration": record, "masks": mask_record, "recipe": recipe})
    return hashes, record, notes


def build_from_scans(table: str | Path, out: str | Path, *, scale: int = 2,
                     split_id: str | None = None, masks: MaskOptions = MaskOptions(),
                     tv_weight: float = 0.08, tv_max_iter: int = 100,
                     lr_tv_weight: float | None = None,
                     progress: Progress = _noop) -> ScanBuildReport:
    """Build (or resume, or update) the split at ``out`` from the scan table ``table``."""
    from bonesr_bench.split.register import POOR_NCC
    from bonesr_bench.split.store import _check_specimen, _versions, fingerprint, is_from_scans

    table, out = Path(table), Path(out)
    rows = read_table(table)
    split_id = split_id or f"scans-{_stem(out)}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", split_id) or \
            split_id.startswith("synth-"):
        raise ScansError(f"--id {split_id!r}: use letters, digits, '.', '_' and '-', not "
                         "starting with synth- (reserved for the generated splits)")
    if out.exists() and (out.is_file() or any(out.iterdir())):
        try:
            old = dict(zarr.open_group(str(out), mode="r").attrs.get("bonesr", {}))
        except Exception:  # noqa: BLE001 - not a zarr group at all
            raise ScansError(f"{out} exists and is not a split; choose another --out") from None
        if old and not is_from_scans(old):
            raise ScansError(f"{out} is a generated split; choose another --out for a split "
                             "built from scans")
    sv = survey(rows, scale=scale, progress=progress)
    params = SegmentationParams(tv_weight, tv_max_iter, sv.window)
    root = zarr.open_group(str(out), mode="a", zarr_format=2)
    parts = sorted({s.row.subset for s in sv.specimens})
    meta = {"split": split_id, "version": SPLIT_VERSION, "source": "scans", "config": "scans",
            "scans_csv": str(table.resolve()), "parts": parts,
            "specimens": [[s.row.subset, s.row.name] for s in sv.specimens]}
    # until the end, the store says what it is and that it is unfinished (no fingerprint), so an
    # interrupted build fails verification with the command that resumes it
    root.attrs["bonesr"] = {**meta, "fingerprint": None}
    report = ScanBuildReport(out, "", split_id, len(rows))
    wanted = {f"{s.row.subset}/{s.row.name}" for s in sv.specimens}
    for subset in ("train", "test"):
        if subset in root:
            for name in list(root[subset].group_keys()):
                if f"{subset}/{name}" not in wanted:
                    del root[f"{subset}/{name}"]
                    report.removed.append(f"{subset}/{name}")
    table_sha: dict[str, str] = {}
    for i, s in enumerate(sv.specimens):
        key = f"{s.row.subset}/{s.row.name}"
        recipe = _recipe(s, sv, masks, params)
        if key in root and root[key].attrs.get("complete") and \
                root[key].attrs.get("recipe") == recipe and not _check_specimen(
                    root, s.row.subset, s.row.name):
            attrs = root[key].attrs
            hashes, record = dict(attrs["sha256"]), dict(attrs["registration"])
            report.kept.append(key)
        else:
            hashes, record, notes = _build_one(root, s, sv, masks, params, recipe, progress, i,
                                               len(sv.specimens))
            report.warnings += notes
        table_sha.update(hashes)
        report.registration[s.row.name] = {k: record[k] for k in ("ncc", "coverage", "poor")}
        progress("specimens", i + 1, len(sv.specimens), s.row.name)
    fp = fingerprint(table_sha)
    root.attrs["bonesr"] = {
        **meta, "scale": scale, "hr_voxel_um": sv.hr_voxel_um,
        "lr_voxel_um": sv.hr_voxel_um * scale,
        "lr_voxel_um_scanned": sv.lr_voxel_um_measured,
        "intensity_calibration": sv.calibration,
        "segmentation": {**params.as_dict(), "window_unit": sv.calibration["unit"],
                         "grids": {"hr": {"tv_weight": tv_weight, "tv_max_iter": tv_max_iter},
                                   "lr": {"tv_weight": tv_weight if lr_tv_weight is None
                                          else lr_tv_weight, "tv_max_iter": tv_max_iter}},
                         "rule": "given (a split from scans has no true geometry to choose "
                                 "by): --tv-weight for the HR grid, --lr-tv-weight for the LR "
                                 "grid"},
        "registration": {"method": "ANTsPy affine (Mattes MI) + Gauss-Newton refinement",
                         "poor_below_ncc": POOR_NCC,
                         "min_coverage": MIN_COVERAGE},
        "masks": asdict(masks),
        "versions": {**_versions(), "antspyx": _ants_version()},
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": table_sha,
        "fingerprint": fp,
    }
    report.fingerprint = fp
    return report


def _ants_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("antspyx")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"
