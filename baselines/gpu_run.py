#!/usr/bin/env python3
"""RCAN, DAN and pix2pix trained and scored in one prepared GPU run (a bare H200 machine, at most
9 minutes), and the very same path rehearsed on the CPU with the tiny configurations (``--tiny``,
run by ``tests/test_gpu_run.py``).

Where each step runs::

    here (registry access)   python3 baselines/gpu_run.py prepare
                             wheels of what the GPU machine lacks (zarr, edt, cc3d, antspyx,
                             dask, ...) into .whl/ (git-ignored through .git/info/exclude)
    on the GPU machine       python3 baselines/gpu_run.py run --out $OUT
                             (carry .whl) installs the wheels, builds the v2 split, trains the
                             three at once on the one GPU, scores them, and leaves part 1 of
                             what comes back in $OUT; then, while the machine is still warm:
                             python3 baselines/gpu_run.py collect --part 2 --out $OUT  (and 3)
    here, afterwards         python3 baselines/gpu_run.py unpack PART_FOLDER...
                             weights (verified by sha256) into baselines/weights/, results into
                             runs/<model>/result.json, ready for `bonesr-bench leaderboard add`

What ``run`` does, each step timed into WORK/campaign.log and WORK/campaign.json:

1. ``data build --split all`` (v2; its bytes come from the CPU path by design, one specimen per
   core), then ``data verify``: canonical, or comparable with its own fingerprint recorded;
2. ``leaderboard references`` for the test specimens, on CPU workers, while the GPU trains;
3. ``train`` of the three files at once (three processes on the one GPU), each with
   ``--precision bf16`` (autocast; channels-last on CUDA) and ``--budget-s``: 100 iterations of a
   throw-away copy are timed, then the recipe's length is cut to what fits the budget (the
   sidecar's ``fitted`` records the measured rate and the length). The budget is what the
   deadline leaves after the build, less the evaluation's reserve;
4. ``evaluate`` of each on the test split (the model on the GPU in its confined worker, the
   scoring on CPU Dask workers), ``--sandbox auto``;
5. packing: weights over 15 MiB are already in parts (``models.wrapper.PART_BYTES``); the small
   files (sidecars, logs, results, campaign.json) go into one ``meta.tar.gz``; the files are cut
   into parts of at most 8 files and 60 MiB (the device's return limit), part 1 written to $OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("rcan", "dan", "pix2pix")
WHEELS = ROOT / ".whl"
SITE = Path("/tmp/bonesr-site")
#: what one part of the returned files may hold: the device returns 8 files (one of them the
#: part's marker), 16 MiB each, 64 MiB a call
PART_FILES, PART_BYTES, FILE_BYTES = 7, 60 * 2**20, 16 * 2**20
#: the GPU machine's image (the device tool's KINDS.md, read 2026-11-17): carried only if absent
DEVICE_HAS = set("""absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc
anyio attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama
contourpy coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist
fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader
lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp""".split())
#: dependencies the run never imports (the site's plots, the readers of real scans), left behind
#: to keep the tree and the wheels within the 64 MiB that may travel
NOT_CARRIED = {"plotly", "nibabel", "pydicom", "pynrrd"}
#: the packages ``run`` imports before anything else, to know whether the wheels are installed
PROBE_IMPORTS = ("zarr", "edt", "cc3d", "ants", "distributed", "jsonschema", "platformdirs")


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# ----------------------------------------------------------------------------------------------
# prepare (here)


def carried_packages() -> dict[str, str]:
    """{name: version installed here} of bonesr-bench's run-time dependencies (their closure,
    extras followed) that the GPU machine's image lacks."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    out, todo, seen = {}, [("bonesr-bench", ())], set()
    while todo:
        name, extras = todo.pop()
        key = (_norm(name), tuple(sorted(extras)))
        if key in seen or _norm(name) in NOT_CARRIED:
            continue
        seen.add(key)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        if _norm(name) in DEVICE_HAS:  # there already, with what it needs
            continue
        if _norm(name) != "bonesr-bench":
            out[_norm(name)] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in (*extras, "")]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                if not _norm(req.name).startswith("nvidia-"):
                    todo.append((req.name, tuple(req.extras)))
    return dict(sorted(out.items()))


