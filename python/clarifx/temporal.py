"""Temporal processing: neighbouring frames aligned to the current one by optical flow and fused.

Everything here is a motion-compensated sliding window: the result at frame t depends only on the
frames t-r..t+r, never on what was rendered before, so rendering a clip in one run or in chunks gives
bit-identical frames (a chunk only needs its r handle frames each side).

- align(): a neighbour warped onto the current frame (native warp kernel, bicubic) with the mask of
  pixels it can stand in for: inside the frame and not occluded (forward-backward consistency).
- weights() + average(): an occlusion-aware, robust weighted average. A neighbour pixel's weight falls
  off when its local patch differs from the current frame's by more than noise explains, so where flow
  fails the result falls back to the current frame instead of ghosting.
- learned_weights(): the same weights judged by a small trained net (the embedded model fuse-weights,
  archs.FuseNet), which also tells compression flicker that averaging removes (blocks re-quantised from
  frame to frame, far beyond the noise level) from misalignment, which the rule cannot.
- Window: the flows between the frames of a sliding window, each pair computed once.
"""

from __future__ import annotations

import functools

import numpy as np

from . import flow as _flow
from . import kernels


def noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of additive white noise's standard deviation in an (H, W, C) or (H, W) image:
    the median absolute finest diagonal Haar coefficient / 0.6745 (Donoho and Johnstone), over channels."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    hh = (a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) / 2
    return float(np.median(np.abs(hh)) / 0.6745)


