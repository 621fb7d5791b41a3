"""The projector and back-projector of split v1.1 and v2.0 as first written, one slice at a time
(numba, per-slice padded rows): a test oracle for the blocked kernels in
``bonesr_bench.split.synth._raster``, which must give these bytes exactly (the splits'
fingerprints depend on them)."""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def project_joseph_per_slice(mu, cos_t, sin_t):
    """Parallel-beam line integrals (pixel units) of each slice of ``mu`` (Z, N, N), detector
    pitch 1 pixel, by Joseph's method: step along the axis closest to the ray, interpolate
    linearly across it (zero outside the image). Returns (Z, A, N)."""
    z_n, n, _ = mu.shape
    a_n = cos_t.shape[0]
    out = np.zeros((z_n, a_n, n), dtype=np.float32)
    half = np.float32(n / 2.0)
    pad = n + 2  # rays reach at most sqrt(2) n / 2 + n / 2 < n + 1 from the centre
    for z in prange(z_n):
        # rows padded with zeros on both sides; a transposed copy for the steep rays
        rows = np.zeros((n, n + 2 * pad), dtype=np.float32)
        cols = np.zeros((n, n + 2 * pad), dtype=np.float32)
        for j in range(n):
            for i in range(n):
                rows[j, pad + i] = mu[z, j, i]
                cols[i, pad + j] = mu[z, j, i]
        for a in range(a_n):
            c = np.float32(cos_t[a])
            s = np.float32(sin_t[a])
            if abs(c) >= abs(s):
                img, cc, ss, norm = rows, c, s, np.float32(1.0) / abs(c)
            else:
                # swap the roles of x and y: a ray (c, s) in the transposed image is (s, c)
                img, cc, ss, norm = cols, s, c, np.float32(1.0) / abs(s)
            slope = -ss / cc  # d(position across) / d(step)
            for iu in range(n):
                u = np.float32(iu + 0.5) - half
                # position across the stepping axis at step j: u / cc + slope * (y_j - u ss)...
                y0 = np.float32(0.5) - half
                x = (u - y0 * ss) / cc + half - np.float32(0.5) + pad
                acc = np.float32(0.0)
                for j in range(n):
                    k = int(x)
                    w = x - k
                    r = img[j]
                    acc += r[k] + w * (r[k + 1] - r[k])
                    x += slope
                out[z, a, iu] = acc * norm
    return out


@njit(cache=True, parallel=True)
def backproject_linear_per_slice(filt, cos_t, sin_t, n_out):
    """Pixel-driven back-projection with linear interpolation of filtered projections (Z, A, U),
    detector pitch = output pixel; returns (Z, n_out, n_out), times pi / A."""
    z_n, a_n, u_n = filt.shape
    out = np.zeros((z_n, n_out, n_out), dtype=np.float32)
    half = np.float32(n_out / 2.0)
    pad = n_out + 2
    for z in prange(z_n):
        row = np.zeros(u_n + 2 * pad, dtype=np.float32)
        acc = np.zeros((n_out, n_out), dtype=np.float32)
        for a in range(a_n):
            c = np.float32(cos_t[a])
            s = np.float32(sin_t[a])
            for k in range(u_n):
                row[pad + k] = filt[z, a, k]
            for j in range(n_out):
                y = np.float32(j + 0.5) - half
                pos = (np.float32(0.5) - half) * c + y * s + np.float32(u_n / 2.0 - 0.5) + pad
                for i in range(n_out):
                    k = int(pos)
                    w = pos - k
                    acc[j, i] += row[k] + w * (row[k + 1] - row[k])
                    pos += c
        scale = np.float32(np.pi / a_n)
        for j in range(n_out):
            for i in range(n_out):
                out[z, j, i] = acc[j, i] * scale
    return out
