"""Cortical porosity: pores of the cortical envelope, closed or open (CTAn's 3D definitions).

The cortical envelope is the cortical bone with its pores, between the periosteal and endosteal
surfaces (``regions == 2``). Inside it, every voxel that is not bone is void. Pores are the
6-connected components of void (bone being 26-connected, as for the Euler characteristic).

Which voxels are pores
----------------------
- Pore components are *found* in the envelope eroded by ``margin_vox`` (1) voxel (6-connected
  erosion) from its periosteal and endosteal boundaries, the *core*. The envelope is a fixed mask,
  and a scan whose surfaces sit a fraction of a voxel off it would otherwise show thousands of
  one-voxel "pores" along them. The ``margin_vox``-thick layer between the core and the envelope's
  boundary is the *rim*. The image border is not an envelope boundary (the structure is taken to
  continue beyond it, BoneJ's convention), so the envelope is not eroded there.
- Open pore: a component 6-adjacent to a voxel outside the core within the image, i.e. one that
  touches the rim (it reaches the periosteal or endosteal surface). Touching the image border
  alone does not open a pore.
- Closed pore: every other component. A closed pore never touches the rim, so its volume is its
  voxel count, exactly.
- Volume of an open pore: its voxels in the core, plus the void (non-bone) rim voxels reached from
  them by at most ``margin_vox`` 6-steps through void rim voxels, so that an open canal crossing
  the rim to the surface counts its full volume (with ``margin_vox = 1``: the void rim voxels
  6-adjacent to the component). The growth is bounded on purpose: grown without bound, a canal
  mouth in a scan whose surface sits one voxel inside the mask would annex the whole void layer
  along the surface. Two open pores whose rim voxels meet stay two pores (Po.N counts the
  components of the core); a rim voxel reached from both counts once.
- Every other void rim voxel (a partial-volume sliver, a surface mismatch, a pit that does not
  reach the core) is not pore volume: it counts in the envelope volume of the denominators only.

Definitions
-----------
Following Bruker's "Morphometric parameters measured by Skyscan CT-analyser software" (CTAn, 3D
analysis), with the whole (uneroded) cortical envelope as the VOI, all in percent:

- open porosity Po(op) = open pore volume / total VOI volume (envelope volume);
- total porosity Po(tot) = (open + closed pore volume) / total VOI volume;
- closed porosity Po(cl) = closed pore volume / (object volume + closed pore volume), the object
  volume being the cortical bone volume in the whole envelope (``bone & envelope``);
- pore number Po.N = number of pore components (closed and open); mean pore volume = total pore
  volume / Po.N, in µm³ (NaN without pores).

With surfaces that match the envelope exactly (the rim is bone except where pores cross it) the
figures equal those without a margin (``margin_vox = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage as ndi

__all__ = ["Porosity", "cortical_porosity"]


@dataclass(frozen=True)
class Porosity:
    """Pore figures of a cortical envelope.

    Attributes
    ----------
    total_pct, closed_pct, open_pct : float
        Po(tot), Po(cl) and Po(op), in percent (see the module docstring).
    n_pores : int
        Po.N, the number of pore components, closed and open.
    n_closed : int
        Number of closed pores.
    mean_pore_volume_um3 : float
        Total pore volume / Po.N, in µm³; NaN without pores.
    """

    total_pct: float
    closed_pct: float
    open_pct: float
    n_pores: int
    n_closed: int
    mean_pore_volume_um3: float


def cortical_porosity(bone: np.ndarray, envelope: np.ndarray, voxel_um: float, *,
                      margin_vox: int = 1) -> Porosity:
    """Pore figures of the cortical ``envelope`` given the segmented ``bone``.

    Parameters
    ----------
    bone : ndarray of bool, shape (Z, Y, X)
        Segmented bone; only its voxels in ``envelope`` count.
    envelope : ndarray of bool, shape (Z, Y, X)
        Cortical envelope (bone and pores between the periosteal and endosteal surfaces), the VOI
        of every denominator.
    voxel_um : float
        Isotropic voxel size in µm.
    margin_vox : int, optional
        Thickness in voxels of the rim, the layer along the envelope's surfaces whose void voxels
        are not pores unless an open pore of the core crosses them (default 1; 0: none).

    Returns
    -------
    Porosity
        Po(tot), Po(cl), Po(op) in percent, Po.N, the number of closed pores and the mean pore
        volume in µm³.

    Raises
    ------
    ValueError
        If the envelope is empty, or thinner than ``2 * margin_vox + 1`` voxels everywhere.
    """
    env = np.asarray(envelope, dtype=bool)
    if not env.any():
        raise ValueError("the cortical envelope is empty")
    if margin_vox < 0:
        raise ValueError(f"margin_vox must be >= 0, got {margin_vox}")
    six = ndi.generate_binary_structure(3, 1)
    if margin_vox > 0:
        # border_value=1: the image border is not an envelope boundary (structures continue)
        core = ndi.binary_erosion(env, six, margin_vox, border_value=1)
    else:
        core = env
    if not core.any():
        raise ValueError(f"the cortical envelope is thinner than {2 * margin_vox + 1} voxels")
    cort = np.asarray(bone, dtype=bool) & env
    void = env & ~cort
    pores = void & core
    labels, n = cc3d.connected_components(pores, connectivity=6, return_N=True)
    if n == 0:
        return Porosity(0.0, 0.0, 0.0, 0, 0, float("nan"))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    touches_outside = ndi.binary_dilation(~core, structure=six)
    is_open = np.zeros(n + 1, dtype=bool)
    is_open[np.unique(labels[touches_outside & pores])] = True
    is_open[0] = False
    closed_vol = int(sizes[1:][~is_open[1:]].sum())
    open_core = is_open[labels]
    open_vol = int(open_core.sum())
    if margin_vox > 0 and open_vol:
        # the void rim voxels an open pore reaches in <= margin_vox 6-steps through void rim
        rim_void = void & ~core
        grown = ndi.binary_dilation(open_core, six, margin_vox, mask=open_core | rim_void)
        open_vol += int((grown & rim_void).sum())
    n_closed = int(n - is_open[1:].sum())
    n_env = int(env.sum())
    cort_vol = int(cort.sum())
    pore_vol = open_vol + closed_vol
    return Porosity(
        total_pct=100.0 * pore_vol / n_env,
        closed_pct=100.0 * closed_vol / (cort_vol + closed_vol) if cort_vol + closed_vol else 0.0,
        open_pct=100.0 * open_vol / n_env,
        n_pores=int(n),
        n_closed=n_closed,
        mean_pore_volume_um3=float(pore_vol * voxel_um**3 / n),
    )