def align(neighbour: np.ndarray, to_neighbour: np.ndarray, from_neighbour: np.ndarray):
    """`neighbour` warped onto the current frame, and the (H, W) float32 mask of pixels it can stand in for.

    to_neighbour: flow current -> neighbour; from_neighbour: flow neighbour -> current (for the
    occlusion check). Sizes may differ from the frames' (flow from a low-resolution source): the flows
    are then resampled to the neighbour's size first.
    """
    h, w = neighbour.shape[:2]
    if to_neighbour.shape[:2] != (h, w):
        to_neighbour = _flow.upscale(to_neighbour, (h, w))
        from_neighbour = _flow.upscale(from_neighbour, (h, w))
    occluded = _flow.occlusion(to_neighbour, from_neighbour)
    warped, valid = kernels.warp(neighbour, np.ascontiguousarray(to_neighbour), interp="bicubic", border="clamp")
    return warped, valid[:, :, 0] * (1.0 - occluded)


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    return cv2.blur(x, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def weights(current: np.ndarray, aligned: list[np.ndarray], masks: list[np.ndarray], *,
            noise_var: float | None = None, tolerance: float = 1.0, patch: int = 2) -> list[np.ndarray]:
    """How much each of the `aligned` neighbours (their `masks`: 1 where usable) may count at each pixel
    of `current` (H, W, C): a list of (H, W) float32 maps in [0, 1].

    The weight is mask * exp(-max(D / (2 noise_var) - 1, 0) / tolerance), D being the mean squared
    difference to the current frame over a (2 patch + 1)^2 window: two aligned frames with independent
    noise of variance noise_var differ by 2 noise_var on average, so those count fully, and misaligned
    ones (motion the flow missed, lighting changes) fade out. noise_var None: half the median D over
    usable pixels, i.e. whatever differences are typical in this window.
    """
    cur = np.asarray(current, dtype=np.float32)
    diffs = []
    for k, (a, m) in enumerate(zip(aligned, masks)):
        if a.shape != cur.shape or m.shape != cur.shape[:2]:
            raise ValueError(f"aligned[{k}]: shape {a.shape} / mask {m.shape} do not match current {cur.shape}")
        diffs.append(_box(((a - cur) ** 2).mean(axis=2), patch))
    if noise_var is None:
        usable = [d[m > 0.5] for d, m in zip(diffs, masks)]
        pooled = np.concatenate(usable) if usable else np.zeros(0)
        noise_var = float(np.median(pooled)) / 2 if pooled.size else 0.0
    var2 = 2 * max(noise_var, (0.5 / 255) ** 2)  # a floor for clean footage, where differences are rounding
    return [(m * np.exp(-np.maximum(d / var2 - 1.0, 0.0) / tolerance)).astype(np.float32)
            for m, d in zip(masks, diffs)]


FUSIONS = ("learned", "rule")  # how neighbours are weighted: learned_weights() or weights()
FUSION_MODEL = "fuse-weights"
_BAND = 256  # rows per pass of the fusion net: bounds its memory on large frames
_GUARD = 2  # a neighbour counts at a pixel only as much as it counts anywhere within this many pixels
_REACH = 16  # rows of context each side of a band: more than the net's receptive radius (10) + _GUARD


@functools.lru_cache(maxsize=1)
def _fusion_net():
    import torch

    from . import models

    return models.load(FUSION_MODEL).to(memory_format=torch.channels_last)  # oneDNN's faster layout: 2.9x here


def learned_weights(current: np.ndarray, aligned: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
    """weights() judged by the embedded fuse-weights model: (H, W) float32 maps in [0, 1], zero where the
    mask is. Runs in bands of rows (with context) and one neighbour at a time, so memory stays bounded.

    The net's weights are then eroded (a minimum over 5x5 pixels): its refusals are soft at the edges of
    a moving region, and TemporalSuperResolution's upscaled weights smear them by another pixel; eroded,
    the 4-pixel band around a region moving over the known-motion sequences went from 0.45 dB below
    per-frame SR to 0.07 dB below it, while vtest's E_warp cut went from 55% to 51%."""
    import cv2
    import torch

    net = _fusion_net()
    cur = torch.from_numpy(np.ascontiguousarray(current, dtype=np.float32)).permute(2, 0, 1)[None]
    h = cur.shape[-2]
    out = []
    with torch.no_grad():
        noise_var = net.noise_var(cur)  # of the whole frame, not of a band
        for k, (a, m) in enumerate(zip(aligned, masks)):
            if a.shape != current.shape or m.shape != current.shape[:2]:
                raise ValueError(f"aligned[{k}]: shape {a.shape} / mask {m.shape} do not match current {current.shape}")
            al = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None, None]
            ms = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
            w = np.empty(current.shape[:2], np.float32)
            for y in range(0, h, _BAND):
                lo, hi = max(0, y - _REACH), min(h, y + _BAND + _REACH)
                band = net(cur[..., lo:hi, :], al[..., lo:hi, :], ms[..., lo:hi, :], noise_var)[0, 0].numpy()
                band = cv2.erode(band, np.ones((2 * _GUARD + 1,) * 2, np.uint8), borderType=cv2.BORDER_REPLICATE)
                w[y:y + _BAND] = band[y - lo: y - lo + min(_BAND, h - y)]
            out.append(w)
    return out


def average(current: np.ndarray, aligned: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    """(current + sum_k w_k aligned_k) / (1 + sum_k w_k): pixels no neighbour may stand in for keep the
    current frame's value. Weights of another size (from low-resolution frames) are resampled first."""
    h, w = current.shape[:2]
    total = np.array(current, dtype=np.float32, copy=True)
    norm = np.ones((h, w), np.float32)
    for a, wk in zip(aligned, weights):
        if wk.shape != (h, w):
            wk = np.clip(kernels.resample(np.ascontiguousarray(wk)[:, :, None], (h, w), filter="bilinear")[:, :, 0],
                         0.0, 1.0)
        total += wk[:, :, None] * a
        norm += wk
    return total / norm[:, :, None]


class Window:
    """Flows between frames of a sliding window, each ordered pair computed once while both frames are
    in the window (a flow depends only on its two frames, so caching it changes no result).

    flow_of(frames) gives the image a flow is computed on (default: the frame itself, RGB in [0, 1]).
    """

    def __init__(self, *, preset: str = "medium", method: str = "auto"):
        self.preset, self.method = preset, method
        self._flows: dict[tuple[int, int], np.ndarray] = {}

    def flow(self, a: int, b: int, frames: dict[int, np.ndarray]) -> np.ndarray:
        key = (a, b)
        if key not in self._flows:
            self._flows[key] = _flow.estimate(frames[a], frames[b], preset=self.preset, method=self.method)
        return self._flows[key]

    def keep(self, numbers) -> None:
        """Forget flows touching frames outside `numbers` (the window moved on)."""
        numbers = set(numbers)
        for key in [k for k in self._flows if k[0] not in numbers or k[1] not in numbers]:
            del self._flows[key]

    def clear(self) -> None:
        self._flows.clear()

    def aligned(self, t: int, frames: dict[int, np.ndarray], images: dict[int, np.ndarray] | None = None):
        """Every other frame of `frames` aligned onto frame t: ([warped], [masks]). Flows are computed on
        `frames`; `images` (default: frames) are what gets warped, e.g. a model's upscaled outputs."""
        images = frames if images is None else images
        warped, masks = [], []
        for n in sorted(frames):
            if n == t:
                continue
            w, m = align(images[n], self.flow(t, n, frames), self.flow(n, t, frames))
            warped.append(w)
            masks.append(m)
        return warped, masks


def window_frames(t: int, radius: int, first: int | None = None, last: int | None = None) -> list[int]:
    """The frames t-radius..t+radius, clipped to the clip's range [first, last] where given."""
    lo = t - radius if first is None else max(first, t - radius)
    hi = t + radius if last is None else min(last, t + radius)
    return list(range(lo, hi + 1))
