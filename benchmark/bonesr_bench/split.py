"""The benchmark split: a versioned, registered HR/LR zarr store with the true geometry beside it.

Layout (README, "The v2 split"; each image is a one-level OME-Zarr 0.4 image group, so napari
opens ``<store>/test/<specimen>/hr`` directly, voxel sizes in micrometres)::

    <split>.zarr/   attrs["bonesr"]: id, version, scale, voxel sizes, intensity calibration,
                    segmentation parameters, generator and scanner parameters, seeds, package
                    versions, sha256 of every array and the fingerprint (sha256 of that table)
      train/<specimen>/ and test/<specimen>/
        hr/0            HR scan (z, y, x), uint16, 10.5 µm
        lr/0            LR scan (z/2, y/2, x/2), uint16, 21 µm, registered to hr
        labels/truth/0  true bone on the HR grid, uint8 0/1
        labels/regions/0  0 outside, 1 trabecular VOI, 2 cortical envelope (HR grid)
        attrs           generator parameters, the truth's morphometry, "complete"

Scans are stored as uint16 ``raw``; attenuation in 1/cm is ``offset + slope * raw``.
A specimen is written array by array and marked complete last, so an interrupted build leaves
incomplete specimens that the next build redoes; verification recomputes every hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from . import __version__
from .result import jsonable
from .segmentation import SegmentationParams

__all__ = ["SplitConfig", "SPLITS", "CALIBRATION", "default_path", "build", "verify", "ensure",
           "ensure_report",
           "open_split", "require_ok", "Specimen", "VerifyReport", "array_sha256", "SplitError"]

#: attenuation (1/cm) = OFFSET + SLOPE * raw (uint16)
CALIBRATION = {"unit": "1/cm", "offset": -2.0, "slope": 8.0 / 65535}
#: v1's fixed intensity window (1/cm) and TV-Otsu parameters, one set for both grids
SEGMENTATION = SegmentationParams(tv_weight=0.08, tv_max_iter=100, window=(-0.5, 3.5))


@dataclass(frozen=True)
class Protocol:
    """How a synthetic split's scans are made and segmented (one per split version).

    ``segmentation``: TV-Otsu parameters per grid (``hr``: 10.5 µm, ``lr``: 21 µm); entries are
    segmented with the HR grid's, the LR reference row with the LR grid's. ``rule``: how they
    were chosen (rerun with ``bonesr-bench data protocol``). v2 only: ``pose_deg`` /
    ``pose_shift_um``, the largest rotation and shift of the LR acquisition (a separate scan,
    registered onto HR by :func:`register.register`, as a split from scans), ``pad_slices``, HR
    slices generated beyond each end of the stack so that the moved LR scan still covers it.
    """

    split_id: str
    version: str
    hr_scan: object  # synth.scanner.ScanParams
    lr_scan: object
    segmentation: dict  # grid -> SegmentationParams
    rule: str
    exact: bool = False  # the reproducible CPU scanner path (v2)
    population: str = "v1"  # synth.specimen.POPULATIONS: the specimens' trabecular network
    pose_deg: float = 0.0
    pose_shift_um: float = 0.0
    pad_slices: int = 0

    def record(self) -> dict:
        """The split metadata's ``segmentation`` entry: per grid, the rule, and (for v1
        readers) the HR grid's parameters at the top level."""
        hr = self.segmentation["hr"]
        return {**hr.as_dict(), "window_unit": "1/cm", "rule": self.rule,
                "grids": {g: {"tv_weight": p.tv_weight, "tv_max_iter": p.tv_max_iter}
                          for g, p in self.segmentation.items()}}


def _protocols() -> dict[str, Protocol]:
    from .synth.scanner import HR_SCAN, LR_SCAN, ScanParams

    v1_seg = {"hr": SEGMENTATION, "lr": SEGMENTATION}
    v2_window = (-1.0, 5.0)
    return {
        "v1": Protocol("synth-v1", "1.1", HR_SCAN, LR_SCAN, v1_seg,
                       "one TV weight (0.08) for both grids, chosen by eye on HR"),
        "v2": Protocol(
            "synth-v2", "2.0",
            # calibrated on train specimens against the study's Table I (README, "The v2 split")
            ScanParams("hr", binning=1, n_angles=256, photons=120000.0, blur_sigma_um=5.0,
                       gain_sd=0.004),
            ScanParams("lr", binning=2, n_angles=128, photons=20000.0, blur_sigma_um=7.0,
                       gain_sd=0.004, blur_z_um=12.0, pixel_um=19.0),
            {"hr": SegmentationParams(0.01, 100, v2_window),
             "lr": SegmentationParams(0.0, 100, v2_window)},
            TV_RULE, exact=True, population="v2", pose_deg=2.0, pose_shift_um=21.0,
            pad_slices=14),
    }


