"""Scoring one specimen: an SR (or scan) volume -> segmentation -> morphometry -> its errors
against HR and the true geometry (see the package docstring for the definitions)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from bonesr_bench.morphometry import CORTICAL_KEYS, TRABECULAR_KEYS, morphometry
from bonesr_bench.params import BIO_KEYS
from bonesr_bench.scoring.perceptual import score_volume
from bonesr_bench.scoring.segmentation import SegmentationParams, segment

PARAM_KEYS = TRABECULAR_KEYS + CORTICAL_KEYS




def _finite(v) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def measure(grey: np.ndarray, voxel_um: float, regions: np.ndarray,
            params: SegmentationParams, *, device: str | None = None) -> dict:
    """Segment a grey volume (TV + Otsu, ``params``) and measure it inside ``regions``."""
    return morphometry(segment(grey, params), voxel_um, regions=regions, device=device)


def relative_errors(values: dict, reference: dict, keys: Iterable[str] = PARAM_KEYS) -> dict:
    """Signed relative error (fraction) of each parameter; NaN where it is undefined."""
    out = {}
    for k in keys:
        v, r = values.get(k), reference.get(k)
        out[k] = (float(v) - r) / abs(r) if _finite(v) and _finite(r) and r != 0 else math.nan
    return out


def biological_error(values: dict, reference: dict, keys: Iterable[str] = BIO_KEYS) -> float:
    """Mean |relative error| (fraction) over ``keys``; see the module docstring for gaps."""
    errs = []
    for k in keys:
        v, r = values.get(k), reference.get(k)
        if not _finite(r) or r == 0:
            continue
        errs.append(abs(float(v) - r) / abs(r) if _finite(v) else 1.0)
    return float(np.mean(errs)) if errs else math.nan


@dataclass
class SpecimenScore:
    """Everything measured for one specimen of one entry."""

    name: str
    perceptual: dict  # metrics.SliceScores as a dict: psnr_db, ssim, psnr_3d_db, ssim_3d, n_slices
    morphometry: dict  # the entry's parameters (keys of `bonesr-bench morphometry --json`)
    seconds: float  # scoring time (segmentation, morphometry, PSNR/SSIM)

    def as_dict(self) -> dict:
        return asdict(self)


def score_specimen(name: str, sr: np.ndarray, hr: np.ndarray, regions: np.ndarray, *,
                   voxel_um: float, window: tuple[float, float], shave: int,
                   params: SegmentationParams, device: str | None = None) -> SpecimenScore:
    """PSNR/SSIM of ``sr`` against ``hr`` and the morphometry of ``sr`` (both in 1/cm)."""
    t0 = time.perf_counter()
    perceptual = score_volume(hr, sr, window, shave=shave,
                              device="cuda" if device == "cuda" else "cpu").as_dict()
    m = measure(sr, voxel_um, regions, params, device=device)
    return SpecimenScore(name, perceptual, m, time.perf_counter() - t0)
