"""Still images in and out through OpenImageIO.

Reading gives a premultiplied float32 Frame; writing is atomic (a temporary file beside the
destination, renamed over it once complete), so a reader never sees half a file.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import PyOpenColorIO as ocio

from . import frame as fr
from .frame import ClipInfo, FootageError, Frame, premultiply, unpremultiply

IMAGE_EXTENSIONS = frozenset({
    ".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg",  # read and written
    ".pgm", ".ppm", ".bmp", ".hdr",                            # read only
})

# Writable formats: the dtypes each can hold, the default first.
_WRITE_DTYPES = {
    ".exr": ("half", "float"),
    ".dpx": ("uint10", "uint8", "uint16"),
    ".tif": ("uint16", "uint8", "half", "float"),
    ".tiff": ("uint16", "uint8", "half", "float"),
    ".png": ("uint8", "uint16"),
    ".jpg": ("uint8",),
    ".jpeg": ("uint8",),
}
_DTYPES = ("half", "float", "uint8", "uint16", "uint10")
_STRAIGHT_ALPHA = {".png", ".tif", ".tiff"}   # the format's convention; EXR and DPX store premultiplied
_JPEG = {".jpg", ".jpeg"}                    # no alpha
_COLOUR = {"R", "G", "B", "Y"}
_FLOAT_FORMATS = {"half", "float", "double"}
_LOG_DPX_TRANSFERS = {"Printing density", "Logarithmic"}

# mkstemp creates 0600 files; outputs get the permissions any other new file would.
_UMASK = os.umask(0)
os.umask(_UMASK)


class ImageIOError(FootageError):
    """An image could not be read or written; the message names the file (and the frame when reading)."""


@functools.lru_cache(maxsize=None)
def _ocio_name(name: str) -> str | None:
    """The canonical ocio://default name for a colourspace name or alias, None if it is neither."""
    cs = _ocio_config().getColorSpace(name)
    # getColorSpace also resolves roles ("scene_linear"), whose meaning depends on the config
    # rather than the file; only names and aliases count.
    if cs is None or name.lower() not in {n.lower() for n in (cs.getName(), *cs.getAliases())}:
        return None
    return cs.getName()


@functools.lru_cache(maxsize=1)
def _ocio_config():
    return ocio.Config.CreateFromFile("ocio://default")


