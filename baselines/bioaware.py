"""Bio-aware FSRCNN: the FSRCNN network fine-tuned with L1 plus differentiable morphometry terms.

The reference study closes by asking for SR "regularised with respect to morphometric and
topological parameters". This is the first such baseline: the same 12.8 k-parameter network as
``fsrcnn.py`` (so that the loss is the only difference), started from FSRCNN's weights (trained
on the train split with MSE) and fine-tuned on the same train patches with

    L1(SR, HR) + sum_k w_k * term_k(soft(SR), soft(HR)),      soft(x) = sigmoid((x - t) / tau)

where ``t`` is the Otsu level of the train HR slices and the terms are those of
:mod:`bonesr_bench.morphometry.soft`: ``bv_tv`` (|delta BV/TV|), ``euler`` (|delta chi| per 100
pixels, the expected Euler characteristic; Conn.D and closed pores move chi), ``cldice`` (1 -
clDice, Shit et al. 2021: connectivity of the skeleton) and ``thickness`` (the soft erosion
profiles' difference: the thickness distribution). It is trained against HR, never against the
true geometry (real splits have none).

Weights rule (fixed before any run, measured on train batches): each term's weight makes its
value on FSRCNN's own output equal to FSRCNN's L1 there (L1 0.026; term values bv_tv 0.0029,
euler 0.21 in 2D and 0.14 in 3D, cldice 0.20, thickness 0.067), rounded.

``VARIANTS`` is the ablation (README, "Bio-aware SR"): no term (the same fine-tuning with L1
only, so that extra training is not mistaken for the terms' effect), each term alone, all four
(at the rule's weights and at half of them), the Euler term in 3D on stacks of 4 consecutive
slices, and (added once the others were scored) the two terms that were best alone within the
PSNR bound, together. Each is trained by
``bonesr-bench train baselines/bioaware.py --variant NAME`` into ``weights/bioaware-NAME``, and
scored by the factory ``load_NAME`` (``bonesr-bench evaluate baselines/bioaware.py:load_NAME``).
``CHOSEN`` is the variant picked on the validation specimens (lowest biological error among
those whose PSNR is within 0.5 dB of the no-term variant's); ``load`` is that one.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from bonesr_bench.models import TorchModel
from bonesr_bench.models.wrapper import load_weights
from bonesr_bench.training import Recipe

HERE = Path(__file__).resolve().parent


def _fsrcnn():
    """The sibling ``fsrcnn.py`` (network, task, weights), imported by path."""
    spec = importlib.util.spec_from_file_location("bonesr_baseline_fsrcnn", HERE / "fsrcnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FSRCNN = _fsrcnn()
#: ``init``: the weights the fine-tuning starts from (FSRCNN's, trained on the train split)
CONFIG = {**FSRCNN.CONFIG, "init": "fsrcnn"}
TINY_CONFIG = {**FSRCNN.TINY_CONFIG, "init": None}
TERM_WEIGHTS_2D = {"bv_tv": 9.0, "euler": 0.12, "cldice": 0.13, "thickness": 0.4}
TERM_WEIGHTS_3D = {"euler": 0.2}
BASE = Recipe(
    loss="l1", optimiser="adam", learning_rate=1e-4, schedule="cosine", iterations=1500,
    batch_size=32, patch=32, seed=0, validate_every=250, checkpoint_every=250, keep="last",
    weights_dtype="float32", bone_threshold=None, bone_tau=0.05,
    notes="fine-tuned from fsrcnn.safetensors; deconvolution layer at 0.1 x the learning rate",
)


def _arm(terms: dict, stack: int = 1, batch_size: int = 32) -> dict:
    """One arm of the ablation: every field the arms vary, so that each is the same recipe
    whichever is CHOSEN (``train --variant`` applies these to ``RECIPE``)."""
    return {"morphometry_weights": dict(terms), "stack": stack, "batch_size": batch_size}


VARIANTS = {
    "none": _arm({}),
    "bv_tv": _arm({"bv_tv": TERM_WEIGHTS_2D["bv_tv"]}),
    "euler": _arm({"euler": TERM_WEIGHTS_2D["euler"]}),
    "cldice": _arm({"cldice": TERM_WEIGHTS_2D["cldice"]}),
    "thickness": _arm({"thickness": TERM_WEIGHTS_2D["thickness"]}),
    "all": _arm(TERM_WEIGHTS_2D),
    "all_half": _arm({k: w / 2 for k, w in TERM_WEIGHTS_2D.items()}),
    # the two terms that were best alone within the PSNR bound (added after the arms above)
    "bv_tv_cldice": _arm({k: TERM_WEIGHTS_2D[k] for k in ("bv_tv", "cldice")}),
    # 3D Euler on stacks of 4 consecutive slices (8 x 4 patches: the same pixels per batch)
    "euler3d": _arm(TERM_WEIGHTS_3D, stack=4, batch_size=8),
}
CHOSEN = "bv_tv_cldice"  # picked on the validation specimens (README, "Bio-aware SR")
RECIPE = replace(BASE, **VARIANTS[CHOSEN])
WEIGHTS = HERE / "weights" / f"bioaware-{CHOSEN}.safetensors"


def network(config: dict | None = None):
    """FSRCNN(d, s, m); with ``init="fsrcnn"`` it starts from FSRCNN's trained weights."""
    config = dict(config or CONFIG)
    init = config.pop("init", None)
    net = FSRCNN.network(config)
    if init == "fsrcnn":
        load_weights(net, FSRCNN.WEIGHTS, train_hint="bonesr-bench train baselines/fsrcnn.py")
    elif init is not None:
        raise ValueError(f"init={init!r}: use 'fsrcnn' or None")
    return net


