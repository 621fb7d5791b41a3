"""Cortical porosity: pores of the cortical envelope, closed or open (CTAn-style definitions).

The cortical envelope is the cortical bone with its pores, between the periosteal and endosteal
surfaces (``regions == 2``). Inside it, every voxel that is not bone is pore space. Pores are the
6-connected components of pore space (bone being 26-connected, as for the Euler characteristic).

- pores are counted in the envelope eroded by ``margin_vox`` (1) voxel from its periosteal and
  endosteal boundaries: the envelope is a fixed mask, and a scan whose surfaces sit a fraction
  of a voxel off it would otherwise show thousands of one-voxel "pores" along them;
- open pore: a component 6-adjacent to a voxel outside that (eroded) envelope within the image
  (it reaches the periosteal or endosteal surface); touching the image border alone does not
  open a pore, since the structure is taken to continue beyond the border (BoneJ's convention);
- closed pore: every other component.

Definitions (percentages; CTAn's "3D analysis" uses the same ones):

- total porosity Po(tot) = (open + closed pore volume) / envelope volume;
- open porosity Po(op) = open pore volume / envelope volume;
- closed porosity Po(cl) = closed pore volume / (cortical bone volume + closed pore volume);
- pore number Po.N = number of pore components (closed and open), mean pore volume = total pore
  volume / Po.N in µm³.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage as ndi

__all__ = ["Porosity", "cortical_porosity"]


@dataclass(frozen=True)
class Porosity:
    total_pct: float
    closed_pct: float
    open_pct: float
    n_pores: int
    n_closed: int
    mean_pore_volume_um3: float


def cortical_porosity(bone: np.ndarray, envelope: np.ndarray, voxel_um: float, *,
                      margin_vox: int = 1) -> Porosity:
    """Pore figures of the cortical ``envelope`` (bool) given the segmented ``bone`` (bool)."""
    env = np.asarray(envelope, dtype=bool)
    if not env.any():
        raise ValueError("the cortical envelope is empty")
    if margin_vox > 0:
        # border_value=1: the image border is not an envelope boundary (structures continue)
        env = ndi.binary_erosion(env, ndi.generate_binary_structure(3, 1), margin_vox,
                                 border_value=1)
    cort = np.asarray(bone, dtype=bool) & env
    pores = env & ~cort
    n_env = int(env.sum())
    if n_env == 0:
        raise ValueError(f"the cortical envelope is thinner than {2 * margin_vox + 1} voxels")
    labels, n = cc3d.connected_components(pores, connectivity=6, return_N=True)
    if n == 0:
        return Porosity(0.0, 0.0, 0.0, 0, 0, float("nan"))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    touches_outside = ndi.binary_dilation(~env, structure=ndi.generate_binary_structure(3, 1))
    open_ids = np.unique(labels[touches_outside & pores])
    is_open = np.zeros(n + 1, dtype=bool)
    is_open[open_ids] = True
    is_open[0] = False
    open_vol = int(sizes[is_open].sum())
    closed_vol = int(sizes[1:].sum()) - open_vol
    n_closed = int(n - is_open[1:].sum())
    voxel_um3 = voxel_um**3
    cort_vol = int(cort.sum())
    return Porosity(
        total_pct=100.0 * (open_vol + closed_vol) / n_env,
        closed_pct=100.0 * closed_vol / (cort_vol + closed_vol) if cort_vol + closed_vol else 0.0,
        open_pct=100.0 * open_vol / n_env,
        n_pores=int(n),
        n_closed=n_closed,
        mean_pore_volume_um3=float((open_vol + closed_vol) * voxel_um3 / n),
    )
