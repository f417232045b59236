"""Colour management through OpenColorIO: configs, colourspace names and frame conversion.

Conversions run on the CPU, in place on the caller's float32 numpy buffer where they can. Every
name goes through `canonical()`, so aliases ("lin_rec709") and roles ("scene_linear") work
wherever a colourspace name is taken, and a `config` argument may be a name, a path or a
`PyOpenColorIO.Config`.
"""

from __future__ import annotations

import difflib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PyOpenColorIO as ocio

from .frame import Frame

DEFAULT_CONFIG = "ocio://default"

# OCIO's default level (VERY_GOOD) adds FAST_LOG_EXP_POW, whose approximations cost up to 4e-5
# relative on sRGB / gamma round trips and 3e-4 through ACEScct (values 1e-3..1000). LOSSLESS keeps
# those under 1e-5. Matrix-only conversions run at the same speed at both levels; pow/log ones ~2x
# slower on one thread, about what the row bands below win back on two cores.
_OPTIMIZATION = ocio.OPTIMIZATION_LOSSLESS

# Below ~64k pixels per band, handing rows to the pool costs more than it saves (measured: a
# 256x256 matrix conversion is faster on one thread, a 512x512 one is faster on two).
_BAND_PIXELS = 1 << 16
_MAX_WORKERS = 8


# The sRGB curve as OCIO's built-in sRGB space applies it: a power law (gamma 2.4, offset 0.055) joined to
# a line where value and slope both meet (IEC 61966-2-1's 0.04045 and 12.92 are these, rounded).
_SRGB_GAMMA, _SRGB_OFFSET = 2.4, 0.055
_SRGB_BREAK = _SRGB_OFFSET / (_SRGB_GAMMA - 1)                                        # encoded, ~0.03929
_SRGB_LINEAR_BREAK = ((_SRGB_BREAK + _SRGB_OFFSET) / (1 + _SRGB_OFFSET)) ** _SRGB_GAMMA  # ~0.00304
_SRGB_SLOPE = _SRGB_BREAK / _SRGB_LINEAR_BREAK                                        # ~12.9232


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded -> linear, in numpy on plain arrays, exactly as OCIO's "sRGB Encoded Rec.709 (sRGB)"
    space decodes: the power law continues above 1.0 and the line below 0 (tests/test_colour.py checks
    it against OCIO). For per-pixel work on parts of a frame (models/working.py, metrics.srgb_to_lab);
    frames go through convert()."""
    v = np.asarray(v, dtype=np.float32)
    power = ((np.maximum(v, _SRGB_BREAK) + _SRGB_OFFSET) / (1 + _SRGB_OFFSET)) ** _SRGB_GAMMA
    return np.where(v <= _SRGB_BREAK, v / _SRGB_SLOPE, power).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """The inverse of srgb_to_linear."""
    v = np.asarray(v, dtype=np.float32)
    power = (1 + _SRGB_OFFSET) * np.maximum(v, _SRGB_LINEAR_BREAK) ** (1 / _SRGB_GAMMA) - _SRGB_OFFSET
    return np.where(v <= _SRGB_LINEAR_BREAK, v * _SRGB_SLOPE, power).astype(np.float32)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects container / taskset limits
    except AttributeError:
        return os.cpu_count() or 1


_WORKERS = max(1, min(_MAX_WORKERS, _cpu_count()))


@functools.lru_cache(maxsize=16)
def _load_config(name: str) -> ocio.Config:
    try:
        config = ocio.Config.CreateFromFile(name)
        config.validate()
    except Exception as e:  # OCIO's exception types derive from Exception only
        raise ValueError(f"cannot load OCIO config {name!r}: {e}") from e
    return config


def get_config(name: str | os.PathLike | None = None) -> ocio.Config:
    """The OCIO config `name`: an "ocio://" URI or a path; None -> $OCIO, else ocio://default.

    Configs are cached and shared: treat them as read-only.
    """
    name = os.fspath(name) if name else os.environ.get("OCIO") or DEFAULT_CONFIG
    if not name.startswith("ocio://"):
        name = os.path.abspath(name)  # one cache entry per file whatever the working directory
    return _load_config(name)


def clear_caches() -> None:
    """Forget loaded configs and processors (after editing a config file on disk, in tests)."""
    _load_config.cache_clear()
    _processors.clear()


def _as_config(config) -> ocio.Config:
    return config if isinstance(config, ocio.Config) else get_config(config)


def _colour_space(name: str, config: ocio.Config) -> ocio.ColorSpace:
    cs = config.getColorSpace(name)  # resolves names, aliases and roles, case-insensitively
    if cs is None:
        raise ValueError(_unknown_message(name, config))
    return cs


def _unknown_message(name: str, config: ocio.Config) -> str:
    spaces = config.getColorSpaces(ocio.SEARCH_REFERENCE_SPACE_ALL, ocio.COLORSPACE_ALL)
    known = [n for cs in spaces for n in (cs.getName(), *cs.getAliases())]
    known += list(config.getRoleNames())
    by_lower = {n.lower(): n for n in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    hint = f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
    return f"unknown colourspace {name!r}{hint}"


def canonical(name: str, config=None) -> str:
    """The config's name for colourspace, alias or role `name`; ValueError if it has none."""
    return _colour_space(name, _as_config(config)).getName()


