"""Registration of one v1-sized specimen (HR 160 x 256 x 256, LR 80 x 128 x 128), our
``register`` (masked cross-correlation start, then ANTs affine, resampling and the NCC) side by
side with a plain ``ants.registration(type_of_transform="Affine")`` (ANTs' own start, no
resampling), the peer; and the whole ``data build --from-scans`` of that specimen.

    python -m pytest tests/benchmarks/test_bench_register.py -o addopts="" --benchmark-only

Each reports the NCC with the block-averaged HR over the LR's field of view as extra_info.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

ants = pytest.importorskip("ants", reason="pip install antspyx")


@pytest.fixture(scope="module")
def pair():
    """v1 test specimen s2000, its LR turned 3 degrees about z and shifted by a sub-voxel."""
    from bonesr_bench.split import SPLITS
    from bonesr_bench.split.synth.scanner import scan_pair
    from bonesr_bench.split.synth.specimen import draw_params, generate

    c = SPLITS["v1"]
    spec = generate(draw_params(2000), shape=c.hr_shape, voxel_um=c.hr_voxel_um)
    hr, lr = scan_pair(spec.fraction, hr_voxel_um=c.hr_voxel_um, seed=2000, device="cpu")
    moved = ndi.shift(ndi.rotate(lr, 3, axes=(1, 2), reshape=False, order=1, mode="nearest"),
                      (0.6, -0.4, 0.3), order=1, mode="nearest")
    return hr.astype(np.float32), moved.astype(np.float32)


@pytest.mark.benchmark(group="register one v1 specimen (2 cores)")
def test_register_ours(benchmark, pair):
    from bonesr_bench.split.register import register

    hr, lr = pair
    r = benchmark.pedantic(lambda: register(hr, lr, 10.5, 21.0), rounds=3, iterations=1)
    benchmark.extra_info["ncc"] = r.ncc


@pytest.mark.benchmark(group="register one v1 specimen (2 cores)")
def test_register_plain_ants(benchmark, pair):
    from bonesr_bench.split.register import block_mean, ncc

    hr, lr = pair

    def run():
        fixed = ants.from_numpy(hr, spacing=(10.5,) * 3)
        moving = ants.from_numpy(lr, spacing=(21.0,) * 3)
        return ants.registration(fixed, moving, type_of_transform="Affine", random_seed=0), \
            moving

    reg, moving = benchmark.pedantic(run, rounds=3, iterations=1)
    target = ants.from_numpy(np.zeros(tuple(n // 2 for n in hr.shape), np.float32),
                             origin=(5.25,) * 3, spacing=(21.0,) * 3)
    out = ants.apply_transforms(target, moving, reg["fwdtransforms"]).numpy()
    benchmark.extra_info["ncc"] = ncc(out, block_mean(hr, 2))
