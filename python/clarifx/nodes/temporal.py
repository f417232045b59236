"""Temporal nodes: Flow, TemporalDenoise and TemporalSuperResolution.

Each output frame depends only on a fixed window of input frames (a motion-compensated sliding
window, clarifx.temporal), so a clip rendered in one run or in chunks gives bit-identical frames: a
chunk needs only the window's handle frames each side, which frames_needed asks for. Flows, and the
per-frame results several outputs share, are cached inside the node while their frames are in the
window and dropped when it moves on or the render ends (close()).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import flow as _flow
from .. import temporal
from ..frame import RAW, SRGB
from .base import NodeType, Param, Want, register
from .restore import _DEVICE, _PRECISION, _TILE, _TTA, assemble, run_model, with_strength

_PRESET = Param("preset", "choice", "medium", "DIS optical flow quality on the CPU ('fine' is about 7x "
                "slower and 3x more accurate on clean footage, no better on noisy footage).",
                choices=_flow.PRESETS)
_METHOD = Param("flow", "choice", "auto", "Flow estimator: 'dis' (OpenCV, CPU), 'pyramid' (coarse-to-fine "
                "with the native warp kernel; runs on torch devices), 'auto' (dis for CPU frames).",
                choices=_flow.METHODS)


class _Windowed(NodeType):
    """A node whose frame t needs input frames t-reach..t+reach, clipped to the input's range."""

    def __init__(self):
        self._range: tuple[int, int] | None = None
        self._window: temporal.Window | None = None
        self._results: dict[int, tuple] = {}  # per-frame results several outputs share

    def reach(self, params) -> int:
        raise NotImplementedError

    def want(self, params, index, clip):
        return Want(colorspace=SRGB, premultiplied=False)  # flow and models see display-referred colour

    def clip(self, params, inputs):
        self._range = (inputs[0].first, inputs[0].last)
        return super().clip(params, inputs)

    def frames_needed(self, params, t, index):
        first, last = self._range if self._range else (None, None)
        return temporal.window_frames(t, self.reach(params), first, last)

    def window(self, params) -> temporal.Window:
        if self._window is None or (self._window.preset, self._window.method) != (params["preset"], params["flow"]):
            self._window = temporal.Window(preset=params["preset"], method=params["flow"])
        return self._window

    def close(self):
        self._window = None
        self._results.clear()


def _rgb(frame, node: str) -> np.ndarray:
    return np.ascontiguousarray(frame.pixels[:, :, frame.colour_indices(node)])


def _check_sizes(node: str, frames: dict) -> None:
    sizes = {n: f.pixels.shape[:2] for n, f in frames.items()}
    first = next(iter(sizes.values()))
    for n, s in sizes.items():
        if s != first:
            raise ValueError(f"{node}: frame {n} is {s[1]}x{s[0]}, the others {first[1]}x{first[0]}")


@register
class Flow(_Windowed):
    name = "Flow"
    help = ("Optical flow to the next and the previous frame as motion vectors: forward.u/v from frame t to "
            "t+1, backward.u/v from t to t-1, in pixels, v pointing down the rows (pixel (x, y) of frame t "
            "shows what frame t+1 shows at (x + forward.u, y + forward.v)); zero at the clip's ends.")
    params = (_PRESET, _METHOD)
    CHANNELS = ("forward.u", "forward.v", "backward.u", "backward.v")

    def reach(self, params):
        return 1

    def clip(self, params, inputs):
        clip = super().clip(params, inputs)
        return dataclasses.replace(clip, channels=self.CHANNELS, colorspace=RAW, premultiplied=False)

    def render(self, params, t, inputs):
        frames = {n: _rgb(f, self.name) for n, f in inputs[0].items()}
        _check_sizes(self.name, inputs[0])
        win = self.window(params)
        h, w = frames[t].shape[:2]
        out = np.zeros((h, w, 4), np.float32)
        if t + 1 in frames:
            out[:, :, 0:2] = win.flow(t, t + 1, frames)
        if t - 1 in frames:
            out[:, :, 2:4] = win.flow(t, t - 1, frames)
        win.keep(frames)
        return inputs[0][t].replace(pixels=out, channels=self.CHANNELS, colorspace=RAW, premultiplied=False)


_RADIUS = Param("radius", "int", 2, "Frames used each side of the current one.", min=1, max=6)
_FUSION = Param("fusion", "choice", "learned", "How much an aligned neighbour may count at each pixel: "
                "'rule': as far as its difference to the frame stays within the noise level (see tolerance); "
                "'learned': that, or more where the embedded fuse-weights model trusts it more, which "
                "averages away the block flicker of compressed video that the rule refuses.",
                choices=temporal.FUSIONS)


def _weights(params, current, aligned, masks, **rule):
    """The neighbours' weights as params['fusion'] asks; `rule` goes to temporal.weights. 'learned' takes
    the larger of the two weights: the rule's are safe wherever a neighbour differs by no more than noise
    explains (alone, the net's were 0.06-0.33 dB behind them on noisy known-motion clips), the net's reach
    what the rule refuses (vtest: E_warp -51% with them, -21% without)."""
    ws = temporal.weights(current, aligned, masks, tolerance=params["tolerance"], **rule)
    if params["fusion"] == "learned":
        ws = [np.maximum(r, n) for r, n in zip(ws, temporal.learned_weights(current, aligned, masks))]
    return ws


