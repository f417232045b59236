"""Pure numpy references of kernels.warp and kernels.occlusion, written from their documented semantics.

Arrays are NCHW. The sample coordinate is float32(x) + flow in float32, as the kernels compute it, so
masks and tap positions match exactly; the weighted sums are then taken in float64.
"""

from __future__ import annotations

import numpy as np


def border_coord(x: np.ndarray, n: int, border: str) -> np.ndarray:
    """Moves float32 coordinates where their taps stay near the image without changing what they read."""
    if border == "reflect":
        if n == 1:
            return np.zeros_like(x)
        period = np.float32(2 * (n - 1))
        x = np.fmod(np.abs(x), period)
        return np.where(x > np.float32(n - 1), period - x, x)
    return np.clip(x, np.float32(-2), np.float32(n + 1))


def border_index(i: np.ndarray, n: int, border: str) -> np.ndarray:
    """The pixel that tap i reads along an axis of n pixels; -1 means it reads zero."""
    inside = (i >= 0) & (i < n)
    if border == "zero":
        return np.where(inside, i, -1)
    if border == "clamp" or n == 1:
        return np.clip(i, 0, n - 1)
    period = 2 * (n - 1)  # reflect about the edge pixels: -1 -> 1, n -> n - 2
    i = np.mod(i, period)
    return np.where(i < n, i, period - i)


def keys_cubic(d: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel at distance d."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d < 1, near, np.where(d < 2, far, 0.0))


def axis_taps(coord: np.ndarray, n: int, interp: str, border: str):
    """(indices, weights), each (taps, *coord.shape), of samples at float32 coordinates on an axis of n pixels."""
    x = border_coord(coord, n, border)
    x0 = np.floor(x)
    t = (x - x0).astype(np.float64)
    offsets = np.array([0, 1]) if interp == "bilinear" else np.array([-1, 0, 1, 2])
    shape = (-1,) + (1,) * coord.ndim
    index = border_index(x0.astype(np.int64)[None] + offsets.reshape(shape), n, border)
    if interp == "bilinear":
        weight = np.stack([1 - t, t])
    else:
        weight = keys_cubic(t[None] - offsets.reshape(shape))
    return index, weight


def sample(image: np.ndarray, sx: np.ndarray, sy: np.ndarray, interp: str, border: str) -> np.ndarray:
    """image (N, C, H, W) sampled at float32 coordinates sx, sy (N, H, W): float64 (N, C, H, W)."""
    n_, c_, h, w = image.shape
    img = image.astype(np.float64)
    ix, wx = axis_taps(sx, w, interp, border)
    iy, wy = axis_taps(sy, h, interp, border)
    batch = np.arange(n_).reshape(-1, 1, 1)
    out = np.zeros((n_, h, w, c_))
    for j in range(len(iy)):
        for i in range(len(ix)):
            reads = (iy[j] >= 0) & (ix[i] >= 0)
            values = img[batch, :, np.maximum(iy[j], 0), np.maximum(ix[i], 0)]  # (N, H, W, C)
            out += np.where(reads[..., None], (wy[j] * wx[i])[..., None] * values, 0.0)
    return out.transpose(0, 3, 1, 2)


def sample_coords(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32(x) + flow_x and float32(y) + flow_y, in float32 as the kernels add them."""
    _, _, h, w = flow.shape
    f = flow.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        sx = np.arange(w, dtype=np.float32) + f[:, 0]
        sy = np.arange(h, dtype=np.float32)[:, None] + f[:, 1]
    return sx, sy


def warp_ref(image: np.ndarray, flow: np.ndarray, interp: str = "bilinear", border: str = "clamp"):
    """(warped, mask) as float64, (N, C, H, W) and (N, 1, H, W); non-finite samples give 0 with mask 0."""
    _, _, h, w = image.shape
    sx, sy = sample_coords(flow)
    finite = np.isfinite(sx) & np.isfinite(sy)
    sx, sy = np.where(finite, sx, 0).astype(np.float32), np.where(finite, sy, 0).astype(np.float32)
    out = np.where(finite[:, None], sample(image, sx, sy, interp, border), 0.0)
    inside = finite & (sx >= 0) & (sx <= np.float32(w - 1)) & (sy >= 0) & (sy <= np.float32(h - 1))
    return out, inside[:, None].astype(np.float64)


def occlusion_ref(forward: np.ndarray, backward: np.ndarray, alpha1: float = 0.01, alpha2: float = 0.5):
    """(occluded, margin), (N, 1, H, W) float64: the mask, and how far each pixel's consistency test is
    from its threshold (inf where the frame test or a non-finite flow decides), so that callers can
    leave out pixels whose outcome float rounding may decide."""
    _, _, h, w = forward.shape
    f = forward.astype(np.float64)
    px, py = sample_coords(forward)
    finite = np.isfinite(forward).all(axis=1) & np.isfinite(backward).all(axis=1)
    inside = finite & (px >= 0) & (px <= np.float32(w - 1)) & (py >= 0) & (py <= np.float32(h - 1))
    px, py = np.where(inside, px, 0).astype(np.float32), np.where(inside, py, 0).astype(np.float32)
    b = sample(np.where(np.isfinite(backward), backward, 0), px, py, "bilinear", "clamp")
    lhs = ((f + b) ** 2).sum(axis=1)
    rhs = alpha1 * ((f**2).sum(axis=1) + (b**2).sum(axis=1)) + alpha2
    occluded = ~inside | (lhs > rhs)
    margin = np.where(inside, np.abs(lhs - rhs) / np.maximum(rhs, 1.0), np.inf)
    return occluded[:, None].astype(np.float64), margin[:, None]
