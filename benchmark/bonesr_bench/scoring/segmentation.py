"""Segmentation of grey micro-CT volumes: total-variation denoising, then two-class Otsu.

This is the reference study's protocol (Jhuboo et al.), applied identically to every volume that
is scored: HR, upsampled LR and each SR output. Its parameters are fixed per split and recorded
with every result.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu
from skimage.restoration import denoise_tv_chambolle

from bonesr_bench.scoring._tv import tv_chambolle
from bonesr_bench.split.config import SegmentationParams
from bonesr_bench.split.intensity import normalise

__all__ = ["SegmentationParams", "normalise", "tv_denoise", "otsu_threshold", "segment"]


def tv_denoise(image01: np.ndarray, weight: float, *, max_iter: int = 100) -> np.ndarray:
    """Isotropic total-variation denoising (Chambolle 2004) of an image in [0, 1]: scikit-image's
    ``denoise_tv_chambolle`` (eps 2e-4), bit for bit; a 3D float32 volume goes through its fused
    parallel transcription (``scoring._tv``, ten times faster on 2 cores)."""
    image01 = np.asarray(image01)
    if image01.ndim == 3 and image01.dtype == np.float32:
        return tv_chambolle(image01, weight, max_num_iter=max_iter)
    return denoise_tv_chambolle(image01, weight=weight, max_num_iter=max_iter).astype(np.float32)


def otsu_threshold(image: np.ndarray) -> float:
    """Two-class Otsu threshold (Otsu 1979) on a 256-bin histogram."""
    return float(threshold_otsu(np.asarray(image), nbins=256))


def segment(grey: np.ndarray, params: SegmentationParams | None = None) -> np.ndarray:
    """Binary bone mask (bool) of a grey (z, y, x) volume: normalise, TV-denoise, Otsu.

    Raises ``ValueError`` for a constant volume (no threshold exists).
    """
    p = params or SegmentationParams()
    g = normalise(grey, p.window)
    if p.tv_weight > 0:
        g = tv_denoise(g, p.tv_weight, max_iter=p.tv_max_iter)
    if float(g.max()) == float(g.min()):
        raise ValueError("the volume is constant after normalisation: nothing to segment")
    return g > otsu_threshold(g)