@register
class TemporalDenoise(_Windowed):
    name = "TemporalDenoise"
    help = ("Remove noise with the neighbouring frames: frames t-radius..t+radius are aligned to frame t by "
            "optical flow (native warp kernel) and averaged where they agree with it (occluded or "
            "mismatching pixels keep frame t's value); then, if `model` names a same-size restoration model, "
            "it cleans what is left. `strength` scales the whole correction.")
    params = (
        _RADIUS,
        _FUSION,
        Param("tolerance", "float", 1.0, "How far beyond the noise level a neighbour may differ before the "
              "rule stops counting it (higher: more smoothing, more risk of ghosting).", min=0.05, max=100.0),
        Param("model", "string", "", "Installed same-size model run after the temporal fusion ('' : none)."),
        Param("strength", "float", 1.0, "How much of the correction to apply (0: the input, 1: all of it).",
              min=0.0, max=2.0),
        _PRESET, _METHOD, _TILE, _PRECISION, _DEVICE, _TTA,
    )

    def reach(self, params):
        return params["radius"]

    def is_identity(self, params, inputs):
        return 0 if params["strength"] == 0.0 else None  # out = cur + strength * (clean - cur)

    def render(self, params, t, inputs):
        _check_sizes(self.name, inputs[0])
        frames = {n: _rgb(f, self.name) for n, f in inputs[0].items()}
        cur = frames[t]
        win = self.window(params)
        aligned, masks = win.aligned(t, frames)
        win.keep(frames)
        ws = _weights(params, cur, aligned, masks, noise_var=temporal.noise_sigma(cur) ** 2)
        clean = temporal.average(cur, aligned, ws)
        frame = inputs[0][t]
        colour = frame.colour_indices(self.name)
        if params["model"]:
            clean, _ = run_model(self.name, params, frame.replace(pixels=_with_rgb(frame, clean, colour)), t)
        return assemble(frame, with_strength(cur, clean.astype(np.float32), params["strength"]), colour)


def _with_rgb(frame, rgb, colour) -> np.ndarray:
    pixels = frame.pixels.copy()
    pixels[:, :, colour] = rgb
    return pixels


@register
class TemporalSuperResolution(_Windowed):
    name = "TemporalSuperResolution"
    help = ("Upscale without flicker: each frame is first denoised with its neighbours (as TemporalDenoise, "
            "without a model), upscaled by `model`, and the upscaled frames t-radius..t+radius are then "
            "aligned to frame t by the source's optical flow and averaged with the same weights (occluded or "
            "mismatching pixels keep frame t's own upscale). Frame t needs source frames t-2r..t+2r.")
    params = (
        Param("model", "string", "fast-x2", "Installed upscaling model (see `clarifx models list`)."),
        _RADIUS,
        _FUSION,
        Param("tolerance", "float", 3.0, "How far beyond the noise level a neighbour may differ before the "
              "rule stops counting it (higher: steadier, more risk of ghosting).", min=0.05, max=100.0),
        _PRESET, _METHOD, _TILE, _PRECISION, _DEVICE, _TTA,
    )

    def reach(self, params):
        return 2 * params["radius"]

    def clip(self, params, inputs):
        from .restore import _network

        clip = super().clip(params, inputs)
        s = _network(params["model"]).scale
        return dataclasses.replace(clip, width=clip.width * s, height=clip.height * s)

    def _fused_weights(self, params, n, frames):
        """Frame n's neighbours within the radius aligned onto it, their weights and the fused frame n."""
        near = {k: frames[k] for k in temporal.window_frames(n, params["radius"]) if k in frames}
        aligned, masks = self.window(params).aligned(n, near)
        ws = _weights(params, frames[n], aligned, masks)
        return near, ws, temporal.average(frames[n], aligned, ws)

    def render(self, params, t, inputs):
        _check_sizes(self.name, inputs[0])
        frame = inputs[0][t]
        frames = {n: _rgb(f, self.name) for n, f in inputs[0].items()}
        colour = frame.colour_indices(self.name)
        near = temporal.window_frames(t, params["radius"], min(frames), max(frames))
        for n in [k for k in self._results if k not in near]:
            del self._results[n]
        for n in near:  # each upscale is shared by 2r + 1 outputs: made once while it is in the window,
            if n not in self._results:  # and kept with the weights that made it, which frame n's output reuses
                lr, ws, fused = self._fused_weights(params, n, frames)
                src = inputs[0][n]
                up, _ = run_model(self.name, params, src.replace(pixels=_with_rgb(src, fused, colour)), n)
                self._results[n] = (up, sorted(lr), ws)
        up, keys, ws = self._results[t]
        ups = {n: self._results[n][0] for n in keys}
        aligned, _ = self.window(params).aligned(t, {n: frames[n] for n in keys}, images=ups)
        out = temporal.average(up, aligned, ws)
        self.window(params).keep(frames)
        return assemble(frame, out, colour)
