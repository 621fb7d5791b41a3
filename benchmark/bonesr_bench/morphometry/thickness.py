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

from . import _kernels

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
    sq = edt.edtsq(phase, black_border=False, parallel=0)
    return np.rint(sq).astype(np.int64)


def _offsets(reach: int):
    """All non-zero offsets with components in [-reach, reach], and for each the index of its
    class (sorted absolute components) in the returned class table."""
    rng = np.arange(-reach, reach + 1)
    offs = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), -1).reshape(-1, 3)
    offs = offs[np.abs(offs).sum(1) > 0]
    classes, klass = np.unique(np.sort(np.abs(offs), axis=1), axis=0, return_inverse=True)
    return offs.astype(np.int64), klass.astype(np.int64).ravel(), classes.astype(np.int64)


def _ridge_balls(sq: np.ndarray, prune_reach: int = 2):
    """BoneJ's distance-ridge balls, less those contained in a ball centred within
    ``prune_reach`` voxels (which leaves the max-ball map unchanged), grouped for filling."""
    values = np.unique(sq[sq > 0])
    lut = np.zeros(int(values[-1]) + 1, dtype=np.int64)
    lut[values] = np.arange(values.size)
    templ = _kernels.ridge_templates(values)
    ridge = _kernels.distance_ridge(sq, lut, templ)
    z, y, x = (c.astype(np.int64) for c in np.nonzero(ridge))
    r = sq[z, y, x]
    if prune_reach > 1 and z.size:
        offs, klass, classes = _offsets(prune_reach)
        used = np.unique(r)
        lut_used = np.zeros(int(used[-1]) + 1, dtype=np.int64)
        lut_used[used] = np.arange(used.size)
        templ2 = _kernels.offset_templates(used, classes)
        keep = _kernels.prune_contained(sq, z, y, x, lut_used[r], offs, klass, templ2)
        z, y, x, r = z[keep], y[keep], x[keep], r[keep]
    return z, y, x, r


def max_ball_map(phase_sq: np.ndarray, balls) -> np.ndarray:
    """Largest squared radius (voxels^2) of a ball containing each voxel, 0 where none."""
    z, y, x, r = balls
    rho = np.floor(np.sqrt(r)).astype(np.int64)
    order = np.lexsort((z, -rho))  # groups of rho descending, sorted by z inside a group
    z, y, x, r, rho = z[order], y[order], x[order], r[order], rho[order]
    starts = np.flatnonzero(np.r_[True, rho[1:] != rho[:-1]])
    group_start = np.r_[starts, rho.size].astype(np.int64)
    return _kernels.max_ball_fill(z, y, x, r, group_start, rho[starts], phase_sq.shape)


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
    out = np.zeros(phase.shape, dtype=np.float32)
    if not phase.any():
        return out
    sq = squared_distance_map(phase)
    filled = max_ball_map(sq, _ridge_balls(sq))
    lt = (2.0 * np.sqrt(filled)).astype(np.float32)
    lt = _kernels.clean_up(lt)
    out[phase] = lt[phase]
    return out


def thickness_stats(phase: np.ndarray) -> ThicknessStats:
    """Mean, SD (population, as BoneJ) and maximum of the local thickness over the phase, voxels.

    NaN where the phase is empty or fills the image (no thickness is defined)."""
    phase = np.asarray(phase, dtype=bool)
    n = int(phase.sum())
    if n == 0 or n == phase.size:
        return ThicknessStats(float("nan"), float("nan"), float("nan"), n)
    lt = local_thickness_map(phase)[phase].astype(np.float64)
    return ThicknessStats(float(lt.mean()), float(lt.std()), float(lt.max()), n)
