"""Benchmark phantoms."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def porous_volume(n: int = 256, *, corr_vox: float = 6.0, band: float = 0.25, seed: int = 0):
    """A band-limited random level set (|g| < band for smoothed Gaussian noise g): a connected
    network of plates and rods. With the defaults at 10.5 µm: BV/TV 20 %, Tb.Th 47 µm, Tb.Sp
    196 µm, Conn.D 59 /mm³, close to young-adult mouse trabecular bone."""
    rng = np.random.default_rng(seed)
    g = ndi.gaussian_filter(rng.standard_normal((n, n, n)).astype(np.float32), corr_vox)
    g /= g.std()
    return np.abs(g) < band
