"""The zarr store of a split, used top-down by both builders (synthetic and from scans): layout,
sha256 of every array, the fingerprint, the write protocol (a specimen marked complete last),
verification against the recorded and the committed canonical tables, and reading."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from bonesr_bench import __version__
from bonesr_bench.errors import BenchError
from bonesr_bench.split.config import DEFAULT_SPLIT, SPLITS, SplitConfig
from bonesr_bench.split.intensity import calibration, from_raw


class SplitError(BenchError, RuntimeError):
    """A split is missing, incomplete or tampered with; the message says what and the fix."""


#: a store's location: a local path, or a URL that fsspec opens (``file://``, ``s3://``,
#: ``gs://``, ``memory://``, ...), so that workers on other machines read one split
Location = str | Path
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def as_location(location: Location) -> Location:
    """A URL stays the string it is (a ``Path`` would fold its ``//``); anything else is a
    local ``Path``."""
    text = str(location)
    return text if _URL.match(text) else Path(location)


def is_url(location: Location) -> bool:
    return isinstance(as_location(location), str)


def in_one_process(location: Location) -> bool:
    """True for stores that live in one process's memory (``memory://``): other processes (a
    build's or Dask's workers) cannot see them."""
    return str(location).startswith("memory://")


def _filesystem(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SplitError(f"{url}: {first}; install the fsspec backend of this protocol "
                         "(s3fs for s3://, gcsfs for gs://) or give a local path") from None


def location_exists(location: Location) -> bool:
    loc = as_location(location)
    if isinstance(loc, Path):
        return loc.exists()
    fs, path = _filesystem(loc)
    return fs.exists(path)


def open_group(location: Location, mode: str = "r", **kwargs) -> zarr.Group:
    """The zarr group at ``location`` (a path or an fsspec URL)."""
    loc = as_location(location)
    if isinstance(loc, Path):
        return zarr.open_group(str(loc), mode=mode, **kwargs)
    _filesystem(loc)  # an unknown protocol or a missing backend: one line
    opts = {"auto_mkdir": True} if loc.startswith("file://") and mode != "r" else None
    return zarr.open_group(loc, mode=mode, storage_options=opts, **kwargs)


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
    root = open_group(path, mode="r")
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
    root = open_group(path, mode="r")
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
    path = as_location(path)
    if not location_exists(path):
        raise SplitError(f"{path}: no split here; build it with `bonesr-bench data build`")
    root = open_group(path, mode="r")
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


def open_split(path: str | Path, *, check: bool = True) -> zarr.Group:
    """Open a split for reading; with ``check`` refuse one that fails verification."""
    if check:
        require_ok(verify(path))
    return open_group(path, mode="r")


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
