"""Read volumes for morphometry: .npy, TIFF stacks, NRRD, NIfTI, zarr arrays, Scanco ISQ and AIM,
and DICOM series.

``read_volume(path)`` returns the array in (z, y, x) order and the voxel size in µm when the file
states one (None otherwise). Every failure is a :class:`VolumeReadError` whose message names the
file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bonesr_bench.errors import BenchError

__all__ = ["Volume", "VolumeReadError", "read_volume", "write_volume", "SUFFIXES",
           "WRITE_SUFFIXES"]

SUFFIXES = (".npy", ".tif", ".tiff", ".nrrd", ".nhdr", ".nii", ".nii.gz", ".zarr", ".isq",
            ".aim", ".dcm", "a folder of .dcm files")
ISQ_MAGIC = b"CTDATA-HEADER_V1"
WRITE_SUFFIXES = (".npy", ".tif", ".tiff", ".nrrd", ".nii", ".nii.gz")


class VolumeReadError(BenchError, ValueError):
    """A volume could not be read; the message names the file and the reason."""


@dataclass
class Volume:
    data: np.ndarray
    voxel_um: float | None
    path: str


#: voxel sizes along the axes may differ by this fraction and still count as isotropic
ISOTROPY_TOLERANCE = 0.01


def _isotropic(path: Path, voxel) -> float | None:
    """The one voxel size (µm) of a file that states one per axis; anisotropic voxels are an
    error (morphometry needs isotropic ones)."""
    if voxel is None or isinstance(voxel, float | int):
        return voxel
    sizes = [v for v in voxel if v is not None and v > 0]
    if not sizes:
        return None
    if max(sizes) > min(sizes) * (1 + ISOTROPY_TOLERANCE):
        shown = " x ".join(f"{v:.4g}" for v in voxel)
        raise VolumeReadError(f"{path}: anisotropic voxels ({shown} µm); resample it to "
                              "isotropic voxels first (e.g. in Fiji or 3D Slicer)")
    return float(np.mean(sizes))


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def _read_npy(path: Path):
    return np.load(path, allow_pickle=False), None


def _read_tiff(path: Path):
    import tifffile

    with tifffile.TiffFile(path) as tf:
        data = tf.asarray()
        ij = tf.imagej_metadata or {}
        page = tf.pages[0]
        unit = str(ij.get("unit", "")).strip()
        res_unit = page.tags["ResolutionUnit"].value if "ResolutionUnit" in page.tags else 1
        if not unit and int(res_unit) == 3:
            unit = "cm"  # TIFF's own unit; inch (2) or none (1) is a print resolution, not a voxel
        voxel = None
        sizes = []
        for tag in ("YResolution", "XResolution"):
            if unit and tag in page.tags:
                num, den = page.tags[tag].value
                if num:
                    sizes.append(_to_um(den / num, unit))
        if unit and "spacing" in ij and data.ndim == 3:
            sizes.append(_to_um(float(ij["spacing"]), unit))
        sizes = [v for v in sizes if v is not None]
        if sizes:
            voxel = tuple(sizes)
    return data, voxel


def _to_um(value: float, unit: str) -> float | None:
    unit = unit.strip().lower()
    scale = {"um": 1.0, "µm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
             "micrometre": 1.0, "\\u00b5m": 1.0, "mm": 1e3, "millimeter": 1e3, "nm": 1e-3,
             "m": 1e6, "cm": 1e4}.get(unit)
    return None if scale is None or not value > 0 else float(value) * scale


def _read_nrrd(path: Path):
    import nrrd

    data, header = nrrd.read(str(path), index_order="C")
    voxel = None
    if "space directions" in header and header["space directions"] is not None:
        dirs = np.asarray(header["space directions"], dtype=float)
        spacing = np.linalg.norm(np.nan_to_num(dirs), axis=1)
        units = header.get("space units") or []
        unit = units[0] if units else "mm"
        voxel = tuple(_to_um(float(v), unit) for v in spacing) if spacing.size else None
    elif "spacings" in header:
        unit = (header.get("units") or ["mm"])[0]
        voxel = tuple(_to_um(float(v), unit) for v in header["spacings"])
    return data, voxel


def _read_nifti(path: Path):
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        raise VolumeReadError(f"{path}: NIfTI volume has {data.ndim} dimensions, expected 3")
    zooms = img.header.get_zooms()[:3]
    unit = img.header.get_xyzt_units()[0]
    unit = "mm" if unit in (None, "", "unknown") else unit  # NIfTI tools' default unit
    data = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))  # NIfTI (x, y, z) -> (z, y, x)
    return data, tuple(_to_um(float(z), unit) for z in zooms)


def _read_zarr(path: Path):
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Group):
        arrays = sorted(node.arrays(), key=lambda kv: kv[0])
        if not arrays:
            raise VolumeReadError(f"{path}: zarr group holds no array; name one, e.g. {path}/0")
        name, arr = arrays[0]
        attrs = dict(node.attrs)
    else:
        arr, attrs = node, {}
        name = None
    voxel = None
    for ms in attrs.get("multiscales", []) or []:
        for ds in ms.get("datasets", []):
            if name is None or ds.get("path") == name:
                for t in ds.get("coordinateTransformations", []):
                    if t.get("type") == "scale":
                        axes = ms.get("axes", [])
                        unit = axes[-1].get("unit", "micrometer") if axes else "micrometer"
                        voxel = tuple(_to_um(float(v), unit) for v in t["scale"][-3:])
    return np.asarray(arr[...]), voxel


def _read_isq(path: Path):
    """Scanco ISQ: a 512-byte header of little-endian int32 fields (magic, data type at 16, the
    dimensions in pixels at 44, in µm at 56, the data offset in 512-byte blocks at 508), then
    int16 voxels, x fastest (the layout ITK's ScancoImageIO reads)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(512)
        if len(head) < 512 or head[:16] != ISQ_MAGIC:
            raise VolumeReadError(f"{path}: not a Scanco ISQ file (no CTDATA-HEADER_V1 header)")
        fields = np.frombuffer(head, dtype="<i4")
        dtype, dims_p, dims_um = int(fields[4]), fields[11:14].astype(int), fields[14:17]
        start = (int(fields[127]) + 1) * 512
        if dtype != 3:
            raise VolumeReadError(f"{path}: ISQ data type {dtype} is not supported (int16, type "
                                  "3, is what Scanco scanners write)")
        if (dims_p < 1).any():
            raise VolumeReadError(f"{path}: ISQ header gives dimensions {tuple(dims_p)}")
        n = int(np.prod(dims_p))
        if size < start + 2 * n:
            raise VolumeReadError(f"{path}: truncated: the header announces {n} voxels "
                                  f"({2 * n} bytes from byte {start}), the file has "
                                  f"{max(size - start, 0)}")
        f.seek(start)
        data = np.fromfile(f, dtype="<i2", count=n).reshape(dims_p[::-1])
    if not (dims_um > 0).all():
        return data, None
    sizes = dims_um / dims_p.astype(float)  # the µm fields are whole numbers: +-0.5 / n each
    if (np.abs(sizes - sizes[0]) > ISOTROPY_TOLERANCE * sizes[0] + 0.5 / dims_p).any():
        raise VolumeReadError(f"{path}: anisotropic voxels ({' x '.join(f'{v:.4g}' for v in sizes)}"
                              " µm); resample it to isotropic voxels first")
    return data, float(sizes[0])


def _read_aim(path: Path):
    try:
        import itk
    except ImportError:
        raise VolumeReadError(f"{path}: reading AIM files needs ITK's Scanco reader; install it "
                              "with `pip install itk-ioscanco` (or convert the file to ISQ, "
                              "TIFF or NIfTI)") from None
    img = itk.imread(str(path))
    return (np.asarray(itk.array_from_image(img)),
            tuple(float(v) * 1000.0 for v in itk.spacing(img)))


def _dicom_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise VolumeReadError(f"{path}: empty folder; give a folder of DICOM slices")
        return files
    return [path]


def _read_dicom(path: Path):
    """A DICOM series (a folder of slices, or one multi-frame file): slices ordered by their
    position along the slice normal (else InstanceNumber); voxel size from PixelSpacing."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices = []
    for f in _dicom_files(path):
        try:
            ds = pydicom.dcmread(str(f))
        except InvalidDicomError:
            if path.is_dir():
                continue  # a stray file beside the series
            raise VolumeReadError(f"{f}: not a DICOM file") from None
        if "PixelData" not in ds:
            continue
        slices.append(ds)
    if not slices:
        raise VolumeReadError(f"{path}: no DICOM image found")

    def position(ds):
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            o = np.asarray(ds.ImageOrientationPatient, dtype=float)
            return float(np.dot(np.cross(o[:3], o[3:]), np.asarray(ds.ImagePositionPatient,
                                                                    dtype=float)))
        return float(getattr(ds, "InstanceNumber", 0))

    slices.sort(key=position)
    arrays = []
    for ds in slices:
        a = ds.pixel_array.astype(np.float32 if "RescaleSlope" in ds else ds.pixel_array.dtype)
        if "RescaleSlope" in ds:
            a = a * float(ds.RescaleSlope) + float(getattr(ds, "RescaleIntercept", 0.0))
        arrays.append(a if a.ndim == 3 else a[None])
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise VolumeReadError(f"{path}: DICOM slices of different sizes {sorted(shapes)}; give "
                              "one series per folder")
    data = np.concatenate(arrays)
    spacing = getattr(slices[0], "PixelSpacing", None)
    if not spacing:
        return data, None
    voxel = [_to_um(float(v), "mm") for v in spacing]
    positions = [position(ds) for ds in slices]
    if len(slices) > 1 and all("ImagePositionPatient" in ds for ds in slices):
        voxel.append(_to_um(float(np.median(np.diff(positions))), "mm"))
    return data, tuple(voxel)


_READERS = {".npy": _read_npy, ".tif": _read_tiff, ".tiff": _read_tiff, ".nrrd": _read_nrrd,
            ".nhdr": _read_nrrd, ".nii": _read_nifti, ".nii.gz": _read_nifti, ".zarr": _read_zarr,
            ".isq": _read_isq, ".aim": _read_aim, ".dcm": _read_dicom}


def read_volume(path: str | Path) -> Volume:
    """Read a 3D volume; ``voxel_um`` is the file's voxel size in µm, or None if it has none."""
    p = Path(path)
    if not p.exists():
        raise VolumeReadError(f"{p}: no such file or directory")
    suffix = _suffix(p)
    if p.is_dir() and suffix != ".zarr":
        if (p / ".zarray").exists() or (p / "zarr.json").exists() or (p / ".zgroup").exists():
            suffix = ".zarr"
        elif any(q.suffix.lower() in (".dcm", "") for q in p.iterdir() if q.is_file()):
            suffix = ".dcm"  # a DICOM series folder
    reader = _READERS.get(suffix)
    if reader is None:
        raise VolumeReadError(f"{p}: unsupported format {suffix or '(no suffix)'}; "
                              f"use one of {', '.join(SUFFIXES)}")
    try:
        data, voxel = reader(p)
    except VolumeReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear message
        raise VolumeReadError(f"{p}: cannot read as {suffix}: {exc}") from exc
    data = np.asarray(data)
    voxel = _isotropic(p, voxel)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise VolumeReadError(f"{p}: expected a 3D volume, got shape {data.shape}")
    return Volume(data, voxel, str(p))


def write_volume(path: str | Path, data: np.ndarray, voxel_um: float) -> Path:
    """Write a (z, y, x) volume with its voxel size (µm) as .npy (no voxel size), TIFF (ImageJ
    hyperstack, µm), NRRD or NIfTI (mm); :func:`read_volume` reads it back. Raises
    :class:`VolumeReadError` for another suffix."""
    p = Path(path)
    suffix = _suffix(p)
    data = np.ascontiguousarray(data)
    if suffix == ".npy":
        np.save(p, data)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(p, data, imagej=True, resolution=(1 / voxel_um, 1 / voxel_um),
                         metadata={"unit": "um", "spacing": voxel_um, "axes": "ZYX"})
    elif suffix == ".nrrd":
        import nrrd

        nrrd.write(str(p), data, {"space directions": np.eye(3) * voxel_um / 1000,
                                  "space units": ["mm"] * 3}, index_order="C")
    elif suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        img = nib.Nifti1Image(np.transpose(data, (2, 1, 0)), np.diag([voxel_um / 1000] * 3 + [1]))
        img.header.set_xyzt_units("mm")
        nib.save(img, str(p))
    else:
        raise VolumeReadError(f"{p}: cannot write {suffix or '(no suffix)'}; use one of "
                              f"{', '.join(WRITE_SUFFIXES)}")
    return p
