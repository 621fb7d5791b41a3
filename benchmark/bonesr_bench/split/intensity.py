"""Stored intensities: the uint16 ``raw`` of a split and attenuation in 1/cm, and the window that
maps a scan to [0, 1] (what models see and segmentation starts from)."""

from __future__ import annotations

import numpy as np

#: attenuation (1/cm) = OFFSET + SLOPE * raw (uint16)
CALIBRATION = {"unit": "1/cm", "offset": -2.0, "slope": 8.0 / 65535}


def to_raw(mu_cm: np.ndarray, calibration: dict | None = None) -> np.ndarray:
    """Intensities to the stored uint16 ``raw`` (``calibration``: the split's
    ``intensity_calibration``; default the synthetic splits' :data:`CALIBRATION`)."""
    cal = calibration or CALIBRATION
    raw = np.rint((mu_cm - cal["offset"]) / cal["slope"])
    return np.clip(raw, 0, 65535).astype(np.uint16)


def from_raw(raw: np.ndarray, calibration: dict | None = None) -> np.ndarray:
    """Stored uint16 ``raw`` to intensities (float32): ``offset + slope * raw``."""
    cal = calibration or CALIBRATION
    return (cal["offset"] + cal["slope"] * raw.astype(np.float32)).astype(np.float32)


def calibration(meta: dict) -> dict:
    """The intensity calibration recorded in a split's metadata (``attrs["bonesr"]``)."""
    return dict(meta.get("intensity_calibration") or CALIBRATION)


def normalise(grey: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Map grey values linearly to float32 so that ``window`` becomes [0, 1] (clipped)."""
    g = np.asarray(grey, dtype=np.float32)
    if window is None:
        lo, hi = np.percentile(g, [0.5, 99.5])
    else:
        lo, hi = window
    if not hi > lo:
        raise ValueError(f"intensity window ({lo}, {hi}) is empty: the volume is constant")
    return np.clip((g - lo) / (hi - lo), 0.0, 1.0)
