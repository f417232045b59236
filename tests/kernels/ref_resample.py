"""Pure-numpy float64 references for resample and fused_upsample, written from the convention alone.

Convention (PIL, torch's antialiased interpolate): output pixel i has its centre at (i + 0.5) * in/out
in input coordinates (input pixel j has its centre at j + 0.5). When reducing, the filter is stretched
by in/out. Input pixels j in [floor(c - support + 0.5), floor(c + support + 0.5)) (support stretched
too), clipped to the image, are weighted by filter((j + 0.5 - c) / stretch) and the weights are
normalised to sum to 1.
"""

from __future__ import annotations

import numpy as np


def _box(x):
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def _triangle(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def _keys_cubic(x, a=-0.5):
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def _lanczos3(x):
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


FILTERS = {"box": (0.5, _box), "bilinear": (1.0, _triangle), "bicubic": (2.0, _keys_cubic), "lanczos3": (3.0, _lanczos3)}


def taps(in_size: int, out_size: int, filter: str) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight), both (out_size, K): output i is sum_k weight[i, k] * input[index[i, k]]."""
    support, kernel = FILTERS[filter]
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    lo = np.maximum(np.floor(centres - support * stretch + 0.5), 0).astype(np.int64)
    hi = np.minimum(np.floor(centres + support * stretch + 0.5), in_size).astype(np.int64)
    assert np.all(hi > lo)
    index = lo[:, None] + np.arange((hi - lo).max())
    inside = index < hi[:, None]
    weight = np.where(inside, kernel((index + 0.5 - centres[:, None]) / stretch), 0.0)
    weight /= weight.sum(axis=1, keepdims=True)
    return np.minimum(index, in_size - 1), weight


def resample(image: np.ndarray, size: tuple[int, int], filter: str) -> np.ndarray:
    """image (N, C, H, W) -> (N, C, size[0], size[1]) in float64."""
    x = np.asarray(image, dtype=np.float64)
    iy, wy = taps(x.shape[2], size[0], filter)
    ix, wx = taps(x.shape[3], size[1], filter)
    x = (x[:, :, :, ix] * wx).sum(axis=-1)  # (N, C, H, W', K) -> (N, C, H, W')
    x = (x[:, :, iy, :] * wy[:, :, None]).sum(axis=3)  # (N, C, H', K, W') -> (N, C, H', W')
    return x


def pixel_shuffle(features: np.ndarray, scale: int) -> np.ndarray:
    """(N, C*s*s, H, W) -> (N, C, H*s, W*s): out[n, c, h*s + i, w*s + j] = in[n, c*s*s + i*s + j, h, w]."""
    n, cs, h, w = features.shape
    c = cs // (scale * scale)
    x = np.asarray(features, dtype=np.float64).reshape(n, c, scale, scale, h, w)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(n, c, h * scale, w * scale)


def fused_upsample(features: np.ndarray, base: np.ndarray, scale: int, filter: str,
                   clamp: tuple[float, float] | None = None) -> np.ndarray:
    h, w = base.shape[2] * scale, base.shape[3] * scale
    out = pixel_shuffle(features, scale) + resample(base, (h, w), filter)
    return out if clamp is None else np.clip(out, *clamp)
