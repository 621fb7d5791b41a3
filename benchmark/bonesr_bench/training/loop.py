"""The training run: options, checkpoints (resumable, interrupts deferred to the end of an
iteration), validation, and the steps of :func:`train`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bonesr_bench.files import write_atomic
from bonesr_bench.models.wrapper import PART_BYTES, part_files, split_weights
from bonesr_bench.training.data import load_volumes, sample_hr, sample_pairs
from bonesr_bench.training.recipe import Progress, Recipe, SupervisedTask, TrainingError, _noop
from bonesr_bench.training.weights import save_weights

#: how long a run waits at --probe-barrier for its peers
BARRIER_TIMEOUT_S = 300.0


def _channels_last(net: torch.nn.Module) -> None:
    """Lay out ``net``'s 4D parameters channels-last (2D convolutions), its 5D ones
    channels-last-3D; in place, so that optimisers keep their parameters."""
    for p in net.parameters():
        if p.dim() in (4, 5):
            fmt = torch.channels_last if p.dim() == 4 else torch.channels_last_3d
            p.data = p.data.contiguous(memory_format=fmt)


class _Clock:
    """Wall time of work on ``device`` (CUDA work is waited for at each reading)."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        self.t0 = self._now()

    def stop(self) -> float:
        return self._now() - self.t0


@dataclass
class TrainOptions:
    split: str | Path | None = None  # a split name or a store path (default v2, in the cache)
    run_dir: Path | None = None  # default runs/train/<name>[-tiny]
    weights: Path | None = None  # default: the file's WEIGHTS (tiny runs: <run_dir>/weights)
    device: str = "auto"
    iterations: int | None = None  # override the recipe's
    tiny: bool = False
    restart: bool = False
    #: a name in the file's VARIANTS (recipe overrides, e.g. an ablation): its run folder is
    #: runs/train/<name>-<variant> and its weights <WEIGHTS stem's folder>/<name>-<variant>
    variant: str | None = None
    #: fit the number of iterations to this many seconds of training: time ``probe``
    #: iterations of a throw-away copy of the networks first, then train
    #: min(recipe, budget / measured cost) iterations from scratch (recorded in the sidecar's
    #: ``fitted``; a resumed run keeps the length it was given)
    budget_s: float | None = None
    probe: int = 100
    #: "DIR:N": runs sharing one device wait for each other (a file each in DIR) before timing
    #: their probes, so that each measures the load it will train under
    barrier: str | None = None
    #: float32, or bf16 (autocast of each step to bfloat16 where it pays; weights, optimiser
    #: state and validation stay float32)
    precision: str = "float32"
    #: networks (and so activations) in channels-last memory layout; None: on CUDA only
    channels_last: bool | None = None


@dataclass
class TrainOutcome:
    name: str
    weights: Path
    sha256: str
    record: dict
    run_dir: Path
    resumed_from: int = 0
    history: list[dict] = field(default_factory=list)


def _spec(source: str):
    """(module, name, recipe, config, tiny config, network factory, task factory, weights)."""
    from bonesr_bench.models import SubmissionError, _load_file, entry_name, is_file_source

    if not is_file_source(source):
        raise TrainingError(f"{source}: give the submission's .py file to train it")
    try:
        module = _load_file(Path(source))
    except SubmissionError as exc:
        raise TrainingError(str(exc)) from exc
    recipe = getattr(module, "RECIPE", None)
    build = getattr(module, "network", None)
    if not isinstance(recipe, Recipe) or not callable(build):
        raise TrainingError(f"{source}: declares no training recipe; a trainable submission "
                            "defines RECIPE = bonesr_bench.training.Recipe(...) and "
                            "network(config=None) (see submissions/README.md)")
    name = entry_name(source)
    return (module, name, recipe, getattr(module, "CONFIG", None),
            getattr(module, "TINY_CONFIG", None), build, getattr(module, "task", None),
            getattr(module, "WEIGHTS", None))


