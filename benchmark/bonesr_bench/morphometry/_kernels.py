"""Compiled CPU kernels (numba) behind the local-thickness measures.

Each kernel reproduces one step of BoneJ's Thickness (Fiji's LocalThickness plugin, Dougherty &
Kunzelmann 2007) on integer squared distances, so the results match BoneJ voxel for voxel:

1. squared Euclidean distance map of the phase (``edt.edtsq``, outside the image is not background);
2. :func:`distance_ridge`: keep the voxels whose inscribed ball is not contained in the ball of a
   26-neighbour (BoneJ's template test);
3. :func:`max_ball_fill`: every voxel takes the largest squared radius ``R`` of a ridge ball that
   contains it (``|x - c|^2 <= R``), balls clipped to the image and allowed to spill onto the
   nearest background voxels, exactly as BoneJ's sphere filling does. We do not fill spheres:
   each z plane is solved independently (in parallel) by painting the discs that cross it in
   descending R, each image row keeping a union-find of its unpainted cells. A voxel is written
   once and a row that is already painted costs O(1), so the cost grows with the balls' rows
   (sum of pi R) rather than their volumes (sum of 4/3 pi R^1.5), which is what makes large
   marrow cavities tractable;
4. :func:`clean_up`: BoneJ's surface clean-up (surface voxels take the mean of their interior
   26-neighbours).

All kernels are written here from the published descriptions; no BoneJ code is used.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["ridge_templates", "distance_ridge", "max_ball_fill", "clean_up"]


#: the 26 neighbours of a voxel in the order (dz, dy, dx) of three nested loops over -1, 0, 1
#: (the order sums are taken in), with the number of non-zero offsets (1 face, 2 edge, 3 corner)
NB26 = np.array([(dz, dy, dx, abs(dz) + abs(dy) + abs(dx)) for dz in (-1, 0, 1)
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) != (0, 0, 0)],
                dtype=np.int64)


@njit(cache=True, inline="always")
def _inside(z, y, x, d, h, w) -> bool:
    return 0 <= z < d and 0 <= y < h and 0 <= x < w


@njit(cache=True)
def _template_value(r_sq: int, dx: int, dy: int, dz: int) -> int:
    # Smallest squared radius of a ball centred at offset (dx, dy, dz) that contains the digital
    # ball of squared radius r_sq centred at the origin (BoneJ's Distance_Ridge "scanCube").
    r = 1 + int(np.sqrt(r_sq))
    best = 0
    for k in range(r + 1):
        dk = (k + dz) * (k + dz)
        for j in range(r + 1):
            kj = k * k + j * j
            if kj <= r_sq:
                i_plus = int(np.sqrt(r_sq - kj)) + dx
                v = dk + (j + dy) * (j + dy) + i_plus * i_plus
                if v > best:
                    best = v
    return best


@njit(cache=True, parallel=True)
def ridge_templates(values: np.ndarray) -> np.ndarray:
    """Template table ``t[n - 1, i]`` for each squared radius ``values[i]`` and each neighbour
    class n (1 face, 2 edge, 3 corner neighbour)."""
    out = np.zeros((3, values.shape[0]), dtype=np.int64)
    for i in prange(values.shape[0]):
        v = values[i]
        out[0, i] = _template_value(v, 1, 0, 0)
        out[1, i] = _template_value(v, 1, 1, 0)
        out[2, i] = _template_value(v, 1, 1, 1)
    return out


@njit(cache=True, parallel=True)
def distance_ridge(sq: np.ndarray, lut: np.ndarray, templ: np.ndarray) -> np.ndarray:
    """Boolean ridge of an integer squared distance map ``sq`` (z, y, x).

    ``lut[s]`` maps a squared distance to its column in ``templ``. Only neighbours inside the image
    are tested, as in BoneJ.
    """
    d, h, w = sq.shape
    ridge = np.zeros(sq.shape, dtype=np.bool_)
    for z in prange(d):
        for y in range(h):
            for x in range(w):
                s0 = sq[z, y, x]
                if s0 <= 0:
                    continue
                col = lut[s0]
                is_ridge = True
                for k in range(26):
                    zz, yy, xx = z + NB26[k, 0], y + NB26[k, 1], x + NB26[k, 2]
                    if _inside(zz, yy, xx, d, h, w) and sq[zz, yy, xx] >= templ[NB26[k, 3] - 1,
                                                                                   col]:
                        is_ridge = False
                        break
                ridge[z, y, x] = is_ridge
    return ridge


@njit(cache=True)
def _isqrt(v: int) -> int:
    r = int(np.sqrt(v))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(cache=True)
def _find(nxt: np.ndarray, y: int, x: int) -> int:
    root = x
    while nxt[y, root] != root:
        root = nxt[y, root]
    while nxt[y, x] != root:  # path compression
        step = nxt[y, x]
        nxt[y, x] = root
        x = step
    return root


@njit(cache=True, parallel=True)
def max_ball_fill(
    zc: np.ndarray, yc: np.ndarray, xc: np.ndarray, rc: np.ndarray,
    group_start: np.ndarray, group_rho: np.ndarray, shape: tuple,
) -> np.ndarray:
    """``out[v] = 2 sqrt(max{R_c : |v - c|^2 <= R_c})`` (float32 diameter) over the balls, 0 where
    none (balls clipped to the image, spilling onto background as in BoneJ).

    Balls come grouped by ``rho = isqrt(R)`` (groups in descending rho, ``group_start`` offsets),
    sorted by ``zc`` inside a group. Each z plane is solved on its own (in parallel): the discs that
    cross it are painted in descending R, each row keeping a union-find of its unpainted cells, so a
    cell is written once and a fully covered row costs O(1).
    """
    d, h, w = shape
    out = np.zeros((d, h, w), dtype=np.float32)
    n_groups = group_rho.shape[0]
    for z in prange(d):
        nxt = np.empty((h, w + 1), dtype=np.int32)
        for yy in range(h):
            for xx in range(w + 1):
                nxt[yy, xx] = xx
        plane = out[z]
        for g in range(n_groups):
            a = group_start[g]
            e = group_start[g + 1]
            rho = group_rho[g]
            lo = a + np.searchsorted(zc[a:e], z - rho)
            hi = a + np.searchsorted(zc[a:e], z + rho + 1)
            if lo >= hi:
                continue
            # counting sort of the crossing balls by R descending (R - rho^2 spans 2 rho + 1)
            span = 2 * rho + 2
            cnt = np.zeros(span + 1, dtype=np.int64)
            m = 0
            for b in range(lo, hi):
                dz = z - zc[b]
                if dz * dz <= rc[b]:
                    cnt[span - 1 - (rc[b] - rho * rho) + 1] += 1
                    m += 1
            if m == 0:
                continue
            for k in range(span):
                cnt[k + 1] += cnt[k]
            order = np.empty(m, dtype=np.int64)
            for b in range(lo, hi):
                dz = z - zc[b]
                if dz * dz <= rc[b]:
                    k = span - 1 - (rc[b] - rho * rho)
                    order[cnt[k]] = b
                    cnt[k] += 1
            for q in range(m):
                b = order[q]
                dz = z - zc[b]
                rem = rc[b] - dz * dz
                val = np.float32(2.0 * np.sqrt(np.float64(rc[b])))
                y0 = yc[b]
                x0c = xc[b]
                # rows y0 +- dy share the half-width wx = isqrt(rem - dy^2), updated incrementally
                wx = _isqrt(rem)
                dy = 0
                while dy * dy <= rem:
                    lim = rem - dy * dy
                    while wx * wx > lim:
                        wx -= 1
                    xa = max(0, x0c - wx)
                    xb = min(w - 1, x0c + wx)
                    for side in range(2 if dy > 0 else 1):
                        yy = y0 - dy if side == 0 else y0 + dy
                        if yy < 0 or yy >= h:
                            continue
                        xx = _find(nxt, yy, xa)
                        while xx <= xb:
                            plane[yy, xx] = val
                            nxt[yy, xx] = xx + 1
                            xx = _find(nxt, yy, xx + 1)
                    dy += 1
    return out


@njit(cache=True)
def group_by_rho(r: np.ndarray):
    """Stable counting sort of balls by rho = isqrt(R), descending. Returns (order, group_start,
    group_rho) for the non-empty groups."""
    n = r.shape[0]
    rho = np.empty(n, dtype=np.int64)
    top = 0
    for i in range(n):
        rho[i] = _isqrt(r[i])
        if rho[i] > top:
            top = rho[i]
    cnt = np.zeros(top + 2, dtype=np.int64)
    for i in range(n):
        cnt[top - rho[i] + 1] += 1
    n_groups = 0
    for k in range(1, top + 2):
        if cnt[k] > 0:
            n_groups += 1
    group_start = np.empty(n_groups + 1, dtype=np.int64)
    group_rho = np.empty(n_groups, dtype=np.int64)
    g = 0
    for k in range(top + 1):
        if cnt[k + 1] > 0:
            group_start[g] = cnt[k]
            group_rho[g] = top - k
            g += 1
        cnt[k + 1] += cnt[k]
    group_start[n_groups] = n
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        k = top - rho[i]
        order[cnt[k]] = i
        cnt[k] += 1
    return order, group_start, group_rho


@njit(cache=True, parallel=True)
def masked_stats(values: np.ndarray, mask: np.ndarray):
    """Per z slice: (count, sum, sum of squares, max) of ``values`` where ``mask``, float64
    accumulators. The caller sums the slices (in a fixed order, whatever the thread count)."""
    d = values.shape[0]
    n = np.zeros(d, dtype=np.int64)
    s1 = np.zeros(d)
    s2 = np.zeros(d)
    mx = np.zeros(d)
    for z in prange(d):
        for y in range(values.shape[1]):
            for x in range(values.shape[2]):
                if mask[z, y, x]:
                    v = np.float64(values[z, y, x])
                    n[z] += 1
                    s1[z] += v
                    s2[z] += v * v
                    if v > mx[z]:
                        mx[z] = v
    return n, s1, s2, mx


@njit(cache=True, parallel=True)
def _surface(lt: np.ndarray) -> np.ndarray:
    """Covered voxels with an uncovered 26-neighbour inside the image: covered and not in the
    3 x 3 x 3 erosion of the covered set (outside counts as covered), eroded separably along x,
    y and z."""
    d, h, w = lt.shape
    a = np.empty(lt.shape, dtype=np.bool_)
    b = np.empty(lt.shape, dtype=np.bool_)
    for z in prange(d):
        for y in range(h):
            for x in range(w):
                a[z, y, x] = (lt[z, y, x] != 0 and (x == 0 or lt[z, y, x - 1] != 0)
                              and (x == w - 1 or lt[z, y, x + 1] != 0))
    for z in prange(d):
        for y in range(h):
            for x in range(w):
                b[z, y, x] = (a[z, y, x] and (y == 0 or a[z, y - 1, x])
                              and (y == h - 1 or a[z, y + 1, x]))
    for z in prange(d):
        for y in range(h):
            for x in range(w):
                a[z, y, x] = lt[z, y, x] != 0 and not (
                    b[z, y, x] and (z == 0 or b[z - 1, y, x]) and (z == d - 1 or b[z + 1, y, x]))
    return a


@njit(cache=True, parallel=True)
def clean_up(lt: np.ndarray) -> np.ndarray:
    """BoneJ's surface clean-up of a local-thickness map (float32, 0 = not covered).

    A covered voxel with an uncovered 26-neighbour inside the image is a surface voxel; it takes
    the mean of its interior (non-surface, covered) 26-neighbours, or keeps its value if it has
    none.
    """
    d, h, w = lt.shape
    surface = _surface(lt)
    out = lt.copy()
    for z in prange(d):
        for y in range(h):
            for x in range(w):
                if not surface[z, y, x]:
                    continue
                n = 0
                acc = np.float32(0.0)
                for k in range(26):
                    zz, yy, xx = z + NB26[k, 0], y + NB26[k, 1], x + NB26[k, 2]
                    if not _inside(zz, yy, xx, d, h, w):
                        continue
                    v = lt[zz, yy, xx]
                    if v > 0 and not surface[zz, yy, xx]:
                        n += 1
                        acc += v
                if n > 0:
                    out[z, y, x] = acc / np.float32(n)
    return out
