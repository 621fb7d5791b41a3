"""Training a submission on the train split, by the recipe its file declares (`bonesr-bench train`).

A trainable submission file declares, beside ``load(device)``:

``RECIPE``
    a :class:`Recipe` (loss, optimiser, learning rate and schedule, patch size, batch size,
    iterations, seed, data mode, weight precision);
``network(config=None)``
    the network, built from ``CONFIG`` (its full configuration) or ``TINY_CONFIG`` (a tiny one
    for smoke runs, ``--tiny``);
``WEIGHTS``
    where the trained weights go (a ``.safetensors`` file);
``task(net, recipe, device)`` (optional)
    a :class:`Task` for anything but plain supervised training (GAN, kernel estimation, ...).

Data are built as the harness presents them at evaluation: the split's fixed intensity window
(read from the split, as evaluate does) mapped to [0, 1], each LR volume interpolated linearly
along z to the HR slice positions (DESIGN §2), random in-plane LR patches paired with their
``scale``-times larger HR patches. Only the
train subset is read; its last ``recipe.n_validation`` specimens are held out for validation, the
test subset is never opened. A recipe with ``data="hr"`` sees HR patches only and makes its own
LR from them (``Task.degrade``), as blind methods are trained.

A run folder (default ``runs/train/<name>``) holds ``checkpoint.pt`` (every network, optimiser,
scheduler and random state; written atomically, read back with ``torch.load(weights_only=True)``,
which never unpickles arbitrary objects), ``train.log`` and ``best.safetensors``. Running the same
command again resumes from the checkpoint; a checkpoint of another recipe is refused. At the end
the kept weights (best validation L1, or the last for ``keep="last"``) are written to ``WEIGHTS``
as safetensors in ``recipe.weights_dtype``, with a sidecar ``<weights>.json`` recording their
sha256, the recipe, the split's fingerprint and the training figures.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Recipe", "Task", "SupervisedTask", "TrainingError", "TrainOptions", "TrainOutcome",
           "Volume", "load_volumes", "sample_pairs", "sample_hr", "make_optimiser",
           "make_scheduler", "save_weights", "load_weights", "weights_record", "train"]

#: Progress callback: (stage, done, total, info). Stages: data, train.
Progress = Callable[[str, float, float, str], None]


def _noop(*_args) -> None:
    return None


class TrainingError(RuntimeError):
    """A usage or data error: one line naming the problem and the fix."""


@dataclass(frozen=True)
class Recipe:
    """How a submission is trained. Patch sizes are LR pixels (the HR patch is ``scale`` times
    larger); learning-rate milestones are fractions of ``iterations``."""

    iterations: int
    loss: str = "l1"  # l1 | mse (SupervisedTask); a custom task may ignore it
    optimiser: str = "adam"  # adam | adamw
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "step"  # step (x gamma at each milestone) | cosine | constant
    milestones: tuple[float, ...] = (0.5,)
    gamma: float = 0.5
    batch_size: int = 16
    patch: int = 48  # LR pixels
    scale: int = 2
    seed: int = 0
    data: str = "pairs"  # pairs (LR, HR) | hr (HR only; the task degrades it)
    n_validation: int = 2  # held-out train specimens
    validate_every: int = 500
    checkpoint_every: int = 500
    keep: str = "best"  # best (validation L1) | last
    weights_dtype: str = "float32"  # float32 | float16
    notes: str = ""

    def __post_init__(self):
        checks = {"loss": ("l1", "mse"), "optimiser": ("adam", "adamw"),
                  "schedule": ("step", "cosine", "constant"), "data": ("pairs", "hr"),
                  "keep": ("best", "last"), "weights_dtype": ("float32", "float16")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise TrainingError(f"Recipe.{name}={getattr(self, name)!r}: use one of "
                                    f"{', '.join(allowed)}")
        if self.iterations < 1 or self.batch_size < 1 or self.patch < 4:
            raise TrainingError("Recipe: iterations and batch_size must be >= 1, patch >= 4 "
                                "LR pixels")

    def tiny(self) -> Recipe:
        """A few iterations on small patches: a smoke run of the whole loop (``--tiny``)."""
        return replace(self, iterations=4, batch_size=2, patch=min(self.patch, 16),
                       validate_every=2, checkpoint_every=2)

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self, config: dict | None) -> str:
        """What a checkpoint must match to be resumed: the recipe and the network config (not
        the number of iterations: a finished run can be extended)."""
        recipe = {k: v for k, v in self.as_dict().items() if k != "iterations"}
        blob = json.dumps({"recipe": recipe, "config": config}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Task(Protocol):
    """What the training loop drives. ``networks["generator"]`` (or the only network) is the one
    saved as the submission's weights; the others (a discriminator) live in checkpoints only."""

    networks: dict[str, nn.Module]
    optimisers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]

    def step(self, lr: torch.Tensor, hr: torch.Tensor, aux) -> dict[str, float]:
        """One optimisation step on a batch; returns the losses to log."""

    def predict(self, lr: torch.Tensor) -> torch.Tensor:
        """SR of an LR batch (B, 1, h, w) -> (B, 1, s*h, s*w), for validation."""


