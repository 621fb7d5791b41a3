"""Render the README's picture: one slice of HR, LR and truth of a specimen of a built split.

    python benchmark/docs/make_specimen_figure.py SPLIT.zarr [SPECIMEN] [OUT.png]
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bonesr_bench.split import iter_specimens  # noqa: E402


def main(path, name="s2000", out="benchmark/docs/specimen.png"):
    spec = next(s for s in iter_specimens(path, "test", check=False) if s.name == name)
    z = spec.hr.shape[0] // 2
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8))
    panels = [(spec.hr[z], "HR scan, 10.5 µm", (-0.5, 3.5)),
              (spec.lr[z // 2], "LR scan (19 µm, registered onto the x2 grid, 21 µm)",
               (-0.5, 3.5)),
              (spec.truth[z], "true bone (HR grid)", (0, 1))]
    for ax, (img, title, (lo, hi)) in zip(axes, panels, strict=True):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    split = dict(__import__("zarr").open_group(str(path), mode="r").attrs["bonesr"])["split"]
    fig.suptitle(f"{split} test/{name}, slice {z}: attenuation 1/cm (scans), 0/1 (truth)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(out, dpi=72)
    print(out, np.round(spec.attrs["truth_morphometry"]["bv_tv_pct"], 2))


if __name__ == "__main__":
    main(*sys.argv[1:])
