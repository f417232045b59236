"""Still images in and out through OpenImageIO, written atomically (temp name in the same folder, then rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


class ImageIOError(OSError):
    """An image could not be read or written; the message names the file."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, C) float32: integer formats scaled to [0, 1], float formats as stored."""
    import OpenImageIO as oiio

    path = Path(path)
    buf = oiio.ImageBuf(str(path))
    if buf.has_error:
        raise ImageIOError(f"{path}: cannot read image: {buf.geterror().strip()}")
    pixels = buf.get_pixels(oiio.FLOAT)
    if pixels is None or buf.has_error:
        raise ImageIOError(f"{path}: cannot decode image: {buf.geterror().strip()}")
    return np.ascontiguousarray(pixels.reshape(buf.spec().height, buf.spec().width, -1), dtype=np.float32)


def write_image(path: str | os.PathLike, image: np.ndarray, *, dtype: str = "uint8") -> Path:
    """Write (H, W, C) float pixels to `path` (format from the extension), quantised to `dtype`.

    The file appears complete or not at all: pixels go to a temporary file beside it that is renamed
    over `path` only once written.
    """
    import OpenImageIO as oiio

    path = Path(path)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    h, w, c = image.shape
    spec = oiio.ImageSpec(w, h, c, dtype)
    buf = oiio.ImageBuf(spec)
    if not buf.set_pixels(oiio.ROI(0, w, 0, h, 0, 1, 0, c), np.ascontiguousarray(image)):
        raise ImageIOError(f"{path}: cannot store pixels as {dtype}: {buf.geterror().strip()}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if not buf.write(tmp):
            raise ImageIOError(f"{path}: cannot write image: {buf.geterror().strip()}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
