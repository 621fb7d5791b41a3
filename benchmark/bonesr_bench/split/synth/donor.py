"""Real-structure donors: the BoneBox trabecular ROIs shipped with the package, as specimens.

Each ROI (binary, 201³) is cropped to the split's HR shape, centred, and the bone outside the
scanner's field-of-view cylinder removed; the trabecular VOI is the cylinder of 90 % of the field
of view. The ROIs are binary, so the bone fraction per voxel is 0 or 1 (no sub-voxel partial
volume, unlike the synthetic specimens). There is no cortex.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from bonesr_bench.split.synth.specimen import Specimen

__all__ = ["BONEBOX_ROIS", "bonebox_specimen"]

BONEBOX_ROIS = ("isodata_04216_roi_0", "isodata_05880_roi_39", "isodata_06604_roi_52")


def _read(name: str) -> np.ndarray:
    import nrrd

    ref = resources.files("bonesr_bench") / "data" / "bonebox" / f"{name}.nrrd"
    with resources.as_file(ref) as path:
        data, _ = nrrd.read(str(path), index_order="C")
    return data > 0


def bonebox_specimen(name: str, shape=(160, 192, 192)) -> Specimen:
    """The ROI ``name`` as a trabecular-only specimen on an HR grid of ``shape``."""
    roi = _read(name)
    if any(s > r for s, r in zip(shape, roi.shape, strict=True)):
        raise ValueError(f"shape {shape} is larger than the ROI {roi.shape}")
    start = [(r - s) // 2 for s, r in zip(shape, roi.shape, strict=True)]
    crop = roi[tuple(slice(a, a + s) for a, s in zip(start, shape, strict=True))]
    n = shape[1]
    yy, xx = np.mgrid[:n, :n] + 0.5 - n / 2
    r = np.hypot(yy, xx)
    fov = r <= 0.48 * n
    bone = crop & fov[None]
    regions = np.zeros(shape, np.uint8)
    regions[:, r <= 0.45 * n] = 1
    return Specimen(params=None, fraction=bone.astype(np.float32),
                    truth=bone.astype(np.uint8), regions=regions)
