"""LR-to-HR registration (affine, ANTsPy): a known rotation and shift is recovered to within half
an HR voxel on the exact x2 grid, and a poor registration is flagged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from bonesr_bench.split.register import RegistrationWarning, block_mean, ncc, register

pytest.importorskip("ants", reason="pip install antspyx")


@pytest.fixture(scope="module")
def pair():
    """A two-phase structure (HR, 10.5 µm) and its LR scan (21 µm) taken after a 4 degree
    rotation about z and a shift of (2.3, -1.7, 1.1) HR voxels."""
    rng = np.random.default_rng(0)
    f = ndi.gaussian_filter(rng.random((64, 80, 80)), 3)
    hr = (f > np.quantile(f, 0.75)).astype(np.float32) + 0.05 * rng.standard_normal(f.shape)
    moved = ndi.shift(ndi.rotate(hr, 4, axes=(1, 2), reshape=False, order=1, mode="nearest"),
                      (2.3, -1.7, 1.1), order=1, mode="nearest")
    return hr.astype(np.float32), block_mean(moved, 2).astype(np.float32)


def test_known_rotation_and_shift_are_recovered_within_half_an_hr_voxel(pair):
    from skimage.registration import phase_cross_correlation

    hr, lr = pair
    r = register(hr, lr, 10.5, 21.0)
    truth = block_mean(hr, 2)  # what the LR scan would be with no motion, on the x2 grid
    assert r.lr_on_grid.shape == truth.shape == (32, 40, 40)
    inner = (slice(4, -4),) * 3  # away from the resampling border
    shift, _, _ = phase_cross_correlation(truth[inner], r.lr_on_grid[inner], upsample_factor=20)
    assert np.abs(shift).max() * 2 <= 0.5  # LR voxels -> HR voxels
    assert r.ncc > 0.85 and r.ncc > ncc(lr, truth) + 0.2 and not r.poor
    rotation = np.asarray(r.matrix[:3])
    assert abs(np.degrees(np.arcsin(rotation[1, 2]))) == pytest.approx(4, abs=0.5)


def test_a_poor_registration_is_flagged(pair):
    hr, _ = pair
    noise = np.random.default_rng(1).random((32, 40, 40)).astype(np.float32)
    with pytest.warns(RegistrationWarning, match="poor"):
        r = register(hr, noise, 10.5, 21.0)
    assert r.poor and r.ncc < 0.8


def test_block_mean_and_ncc():
    a = np.arange(4 * 4 * 4, dtype=float).reshape(4, 4, 4)
    assert block_mean(a, 2)[0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5, 16, 17, 20, 21]))
    assert ncc(a, 3 * a + 1) == pytest.approx(1.0) and ncc(a, -a) == pytest.approx(-1.0)


def test_the_share_of_the_grid_inside_the_lr_field_of_view(pair):
    hr, lr = pair
    part = register(hr, lr[:, :, :36], 10.5, 21.0, fill=-1.0)  # the LR scan saw x < 72 only
    assert 0.8 < part.coverage < 0.9 and part.ncc > 0.9  # NCC over the part it saw
    assert not part.inside[:, :, 37:].any() and (part.lr_on_grid[:, :, 37:] == -1.0).all()
    inner = register(hr[8:56, 10:70, 10:70], lr, 10.5, 21.0)  # HR inside a larger LR view
    assert inner.coverage == 1.0 and inner.ncc > 0.9


def test_an_hr_stack_at_one_end_of_a_longer_lr_stack_is_found(pair):
    """The HR scan covers the first 40 % of the LR scan along z: the centres of mass, where ANTs
    starts by default, are 200 µm apart; the masked cross-correlation gives the start."""
    from skimage.registration import phase_cross_correlation

    hr, lr = pair
    r = register(hr[:26], lr, 10.5, 21.0)
    truth = block_mean(hr[:26], 2)
    shift, _, _ = phase_cross_correlation(truth[1:-1, 4:-4, 4:-4], r.lr_on_grid[1:-1, 4:-4, 4:-4],
                                          upsample_factor=20)
    assert np.abs(shift).max() * 2 <= 0.5 and r.ncc > 0.85 and r.coverage > 0.9


def test_coarse_shift_finds_a_whole_voxel_translation():
    from bonesr_bench.split.register import coarse_shift

    rng = np.random.default_rng(3)
    big = ndi.gaussian_filter(rng.random((40, 48, 48)), 1.5).astype(np.float32)
    part = big[12:30, 5:40, 8:44]
    assert coarse_shift(part, big).tolist() == [-12, -5, -8]


def test_registration_leaves_no_files_behind(pair, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where ANTs would write its own
    hr, lr = pair
    register(hr[:32], lr[:16], 10.5, 21.0)
    assert list(tmp_path.iterdir()) == []


def test_the_refinement_ends_at_one_point_whatever_the_start(pair):
    """ANTs' multi-threaded optimiser stops at a slightly different pose on every run; the
    Gauss-Newton refinement takes starts 0.5 µm and 0.1 degree apart to the same rounded affine,
    so the resampled LR scan (and a split's bytes) do not depend on the run."""
    from bonesr_bench.split.register import refine

    hr, lr = pair
    blocks = block_mean(hr, 2)
    ends = []
    for dz, angle in ((0.5, 0.0), (-0.4, 0.1)):
        a = np.concatenate([np.eye(3), np.full((3, 1), -5.25)], axis=1)
        c, s = np.cos(np.radians(4 + angle)), np.sin(np.radians(4 + angle))
        a[1:, 1:3] = [[c, -s], [s, c]]
        a[0, 3] += dz
        ends.append(refine(blocks, lr, a, origin_um=5.25, spacing_um=21.0, lr_um=21.0)[0])
    assert np.array_equal(ends[0], ends[1])
    assert ends[0][1, 2] == pytest.approx(-np.sin(np.radians(4)), abs=0.01)


@pytest.mark.parametrize("shape", [(1, 5, 7), (2, 3, 4), (9, 10, 11), (20, 33, 17)])
def test_the_spline_kernel_gives_scipys_bytes(shape):
    """The refinement's cubic spline (numba, every core) gives scipy's map_coordinates values
    (order 3, mode "nearest", no prefilter) bit for bit: inside, on the border, far outside,
    on exact grid points and thirds; and refuses a volume that is not 3-D in one line."""
    from scipy import ndimage as ndi

    from bonesr_bench.split._interp import spline3_nearest

    rng = np.random.default_rng(sum(shape))
    coeffs = ndi.spline_filter(rng.random(shape), order=3, mode="nearest")
    n = np.array(shape, float)
    idx = np.concatenate([rng.uniform(-0.5, 1.5, (20000, 3)) * (n - 1),  # a third outside
                          np.floor(rng.uniform(-2, n + 2, (2000, 3)) * 3) / 3,
                          [[0, 0, 0], n - 1, [-1e6, 1e6, -0.0]]])
    want = ndi.map_coordinates(coeffs, idx.T, order=3, mode="nearest", prefilter=False)
    got = spline3_nearest(coeffs, idx)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
    with pytest.raises(ValueError, match="3-D volume"):
        spline3_nearest(coeffs[0], idx)