#: how v2 chooses the TV weight of each grid (``bonesr-bench data protocol`` reruns it)
TV_RULE = ("per grid, the TV weight among 0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12 that minimises "
           "the mean biological error against the true geometry over the first 8 train "
           "specimens (the grid's scan segmented in its own voxels, the truth on the HR grid)")


class SplitError(RuntimeError):
    """A split is missing, incomplete or tampered with; the message says what and the fix."""


@dataclass(frozen=True)
class SplitConfig:
    name: str
    hr_shape: tuple[int, int, int]
    train_seeds: tuple[int, ...]
    test_seeds: tuple[int, ...]
    hr_voxel_um: float = 10.5
    scale: int = 2
    donor: str | None = None  # "bonebox": real ROIs instead of generated specimens (test only)
    protocol: str = "v2"  # key of PROTOCOLS: how the scans are made and segmented

    @property
    def proto(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    @property
    def split_id(self) -> str:
        """The split id: synth-v2, synth-v1, synth-v2-mini, ..."""
        base, name = self.proto.split_id, self.name.removesuffix("-v1")
        return base if name in ("v1", "v2") else f"{base}-{name}"

    def specimens(self, part: str = "all") -> list[tuple[str, str, int]]:
        """(subset, name, seed) for ``part`` in train | test | all."""
        if self.donor == "bonebox":
            from .synth.donor import BONEBOX_ROIS

            if part == "train":
                return []
            return [("test", BONEBOX_ROIS[i], i) for i in self.test_seeds]
        out = []
        if part in ("train", "all"):
            out += [("train", f"s{seed:04d}", seed) for seed in self.train_seeds]
        if part in ("test", "all"):
            out += [("test", f"s{seed:04d}", seed) for seed in self.test_seeds]
        return out


PROTOCOLS = _protocols()

SPLITS = {
    "v2": SplitConfig("v2", (160, 256, 256), tuple(range(1000, 1029)), tuple(range(2000, 2011))),
    "v1": SplitConfig("v1", (160, 256, 256), tuple(range(1000, 1029)), tuple(range(2000, 2011)),
                      protocol="v1"),
    "mini": SplitConfig("mini", (16, 96, 96), (1000, 1001), (2000, 2001)),
    "mini-v1": SplitConfig("mini-v1", (16, 96, 96), (1000, 1001), (2000, 2001), protocol="v1"),
    "bonebox": SplitConfig("bonebox", (160, 192, 192), (), (0, 1, 2), donor="bonebox",
                           protocol="v1"),
}
#: the split that commands use when none is named
DEFAULT_SPLIT = "v2"


def _subsets(part: str) -> set[str]:
    """The subsets that ``part`` (train | test | all) covers."""
    return {"train", "test"} if part == "all" else {part}


def default_path(config: SplitConfig) -> Path:
    """The per-user cache location of a split."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("bonesr-bench")) / f"{config.split_id}.zarr"


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's little-endian C-order bytes, with its dtype and shape."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.newbyteorder('<').str}{a.shape}".encode())
    h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def fingerprint(table: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()


def to_raw(mu_cm: np.ndarray, calibration: dict | None = None) -> np.ndarray:
    """Intensities to the stored uint16 ``raw`` (``calibration``: the split's
    ``intensity_calibration``; default the synthetic splits' :data:`CALIBRATION`)."""
    cal = calibration or CALIBRATION
    raw = np.rint((mu_cm - cal["offset"]) / cal["slope"])
    return np.clip(raw, 0, 65535).astype(np.uint16)


def from_raw(raw: np.ndarray, calibration: dict | None = None) -> np.ndarray:
    """Stored uint16 ``raw`` to intensities (float32): ``offset + slope * raw``."""
    cal = calibration or CALIBRATION
    return (cal["offset"] + cal["slope"] * raw.astype(np.float32)).astype(np.float32)


def calibration(meta: dict) -> dict:
    """The intensity calibration recorded in a split's metadata (``attrs["bonesr"]``)."""
    return dict(meta.get("intensity_calibration") or CALIBRATION)


def ome_attrs(name: str, voxel_um: float) -> dict:
    return {"multiscales": [{
        "version": "0.4", "name": name,
        "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [voxel_um] * 3}]}],
    }]}


def write_image(group: zarr.Group, path: str, data: np.ndarray, voxel_um: float,
                 label: bool = False) -> str:
    img = group.require_group(path)
    chunks = (min(32, data.shape[0]), min(128, data.shape[1]), min(128, data.shape[2]))
    img.create_array("0", data=data, chunks=chunks, overwrite=True)
    attrs = ome_attrs(path, voxel_um)
    if label:
        attrs["image-label"] = {"version": "0.4", "source": {"image": "../../hr"}}
    img.attrs.update(attrs)
    return array_sha256(data)


def _versions() -> dict:
    import numba
    import scipy
    import skimage
    import torch

    return {"bonesr_bench": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-image": skimage.__version__, "torch": torch.__version__,
            "numba": numba.__version__, "zarr": zarr.__version__}


@dataclass
class Specimen:
    """One specimen read from a split: arrays in physical units."""

    subset: str
    name: str
    hr: np.ndarray  # float32, in the split's intensity unit (1/cm for the synthetic splits)
    lr: np.ndarray
    regions: np.ndarray
    truth: np.ndarray | None
    attrs: dict = field(default_factory=dict)


def _specimen_complete(root: zarr.Group, subset: str, name: str) -> bool:
    key = f"{subset}/{name}"
    return key in root and bool(root[key].attrs.get("complete", False))


def _build_specimen(root, config: SplitConfig, subset: str, name: str, seed: int, device) -> dict:
    from .morphometry import morphometry
    from .synth.specimen import draw_params, generate

    proto = config.proto
    pad = proto.pad_slices
    if config.donor == "bonebox":
        from .synth.donor import bonebox_specimen

        spec = bonebox_specimen(name, config.hr_shape)
        generator = {"donor": "bonebox", "roi": name, "licence": "BSD-3-Clause (BoneBox)"}
    else:
        params = draw_params(seed, proto.population)
        z, y, x = config.hr_shape
        spec = generate(params, shape=(z + 2 * pad, y, x), voxel_um=config.hr_voxel_um)
        generator = params.as_dict()
    um = config.hr_voxel_um
    scanner = {"hr": proto.hr_scan.as_dict(), "lr": proto.lr_scan.as_dict(),
               "hr_dose_per_um2": proto.hr_scan.dose_per_voxel(um),
               "lr_dose_per_um2": proto.lr_scan.dose_per_voxel(um)}
    extra = {}
    if proto.exact:
        hr, lr, extra = _acquire(spec.fraction, proto, um, config.scale, seed)
    else:
        from .synth.scanner import scan_pair

        hr, lr = scan_pair(spec.fraction, hr_voxel_um=um, seed=seed, device=device,
                           hr=proto.hr_scan, lr=proto.lr_scan)
    inner = slice(pad, pad + config.hr_shape[0]) if pad else slice(None)
    truth, regions = spec.truth[inner], spec.regions[inner]
    truth_m = morphometry(truth, um, regions=regions)
    return write_specimen(
        root, f"{subset}/{name}", to_raw(hr), to_raw(lr), um, um * config.scale,
        {"truth": truth, "regions": regions},
        {"seed": seed, "generator": generator, "scanner": scanner, **extra,
         "truth_morphometry": jsonable(truth_m)})


def _acquire(fraction: np.ndarray, proto: Protocol, um: float, scale: int,
             seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """v2's two acquisitions of a specimen generated ``proto.pad_slices`` beyond each end: HR
    (the middle of its stack kept) and LR at its own random pose, registered onto HR and
    resampled onto the exact x``scale`` grid by :func:`register.register`, the code a split
    from scans uses. Returns (HR, LR on the grid, attributes: pose and registration)."""
    from .register import register
    from .synth.scanner import draw_pose, line_integrals_exact, posed, scan_exact

    pad = proto.pad_slices
    p = line_integrals_exact(fraction, proto.hr_scan.n_angles, hr_voxel_um=um)
    hr = scan_exact(p, proto.hr_scan, hr_voxel_um=um, seed=2 * seed + 1,
                    keep=slice(pad, p.shape[0] - pad))
    del p
    pose = draw_pose(seed, proto.pose_deg, proto.pose_shift_um)
    p = line_integrals_exact(posed(fraction, pose, um), proto.lr_scan.n_angles, hr_voxel_um=um)
    lr = scan_exact(p, proto.lr_scan, hr_voxel_um=um, seed=2 * seed + 2)
    del p
    reg = register(hr.astype(np.float32), lr.astype(np.float32), um,
                   proto.lr_scan.voxel_um(um), scale=scale, seed=seed,
                   fill=float(np.percentile(lr, 0.5)))
    record = {**reg.record("register.register (as --from-scans): ANTsPy affine (Mattes MI) "
                           "from a cross-correlation start, Gauss-Newton refinement, linear "
                           "resampling"), "coverage": reg.coverage}
    return hr, reg.lr_on_grid, {"pose": pose.as_dict(), "registration": record,
                                "lr_scan_shape": list(lr.shape),
                                "lr_scan_voxel_um": proto.lr_scan.voxel_um(um)}


def write_specimen(root: zarr.Group, key: str, hr_raw: np.ndarray, lr_raw: np.ndarray,
                   hr_um: float, lr_um: float, labels: dict[str, np.ndarray],
                   attrs: dict) -> dict[str, str]:
    """Write one specimen under ``key`` (``subset/name``), replacing any earlier one: the stored
    uint16 scans, the label images on the HR grid, ``attrs`` and the sha256 of every array,
    marked complete last so that an interrupted write leaves an incomplete specimen (what
    :func:`verify` reports and a rebuild redoes). Returns the hashes."""
    if key in root:
        del root[key]
    g = root.require_group(key)
    hashes = {f"{key}/hr/0": write_image(g, "hr", hr_raw, hr_um),
              f"{key}/lr/0": write_image(g, "lr", lr_raw, lr_um)}
    for name, data in labels.items():
        hashes[f"{key}/labels/{name}/0"] = write_image(g, f"labels/{name}", data, hr_um,
                                                       label=True)
    g.require_group("labels").attrs["labels"] = list(labels)
    g.attrs.update({**attrs, "sha256": hashes})
    g.attrs["complete"] = True  # last: marks the specimen as whole
    return hashes


#: what each build worker process runs with: one thread in every library that starts its own
#: (numba, OpenMP, BLAS, ITK), so that n workers use n cores
WORKER_ENV = dict.fromkeys(("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                            "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"), "1")
#: memory one worker needs (peak RSS of a v2 specimen's build: 2.2 GB), bytes
WORKER_MEMORY = 2.5e9


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _available_memory() -> float | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_workers(specimens: int) -> int:
    """How many specimens to build at once: one per usable core, as memory allows
    (:data:`WORKER_MEMORY` each), at most ``specimens``, at least 1."""
    mem = _available_memory()
    by_memory = int(mem // WORKER_MEMORY) if mem else specimens
    return max(1, min(_usable_cores(), by_memory, specimens))


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """``os.environ`` updated by ``values`` inside the block (what spawned processes inherit)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_main() -> None:
    """A build worker process (see :func:`_build_specimens`): reads one JSON job a line on stdin
    (store path, split config, subset, name, seed), builds that specimen, answers one JSON line
    on stdout ({"name"} or {"name", "error"}); exits at the end of stdin."""
    import sys

    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a library prints goes to the log, not into the replies
    sys.stdout = sys.stderr
    for line in sys.stdin:
        job = json.loads(line)
        try:
            c = job["config"]
            config = SplitConfig(**{**c, **{k: tuple(c[k]) for k in
                                            ("hr_shape", "train_seeds", "test_seeds")}})
            root = zarr.open_group(job["path"], mode="a", zarr_format=2)
            _build_specimen(root, config, job["subset"], job["name"], job["seed"], "cpu")
            replies.write(json.dumps({"name": job["name"]}) + "\n")
        except Exception as exc:  # reported by the parent, which stops the build
            replies.write(json.dumps({"name": job["name"],
                                      "error": f"{type(exc).__name__}: {exc}"}) + "\n")


def _build_specimens(path: Path, root, config: SplitConfig, todo: list[tuple[str, str, int]],
                     device, workers: int) -> Iterator[str]:
    """Build ``todo`` (subset, name, seed), yielding each name when its specimen is written: in
    this process when ``workers`` is 1, else in that many single-threaded worker processes
    (:data:`WORKER_ENV`), each given the next specimen when it is done with one. The bytes do
    not depend on it; an interrupted build leaves the specimens in progress incomplete, which
    the next build redoes.

    By hand rather than multiprocessing: a spawned pool re-runs the caller's main script in
    every worker, which breaks an unguarded script; a worker here imports only the package."""
    if workers <= 1 or len(todo) <= 1 or str(device) != "cpu":
        for subset, name, seed in todo:
            _build_specimen(root, config, subset, name, seed, device)
            yield name
        return
    import queue
    import subprocess
    import sys
    import threading
    from dataclasses import asdict

    jobs = iter([json.dumps({"path": str(path), "config": asdict(config), "subset": subset,
                             "name": name, "seed": seed}) + "\n"
                 for subset, name, seed in todo])
    lock, replies = threading.Lock(), queue.Queue()
    procs = [subprocess.Popen([sys.executable, "-c",
                               "from bonesr_bench.split import _worker_main; _worker_main()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **WORKER_ENV})
             for _ in range(min(workers, len(todo)))]

    def feed(proc):
        while True:
            with lock:
                job = next(jobs, None)
            if job is None:
                break
            proc.stdin.write(job)
            proc.stdin.flush()
            line = proc.stdout.readline()
            replies.put(json.loads(line) if line else
                        {"name": json.loads(job)["name"],
                         "error": f"the worker process died (exit {proc.wait()})"})
        proc.stdin.close()

    threads = [threading.Thread(target=feed, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()
    finished = False
    try:
        for _ in todo:
            reply = replies.get()
            if "error" in reply:
                raise SplitError(f"building specimen {reply['name']} failed: {reply['error']}")
            yield reply["name"]
        finished = True
    finally:
        for p in procs:
            if not finished:  # an error or an interrupt: the specimens in progress stay incomplete
                p.kill()
            p.wait()


def build(path: str | Path, config: SplitConfig = SPLITS[DEFAULT_SPLIT], *,
          part: str = "all", device="cpu",
          progress: Callable[[str, int, int], None] | None = None,
          workers: int | None = 1) -> str:
    """Build (or resume, or repair) the split at ``path``; returns its fingerprint.

    Complete specimens whose arrays still match their recorded hashes are kept; incomplete or
    altered ones are rebuilt, ``workers`` at a time (None: :func:`auto_workers`; CPU builds
    only). ``progress(name, done, total)`` is called after each specimen.
    """
    path = Path(path)
    proto = config.proto
    root = zarr.open_group(str(path), mode="a", zarr_format=2)
    old = dict(root.attrs.get("bonesr", {}))
    if is_from_scans(old):
        raise SplitError(f"{path} was built from scans; resume or repair it with "
                         f"`{repair_hint(path, old)}`, not as a synthetic split")
    if old.get("config") not in (None, config.name):
        raise SplitError(f"{path} holds the {old.get('split')} split, not {config.split_id}; "
                         f"resume it with `{repair_hint(path, old)}` or build "
                         f"{config.split_id} at another --out")
    parts = set(old.get("parts", []))
    parts |= _subsets(part)
    specimens = config.specimens(part)
    todo, done = [], 0
    for subset, name, seed in specimens:
        if _specimen_complete(root, subset, name) and not _check_specimen(root, subset, name):
            done += 1
            if progress:
                progress(name, done, len(specimens))
        else:
            todo.append((subset, name, seed))
    workers = auto_workers(len(todo)) if workers is None else workers
    for name in _build_specimens(path, root, config, todo, device, workers):
        done += 1
        if progress:
            progress(name, done, len(specimens))
    root = zarr.open_group(str(path), mode="a", zarr_format=2)  # what the workers wrote
    table = {}
    for subset, name, _ in config.specimens("all"):
        if subset in parts and _specimen_complete(root, subset, name):
            table.update(root[f"{subset}/{name}"].attrs["sha256"])
    fp = fingerprint(table)
    root.attrs["bonesr"] = {
        "split": config.split_id,
        "version": proto.version, "config": config.name, "parts": sorted(parts),
        "scale": config.scale,
        "hr_voxel_um": config.hr_voxel_um, "lr_voxel_um": config.hr_voxel_um * config.scale,
        "hr_shape": list(config.hr_shape),
        "intensity_calibration": CALIBRATION,
        "segmentation": proto.record(),
        "scanner": {"hr": proto.hr_scan.as_dict(), "lr": proto.lr_scan.as_dict(),
                    **({"exact_cpu_path": True, "lr_pose_max_deg": proto.pose_deg,
                        "lr_pose_max_shift_um": proto.pose_shift_um,
                        "pad_slices": proto.pad_slices} if proto.exact else {})},
        "seeds": {"train": list(config.train_seeds), "test": list(config.test_seeds)},
        "donor": config.donor,
        "versions": _versions(),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": table,
        "fingerprint": fp,
    }
    return fp


def segmentation_params(meta: dict) -> dict[str, SegmentationParams]:
    """TV-Otsu parameters per grid (``hr``, ``lr``) recorded in a split's metadata; a split that
    records one set (v1, older splits from scans) uses it for both grids."""
    seg = meta["segmentation"]
    window = tuple(seg["window"]) if seg.get("window") is not None else None
    top = SegmentationParams(seg["tv_weight"], seg["tv_max_iter"], window)
    grids = seg.get("grids") or {}
    return {g: SegmentationParams(grids[g]["tv_weight"], grids[g]["tv_max_iter"], window)
            if g in grids else top for g in ("hr", "lr")}


def _check_specimen(root, subset: str, name: str) -> list[str]:
    """Paths of the specimen's arrays whose content no longer matches the recorded hash."""
    g = root[f"{subset}/{name}"]
    bad = []
    for path, sha in g.attrs.get("sha256", {}).items():
        rel = path.split("/", 2)[2]
        if rel not in g or array_sha256(np.asarray(g[rel][...])) != sha:
            bad.append(path)
    return bad


#: Arrays of a rebuilt split may differ from the canonical ones in floating-point detail (another
#: CPU, BLAS, numba or torch build). Scores stay comparable when every scan's mean and SD are
#: within these bounds of the canonical values and truth and region arrays differ in at most this
#: fraction of voxels.
TOLERANCE = {"scan_mean_cm": 0.002, "scan_sd_rel": 0.005, "label_voxels_frac": 1e-4}


def canonical(split: str) -> dict | None:
    """The committed canonical table of a split (fingerprint and per-array sha256, mean, SD), or
    None where none is committed."""
    from importlib import resources

    ref = resources.files("bonesr_bench") / "data" / "canonical" / f"{split}.json"
    return json.loads(ref.read_text()) if ref.is_file() else None


def _array_stats(key: str, a: np.ndarray) -> dict:
    """Non-zero count, and for scans the mean and SD in 1/cm: what the tolerance compares."""
    stats = {"nonzero": int(np.count_nonzero(a))}
    if key.endswith(("/hr/0", "/lr/0")):
        mu = from_raw(a).astype(np.float64)
        stats.update(mean_cm=float(mu.mean()), sd_cm=float(mu.std()))
    return stats


def compare_to_canonical(path: str | Path, table: dict,
                         parts=("train", "test")) -> dict[str, str]:
    """Per differing array of the built ``parts``: "within tolerance" or "differs" (with the
    figure), against the canonical ``table``."""
    root = zarr.open_group(str(path), mode="r")
    out = {}
    for key, ref in table["arrays"].items():
        if key.split("/")[0] not in parts:
            continue
        if key not in root:
            out[key] = "differs: missing"
            continue
        a = np.asarray(root[key][...])
        if array_sha256(a) == ref["sha256"]:
            continue
        got = _array_stats(key, a)
        if "mean_cm" in got:
            dm = abs(got["mean_cm"] - ref["mean_cm"])
            ds = abs(got["sd_cm"] / ref["sd_cm"] - 1)
            ok = dm <= TOLERANCE["scan_mean_cm"] and ds <= TOLERANCE["scan_sd_rel"]
            out[key] = (f"{'within tolerance' if ok else 'differs'}: mean {dm:.4f} 1/cm, "
                        f"SD {100 * ds:.2f} % from canonical")
        else:
            frac = abs(got["nonzero"] - ref["nonzero"]) / a.size
            ok = frac <= TOLERANCE["label_voxels_frac"]
            out[key] = (f"{'within tolerance' if ok else 'differs'}: {100 * frac:.4f} % of "
                        "voxels")
    return out


def canonical_fingerprints(split: str) -> set[str]:
    """The fingerprints a store identical to the committed canonical split can have: of the
    whole split, of its test part alone and of its train part alone (a store holds the parts
    built so far, e.g. only the test part that ``evaluate`` builds on first use)."""
    table = canonical(split)
    if not table:
        return set()
    shas = {k: v["sha256"] for k, v in table["arrays"].items()}
    parts = [shas] + [{k: v for k, v in shas.items() if k.startswith(f"{p}/")}
                      for p in ("test", "train")]
    return {table["fingerprint"]} | {fingerprint(t) for t in parts if t}


def canonical_table(path: str | Path) -> dict:
    """The table to commit as canonical for the split at ``path``."""
    root = zarr.open_group(str(path), mode="r")
    meta = dict(root.attrs["bonesr"])
    arrays = {}
    for key in sorted(meta["sha256"]):
        arrays[key] = {"sha256": meta["sha256"][key],
                       **_array_stats(key, np.asarray(root[key][...]))}
    return {"split": meta["split"], "version": meta["version"],
            "fingerprint": meta["fingerprint"], "tolerance": TOLERANCE,
            "versions": meta["versions"], "arrays": arrays}


@dataclass
class VerifyReport:
    path: str
    complete: bool
    missing: list[str]
    altered: list[str]
    fingerprint: str | None
    recorded_fingerprint: str | None
    canonical_fingerprint: str | None = None
    canonical_diffs: dict[str, str] = field(default_factory=dict)
    parts: list[str] = field(default_factory=lambda: ["test", "train"])
    repair: str = ""  # the command that resumes or repairs the split

    @property
    def ok(self) -> bool:
        return (self.complete and not self.missing and not self.altered
                and self.fingerprint == self.recorded_fingerprint)

    @property
    def canonical(self) -> bool | None:
        """True: identical to the committed canonical split; None: no canonical committed."""
        if self.canonical_fingerprint is None:
            return None
        return self.fingerprint == self.canonical_fingerprint or not self.canonical_diffs

    @property
    def comparable(self) -> bool:
        """Identical to the canonical split, or every difference within :data:`TOLERANCE` (a
        split with no canonical table committed is comparable to nothing)."""
        if self.canonical is None:
            return False
        return bool(self.canonical) or all(v.startswith("within")
                                           for v in self.canonical_diffs.values())


def is_from_scans(meta: dict) -> bool:
    """Whether a split's metadata says it was built from scans (``bonesr-bench data build
    --from-scans``) rather than generated."""
    return meta.get("source") == "scans"


def _expected_specimens(meta: dict, config: SplitConfig) -> list[tuple[str, str]]:
    """(subset, name) of every specimen the split should hold: a generated split's come from its
    configuration, a split built from scans records its own list."""
    if is_from_scans(meta):
        return [(subset, name) for subset, name in meta.get("specimens", [])]
    return [(subset, name) for subset, name, _ in config.specimens("all")]


def repair_hint(path: str | Path, meta: dict) -> str:
    """The command that resumes or repairs the split at ``path``."""
    if is_from_scans(meta):
        return (f"bonesr-bench data build --from-scans {meta.get('scans_csv', 'scans.csv')} "
                f"--out {path}")
    config = SPLITS.get(meta.get("config", DEFAULT_SPLIT), SPLITS[DEFAULT_SPLIT])
    if config.donor is not None:
        flags = f" --donor {config.donor}"
    else:
        flags = " --split mini" if config.name.startswith("mini") else ""
        flags += f" --version {config.protocol}" if config.protocol != DEFAULT_SPLIT else ""
    return f"bonesr-bench data build{flags} --out {path}"


def verify(path: str | Path, config: SplitConfig | None = None) -> VerifyReport:
    """Recompute every array's hash and compare with the recorded table."""
    path = Path(path)
    if not path.exists():
        raise SplitError(f"{path}: no split here; build it with `bonesr-bench data build`")
    root = zarr.open_group(str(path), mode="r")
    meta = dict(root.attrs.get("bonesr", {}))
    if config is None:
        config = SPLITS.get(meta.get("config", "v1"), SPLITS["v1"])
    missing, altered, table = [], [], {}
    parts = meta.get("parts", ["test", "train"])
    for subset, name in _expected_specimens(meta, config):
        if subset not in parts:
            continue
        if not _specimen_complete(root, subset, name):
            missing.append(f"{subset}/{name}")
            continue
        altered += _check_specimen(root, subset, name)
        table.update(root[f"{subset}/{name}"].attrs["sha256"])
    recorded = meta.get("fingerprint")
    report = VerifyReport(str(path), bool(meta) and not missing, missing, altered,
                          fingerprint(table) if not missing else None, recorded,
                          parts=sorted(parts), repair=repair_hint(path, meta))
    canon = canonical(meta.get("split", "")) if meta else None
    if canon is not None and report.ok:
        report.canonical_fingerprint = canon["fingerprint"]
        if report.fingerprint != canon["fingerprint"]:
            report.canonical_diffs = compare_to_canonical(path, canon, parts)
    return report


def ensure(path: str | Path | None = None, config: SplitConfig = SPLITS[DEFAULT_SPLIT], *,
           part: str = "test", device="cpu",
           progress: Callable[[str, int, int], None] | None = None,
           workers: int | None = 1) -> Path:
    """The split at ``path`` (default: the per-user cache), built first if it is missing,
    incomplete or altered; what ``evaluate`` calls before scoring. Returns the path."""
    return ensure_report(path, config, part=part, device=device, progress=progress,
                         workers=workers)[0]


def ensure_report(path: str | Path | None = None,
                  config: SplitConfig = SPLITS[DEFAULT_SPLIT], *,
                  part: str = "test", device="cpu",
                  progress: Callable[[str, int, int], None] | None = None,
                  workers: int | None = 1) -> tuple[Path, VerifyReport | None]:
    """:func:`ensure`, also returning the verification report when the split was already
    there and verified (None when it was just built), so a caller need not verify it twice."""
    path = Path(path) if path is not None else default_path(config)
    if path.exists():
        report = verify(path, config)
        if report.ok and _subsets(part) <= set(report.parts):
            return path, report
    path.parent.mkdir(parents=True, exist_ok=True)
    build(path, config, part=part, device=device, progress=progress, workers=workers)
    return path, None


def open_split(path: str | Path, *, check: bool = True) -> zarr.Group:
    """Open a split for reading; with ``check`` refuse one that fails verification."""
    if check:
        require_ok(verify(path))
    return zarr.open_group(str(path), mode="r")


def require_ok(report: VerifyReport) -> VerifyReport:
    """``report`` if the split verified, else a :class:`SplitError` saying what failed."""
    if not report.ok:
        what = (f"{len(report.missing)} specimen(s) missing or incomplete" if report.missing
                else f"{len(report.altered)} array(s) altered" if report.altered
                else "fingerprint mismatch")
        raise SplitError(f"{report.path}: split fails verification ({what}); nothing is scored "
                         f"on it; run `{report.repair or repair_hint(report.path, {})}` to resume "
                         "or repair it")
    return report


def iter_specimens(path: str | Path, subset: str = "test", *,
                   check: bool = True) -> Iterator[Specimen]:
    root = open_split(path, check=check)
    cal = calibration(dict(root.attrs.get("bonesr", {})))
    for name in sorted(root[subset].group_keys()):
        g = root[f"{subset}/{name}"]
        truth = np.asarray(g["labels/truth/0"][...]) if "labels/truth" in g else None
        yield Specimen(subset, name, from_raw(np.asarray(g["hr/0"][...]), cal),
                       from_raw(np.asarray(g["lr/0"][...]), cal),
                       np.asarray(g["labels/regions/0"][...]), truth, dict(g.attrs))