def prepare(args) -> int:
    packages = carried_packages()
    WHEELS.mkdir(exist_ok=True)
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.parent.is_dir() and "/.whl/" not in (exclude.read_text()
                                                   if exclude.is_file() else ""):
        with exclude.open("a") as f:
            f.write("/.whl/\n")
    platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                             "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                             "manylinux2014_x86_64", "manylinux1_x86_64")
                 for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(WHEELS),
           *[f"{n}=={v}" for n, v in packages.items()]]
    print("carrying:", ", ".join(f"{n} {v}" for n, v in packages.items()), flush=True)
    rc = subprocess.call(cmd)
    size = sum(f.stat().st_size for f in WHEELS.glob("*.whl"))
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels in {WHEELS}, {size / 2**20:.1f} MiB "
          "(the tree and the carried wheels travel within 64 MiB)")
    return rc


# ----------------------------------------------------------------------------------------------
# run (on the GPU machine; --tiny on any CPU)


def _missing() -> list[str]:
    """The modules the run needs that this interpreter cannot import."""
    import importlib.util

    return [m for m in (*PROBE_IMPORTS, "bonesr_bench") if importlib.util.find_spec(m) is None]


def ensure_installed() -> None:
    """Install the carried wheels (into SITE) and put them and the package on the path of this
    process and of every process it starts; re-execute once so that imports see them."""
    missing = _missing()
    if not missing:
        return
    if os.environ.get("BONESR_GPU_RUN_REEXEC"):  # installed, and still not importable
        raise SystemExit(f"cannot import {', '.join(missing)} after installing {WHEELS}: run "
                         "`python3 baselines/gpu_run.py prepare` here and carry .whl")
    wheels = sorted(WHEELS.glob("*.whl"))
    if wheels:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                               "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                               "--target", str(SITE), *map(str, wheels)])
    path = [str(SITE), str(ROOT / "benchmark"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    os.environ["BONESR_GPU_RUN_REEXEC"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])


class Campaign:
    """One run's folders, log and timings."""

    def __init__(self, args):
        self.args, self.tiny = args, args.tiny
        self.work = Path(args.work).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        self.log_path = self.work / "campaign.log"
        self.log_file = self.log_path.open("a")
        self.record = {"tiny": self.tiny, "device": args.device, "stages": {}, "models": {}}
        self.split = "mini" if self.tiny else "v2"
        self.runs = self.work / "runs"
        for old in (self.runs, self.work / "train", self.work / "parts"):
            shutil.rmtree(old, ignore_errors=True)  # an earlier run's, never reported as this one's
        self.sources = {m: self._source(m) for m in MODELS}

    def say(self, line: str) -> None:
        line = f"[{time.time() - self.t0:6.1f} s] {line}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def cli(self, *argv: str, log: Path | None = None, wait: bool = True):
        """``python -m bonesr_bench ARGV``: its output to ``log`` (or the campaign's)."""
        with (log or self.work / "cli.log").open("a") as out:  # the child keeps its own copy
            proc = subprocess.Popen([sys.executable, "-m", "bonesr_bench", *argv], stdout=out,
                                    stderr=subprocess.STDOUT, cwd=ROOT)
        return proc.wait() if wait else proc

    def stage(self, name: str, started: float) -> None:
        self.record["stages"][name] = round(time.time() - started, 1)
        self.say(f"{name}: {self.record['stages'][name]:.1f} s")

    def source(self, model: str) -> Path:
        return self.sources[model]

    def _source(self, model: str) -> Path:
        """The submission file trained and scored: the repository's, or with --tiny a copy
        (written once) whose network is the file's TINY_CONFIG and whose weights stay in the
        work folder."""
        if not self.tiny:  # relative to the repository (each command runs there), as results say
            return Path("baselines") / f"{model}.py"
        copy = self.work / "baselines" / f"{model}.py"
        copy.parent.mkdir(parents=True, exist_ok=True)
        text = (ROOT / "baselines" / f"{model}.py").read_text()
        copy.write_text(text + "\n\nCONFIG = TINY_CONFIG  # gpu_run.py --tiny\n")
        return copy

    def weights(self, model: str) -> Path:
        return (ROOT / self.source(model)).parent / "weights" / f"{model}.safetensors"


def build_split(c: Campaign) -> None:
    t = time.time()
    part = "mini" if c.tiny else "all"
    rc = c.cli("data", "build", "--split", part, "--device", "cpu",
               *(["--workers", str(c.args.build_workers)] if c.args.build_workers else []),
               log=c.work / "build.log")
    if rc:
        c.say(f"the split build failed (exit {rc}); see {c.work}/build.log")
        raise SystemExit(1)
    from bonesr_bench.split import SPLITS
    from bonesr_bench.split.store import default_path, verify

    report = verify(default_path(SPLITS[c.split]))
    c.record["split"] = {"path": report.path, "fingerprint": report.fingerprint, "ok": report.ok,
                         "canonical": report.canonical, "comparable": report.comparable,
                         "canonical_fingerprint": report.canonical_fingerprint}
    c.say(f"split {report.path}: fingerprint {report.fingerprint}, "
          + ("no canonical table to compare with" if report.canonical is None else
             "canonical" if report.canonical else
             "comparable" if report.comparable else "NOT comparable to the canonical split"))
    c.stage("build", t)


def training_budget(c: Campaign) -> float:
    """Seconds each training may take: the deadline less what has run and the evaluation's
    reserve, at most --budget-s."""
    left = c.args.deadline_s - (time.time() - c.t0) - c.args.reserve_s
    return max(1.0, min(c.args.budget_s, left))


def train_all(c: Campaign) -> None:
    t, budget = time.time(), training_budget(c)
    c.say(f"training {', '.join(MODELS)} at once, {budget:.0f} s each")
    procs, barrier = {}, c.work / "train" / "barrier"
    shutil.rmtree(barrier, ignore_errors=True)
    for m in MODELS:
        argv = ["train", str(c.source(m)), "--split", c.split, "--device", c.args.device,
                "--precision", c.args.precision, "--budget-s", f"{budget:.1f}", "--restart",
                "--run-dir", str(c.work / "train" / m), "--weights", str(c.weights(m)),
                "--probe-barrier", f"{barrier}:{len(MODELS)}"]
        if c.tiny:
            argv += ["--tiny", "--iterations", "100000", "--probe-iterations", "10"]
        procs[m] = c.cli(*argv, log=c.work / f"train-{m}.log", wait=False)
    pending = dict(procs)
    while pending:  # a run that dies early arrives at the barrier, so its peers go on
        for m, p in list(pending.items()):
            if p.poll() is not None:
                if p.returncode:
                    barrier.mkdir(parents=True, exist_ok=True)
                    (barrier / f"exited-{m}").touch()
                del pending[m]
        time.sleep(0.2)
    for m, p in procs.items():
        rc = p.returncode
        side = Path(str(c.weights(m)) + ".json")
        rec = json.loads(side.read_text()) if rc == 0 and side.is_file() else {}
        c.record["models"][m] = {"train_exit": rc, "fitted": rec.get("fitted"),
                                 "iterations": rec.get("iterations"),
                                 "train_seconds": rec.get("seconds"),
                                 "best_validation_l1": rec.get("best_validation_l1"),
                                 "sha256": rec.get("sha256")}
        c.say(f"{m}: exit {rc}, {rec.get('iterations')} iterations in {rec.get('seconds')} s, "
              f"validation L1 {rec.get('best_validation_l1')}")
    c.stage("train", t)


def evaluate_all(c: Campaign) -> None:
    t, procs = time.time(), {}

    def evaluate(m: str, sandbox: str, wait: bool):
        return c.cli("evaluate", str(c.source(m)), "--split", c.split, "--device",
                     c.args.device, "--out", str(c.runs), "--sandbox", sandbox, "--workers",
                     str(c.args.eval_workers), log=c.work / f"evaluate-{m}.log", wait=wait)

    for m in MODELS:
        if not c.record["models"][m]["train_exit"]:
            procs[m] = evaluate(m, "auto", wait=False)
    for m, p in procs.items():
        rc = p.wait()
        if rc == 1:  # the submission failed: once more unconfined, and say why
            c.say(f"{m}: failed in its confined worker; once more with --sandbox off")
            rc = evaluate(m, "off", wait=True)
            c.record["models"][m]["sandbox_off"] = True
        found = sorted(c.runs.glob(f"{m}*/result.json"))
        res = json.loads(found[0].read_text()) if found else {}
        summary = res.get("summary") or {}
        c.record["models"][m].update(evaluate_exit=rc, status=res.get("status"),
                                     result=str(found[0].relative_to(c.work)) if found else None,
                                     summary=summary)
        c.say(f"{m}: evaluate exit {rc}, {res.get('status')}")
    c.stage("evaluate", t)


def plan_parts(files: list[tuple[Path, int]], max_files: int = PART_FILES,
               max_bytes: int = PART_BYTES, file_bytes: int = FILE_BYTES) -> list[list[Path]]:
    """``files`` (path, bytes), in order, cut into parts of at most ``max_files`` files and
    ``max_bytes`` bytes; no file may be over ``file_bytes``."""
    parts: list[list[Path]] = [[]]
    used = 0
    for f, size in files:
        if size > min(max_bytes, file_bytes):
            raise ValueError(f"{f}: {size} bytes, more than one returned file may hold "
                             f"({min(max_bytes, file_bytes)})")
        if len(parts[-1]) == max_files or used + size > max_bytes:
            parts.append([])
            used = 0
        parts[-1].append(f)
        used += size
    return parts


def pack(c: Campaign) -> list[list[Path]]:
    """meta.tar.gz of the small files, then every file cut into parts under the return limits;
    part k's files are listed in WORK/parts.json and copied to OUT by ``collect``."""
    c.record["seconds"] = round(time.time() - c.t0, 1)
    (c.work / "campaign.json").write_text(json.dumps(c.record, indent=1, default=str) + "\n")
    meta = c.work / "meta.tar.gz"
    with tarfile.open(meta, "w:gz") as tar:
        for f in [c.log_path, c.work / "campaign.json", *c.work.glob("*.log"),
                  *c.work.glob("train/*/train.log"), *c.work.glob("train/*/fitted.json"),
                  *c.runs.glob("*/result.json"), *c.runs.glob("*/worker.log")]:
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(c.work)))
        for m in MODELS:  # the weights' sidecars (sha256, recipe, fitted length, parts)
            side = Path(str(c.weights(m)) + ".json")
            if side.is_file():
                tar.add(side, arcname=f"weights/{side.name}")
    big = [meta]
    for m in MODELS:
        w = c.weights(m)
        big += [w] if w.is_file() else sorted(w.parent.glob(f"{w.name}.part-*"))
    parts = plan_parts([(f, f.stat().st_size) for f in big])
    keep = c.work / "parts"  # outside the repository: kept while the machine stays warm
    shutil.rmtree(keep, ignore_errors=True)
    for k, part in enumerate(parts, 1):
        (keep / str(k)).mkdir(parents=True)
        parts[k - 1] = [Path(shutil.copy2(f, keep / str(k) / f.name)) for f in part]
    (c.work / "parts.json").write_text(json.dumps([[str(f) for f in p] for p in parts]) + "\n")
    c.say(f"{len(parts)} part(s) to bring back: " + "; ".join(
        f"{len(p)} files, {sum(f.stat().st_size for f in p) / 2**20:.1f} MiB" for p in parts))
    return parts


