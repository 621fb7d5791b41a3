"""Cubic B-spline interpolation at scattered points (numba), giving exactly the values of
``scipy.ndimage.map_coordinates(coeffs, idx.T, order=3, mode="nearest", prefilter=False)``.

Why by hand: the registration's refinement (:func:`split.register.refine`) evaluates the
spline at 200 000 points seven times per Gauss-Newton iteration, which took 5 s of a v2
specimen's 30 s build in scipy's generic N-d loop. Its bytes feed the stored LR scans, so this
port repeats scipy's arithmetic (1.15's C code) operation for operation: its weights, its
border rule, its summation order (the last axis fastest, each coefficient multiplied by the
axis weights in axis order, no fused multiply-add). ``tests/test_register.py`` checks it bit
for bit against the installed scipy. Unlike scipy's loop, it runs on every core, and the
refinement no longer depends on which scipy is installed.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["spline3_nearest"]


@njit(cache=True, inline="always")
def _axis(c: float, n: int, ix: np.ndarray, w: np.ndarray) -> None:
    """Support indices ``ix`` (4) and weights ``w`` (4) of the cubic spline at coordinate ``c``
    along an axis of ``n`` samples, as scipy (1.6 and later) takes them in its "nearest" mode:
    the weights at the coordinate itself, the support's indices clamped to the axis."""
    f = math.floor(c)
    start = int(f) - 1
    x = c - f
    y = x
    z = 1.0 - x
    w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0
    w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
    w[0] = z * z * z / 6.0
    last = 1.0
    last -= w[0]
    last -= w[1]
    last -= w[2]
    w[3] = last
    for k in range(4):
        ix[k] = min(max(start + k, 0), n - 1)


@njit(cache=True, parallel=True)
def _spline3(coeffs, idx):
    d0, d1, d2 = coeffs.shape
    n = idx.shape[0]
    out = np.empty(n, dtype=np.float64)
    for p in prange(n):
        i0 = np.empty(4, dtype=np.int64)
        i1 = np.empty(4, dtype=np.int64)
        i2 = np.empty(4, dtype=np.int64)
        w0 = np.empty(4, dtype=np.float64)
        w1 = np.empty(4, dtype=np.float64)
        w2 = np.empty(4, dtype=np.float64)
        _axis(idx[p, 0], d0, i0, w0)
        _axis(idx[p, 1], d1, i1, w1)
        _axis(idx[p, 2], d2, i2, w2)
        t = 0.0
        for a in range(4):
            for b in range(4):
                for c in range(4):
                    v = coeffs[i0[a], i1[b], i2[c]]
                    v *= w0[a]
                    v *= w1[b]
                    v *= w2[c]
                    t += v
        out[p] = t
    return out


def spline3_nearest(coeffs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The cubic spline of B-spline coefficients ``coeffs`` (z, y, x; e.g. from
    ``scipy.ndimage.spline_filter(order=3, mode="nearest")``) at voxel coordinates ``idx``
    (n, 3); a coordinate outside the volume takes the border's value. float64 (n,)."""
    coeffs = np.ascontiguousarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 3 or np.ndim(idx) != 2 or np.shape(idx)[1] != 3:
        raise ValueError(f"spline3_nearest takes a 3-D volume and (n, 3) coordinates, not "
                         f"{coeffs.shape} and {np.shape(idx)}")
    return _spline3(coeffs, np.ascontiguousarray(idx, dtype=np.float64))
