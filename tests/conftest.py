"""Shared phantoms with known answers, and the real trabecular ROIs (BoneBox, BSD-3, see
``benchmark/bonesr_bench/data/bonebox/LICENSE``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

DATA = Path(__file__).parents[1] / "benchmark" / "bonesr_bench" / "data" / "bonebox"
BONEJ = json.loads((DATA / "bonej_reference.json").read_text())


def tree_sha(path: Path) -> str:
    """sha256 over every file's relative path and bytes under ``path``."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def read_roi(name: str) -> np.ndarray:
    import nrrd

    data, _ = nrrd.read(str(DATA / name), index_order="C")
    return data > 0


@pytest.fixture(scope="session")
def roi_bone():
    return {name: read_roi(name) for name in BONEJ}


def load_baseline(name: str):
    """The submission file ``baselines/<name>.py`` imported as a module (as the harness does)."""
    import importlib.util

    path = Path(__file__).parents[1] / "baselines" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"baseline_{name}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_structure(shape, sigma, fraction, seed) -> np.ndarray:
    """Smooth random two-phase structure with the given bone fraction."""
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.random(shape), sigma)
    return f > np.quantile(f, 1 - fraction)


def grid(shape):
    return np.mgrid[tuple(slice(0, n) for n in shape)]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests never read or write the user's cache (splits, cached reference rows); the user's
    cache folder stays known as ``BONESR_USER_CACHE`` for the benchmarks."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    from platformdirs import user_cache_dir

    os.environ.setdefault("BONESR_USER_CACHE", user_cache_dir("bonesr-bench"))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def mini_split(tmp_path_factory):
    """The mini split (2 train + 2 test specimens of 16 x 96 x 96), built once per session."""
    from bonesr_bench.split import SPLITS, build

    path = tmp_path_factory.mktemp("mini") / "mini.zarr"
    build(path, SPLITS["mini"])
    return path


@pytest.fixture(scope="session")
def v2_test_split():
    """The v2 test split for the benchmarks: ``BONESR_SPLIT``, or the user's own cache's (the
    real one, not the tests' private cache; built first if missing)."""
    import os

    from bonesr_bench.split import SPLITS, ensure

    path = os.environ.get("BONESR_SPLIT")
    if path:
        return Path(path)
    return ensure(Path(os.environ["BONESR_USER_CACHE"]) / "synth-v2.zarr", SPLITS["v2"],
                  part="test")


@pytest.fixture(scope="session", autouse=True)
def shipped_weights_untouched():
    """No test may overwrite the committed weights (a training test must pass --weights)."""
    import hashlib

    root = Path(__file__).parents[1]
    files = sorted([*(root / "baselines" / "weights").glob("*"),
                    *(root / "submissions").glob("*/weights*")])

    def digest():
        return {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}

    before = digest()
    yield
    assert digest() == before, "a test overwrote committed weights; restore them with git"


def tibia_section(shape=(24, 100, 100), voxel_um: float = 10.5):
    """An analytic bone section with known regions: a cylindrical cortex (inner radius 300 µm,
    outer 440 µm, 140 µm thick) with small closed pores, around a marrow cavity crossed by thin
    plates (21 µm) that join the endosteal surface. Returns (bone, regions): regions 2 is the
    cortical envelope, 1 the cavity kept 30 µm from the endosteal surface, 0 the rest."""
    z, y, x = grid(shape)
    r_um = np.hypot(y - shape[1] / 2 + 0.5, x - shape[2] / 2 + 0.5) * voxel_um
    inner, outer = 300.0, 440.0
    cortex = (r_um >= inner) & (r_um < outer)
    rng = np.random.default_rng(7)
    pores = np.zeros(shape, bool)
    for _ in range(40):  # pores of 1.5-voxel radius inside the cortex
        angle, depth = rng.uniform(0, 2 * np.pi), rng.uniform(inner + 40, outer - 40)
        c = (rng.integers(2, shape[0] - 2), shape[1] / 2 - 0.5 + depth / voxel_um * np.sin(angle),
             shape[2] / 2 - 0.5 + depth / voxel_um * np.cos(angle))
        pores |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 1.5 ** 2
    plates = (r_um < inner) & (((x % 10) < 2) | np.isin(z % 12, (5, 6)))
    bone = (cortex & ~pores) | plates
    regions = np.zeros(shape, np.uint8)
    regions[r_um < inner - 30.0] = 1
    regions[cortex] = 2
    return bone, regions
