"""Local thickness (Hildebrand & Rüegsegger 1997) exactly as BoneJ's Thickness computes it.

The thickness of a voxel is the diameter of the largest ball that fits inside the phase and
contains the voxel. BoneJ's implementation (Fiji LocalThickness: distance map, distance ridge,
ball filling, surface clean-up, masking with the original) is followed step by step on integer
squared distances, so means and SDs equal BoneJ's (see ``tests/test_thickness.py`` for the
calibration against BoneJ's output on real trabecular bone).
"""

from __future__ import annotations

from dataclasses import dataclass

import edt
import numpy as np

from bonesr_bench.morphometry import _kernels

__all__ = ["ThicknessStats", "squared_distance_map", "local_thickness_map", "thickness_stats"]


@dataclass(frozen=True)
class ThicknessStats:
    """Mean and standard deviation of a local-thickness map over the phase, in voxels."""

    mean_vox: float
    sd_vox: float
    max_vox: float
    n_voxels: int


def squared_distance_map(phase: np.ndarray) -> np.ndarray:
    """Integer squared Euclidean distance (voxels^2) from each phase voxel to the nearest non-phase
    voxel; 0 outside the phase.

    Voxels outside the image are *not* background (BoneJ's convention: a structure cut by the
    image border continues beyond it). Where the phase has no non-phase voxel at all the distance
    is undefined and a ``ValueError`` is raised.
    """
    phase = np.ascontiguousarray(phase, dtype=np.uint8)
    if phase.all():
        raise ValueError("the phase fills the whole image: its distance map is undefined")
    # float32 holds these integer sums of squares exactly below 2^24 (images up to ~2300 voxels)
    return edt.edtsq(phase, black_border=False, parallel=0).astype(np.int32)


def _ridge_balls(sq: np.ndarray):
    """BoneJ's distance-ridge balls (z, y, x, squared radius), z-sorted."""
    present = np.bincount(sq.ravel())
    present[0] = 0
    values = np.flatnonzero(present)
    lut = np.zeros(present.size, dtype=np.int64)
    lut[values] = np.arange(values.size)
    templ = _kernels.ridge_templates(values)
    ridge = _kernels.distance_ridge(sq, lut, templ)
    z, y, x = np.nonzero(ridge)
    return z, y, x, sq[z, y, x].astype(np.int64)


def max_ball_map(phase_sq: np.ndarray, balls) -> np.ndarray:
    """Diameter ``2 sqrt(R)`` (voxels, float32) of the largest ball containing each voxel, 0 where
    none; ``R`` is the ball's integer squared radius."""
    z, y, x, r = balls
    order, group_start, group_rho = _kernels.group_by_rho(r)
    return _kernels.max_ball_fill(z[order], y[order], x[order], r[order], group_start, group_rho,
                                  phase_sq.shape)


def local_thickness_map(phase: np.ndarray) -> np.ndarray:
    """BoneJ local-thickness map of a binary phase, in voxels (float32, 0 outside the phase).

    Parameters
    ----------
    phase : (z, y, x) array of bool
        The structure to measure (bone for Tb.Th, marrow for Tb.Sp).

    Returns
    -------
    (z, y, x) float32 array: ``2 * sqrt(R)`` where ``R`` is the largest integer squared radius of a
    distance-ridge ball containing the voxel, after BoneJ's surface clean-up, masked to the phase.

    Notes
    -----
    Balls are digital: voxel ``x`` is in the ball of centre ``c`` and squared radius ``R`` when
    ``|x - c|^2 <= R``, ``R`` being the squared distance from ``c`` to the nearest background voxel
    (so the ball touches that voxel). On a voxel grid this overestimates the continuous thickness of
    a plate of ``t`` voxels by up to about one voxel (a 1-voxel plate reads 2), the known
    discretisation bias of BoneJ.

    References
    ----------
    Hildebrand T, Rüegsegger P (1997) A new method for the model-independent assessment of
    thickness in three-dimensional images. J Microsc 185:67-75.
    Dougherty R, Kunzelmann K-H (2007) Computing local thickness of 3D structures with ImageJ.
    Microsc Microanal 13 (S02):1678-1679.
    """
    phase = np.asarray(phase, dtype=bool)
    if not phase.any():
        return np.zeros(phase.shape, dtype=np.float32)
    sq = squared_distance_map(phase)
    lt = _kernels.clean_up(max_ball_map(sq, _ridge_balls(sq)))
    lt[~phase] = 0
    return lt


def thickness_stats(phase: np.ndarray) -> ThicknessStats:
    """Mean, SD (population, as BoneJ) and maximum of the local thickness over the phase, voxels.

    NaN where the phase is empty or fills the image (no thickness is defined)."""
    phase = np.asarray(phase, dtype=bool)
    n = int(phase.sum())
    if n == 0 or n == phase.size:
        return ThicknessStats(float("nan"), float("nan"), float("nan"), n)
    counts, sums, squares, maxima = _kernels.masked_stats(local_thickness_map(phase), phase)
    # summed here, not in the parallel kernel, so that the figures do not depend on the threads
    count, s1, s2, mx = int(counts.sum()), np.sum(sums), np.sum(squares), maxima.max()
    mean = s1 / count
    return ThicknessStats(float(mean), float(np.sqrt(max(s2 / count - mean * mean, 0.0))),
                          float(mx), n)