def _first_line(text: str, fallback: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else fallback


def _open(path: Path, number: int):
    """An ImageInput that leaves straight alpha alone (we premultiply in float, see read_frame)."""
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    inp = oiio.ImageInput.open(str(path), config)
    if inp is None:
        error = oiio.geterror()   # always taken: OIIO prints errors left pending at exit
        reason = "no such file" if not path.exists() else _first_line(error, "unknown format")
        raise ImageIOError(f"{path}: frame {number}: cannot open ({reason})")
    if inp.spec().deep:
        inp.close()
        raise ImageIOError(f"{path}: frame {number}: deep images are not supported")
    return inp


def _dtype_name(spec) -> str:
    name = str(spec.format)
    bits = spec.get_int_attribute("oiio:BitsPerSample", 0)
    if name.startswith("uint") and 0 < bits < spec.format.size() * 8:
        return f"uint{bits}"   # DPX 10/12-bit arrive as uint16
    return name


def _info(path: Path, inp) -> ClipInfo:
    spec = inp.spec()
    fmt = inp.format_name()
    dtype = _dtype_name(spec)
    colorspace = _ocio_name(spec.get_string_attribute("oiio:ColorSpace", ""))
    if colorspace is None:
        if dtype in _FLOAT_FORMATS:
            colorspace = fr.LINEAR
        elif fmt == "dpx":
            # A log DPX has no colourspace in ocio://default; Raw keeps it from being converted as Rec.709.
            log = spec.get_string_attribute("dpx:Transfer", "") in _LOG_DPX_TRANSFERS
            colorspace = fr.RAW if log else fr.REC709
        else:
            colorspace = fr.SRGB
    return ClipInfo(
        path=str(path), kind="image", width=spec.full_width, height=spec.full_height,
        channels=tuple(spec.channelnames), first=1, last=1, colorspace=colorspace,
        premultiplied=True, pixel_aspect=spec.get_float_attribute("PixelAspectRatio", 1.0),
        format=f"{fmt} {dtype}",
        tags={a.name: a.value for a in spec.extra_attribs if a.name.startswith("clarifx:")},
    )


def probe_image(path: str | os.PathLike, number: int = 1) -> ClipInfo:
    """What the image holds, from its header alone (no pixels are decoded); `number` is for messages."""
    path = Path(path)
    inp = _open(path, number)
    try:
        return _info(path, inp)
    finally:
        inp.close()


def read_frame(path: str | os.PathLike, number: int = 1) -> Frame:
    """Decode an image to a premultiplied (H, W, C) float32 Frame; errors name the file and frame."""
    path = Path(path)
    inp = _open(path, number)
    try:
        info = _info(path, inp)
        spec = inp.spec()
        straight = spec.get_int_attribute("oiio:UnassociatedAlpha", 0) == 1 and spec.alpha_channel >= 0
        pixels = inp.read_image(0, 0, 0, spec.nchannels, "float")
        # Some readers (JPEG) hand back pixels for a truncated file and only leave an error behind.
        error = inp.geterror()
    finally:
        inp.close()
    if pixels is None or error:
        raise ImageIOError(f"{path}: frame {number}: truncated or corrupt ({_first_line(error, 'decode failed')})")
    if (spec.x, spec.y, spec.width, spec.height) != (spec.full_x, spec.full_y, spec.full_width, spec.full_height):
        pixels = _to_display_window(pixels, spec)
    if straight:
        # OIIO would premultiply in the file's integer type, which leaves soft edges a few codes
        # deep and spoils the later un-premultiply; in float the straight colour comes back exact.
        premultiply(pixels, spec.alpha_channel, _others(pixels, spec.alpha_channel))
    if info.format.split()[-1] in _FLOAT_FORMATS and not np.isfinite(pixels).all():
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        raise ImageIOError(f"{path}: frame {number} contains non-finite pixels ({bad} NaN/Inf values)")
    return Frame(pixels=pixels, channels=info.channels, colorspace=info.colorspace, number=number,
                 premultiplied=True, pixel_aspect=info.pixel_aspect)


def _to_display_window(pixels: np.ndarray, spec) -> np.ndarray:
    """Place an EXR data window (overscan or bounding box) in its display window, zeros outside."""
    out = np.zeros((spec.full_height, spec.full_width, spec.nchannels), np.float32)
    x0, y0 = spec.x - spec.full_x, spec.y - spec.full_y
    dst = out[max(y0, 0):y0 + spec.height, max(x0, 0):x0 + spec.width]
    dst[...] = pixels[max(-y0, 0):max(-y0, 0) + dst.shape[0], max(-x0, 0):max(-x0, 0) + dst.shape[1]]
    return out


def _others(pixels: np.ndarray, alpha: int) -> list[int]:
    return [c for c in range(pixels.shape[2]) if c != alpha]


def _writable(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in _WRITE_DTYPES:
        raise ImageIOError(f"{path}: cannot write {ext or 'files without an extension'} "
                           f"(writable: {' '.join(sorted(_WRITE_DTYPES))})")
    return ext


def _resolve_dtype(ext: str, dtype: str | None) -> str:
    if dtype is None:
        return _WRITE_DTYPES[ext][0]
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(_DTYPES)}")
    if dtype not in _WRITE_DTYPES[ext]:
        raise ValueError(f"dtype={dtype!r}: {ext} files hold {', '.join(_WRITE_DTYPES[ext])}")
    return dtype


def stored_channels(path: str | os.PathLike, channels: tuple[str, ...]) -> tuple[str, ...]:
    """The channels a file of this format keeps: all for EXR, colour and alpha elsewhere, colour for JPEG."""
    ext = Path(path).suffix.lower()
    if ext == ".exr":
        return tuple(channels)
    keep = _COLOUR if ext in _JPEG else _COLOUR | {"A"}
    return tuple(c for c in channels if c in keep)


def write_frame(path: str | os.PathLike, frame: Frame, *, dtype: str | None = None,
                compression: str | None = None) -> Path:
    """Write `frame` to `path` (format from the extension) atomically; returns `path`.

    dtype defaults by format (.exr half, .dpx uint10, .tif uint16, .png/.jpg uint8); compression is
    an OIIO compression name ("zip", "piz", "dwaa:45", "jpeg:95", ...).
    """
    path = Path(path)
    ext = _writable(path)
    dtype = _resolve_dtype(ext, dtype)
    pixels = np.asarray(frame.pixels)
    if pixels.ndim != 3 or pixels.shape[2] != len(frame.channels):
        raise ValueError(f"frame: pixels {pixels.shape} do not match channels {frame.channels}")
    if not np.isfinite(pixels).all():
        raise ImageIOError(f"{path}: frame {frame.number} contains non-finite pixels; not written")
    channels = stored_channels(path, frame.channels)
    if not channels:
        raise ValueError(f"frame: no channel of {frame.channels} can be stored in {ext}")
    if dtype == "uint10" and len(channels) == 4:
        # OpenImageIO 3.2 packs 10-bit RGBA DPX with garbage in some alpha samples (seen at row ends).
        raise ValueError(f"dtype=uint10: {path}: 10-bit RGBA DPX is not written reliably by OpenImageIO; "
                         "use dtype uint16 for DPX with alpha")
    pixels = _prepare(pixels, frame, channels, ext, dtype)

    spec = oiio.ImageSpec(frame.width, frame.height, len(channels), "uint16" if dtype == "uint10" else dtype)
    spec.channelnames = channels
    spec.alpha_channel = channels.index("A") if "A" in channels else -1
    if dtype == "uint10":
        spec.attribute("oiio:BitsPerSample", 10)
    if spec.alpha_channel >= 0 and ext in _STRAIGHT_ALPHA:
        spec.attribute("oiio:UnassociatedAlpha", 1)   # _prepare made it straight; OIIO must not touch it
    spec.attribute("PixelAspectRatio", float(frame.pixel_aspect))
    spec.attribute("oiio:ColorSpace", frame.colorspace)
    for key, value in frame.tags.items():  # provenance ("clarifx:model", ...) travels in the file's metadata
        if key.startswith("clarifx:"):
            spec.attribute(key, str(value))
    if ext in (".tif", ".tiff"):
        # OIIO sets 1 (sRGB) itself where it applies; without any Exif tag, OIIO 3.2 fails to write an
        # empty Exif directory and reports an error although the image is whole.
        spec.attribute("Exif:ColorSpace", 0xFFFF)   # uncalibrated
    if compression is not None:
        spec.attribute("compression", compression)
    _atomic_write(path, spec, pixels)
    return path


def _prepare(pixels: np.ndarray, frame: Frame, channels: tuple[str, ...], ext: str, dtype: str) -> np.ndarray:
    """The pixels as the file stores them: its channels, its alpha convention, float32."""
    keep = [frame.channels.index(c) for c in channels]
    alpha = frame.alpha_index
    straight_out = ext in _STRAIGHT_ALPHA and "A" in channels
    # Straight colour must be premultiplied before alpha goes (JPEG) or the format stores premultiplied.
    to_premult = alpha is not None and not frame.premultiplied and not straight_out
    to_straight = straight_out and frame.premultiplied
    if not (to_premult or to_straight or dtype == "uint10" or keep != list(range(pixels.shape[2]))):
        return np.ascontiguousarray(pixels, dtype=np.float32)
    if to_premult and alpha not in keep:
        keep = keep + [alpha]   # needed for the multiply, dropped below
    out = np.array(pixels[..., keep], dtype=np.float32)   # the one copy the conversions work in
    if to_premult:
        premultiply(out, keep.index(alpha), _others(out, keep.index(alpha)))
    if to_straight:
        unpremultiply(out, keep.index(alpha), _others(out, keep.index(alpha)))
    if dtype == "uint10":
        # OIIO stores 10 bits by truncating its 16-bit value; values on the 10-bit grid survive exactly,
        # so rounding here gives half-a-code error with no downward bias.
        np.round(np.clip(out, 0.0, 1.0) * 1023.0, out=out)
        out /= 1023.0
    return np.ascontiguousarray(out[..., :len(channels)])


def _atomic_write(path: Path, spec, pixels: np.ndarray) -> None:
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        if path.suffix.lower() in _JPEG:
            # libjpeg ends the whole process (exit) when a write fails, as on a full disk: encode in
            # memory and let Python write the bytes, where a failure is an OSError.
            mem = os.memfd_create("clarifx-jpeg")
            try:
                _oiio_write(path, f"/proc/self/fd/{mem}", spec, pixels)
                _copy_out(mem, tmp)
            finally:
                os.close(mem)
        else:
            _oiio_write(path, tmp, spec, pixels)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)   # some filesystems report a full disk only here
        finally:
            os.close(fd)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK)
        os.replace(tmp, path)
        tmp = None
    except ImageIOError:
        raise
    except OSError as e:
        raise ImageIOError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _oiio_write(path: Path, target: str, spec, pixels: np.ndarray) -> None:
    """Encode `pixels` in `path`'s format into the file named `target`."""
    out = oiio.ImageOutput.create(str(path))
    if out is None:
        raise ImageIOError(f"{path}: cannot write ({_first_line(oiio.geterror(), 'no writer')})")
    # Writers report failures unevenly: PNG returns success and only leaves an error message,
    # DPX fails at close(), TIFF half-way; so every step's message is collected.
    ok = out.open(target, spec)
    ok = ok and out.write_image(pixels)
    errors = out.geterror()
    ok = out.close() and ok
    errors += "\n" + out.geterror()
    if not ok or errors.strip():
        reason = _first_line(errors, "write failed").replace(target, path.name)   # not the temp name
        raise ImageIOError(f"{path}: cannot write ({reason})")


def _copy_out(src_fd: int, dst: str) -> None:
    """Copy a whole file (from its start) into `dst`."""
    with open(dst, "wb") as f:
        f.write(os.pread(src_fd, os.fstat(src_fd).st_size, 0))


def _default_channels(n: int) -> tuple[str, ...]:
    return {1: ("Y",), 2: ("Y", "A"), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}.get(
        n, ("R", "G", "B", "A") + tuple(f"C{i}" for i in range(4, n)))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, C) float32: integer formats scaled to [0, 1], float formats as stored."""
    return read_frame(path).pixels


def write_image(path: str | os.PathLike, image: np.ndarray, *, dtype: str | None = None) -> Path:
    """Write (H, W, C) or (H, W) float pixels (alpha, if 2 or 4 channels, premultiplied) to `path`."""
    path = Path(path)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    ext = _writable(path)
    dtype = _resolve_dtype(ext, dtype)
    colorspace = fr.LINEAR if dtype in _FLOAT_FORMATS else fr.REC709 if ext == ".dpx" else fr.SRGB
    return write_frame(path, Frame(image, _default_channels(image.shape[2]), colorspace), dtype=dtype)
