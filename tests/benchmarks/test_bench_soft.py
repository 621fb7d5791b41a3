"""Forward and backward time of the differentiable morphometry terms on a batch of 16 slices of
128 x 128 (2D terms) and on one 16 x 128 x 128 stack (3D terms), 2 CPU cores; the L1 loss of
the same tensors as the peer.

    python -m pytest tests/benchmarks/test_bench_soft.py -o addopts="" --benchmark-only
"""

from __future__ import annotations

import pytest
import torch

from bonesr_bench.morphometry.soft import cl_dice, soft_bv_tv, soft_euler, thickness_term

TERMS = {
    "l1 (peer)": lambda p, q, nd: (p - q).abs().mean(),
    "bv_tv": lambda p, q, nd: (soft_bv_tv(p, nd) - soft_bv_tv(q, nd)).abs().mean(),
    "euler": lambda p, q, nd: (soft_euler(p, nd) - soft_euler(q, nd)).abs().mean(),
    "cldice": lambda p, q, nd: (1 - cl_dice(p, q, iterations=10, ndim=nd)).mean(),
    "thickness": lambda p, q, nd: thickness_term(p, q, steps=8, ndim=nd).mean(),
}


@pytest.mark.benchmark(group="soft morphometry, forward + backward")
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("term", list(TERMS))
def test_forward_backward(benchmark, term, ndim):
    torch.set_num_threads(2)
    shape = (16, 1, 128, 128) if ndim == 2 else (1, 16, 128, 128)
    g = torch.Generator().manual_seed(0)
    q = torch.rand(shape, generator=g)

    def run():
        p = torch.rand(shape, generator=g).requires_grad_()
        TERMS[term](p, q, ndim).backward()
        return p.grad

    assert benchmark(run).shape == shape
