"""Image quality measures used by the demo, tests and benchmarks (BT.601 luma, as in SR papers)."""

from __future__ import annotations

import numpy as np


def luma_bt601(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of (H, W, 3) RGB in [0, 1], on the [16, 235]/255 studio scale that SR papers report."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return (16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def psnr(a: np.ndarray, b: np.ndarray, *, peak: float = 1.0, shave: int = 0, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB; `shave` drops that many border pixels, `mask` selects pixels."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
        mask = None if mask is None else mask[shave:-shave, shave:-shave]
    err = (a - b) ** 2
    if mask is not None:
        err = err[np.broadcast_to(mask, err.shape).astype(bool)]
    mse = float(np.mean(err))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def psnr_y(a: np.ndarray, b: np.ndarray, *, shave: int = 0, mask: np.ndarray | None = None) -> float:
    """PSNR on BT.601 luma of two RGB images in [0, 1]."""
    return psnr(luma_bt601(a), luma_bt601(b), shave=shave, mask=mask)
