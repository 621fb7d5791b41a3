"""Speed and memory of the morphometry engine against the fastest Python peers, side by side.

Not part of the default test run. Run with:

    python -m pytest tests/benchmarks -o addopts="" --benchmark-only \
        --benchmark-columns=min,mean,max,rounds

Peers (``pip install -e .[bench]``): porespy's local thickness (method "bf", its fastest) and the
``localthickness`` package (Dahl & Dahl 2023). Neither is BoneJ-exact (see
tests/test_peers.py for the measured differences).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from bonesr_bench.morphometry import structure_model_index, trabecular_morphometry
from bonesr_bench.morphometry.smi import SIGMA_VOX
from bonesr_bench.morphometry.thickness import thickness_stats

from phantoms import porous_volume

VOXEL_UM = 10.5


@pytest.fixture(scope="module")
def volume():
    bone = porous_volume(256)
    trabecular_morphometry(bone[:48, :48, :48], VOXEL_UM)  # compile (numba caches to disk)
    return bone


def _ours(phase):
    return thickness_stats(phase).mean_vox


def _localthickness(phase):
    lt = pytest.importorskip("localthickness")
    return 2 * float(lt.local_thickness(phase)[phase].mean())


def _porespy(phase):
    ps = pytest.importorskip("porespy")
    return 2 * float(ps.filters.local_thickness(phase, method="bf")[phase].mean())


PEERS = {"bonesr_bench": _ours, "localthickness": _localthickness, "porespy": _porespy}


@pytest.mark.benchmark(group="Tb.Th 256^3")
@pytest.mark.parametrize("impl", list(PEERS))
def test_tb_th(benchmark, volume, impl):
    value = benchmark.pedantic(PEERS[impl], args=(volume,), rounds=3 if impl == "bonesr_bench"
                               else 1, iterations=1)
    benchmark.extra_info["tb_th_vox"] = value


@pytest.mark.benchmark(group="Tb.Sp 256^3")
@pytest.mark.parametrize("impl", list(PEERS))
def test_tb_sp(benchmark, volume, impl):
    marrow = ~volume
    value = benchmark.pedantic(PEERS[impl], args=(marrow,), rounds=3 if impl == "bonesr_bench"
                               else 1, iterations=1)
    benchmark.extra_info["tb_sp_vox"] = value


def _smi_ours(bone):
    return structure_model_index(bone)


def _skimage_mesh_area(bone):
    """The peer of the v4 SMI: scikit-image's marching cubes (Lewiner) on the same smoothed
    volume and the mesh's area; less than SMI needs (no rate, no volume)."""
    from scipy import ndimage as ndi
    from skimage.measure import marching_cubes, mesh_surface_area

    field = ndi.gaussian_filter(bone.astype("float32"), SIGMA_VOX, mode="nearest")
    verts, faces, _, _ = marching_cubes(field, 0.5)
    return mesh_surface_area(verts, faces)


SURFACE = {"bonesr_bench SMI": _smi_ours, "skimage marching cubes + area": _skimage_mesh_area}


@pytest.mark.benchmark(group="SMI 256^3")
@pytest.mark.parametrize("impl", list(SURFACE))
def test_smi(benchmark, volume, impl):
    value = benchmark.pedantic(SURFACE[impl], args=(volume,), rounds=3, iterations=1)
    benchmark.extra_info["value"] = value


@pytest.mark.benchmark(group="full trabecular set 256^3")
def test_full_trabecular_set(benchmark, volume):
    result = benchmark.pedantic(trabecular_morphometry, args=(volume, VOXEL_UM), rounds=3,
                                iterations=1)
    benchmark.extra_info.update(result.as_dict())


@pytest.mark.benchmark(group="peak memory 256^3")
def test_peak_memory_of_the_full_set(benchmark, tmp_path):
    """Peak resident memory (MiB) of a fresh process that builds the volume and measures it,
    minus that of the same process stopping before the measurement."""
    code = textwrap.dedent("""
        import json, resource, sys
        sys.path.insert(0, {tests!r})
        from phantoms import porous_volume
        from bonesr_bench.morphometry import trabecular_morphometry
        bone = porous_volume(256)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.argv[1] == "measure":
            trabecular_morphometry(bone, 10.5)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"base_mib": base / 1024, "peak_mib": peak / 1024}}))
    """).format(tests=str(__import__("pathlib").Path(__file__).parents[1]))

    def run():
        out = subprocess.run([sys.executable, "-c", code, "measure"], capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)

    mem = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(mem)
    benchmark.extra_info["added_by_measurement_mib"] = mem["peak_mib"] - mem["base_mib"]
    print(f"\npeak RSS {mem['peak_mib']:.0f} MiB (volume built: {mem['base_mib']:.0f} MiB)")
