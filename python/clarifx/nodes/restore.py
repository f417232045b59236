"""Learned restoration nodes."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .. import kernels
from ..frame import SRGB
from .base import NodeType, Param, Want, register


@functools.lru_cache(maxsize=4)
def _network(name: str):
    """Models are loaded once per process, not per node or frame."""
    from .. import models

    return models.load(name)


@register
class SuperResolution(NodeType):
    name = "SuperResolution"
    help = ("Upscale with a learned model from the registry (`clarifx models list`). The model sees "
            "display-referred sRGB colour; alpha and extra channels are resampled with Lanczos-3.")
    params = (
        Param("model", "string", "waifu2x-photo-x2", "Installed model name (see `clarifx models list`)."),
        Param("tile", "int", 0, "Tile size in input pixels (0: chosen to keep the work under 1 GiB).",
              min=0, max=8192),
        Param("mode", "choice", "restore", "'forensic': change the model's output as little as possible so "
              "that reducing it with `kernel` gives back the input exactly, and record provenance in the "
              "output's metadata.", choices=("restore", "forensic")),
        Param("kernel", "choice", "bicubic", "Forensic mode: the reduction that made the input from the "
              "scene (antialiased).", choices=("bicubic", "box", "bilinear", "lanczos3")),
    )

    def want(self, params, index, clip):
        return Want(colorspace=SRGB, premultiplied=False)

    def clip(self, params, inputs):
        clip = super().clip(params, inputs)
        s = _network(params["model"]).scale
        return dataclasses.replace(clip, width=clip.width * s, height=clip.height * s)

    def render(self, params, t, inputs):
        import torch

        from ..models.tiling import choose_tile, run_tiled

        frame = inputs[0][t]
        net = _network(params["model"])
        colour = [i for i, c in enumerate(frame.channels) if c in ("R", "G", "B")]
        if len(colour) != 3:
            raise ValueError(f"SuperResolution: needs R, G and B channels, frame {t} has {frame.channels}")
        rgb = torch.from_numpy(np.ascontiguousarray(frame.pixels[:, :, colour])).permute(2, 0, 1)[None]
        # Nets of unpadded convolutions (border > 0) see all their context through the border, so tiles
        # need no overlap and join exactly; padded nets get 32 pixels of blended overlap.
        overlap = 0 if net.border else 32
        tile = params["tile"] or choose_tile(frame.height, frame.width, scale=net.scale, channels_out=3,
                                             budget_bytes=1 << 30, overlap=overlap)
        up = run_tiled(net, rgb, scale=net.scale, tile=tile, overlap=overlap, border=net.border)
        h, w = frame.height * net.scale, frame.width * net.scale
        out = np.empty((h, w, len(frame.channels)), np.float32)
        out[:, :, colour] = up[0].permute(1, 2, 0).numpy()
        tags = frame.tags
        if params["mode"] == "forensic":
            from .. import models
            from ..models.forensic import project, provenance

            lr = np.ascontiguousarray(frame.pixels[:, :, colour])
            out[:, :, colour], rms = project(out[:, :, colour], lr, scale=net.scale, kernel=params["kernel"])
            tags = {**tags, **provenance(params["model"], models.installed_path(params["model"]), params,
                                         kernel=params["kernel"]), "clarifx:forensic_rms": f"{rms:.3g}"}
        rest = [i for i in range(len(frame.channels)) if i not in colour]
        if rest:
            out[:, :, rest] = kernels.resample(np.ascontiguousarray(frame.pixels[:, :, rest]), (h, w),
                                               filter="lanczos3")
        if frame.alpha_index is not None:
            np.clip(out[:, :, frame.alpha_index], 0.0, 1.0, out=out[:, :, frame.alpha_index])
        return frame.replace(pixels=out, tags=tags)
