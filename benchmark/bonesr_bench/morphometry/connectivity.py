"""Euler characteristic and connectivity density (Odgaard & Gundersen 1993), as BoneJ computes them.

Bone is 26-connected, marrow 6-connected. The Euler characteristic of the bone is counted on the
cubical complex of its closed voxels (chi = vertices - edges + faces - cubes), which equals the
octant look-up table of Toriwaki & Yonekura (2002) that BoneJ and ``skimage.measure.euler_number``
use. BoneJ's edge correction turns chi of the image into Δχ, the contribution of the image to the
Euler characteristic of the larger structure it was cut from, so that structures cut by the image
border are treated as continuing beyond it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["euler_characteristic", "edge_correction", "delta_chi"]


def euler_characteristic(bone: np.ndarray) -> int:
    """Euler characteristic χ of the 26-connected foreground, as if floating in empty space.

    χ = (number of components) - (number of tunnels) + (number of enclosed cavities).

    Examples
    --------
    >>> import numpy as np
    >>> ring = np.zeros((3, 5, 5), bool); ring[1, 1:4, 1:4] = True; ring[1, 2, 2] = False
    >>> euler_characteristic(ring)
    0
    """
    return cell_count_chi(np.pad(np.asarray(bone, dtype=bool), 1))


def cell_count_chi(p):
    """χ = vertices - edges + faces - cubes of the closed voxels of ``p``, a bool volume padded by
    one empty voxel on every side. Works on numpy arrays and torch tensors alike."""
    cubes = int(p.sum())
    faces = int((p[1:] | p[:-1]).sum() + (p[:, 1:] | p[:, :-1]).sum()
                + (p[:, :, 1:] | p[:, :, :-1]).sum())
    e0 = p[:, 1:, 1:] | p[:, :-1, 1:] | p[:, 1:, :-1] | p[:, :-1, :-1]
    e1 = p[1:, :, 1:] | p[:-1, :, 1:] | p[1:, :, :-1] | p[:-1, :, :-1]
    e2 = p[1:, 1:, :] | p[:-1, 1:, :] | p[1:, :-1, :] | p[:-1, :-1, :]
    edges = int(e0.sum() + e1.sum() + e2.sum())
    vertices = int((e0[1:] | e0[:-1]).sum())
    return vertices - edges + faces - cubes


def _sum(q: np.ndarray, zs, ys, xs, *shifts) -> int:
    """Count positions (z, y, x) in the product of index ranges where the image (zero outside, ``q``
    padded by one) is foreground at any of the shifted positions (dz, dy, dx)."""
    zs, ys, xs = (np.asarray(v, dtype=np.int64) + 1 for v in (zs, ys, xs))
    if zs.size == 0 or ys.size == 0 or xs.size == 0:
        return 0
    hit = np.zeros((zs.size, ys.size, xs.size), dtype=bool)
    for dz, dy, dx in shifts or ((0, 0, 0),):
        hit |= q[np.ix_(zs + dz, ys + dy, xs + dx)]
    return int(hit.sum())


def edge_correction(bone: np.ndarray) -> float:
    """BoneJ's correction χ₂/2 + χ₁/4 + χ₀/8 for the foreground cut by the image's faces, edges and
    corners (Odgaard & Gundersen 1993); Δχ = χ - correction."""
    b = np.asarray(bone, dtype=bool)
    d, h, w = b.shape
    q = np.pad(b, 1)
    zc, yc, xc = (sorted({0, n - 1}) for n in (d, h, w))
    z_in, y_in, x_in = np.arange(1, d - 1), np.arange(1, h - 1), np.arange(1, w - 1)
    z_v, y_v, x_v = np.arange(1, d), np.arange(1, h), np.arange(1, w)  # inner vertex lines
    y_all, x_all = np.arange(0, h + 1), np.arange(0, w + 1)

    f = _sum(q, zc, yc, xc)
    stack_edges = _sum(q, zc, yc, x_in) + _sum(q, zc, y_in, xc) + _sum(q, z_in, yc, xc)
    e = stack_edges + 3 * f
    stack_faces = _sum(q, zc, y_in, x_in) + _sum(q, z_in, yc, x_in) + _sum(q, z_in, y_in, xc)
    c = stack_faces + 2 * e - 3 * f
    edge_vertices = (_sum(q, zc, yc, x_v, (0, 0, 0), (0, 0, -1))
                     + _sum(q, zc, y_v, xc, (0, 0, 0), (0, -1, 0))
                     + _sum(q, z_v, yc, xc, (0, 0, 0), (-1, 0, 0)))
    dd = edge_vertices + f
    a = (_sum(q, zc, y_all, x_all, (0, 0, 0), (0, -1, 0), (0, -1, -1), (0, 0, -1))
         + _sum(q, z_v, y_all, xc, (0, 0, 0), (0, -1, 0), (-1, -1, 0), (-1, 0, 0))
         + _sum(q, z_v, yc, x_v, (0, 0, 0), (-1, 0, 0), (-1, 0, -1), (0, 0, -1)))
    # voxel edges on the top and bottom faces: along x and along y from each vertex
    b_edges = (_sum(q, zc, y_all, x_all, (0, 0, 0), (0, -1, 0))
               + _sum(q, zc, y_all, x_all, (0, 0, 0), (0, 0, -1)))
    b_edges += (_sum(q, z_v, yc, np.arange(0, w), (0, 0, 0), (-1, 0, 0))
                + _sum(q, np.arange(0, d), yc, x_all, (0, 0, 0), (0, 0, -1))
                + _sum(q, z_v, np.arange(0, h), xc, (0, 0, 0), (-1, 0, 0))
                + _sum(q, np.arange(0, d), y_v, xc, (0, 0, 0), (0, -1, 0)))
    chi_zero = f
    chi_one = dd - e
    chi_two = a - b_edges + c
    return chi_two / 2 + chi_one / 4 + chi_zero / 8


def delta_chi(bone: np.ndarray) -> float:
    """Δχ: the image's contribution to the Euler characteristic of the structure it was cut from."""
    return euler_characteristic(bone) - edge_correction(bone)
