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


@njit(cache=True)
def _axis(c: float):
    """(first support index, its four weights) of the cubic spline at coordinate ``c`` along
    an axis, as scipy (1.6 and later) takes them in its "nearest" mode: the weights at the
    coordinate itself; the caller clamps the support's indices to the axis."""
    f = math.floor(c)
    x = c - f
    y = x
    z = 1.0 - x
    w1 = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0
    w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
    w0 = z * z * z / 6.0
    w3 = 1.0
    w3 -= w0
    w3 -= w1
    w3 -= w2
    return int(f) - 1, (w0, w1, w2, w3)


@njit(cache=True, parallel=True)
def _spline3(coeffs, idx):
    d0, d1, d2 = coeffs.shape
    n = idx.shape[0]
    out = np.empty(n, dtype=np.float64)
    for p in prange(n):
        s0, w0 = _axis(idx[p, 0])
        s1, w1 = _axis(idx[p, 1])
        s2, w2 = _axis(idx[p, 2])
        t = 0.0
        for a in range(4):
            i0 = min(max(s0 + a, 0), d0 - 1)
            for b in range(4):
                i1 = min(max(s1 + b, 0), d1 - 1)
                for c in range(4):
                    v = coeffs[i0, i1, min(max(s2 + c, 0), d2 - 1)]
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
