"""Scan readers beyond the plain formats: Scanco ISQ (checked against ITK's own Scanco reader where
it is installed), AIM (through ITK) and DICOM series; each corrupt file gives one clear error."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from bonesr_bench.split.readers import ISQ_MAGIC, VolumeReadError, read_volume


def write_isq(path: Path, data: np.ndarray, voxel_um: float, blocks: int = 1) -> Path:
    """An ISQ as Scanco scanners write it: 512-byte header, ``blocks`` extra header blocks,
    int16 voxels x fastest."""
    nz, ny, nx = data.shape
    fields = [0] * 128
    fields[4], fields[5], fields[6] = 3, 2 * data.size, (2 * data.size + 511) // 512
    fields[11:14] = [nx, ny, nz]
    fields[14:17] = [round(nx * voxel_um), round(ny * voxel_um), round(nz * voxel_um)]
    fields[17] = fields[18] = round(voxel_um)
    fields[20], fields[21] = int(data.min()), int(data.max())
    fields[22] = 4096  # mu_scaling
    fields[127] = blocks
    head = bytearray(struct.pack("<128i", *fields))
    head[:16] = ISQ_MAGIC
    head[128:168] = b"bonesr-bench test".ljust(40)
    path.write_bytes(bytes(head) + b"\0" * (512 * blocks) + data.astype("<i2").tobytes())
    return path


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return rng.integers(-1000, 8000, (7, 9, 12)).astype(np.int16)


def test_isq_reads_back_with_its_voxel_size(tmp_path, volume):
    vol = read_volume(write_isq(tmp_path / "scan.isq", volume, 10.5, blocks=2))
    assert vol.voxel_um == pytest.approx(10.5, abs=0.01)
    assert np.array_equal(vol.data, volume) and vol.data.dtype == np.int16
    upper = read_volume(write_isq(tmp_path / "C0001234.ISQ", volume, 20.0))
    assert upper.voxel_um == pytest.approx(20.0, abs=0.01)


def test_isq_layout_agrees_with_itks_scanco_reader(tmp_path, volume):
    itk = pytest.importorskip("itk", reason="pip install itk-ioscanco")
    path = write_isq(tmp_path / "scan.isq", volume, 10.5, blocks=1)
    img = itk.imread(str(path))
    assert np.array_equal(np.asarray(itk.array_from_image(img)), read_volume(path).data)
    assert float(itk.spacing(img)[0]) * 1000 == pytest.approx(read_volume(path).voxel_um, 1e-3)


@pytest.mark.parametrize("corrupt, message", [
    (lambda raw: raw[:-100], "truncated"),
    (lambda raw: b"NOT-AN-ISQ-FILE!" + raw[16:], "not a Scanco ISQ"),
    (lambda raw: raw[:200], "not a Scanco ISQ"),
    (lambda raw: raw[:16] + struct.pack("<i", 5) + raw[20:], "data type 5"),
])
def test_corrupt_isq_gives_one_clear_error(tmp_path, volume, corrupt, message):
    path = write_isq(tmp_path / "scan.isq", volume, 10.5)
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(VolumeReadError, match=message) as e:
        read_volume(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_aim_without_itk_says_how_to_read_it(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_itk(name, *args, **kwargs):
        if name == "itk":
            raise ImportError("no itk")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_itk)
    (tmp_path / "scan.aim").write_bytes(b"\0" * 1024)
    with pytest.raises(VolumeReadError, match="pip install itk-ioscanco"):
        read_volume(tmp_path / "scan.aim")


def write_dicom_series(folder: Path, data: np.ndarray, voxel_um: float, order,
                       slice_um: float | None = None) -> Path:
    """One CT slice per file, written in ``order`` (not the slice order), with positions
    ``slice_um`` apart (default ``voxel_um``)."""
    slice_um = slice_um or voxel_um
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir()
    series = generate_uid()
    for k in order:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.Modality = series, "CT"
        ds.Rows, ds.Columns = data.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelSpacing = [voxel_um / 1000, voxel_um / 1000]
        ds.SliceThickness = voxel_um / 1000
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, k * slice_um / 1000]
        ds.InstanceNumber = len(order) - k  # deliberately not the slice order
        ds.PixelData = data[k].astype("<i2").tobytes()
        ds.save_as(str(folder / f"IM{generate_uid()[-8:]}.dcm"), enforce_file_format=True)
    return folder


def test_dicom_series_is_ordered_by_position_with_its_voxel_size(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "series", volume, 10.5, order=[3, 0, 6, 1, 5, 2, 4])
    (folder / "README.txt").write_text("not a slice")  # stray files are skipped
    vol = read_volume(folder)
    assert vol.voxel_um == pytest.approx(10.5)
    assert np.array_equal(vol.data, volume)
    one = read_volume(next(folder.glob("*.dcm")))
    assert one.data.shape == (1, 9, 12)


def test_not_dicom_and_empty_folder_errors(tmp_path):
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 300)
    with pytest.raises(VolumeReadError, match="not a DICOM file|cannot read"):
        read_volume(tmp_path / "bad.dcm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeReadError):
        read_volume(tmp_path / "empty")


def test_anisotropic_dicom_series_is_refused(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "series", volume, 10.5, order=range(7), slice_um=21.0)
    with pytest.raises(VolumeReadError, match=r"anisotropic voxels \(10.5 x 10.5 x 21 µm\)"):
        read_volume(folder)
