"""Region masks for real bone, found from the (segmented) HR scan: the periosteal and endosteal
surfaces, the cortical envelope between them and the trabecular volume of interest.

The same definitions as the synthetic split (``benchmark/docs/DESIGN.md`` §1.1): region 2 is the
cortical envelope (cortical bone with its pores, between the periosteal and the endosteal surface),
region 1 the marrow side of the endosteal surface kept ``VOI_MARGIN_UM`` away from it in-plane, 0
the rest. Found by morphology on the bone mask (after Buie et al. 2007, Bone 41:505-515, in
spirit):

1. close the bone with a ball of ``pore_um`` radius: cortical pores and canals are filled;
2. open it with a ball of ``trabecula_um`` radius: trabeculae (thinner than the ball) vanish, the
   cortex (thicker) stays; keep its largest connected component, the cortical shell;
3. per slice, fill the holes of the closed bone: the periosteal envelope; envelope minus shell
   is the marrow side of the endosteal surface, closed with a disc of ``endosteal_um`` radius so
   that stubs of trabeculae joining the cortex are given back to the marrow.

A volume with no cortex around a marrow cavity (a trabecular core, a cube cut from a bone) has
no enclosed marrow: when the median share of non-bone in the per-slice envelopes is below
:data:`MIN_MARROW_SHARE`, :class:`NoCortexError` is raised (v1 test specimens: 0.56-0.74; the
BoneBox trabecular ROIs and random structures: 0.00-0.12).

Masks of the user's own override these (``bonesr-bench morphometry --mask``).

Measured on the 11 v1 test specimens (segmented HR scans, defaults): Dice of the trabecular VOI
0.980-0.994, of the cortical envelope 0.952-0.988 (the lowest where thick trabeculae join the
endocortical surface and survive the opening; without the endosteal closing 0.948-0.988). The
method needs a cortex thicker than ``2 * trabecula_um`` (100 µm by default): lower
``trabecula_um`` for thin cortices.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["auto_regions", "dice", "VOI_MARGIN_UM", "NoCortexError", "MIN_MARROW_SHARE"]

VOI_MARGIN_UM = 30.0
MIN_MARROW_SHARE = 0.25


class NoCortexError(ValueError):
    """No cortical shell around a marrow cavity: the volume is not a whole bone section."""


def _dilate(mask: np.ndarray, r: float) -> np.ndarray:
    import edt

    return edt.edt(~mask, parallel=0) <= r if r > 0 else mask.copy()


def _erode(mask: np.ndarray, r: float) -> np.ndarray:
    import edt

    return edt.edt(mask, parallel=0) > r if r > 0 else mask.copy()


def _pad(mask: np.ndarray, r: int) -> np.ndarray:
    """Pad in-plane with background and along z by edge replication (the bone goes on)."""
    return np.pad(np.pad(mask, ((0, 0), (r, r), (r, r))), ((r, r), (0, 0), (0, 0)), mode="edge")


def _close_2d(mask: np.ndarray, r: float) -> np.ndarray:
    """Morphological closing of a 2D mask with a disc of radius ``r`` voxels."""
    if r <= 0:
        return mask
    p = int(np.ceil(r)) + 1
    return _erode(_dilate(np.pad(mask, p), r), r)[p:-p, p:-p]


def auto_regions(bone: np.ndarray, voxel_um: float, *, pore_um: float = 20.0,
                 trabecula_um: float = 50.0, voi_margin_um: float = VOI_MARGIN_UM,
                 endosteal_um: float = 50.0) -> np.ndarray:
    """uint8 regions (0 outside, 1 trabecular VOI, 2 cortical envelope) of a bone mask
    (z, y, x) with voxel size ``voxel_um``; see the module docstring. ``pore_um``: radius of the
    largest cortical pore to fill (µm); ``trabecula_um``: half the thickness of the thickest
    trabecula to remove (µm); ``endosteal_um``: radius of the disc that smooths the endosteal
    contour (µm). Raises :class:`NoCortexError` for a volume without a cortex."""
    bone = np.asarray(bone, dtype=bool)
    rp, rt = pore_um / voxel_um, trabecula_um / voxel_um
    pad = int(np.ceil(rp + rt)) + 1
    b = _pad(bone, pad)
    closed = _erode(_dilate(b, rp), rp)
    shell = _dilate(_erode(closed, rt), rt) & closed
    crop = (slice(pad, -pad),) * 3
    shell = shell[crop]
    closed = closed[crop]
    labels, n = ndi.label(shell)
    if n == 0:
        raise NoCortexError("no cortical shell found: the bone mask has no structure thicker "
                            f"than {2 * trabecula_um:.0f} µm; give masks of your own (--mask)")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    shell = labels == int(sizes.argmax())
    regions = np.zeros(bone.shape, dtype=np.uint8)
    share = []
    for z in range(bone.shape[0]):
        # the periosteal envelope from the closed bone itself, so that a slice where the opening
        # broke a thin cortex still has its marrow; the shell is what the opening kept of it
        envelope = ndi.binary_fill_holes(closed[z])
        lab, k = ndi.label(envelope)
        if k > 1:
            envelope = lab == int(np.bincount(lab.ravel())[1:].argmax() + 1)
        share.append((envelope & ~closed[z]).sum() / max(int(envelope.sum()), 1))
        marrow = envelope & ~(shell[z] & envelope)
        marrow |= _close_2d(marrow, endosteal_um / voxel_um) & envelope
        regions[z][ndi.distance_transform_edt(marrow) > voi_margin_um / voxel_um] = 1
        regions[z][envelope & ~marrow] = 2
    if float(np.median(share)) < MIN_MARROW_SHARE:
        raise NoCortexError(f"no cortex around a marrow cavity found (median non-bone share of "
                            f"the envelope {float(np.median(share)):.2f} < {MIN_MARROW_SHARE}): a "
                            "trabecular-only volume? give masks of your own (--mask), or measure "
                            "the whole volume (--regions whole)")
    return regions


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two masks."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0