def _save_checkpoint(path: Path, task, it: int, best: float, key: str, rng, history) -> None:
    state = {
        "iteration": it, "best": best, "key": key,
        "networks": {k: m.state_dict() for k, m in task.networks.items()},
        "optimisers": {k: o.state_dict() for k, o in task.optimisers.items()},
        "schedulers": {k: s.state_dict() for k, s in task.schedulers.items()},
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "history": json.dumps(history),
    }
    write_atomic(path, lambda f: torch.save(state, f))


def _load_checkpoint(path: Path, task, key: str, rng, device) -> tuple[int, float, list]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint: say so in one line
        raise TrainingError(f"{path}: checkpoint unreadable ({type(exc).__name__}); delete it or "
                            "pass --restart") from exc
    if state.get("key") != key:
        raise TrainingError(f"{path}: checkpoint of another recipe or network configuration; "
                            "pass --restart to start over (or --run-dir elsewhere)")
    for k, m in task.networks.items():
        m.load_state_dict(state["networks"][k])
    for k, o in task.optimisers.items():
        o.load_state_dict(state["optimisers"][k])
    for k, s in task.schedulers.items():
        s.load_state_dict(state["schedulers"][k])
    torch.set_rng_state(state["torch_rng"].cpu())
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    return int(state["iteration"]), float(state["best"]), json.loads(state["history"])


@contextmanager
def _deferred_interrupt():
    """Ctrl-C during training is held until the current iteration is complete (so the
    checkpoint written then resumes exactly); a second Ctrl-C stops at once. Yields a function
    telling whether an interrupt is pending."""
    pending = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pending)
    finally:
        signal.signal(signal.SIGINT, old)


def variant_weights(weights: str | Path, name: str, variant: str) -> Path:
    """Where variant ``variant`` of the entry ``name`` keeps its weights: beside the file's
    ``WEIGHTS``, as ``<name>-<variant><suffix>``."""
    weights = Path(weights)
    return weights.parent / f"{name}-{variant}{weights.suffix or '.safetensors'}"


def _variant(module, variant: str, recipe: Recipe, name: str, weights):
    """(recipe, entry name, weights path) of the file's ``VARIANTS[variant]``: a dict of recipe
    fields that replace the base recipe's."""
    from bonesr_bench.names import check_name

    variants = getattr(module, "VARIANTS", None) or {}
    if variant not in variants:
        have = ", ".join(variants) if variants else "none (it defines no VARIANTS dict)"
        raise TrainingError(f"--variant {variant!r}: the file's variants are {have}")
    try:
        check_name(variant, what="--variant")
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    try:
        recipe = replace(recipe, **variants[variant])
    except TypeError as exc:
        raise TrainingError(f"VARIANTS[{variant!r}]: {exc}; its keys must be Recipe fields"
                            ) from None
    return (recipe, f"{name}-{variant}",
            None if weights is None else variant_weights(weights, name, variant))


class _Validation:
    """Fixed validation batches from the held-out specimens; mean L1 of the clamped SR."""

    def __init__(self, task, vols, recipe: Recipe, device, n_batches: int = 4):
        rng = np.random.default_rng(12345)
        gen = torch.Generator().manual_seed(12345)
        n = max(2, min(32, recipe.batch_size * 2))
        self.batches = []
        for _ in range(n_batches):
            if recipe.data == "hr":
                hr = sample_hr(vols, rng, n, recipe.patch * recipe.scale)
                lr, _aux = task.degrade(hr, gen)
            else:
                lr, hr = sample_pairs(vols, rng, n, recipe.patch, recipe.scale)
            self.batches.append((lr, hr))
        self.task, self.device = task, device

    def __call__(self) -> float:
        nets = self.task.networks.values()
        modes = [m.training for m in nets]
        for m in nets:
            m.eval()
        try:
            with torch.no_grad():
                losses = [F.l1_loss(self.task.predict(lr.to(self.device)).clamp(0, 1),
                                    hr.to(self.device)).item() for lr, hr in self.batches]
        finally:
            for m, mode in zip(nets, modes, strict=True):
                m.train(mode)
        return float(np.mean(losses))


