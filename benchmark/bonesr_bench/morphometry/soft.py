"""Differentiable morphometry: soft versions of bone parameters, for losses that train SR models
to keep bone structure (the reference study's proposed future work). torch, 2D and 3D.

Every function takes a **soft bone map** ``p`` in [0, 1] (a tensor (..., H, W) for 2D or
(..., D, H, W) for 3D, leading dimensions batched), e.g. :func:`soft_bone` of an SR output, and
is differentiable in ``p``. On a binary map each one is the hard quantity it stands for:

- :func:`soft_bv_tv`: BV/TV, the mean occupancy (a fraction, not %);
- :func:`soft_euler`: the expected Euler characteristic of the union of closed voxels (26-
  connected bone, 6-connected marrow in 3D; 8/4 in 2D) when each voxel is bone independently
  with probability ``p``; on a binary map it equals ``skimage.measure.euler_number`` with full
  connectivity and the engine's :func:`morphometry.connectivity.euler_characteristic`; with
  :func:`soft_conn_d` it gives a Conn.D surrogate (1 - χ) / TV, without BoneJ's edge
  correction;
- :func:`soft_skeleton` and :func:`cl_dice`: the iterative soft skeleton and the centreline
  Dice of Shit et al. (CVPR 2021), for connectivity;
- :func:`erosion_profile`: the fraction of bone left after k = 1..K soft erosions; for a plate
  of thickness T voxels (T odd) it is (T - 2k)/T and sums to ((T - 1)/2)^2 / T, about T/4 for
  thick plates (less for rods, whose section shrinks along two axes), so comparing profiles
  compares thickness distributions (what :func:`thickness_term` does).

Written here because no library provides them: clDice's authors publish a reference script,
not a package, and the expected Euler characteristic is ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_bone", "soft_bv_tv", "soft_euler", "soft_conn_d", "soft_erode", "soft_dilate",
           "soft_skeleton", "cl_dice", "erosion_profile", "thickness_term", "TERMS",
           "morphometry_loss"]


def soft_bone(x: torch.Tensor, threshold: float, tau: float) -> torch.Tensor:
    """``sigmoid((x - threshold) / tau)``: a soft segmentation at the Otsu level ``threshold``
    (in the units of ``x``); tau -> 0 gives the hard one."""
    return torch.sigmoid((x - threshold) / tau)


def _dims(p: torch.Tensor, ndim: int) -> tuple[int, ...]:
    if ndim not in (2, 3) or p.dim() < ndim:
        raise ValueError(f"ndim must be 2 or 3 and p have at least that many dimensions, got "
                         f"ndim={ndim}, p.shape={tuple(p.shape)}")
    return tuple(range(p.dim() - ndim, p.dim()))


def soft_bv_tv(p: torch.Tensor, ndim: int = 3) -> torch.Tensor:
    """Bone volume fraction (a fraction) per leading index."""
    return p.mean(dim=_dims(p, ndim))


def _pair_product(q: torch.Tensor, dim: int) -> torch.Tensor:
    """Products of neighbours along ``dim``: q[i] * q[i + 1]."""
    n = q.shape[dim]
    return q.narrow(dim, 0, n - 1) * q.narrow(dim, 1, n - 1)


def soft_euler(p: torch.Tensor, ndim: int = 3) -> torch.Tensor:
    """Expected Euler characteristic per leading index (see the module docstring).

    The union of closed voxels is a cubical complex: χ = V - E + F - C (3D; V - E + F in 2D).
    A cell is in the union when any voxel incident to it is bone, with probability 1 - Π (1 - p)
    over those voxels (8 for a vertex in 3D, 4 for an edge, 2 for a face, 1 for a cube), each
    computed from the complement padded with empty space, by products of neighbours along each
    axis."""
    dims = _dims(p, ndim)
    q = 1.0 - p
    pad = [1, 1] * ndim  # F.pad: last dimension first
    q = F.pad(q, pad, value=1.0)  # outside the image is empty
    chi = torch.zeros(p.shape[: p.dim() - ndim], dtype=p.dtype, device=p.device)
    # a cell of dimension k is spanned along k axes and sits between voxels along the others:
    # the product of q over its incident voxels is the pair product along each axis it does
    # not span; along an axis it spans, it covers one voxel (interior slice of the padding)
    for mask in range(1 << ndim):
        span = [dims[i] for i in range(ndim) if mask >> i & 1]
        t = q
        for d in dims:
            if d in span:
                t = t.narrow(d, 1, t.shape[d] - 2)
            else:
                t = _pair_product(t, d)
        present = 1.0 - t
        sign = -1.0 if len(span) % 2 else 1.0
        chi = chi + sign * present.sum(dim=dims)
    return chi


def soft_conn_d(p: torch.Tensor, voxel_um: float, ndim: int = 3) -> torch.Tensor:
    """Conn.D surrogate (1 - χ) / TV in mm^-3 (3D) with the expected χ; no edge correction."""
    tv = torch.tensor(float(torch.tensor(p.shape[-ndim:]).prod()) * (voxel_um * 1e-3) ** ndim,
                      dtype=p.dtype)
    return (1.0 - soft_euler(p, ndim)) / tv


def _pool(p: torch.Tensor, ndim: int, kernel, op: str) -> torch.Tensor:
    """Max (``op="max"``) or min pooling with stride 1 and same size over the last ``ndim``
    dimensions; the outside counts as empty for max and as full for min (erosion does not eat
    bone at the image border, as the engine's structures continue past it)."""
    lead = p.shape[: p.dim() - ndim]
    x = p.reshape(-1, 1, *p.shape[p.dim() - ndim:])
    pad = [k // 2 for k in reversed(kernel) for _ in (0, 1)]
    fill = 0.0 if op == "max" else 1.0
    x = F.pad(x, pad, value=fill)
    pool = F.max_pool3d if ndim == 3 else F.max_pool2d
    y = pool(x, kernel, stride=1) if op == "max" else -pool(-x, kernel, stride=1)
    return y.reshape(*lead, *y.shape[2:])


def soft_erode(p: torch.Tensor, ndim: int = 3) -> torch.Tensor:
    """Soft erosion by the cross (6-neighbourhood in 3D, 4 in 2D): the minimum of the three
    (two) axis-wise minima over 3 voxels."""
    out = None
    for axis in range(ndim):
        kernel = tuple(3 if a == axis else 1 for a in range(ndim))
        m = _pool(p, ndim, kernel, "min")
        out = m if out is None else torch.minimum(out, m)
    return out


def soft_dilate(p: torch.Tensor, ndim: int = 3) -> torch.Tensor:
    """Soft dilation by the full 3^ndim cube (maximum pooling)."""
    return _pool(p, ndim, (3,) * ndim, "max")


def soft_skeleton(p: torch.Tensor, iterations: int = 10, ndim: int = 3) -> torch.Tensor:
    """The soft skeleton of Shit et al. (2021): what each erosion removes that an opening would
    not restore, accumulated over ``iterations`` erosions (at least the structures' half
    thickness in voxels)."""
    def opening(x):
        return soft_dilate(soft_erode(x, ndim), ndim)

    skel = F.relu(p - opening(p))
    x = p
    for _ in range(iterations):
        x = soft_erode(x, ndim)
        delta = F.relu(x - opening(x))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def cl_dice(pred: torch.Tensor, target: torch.Tensor, iterations: int = 10, ndim: int = 3,
            smooth: float = 1.0) -> torch.Tensor:
    """Centreline Dice (Shit et al. 2021) per leading index: the harmonic mean of the share of
    the predicted skeleton inside the target and of the target's skeleton inside the
    prediction; 1 when they agree. ``1 - cl_dice`` is the loss."""
    dims = _dims(pred, ndim)
    sp, st = soft_skeleton(pred, iterations, ndim), soft_skeleton(target, iterations, ndim)
    precision = ((sp * target).sum(dims) + smooth) / (sp.sum(dims) + smooth)
    sensitivity = ((st * pred).sum(dims) + smooth) / (st.sum(dims) + smooth)
    return 2.0 * precision * sensitivity / (precision + sensitivity)


def erosion_profile(p: torch.Tensor, steps: int = 8, ndim: int = 3) -> torch.Tensor:
    """(..., steps): bone left after k = 1..steps soft erosions, as a fraction of the bone
    volume (a plate of thickness T voxels keeps (T - 2k)/T; see the module docstring)."""
    dims = _dims(p, ndim)
    v0 = p.sum(dims).clamp_min(1e-6)
    out, x = [], p
    for _ in range(steps):
        x = soft_erode(x, ndim)
        out.append(x.sum(dims) / v0)
    return torch.stack(out, dim=-1)


def thickness_term(pred: torch.Tensor, target: torch.Tensor, steps: int = 8,
                   ndim: int = 3) -> torch.Tensor:
    """Mean |difference| of the erosion profiles per leading index: 0 when the two have the
    same distribution of thicknesses (up to ``2 steps`` voxels)."""
    return (erosion_profile(pred, steps, ndim) - erosion_profile(target, steps, ndim)).abs() \
        .mean(dim=-1)


#: the terms a training recipe can weight (``Recipe.morphometry_weights``)
TERMS = ("bv_tv", "euler", "cldice", "thickness")


def morphometry_loss(pred01: torch.Tensor, target01: torch.Tensor, weights: dict[str, float],
                     threshold: float, tau: float, ndim: int = 2
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """Σ weight x term between the soft bone maps of ``pred01`` and ``target01`` (intensities in
    [0, 1]; bone above ``threshold``, softness ``tau``), averaged over the leading dimensions;
    (total, each term's value). Terms: ``bv_tv`` |ΔBV/TV| (a fraction); ``euler`` |Δχ| per 100
    pixels (voxels); ``cldice`` 1 - clDice; ``thickness`` the erosion profiles' mean
    |difference|."""
    p, q = soft_bone(pred01, threshold, tau), soft_bone(target01, threshold, tau)
    n = float(torch.tensor(p.shape[-ndim:]).prod())
    fns = {"bv_tv": lambda: (soft_bv_tv(p, ndim) - soft_bv_tv(q, ndim)).abs(),
           "euler": lambda: (soft_euler(p, ndim) - soft_euler(q, ndim)).abs() * (100.0 / n),
           "cldice": lambda: 1.0 - cl_dice(p, q, ndim=ndim),
           "thickness": lambda: thickness_term(p, q, ndim=ndim)}
    total = pred01.new_zeros(())
    parts = {}
    for name, w in weights.items():
        term = fns[name]().mean()
        parts[name] = float(term.detach())
        total = total + w * term
    return total, parts