def make_optimiser(params, recipe: Recipe, learning_rate: float | None = None):
    lr = recipe.learning_rate if learning_rate is None else learning_rate
    cls = torch.optim.AdamW if recipe.optimiser == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(recipe.betas), weight_decay=recipe.weight_decay)


def make_scheduler(optimiser, recipe: Recipe):
    n = recipe.iterations
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, n)
    if recipe.schedule == "step":
        steps = sorted({max(1, int(round(m * n))) for m in recipe.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimiser, steps, gamma=recipe.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)


class SupervisedTask:
    """Plain supervised training: ``recipe.loss`` between ``net(lr)`` and HR, one optimiser."""

    def __init__(self, net: nn.Module, recipe: Recipe, device="cpu", param_groups=None):
        self.net = net
        self.loss = F.l1_loss if recipe.loss == "l1" else F.mse_loss
        opt = make_optimiser(param_groups if param_groups is not None else net.parameters(),
                             recipe)
        self.networks = {"generator": net}
        self.optimisers = {"generator": opt}
        self.schedulers = {"generator": make_scheduler(opt, recipe)}

    def step(self, lr, hr, aux=None) -> dict[str, float]:
        loss = self.loss(self.net(lr), hr)
        opt = self.optimisers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.schedulers["generator"].step()
        return {"loss": float(loss.detach())}

    def predict(self, lr):
        return self.net(lr)


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class Volume:
    """One train specimen in [0, 1]: ``lr`` interpolated along z to the HR slices (None in
    HR-only mode), ``hr``; both (z, y, x) float32 tensors."""

    name: str
    lr: torch.Tensor | None
    hr: torch.Tensor


def load_volumes(path: str | Path, *, hr_only: bool = False, scale: int = 2,
                 progress: Progress = _noop) -> list[Volume]:
    """The train subset of the split at ``path`` as :class:`Volume` s (the test subset is never
    read)."""
    from .segmentation import normalise
    from .split import iter_specimens

    root_names, window = _train_split(path)
    out = []
    for i, sp in enumerate(iter_specimens(path, "train")):
        hr = torch.from_numpy(normalise(sp.hr, window))
        lr = None
        if not hr_only:
            lr = torch.from_numpy(normalise(sp.lr, window))
            lr = F.interpolate(lr[None, None], size=(hr.shape[0], *lr.shape[1:]),
                               mode="trilinear", align_corners=False)[0, 0]
            if tuple(lr.shape[1:]) != (hr.shape[1] // scale, hr.shape[2] // scale):
                raise TrainingError(f"{path}: specimen {sp.name} is not a x{scale} pair "
                                    f"(LR {tuple(lr.shape)} vs HR {tuple(hr.shape)}); "
                                    "train on a split of this scale")
        out.append(Volume(sp.name, lr, hr))
        progress("data", i + 1, len(root_names), sp.name)
    return out


def _train_split(path) -> tuple[list[str], tuple[float, float]]:
    """(train specimen names, the split's intensity window in 1/cm: what evaluate maps to
    [0, 1])."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    if "train" not in root:
        raise TrainingError(f"{path}: the split has no train subset; build it with "
                            f"`bonesr-bench data build --part train --out {path}`")
    window = tuple(root.attrs["bonesr"]["segmentation"]["window"])
    return sorted(root["train"].group_keys()), window


def _draw(vols: list[Volume], rng: np.random.Generator, size: int, grid: str):
    """A random specimen, slice and square corner of side ``size`` on its ``grid`` ("lr" or
    "hr") plane, the side clamped to the plane: (volume, z, y, x, side)."""
    v = vols[int(rng.integers(len(vols)))]
    plane = getattr(v, grid)
    s = min(size, plane.shape[1], plane.shape[2])
    z = int(rng.integers(v.hr.shape[0]))
    y = int(rng.integers(0, plane.shape[1] - s + 1))
    x = int(rng.integers(0, plane.shape[2] - s + 1))
    return v, z, y, x, s


def sample_pairs(vols: list[Volume], rng: np.random.Generator, n: int, patch: int,
                 scale: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (LR patch, HR patch) pairs, (n, 1, p, p) and (n, 1, s*p, s*p)."""
    lrs, hrs = [], []
    for _ in range(n):
        v, z, y, x, p = _draw(vols, rng, patch, "lr")
        lrs.append(v.lr[z, y:y + p, x:x + p])
        hrs.append(v.hr[z, scale * y:scale * (y + p), scale * x:scale * (x + p)])
    return torch.stack(lrs)[:, None], torch.stack(hrs)[:, None]


def sample_hr(vols: list[Volume], rng: np.random.Generator, n: int, size: int) -> torch.Tensor:
    """``n`` random HR patches, (n, 1, size, size)."""
    out = []
    for _ in range(n):
        v, z, y, x, s = _draw(vols, rng, size, "hr")
        out.append(v.hr[z, y:y + s, x:x + s])
    return torch.stack(out)[:, None]


# ----------------------------------------------------------------------------------------------
# Weights


def save_weights(net: nn.Module, path: str | Path, dtype: str = "float32",
                 metadata: dict | None = None) -> str:
    """Write ``net``'s state as safetensors (atomically) in ``dtype``; returns its sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cast = torch.float16 if dtype == "float16" else torch.float32
    state = {k: (t.detach().to("cpu", cast) if t.is_floating_point() else t.detach().cpu())
             .contiguous() for k, t in net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_weights(net: nn.Module, path: str | Path, *, train_hint: str = "") -> nn.Module:
    """Load safetensors weights into ``net`` (cast to its dtype; never unpickles anything)."""
    from safetensors.torch import load_file

    from .models import SubmissionError

    path = Path(path)
    if not path.is_file():
        hint = f"; train them with `{train_hint}`" if train_hint else ""
        raise SubmissionError(f"{path}: weights file missing{hint}")
    state = load_file(str(path))
    own = net.state_dict()
    state = {k: t.to(own[k].dtype) if k in own and t.is_floating_point() else t
             for k, t in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SubmissionError(f"{path}: weights do not fit the network ({first}); retrain them "
                              f"or restore the file{'' if not train_hint else ': ' + train_hint}"
                              ) from exc
    return net


def weights_record(path: str | Path) -> dict | None:
    """The sidecar ``<weights>.json`` written at the end of training (None if absent)."""
    side = Path(str(path) + ".json")
    return json.loads(side.read_text()) if side.is_file() else None


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainOptions:
    split: str | Path | None = None  # a split name or a store path (default v2, in the cache)
    run_dir: Path | None = None  # default runs/train/<name>[-tiny]
    weights: Path | None = None  # default: the file's WEIGHTS (tiny runs: <run_dir>/weights)
    device: str = "auto"
    iterations: int | None = None  # override the recipe's
    tiny: bool = False
    restart: bool = False


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
    from .models import SubmissionError, _load_file, entry_name, is_file_source

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
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


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


def train(source: str, options: TrainOptions | None = None, progress: Progress = _noop,
          log: Callable[[str], None] = _noop) -> TrainOutcome:
    """Train the submission file ``source`` by its recipe; see the module docstring."""
    from .evaluate import EvaluationError, resolve_split
    from .morphometry.torch_backend import resolve_device
    from .split import SplitError, require_ok, verify

    o = options or TrainOptions()
    module, name, recipe, config, tiny_config, build, make_task, weights = _spec(source)
    if o.tiny:
        recipe, config = recipe.tiny(), tiny_config if tiny_config is not None else config
    if o.iterations is not None:
        if o.iterations < 1:
            raise TrainingError("--iterations must be at least 1")
        recipe = replace(recipe, iterations=o.iterations)
    try:
        device = resolve_device(o.device).type  # the device rule evaluate uses
    except (ValueError, RuntimeError) as exc:
        raise TrainingError(str(exc)) from None
    run_dir = Path(o.run_dir or Path("runs") / "train" / (name + ("-tiny" if o.tiny else "")))
    if o.weights is not None:
        weights = Path(o.weights)
    elif o.tiny or weights is None:
        weights = run_dir / f"{name}.safetensors"
    weights = Path(weights)
    try:
        split_path, report = resolve_split(o.split, "train")
        report = require_ok(report or verify(split_path))
    except (EvaluationError, SplitError) as exc:
        raise TrainingError(str(exc)) from exc

    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    net = build(config).to(device)
    task = (make_task(net, recipe, device) if callable(make_task)
            else SupervisedTask(net, recipe, device))
    if recipe.data == "hr" and not hasattr(task, "degrade"):
        raise TrainingError(f"{source}: RECIPE.data='hr' needs a task with degrade(hr, gen)")
    vols = load_volumes(split_path, hr_only=recipe.data == "hr", scale=recipe.scale,
                        progress=progress)
    n_val = min(recipe.n_validation, len(vols) - 1)
    if n_val < 1:
        raise TrainingError(f"{split_path}: {len(vols)} train specimen(s); training needs at "
                            "least two (one held out for validation)")
    train_vols, val_vols = vols[:-n_val], vols[-n_val:]
    validate = _Validation(task, val_vols, recipe, device)
    gen = torch.Generator()

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt, best_path = run_dir / "checkpoint.pt", run_dir / "best.safetensors"
    key = recipe.key(config)
    start, best, history = 0, math.inf, []
    if ckpt.exists() and not o.restart:
        start, best, history = _load_checkpoint(ckpt, task, key, rng, device)
    log_file = (run_dir / "train.log").open("a" if start else "w")

    def say(line: str) -> None:
        log_file.write(line + "\n")
        log_file.flush()
        log(line)

    say(f"{'resuming' if start else 'training'} {name} from {source} at iteration {start}/"
        f"{recipe.iterations}: split {split_path} ({len(train_vols)} train, {len(val_vols)} "
        f"validation specimens: {', '.join(v.name for v in val_vols)}), device {device}, "
        f"recipe {json.dumps(recipe.as_dict(), default=str)}")
    generator = task.networks.get("generator", next(iter(task.networks.values())))
    t0, done = time.time(), start
    for m in task.networks.values():
        m.train()
    with _deferred_interrupt() as stop:
        for it in range(start + 1, recipe.iterations + 1):
            if recipe.data == "hr":
                hr = sample_hr(train_vols, rng, recipe.batch_size, recipe.patch * recipe.scale)
                lr, aux = task.degrade(hr, gen.manual_seed(recipe.seed * 1_000_003 + it))
            else:
                (lr, hr), aux = sample_pairs(train_vols, rng, recipe.batch_size, recipe.patch,
                                             recipe.scale), None
            losses = task.step(lr.to(device), hr.to(device), aux)
            done = it
            if not all(math.isfinite(v) for v in losses.values()):
                log_file.close()
                raise TrainingError(f"iteration {it}: loss is not finite ({losses}); lower the "
                                    "learning rate in the recipe and pass --restart")
            if it % recipe.validate_every == 0 or it == recipe.iterations:
                v = validate()
                if v < best or recipe.keep == "last":
                    best = min(best, v)
                    save_weights(generator, best_path, recipe.weights_dtype)
                history.append({"iteration": it, **losses, "validation_l1": v,
                                "seconds": round(time.time() - t0, 1)})
                say(f"iteration {it}: " + ", ".join(f"{k} {x:.5f}" for k, x in losses.items())
                    + f", validation L1 {v:.5f} (best {best:.5f}), {time.time() - t0:.0f} s")
            if it % recipe.checkpoint_every == 0 or it == recipe.iterations or stop():
                _save_checkpoint(ckpt, task, it, best, key, rng, history)
            progress("train", it, recipe.iterations,
                     ", ".join(f"{k} {x:.4f}" for k, x in losses.items()))
            if stop():
                say(f"interrupted after iteration {done}; checkpoint saved, run the same command "
                    "again to resume")
                log_file.close()
                raise KeyboardInterrupt
    if not best_path.exists():  # resumed a finished run with nothing left to do
        save_weights(generator, best_path, recipe.weights_dtype)

    import shutil

    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_name(weights.name + ".tmp")
    shutil.copyfile(best_path, tmp)
    os.replace(tmp, weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    record = {
        "name": name, "source": str(source), "weights": weights.name, "sha256": sha,
        "dtype": recipe.weights_dtype, "recipe": recipe.as_dict(), "config": config,
        "n_parameters": sum(p.numel() for p in generator.parameters()),
        "split": {"path": str(split_path), "fingerprint": report.fingerprint,
                  "train": [v.name for v in train_vols], "validation": [v.name for v in val_vols]},
        "best_validation_l1": best, "iterations": recipe.iterations, "device": device,
        "torch": torch.__version__, "seconds": round(time.time() - t0, 1),
        "resumed_from": start, "history": history,
    }
    side = Path(str(weights) + ".json")
    side.write_text(json.dumps(record, indent=1, default=str) + "\n")
    say(f"weights: {weights} (sha256 {sha[:16]}..., best validation L1 {best:.5f})")
    log_file.close()
    return TrainOutcome(name, weights, sha, record, run_dir, start, history)
