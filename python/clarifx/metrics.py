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


def ssim(a: np.ndarray, b: np.ndarray, *, peak: float = 1.0, shave: int = 0) -> float:
    """Mean SSIM (Wang et al. 2004) of two single-channel images: Gaussian window sigma 1.5 (11 taps),
    K1 = 0.01, K2 = 0.03, averaged away from the 5-pixel rim the window cannot fill (as skimage's
    structural_similarity with gaussian_weights=True, use_sample_covariance=False)."""
    import cv2

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim: expected two images of one shape (H, W), got {a.shape} and {b.shape}")
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s[5:-5, 5:-5].mean())


def ssim_y(a: np.ndarray, b: np.ndarray, *, shave: int = 0) -> float:
    """SSIM on BT.601 luma of two RGB images in [0, 1]."""
    return ssim(luma_bt601(a), luma_bt601(b), shave=shave)


def _y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB (H, W, 3+), or the image itself when it has one channel."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] >= 3:
        return luma_bt601(image[:, :, :3])
    return np.asarray(image, dtype=np.float64).reshape(image.shape[:2])


def endpoint_error(flow: np.ndarray, truth: np.ndarray, *, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(mean end-point error in pixels, share of pixels with error under 1 pixel) of (H, W, 2) flows,
    over the pixels `mask` selects (all by default)."""
    flow, truth = np.asarray(flow, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if flow.shape != truth.shape or flow.shape[-1] != 2:
        raise ValueError(f"endpoint_error: expected two (H, W, 2) flows, got {flow.shape} and {truth.shape}")
    err = np.hypot(*(flow - truth).transpose(2, 0, 1))
    if mask is not None:
        err = err[np.asarray(mask, dtype=bool)]
    return float(err.mean()), float((err < 1.0).mean())


def e_warp(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, *, occluded: np.ndarray | None = None,
           interp: str = "bicubic") -> float:
    """Warping error mean |Y(cur) - Y(warp(prev, flow))| over pixels that are not occluded and whose
    flow stays inside the frame. flow: (H, W, 2) from cur to prev (clarifx.flow's convention:
    warp(prev, flow) looks like cur); occluded: (H, W) mask of cur's pixels prev does not show."""
    from . import kernels

    cur_y, prev_y = _y(cur), _y(prev)
    if cur_y.shape != prev_y.shape or tuple(np.shape(flow)) != cur_y.shape + (2,):
        raise ValueError(f"e_warp: prev {np.shape(prev)}, cur {np.shape(cur)} and flow {np.shape(flow)} "
                         "do not match")
    warped, valid = kernels.warp(np.ascontiguousarray(prev_y, dtype=np.float32)[:, :, None],
                                 np.ascontiguousarray(flow, dtype=np.float32), interp=interp)
    keep = valid[:, :, 0] > 0
    if occluded is not None:
        keep &= ~np.asarray(occluded, dtype=bool).reshape(keep.shape)
    if not keep.any():
        raise ValueError("e_warp: every pixel is occluded or leaves the frame")
    return float(np.abs(cur_y - warped[:, :, 0])[keep].mean())


def tof(outputs, references) -> float:
    """tOF (Chu et al., TecoGAN): mean end-point distance between the flow of consecutive output frames
    and the flow of the same reference frames (clarifx.flow.estimate on both), over all pairs."""
    from . import flow as _flow

    if len(outputs) != len(references) or len(outputs) < 2:
        raise ValueError(f"tof: need two or more outputs and as many references, got {len(outputs)} and "
                         f"{len(references)}")
    errs = []
    for t in range(1, len(outputs)):
        fo = _flow.estimate(np.asarray(outputs[t]), np.asarray(outputs[t - 1]))
        fr = _flow.estimate(np.asarray(references[t]), np.asarray(references[t - 1]))
        errs.append(endpoint_error(fo, fr)[0])
    return float(np.mean(errs))


def mean_luma(frames) -> np.ndarray:
    """Per-frame mean BT.601 luma of a sequence of RGB frames."""
    return np.array([_y(f).mean() for f in frames])


def flicker(frames, references=None) -> float:
    """Per-frame mean-luminance flicker: mean |m_t - m_{t-1}| of the frames' mean luma; with
    `references`, of the output's mean luma minus the reference's (so real brightness changes in the
    scene do not count)."""
    m = mean_luma(frames)
    if references is not None:
        if len(references) != len(frames):
            raise ValueError(f"flicker: {len(frames)} frames but {len(references)} references")
        m = m - mean_luma(references)
    if len(m) < 2:
        raise ValueError("flicker: need two or more frames")
    return float(np.abs(np.diff(m)).mean())


# --- colour difference (CIELAB, CIEDE2000) ---

_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],   # IEC 61966-2-1 primaries, D65 white
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65 white, 2-degree observer) of (..., 3) sRGB-encoded colour (IEC 61966-2-1 curve)."""
    from .colour import srgb_to_linear

    lin = srgb_to_linear(rgb).astype(np.float64)
    xyz = lin @ _SRGB_TO_XYZ.T / _SRGB_TO_XYZ.sum(axis=1)  # relative to the white point's XYZ
    d = 6.0 / 29.0
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray, *, kl: float = 1.0, kc: float = 1.0, kh: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference of (..., 3) CIELAB colours, element-wise; as written out by Sharma, Wu
    and Dalal (Color Res. Appl. 30(1), 2005), whose 34 test pairs tests/test_restore.py checks."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c7 / (c7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360  # atan2(0, 0) = 0, as the paper asks
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    chroma = c1p * c2p != 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh)) * chroma
    dl, dc = l2 - l1, c2p - c1p
    dhh = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    lbar, cbar = (l1 + l2) / 2, (c1p + c2p) / 2
    hsum = h1p + h2p
    hbar = np.where(np.abs(h1p - h2p) <= 180, hsum / 2, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    hbar = np.where(chroma, hbar, hsum)
    t = (1 - 0.17 * np.cos(np.radians(hbar - 30)) + 0.24 * np.cos(np.radians(2 * hbar))
         + 0.32 * np.cos(np.radians(3 * hbar + 6)) - 0.20 * np.cos(np.radians(4 * hbar - 63)))
    dtheta = 30 * np.exp(-(((hbar - 275) / 25) ** 2))
    rc = 2 * np.sqrt(cbar ** 7 / (cbar ** 7 + 25.0 ** 7))
    sl = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * cbar, 1 + 0.015 * cbar * t
    rt = -np.sin(np.radians(2 * dtheta)) * rc
    x, y, z = dl / (kl * sl), dc / (kc * sc), dhh / (kh * sh)
    return np.sqrt(x * x + y * y + z * z + rt * y * z)
