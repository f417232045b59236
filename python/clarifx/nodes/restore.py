"""Learned restoration nodes: SuperResolution and Denoise share one way of running a model on a frame."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .. import kernels
from ..frame import SRGB, Frame
from ..models import precision, working
from .base import NodeType, Param, Want, register


@functools.lru_cache(maxsize=4)
def _network(name: str):
    """Models are loaded once per process, not per node or frame."""
    from .. import models

    if models.card(name).task == "fusion":
        raise ValueError(f"model '{name}' weighs neighbouring frames inside the temporal nodes; it does not "
                         "make images (see `clarifx models list` for image models)")
    return models.load(name)


@functools.lru_cache(maxsize=4)
def _runnable(name: str, precision_: str, device: str):
    """(module, dtype): the model made ready for `precision` on `device`, once per process."""
    return precision.prepare(_network(name), precision_, device)


@functools.lru_cache(maxsize=8)
def _overlap(name: str) -> int:
    """Tile overlap that makes tiled output equal the untiled one: twice the model's receptive radius, measured
    once (models.tiling.exact_overlap; capped at 64 for nets that see farther, whose seams are then feathered)."""
    from ..models.tiling import exact_overlap

    net = _network(name)
    return exact_overlap(net, net.scale, border=net.border)[0]


def _device(node: str, params: dict) -> str:
    """Where the model runs; ValueError naming the node and model when its precision cannot run there."""
    where = f"{node}: model '{params['model']}'"
    device = precision.resolve(params["precision"], params["device"], where=where)
    precision.check(_network(params["model"]), params["precision"], where=f"{where}: precision int8")
    return device


_TILE = Param("tile", "int", 0, "Tile size in input pixels (0: chosen to keep the work under 1 GiB).",
              min=0, max=8192)
_PRECISION = Param("precision", "choice", "fp32", "Number format the model runs in: fp32 anywhere; fp16 and "
                   "bf16 on a CUDA GPU; int8 on the CPU for clarifx's own models (quantized convolutions: "
                   "fast-x2 runs 1.5x as fast, 0.06 dB lower).",
                   choices=precision.PRECISIONS)
_TTA = Param("tta", "bool", False, "Self-ensemble: run the model on the 8 flips and quarter turns of the frame "
             "and average them (8x the time; fidelity-x4 +0.07 dB on the team's photos).")
_DEVICE = Param("device", "choice", "auto", "Where the model runs: 'auto' takes a CUDA GPU when there is one "
                "(and the CPU for int8).", choices=precision.DEVICES)


def run_model(node: str, params: dict, frame: Frame, t: int) -> tuple[np.ndarray, list[int]]:
    """The model's output for the frame's R, G, B (display-referred, as `want` asked) and their indices.

    Highlights above 1.0 are split off before the model and added back after it (models/working.py),
    so scene-linear values survive and the model only sees its own range."""
    import torch

    from ..models.tiling import choose_tile, run_tiled

    colour = frame.colour_indices(node)
    device = _device(node, params)
    net = _network(params["model"])
    module, dtype = _runnable(params["model"], params["precision"], device)
    base, excess = working.split(np.ascontiguousarray(frame.pixels[:, :, colour]))
    rgb = torch.from_numpy(base).permute(2, 0, 1)[None]

    def fit(overlap):  # the largest tile whose work stays under 1 GiB; None: the whole frame fits
        return choose_tile(frame.height, frame.width, scale=net.scale, channels_out=3, budget_bytes=1 << 30,
                           overlap=overlap)

    tile, overlap = params["tile"] or fit(0), 0
    if tile is not None and tile < max(frame.height, frame.width):  # tiled: measure the overlap it needs
        overlap = _overlap(params["model"])
        tile = params["tile"] or fit(overlap)
        overlap = min(overlap, tile // 2)  # a user's tile below twice the overlap still runs, feathered
    if params["tta"]:
        from ..models.ensemble import SelfEnsemble

        module = SelfEnsemble(module)
    with precision.context(params["precision"], device):
        out = run_tiled(module, rgb, scale=net.scale, tile=tile, overlap=overlap, border=net.border,
                        device=device, dtype=dtype)
    return working.join(out[0].permute(1, 2, 0).numpy(), excess), colour


def with_strength(src: np.ndarray, result: np.ndarray, strength: float) -> np.ndarray:
    """src + strength * (result - src), in `result`'s memory: how much of a correction to apply
    (0: the input as it is, which is why nodes using it are the identity at strength 0)."""
    if strength != 1.0:
        result -= src
        result *= np.float32(strength)
        result += src
    return result


def assemble(frame: Frame, rgb: np.ndarray, colour: list[int], tags=None) -> Frame:
    """A frame of the model output's size: its R, G, B, with alpha and other channels resampled by Lanczos-3."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w, len(frame.channels)), np.float32)
    out[:, :, colour] = rgb
    rest = [i for i in range(len(frame.channels)) if i not in colour]
    if rest:
        others = np.ascontiguousarray(frame.pixels[:, :, rest])
        out[:, :, rest] = others if (h, w) == others.shape[:2] else kernels.resample(others, (h, w), filter="lanczos3")
    if frame.alpha_index is not None:
        np.clip(out[:, :, frame.alpha_index], 0.0, 1.0, out=out[:, :, frame.alpha_index])
    return frame.replace(pixels=out, tags=frame.tags if tags is None else tags)


