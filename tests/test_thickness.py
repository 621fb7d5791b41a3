"""Local thickness: BoneJ calibration on real bone, an exact oracle, and analytic phantoms."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from bonesr_bench.morphometry import thickness as T
from bonesr_bench.morphometry import trabecular_separation

from conftest import BONEJ, grid, random_structure


@njit(cache=True)
def _sphere_fill(z, y, x, r, shape):
    # Literal BoneJ sphere filling: every voxel of every ridge ball, no ordering, no pruning.
    out = np.zeros(shape, dtype=np.int32)
    d, h, w = shape
    for b in range(z.shape[0]):
        R = r[b]
        ri = int(np.sqrt(R)) + 1
        for zz in range(max(0, z[b] - ri), min(d, z[b] + ri + 1)):
            for yy in range(max(0, y[b] - ri), min(h, y[b] + ri + 1)):
                for xx in range(max(0, x[b] - ri), min(w, x[b] + ri + 1)):
                    q = (zz - z[b]) ** 2 + (yy - y[b]) ** 2 + (xx - x[b]) ** 2
                    if q <= R and R > out[zz, yy, xx]:
                        out[zz, yy, xx] = R
    return out


@pytest.mark.parametrize("name", sorted(BONEJ))
@pytest.mark.parametrize("phase", ["tb_th", "tb_sp"])
def test_equals_bonej_on_real_trabecular_bone(roi_bone, name, phase):
    """Mean and SD of BoneJ's own Thickness output on real ROIs, to 1e-6 (float32 rounding)."""
    bone = roi_bone[name]
    stats = T.thickness_stats(bone if phase == "tb_th" else ~bone)
    assert stats.mean_vox == pytest.approx(BONEJ[name][f"{phase}_vox"], rel=1e-6)
    assert stats.sd_vox == pytest.approx(BONEJ[name][f"{phase}_sd_vox"], rel=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_max_ball_map_equals_literal_sphere_filling(seed):
    """The row-painted fill (descending radius, union-find rows) equals BoneJ's sphere filling
    voxel for voxel."""
    n = (20, 36, 52)[seed % 3]
    phase = random_structure((n, n + 3, n + 5), 2.0 + seed, 0.7, seed)
    sq = T.squared_distance_map(phase)
    ridge = T._ridge_balls(sq)
    expected = _sphere_fill(*ridge, phase.shape)
    got = T.max_ball_map(sq, ridge)
    np.testing.assert_array_equal(got, (2.0 * np.sqrt(expected)).astype(np.float32))


@pytest.mark.parametrize("t", [1, 2, 3, 4, 5, 8, 9])
def test_plate_thickness_is_exact_with_bonej_odd_bias(t):
    """A plate of t voxels crossing the image reads t (even t) or t + 1 (odd t): a digital ball of
    squared radius R touches the nearest background voxel, the known +1 bias of odd plates."""
    vol = np.zeros((t + 10, 24, 24), bool)
    vol[5 : 5 + t] = True
    lt = T.local_thickness_map(vol)[vol]
    expected = t if t % 2 == 0 else t + 1
    np.testing.assert_allclose(lt, expected, rtol=1e-6)


@pytest.mark.parametrize("spacing", [6, 11, 20])
def test_parallel_plate_separation(spacing):
    """Marrow gaps of ``spacing`` voxels between 3-voxel plates: Tb.Sp follows the plate rule, in
    µm. The image starts and ends with a plate, so every gap is bounded; the two end plates are
    cut by the border and continue beyond it (they read thicker), the interior ones read 4."""
    period = spacing + 3
    z = np.arange(period * 4 + 3)[:, None, None]
    bone = np.broadcast_to((z % period) < 3, (z.size, 20, 20)).copy()
    sp, sd = trabecular_separation(bone, 10.0)
    assert sp == pytest.approx(10.0 * (spacing if spacing % 2 == 0 else spacing + 1))
    assert sd == pytest.approx(0.0, abs=1e-9)
    lt = T.local_thickness_map(bone)
    interior = bone.copy()
    interior[:3] = interior[-3:] = False
    np.testing.assert_allclose(lt[interior], 4.0, rtol=1e-6)
    assert (lt[:3][bone[:3]] > 4.0).all()


@pytest.mark.parametrize("radius", [3, 6.5, 10])
def test_rod_and_sphere_diameters(radius):
    """Rods (crossing the image) and balls read their diameter within 1.5 voxels: distances run
    between voxel centres, so a digitised disc whose centre falls between voxels reads up to
    about 1.1 voxel thin (radius 10, centre at a half voxel: 18.87 for 20)."""
    n = int(2 * radius + 12)
    z, y, x = grid((n, n, n))
    c = (n - 1) / 2
    rod = (y - c) ** 2 + (x - c) ** 2 <= radius**2
    ball = rod & ((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2 <= radius**2)
    for phase in (rod, ball):
        stats = T.thickness_stats(phase)
        assert abs(stats.mean_vox - 2 * radius) <= 1.5
        assert stats.max_vox <= 2 * radius + 1.0


def test_structure_cut_by_the_border_continues():
    """A rod crossing the top and bottom of the image keeps its thickness up to the border (voxels
    outside the image are not background)."""
    z, y, x = grid((30, 21, 21))
    rod = (y - 10) ** 2 + (x - 10) ** 2 <= 16
    lt = T.local_thickness_map(rod)
    per_slice = [lt[k][rod[k]].mean() for k in range(30)]
    np.testing.assert_allclose(per_slice, per_slice[15], rtol=1e-6)


def test_undefined_thickness_is_nan():
    full = np.ones((8, 8, 8), bool)
    assert np.isnan(T.thickness_stats(full).mean_vox)
    assert np.isnan(T.thickness_stats(~full).mean_vox)
    with pytest.raises(ValueError, match="fills the whole image"):
        T.squared_distance_map(full)


def test_mask_makes_outside_background():
    """Inside a VOI, marrow spaces end at the VOI boundary: a 10-voxel gap bounded by the VOI
    reads as a 10-voxel space even though the bone outside the VOI is absent."""
    bone = np.zeros((40, 30, 30), bool)
    mask = np.zeros_like(bone)
    mask[10:20] = True  # a 10-slice slab VOI with no bone: marrow bounded by the VOI faces
    bone[5:10] = True
    sp, _ = trabecular_separation(bone, 1.0, mask=mask)
    assert sp == pytest.approx(10.0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 9, 9), (5, 6, 7), (20, 30, 40)])
def test_surface_voxels_are_those_with_an_uncovered_26_neighbour(shape):
    """The clean-up's separable surface test against its definition, literally: a covered voxel
    with an uncovered 26-neighbour inside the image (outside counts as covered)."""
    from scipy import ndimage as ndi

    from bonesr_bench.morphometry._kernels import _surface

    rng = np.random.default_rng(sum(shape))
    lt = (rng.random(shape) < 0.7) * rng.random(shape, dtype=np.float32)
    covered = lt > 0
    want = covered & ~ndi.binary_erosion(covered, np.ones((3, 3, 3), bool), border_value=1)
    assert np.array_equal(_surface(lt.astype(np.float32)), want)
