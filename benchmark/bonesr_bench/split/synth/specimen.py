"""Synthetic mouse-tibia specimens: metaphysis cross-sections stacked along z.

A specimen is drawn from a seed:

- a cortical shell: an irregular elliptic tube (periosteal contour = ellipse with low-order
  Fourier wobble, drifting slowly along z) whose wall thickness varies around the section
  (Ct.Th about 100-220 µm);
- intracortical canals (radius 12-20 µm, so that most are resolved at 10.5 µm and few at
  21 µm): longitudinal canals inside the wall (closed) and radial canals that reach
  the periosteal or endosteal surface (open), about 0.5-4 % porosity in all;
- a trabecular network inside the endosteal surface: rods on the edges of a random Voronoi
  tessellation, with random drop-out and per-rod thickness, and a fraction of its smaller faces
  turned into plates; the tessellation is stretched along z (the bone axis) for anisotropy.

The geometry is rasterised at the centres of a grid ``supersample`` times finer than the HR grid
(5.25 µm for HR 10.5 µm), and block-averaged to the exact bone fraction of every HR voxel, so the
partial volume of the simulated scans is physical. ``truth`` is that fraction >= 0.5. Regions:
1 = trabecular VOI (inside the endosteal surface, 30 µm off it), 2 = cortical envelope.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import Voronoi

from bonesr_bench.split.synth import _raster

__all__ = ["SpecimenParams", "Specimen", "draw_params", "generate", "VOI_MARGIN_UM"]

#: distance (µm) kept between the trabecular VOI and the endosteal surface
VOI_MARGIN_UM = 30.0


@dataclass(frozen=True)
class SpecimenParams:
    """Generator parameters of one specimen (lengths in µm)."""

    seed: int
    outer_a_um: float  # periosteal semi-axes
    outer_b_um: float
    orientation_rad: float
    wobble: tuple[float, ...]  # relative amplitudes of cos(k theta + phase_k), k = 2, 3, ...
    wobble_phase: tuple[float, ...]
    ct_th_um: float  # mean cortical thickness
    ct_th_variation: float  # relative amplitude of its variation around the section
    porosity_target_pct: float
    canal_radius_um: float
    open_canal_fraction: float
    cell_spacing_um: float  # mean distance between Voronoi seeds (before stretching)
    stretch_z: float  # anisotropy: tessellation stretched along z by this factor
    dropout: float  # fraction of rods removed
    rod_radius_um: float
    rod_radius_cv: float
    plate_fraction: float  # fraction of the smaller Voronoi faces turned into plates
    plate_half_thickness_um: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Specimen:
    params: SpecimenParams
    fraction: np.ndarray  # float32 bone fraction per HR voxel (z, y, x)
    truth: np.ndarray  # uint8 0/1, fraction >= 0.5
    regions: np.ndarray  # uint8: 0 outside, 1 trabecular VOI, 2 cortical envelope


#: the trabecular network's ranges per population (µm; dropout and plate fraction: fractions).
#: v1 spans young-adult mouse proximal tibia broadly; v2 is centred on the reference study's HR
#: population (Table I: Tb.Th 62 ± 8 µm, Tb.Sp 291 ± 32 µm, BV/TV 9.8 ± 3.5 %, Conn.D 30 ± 19
#: /mm³): thicker rods on a sparser network with fewer connections
POPULATIONS = {
    "v1": {"cell_spacing_um": (180, 290), "dropout": (0.15, 0.5), "rod_radius_um": (19, 32)},
    "v2": {"cell_spacing_um": (230, 320), "dropout": (0.3, 0.55), "rod_radius_um": (24, 36)},
}


def draw_params(seed: int, population: str = "v1") -> SpecimenParams:
    """Parameters drawn so that the population spans young-adult mouse proximal tibia (v1: BV/TV
    5-20 %, Tb.Th 40-70 µm, Tb.Sp 150-350 µm, Conn.D 20-250 /mm³, DA (ratio) 1.2-2.2; v2: see
    :data:`POPULATIONS`). Both draw the same random numbers in the same order."""
    pop = POPULATIONS[population]
    rng = np.random.default_rng(seed)
    k = 4
    return SpecimenParams(
        seed=int(seed),
        outer_a_um=float(rng.uniform(1000, 1220)),
        outer_b_um=float(rng.uniform(760, 960)),
        orientation_rad=float(rng.uniform(0, np.pi)),
        wobble=tuple(float(v) for v in rng.uniform(0.0, 0.05, k) / np.arange(1, k + 1)),
        wobble_phase=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, k)),
        ct_th_um=float(rng.uniform(110, 210)),
        ct_th_variation=float(rng.uniform(0.05, 0.25)),
        porosity_target_pct=float(rng.uniform(0.5, 4.0)),
        canal_radius_um=float(rng.uniform(12, 20)),
        open_canal_fraction=float(rng.uniform(0.2, 0.5)),
        cell_spacing_um=float(rng.uniform(*pop["cell_spacing_um"])),
        stretch_z=float(rng.uniform(1.2, 2.8)),
        dropout=float(rng.uniform(*pop["dropout"])),
        rod_radius_um=float(rng.uniform(*pop["rod_radius_um"])),
        rod_radius_cv=float(rng.uniform(0.1, 0.3)),
        plate_fraction=float(rng.uniform(0.0, 0.35)),
        plate_half_thickness_um=float(rng.uniform(10, 18)),
    )


DEFAULT_FOV_UM = 256 * 10.5


def _contours(p: SpecimenParams, nz: int, step_um: float, extent_um, rng, n_theta=256):
    theta = np.linspace(0, 2 * np.pi, n_theta, endpoint=False)
    z = (np.arange(nz) + 0.5) / nz
    # a smaller field of view (the mini split) holds a proportionally smaller bone
    fov = min(1.0, min(extent_um[1], extent_um[2]) / DEFAULT_FOV_UM)
    # slow drift of the centre and of the size along z
    centre = np.stack([extent_um[1] / 2 + 40 * fov * np.sin(2 * np.pi * (z * 0.7 + rng.uniform())),
                       extent_um[2] / 2 + 40 * fov * np.cos(2 * np.pi * (z * 0.6 + rng.uniform()))],
                      1)
    scale = 1 + 0.06 * (z - 0.5)
    ang = theta[None, :] - p.orientation_rad
    ellipse = (p.outer_a_um * p.outer_b_um
               / np.sqrt((p.outer_b_um * np.cos(ang)) ** 2 + (p.outer_a_um * np.sin(ang)) ** 2))
    wob = np.ones_like(ellipse)
    for k, (amp, ph) in enumerate(zip(p.wobble, p.wobble_phase, strict=True), start=2):
        wob = wob + amp * np.cos(k * theta[None, :] + ph + 0.3 * z[:, None])
    r_out = ellipse * wob * scale[:, None] * fov
    around = np.cos(theta[None, :] - rng.uniform(0, 6.3))
    thick = p.ct_th_um * max(fov, 0.5) * (1 + p.ct_th_variation * around)
    thick = np.broadcast_to(thick, r_out.shape)
    return centre, r_out, r_out - thick, theta


def _canals(p, centre, r_out, r_in, theta, extent_um, rng):
    """Segments (a, b, radius) of longitudinal (closed) and radial (open) canals."""
    nz = centre.shape[0]
    cortex_um3 = float(np.mean(np.pi * (r_out**2 - r_in**2).mean(1)) * extent_um[0])
    segs, n_open = [], 0
    volume = 0.0
    target = p.porosity_target_pct / 100 * cortex_um3
    while volume < target:
        k = rng.integers(len(theta))
        iz = rng.integers(nz)
        zc = (iz + 0.5) / nz * extent_um[0]
        mid = 0.5 * (r_out[iz, k] + r_in[iz, k])
        rad = p.canal_radius_um * rng.uniform(0.7, 1.3)
        cy, cx = centre[iz]
        t = theta[k]
        if rng.uniform() < p.open_canal_fraction:
            outward = rng.uniform() < 0.5
            r0 = mid
            r1 = r_out[iz, k] + 30 if outward else r_in[iz, k] - 30
            a = (zc, cy + r0 * np.sin(t), cx + r0 * np.cos(t))
            b = (zc + rng.uniform(-20, 20), cy + r1 * np.sin(t), cx + r1 * np.cos(t))
            n_open += 1
        else:
            length = rng.uniform(250, 900)
            dt = rng.uniform(-0.02, 0.02)
            a = (zc - length / 2, cy + mid * np.sin(t), cx + mid * np.cos(t))
            b = (zc + length / 2, cy + mid * np.sin(t + dt), cx + mid * np.cos(t + dt))
        segs.append((a, b, rad))
        volume += np.pi * rad**2 * np.linalg.norm(np.subtract(b, a))
    return segs


def _network(p: SpecimenParams, extent_um, rng):
    """Voronoi rods (segments, radii) and plates (triangles, half thicknesses), in µm."""
    spacing = p.cell_spacing_um
    pad = 2 * spacing
    box = np.array(extent_um, float)
    squeezed = box.copy()
    squeezed[0] = box[0] / p.stretch_z
    n = int(np.prod(squeezed + 2 * pad) / spacing**3)
    seeds = rng.uniform(0, 1, (n, 3)) * (squeezed + 2 * pad) - pad
    vor = Voronoi(seeds)
    verts = vor.vertices * np.array([p.stretch_z, 1.0, 1.0])
    inside = np.all((verts > -spacing) & (verts < box + spacing), axis=1)
    edges, faces = set(), []
    for ridge in vor.ridge_vertices:
        if -1 in ridge or not all(inside[v] for v in ridge):
            continue
        faces.append(ridge)
        for i in range(len(ridge)):
            a, b = ridge[i], ridge[(i + 1) % len(ridge)]
            edges.add((min(a, b), max(a, b)))
    edges = np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)
    keep = rng.uniform(size=len(edges)) >= p.dropout
    edges = edges[keep]
    radii = p.rod_radius_um * np.clip(rng.normal(1, p.rod_radius_cv, len(edges)), 0.5, 1.8)
    tris, half = [], []
    if faces and p.plate_fraction > 0:
        areas = []
        for f in faces:  # the fan of triangles about the centroid, one cross product per edge
            d = verts[f] - verts[f].mean(0)
            cr = np.cross(d, np.roll(d, -1, axis=0))
            areas.append(sum((0.5 * np.sqrt(np.einsum("ij,ij->i", cr, cr))).tolist()))
        small = np.argsort(areas)[: len(faces) // 2]
        chosen = small[rng.uniform(size=small.size) < 2 * p.plate_fraction]
        for fi in chosen:
            pts = verts[faces[fi]]
            c = pts.mean(0)
            for i in range(len(pts)):
                tris.append((c, pts[i], pts[(i + 1) % len(pts)]))
                half.append(p.plate_half_thickness_um)
    seg_a = verts[edges[:, 0]] if len(edges) else np.zeros((0, 3))
    seg_b = verts[edges[:, 1]] if len(edges) else np.zeros((0, 3))
    tri = np.array(tris, float).reshape(-1, 3, 3)
    return seg_a, seg_b, radii, tri, np.array(half, float)


def _block_mean(fine: np.ndarray, s: int) -> np.ndarray:
    """Fraction of True fine voxels in each ``s``^3 block (float32; exactly count / s^3, as
    numpy's float32 mean of the block gives)."""
    return _raster.block_count(np.ascontiguousarray(fine, dtype=np.bool_), s).astype(
        np.float32) / np.float32(s ** 3)


def generate(params: SpecimenParams, shape=(160, 256, 256), voxel_um: float = 10.5,
             supersample: int = 2) -> Specimen:
    """Rasterise a specimen on the HR grid ``shape`` (z, y, x) of ``voxel_um``."""
    rng = np.random.default_rng([params.seed, 1])
    step = voxel_um / supersample
    fine_shape = tuple(n * supersample for n in shape)
    extent = tuple(n * voxel_um for n in shape)
    centre, r_out, r_in, theta = _contours(params, fine_shape[0], step, extent, rng)
    shell = _raster.polar_shell(fine_shape, step, centre, r_out, r_in, len(theta))
    origin = np.zeros(3)

    seg_a, seg_b, radii, tri, half = _network(params, extent, rng)
    trab = np.zeros(fine_shape, dtype=bool)
    _raster.paint_capsules(trab, seg_a, seg_b, radii, step, origin)
    if len(tri):
        _raster.paint_plates(trab, tri, half, step, origin)

    canal_segs = _canals(params, centre, r_out, r_in, theta, extent, rng)
    pores = np.zeros(fine_shape, dtype=bool)
    if canal_segs:
        a = np.array([s[0] for s in canal_segs], float)
        b = np.array([s[1] for s in canal_segs], float)
        r = np.array([s[2] for s in canal_segs], float)
        _raster.paint_capsules(pores, a, b, r, step, origin)

    bone = (shell == 2) | (trab & (shell == 1))
    bone &= ~(pores & (shell == 2))
    fraction = _block_mean(bone, supersample)
    regions = np.zeros(shape, dtype=np.uint8)
    marrow_side = _block_mean(shell == 1, supersample) >= 0.5
    # the trabecular VOI keeps VOI_MARGIN_UM from the endosteal surface (in-plane), as VOIs are
    # drawn a few voxels off the endocortical surface (Bouxsein et al. 2010): otherwise the fixed
    # VOI boundary cuts the scans' slightly shifted cortical rim into hundreds of fragments
    for z in range(shape[0]):
        regions[z][ndi.distance_transform_edt(marrow_side[z]) > VOI_MARGIN_UM / voxel_um] = 1
    regions[_block_mean(shell == 2, supersample) >= 0.5] = 2
    return Specimen(params, fraction, (fraction >= 0.5).astype(np.uint8), regions)