def copy_part(work: Path, k: int, out: Path) -> None:
    if not (work / "parts.json").is_file():
        raise SystemExit(f"{work}: no finished run here (no parts.json); give the run's --work, "
                         "on the machine that ran it, while it is still warm")
    parts = json.loads((work / "parts.json").read_text())
    if not 1 <= k <= len(parts):
        raise SystemExit(f"--part {k}: this run has parts 1 to {len(parts)}")
    out.mkdir(parents=True, exist_ok=True)
    for f in parts[k - 1]:
        shutil.copy2(f, out / Path(f).name)
    (out / f"part-{k}-of-{len(parts)}").write_text("")  # says which part this folder holds
    print(f"part {k} of {len(parts)}: {len(parts[k - 1])} files into {out}")


def run(args) -> int:
    ensure_installed()
    c = Campaign(args)
    c.say(f"bonesr-bench GPU run ({'tiny, ' if c.tiny else ''}device {args.device}), work "
          f"{c.work}, deadline {args.deadline_s:.0f} s")
    refs_t = time.time()
    build_split(c)
    refs = c.cli("leaderboard", "references", "--split", c.split, "--results",
                 str(c.work / "references"), "--workers", str(args.reference_workers),
                 log=c.work / "references.log", wait=False)
    train_all(c)
    c.record["stages"]["references_exit"] = refs.wait()
    c.stage("references (beside training)", refs_t)
    evaluate_all(c)
    pack(c)
    if args.out:
        copy_part(c.work, 1, Path(args.out))
    ok = all(m.get("status") == "scored" for m in c.record["models"].values())
    c.say("done: all three scored" if ok else "done, with failures (campaign.json says which)")
    return 0 if ok else 1


