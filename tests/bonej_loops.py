"""Slow, literal loop transcriptions of BoneJ's Connectivity edge counts, used only as a test
oracle for the vectorised port in ``bonesr_bench.morphometry.connectivity``."""

import numpy as np


def edge_correction_loops(bone: np.ndarray) -> float:
    d, h, w = bone.shape

    def px(x, y, z):
        return 0 <= x < w and 0 <= y < h and 0 <= z < d and bool(bone[z, y, x])

    xi, yi, zi = max(1, w - 1), max(1, h - 1), max(1, d - 1)
    xs, ys, zs = range(0, w, xi), range(0, h, yi), range(0, d, zi)
    f = sum(px(x, y, z) for z in zs for y in ys for x in xs)
    se = (sum(px(x, y, z) for z in zs for y in ys for x in range(1, w - 1))
          + sum(px(x, y, z) for z in zs for x in xs for y in range(1, h - 1))
          + sum(px(x, y, z) for y in ys for x in xs for z in range(1, d - 1)))
    sf = (sum(px(x, y, z) for z in zs for y in range(1, h - 1) for x in range(1, w - 1))
          + sum(px(x, y, z) for y in ys for z in range(1, d - 1) for x in range(1, w - 1))
          + sum(px(x, y, z) for x in xs for y in range(1, h - 1) for z in range(1, d - 1)))
    ev = (sum(px(x, y, z) or px(x - 1, y, z) for z in zs for y in ys for x in range(1, w))
          + sum(px(x, y, z) or px(x, y - 1, z) for z in zs for x in xs for y in range(1, h))
          + sum(px(x, y, z) or px(x, y, z - 1) for x in xs for y in ys for z in range(1, d)))
    fv = 0
    for z in zs:
        for y in range(h + 1):
            for x in range(w + 1):
                fv += px(x, y, z) or px(x, y - 1, z) or px(x - 1, y - 1, z) or px(x - 1, y, z)
    for x in xs:
        for y in range(h + 1):
            for z in range(1, d):
                fv += px(x, y, z) or px(x, y - 1, z) or px(x, y - 1, z - 1) or px(x, y, z - 1)
    for y in ys:
        for x in range(1, w):
            for z in range(1, d):
                fv += px(x, y, z) or px(x, y, z - 1) or px(x - 1, y, z - 1) or px(x - 1, y, z)
    fe = 0
    for z in zs:
        for y in range(h + 1):
            for x in range(w + 1):
                if px(x, y, z):
                    fe += 2
                else:
                    fe += px(x, y - 1, z) + px(x - 1, y, z)
    for y in ys:
        for z in range(1, d):
            for x in range(w):
                fe += px(x, y, z) or px(x, y, z - 1)
        for z in range(d):
            for x in range(w + 1):
                fe += px(x, y, z) or px(x - 1, y, z)
    for x in xs:
        for z in range(1, d):
            for y in range(h):
                fe += px(x, y, z) or px(x, y, z - 1)
        for z in range(d):
            for y in range(1, h):
                fe += px(x, y, z) or px(x, y - 1, z)
    e = se + 3 * f
    c = sf + 2 * e - 3 * f
    dd = ev + f
    return (fv - fe + c) / 2 + (dd - e) / 4 + f / 8
