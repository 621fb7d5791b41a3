"""The benchmark split: a versioned, registered HR/LR zarr store with the true geometry beside it.

Layout (README, "The v2 split"; each image is a one-level OME-Zarr 0.4 image group, so napari
opens ``<store>/test/<specimen>/hr`` directly, voxel sizes in micrometres)::

    <split>.zarr/   attrs["bonesr"]: id, version, scale, voxel sizes, intensity calibration,
                    segmentation parameters, generator and scanner parameters, seeds, package
                    versions, sha256 of every array and the fingerprint (sha256 of that table)
      train/<specimen>/ and test/<specimen>/
        hr/0            HR scan (z, y, x), uint16, 10.5 µm
        lr/0            LR scan (z/2, y/2, x/2), uint16, 21 µm, registered to hr
        labels/truth/0  true bone on the HR grid, uint8 0/1
        labels/regions/0  0 outside, 1 trabecular VOI, 2 cortical envelope (HR grid)
        attrs           generator parameters, the truth's morphometry, "complete"

Scans are stored as uint16 ``raw``; attenuation in 1/cm is ``offset + slope * raw``.
A specimen is written array by array and marked complete last, so an interrupted build leaves
incomplete specimens that the next build redoes; verification recomputes every hash.
"""

from __future__ import annotations

from bonesr_bench.split.config import (
    DEFAULT_SPLIT,
    PROTOCOLS,
    SEGMENTATION,
    SPLITS,
    TV_RULE,
    Protocol,
    SegmentationParams,
    SplitConfig,
    segmentation_params,
)
from bonesr_bench.split.intensity import (
    CALIBRATION,
    calibration,
    from_raw,
    normalise,
    to_raw,
)
from bonesr_bench.split.store import (
    TOLERANCE,
    Location,
    Specimen,
    SplitError,
    VerifyReport,
    array_sha256,
    as_location,
    canonical,
    canonical_fingerprints,
    canonical_table,
    compare_to_canonical,
    default_path,
    fingerprint,
    in_one_process,
    is_from_scans,
    is_url,
    iter_specimens,
    location_exists,
    open_group,
    open_split,
    repair_hint,
    require_ok,
    verify,
    write_image,
    write_specimen,
)
from bonesr_bench.split.synthetic import (
    WORKER_ENV,
    auto_workers,
    build,
    ensure,
    ensure_report,
    resolve,
)

__all__ = ["Location", "as_location", "in_one_process", "is_url", "location_exists",
           "open_group", "SegmentationParams", "Protocol", "SplitConfig", "PROTOCOLS", "SPLITS",
           "DEFAULT_SPLIT",
           "SEGMENTATION", "TV_RULE", "segmentation_params", "CALIBRATION", "to_raw",
           "from_raw", "calibration", "normalise", "SplitError", "Specimen",
           "VerifyReport", "TOLERANCE", "default_path", "array_sha256", "fingerprint",
           "write_image", "write_specimen", "canonical", "canonical_fingerprints",
           "canonical_table", "compare_to_canonical", "is_from_scans", "repair_hint",
           "verify", "open_split", "require_ok", "iter_specimens", "build", "ensure",
           "ensure_report", "resolve", "auto_workers", "WORKER_ENV"]
