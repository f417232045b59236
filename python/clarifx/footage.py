"""One entry point for footage: a path names a still image, an image sequence or a video.

`open_source(path)` and `open_sink(path, ...)` pick the reader or writer (imageio / sequence / video);
everything else in clarifx goes through them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import frame as F
from .frame import ClipInfo, FootageError
from .imageio import IMAGE_EXTENSIONS
from .sequence import ImageSink, ImageSource, SequencePattern, SequenceSink, SequenceSource
from .video import VIDEO_EXTENSIONS, VideoSink, VideoSource

def kind_of(path: str | os.PathLike) -> str:
    """"sequence", "video" or "image", from the name alone."""
    text = str(path)
    if SequencePattern.parse(text) is not None:
        return "sequence"
    if Path(text).suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    return "image"


def open_source(path: str | os.PathLike):
    """A reader with `.info` (ClipInfo) and `.read(number) -> Frame`; close it (or use `with`)."""
    kind = kind_of(path)
    if kind == "sequence":
        return SequenceSource(str(path))
    if not Path(path).exists():
        raise FootageError(f"{path}: no such file")
    if kind == "video":
        return VideoSource(path)
    return ImageSource(path)


def probe(path: str | os.PathLike) -> ClipInfo:
    with open_source(path) as source:
        return source.info


def output_colorspace(path: str | os.PathLike, colorspace: str, *, float_storage: bool) -> str:
    """The colourspace to store `colorspace` frames in at `path`, by the formats' conventions: float
    images hold scene-linear light (as EXR expects), integer images and video an encoding made for
    display (sRGB; BT.709 for DPX and video, PQ kept for HDR video). Data is never converted."""
    from . import colour

    kind = kind_of(path)
    name = colour.canonical(colorspace)
    if colour.is_data(name):
        return name
    if kind == "video":
        return name if name in (F.REC709, F.PQ_REC2020) else F.REC709  # what players expect
    if float_storage:
        return name if colour.is_scene_linear(name) else F.LINEAR
    if not colour.is_scene_linear(name):
        return name
    return F.REC709 if Path(str(path)).suffix.lower() == ".dpx" else F.SRGB


def open_sink(path: str | os.PathLike, *, fps=None, codec=None, bit_depth=None, dtype=None, compression=None,
              tags=None, hdr10=None, quality=None):
    """A writer with `.write(frame)`, `.close()` (commit) and `.abort()`; sequences also `.is_complete(...)`."""
    kind = kind_of(path)
    if kind == "video":
        return VideoSink(path, fps=fps, codec=codec, bit_depth=bit_depth, tags=tags, hdr10=hdr10, quality=quality)
    if kind == "sequence":
        return SequenceSink(str(path), dtype=dtype, compression=compression)
    if Path(path).suffix.lower() not in IMAGE_EXTENSIONS:
        known = " ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
        raise ValueError(f"{path}: unknown output format '{Path(path).suffix}' (known: {known})")
    return ImageSink(path, dtype=dtype, compression=compression)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` so that it appears complete or not at all."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