def task(net, recipe: Recipe, device="cpu"):
    return FSRCNN.task(net, recipe, device)  # the deconvolution at 0.1 x the learning rate


class BioAwareModel(TorchModel):
    name = "bioaware"
    authors = "bonesr-bench"
    paper = ("FSRCNN (Dong, Loy & Tang 2016) fine-tuned with differentiable morphometry "
             "(bonesr_bench.morphometry.soft; clDice: Shit et al. 2021)")
    licence = "BSD-3-Clause"
    training_data = "bonesr-bench synth-v2 train split"
    weights = WEIGHTS


def _load(device, variant: str) -> BioAwareModel:
    weights = HERE / "weights" / f"bioaware-{variant}.safetensors"
    net = network({**CONFIG, "init": None})
    model = BioAwareModel.from_weights(
        net, weights, device,
        train_hint=f"bonesr-bench train baselines/bioaware.py --variant {variant}")
    model.name, model.weights = f"bioaware-{variant}", weights
    return model


def load(device) -> BioAwareModel:
    model = _load(device, CHOSEN)
    model.name = "bioaware"
    return model


def _factory(variant: str):
    def factory(device) -> BioAwareModel:
        return _load(device, variant)

    factory.__doc__ = f"The ablation variant {variant!r} (VARIANTS)."
    return factory


for _v in VARIANTS:
    globals()[f"load_{_v}"] = _factory(_v)


# -- the ablation (README, "Bio-aware SR"): `python baselines/bioaware.py [--train]` -----------
VALIDATION = ("s1027", "s1028")  # the recipe's held-out train specimens (n_validation = 2)
ABLATION_KEYS = ("bv_tv_pct", "tb_th_um", "tb_sp_um", "da_ratio", "conn_d_per_mm3", "ct_th_um",
                 "ct_po_pct")


def _ablation(argv=None) -> None:
    """Train (with --train, where weights are missing) and score every variant and FSRCNN on the
    validation specimens, then print the ablation table (Markdown) from their results."""
    import argparse
    import json
    import subprocess
    import sys

    from bonesr_bench.scoring import paired_difference

    ap = argparse.ArgumentParser(description=_ablation.__doc__)
    ap.add_argument("--train", action="store_true", help="train the variants without weights")
    ap.add_argument("--out", default="runs/ablation", help="runs folder of the evaluations")
    ap.add_argument("--split", default=None, help="split (default v2)")
    ap.add_argument("--workers", default="1", help="Dask workers for the scoring")
    args = ap.parse_args(argv)
    split = ["--split", args.split] if args.split else []
    me = str(Path(__file__).resolve())
    entries = {"fsrcnn (start)": (str(HERE / "fsrcnn.py"), "abl-fsrcnn")}
    for v in VARIANTS:
        entries[v] = (f"{me}:load_{v}", f"abl-{v}")
        if args.train and not (HERE / "weights" / f"bioaware-{v}.safetensors").exists():
            subprocess.run(["bonesr-bench", "train", me, "--variant", v, *split], check=True)
    results = {}
    for label, (source, name) in entries.items():
        subprocess.run(["bonesr-bench", "evaluate", source, "--subset", "train", "--specimens",
                        ",".join(VALIDATION), "--name", name, "--out", args.out, "--force",
                        "--workers", args.workers, *split],
                       check=True, stdout=subprocess.DEVNULL)
        done = [p / "result.json" for p in [Path(args.out) / name,
                                             *Path(args.out).glob(f"{name}@*")]
                if (p / "result.json").exists()]
        results[label] = json.loads(max(done, key=lambda p: p.stat().st_mtime).read_text())
    none = results["none"]["specimens"]
    labels = {"bv_tv_pct": "BV/TV", "tb_th_um": "Tb.Th", "tb_sp_um": "Tb.Sp", "da_ratio": "DA",
              "conn_d_per_mm3": "Conn.D", "ct_th_um": "Ct.Th", "ct_po_pct": "Ct.Po"}
    head = ["variant", "PSNR (dB)", "SSIM", "bio. error vs HR", "minus none's",
            *(labels[k] for k in ABLATION_KEYS)]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    lr = results["none"]["aggregates"]
    for label, res in results.items():
        a = res["aggregates"]
        d = paired_difference(res["specimens"], none)["bio_err_vs_hr"]["difference"]
        cells = [label, f"{a['psnr_db']['mean']:.2f}", f"{a['ssim']['mean']:.3f}",
                 f"{100 * a['bio_err_vs_hr']['mean']:.1f} %", f"{100 * d['mean']:+.1f} pt",
                 *(f"{100 * a['params'][k]['entry_abs_rel_err_vs_hr']['mean']:.1f}"
                   for k in ABLATION_KEYS)]
        print("| " + " | ".join(cells) + " |")
    cells = ["LR scan", "", "", f"{100 * lr['lr_bio_err_vs_hr']['mean']:.1f} %", "",
             *(f"{100 * lr['params'][k]['lr_abs_rel_err_vs_hr']['mean']:.1f}"
               for k in ABLATION_KEYS)]
    print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    _ablation()
