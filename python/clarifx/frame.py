"""What flows between sources, nodes and sinks: a Frame (pixels + metadata) and a clip's ClipInfo.

Pixels are (H, W, C) float32 arrays: numpy on the CPU (a torch or CuPy array on a GPU), integer
formats scaled to [0, 1], float formats as stored (scene-linear values above 1.0 kept). Channel
names follow OpenEXR ("R", "G", "B", "A", then any extra channels such as "Z"); colour channels come
first, then alpha. A frame with alpha is premultiplied unless `premultiplied` says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

# OCIO colourspace names (present in both ocio://default and ocio://studio-config-latest) that
# sources assign when a file does not name its own.
LINEAR = "Linear Rec.709 (sRGB)"      # float EXR / TIFF: scene-linear, Rec.709 primaries
SRGB = "sRGB Encoded Rec.709 (sRGB)"  # 8/16-bit PNG, JPEG, TIFF
REC709 = "Gamma 2.4 Encoded Rec.709"  # BT.709 / BT.1886 video, DPX without a log transfer
PQ_REC2020 = "Rec.2100-PQ - Display"  # HDR10 video
RAW = "Raw"                           # data that must not be colour-converted


class FootageError(OSError):
    """Footage cannot be read or written; the message names the file (and frame where there is one)."""


@dataclass
class Frame:
    pixels: Any                       # (H, W, C) float32
    channels: tuple[str, ...]         # one name per channel, e.g. ("R", "G", "B", "A")
    colorspace: str                   # OCIO colourspace name of the colour channels
    number: int = 0                   # frame number in its clip
    premultiplied: bool = True        # colour already multiplied by alpha (only meaningful with "A")
    pixel_aspect: float = 1.0
    tags: dict[str, Any] = field(default_factory=dict)  # carried to the output (video colour tags, ...)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def alpha_index(self) -> int | None:
        return self.channels.index("A") if "A" in self.channels else None

    def colour_indices(self, node: str) -> list[int]:
        """The indices of R, G and B, or ValueError naming `node` and this frame when one is missing."""
        colour = [i for i, c in enumerate(self.channels) if c in ("R", "G", "B")]
        if len(colour) != 3:
            raise ValueError(f"{node}: needs R, G and B channels, frame {self.number} has {self.channels}")
        return colour

    def replace(self, **changes) -> "Frame":
        """A new Frame sharing everything not named (pixels are not copied)."""
        return dataclasses.replace(self, **changes)


@dataclass
class ClipInfo:
    """What a file, sequence or video holds (`clarifx info` prints this)."""

    path: str                         # file, sequence pattern or video, as given
    kind: str                         # "image", "sequence" or "video"
    width: int
    height: int
    channels: tuple[str, ...]
    first: int                        # first and last frame numbers, inclusive
    last: int
    colorspace: str
    premultiplied: bool = True
    pixel_aspect: float = 1.0
    fps: Fraction | None = None       # None for stills and sequences without a rate
    missing: tuple[int, ...] = ()     # holes in a sequence between first and last
    format: str = ""                  # human-readable storage, e.g. "openexr half", "h264 yuv420p10le"
    tags: dict[str, Any] = field(default_factory=dict)  # video colour tags (see video.py), codec, ...

    @property
    def frames(self) -> int:
        return self.last - self.first + 1 - len(self.missing)


COLOUR_CHANNELS = ("R", "G", "B")


def premultiply(pixels, alpha: int, colour) -> None:
    """Multiply channels `colour` of (H, W, C) numpy `pixels` by channel `alpha`, in place."""
    a = pixels[:, :, alpha]
    for c in colour:
        pixels[:, :, c] *= a


def unpremultiply(pixels, alpha: int, colour) -> None:
    """Divide channels `colour` by channel `alpha` in place; where alpha is 0 there is no straight colour
    to recover and the premultiplied value stays."""
    a = pixels[:, :, alpha]
    for c in colour:
        np.divide(pixels[:, :, c], a, out=pixels[:, :, c], where=a > 0)


def with_alpha_state(frame: Frame, premultiplied: bool) -> Frame:
    """`frame` with its colour multiplied by alpha (or divided, where alpha > 0), in place on its pixels.
    Frames without alpha, or already in that state, come back as they are."""
    a = frame.alpha_index
    if a is not None and frame.premultiplied != premultiplied:
        colour = [i for i, name in enumerate(frame.channels) if name in COLOUR_CHANNELS]
        (premultiply if premultiplied else unpremultiply)(frame.pixels, a, colour)
    return frame.replace(premultiplied=premultiplied)
