"""Sequences made from a still photo by known motion, with their exact flow and occlusions.

Used to measure optical flow and temporal stability where the truth is known (DESIGN.md, "Measuring"):
a virtual camera pans, zooms or rotates over the photo, and in the 'object' sequence a foreground
region cut from elsewhere in the photo moves over a panning background.

Flow follows clarifx.flow's convention: flow(t, u)[y, x] = (dx, dy) such that pixel (x, y) of frame t
shows what frame u shows at (x + dx, y + dy), so kernels.warp(frames[u], flow(t, u)) ~ frames[t].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MOTIONS = ("pan", "zoom", "rotate", "object")


@dataclass(frozen=True)
class _Camera:
    """Frame pixel p maps to photo point centre + scale * R(angle) (p - frame centre)."""

    cx: float
    cy: float
    scale: float
    angle: float

    def to_photo(self, x, y, x0, y0):
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - x0, y - y0
        return self.cx + self.scale * (c * dx - s * dy), self.cy + self.scale * (s * dx + c * dy)

    def from_photo(self, px, py, x0, y0):
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = (px - self.cx) / self.scale, (py - self.cy) / self.scale
        return x0 + c * dx + s * dy, y0 - s * dx + c * dy


class KnownMotion:
    """`frames` (H, W, 3) float32 frames of `photo` under `motion`, and their true flow and occlusions.

    photo: (H, W, 3) float in [0, 1], at least about 1.6x the frame size each way (it is sampled with
    OpenCV's bicubic remap, reflected at its edges). speed scales the motion: pan 1.0 moves about 2.4
    pixels per frame, zoom 1.0 changes the scale by 1.5% per frame, rotate 1.0 turns 0.6 degrees per
    frame (about 1 pixel at 100 pixels from the centre), object 1.0 moves the region 3.5 pixels per
    frame over a background panning at half the pan speed.
    """

    def __init__(self, photo: np.ndarray, motion: str, *, frames: int = 8, size: tuple[int, int] = (192, 256),
                 speed: float = 1.0):
        if motion not in MOTIONS:
            raise ValueError(f"motion must be one of {', '.join(MOTIONS)}; got {motion!r}")
        photo = np.asarray(photo, dtype=np.float32)
        if photo.ndim != 3 or photo.shape[2] != 3:
            raise ValueError(f"photo: expected (H, W, 3), got {photo.shape}")
        self.h, self.w = (int(v) for v in size)
        if photo.shape[0] < self.h or photo.shape[1] < self.w:
            raise ValueError(f"photo: {photo.shape[1]}x{photo.shape[0]} is smaller than the frame {self.w}x{self.h}")
        self.motion, self.n, self.speed = motion, int(frames), float(speed)
        self.photo = photo
        self._x0, self._y0 = (self.w - 1) / 2, (self.h - 1) / 2
        ph, pw = photo.shape[:2]
        self._centre = ((pw - 1) / 2, (ph - 1) / 2)
        # The foreground texture comes from the photo's top-left quarter, the background path stays central.
        self._fg_origin = (pw * 0.25, ph * 0.25)
        self._fg_axes = (self.w * 0.2, self.h * 0.25)
        self._fg_start = (self.w * 0.3, self.h * 0.45)
        self._fg_velocity = (3.1 * speed, 1.6 * speed)
        self.frames = [self._render(t) for t in range(self.n)]

    # --- the motion ---
    def camera(self, t: float) -> _Camera:
        cx, cy = self._centre
        v = self.speed
        if self.motion == "pan":
            return _Camera(cx + 2.13 * v * t - 2.13 * v * self.n / 2, cy + 1.07 * v * t - 1.07 * v * self.n / 2, 1.0, 0.0)
        if self.motion == "zoom":
            return _Camera(cx, cy, 1.015 ** (v * (t - self.n / 2)), 0.0)
        if self.motion == "rotate":
            return _Camera(cx, cy, 1.0, math.radians(0.6 * v * (t - self.n / 2)))
        return _Camera(cx + 1.07 * v * (t - self.n / 2), cy - 0.53 * v * (t - self.n / 2), 1.0, 0.0)

    def _fg_centre(self, t: float) -> tuple[float, float]:
        return self._fg_start[0] + self._fg_velocity[0] * t, self._fg_start[1] + self._fg_velocity[1] * t

    def _grid(self):
        y, x = np.mgrid[0:self.h, 0:self.w].astype(np.float64)
        return x, y

    def alpha(self, t: int) -> np.ndarray:
        """(H, W) coverage of frame t by the foreground region (0 without one), anti-aliased over a pixel."""
        if self.motion != "object":
            return np.zeros((self.h, self.w), np.float32)
        x, y = self._grid()
        return self._alpha_at(t, x, y)

    def _alpha_at(self, t, x, y):
        mx, my = self._fg_centre(t)
        ax, ay = self._fg_axes
        r = np.sqrt(((x - mx) / ax) ** 2 + ((y - my) / ay) ** 2)
        return np.clip(0.5 - (r - 1.0) * min(ax, ay), 0.0, 1.0).astype(np.float32)

    def _render(self, t: int) -> np.ndarray:
        import cv2

        x, y = self._grid()
        px, py = self.camera(t).to_photo(x, y, self._x0, self._y0)
        frame = cv2.remap(self.photo, px.astype(np.float32), py.astype(np.float32), cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT_101)
        if self.motion == "object":
            mx, my = self._fg_centre(t)
            fx = (x - mx + self._fg_origin[0]).astype(np.float32)
            fy = (y - my + self._fg_origin[1]).astype(np.float32)
            fg = cv2.remap(self.photo, fx, fy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
            a = self.alpha(t)[:, :, None]
            frame = a * fg + (1 - a) * frame
        return np.clip(frame, 0.0, 1.0).astype(np.float32)

    # --- the truth ---
    def flow(self, t: int, u: int) -> np.ndarray:
        """(H, W, 2) float32 true flow from frame t to frame u (warp(frames[u], flow) ~ frames[t])."""
        x, y = self._grid()
        px, py = self.camera(t).to_photo(x, y, self._x0, self._y0)
        qx, qy = self.camera(u).from_photo(px, py, self._x0, self._y0)
        flow = np.stack([qx - x, qy - y], axis=-1)
        if self.motion == "object":
            fg = self.alpha(t) >= 0.5
            flow[fg] = [self._fg_velocity[0] * (u - t), self._fg_velocity[1] * (u - t)]
        return flow.astype(np.float32)

    def occlusion(self, t: int, u: int) -> np.ndarray:
        """(H, W) bool: pixels of frame t not visible in frame u (out of frame, or covered by the region)."""
        x, y = self._grid()
        f = self.flow(t, u).astype(np.float64)
        qx, qy = x + f[..., 0], y + f[..., 1]
        out = (qx < 0) | (qx > self.w - 1) | (qy < 0) | (qy > self.h - 1)
        if self.motion == "object":
            background = self.alpha(t) < 0.5
            out |= background & (self._alpha_at(u, qx, qy) >= 0.5)
            # Pixels on the region's soft edge mix both motions: no single flow is true there.
            edge = (self.alpha(t) > 0) & (self.alpha(t) < 1)
            out |= edge
        return out


def photo(name: str = "astronaut", *, size: int | None = None) -> np.ndarray:
    """A real photograph as (H, W, 3) float32 in [0, 1]: a scikit-image sample by name ('astronaut',
    'coffee', 'chelsea', ...) or a file path; `size` area-reduces it so its long side is at most that."""
    from pathlib import Path

    if Path(name).suffix:
        from .imageio import read_image

        img = read_image(name)[:, :, :3].astype(np.float32)
    else:
        from skimage import data

        img = getattr(data, name)().astype(np.float32) / 255.0
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
    if size is not None and max(img.shape[:2]) > size:
        from . import kernels

        k = size / max(img.shape[:2])
        img = kernels.resample(np.ascontiguousarray(img), (round(img.shape[0] * k), round(img.shape[1] * k)),
                               filter="box")
    return np.ascontiguousarray(img, dtype=np.float32)


def degraded_lr(frames, seed: int = 7) -> list[np.ndarray]:
    """Each frame reduced by 2 (antialiased bicubic) and degraded on its own, as footage is: Gaussian noise
    4/255 drawn with seed + its index, then JPEG quality 80. The input of the temporal SR measurements."""
    from . import kernels
    from .train import degrade

    out = []
    for k, f in enumerate(frames):
        lr = kernels.resample(f, (f.shape[0] // 2, f.shape[1] // 2), filter="bicubic")
        lr = degrade.gaussian_noise(lr, 4 / 255, np.random.default_rng(seed + k))
        out.append(np.clip(degrade.jpeg(lr, 80), 0, 1).astype(np.float32))
    return out
