"""The slice gallery: one fixed crop of every specimen image, so a reader sees what SR erased.

The crop is a property of the split, not of the entry: the first test specimen (sorted names),
its middle HR slice, a square of ``CROP_PX`` HR pixels centred on the trabecular volume of
interest of that slice. Each result carries its own crop (an SR entry its SR image, the HR and
LR reference rows the HR, LR and true-geometry images) as a base64 PNG on the split's fixed
intensity window, so the leaderboard page is rendered from the result files alone.
"""

from __future__ import annotations

import base64
import io

import numpy as np

__all__ = ["CROP_PX", "crop_spec", "crop", "png_base64"]

CROP_PX = 128  # HR pixels (1.34 mm at 10.5 µm)


def crop_spec(names: list[str], regions: np.ndarray, size: int = CROP_PX) -> dict:
    """Where the gallery crop is, from the first specimen's region mask (HR grid)."""
    z = regions.shape[0] // 2
    ys, xs = np.nonzero(regions[z] == 1)
    if ys.size == 0:
        ys, xs = np.nonzero(regions[z] > 0)
    cy = int(ys.mean()) if ys.size else regions.shape[1] // 2
    cx = int(xs.mean()) if xs.size else regions.shape[2] // 2
    size = min(size, regions.shape[1], regions.shape[2])
    y = int(np.clip(cy - size // 2, 0, regions.shape[1] - size))
    x = int(np.clip(cx - size // 2, 0, regions.shape[2] - size))
    return {"specimen": sorted(names)[0], "z": z, "y": y, "x": x, "size": size}


def crop(volume: np.ndarray, spec: dict, scale: int = 1) -> np.ndarray:
    """The crop of a volume on the HR grid (``scale`` = HR voxels per voxel of ``volume``)."""
    z, y, x, s = (spec["z"] // scale, spec["y"] // scale, spec["x"] // scale,
                  spec["size"] // scale)
    return np.asarray(volume[z, y:y + s, x:x + s])


def png_base64(image: np.ndarray, window: tuple[float, float] | None = None,
               size: int | None = None) -> str:
    """A greyscale PNG (base64) of ``image`` mapped from ``window`` (default: 0..1 for a mask),
    resized by nearest neighbour to ``size`` pixels (so an LR crop shows its real pixels)."""
    from PIL import Image

    lo, hi = window if window is not None else (0.0, 1.0)
    g = np.clip((np.asarray(image, dtype=np.float64) - lo) / (hi - lo), 0, 1)
    img = Image.fromarray((g * 255 + 0.5).astype(np.uint8))
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")
