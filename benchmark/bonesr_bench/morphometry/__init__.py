"""Bone morphometry in physical units, following BoneJ's definitions and the ASBMR nomenclature
(Bouxsein et al. 2010, J Bone Miner Res 25:1468-1486).

Arrays in, dataclasses out. Every function takes a binary bone volume ``(z, y, x)``, an isotropic
voxel size in µm and, optionally, the region to measure:

================  ============================================================================
``mask``           trabecular volume of interest (VOI), bool; the whole image when omitted
``envelope``       cortical envelope (cortical bone with its pores), bool
``regions``        both at once, uint8: 0 outside, 1 trabecular VOI, 2 cortical envelope
================  ============================================================================

Conventions (stated here once, recorded in every result):

- Voxels outside the image are not background: a structure cut by the image border continues
  beyond it (BoneJ). Voxels outside the VOI are background for both phases: bone outside the VOI is
  not measured, and marrow spaces end at the VOI boundary (the endosteal surface).
- Tb.N = 1 / (Tb.Th + Tb.Sp), in mm^-1 (the plate-model-free definition of the ASBMR report).
- Conn.D = (1 - Δχ) / TV with TV the VOI volume (the whole image without a mask, as BoneJ).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bonesr_bench.morphometry.anisotropy import mil_fabric
from bonesr_bench.morphometry.connectivity import delta_chi, euler_characteristic
from bonesr_bench.morphometry.cortical import cortical_porosity
from bonesr_bench.morphometry.smi import SIGMA_VOX, structure_model_index
from bonesr_bench.morphometry.thickness import ThicknessStats, local_thickness_map, thickness_stats

__all__ = [
    "TRABECULAR_KEYS",
    "CORTICAL_KEYS",
    "TrabecularMorphometry",
    "CorticalMorphometry",
    "bone_volume_fraction",
    "trabecular_thickness",
    "trabecular_separation",
    "trabecular_number",
    "connectivity_density",
    "degree_of_anisotropy",
    "structure_model_index",
    "cortical_thickness",
    "trabecular_morphometry",
    "cortical_morphometry",
    "morphometry",
    "split_regions",
    "local_thickness_map",
    "euler_characteristic",
    "delta_chi",
    "CONVENTIONS",
]

TRABECULAR_KEYS = ("bv_tv_pct", "tb_th_um", "tb_th_sd_um", "tb_sp_um", "tb_sp_sd_um",
                   "tb_n_per_mm", "conn_d_per_mm3", "da_bonej", "da_ratio", "smi")
CORTICAL_KEYS = ("ct_th_um", "ct_po_pct", "ct_po_closed_pct", "ct_po_open_pct", "po_n",
                 "po_mean_volume_um3")

#: Conventions recorded with every result (bump ``version`` when a number could change).
CONVENTIONS = {
    "version": "5",
    "sums": "whole-volume sums in a fixed order (the same figures for any thread count)",
    "thickness": "BoneJ Thickness (LocalThickness: EDT, distance ridge, max-ball, clean-up), "
                 "mean and population SD over the phase",
    "border": "outside the image is not background; outside the VOI is background",
    "tb_n": "1 / (Tb.Th + Tb.Sp)",
    "conn_d": "(1 - delta_chi) / TV, bone 26-connected, BoneJ edge correction",
    "da": "MIL on the 13 lattice directions, ellipsoid 1/MIL^2 fitted by least squares; "
          "da_bonej = 1 - lmin/lmax, da_ratio = MIL_max / MIL_min",
    "smi": f"iso-surface 0.5 after Gaussian sigma {SIGMA_VOX} vox, marching tetrahedra over the "
           "cubes inside the image; BV the volume it encloses, facets seen along the smoothed "
           "normal, gradient normals",
    "porosity": "CTAn over the whole envelope: Po(tot), Po(op) relative to the envelope, "
                "Po(cl) = closed / (bone + closed); pores 6-connected, found in the envelope "
                "eroded by 1 voxel (rim slivers are not pores), open if 6-adjacent to outside "
                "it, an open pore keeping its rim voxels",
}


class _Record:
    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrabecularMorphometry(_Record):
    """Trabecular parameters in the units their names say (NaN where undefined)."""

    bv_tv_pct: float
    tb_th_um: float
    tb_th_sd_um: float
    tb_sp_um: float
    tb_sp_sd_um: float
    tb_n_per_mm: float
    conn_d_per_mm3: float
    da_bonej: float
    da_ratio: float
    smi: float


@dataclass(frozen=True)
class CorticalMorphometry(_Record):
    """Cortical parameters: thickness (µm), porosities (%), pore count, mean pore volume (µm³)."""

    ct_th_um: float
    ct_po_pct: float
    ct_po_closed_pct: float
    ct_po_open_pct: float
    po_n: int
    po_mean_volume_um3: float


def _check(bone: np.ndarray, voxel_um: float, mask: np.ndarray | None, name: str = "mask"):
    bone = np.asarray(bone)
    if bone.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) volume, got shape {bone.shape}")
    if not (isinstance(voxel_um, int | float) and math.isfinite(voxel_um) and voxel_um > 0):
        raise ValueError(f"voxel_um must be a positive number of micrometres, got {voxel_um!r}")
    bone = bone.astype(bool, copy=False)
    if mask is None:
        return bone, np.ones(bone.shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != bone.shape:
        raise ValueError(f"{name} shape {mask.shape} differs from the volume's {bone.shape}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise ValueError(f"the {name} is empty (all zero)")
    return bone, mask


def _crop(mask: np.ndarray):
    """Bounding box of ``mask`` grown by one voxel (so the VOI keeps a background margin wherever
    it does not reach the image border)."""
    box = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(idx[0] - 1, 0), min(idx[-1] + 2, mask.shape[ax])))
    return tuple(box)


def _use_torch(device: str | None) -> bool:
    """None or "cpu": the numba kernels; "cuda": the torch kernels on the GPU; "auto": CUDA when
    torch sees a GPU, else the numba kernels."""
    if device in (None, "cpu"):
        return False
    from bonesr_bench.morphometry.torch_backend import resolve_device

    return resolve_device(device).type != "cpu"


def _thickness_um(phase: np.ndarray, voxel_um: float, device: str | None = None) -> ThicknessStats:
    if _use_torch(device):
        from bonesr_bench.morphometry import torch_backend

        mean, sd, mx = torch_backend.thickness_stats(phase, device)
        return ThicknessStats(mean * voxel_um, sd * voxel_um, mx * voxel_um, int(phase.sum()))
    s = thickness_stats(phase)
    return ThicknessStats(s.mean_vox * voxel_um, s.sd_vox * voxel_um, s.max_vox * voxel_um,
                          s.n_voxels)


def _delta_chi(bone: np.ndarray, device: str | None) -> float:
    if _use_torch(device):
        from bonesr_bench.morphometry import torch_backend
        from bonesr_bench.morphometry.connectivity import edge_correction

        return torch_backend.euler_characteristic(bone, device) - edge_correction(bone)
    return delta_chi(bone)


def bone_volume_fraction(bone: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """BV/TV in percent: bone voxels in the VOI over VOI voxels."""
    b, m = _check(bone, 1.0, mask)
    return 100.0 * float((b & m).sum()) / float(m.sum())


def trabecular_thickness(bone, voxel_um, *, mask=None) -> tuple[float, float]:
    """Tb.Th mean and SD in µm (BoneJ local thickness of the bone in the VOI). NaN if no bone."""
    b, m = _check(bone, voxel_um, mask)
    box = _crop(m)
    s = _thickness_um(b[box] & m[box], voxel_um)
    return s.mean_vox, s.sd_vox


def trabecular_separation(bone, voxel_um, *, mask=None) -> tuple[float, float]:
    """Tb.Sp mean and SD in µm (BoneJ local thickness of the marrow in the VOI). NaN if none."""
    b, m = _check(bone, voxel_um, mask)
    box = _crop(m)
    s = _thickness_um(~b[box] & m[box], voxel_um)
    return s.mean_vox, s.sd_vox


def trabecular_number(tb_th_um: float, tb_sp_um: float) -> float:
    """Tb.N = 1 / (Tb.Th + Tb.Sp) in mm^-1, from Tb.Th and Tb.Sp in µm."""
    return 1000.0 / (tb_th_um + tb_sp_um)


def connectivity_density(bone, voxel_um, *, mask=None) -> float:
    """Conn.D = (1 - Δχ) / TV in mm^-3 (Odgaard & Gundersen 1993; BoneJ's Δχ). NaN if no bone
    (as :func:`trabecular_morphometry`: an empty VOI has no network to count)."""
    b, m = _check(bone, voxel_um, mask)
    box = _crop(m)
    inside = b[box] & m[box]
    if not inside.any():
        return float("nan")
    tv_mm3 = float(m.sum()) * (voxel_um * 1e-3) ** 3
    return (1.0 - delta_chi(inside)) / tv_mm3


def degree_of_anisotropy(bone, *, mask=None) -> tuple[float, float]:
    """(DA in BoneJ's form 1 - λmin/λmax, DA as the MIL ratio c/a) of the MIL fabric."""
    b, m = _check(bone, 1.0, mask)
    box = _crop(m)
    f = mil_fabric(b[box], None if mask is None else m[box])
    return f.da_bonej, f.da_ratio


def cortical_thickness(bone, voxel_um, envelope) -> float:
    """Ct.Th in µm: mean BoneJ local thickness of the cortical bone (bone in the envelope)."""
    b, e = _check(bone, voxel_um, envelope, "cortical envelope")
    box = _crop(e)
    return _thickness_um(b[box] & e[box], voxel_um).mean_vox


def trabecular_morphometry(bone, voxel_um: float, *, mask=None,
                           device: str | None = None) -> TrabecularMorphometry:
    """Every trabecular parameter of ``bone`` in the VOI ``mask`` (whole image by default).

    ``device``: None/"cpu" runs the numba kernels, "cuda" the torch kernels on the GPU (local
    thickness and Euler counting), "auto" CUDA when available."""
    b, m = _check(bone, voxel_um, mask)
    box = _crop(m)
    b, m = b[box], m[box]
    tv = int(m.sum())
    bone_in = b & m
    bv = int(bone_in.sum())
    th = _thickness_um(bone_in, voxel_um, device)
    sp = _thickness_um(m & ~b, voxel_um, device)
    tv_mm3 = tv * (voxel_um * 1e-3) ** 3
    fabric = mil_fabric(b, None if mask is None else m)
    return TrabecularMorphometry(
        bv_tv_pct=100.0 * bv / tv,
        tb_th_um=th.mean_vox,
        tb_th_sd_um=th.sd_vox,
        tb_sp_um=sp.mean_vox,
        tb_sp_sd_um=sp.sd_vox,
        tb_n_per_mm=trabecular_number(th.mean_vox, sp.mean_vox),
        conn_d_per_mm3=(1.0 - _delta_chi(bone_in, device)) / tv_mm3 if bv else float("nan"),
        da_bonej=fabric.da_bonej,
        da_ratio=fabric.da_ratio,
        smi=structure_model_index(b, None if mask is None else m),
    )


def cortical_morphometry(bone, voxel_um: float, envelope,
                         device: str | None = None) -> CorticalMorphometry:
    """Cortical thickness and porosity of ``bone`` in the cortical ``envelope``."""
    b, e = _check(bone, voxel_um, envelope, "cortical envelope")
    box = _crop(e)
    b, e = b[box], e[box]
    po = cortical_porosity(b, e, voxel_um)
    return CorticalMorphometry(
        ct_th_um=_thickness_um(b & e, voxel_um, device).mean_vox,
        ct_po_pct=po.total_pct,
        ct_po_closed_pct=po.closed_pct,
        ct_po_open_pct=po.open_pct,
        po_n=po.n_pores,
        po_mean_volume_um3=po.mean_pore_volume_um3,
    )


def split_regions(regions: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(trabecular VOI, cortical envelope) from a region label volume.

    Labels 1 (trabecular VOI) and 2 (cortical envelope); a mask with a single non-zero value other
    than 2 (e.g. 0/255) is a trabecular VOI. Either may be absent (None).
    """
    r = np.asarray(regions)
    values = np.unique(r)
    nonzero = values[values != 0]
    if nonzero.size == 0:
        raise ValueError("the mask is empty (all zero): mark the VOI with 1 and the cortex with 2")
    if nonzero.size == 1 and nonzero[0] != 2:
        return r != 0, None
    extra = set(nonzero.tolist()) - {1, 2}
    if extra:
        raise ValueError(f"mask values must be 0, 1 (trabecular VOI) or 2 (cortical envelope); "
                         f"found {sorted(extra)}")
    voi = r == 1
    env = r == 2
    return (voi if voi.any() else None), (env if env.any() else None)


def morphometry(bone, voxel_um: float, *, regions=None, device: str | None = None) -> dict:
    """All parameters as one flat dict with the keys of ``bonesr-bench morphometry --json``.

    Without ``regions`` the whole image is the trabecular VOI. With regions, trabecular keys are
    present when label 1 is, cortical keys when label 2 is.
    """
    if regions is None:
        voi, env = None, None
        out = trabecular_morphometry(bone, voxel_um, device=device).as_dict()
    else:
        voi, env = split_regions(regions)
        out = {}
        if voi is not None:
            out.update(trabecular_morphometry(bone, voxel_um, mask=voi, device=device).as_dict())
    if env is not None:
        out.update(cortical_morphometry(bone, voxel_um, env, device).as_dict())
    return out