class _Training:
    """One training run's state; each step of :func:`train` is one method."""

    def __init__(self, source: str, o: TrainOptions, progress: Progress, log):
        from bonesr_bench.morphometry.torch_backend import resolve_device

        self.source, self.o, self.progress, self.log = source, o, progress, log
        (module, self.name, recipe, config, tiny_config, self.build, self.make_task,
         weights) = _spec(source)
        if o.variant is not None:
            recipe, self.name, weights = _variant(module, o.variant, recipe, self.name, weights)
        if o.tiny:
            recipe, config = recipe.tiny(), tiny_config if tiny_config is not None else config
        if o.iterations is not None:
            if o.iterations < 1:
                raise TrainingError("--iterations must be at least 1")
            recipe = replace(recipe, iterations=o.iterations)
        if o.budget_s is not None and (o.budget_s <= 0 or o.probe < 1):
            raise TrainingError("--budget-s must be > 0 seconds (and the probe >= 1 iteration)")
        if o.precision not in ("float32", "bf16"):
            raise TrainingError(f"--precision {o.precision!r}: use float32 or bf16")
        self.recipe, self.config = recipe, config
        self.fitted = None
        try:
            self.device = resolve_device(o.device).type  # the device rule evaluate uses
        except (ValueError, RuntimeError) as exc:
            raise TrainingError(str(exc)) from None
        if o.precision == "bf16" and self.device == "cuda" and \
                not torch.cuda.is_bf16_supported():
            raise TrainingError("--precision bf16: this GPU has no bfloat16; use float32")
        self.channels_last = (self.device == "cuda" if o.channels_last is None
                              else bool(o.channels_last))
        self.run_dir = Path(o.run_dir or Path("runs") / "train" /
                            (self.name + ("-tiny" if o.tiny else "")))
        if o.weights is not None:
            weights = Path(o.weights)
        elif o.tiny or weights is None:
            weights = self.run_dir / f"{self.name}.safetensors"
        self.weights = Path(weights)

    def open_split(self) -> None:
        from bonesr_bench.split import SplitError, require_ok, resolve, verify

        try:
            self.split_path, report = resolve(self.o.split, "train")
            self.report = require_ok(report or verify(self.split_path))
        except SplitError as exc:
            raise TrainingError(str(exc)) from exc

    def load_data(self) -> None:
        """The train and validation volumes."""
        recipe = self.recipe
        vols = load_volumes(self.split_path, hr_only=recipe.data == "hr", scale=recipe.scale,
                            progress=self.progress)
        n_val = min(recipe.n_validation, len(vols) - 1)
        if n_val < 1:
            raise TrainingError(f"{self.split_path}: {len(vols)} train specimen(s); training "
                                "needs at least two (one held out for validation)")
        self.train_vols, self.val_vols = vols[:-n_val], vols[-n_val:]

    def _new_task(self, recipe: Recipe):
        """The networks, seeded by the recipe, on the device (channels-last if asked), and
        their task."""
        torch.manual_seed(recipe.seed)
        net = self.build(self.config).to(self.device)
        task = (self.make_task(net, recipe, self.device) if callable(self.make_task)
                else SupervisedTask(net, recipe, self.device))
        if self.channels_last:  # the generator and any network the task made (a discriminator)
            for m in task.networks.values():
                _channels_last(m)
        if recipe.data == "hr" and not hasattr(task, "degrade"):
            raise TrainingError(f"{self.source}: RECIPE.data='hr' needs a task with "
                                "degrade(hr, gen)")
        return task

    def fit_length(self) -> None:
        """With a time budget: the number of iterations that fit it, measured on a throw-away
        copy of the task (``probe`` iterations after 3 of warm-up, one validation, one
        checkpoint), or read back from the run folder when resuming."""
        o, recipe = self.o, self.recipe
        if o.budget_s is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        saved = self.run_dir / "fitted.json"
        resuming = not o.restart and (self.run_dir / "checkpoint.pt").is_file()
        if resuming and not saved.is_file():
            raise TrainingError(f"{self.run_dir}: its checkpoint was not trained to a budget; "
                                "resume it without --budget-s, or pass --restart")
        if resuming:
            self.fitted = json.loads(saved.read_text())
            if self.fitted["budget_s"] != o.budget_s or self.fitted["precision"] != o.precision:
                raise TrainingError(
                    f"{self.run_dir}: fitted to {self.fitted['budget_s']:g} s in "
                    f"{self.fitted['precision']}; resume with --budget-s "
                    f"{self.fitted['budget_s']:g} --precision {self.fitted['precision']}, or "
                    "pass --restart")
            self._arrive()  # no probe to time, but peers waiting at the barrier count this run
        else:
            self.fitted = self._probe(o.budget_s, o.probe)
            write_atomic(saved, json.dumps(self.fitted, indent=1) + "\n")
        self.recipe = replace(recipe, iterations=self.fitted["iterations"])

    def _probe(self, budget_s: float, n: int) -> dict:
        recipe = self.recipe
        task = self._new_task(recipe)
        rng, gen = np.random.default_rng(recipe.seed + 7), torch.Generator()
        for m in task.networks.values():
            m.train()
        clock = _Clock(self.device)
        self._wait_for_peers()
        for it in range(1, 4 + n):
            if it == 4:
                clock.start()
            lr, hr, aux = self._batch(task, rng, it, gen)
            with self._autocast():
                task.step(lr.to(self.device), hr.to(self.device), aux)
        step_s = clock.stop() / n
        clock.start()
        _Validation(task, self.val_vols, recipe, self.device)()
        validate_s = clock.stop()
        clock.start()
        _save_checkpoint(self.run_dir / "probe.pt", task, 0, math.inf, "probe", rng, [])
        checkpoint_s = clock.stop()
        (self.run_dir / "probe.pt").unlink(missing_ok=True)
        del task
        if self.device == "cuda":
            torch.cuda.empty_cache()
        per_it = (step_s + validate_s / recipe.validate_every
                  + checkpoint_s / recipe.checkpoint_every)
        fit = int(budget_s / per_it)
        iterations = max(1, min(recipe.iterations, fit))
        return {"budget_s": budget_s, "probe_iterations": n, "step_s": step_s,
                "validation_s": validate_s, "checkpoint_s": checkpoint_s,
                "patches_per_s": recipe.batch_size / step_s, "fits": fit,
                "recipe_iterations": recipe.iterations, "iterations": iterations,
                "precision": self.o.precision, "channels_last": self.channels_last,
                "device": self.device}

    def _barrier(self) -> tuple[Path, int] | None:
        if not self.o.barrier:
            return None
        folder, _, n = self.o.barrier.rpartition(":")
        if not folder or not n.isdigit() or int(n) < 1:
            raise TrainingError(f"--probe-barrier {self.o.barrier!r}: give DIR:N (N runs)")
        return Path(folder), int(n)

    def _arrive(self) -> tuple[Path, int] | None:
        """This run's file in the barrier's folder (a run that fails before its probe, or
        skips it, should arrive too: the caller of the runs may do it for one that died)."""
        barrier = self._barrier()
        if barrier is not None:
            barrier[0].mkdir(parents=True, exist_ok=True)
            (barrier[0] / f"{self.name}.{os.getpid()}").touch()
        return barrier

    def _wait_for_peers(self) -> None:
        """Wait until N runs have arrived (files in DIR; an empty DIR starts a new round)."""
        barrier = self._arrive()
        if barrier is None:
            return
        folder, n = barrier
        t0 = time.time()
        while len(list(folder.iterdir())) < n:
            if time.time() - t0 > BARRIER_TIMEOUT_S:
                raise TrainingError(f"--probe-barrier: {n} runs never met in {folder} within "
                                    f"{BARRIER_TIMEOUT_S:.0f} s; start them together (in an "
                                    "empty DIR) or drop it")
            time.sleep(0.05)

    def _autocast(self):
        if self.o.precision == "bf16":
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def build_task(self) -> None:
        """The networks and their task (after the length is fitted: the schedules follow the
        number of iterations), the validation batches."""
        recipe = self.recipe
        self.rng = np.random.default_rng(recipe.seed)
        self.task = self._new_task(recipe)
        self.validate = _Validation(self.task, self.val_vols, recipe, self.device)
        self.generator = self.task.networks.get("generator",
                                                next(iter(self.task.networks.values())))
        if getattr(self.task, "morphometry_weights", None) and \
                getattr(self.task, "bone_threshold", 0.0) is None:
            from skimage.filters import threshold_otsu

            # the Otsu level of the train HR slices (every 97th voxel): the soft maps' threshold
            sample = torch.cat([v.hr.flatten()[::97] for v in self.train_vols]).numpy()
            self.task.bone_threshold = float(threshold_otsu(sample, nbins=256))

    def resume(self) -> None:
        """The checkpoint of an earlier run of this recipe (unless --restart), the log."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.run_dir / "checkpoint.pt"
        self.best_path = self.run_dir / "best.safetensors"
        self.key = self.recipe.key(self.config)
        self.start, self.best, self.history = 0, math.inf, []
        if self.ckpt.exists() and not self.o.restart:
            self.start, self.best, self.history = _load_checkpoint(
                self.ckpt, self.task, self.key, self.rng, self.device)
        self.log_file = (self.run_dir / "train.log").open("a" if self.start else "w")
        self.say(f"{'resuming' if self.start else 'training'} {self.name} from {self.source} at "
                 f"iteration {self.start}/{self.recipe.iterations}: split {self.split_path} "
                 f"({len(self.train_vols)} train, {len(self.val_vols)} validation specimens: "
                 f"{', '.join(v.name for v in self.val_vols)}), device {self.device}, recipe "
                 f"{json.dumps(self.recipe.as_dict(), default=str)}")
        if self.fitted:
            f = self.fitted
            self.say(f"length fitted to {f['budget_s']:g} s of {f['device']} time "
                     f"({f['precision']}{', channels-last' if f['channels_last'] else ''}): "
                     f"{f['step_s'] * 1e3:.1f} ms per iteration over {f['probe_iterations']} "
                     f"probe iterations ({f['patches_per_s']:.0f} patches/s), validation "
                     f"{f['validation_s']:.1f} s, checkpoint {f['checkpoint_s']:.1f} s: "
                     f"{f['iterations']} iterations (the recipe has {f['recipe_iterations']})")
        if getattr(self.task, "morphometry_weights", None):
            self.say(f"morphometry terms {self.task.morphometry_weights} on soft bone maps at "
                     f"threshold {self.task.bone_threshold:.4f} (of the [0, 1] window), tau "
                     f"{self.task.bone_tau:g}")

    def say(self, line: str) -> None:
        self.log_file.write(line + "\n")
        self.log_file.flush()
        self.log(line)

    def _batch(self, task, rng, it: int, gen: torch.Generator):
        """(LR, HR, aux) of iteration ``it``, drawn with ``rng``."""
        recipe = self.recipe
        if recipe.data == "hr":
            hr = sample_hr(self.train_vols, rng, recipe.batch_size, recipe.patch * recipe.scale)
            lr, aux = task.degrade(hr, gen.manual_seed(recipe.seed * 1_000_003 + it))
            return lr, hr, aux
        lr, hr = sample_pairs(self.train_vols, rng, recipe.batch_size, recipe.patch,
                              recipe.scale, recipe.stack)
        return lr, hr, None

    def loop(self) -> None:
        """The iterations left: a step, validation and the best weights, checkpoints; an
        interrupt (Ctrl-C, SIGTERM) is deferred to the end of the iteration, then saved."""
        recipe, gen = self.recipe, torch.Generator()
        self.t0 = time.time()
        for m in self.task.networks.values():
            m.train()
        with _deferred_interrupt() as stop:
            for it in range(self.start + 1, recipe.iterations + 1):
                lr, hr, aux = self._batch(self.task, self.rng, it, gen)
                with self._autocast():
                    losses = self.task.step(lr.to(self.device), hr.to(self.device), aux)
                if not all(math.isfinite(v) for v in losses.values()):
                    self.log_file.close()
                    raise TrainingError(f"iteration {it}: loss is not finite ({losses}); lower "
                                        "the learning rate in the recipe and pass --restart")
                if it % recipe.validate_every == 0 or it == recipe.iterations:
                    self._validate(it, losses)
                if it % recipe.checkpoint_every == 0 or it == recipe.iterations or stop():
                    _save_checkpoint(self.ckpt, self.task, it, self.best, self.key, self.rng,
                                     self.history)
                self.progress("train", it, recipe.iterations,
                              ", ".join(f"{k} {x:.4f}" for k, x in losses.items()))
                if stop():
                    self.say(f"interrupted after iteration {it}; checkpoint saved, run the same "
                             "command again to resume")
                    self.log_file.close()
                    raise KeyboardInterrupt

    def _validate(self, it: int, losses: dict) -> None:
        v = self.validate()
        if v < self.best or self.recipe.keep == "last":
            self.best = min(self.best, v)
            save_weights(self.generator, self.best_path, self.recipe.weights_dtype)
        took = time.time() - self.t0
        self.history.append({"iteration": it, **losses, "validation_l1": v,
                             "seconds": round(took, 1)})
        self.say(f"iteration {it}: " + ", ".join(f"{k} {x:.5f}" for k, x in losses.items())
                 + f", validation L1 {v:.5f} (best {self.best:.5f}), {took:.0f} s")

    def finish(self) -> TrainOutcome:
        """The kept weights written to WEIGHTS with their sidecar (both atomically)."""
        recipe, weights = self.recipe, self.weights
        if not self.best_path.exists():  # resumed a finished run with nothing left to do
            save_weights(self.generator, self.best_path, recipe.weights_dtype)
        write_atomic(weights, self.best_path.read_bytes())
        sha = hashlib.sha256(weights.read_bytes()).hexdigest()
        parts = (split_weights(weights, PART_BYTES) if weights.stat().st_size > PART_BYTES
                 else None)
        record = {
            "name": self.name, "source": str(self.source), "variant": self.o.variant,
            "weights": weights.name,
            "sha256": sha, "dtype": recipe.weights_dtype, "recipe": recipe.as_dict(),
            "config": self.config,
            "n_parameters": sum(p.numel() for p in self.generator.parameters()),
            "split": {"path": str(self.split_path), "fingerprint": self.report.fingerprint,
                      "train": [v.name for v in self.train_vols],
                      "validation": [v.name for v in self.val_vols]},
            "best_validation_l1": self.best, "iterations": recipe.iterations,
            "device": self.device, "torch": torch.__version__,
            "seconds": round(time.time() - self.t0, 1), "resumed_from": self.start,
            "precision": self.o.precision, "channels_last": self.channels_last,
            "fitted": self.fitted, "history": self.history,
        }
        if parts:
            record["parts"] = parts
        write_atomic(Path(str(weights) + ".json"),
                     json.dumps(record, indent=1, default=str) + "\n")
        if parts:  # the sidecar now says how to reassemble it
            weights.unlink()
        else:
            for stale in part_files(weights):
                stale.unlink()
        self.say(f"weights: {weights} (sha256 {sha[:16]}..., best validation L1 "
                 f"{self.best:.5f})")
        self.log_file.close()
        return TrainOutcome(self.name, weights, sha, record, self.run_dir, self.start,
                            self.history)


def train(source: str, options: TrainOptions | None = None, progress: Progress = _noop,
          log: Callable[[str], None] = _noop) -> TrainOutcome:
    """Train the submission file ``source`` by its recipe; see the package docstring. Steps:
    read the file and options, open the train split, build the networks and the data, resume
    from a checkpoint, iterate, write the weights."""
    run = _Training(source, options or TrainOptions(), progress, log)
    run.open_split()
    run.load_data()
    run.fit_length()
    run.build_task()
    run.resume()
    run.loop()
    return run.finish()