# ----------------------------------------------------------------------------------------------
# unpack (here)


def unpack(args) -> int:
    """Weights (parts verified against their sidecars) into baselines/weights, results into
    runs/<model>/result.json, the campaign's logs into runs/gpu-run/. Nothing is replaced
    unless every part folder of the run is given and every weight verifies."""
    import tempfile

    from bonesr_bench.models.wrapper import weights_sha256

    folders = [Path(f) for f in args.folders]
    markers = {m.name for f in folders for m in f.glob("part-*-of-*")}
    counts = {int(m.rsplit("-of-", 1)[1]) for m in markers}
    if len(counts) != 1 or len(markers) != counts.pop():
        found = ", ".join(sorted(markers)) or "no part marker"
        raise SystemExit(f"give every part folder of the run (found {found})")
    metas = [f / "meta.tar.gz" for f in folders if (f / "meta.tar.gz").is_file()]
    dest, meta_dir = Path(args.weights_dir), Path(args.runs) / "gpu-run"
    stage = Path(tempfile.mkdtemp(prefix="gpu-run-unpack-"))
    try:
        with tarfile.open(metas[0]) as tar:
            tar.extractall(stage / "meta", filter="data")
        for f in folders:
            for w in f.glob("*.safetensors*"):
                shutil.copy2(w, stage / w.name)
        bad = []
        for m in MODELS:
            side = stage / "meta" / "weights" / f"{m}.safetensors.json"
            try:
                shutil.copy2(side, stage / side.name)
                ok = weights_sha256(stage / f"{m}.safetensors") == json.loads(
                    side.read_text())["sha256"]
            except Exception as exc:  # noqa: BLE001 - a missing or damaged file: name it
                ok = False
                print(f"{m}: {exc}")
            if not ok:
                bad.append(m)
        if bad:
            raise SystemExit(f"weights that do not verify: {', '.join(bad)}; nothing replaced")
        for m in MODELS:
            for old in dest.glob(f"{m}.safetensors*"):  # the whole file or earlier parts
                old.unlink()
            for w in stage.glob(f"{m}.safetensors*"):
                shutil.copy2(w, dest / w.name)
        shutil.rmtree(meta_dir, ignore_errors=True)
        shutil.copytree(stage / "meta", meta_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for res in (meta_dir / "runs").glob("*/result.json"):
        target = Path(args.runs) / res.parent.name / "result.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(res, target)
        print(f"{target}: bonesr-bench leaderboard add {target}")
    print(f"weights of {', '.join(MODELS)} verified in {dest}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="download the wheels the GPU machine lacks into .whl/")
    r = sub.add_parser("run", help="build, train, evaluate, pack (part 1 into --out)")
    r.add_argument("--out", help="where part 1 goes ($OUT on the GPU machine)")
    r.add_argument("--work", default="/tmp/bonesr-gpu-run", help="the run's own folder")
    r.add_argument("--tiny", action="store_true", help="CPU rehearsal: mini split, tiny nets")
    r.add_argument("--device", default="cuda")
    r.add_argument("--precision", default="bf16")
    r.add_argument("--deadline-s", type=float, default=530.0,
                   help="the whole run's wall time; the training budget is what it leaves")
    r.add_argument("--reserve-s", type=float, default=120.0,
                   help="seconds kept for evaluating and packing after training")
    r.add_argument("--budget-s", type=float, default=240.0, help="at most this per training")
    r.add_argument("--build-workers", type=int, default=None)
    r.add_argument("--reference-workers", type=int, default=6)
    r.add_argument("--eval-workers", type=int, default=4)
    g = sub.add_parser("collect", help="copy part K of a finished run into --out")
    g.add_argument("--part", type=int, required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--work", default="/tmp/bonesr-gpu-run")
    u = sub.add_parser("unpack", help="verify and place the returned parts here")
    u.add_argument("folders", nargs="+")
    u.add_argument("--weights-dir", default=str(ROOT / "baselines" / "weights"))
    u.add_argument("--runs", default=str(ROOT / "runs"))
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        return prepare(args)
    if args.cmd == "run":
        return run(args)
    if args.cmd == "collect":
        copy_part(Path(args.work), args.part, Path(args.out))
        return 0
    return unpack(args)


if __name__ == "__main__":
    sys.exit(main())
