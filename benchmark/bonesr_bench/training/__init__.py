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

Data are built as the harness presents them at evaluation: the split's fixed intensity window (read
from the split, as evaluate does) mapped to [0, 1], each LR volume interpolated linearly along z to
the HR slice positions (``benchmark/docs/DESIGN.md`` §2), random in-plane LR patches paired with
their ``scale``-times larger HR patches. Only the train subset is read; its last
``recipe.n_validation`` specimens are held out for validation, the test subset is never opened. A
recipe with ``data="hr"`` sees HR patches only and makes its own LR from them (``Task.degrade``),
as blind methods are trained.

A run folder (default ``runs/train/<name>``) holds ``checkpoint.pt`` (every network, optimiser,
scheduler and random state; written atomically, read back with ``torch.load(weights_only=True)``,
which never unpickles arbitrary objects), ``train.log`` and ``best.safetensors``. Running the same
command again resumes from the checkpoint; a checkpoint of another recipe is refused. At the end
the kept weights (best validation L1, or the last for ``keep="last"``) are written to ``WEIGHTS``
as safetensors in ``recipe.weights_dtype``, with a sidecar ``<weights>.json`` recording their
sha256, the recipe, the split's fingerprint and the training figures.
"""

from __future__ import annotations

from bonesr_bench.training.data import (
    Volume,
    load_volumes,
    sample_hr,
    sample_pairs,
)
from bonesr_bench.training.loop import (
    TrainOptions,
    TrainOutcome,
    train,
)
from bonesr_bench.training.recipe import (
    Recipe,
    SupervisedTask,
    Task,
    TrainingError,
    make_optimiser,
    make_scheduler,
)
from bonesr_bench.training.weights import (
    load_weights,
    save_weights,
    weights_record,
)

__all__ = [
    "Recipe",
    "Task",
    "SupervisedTask",
    "TrainingError",
    "make_optimiser",
    "make_scheduler",
    "Volume",
    "load_volumes",
    "sample_pairs",
    "sample_hr",
    "save_weights",
    "load_weights",
    "weights_record",
    "TrainOptions",
    "TrainOutcome",
    "train",
]