@register
class SuperResolution(NodeType):
    name = "SuperResolution"
    help = ("Upscale with a learned model from the registry (`clarifx models list`). The model sees "
            "display-referred sRGB colour; highlights above 1.0 go round it (resampled with Lanczos-3 in "
            "linear light and added back), and alpha and extra channels are resampled with Lanczos-3.")
    params = (
        Param("model", "string", "fast-x2", "Installed model name (see `clarifx models list`) or a checkpoint "
              "file (.pth, .safetensors)."),
        _TILE,
        Param("mode", "choice", "restore", "'forensic': change the model's output as little as possible so "
              "that reducing it with `kernel` gives back the input exactly, and record provenance in the "
              "output's metadata.", choices=("restore", "forensic")),
        Param("kernel", "choice", "bicubic", "Forensic mode: the reduction that made the input from the "
              "scene (antialiased).", choices=("bicubic", "box", "bilinear", "lanczos3")),
        _PRECISION,
        _DEVICE,
        _TTA,
    )

    def want(self, params, index, clip):
        return Want(colorspace=SRGB, premultiplied=False)

    def clip(self, params, inputs):
        clip = super().clip(params, inputs)
        _device(self.name, params)  # refuse a precision/device that cannot run here before rendering starts
        s = _network(params["model"]).scale
        return dataclasses.replace(clip, width=clip.width * s, height=clip.height * s)

    def render(self, params, t, inputs):
        frame = inputs[0][t]
        net = _network(params["model"])
        up, colour = run_model(self.name, params, frame, t)
        tags = frame.tags
        if params["mode"] == "forensic":
            from .. import models
            from ..models.forensic import project, provenance

            lr = np.ascontiguousarray(frame.pixels[:, :, colour])
            up, rms = project(up, lr, scale=net.scale, kernel=params["kernel"])
            tags = {**tags, **provenance(params["model"], models.installed_path(params["model"]), params,
                                         kernel=params["kernel"]), "clarifx:forensic_rms": f"{rms:.3g}"}
        return assemble(frame, up, colour, tags)


@register
class Denoise(NodeType):
    name = "Denoise"
    help = ("Remove sensor noise and compression artefacts (JPEG and video blocking, ringing) with a "
            "learned model that judges how much there is by itself; `strength` scales its correction. "
            "The model sees display-referred sRGB colour; highlights above 1.0 go round it, alpha and extra "
            "channels pass through.")
    params = (
        Param("model", "string", "restore-x1", "Installed same-size model (see `clarifx models list`) or a "
              "checkpoint file."),
        Param("strength", "float", 1.0, "How much of the model's correction to apply: 0 leaves the "
              "frame as it is, 1 applies all of it, above 1 goes further.", min=0.0, max=2.0),
        _TILE,
        _PRECISION,
        _DEVICE,
        _TTA,
    )

    def want(self, params, index, clip):
        return Want(colorspace=SRGB, premultiplied=False)

    def clip(self, params, inputs):
        _device(self.name, params)
        return super().clip(params, inputs)

    def is_identity(self, params, inputs):
        return 0 if params["strength"] == 0.0 else None  # out = src + strength * (model - src)

    def render(self, params, t, inputs):
        frame = inputs[0][t]
        net = _network(params["model"])
        if net.scale != 1:
            raise ValueError(f"{self.name}: model '{params['model']}' changes the size by {net.scale}; "
                             "use SuperResolution (clarifx upscale) for it")
        clean, colour = run_model(self.name, params, frame, t)
        return assemble(frame, with_strength(frame.pixels[:, :, colour], clean, params["strength"]), colour)


@register
class Deblock(Denoise):
    """Denoise with the compression-only model as its default: the node compositors look for by name."""
    name = "Deblock"
    help = ("Remove compression artefacts (JPEG blocks and ringing, H.264/H.265 blocking) with a learned "
            "model trained on compression alone, which leaves clean pictures nearly untouched; `strength` "
            "scales its correction. Colour, highlights and alpha are handled as in Denoise.")
    params = tuple(dataclasses.replace(p, default="deblock-x1") if p.name == "model" else p
                   for p in Denoise.params)
