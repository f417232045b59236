"""Nodes that reshape or re-encode pictures: Resize, Colorspace, Premult, Unpremult."""

from __future__ import annotations

import dataclasses

from .. import colour, kernels
from ..frame import LINEAR
from .base import LINEAR_LIGHT, NodeType, Param, Want, register

_FILTERS = {"lanczos": "lanczos3", "bicubic": "bicubic", "bilinear": "bilinear", "box": "box"}


@register
class Resize(NodeType):
    name = "Resize"
    help = ("Resample to a new size with clarifx's native separable filter (antialiased when reducing), "
            "in linear light with premultiplied alpha.")
    params = (
        Param("scale", "float", 2.0, "Size factor; 0 to use width and height instead.", min=0.0, max=16.0),
        Param("width", "int", 0, "Output width in pixels (0: from height and the aspect ratio, or from scale).",
              min=0, max=65536),
        Param("height", "int", 0, "Output height in pixels (0: from width and the aspect ratio, or from scale).",
              min=0, max=65536),
        Param("filter", "choice", "lanczos", "Resampling filter.", choices=tuple(_FILTERS),
              aliases={"lanczos3": "lanczos", "cubic": "bicubic", "linear": "bilinear"}),
    )

    def want(self, params, index, clip):
        return Want(colorspace=LINEAR_LIGHT, premultiplied=True)

    def _size(self, params, width: int, height: int) -> tuple[int, int]:
        w, h = params["width"], params["height"]
        if w and h:
            return h, w
        if w:
            return max(1, round(height * w / width)), w
        if h:
            return h, max(1, round(width * h / height))
        if params["scale"] == 0:
            raise ValueError("Resize: set scale, or width and/or height")
        s = params["scale"]
        return max(1, round(height * s)), max(1, round(width * s))

    def clip(self, params, inputs):
        clip = super().clip(params, inputs)
        h, w = self._size(params, clip.width, clip.height)
        return dataclasses.replace(clip, width=w, height=h)

    def is_identity(self, params, inputs):
        clip = inputs[0]  # resampling to the same size returns the samples themselves
        return 0 if self._size(params, clip.width, clip.height) == (clip.height, clip.width) else None

    def render(self, params, t, inputs):
        frame = inputs[0][t]
        size = self._size(params, frame.width, frame.height)
        return frame.replace(pixels=kernels.resample(frame.pixels, size, filter=_FILTERS[params["filter"]]))


@register
class Colorspace(NodeType):
    name = "Colorspace"
    help = "Convert colour from one OpenColorIO colourspace to another (alpha and extra channels untouched)."
    params = (
        Param("from_space", "string", "auto",
              "Colourspace of the input ('auto': what the input says it is; a name re-interprets it)."),
        Param("to_space", "string", LINEAR, "Colourspace to convert to (a name or alias in the OCIO config)."),
    )

    def want(self, params, index, clip):
        # With 'auto' the graph converts on the way in, so nothing is converted twice.
        if params["from_space"] == "auto":
            return Want(colorspace=params["to_space"])
        return Want()

    def clip(self, params, inputs):
        return dataclasses.replace(inputs[0], colorspace=colour.canonical(params["to_space"]))

    def render(self, params, t, inputs):
        frame = inputs[0][t]
        if params["from_space"] == "auto":
            return frame
        relabelled = frame.replace(pixels=frame.pixels.copy(), colorspace=colour.canonical(params["from_space"]))
        return colour.convert(relabelled, params["to_space"])


class _AlphaState(NodeType):
    premultiplied: bool

    def want(self, params, index, clip):
        return Want(premultiplied=self.premultiplied)

    def render(self, params, t, inputs):
        return inputs[0][t]


@register
class Premult(_AlphaState):
    name = "Premult"
    help = "Make colour premultiplied by alpha (no change where it already is)."
    premultiplied = True


@register
class Unpremult(_AlphaState):
    name = "Unpremult"
    help = "Make colour straight (divided by alpha where alpha > 0; no change where it already is)."
    premultiplied = False

