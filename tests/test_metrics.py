"""PSNR/SSIM calibration (pyiqa-style): equal to scikit-image's reference formulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bonesr_bench.scoring.perceptual import psnr_slices, score_volume, ssim_3d, ssim_slices, to_255
from bonesr_bench.split.synth.scanner import scan_pair
from bonesr_bench.split.synth.specimen import draw_params, generate

WINDOW = (-0.5, 3.5)


@pytest.fixture(scope="module")
def slices():
    """Real scanner output: HR slices and a degraded version (LR up-sampled by repetition)."""
    spec = generate(draw_params(11), shape=(6, 96, 96))
    hr, lr = scan_pair(spec.fraction, seed=11)
    up = lr.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    return to_255(hr, WINDOW), to_255(up, WINDOW)


def test_ssim_equals_scikit_image_wang_to_1e6(slices):
    ref, test = slices
    ours = ssim_slices(ref, test, shave=2).numpy()
    for k in range(ref.shape[0]):
        r, t = ref[k, 2:-2, 2:-2].numpy(), test[k, 2:-2, 2:-2].numpy()
        theirs = structural_similarity(r, t, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255)
        assert ours[k] == pytest.approx(theirs, abs=1e-6)


def test_psnr_equals_scikit_image(slices):
    ref, test = slices
    ours = psnr_slices(ref, test, shave=2).numpy()
    for k in range(ref.shape[0]):
        theirs = peak_signal_noise_ratio(ref[k, 2:-2, 2:-2].numpy(), test[k, 2:-2, 2:-2].numpy(),
                                         data_range=255)
        assert ours[k] == pytest.approx(theirs, abs=1e-9)


def test_identity_and_ordering(slices):
    ref, test = slices
    assert torch.allclose(ssim_slices(ref, ref), torch.ones(ref.shape[0], dtype=ref.dtype))
    assert torch.isinf(psnr_slices(ref, ref)).all()
    noisier = test + torch.randn(test.shape, generator=torch.Generator().manual_seed(0),
                                 dtype=test.dtype) * 20
    assert (ssim_slices(ref, noisier) < ssim_slices(ref, test)).all()
    stack = torch.cat([ref, ref])  # 12 slices: room for the 11³ window
    assert ssim_3d(stack, stack) == pytest.approx(1.0)


def test_score_volume_and_errors(slices):
    ref, test = slices
    s = score_volume(ref.numpy() / 255 * 4 - 0.5, test.numpy() / 255 * 4 - 0.5, WINDOW)
    assert s.n_slices == ref.shape[0] and 0 < s.ssim < 1 and np.isfinite(s.psnr_db)
    assert np.isnan(s.ssim_3d)  # 6 slices: smaller than the 11³ window
    with pytest.raises(ValueError, match="shapes differ"):
        ssim_slices(ref, test[:, :-1])
    with pytest.raises(ValueError, match="smaller than the 11 x 11"):
        ssim_slices(ref[:, :12, :12], test[:, :12, :12], shave=2)


def test_the_fused_cpu_ssim_equals_the_torch_formulation_at_any_thread_count():
    """scoring._ssim (the CPU path) against the separable torch filter (the CUDA path) on the
    same float64 data: slices and 3D, to 1e-13; and the same bits at 1 and 2 threads."""
    import numba

    from bonesr_bench.scoring import perceptual as P

    rng = np.random.default_rng(3)
    a = torch.from_numpy(rng.random((16, 40, 47)) * 255)
    b = (a + torch.from_numpy(rng.normal(0, 25, a.shape))).clamp(0, 255)
    r, t = P._shave(a, 2)[:, None], P._shave(b, 2)[:, None]
    want_2d = P._ssim_map(r, t, 2).flatten(1).mean(1)
    want_3d = P._mean(P._ssim_map(P._shave(a, 2)[None, None], P._shave(b, 2)[None, None], 3))
    old = numba.get_num_threads()
    seen = []
    try:
        for n in sorted({1, max(2, old)}):
            numba.set_num_threads(n)
            seen.append((ssim_slices(a, b).numpy().tobytes(), ssim_3d(a, b)))
    finally:
        numba.set_num_threads(old)
    assert all(s == seen[0] for s in seen)
    got_2d = torch.from_numpy(np.frombuffer(seen[0][0], dtype=np.float64).copy())
    assert torch.allclose(got_2d, want_2d, rtol=0, atol=1e-13)
    assert abs(seen[0][1] - want_3d) < 1e-13