def is_data(name: str, config=None) -> bool:
    """Whether `name` holds data (Raw, isdata) that must never be colour-converted."""
    return _colour_space(name, _as_config(config)).isData()


def is_scene_linear(name: str, config=None) -> bool:
    """Whether `name` holds scene-linear light: its declared encoding, else a matrix from the scene_linear role."""
    config = _as_config(config)
    cs = _colour_space(name, config)
    if cs.getEncoding():
        return cs.getEncoding() == "scene-linear"
    # Configs that predate encodings: linear means nothing but matrices between it and scene_linear.
    if cs.isData() or cs.getReferenceSpaceType() != ocio.REFERENCE_SPACE_SCENE or not config.hasRole("scene_linear"):
        return False
    ops = config.getProcessor(cs.getName(), "scene_linear").getOptimizedProcessor(_OPTIMIZATION)
    return all(isinstance(t, ocio.MatrixTransform) for t in ops.createGroupTransform())


_processors: dict[tuple[str, str, str], ocio.CPUProcessor] = {}
_MAX_PROCESSORS = 256


def _cpu_processor(config: ocio.Config, src: str, dst: str) -> ocio.CPUProcessor:
    # Keyed on the config's cache id (its content), not the object, so an edited config misses.
    key = (config.getCacheID(), src, dst)
    cpu = _processors.get(key)
    if cpu is None:
        try:
            cpu = config.getProcessor(src, dst).getOptimizedCPUProcessor(
                ocio.BIT_DEPTH_F32, ocio.BIT_DEPTH_F32, _OPTIMIZATION)
        except Exception as e:
            raise ValueError(f"cannot convert {src!r} -> {dst!r} in config {config.getName()!r}: {e}") from e
        if len(_processors) >= _MAX_PROCESSORS:
            _processors.clear()
        _processors[key] = cpu
    return cpu


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _get_pool() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        # A forked child inherits the executor but not its threads: make a new one there.
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(_WORKERS - 1, thread_name_prefix="clarifx-colour")
            _pool_pid = os.getpid()
        return _pool


def _desc(rgb: np.ndarray) -> ocio.PackedImageDesc:
    # Explicit strides let OCIO work on a view: the first 3 of C channels, a crop, flipped rows.
    h, w, _ = rgb.shape
    return ocio.PackedImageDesc(rgb, w, h, 3, ocio.BIT_DEPTH_F32, *reversed(rgb.strides))


