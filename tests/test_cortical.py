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
    # CTAn's definitions over the whole envelope; the canal counts its full volume, rim included
    n_closed = ((closed | long_canal) & env).sum()
    assert canal.sum() == 3 * 3 * 10
    assert po.n_pores == 5 and po.n_closed == 4
    assert po.total_pct == pytest.approx(100 * pores.sum() / env.sum(), rel=1e-12)
    assert po.open_pct == pytest.approx(100 * canal.sum() / env.sum(), rel=1e-12)
    assert po.closed_pct == pytest.approx(100 * n_closed / (bone.sum() + n_closed), rel=1e-12)
    assert po.mean_pore_volume_um3 == pytest.approx(pores.sum() * 1000.0 / 5, rel=1e-12)


# A square tube made by slicing: image (Z, Y, X) = (24, 40, 40), the envelope the square ring
# y, x in [4, 36) minus [14, 26) on every slice (it crosses the image's top and bottom), a wall
# 10 voxels thick. Envelope: 24 * (32**2 - 12**2) = 24 * 880 = 21120 voxels. Its core (eroded by
# one 6-connected voxel, not at the top and bottom): outer square 30**2, hole 14**2 less its 4
# corners (each keeps two envelope neighbours in x and y), 24 * (900 - 192) = 16992; rim 4128.
# Closed pores, each >= 2 voxels from the surfaces: cubes of 2**3 = 8 and 3**3 = 27 voxels, one
# voxel: 36. Open pores: a canal 2 (z) x 3 (x) through the +y wall from the endosteal surface
# (y = 26) to the periosteal one (y = 35): 2 * 3 * 10 = 60 voxels, 12 of them in the rim; a blind
# canal 2 x 2 from the periosteal surface (x = 4) 5 voxels into the -x wall: 20 voxels, 4 in the
# rim. Open 80, total 116, Po.N 5 (3 closed).
N_ENV, N_CORE = 21120, 16992
N_CLOSED, N_OPEN = 8 + 27 + 1, 60 + 20


def square_tube():
    env = np.zeros((24, 40, 40), bool)
    env[:, 4:36, 4:36] = True
    env[:, 14:26, 14:26] = False
    closed = np.zeros_like(env)
    closed[5:7, 7:9, 18:20] = True  # -y wall (y in [4, 14)), 8 voxels
    closed[12:15, 18:21, 29:32] = True  # +x wall (x in [26, 36)), 27 voxels
    closed[20, 31, 10] = True  # -x/+y corner, 1 voxel
    canal = np.zeros_like(env)
    canal[16:18, 26:36, 20:23] = True  # +y wall, inner to outer surface
    blind = np.zeros_like(env)
    blind[2:4, 20:22, 4:9] = True  # -x wall, from the outer surface only
    return env, closed, canal, blind


def test_square_tube_phantom_reads_the_exact_ctan_fractions():
    env, closed, canal, blind = square_tube()
    assert (env.sum(), closed.sum(), canal.sum(), blind.sum()) == (N_ENV, 36, 60, 20)
    bone = env & ~(closed | canal | blind)
    po = cortical_porosity(bone, env, 10.0)
    n_bone = N_ENV - N_CLOSED - N_OPEN  # 21004: the surfaces match the envelope
    assert po.n_pores == 5 and po.n_closed == 3
    assert po.total_pct == pytest.approx(100 * 116 / 21120, rel=1e-12, abs=0)
    assert po.open_pct == pytest.approx(100 * 80 / 21120, rel=1e-12, abs=0)
    assert po.closed_pct == pytest.approx(100 * 36 / (n_bone + 36), rel=1e-12, abs=0)
    assert po.closed_pct == pytest.approx(100 * 36 / 21040, rel=1e-12, abs=0)
    assert po.mean_pore_volume_um3 == pytest.approx(116 * 1000.0 / 5, rel=1e-12, abs=0)


@pytest.mark.parametrize("margin_vox", [0, 1, 2])
def test_matching_surfaces_read_the_same_for_any_margin(margin_vox):
    """With surfaces on the mask, the rim is bone except where the canals cross it: the margin
    changes nothing, and open canals count their full volume (rim voxels included)."""
    env, closed, canal, blind = square_tube()
    po = cortical_porosity(env & ~(closed | canal | blind), env, 10.0, margin_vox=margin_vox)
    assert (po.n_pores, po.n_closed) == (5, 3)
    assert po.open_pct == pytest.approx(100 * N_OPEN / N_ENV, rel=1e-12, abs=0)
    assert po.total_pct == pytest.approx(100 * (N_OPEN + N_CLOSED) / N_ENV, rel=1e-12, abs=0)


