"""Cortical thickness and porosity on a tube with a known wall and known pores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from bonesr_bench.morphometry import cortical_morphometry, morphometry
from bonesr_bench.morphometry.cortical import cortical_porosity

from conftest import grid


def tube(n=100, r_in=30, r_out=40):
    z, y, x = grid((n, n, n))
    r = np.hypot(y - n / 2, x - n / 2)
    envelope = (r >= r_in) & (r < r_out)
    return z, y, x, envelope


def test_tube_with_known_closed_and_open_pores():
    z, y, x, env = tube()
    bone = env.copy()
    closed = np.zeros_like(env)
    for k, zc in enumerate((20, 50, 80)):  # three balls of radius 3 in mid-wall: closed
        ang = 1.0 + k
        cy, cx = 50 + 35 * np.sin(ang), 50 + 35 * np.cos(ang)
        closed |= (z - zc) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 9
    # one radial canal through the whole wall along +x at z = 60 (open to both surfaces)
    canal = (np.abs(z - 60) <= 1) & (np.abs(y - 50) <= 1) & (x >= 50) & env
    # one longitudinal canal inside the wall, cut by the image's top and bottom only: closed
    long_canal = (y - 15) ** 2 + (x - 50) ** 2 <= 4
    pores = (closed | canal | long_canal) & env
    bone &= ~pores
    po = cortical_porosity(bone, env, 10.0)
    # pores are counted in the envelope eroded by one voxel (not at the image's top and bottom)
    inner = ndi.binary_erosion(env, ndi.generate_binary_structure(3, 1), 1, border_value=1)
    n_env, n_closed = inner.sum(), ((closed | long_canal) & inner).sum()
    n_open = (canal & inner).sum()
    assert po.n_pores == 5 and po.n_closed == 4
    assert po.total_pct == pytest.approx(100 * (pores & inner).sum() / n_env)
    assert po.open_pct == pytest.approx(100 * n_open / n_env)
    assert po.closed_pct == pytest.approx(100 * n_closed / ((bone & inner).sum() + n_closed))
    assert po.mean_pore_volume_um3 == pytest.approx((pores & inner).sum() * 1000.0 / 5)


def test_a_one_voxel_mismatch_at_the_surfaces_is_not_porosity():
    """A scan whose periosteal surface sits one voxel inside the fixed envelope shows no pores."""
    _, _, _, env = tube()
    shrunk = ndi.binary_erosion(env, ndi.generate_binary_structure(3, 1), 1, border_value=1)
    po = cortical_porosity(shrunk, env, 10.0)
    assert po.n_pores == 0 and po.total_pct == 0.0
    # without the margin the same scan reads thousands of voxels of "open porosity"
    assert cortical_porosity(shrunk, env, 10.0, margin_vox=0).open_pct > 10


def test_cortical_thickness_of_a_solid_tube():
    """A 10-voxel wall (the tube crosses the image, so it continues) reads 10 to 11 voxels: the
    even-plate rule on a curved wall."""
    _, _, _, env = tube()
    ct = cortical_morphometry(env, 10.0, env)
    assert 100.0 <= ct.ct_th_um <= 112.0
    assert ct.ct_po_pct == 0.0 and ct.po_n == 0


def test_regions_select_the_keys():
    _, y, x, env = tube(60, 18, 24)
    r = np.hypot(y - 30, x - 30)
    bone = env | ((r < 18) & ((x % 8) < 2))
    regions = np.zeros(env.shape, np.uint8)
    regions[env] = 2
    only_cortical = morphometry(bone, 10.5, regions=regions)
    assert set(only_cortical) == {"ct_th_um", "ct_po_pct", "ct_po_closed_pct", "ct_po_open_pct",
                                  "po_n", "po_mean_volume_um3"}
    regions[r < 18] = 1
    both = morphometry(bone, 10.5, regions=regions)
    assert list(both)[:10] == ["bv_tv_pct", "tb_th_um", "tb_th_sd_um", "tb_sp_um", "tb_sp_sd_um",
                               "tb_n_per_mm", "conn_d_per_mm3", "da_bonej", "da_ratio", "smi"]
    assert len(both) == 16


def test_empty_envelope_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        cortical_morphometry(np.ones((5, 5, 5), bool), 10.0, np.zeros((5, 5, 5), bool))