def _in_bands(fn, height: int, width: int) -> None:
    """Call fn(rows) on row slices covering the image, across the pool (OCIO and numpy drop the GIL)."""
    if height * width == 0:
        return  # nothing to do, and OCIO rejects empty images
    bands = min(_WORKERS, height, height * width // _BAND_PIXELS)
    if bands <= 1:
        fn(slice(0, height))
        return
    edges = np.linspace(0, height, bands + 1).astype(int)
    rows = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
    futures = [_get_pool().submit(fn, r) for r in rows[1:]]
    try:
        fn(rows[0])  # the calling thread takes a band too
    finally:
        for f in futures:  # never return while a worker may still write
            f.result()


def _convert_premultiplied(cpu: ocio.CPUProcessor, rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Un-premultiply, convert and re-premultiply in place; pixels with alpha <= 0 keep their colour."""
    if (alpha == 1).all():  # opaque is common: skip two passes
        cpu.apply(_desc(rgb))
        return
    covered = alpha > 0  # NaN and alpha <= 0: nothing to divide by
    holes = None if covered.all() else ~covered
    kept = None if holes is None else rgb[holes]
    scale = np.where(covered, alpha, np.float32(1))
    # One channel at a time: numpy is ~3x faster on (H, W) planes than on a strided (H, W, 3) view.
    for c in range(3):
        rgb[..., c] /= scale
    cpu.apply(_desc(rgb))
    for c in range(3):
        rgb[..., c] *= scale
    if holes is not None:
        rgb[holes] = kept


def _working_buffer(pixels) -> np.ndarray:
    """`pixels` itself when OCIO may write into it, else a float32 copy."""
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"colour conversion needs a numpy array on the CPU, got {type(pixels).__name__} "
                        "(move it to the host first, e.g. tensor.cpu().numpy() or cupy.asnumpy())")
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        raise ValueError(f"pixels must be (H, W, C) with C >= 3 colour channels first, got shape {pixels.shape}")
    if pixels.dtype == np.float32 and pixels.flags.writeable:
        return pixels
    return pixels.astype(np.float32)  # OCIO's binding would write into a read-only buffer


def _result(work: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """A converted copy goes back in the caller's float dtype (float16 stays float16)."""
    if work is pixels or not np.issubdtype(pixels.dtype, np.floating):
        return work
    return work.astype(pixels.dtype, copy=False)


def convert_pixels(pixels, src: str, dst: str, config=None):
    """Convert the first 3 channels of (H, W, C) pixels from `src` to `dst`; the rest are untouched.

    Works in place on a writable float32 numpy array and returns it; anything else is converted on a
    float32 copy returned in the input's float dtype. No alpha handling (see `convert`). Same space or
    a data space on either side: `pixels` returned as they are.
    """
    config = _as_config(config)
    src_cs, dst_cs = _colour_space(src, config), _colour_space(dst, config)
    if src_cs.getName() == dst_cs.getName() or src_cs.isData() or dst_cs.isData():
        return pixels
    work = _working_buffer(pixels)
    cpu = _cpu_processor(config, src_cs.getName(), dst_cs.getName())
    rgb = work[..., :3]
    _in_bands(lambda rows: cpu.apply(_desc(rgb[rows])), *rgb.shape[:2])
    return _result(work, pixels)


def convert(frame: Frame, dst: str, config=None) -> Frame:
    """`frame` in colourspace `dst` (its canonical name in `.colorspace`).

    Only the 3 colour channels change; alpha and extra channels are untouched. Premultiplied colour is
    un-premultiplied around the conversion; pixels with alpha <= 0 keep their colour as it was. Works
    in place on writable float32 numpy pixels (the input frame then holds the new values under its old
    name: use the returned frame). Same space, or a data space on either side: returned unchanged.
    """
    config = _as_config(config)
    src_cs, dst_cs = _colour_space(frame.colorspace, config), _colour_space(dst, config)
    if src_cs.isData() or dst_cs.isData():
        return frame
    if src_cs.getName() == dst_cs.getName():
        return frame if frame.colorspace == dst_cs.getName() else frame.replace(colorspace=dst_cs.getName())

    pixels = frame.pixels
    channels = tuple(frame.channels)
    if len(channels) < 3:
        raise ValueError(f"cannot colour-convert a frame with channels {channels}: "
                         "it needs 3 colour channels (R, G, B) first")
    work = _working_buffer(pixels)
    if work.shape[2] != len(channels):
        raise ValueError(f"frame has channels {channels} but pixels of shape {work.shape}")
    alpha_index = frame.alpha_index
    if alpha_index is not None and alpha_index < 3:
        raise ValueError(f"cannot colour-convert a frame with channels {channels}: alpha must follow R, G, B")

    cpu = _cpu_processor(config, src_cs.getName(), dst_cs.getName())
    rgb = work[..., :3]
    if alpha_index is None or not frame.premultiplied:
        _in_bands(lambda rows: cpu.apply(_desc(rgb[rows])), *rgb.shape[:2])
    else:
        alpha = work[..., alpha_index]
        _in_bands(lambda rows: _convert_premultiplied(cpu, rgb[rows], alpha[rows]), *rgb.shape[:2])
    return frame.replace(pixels=_result(work, pixels), colorspace=dst_cs.getName())
