"""The native kernels for numpy arrays, torch tensors (CPU or CUDA) and CuPy arrays.

Every function takes the caller's arrays as they are (any strides, no copies), writes into a new array
of the caller's library and device (or into `out=`), and returns it. Images are (N, C, H, W) or
(H, W, C), float32 or float16. On CUDA the work is queued on the caller's current torch or CuPy stream
and nothing waits for the device, except the optional non-finite flow checks (which wait on that stream).
Bad arguments raise ValueError naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import _native
from ._arrays import capsule, check_array, check_same_device, empty, nchw, stream_of
from ._arrays import wrap_cuda_pointer  # noqa: F401  (public: foreign device buffers as CuPy arrays)

INTERPOLATIONS = ("bilinear", "bicubic")
BORDERS = ("clamp", "zero", "reflect")
FILTERS = ("box", "bilinear", "bicubic", "lanczos3")


def cuda_available() -> bool:
    """True when clarifx was built with CUDA and a CUDA device is usable."""
    return bool(_native.built_with_cuda and _native.cuda_available())


def _check_shape(x, name: str, shape: tuple[int, ...]) -> None:
    """ValueError naming `name` unless x has exactly `shape` (in the caller's own layout)."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def _output(out, name: str, like, shape: tuple[int, ...]):
    if out is None:
        return empty(like, shape)
    check_array(out, name, (len(shape),))
    _check_shape(out, name, shape)
    return out


def _caps(stream: int, *arrays):
    """DLPack capsules of the NCHW views of `arrays` (None stays None)."""
    return [None if a is None else capsule(nchw(a), stream) for a in arrays]


def _with_channels(image, channels: int) -> tuple[int, ...]:
    """The shape of `image` in its own layout (NCHW or HWC) with `channels` channels."""
    if image.ndim == 4:
        n, _, h, w = image.shape
        return (n, channels, h, w)
    h, w, _ = image.shape
    return (h, w, channels)


def warp(image, flow, *, interp: str = "bilinear", border: str = "clamp", check_finite: bool = True,
         out=None, mask=None):
    """Backward-warp `image` by a dense `flow`: out[y, x] = image[y + flow_y[y, x], x + flow_x[y, x]].

    image: (N, C, H, W) or (H, W, C). flow: (N, 2, H, W) or (H, W, 2) to match, in pixels, channel 0 = dx.
    interp: 'bilinear' or 'bicubic' (Keys, a = -0.5). border: where taps fall outside the image,
    'clamp' repeats the edge, 'zero' reads 0, 'reflect' mirrors about the edge pixels.
    Returns (warped, mask): mask has one channel, 1.0 where the sample point lies inside the image
    (0 <= x <= W-1 and 0 <= y <= H-1), else 0.0.
    check_finite: raise ValueError on NaN/inf flow (on CUDA this waits on the current stream; pass
    False to stay fully asynchronous, and non-finite samples then read 0 with mask 0).
    """
    check_array(image, "image", (3, 4))
    check_array(flow, "flow", (image.ndim,))
    _check_shape(flow, "flow", _with_channels(image, 2))
    check_same_device(image=image, flow=flow, out=out, mask=mask)
    out = _output(out, "out", image, tuple(image.shape))
    mask = _output(mask, "mask", image, _with_channels(image, 1))
    stream = stream_of(image)
    _native.warp(*_caps(stream, image, flow, out, mask), interp, border, check_finite, stream)
    return out, mask


def occlusion(forward, backward, *, alpha1: float = 0.01, alpha2: float = 0.5, check_finite: bool = True, out=None):
    """Occlusion mask from forward-backward flow consistency (Sundaram et al., ECCV 2010).

    forward: flow from frame t to t+1, backward: from t+1 to t, both (N, 2, H, W) or (H, W, 2).
    A pixel p is occluded (1.0) when p + forward(p) leaves the frame, or when the round trip does not
    come back: |f + b|^2 > alpha1 * (|f|^2 + |b|^2) + alpha2, with f = forward(p) and
    b = backward bilinearly sampled at p + f. Returns a one-channel mask in forward's layout and dtype.
    """
    check_array(forward, "forward", (3, 4))
    check_array(backward, "backward", (forward.ndim,))
    _check_shape(forward, "forward", _with_channels(forward, 2))
    _check_shape(backward, "backward", tuple(forward.shape))
    check_same_device(forward=forward, backward=backward, out=out)
    out = _output(out, "out", forward, _with_channels(forward, 1))
    stream = stream_of(forward)
    _native.occlusion(*_caps(stream, forward, backward, out), float(alpha1), float(alpha2), check_finite, stream)
    return out


def fused_upsample(features, base, scale: int, *, filter: str = "bilinear", clamp: tuple[float, float] | None = None,
                   out=None):
    """out = pixel_shuffle(features, scale) + resample(base, scale, filter), optionally clamped, in one pass.

    The reconstruction tail of a super-resolution network. features: (N, C*scale^2, H, W),
    base: (N, C, H, W), out: (N, C, H*scale, W*scale); scale 2, 3 or 4. The base is resampled exactly
    as resample() would (filter 'box' is nearest-neighbour at these scales).
    """
    check_array(features, "features", (4,))
    check_array(base, "base", (4,))
    check_same_device(base=base, features=features, out=out)
    n, c, h, w = base.shape
    s = int(scale)
    out = _output(out, "out", base, (n, c, h * s, w * s))
    lo, hi = (None, None) if clamp is None else (float(clamp[0]), float(clamp[1]))
    stream = stream_of(base)
    _native.fused_upsample(*_caps(stream, features, base, out), s, filter, lo, hi, stream)
    return out


def resample(image, size: tuple[int, int] | None = None, *, scale: float | None = None, filter: str = "lanczos3",
             out=None):
    """Separable resampling to `size` = (height, width), or by `scale`, with an antialiased reduction.

    filter: 'box', 'bilinear', 'bicubic' (Keys, a = -0.5) or 'lanczos3'. Pixel centres are at i + 0.5;
    when reducing, the filter widens by the reduction factor; taps outside the image are dropped and
    the rest renormalised (the convention of PIL and of torch's antialiased interpolate).
    image: (N, C, H, W) or (H, W, C).
    """
    check_array(image, "image", (3, 4))
    check_same_device(image=image, out=out)
    h, w = (image.shape[2], image.shape[3]) if image.ndim == 4 else (image.shape[0], image.shape[1])
    if (size is None) == (scale is None):
        raise ValueError("resample: give exactly one of size or scale")
    if size is None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
    oh, ow = (int(v) for v in size)
    if oh < 1 or ow < 1:
        raise ValueError(f"size must be at least 1x1, got {tuple(size)}")
    shape = (image.shape[0], image.shape[1], oh, ow) if image.ndim == 4 else (oh, ow, image.shape[2])
    out = _output(out, "out", image, shape)
    stream = stream_of(image)
    _native.resample(*_caps(stream, image, out), filter, stream)
    return out


@dataclass(frozen=True)
class GrainParams:
    """Film grain, per channel (channel 0 is the reference, e.g. luma or green, whose grain the others can share).

    strength: per channel, points (intensity, std) of a piecewise-linear curve giving the grain's
        standard deviation at each pixel intensity (held constant beyond the first and last points);
        the kernels read it sampled at 256 intensities over [0, 1].
    ar_lag: 0..3, the reach of the auto-regressive filter that gives grain its size and texture.
    ar_coeffs: (channels, 2*lag*(lag+1)) filter weights on the causal neighbours (dy = -lag..0,
        dx = -lag..lag, raster order, stopping before the pixel itself). A filter that makes the grain
        grow without bound is rejected with ValueError when used, for every seed and frame alike.
    ar_luma: (channels,) weight of channel 0's grain at the same position (entry 0 is ignored);
        correlates the colour channels' grain as in real film.
    The exact model is documented in csrc/include/clarifx/grain.h.
    """

    strength: Sequence[Sequence[tuple[float, float]]]
    ar_lag: int = 0
    ar_coeffs: Sequence[Sequence[float]] | None = None
    ar_luma: Sequence[float] | None = None
    _lut: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        curves = []
        for c, points in enumerate(self.strength):
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            valid = np.all(np.isfinite(pts)) and np.all(np.diff(pts[:, 0]) > 0) and np.all(pts[:, 1] >= 0)
            if len(pts) == 0 or not valid:
                raise ValueError(f"strength[{c}]: expected (intensity, std) points with increasing intensity "
                                 "and std >= 0")
            grid = np.linspace(0.0, 1.0, _native.grain_lut_size)
            curves.append(np.interp(grid, pts[:, 0], pts[:, 1]))
        if not curves:
            raise ValueError("strength: give a curve for at least one channel")
        object.__setattr__(self, "_lut", np.asarray(curves, dtype=np.float32))

    @property
    def channels(self) -> int:
        return len(self._lut)

    def _native_args(self):
        c, lag = self.channels, int(self.ar_lag)
        taps = 2 * lag * (lag + 1)
        coeffs = np.zeros((c, taps)) if self.ar_coeffs is None else np.asarray(self.ar_coeffs, dtype=np.float64)
        luma = np.zeros(c) if self.ar_luma is None else np.asarray(self.ar_luma, dtype=np.float64)
        return (c, lag, coeffs.astype(np.float32).ravel().tolist(), luma.astype(np.float32).ravel().tolist())

    def lut(self) -> np.ndarray:
        """(channels, 256) grain standard deviation sampled at intensities linspace(0, 1, 256)."""
        return self._lut.copy()


def grain_template(params: GrainParams, *, seed: int = 0, frame: int = 0) -> np.ndarray:
    """The (channels, 64, 64) unit-RMS grain templates that grain() tiles for this seed and frame."""
    return _native.grain_template(*params._native_args(), int(seed) & (2**64 - 1), int(frame))


def grain(image, params: GrainParams, *, seed: int = 0, frame: int = 0, clip: tuple[float, float] | None = None,
          out=None):
    """Add film grain: out = image + strength(image) * G, deterministic from (seed, frame).

    image: (N, C, H, W) or (H, W, C) with at least params.channels channels (the rest, alpha say, pass
    through unchanged); in a batch, item n is frame `frame + n`. The strength is looked up at each pixel's
    own value, clamped to [0, 1]. clip: optional (lo, hi) bounds for the grain channels' result.
    `out=image` adds the grain in place. Raises ValueError if params' AR filter is unstable.
    """
    check_array(image, "image", (3, 4))
    check_same_device(image=image, out=out)
    out = _output(out, "out", image, tuple(image.shape))
    lo, hi = (None, None) if clip is None else (float(clip[0]), float(clip[1]))
    stream = stream_of(image)
    _native.grain(*_caps(stream, image, out), *params._native_args(), params._lut.ravel().tolist(),
                  int(seed) & (2**64 - 1), int(frame), lo, hi, stream)
    return out
