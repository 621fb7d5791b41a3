"""DA from the MIL fabric (analytic stretch, plates) and SMI (plates, rods, spheres)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from bonesr_bench.morphometry import degree_of_anisotropy, structure_model_index
from bonesr_bench.morphometry.anisotropy import DIRECTIONS, mil_fabric, mil_lengths

from conftest import grid


def boolean_model(n: int, stretch: float, seed: int, n_seeds: int = 900) -> np.ndarray:
    """Union of balls (radius 5 voxels) around uniform random seeds, stretched by ``stretch``
    along z: an affine image of an isotropic structure, so its MIL ellipsoid has axis ratio
    exactly ``stretch`` along z in the continuum."""
    rng = np.random.default_rng(seed)
    seeds = np.ones((n, n, n), bool)
    idx = (rng.random((n_seeds, 3)) * n).astype(int)
    seeds[idx[:, 0], idx[:, 1], idx[:, 2]] = False
    dist = ndi.distance_transform_edt(seeds, sampling=(1 / stretch, 1, 1))
    return dist < 5


@pytest.mark.parametrize("stretch", [1.0, 1.5, 2.0])
def test_da_ratio_recovers_an_affine_stretch(stretch):
    """Tolerance 8 %: random sampling of one 112³ realisation plus digitisation."""
    bone = boolean_model(112, stretch, seed=1)
    fabric = mil_fabric(bone)
    assert fabric.da_ratio == pytest.approx(stretch, rel=0.08)
    if stretch > 1:
        assert abs(fabric.axes[0, 2]) > 0.99  # the longest MIL is along z
    assert fabric.da_bonej == pytest.approx(1 - 1 / fabric.da_ratio**2)


def test_parallel_plates_are_maximally_anisotropic():
    z = np.arange(64)[:, None, None]
    bone = np.broadcast_to((z % 8) < 2, (64, 32, 32))
    mil = mil_lengths(bone)
    # along the normal: 63 voxel pairs per line, 15 intercepts (the first plate starts at the
    # border, so the line enters it without an intercept): 4.2, the 8-voxel period's 4 + border
    assert mil[0] == pytest.approx(63 / 15)
    assert np.isinf(mil[1]) and np.isinf(mil[2])
    da_bonej, da_ratio = degree_of_anisotropy(bone)
    assert da_bonej == pytest.approx(1.0)
    assert np.isinf(da_ratio)


def test_directions_are_the_13_lattice_directions():
    assert len({tuple(v) for v in DIRECTIONS} | {tuple(-v) for v in DIRECTIONS}) == 26


def test_mil_respects_the_mask():
    """Lines are counted inside the VOI only: plates outside the VOI do not count."""
    z = np.arange(64)[:, None, None]
    bone = np.broadcast_to((z % 8) < 2, (64, 16, 16)).copy()
    bone[32:] = False
    mask = np.zeros_like(bone)
    mask[:32] = True
    # 31 pairs per line inside the VOI, 7 intercepts; the 4 plates outside the VOI add none
    assert mil_lengths(bone, mask)[0] == pytest.approx(31 / 7)


def shapes():
    z, y, x = grid((80, 80, 80))
    return {
        "sphere": ((z - 40) ** 2 + (y - 40) ** 2 + (x - 40) ** 2 < 30**2, 4.0),
        "rod": ((y - 40) ** 2 + (x - 40) ** 2 < 12**2, 3.0),
        "plate": (np.abs(z - 40) < 6, 0.0),
    }


@pytest.mark.parametrize("name", ["sphere", "rod", "plate"])
def test_smi_of_ideal_shapes(name):
    """Plate 0, rod 3, sphere 4 within 0.05 (mesh of the smoothed binary)."""
    bone, expected = shapes()[name]
    assert structure_model_index(bone) == pytest.approx(expected, abs=0.05)


def test_smi_is_negative_for_concave_bone_and_nan_without_surface():
    z, y, x = grid((60, 60, 60))
    cavity = (z - 30) ** 2 + (y - 30) ** 2 + (x - 30) ** 2 >= 20**2
    assert structure_model_index(cavity) < 0
    assert np.isnan(structure_model_index(np.ones((8, 8, 8), bool)))


def test_smi_ignores_surfaces_cut_by_the_voi():
    """A rod cut by a box VOI keeps SMI 3: the VOI's faces are not bone surface."""
    bone, _ = shapes()["rod"]
    mask = np.zeros_like(bone)
    mask[20:60, 20:60, 20:60] = True
    assert structure_model_index(bone, mask) == pytest.approx(3.0, abs=0.06)
