"""Euler characteristic and Conn.D: an independent implementation, BoneJ's loops, topology."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import euler_number

from bonesr_bench.morphometry import connectivity_density
from bonesr_bench.morphometry.connectivity import delta_chi, edge_correction, euler_characteristic

from bonej_loops import edge_correction_loops
from conftest import BONEJ, grid, random_structure


@pytest.mark.parametrize("seed", range(5))
def test_chi_equals_scikit_image(seed):
    b = random_structure((30, 34, 38), 1.2, 0.35, seed)
    assert euler_characteristic(b) == euler_number(b, connectivity=3)


def test_chi_of_real_bone_equals_bonej(roi_bone):
    for name, bone in roi_bone.items():
        assert euler_characteristic(bone) == BONEJ[name]["euler"]
        assert delta_chi(bone) == BONEJ[name]["delta_chi"]  # 1-voxel empty border: no correction


def test_conn_d_of_real_bone_equals_bonej(roi_bone):
    for name, bone in roi_bone.items():
        per_vox3 = connectivity_density(bone, 1000.0)  # 1 mm voxels: mm^-3 == voxel^-3
        assert per_vox3 == pytest.approx(BONEJ[name]["conn_d_per_vox3"], rel=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_edge_correction_equals_bonej_loops(seed):
    """The vectorised edge correction equals a literal transcription of BoneJ's counting loops,
    on random shapes including 1- and 2-voxel-thin images."""
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 9, 3))
    b = rng.random(shape) < rng.random()
    assert edge_correction(b) == edge_correction_loops(b)


def test_topology_of_simple_shapes():
    z, y, x = grid((21, 21, 21))
    r2 = (z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2
    assert euler_characteristic(r2 <= 36) == 1  # ball
    assert euler_characteristic((r2 <= 64) & (r2 > 9)) == 2  # hollow ball: one cavity
    torus = ((np.hypot(y - 10, x - 10) - 6) ** 2 + (z - 10) ** 2) <= 4
    assert euler_characteristic(torus) == 0  # one tunnel


def test_rod_crossing_the_image_contributes_nothing():
    """A rod cut by two faces continues beyond them: Δχ = 0, so Conn.D = 1 / TV."""
    z, y, x = grid((30, 15, 15))
    rod = (y - 7) ** 2 + (x - 7) ** 2 <= 9
    assert euler_characteristic(rod) == 1
    assert delta_chi(rod) == pytest.approx(0.0)


@pytest.mark.parametrize("cells", [2, 3, 4])
def test_cubic_rod_lattice_has_minus_two_per_cell(cells):
    """An infinite cubic lattice of rods has χ = -2 per unit cell (one node, three rods). A block
    of ``cells``³ cells, cut through the rods midway between nodes, has Δχ = -2 cells³."""
    p = 8
    n = p * cells
    z, y, x = grid((n, n, n))
    zc, yc, xc = (z % p) - p // 2, (y % p) - p // 2, (x % p) - p // 2
    rod = lambda a, b: (np.abs(a) <= 1) & (np.abs(b) <= 1)  # noqa: E731
    lattice = rod(yc, xc) | rod(zc, xc) | rod(zc, yc)
    assert delta_chi(lattice) == pytest.approx(-2 * cells**3)
    tv_mm3 = n**3 * 0.01**3
    assert connectivity_density(lattice, 10.0) == pytest.approx((1 + 2 * cells**3) / tv_mm3)


def test_conn_d_without_bone_is_undefined_as_in_the_full_morphometry():
    """No bone in the VOI: Conn.D is NaN, as trabecular_morphometry reports it (not 1/TV)."""
    import math

    from bonesr_bench.morphometry import connectivity_density, trabecular_morphometry

    empty = np.zeros((12, 12, 12), bool)
    assert math.isnan(connectivity_density(empty, 10.5))
    assert math.isnan(trabecular_morphometry(empty, 10.5).conn_d_per_mm3)
    mask = np.zeros_like(empty)
    mask[2:10, 2:10, 2:10] = True
    bone = np.zeros_like(empty)
    bone[0, 0, 0] = True  # outside the VOI
    assert math.isnan(connectivity_density(bone, 10.5, mask=mask))