def test_denominators_are_the_whole_envelope_not_its_core():
    env, closed, canal, blind = square_tube()
    bone = env & ~(closed | canal | blind)
    core = ndi.binary_erosion(env, ndi.generate_binary_structure(3, 1), 1, border_value=1)
    assert core.sum() == N_CORE
    po = cortical_porosity(bone, env, 10.0)
    assert po.total_pct == pytest.approx(100 * (N_OPEN + N_CLOSED) / env.sum(), rel=1e-12)
    assert po.total_pct != pytest.approx(100 * (N_OPEN + N_CLOSED) / N_CORE, rel=1e-3)
    n_bone = int((bone & env).sum())
    assert po.closed_pct == pytest.approx(100 * N_CLOSED / (n_bone + N_CLOSED), rel=1e-12)
    assert po.closed_pct != pytest.approx(
        100 * N_CLOSED / ((bone & core).sum() + N_CLOSED), rel=1e-3)
    # two more voxels of bone-filled wall outside (the canals prolonged to the new surfaces, by
    # 2 * 2 * 3 = 12 and 2 * 2 * 2 = 8 voxels): envelope 24 * (36**2 - 12**2) = 27648 voxels,
    # open pores 100, the same closed ones, bone 27648 - 136 = 27512
    thick = np.zeros_like(env)
    thick[:, 2:38, 2:38] = True
    thick[:, 14:26, 14:26] = False
    ext = np.zeros_like(env)
    ext[16:18, 36:38, 20:23] = True
    ext[2:4, 20:22, 2:4] = True
    po_thick = cortical_porosity(thick & ~(closed | canal | blind | ext), thick, 10.0)
    assert thick.sum() == 27648 and (po_thick.n_pores, po_thick.n_closed) == (5, 3)
    assert po_thick.open_pct == pytest.approx(100 * 100 / 27648, rel=1e-12, abs=0)
    assert po_thick.total_pct == pytest.approx(100 * 136 / 27648, rel=1e-12, abs=0)
    assert po_thick.closed_pct == pytest.approx(100 * 36 / (27512 + 36), rel=1e-12, abs=0)


def test_a_surface_one_voxel_inside_the_mask_leaves_the_exact_porosity():
    """The scan's surfaces one voxel inside the fixed envelope: the void rim is no porosity, the
    canals still count their full volume (their mouths in the rim, nothing more along it), and
    the object volume of Po(cl) is the bone actually present."""
    env, closed, canal, blind = square_tube()
    core = ndi.binary_erosion(env, ndi.generate_binary_structure(3, 1), 1, border_value=1)
    bone = core & ~(closed | canal | blind)
    po = cortical_porosity(bone, env, 10.0)
    assert (po.n_pores, po.n_closed) == (5, 3)
    assert po.open_pct == pytest.approx(100 * 80 / 21120, rel=1e-12, abs=0)
    assert po.total_pct == pytest.approx(100 * 116 / 21120, rel=1e-12, abs=0)
    # bone = core minus the pores' core voxels (36 closed, 48 + 16 open): 16892
    assert bone.sum() == 16992 - 36 - 48 - 16
    assert po.closed_pct == pytest.approx(100 * 36 / (16892 + 36), rel=1e-12, abs=0)


def test_a_pit_in_the_rim_alone_is_not_a_pore():
    """A void voxel in the rim that reaches no pore of the core is a surface sliver: it is not
    pore volume, but stays envelope volume."""
    env, closed, canal, blind = square_tube()
    bone = env & ~(closed | canal | blind)
    bone[10, 4, 30] = False  # periosteal rim of the -y wall
    bone[10, 13, 20] = False  # endosteal rim of the -y wall
    po = cortical_porosity(bone, env, 10.0)
    assert (po.n_pores, po.n_closed) == (5, 3)
    assert po.total_pct == pytest.approx(100 * 116 / 21120, rel=1e-12, abs=0)
    assert po.closed_pct == pytest.approx(100 * 36 / (21004 - 2 + 36), rel=1e-12, abs=0)


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


def test_a_negative_margin_is_an_error():
    env, *_ = square_tube()
    with pytest.raises(ValueError, match="margin_vox"):
        cortical_porosity(env, env, 10.0, margin_vox=-1)
