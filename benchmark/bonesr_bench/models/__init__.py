"""Loading SR models through the public submission interface (``submissions/README.md``).

A submission is a Python file, a ``package.module:attribute``, or the name of an entry point in
the group ``bonesr_bench.models``. It provides a factory ``load(device) -> model``; the model has
``name`` (str), ``scale`` (int), ``input`` ("slice" or "volume") and ``__call__(lr) -> sr`` on
float32 tensors in [0, 1], plus optional metadata (``authors``, ``paper``, ``licence``,
``training_data``, ``weights``). Every check fails with a :class:`SubmissionError` whose message is
one line naming the problem and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from bonesr_bench.errors import BenchError

__all__ = ["ENTRY_POINT_GROUP", "SubmissionError", "Manifest", "resolve", "load_model",
           "installed_models", "manifest", "is_file_source", "source_file", "source_sha256",
           "split_file_source",
           "entry_name", "TorchModel"]


def __getattr__(name):  # TorchModel (models.wrapper) imports torch: only when asked for
    if name == "TorchModel":
        from bonesr_bench.models.wrapper import TorchModel

        return TorchModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

ENTRY_POINT_GROUP = "bonesr_bench.models"
INPUT_MODES = ("slice", "volume")
OPTIONAL = ("authors", "paper", "licence", "training_data", "weights")


class SubmissionError(BenchError, RuntimeError):
    """The submission cannot be loaded or breaks the interface; one line, with the fix."""

    exit_code = 1  # the submission failed, not the command


@dataclass
class Manifest:
    """What a result records about a model."""

    name: str
    scale: int
    input: str
    source: str
    n_parameters: int | None = None
    weights_sha256: str | None = None
    metadata: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _load_file(path: Path):
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file; give a .py submission file, a "
                              "package.module:attribute or an installed entry point name")
    name = f"bonesr_submission_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SubmissionError(f"{path}: not a Python file; a submission is a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the submission's own failure, reported in one line
        del sys.modules[name]
        raise SubmissionError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def split_file_source(source: str) -> tuple[str, str]:
    """(file, factory name) of a file source: ``model.py`` -> (model.py, load);
    ``model.py:load_small`` -> (model.py, load_small), a file that offers several models."""
    import re

    m = re.fullmatch(r"(.+\.py):([A-Za-z_][A-Za-z0-9_]*)", source, flags=re.S)
    return (m[1], m[2]) if m else (source, "load")


def is_file_source(source: str) -> bool:
    """Whether ``source`` names a submission file (rather than a module or an entry point),
    with or without ``:factory``."""
    f = split_file_source(source)[0]
    return f.endswith(".py") or "/" in f or Path(f).is_file()


def source_file(source: str) -> Path | None:
    """The Python file that defines ``source`` (found without importing it), or None."""
    if is_file_source(source):
        f = Path(split_file_source(source)[0])
        return f if f.is_file() else None
    target = source
    if ":" not in source:
        target = next((ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)
                       if ep.name == source), "")
    mod = target.partition(":")[0]
    try:
        spec = importlib.util.find_spec(mod) if mod else None
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def source_sha256(source: str) -> str | None:
    """sha256 of the file that defines ``source`` (None when it cannot be found)."""
    f = source_file(source)
    return hashlib.sha256(f.read_bytes()).hexdigest() if f is not None else None


def entry_name(source: str) -> str:
    """The default entry name (a run folder name) of ``source``: a file's stem (its folder's
    name for generic stems such as model.py), an entry point's name, a module:attribute's
    attribute (its module's last part when the attribute is ``load``)."""
    import re

    if is_file_source(source):
        f, factory = split_file_source(source)
        p = Path(f)
        name = p.parent.resolve().name if p.stem in ("model", "submission", "__init__") else p.stem
        if factory != "load":
            name += "-" + factory.removeprefix("load_")
    elif ":" in source:
        mod, _, attr = source.partition(":")
        name = mod.rsplit(".", 1)[-1] if attr == "load" else attr
    else:
        name = source
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "entry"


def resolve(source: str):
    """The ``load`` factory named by ``source`` (file path, module:attribute or entry point)."""
    if is_file_source(source):
        f, name = split_file_source(source)
        module = _load_file(Path(f))
        factory = getattr(module, name, None)
        if not callable(factory):
            offered = sorted(k for k, v in vars(module).items()
                             if k.startswith("load") and callable(v))
            raise SubmissionError(f"{source}: defines no {name}(device) function; add one that "
                                  "returns the model" + (f" (it has {', '.join(offered)})"
                                                         if offered else ""))
        return factory
    if ":" in source:
        mod_name, _, attr = source.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except Exception as exc:  # noqa: BLE001
            raise SubmissionError(f"{source}: cannot import {mod_name}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise SubmissionError(f"{source}: {mod_name} has no callable {attr!r}")
        return factory
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == source:
            try:
                return ep.load()
            except Exception as exc:  # noqa: BLE001
                raise SubmissionError(f"entry point {source!r}: loading {ep.value} failed: "
                                      f"{type(exc).__name__}: {exc}") from exc
    raise SubmissionError(f"{source!r} is neither a file, a module:attribute nor an installed "
                          f"model; `bonesr-bench models` lists the installed ones")


def _check(model, source: str, expected_scale: int | None):
    for attr in ("name", "scale", "input"):
        if not hasattr(model, attr):
            raise SubmissionError(f"{source}: the model has no {attr!r} attribute; declare name, "
                                  "scale and input (submissions/README.md)")
    if not isinstance(model.name, str) or not model.name.strip():
        raise SubmissionError(f"{source}: model.name must be a non-empty string")
    if not isinstance(model.scale, int) or model.scale < 1:
        raise SubmissionError(f"{source}: model.scale must be a positive int, got "
                              f"{model.scale!r}")
    if expected_scale is not None and model.scale != expected_scale:
        raise SubmissionError(f"{source}: model.scale is {model.scale} but the split's scale is "
                              f"{expected_scale}; submit a x{expected_scale} model")
    if model.input not in INPUT_MODES:
        raise SubmissionError(f"{source}: model.input must be 'slice' or 'volume', got "
                              f"{model.input!r}")
    if not callable(model):
        raise SubmissionError(f"{source}: the model is not callable; define __call__(lr) -> sr")


def load_model(source: str, device="cpu", *, expected_scale: int | None = None):
    """Resolve ``source``, call its factory on ``device`` and check the declared interface."""
    factory = resolve(source)
    try:
        model = factory(device)
    except SubmissionError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SubmissionError(f"{source}: load(device) failed: {type(exc).__name__}: {exc}") \
            from exc
    _check(model, source, expected_scale)
    return model


def manifest(model, source: str) -> Manifest:
    """Name, scale, input mode, parameter count and weights hash of a loaded model."""
    n_params = None
    params = getattr(model, "parameters", None)
    if callable(params):
        n_params = int(sum(p.numel() for p in params()))
    weights = getattr(model, "weights", None)
    sha = None
    if weights:
        from bonesr_bench.models.wrapper import weights_sha256

        sha = weights_sha256(weights)
    meta = {k: getattr(model, k) for k in OPTIONAL if getattr(model, k, None) is not None}
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in meta.items()}
    return Manifest(model.name, model.scale, model.input, source, n_params, sha, meta)


def installed_models() -> list[tuple[str, str]]:
    """(entry point name, target) of every installed model."""
    return sorted((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))
