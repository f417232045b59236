"""The Python side of clarifx's OpenFX plugin (ofx_bridge/), and `clarifx ofx install | doctor`.

The C++ plugin is a thin translator: it embeds Python, and for every OFX action it asks this module.
`effects()` is what the plugin describes to a host (one image effect per clarifx node, its
parameters generated from the node's descriptors); `Instance` answers the per-instance actions
(region of definition, frames needed, render). Host buffers are viewed in place as numpy arrays
(rows bottom-up, row bytes possibly negative); the node runs exactly as the render engine runs it:
its input converted to the colourspace and alpha state it wants, and its output converted back to
the host's.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

BUNDLE_NAME = "Clarifx.ofx.bundle"
BINARY = Path("Contents") / "Linux-x86-64" / "Clarifx.ofx"
CONFIG = Path("Contents") / "Resources" / "clarifx.cfg"  # python=..., path=... read by the plugin at load
STANDARD_DIR = "/usr/OFX/Plugins"
IDENTIFIER_PREFIX = "io.clarifx."
GROUPING = "clarifx"

# A parameter the bridge adds to every effect: hosts hand over pixels in their working space, which
# only the user knows; scene-linear Rec.709 is what float pipelines (Nuke, Natron) mostly use.
HOST_COLORSPACE = "host_colorspace"

_OFX_TYPES = {"float": "double", "int": "int", "bool": "boolean", "choice": "choice", "string": "string",
              "file": "string"}
_DEPTHS = {"OfxBitDepthFloat": np.float32, "OfxBitDepthHalf": np.float16, "OfxBitDepthShort": np.uint16,
           "OfxBitDepthByte": np.uint8}
_COMPONENTS = {"OfxImageComponentRGBA": ("R", "G", "B", "A"), "OfxImageComponentRGB": ("R", "G", "B")}
_UNPREMULTIPLIED = "OfxImageAlphaUnPremultiplied"


# ---------------------------------------------------------------------------------------------------
# What the plugin describes


def exposed_types():
    """Node types shown to hosts: everything that takes an input and is not a writer (Read and Write
    are the host's business)."""
    from ..nodes.base import all_types

    return [t for t in all_types() if t.inputs and not t.is_writer]


def _minor_version() -> int:
    """Hosts cache descriptions by identifier and version: a new clarifx release re-describes."""
    from .. import __version__

    parts = [int(p) if p.isdigit() else 0 for p in __version__.split("+")[0].split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def _ofx_param(p) -> dict[str, Any]:
    d = {"name": p.name, "type": _OFX_TYPES[p.type], "label": p.title, "hint": p.help,
         "file": p.type == "file"}
    if p.type == "choice":
        d["choices"] = list(p.choices)
        d["default"] = p.choices.index(p.aliases.get(p.default, p.default))
    elif p.type == "bool":
        d["default"] = int(bool(p.default))
    else:
        d["default"] = p.default
    if p.type in ("int", "float"):
        d["min"], d["max"] = p.min, p.max
    return d


def _host_colorspace_param() -> dict[str, Any]:
    from ..frame import LINEAR

    return {"name": HOST_COLORSPACE, "type": "string", "label": "Host colourspace", "default": LINEAR,
            "file": False, "hint": "The OpenColorIO colourspace the host's pixels are in (a name, alias or role "
            "of $OCIO, else ocio://default). The node's input is converted from it to what the node works "
            "in, and its output back."}


def cuda_render_possible() -> bool:
    """Whether to tell hosts that CUDA render is supported: CuPy wraps the host's device pointers."""
    import importlib.util

    return importlib.util.find_spec("cupy") is not None


def effects() -> list[dict[str, Any]]:
    """One entry per exposed node: everything the plugin needs for OfxGetPlugin, Describe and
    DescribeInContext. Clip 0 is the Source clip; further inputs are clips named after them."""
    import importlib

    # Studio node types: modules named here register more nodes before the plugin describes them.
    for module in filter(None, os.environ.get("CLARIFX_NODE_MODULES", "").split(",")):
        importlib.import_module(module.strip())
    cuda = cuda_render_possible()
    out = []
    for t in exposed_types():
        clips = ["Source"] + [name.capitalize() for name in t.inputs[1:]]
        out.append({"identifier": IDENTIFIER_PREFIX + t.name, "node": t.id(), "major": t.version,
                    "minor": _minor_version(), "label": t.name, "grouping": GROUPING,
                    "description": t.help, "clips": clips, "cuda": cuda,
                    "params": [_ofx_param(p) for p in t.params] + [_host_colorspace_param()]})
    return out


# ---------------------------------------------------------------------------------------------------
# Host images as numpy


def host_view(image: dict, *, writeable: bool) -> np.ndarray:
    """The (H, W, C) top-down numpy view of a host CPU image, without copying.

    `image`: data (address), bounds (x1, y1, x2, y2 in pixels), row_bytes, depth, components. OFX rows
    run bottom-up from bounds.y1, row_bytes apart (negative: each row lies below the last in memory).
    """
    depth, components = image["depth"], image["components"]
    if depth not in _DEPTHS:
        raise ValueError(f"unsupported pixel depth {depth!r} (clarifx takes float, half, short or byte)")
    if components not in _COMPONENTS:
        raise ValueError(f"unsupported components {components!r} (clarifx takes RGBA or RGB)")
    x1, y1, x2, y2 = (int(v) for v in image["bounds"])
    w, h = x2 - x1, y2 - y1
    dtype = np.dtype(_DEPTHS[depth])
    c = len(_COMPONENTS[components])
    row = int(image["row_bytes"])
    if w <= 0 or h <= 0:
        return np.zeros((max(h, 0), max(w, 0), c), dtype)
    if not image["data"]:
        raise ValueError("the host gave an image without data")
    if abs(row) < w * c * dtype.itemsize:
        raise ValueError(f"image row bytes {row} are fewer than a row of {w} {components} {depth} pixels")
    top = int(image["data"]) + (h - 1) * row  # address of the top row (y2 - 1)
    lowest = min(int(image["data"]), top)
    extent = (h - 1) * abs(row) + w * c * dtype.itemsize
    buffer = (ctypes.c_char * extent).from_address(lowest)
    view = np.ndarray((h, w, c), dtype, buffer=buffer, offset=top - lowest,
                      strides=(-row, c * dtype.itemsize, dtype.itemsize))
    view.flags.writeable = writeable
    return view


def _as_float(pixels: np.ndarray) -> np.ndarray:
    """A float32 copy of host pixels, integers scaled to [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535)
    return pixels.astype(np.float32)


def _store(dst: np.ndarray, pixels: np.ndarray) -> None:
    """Write float pixels into a host view of any depth (integers rounded and clamped)."""
    if dst.dtype == np.uint8:
        dst[...] = np.rint(np.clip(pixels, 0, 1) * 255)
    elif dst.dtype == np.uint16:
        dst[...] = np.rint(np.clip(pixels, 0, 1) * 65535)
    else:
        dst[...] = pixels


def _match_channels(pixels: np.ndarray, channels: tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray:
    """`pixels` with exactly the channels `wanted` (a missing alpha is opaque)."""
    if tuple(channels) == wanted:
        return pixels
    out = np.ones(pixels.shape[:2] + (len(wanted),), np.float32)
    for i, name in enumerate(wanted):
        if name in channels:
            out[:, :, i] = pixels[:, :, channels.index(name)]
    return out


# ---------------------------------------------------------------------------------------------------
# Instances


def _clip_info(width: int, height: int, channels, colorspace: str, premultiplied: bool, par: float,
               frame_range=None):
    from ..frame import ClipInfo

    # A host that does not say the clip's range: unbounded, so temporal windows are not cut short.
    first, last = (round(frame_range[0]), round(frame_range[1])) if frame_range else (-(1 << 31), 1 << 31)
    return ClipInfo(path="ofx", kind="image", width=width, height=height, channels=tuple(channels), first=first,
                    last=last, colorspace=colorspace, premultiplied=premultiplied, pixel_aspect=par)


class Abandoned(Exception):
    """The host aborted the render (OfxImageEffectSuiteV1::abort, or Cancel on its progress bar)."""


class _HostPoll:
    """The host's abort function and progress bar, called between the stages of a render. The plugin
    hands their addresses over; ctypes releases the GIL around each call, so no host call is made while
    Python is locked."""

    def __init__(self, args: dict):
        effect = ctypes.c_void_p(args.get("effect") or 0)
        abort, progress = args.get("abort"), args.get("progress")
        self._abort = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(abort) if abort else None
        self._progress = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_double)(progress) \
            if progress else None
        self._effect = effect
        self._reported = -1.0

    def check(self, fraction: float | None = None) -> None:
        """Raise Abandoned when the host wants the render to stop; report progress (0..1) if given and
        ahead of what was reported (a node that runs its model on several frames restarts its tiles)."""
        if self._abort is not None and self._abort(self._effect):
            raise Abandoned
        if fraction is not None and fraction > self._reported and self._progress is not None:
            self._reported = fraction
            if self._progress(self._effect, ctypes.c_double(fraction)) == _REPLY_NO:  # Cancel pressed
                raise Abandoned


_REPLY_NO = 13  # kOfxStatReplyNo


class Instance:
    """One OFX instance of a clarifx node. Models live in the process-wide cache of nodes/restore.py,
    so throwaway instances (Baselight makes one per frame) cost nothing to create.

    Every per-frame question comes with a context dict from the plugin: time, params (OFX values),
    source_rod (canonical, or None), source_par, frame_range (the Source clip's, or None), multires."""

    def __init__(self, node_id: str, context: str = ""):
        from ..nodes.base import find

        self.type = find(node_id)
        self.impl = self.type()
        self.context = context
        self.clips = ["Source"] + [name.capitalize() for name in self.type.inputs[1:]]
        _LIVE.add(id(self))

    def close(self) -> None:
        close = getattr(self.impl, "close", None)
        if close is not None:
            close()
        _LIVE.discard(id(self))

    def params(self, values: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """OFX parameter values -> (the node's checked parameters, the host colourspace)."""
        from .. import colour

        where = f"{self.type.name}"
        out = {}
        for p in self.type.params:
            v = values.get(p.name, p.default)
            if p.type == "choice" and isinstance(v, int):
                if not 0 <= v < len(p.choices):
                    raise ValueError(f"{where}: parameter '{p.name}' has no option {v}")
                v = p.choices[v]
            elif p.type == "bool":
                v = bool(v)
            out[p.name] = p.check(v, where)
        return out, colour.canonical(values.get(HOST_COLORSPACE) or _host_colorspace_param()["default"])

    def _input_clips(self, host_cs: str, ctx: dict) -> list:
        """What the node's inputs hold, as far as the host says: every input the size of the Source's
        region in canonical pixels (1x1 when the host gave none), premultiplied RGBA in the host's
        colourspace, with the Source clip's frame range."""
        par = float(ctx.get("source_par") or 1.0)
        width = height = 1
        if ctx.get("source_rod"):
            x1, y1, x2, y2 = ctx["source_rod"]
            width, height = max(round((x2 - x1) / par), 1), max(round(y2 - y1), 1)
        return [_clip_info(width, height, ("R", "G", "B", "A"), host_cs, True, par, ctx.get("frame_range"))
                for _ in self.type.inputs]

    def prepare(self, params: dict, host_cs: str, ctx: dict) -> tuple[float, float]:
        """Tell the node what its inputs hold, as the graph engine does before asking it anything
        (temporal nodes learn the clip's range here), and return how much it scales a frame in x and y."""
        clips = self._input_clips(host_cs, ctx)
        out = self.impl.clip(params, clips)
        if not ctx.get("source_rod"):
            return 1.0, 1.0
        return out.width / clips[0].width, out.height / clips[0].height

    def region_of_definition(self, ctx: dict):
        """The output's region of definition in canonical coordinates, or None for the host's default
        (the source's): hosts without multi-resolution keep the clip's size."""
        if not ctx.get("multires") or not ctx.get("source_rod"):
            return None
        params, host_cs = self.params(ctx["params"])
        fx, fy = self.prepare(params, host_cs, ctx)
        if (fx, fy) == (1.0, 1.0):
            return None
        x1, y1, x2, y2 = ctx["source_rod"]
        return (x1 * fx, y1 * fy, x2 * fx, y2 * fy)

    def frames_needed(self, ctx: dict) -> dict[str, list[tuple[float, float]]]:
        """{clip name: the (first, last) frame ranges it must give for frame t}, from the node's own
        frames_needed for each of its inputs."""
        params, host_cs = self.params(ctx["params"])
        self.prepare(params, host_cs, ctx)
        t = int(round(ctx["time"]))
        out = {}
        for index, clip in enumerate(self.clips):
            ranges: list[list[int]] = []
            for n in sorted(set(self.impl.frames_needed(params, t, index))):
                if ranges and n == ranges[-1][1] + 1:
                    ranges[-1][1] = n
                else:
                    ranges.append([n, n])
            out[clip] = [(float(a), float(b)) for a, b in ranges]
        return out

    def is_identity(self, ctx: dict):
        """(clip name, time) to pass through when the node would return that input unchanged, else None.
        Asks the node's own NodeType.is_identity(params, clips) -> input index or None."""
        if not ctx.get("source_rod"):
            return None  # sizes are known only from the Source's region: without one, nothing is the same size
        params, host_cs = self.params(ctx["params"])
        index = self.impl.is_identity(params, self._input_clips(host_cs, ctx))
        return None if index is None else (self.clips[index], float(ctx["time"]))

    def render(self, args: dict) -> bool:
        """Render into the host's output image; False when the host aborted it. `args` (built by the
        plugin): the context, window (pixels), cuda, stream, output, clips ([{name, connected, frames:
        {frame: image dict or None}}] in input order), and effect/abort/progress for polling the host;
        image dicts as `host_view` takes them, plus premultiplication."""
        poll = _HostPoll(args)
        try:
            if args.get("cuda"):
                _render_cuda(self, args, poll)
            else:
                dst = host_view(args["output"], writeable=True)
                views = [{n: host_view(img, writeable=False) if img else None for n, img in clip["frames"].items()}
                         for clip in args["clips"]]
                self._render_views(args, views, dst, poll)
        except Abandoned:
            return False
        return True

    def _check_inputs(self, args: dict, t: int) -> None:
        """A clear message for inputs the host left out (Resolve hands unconnected clips as NULL images)."""
        for index, clip in enumerate(args["clips"]):
            name, frames = clip["name"], clip["frames"]
            if not clip["connected"]:
                raise ValueError(f"{self.type.name}: input '{self.type.inputs[index]}' (clip {name}) is not connected")
            if index == 0 and frames.get(t) is None:
                raise ValueError(f"{self.type.name}: the host gave no {name} image for frame {t} "
                                 "(is the clip connected, and does it hold that frame?)")
            if frames and all(v is None for v in frames.values()):
                wanted = ", ".join(str(n) for n in sorted(frames))
                raise ValueError(f"{self.type.name}: the host gave no {name} image for frame(s) {wanted}")

    def _render_views(self, args: dict, views: list[dict], dst: np.ndarray, poll: _HostPoll) -> None:
        from ..frame import Frame
        from ..models.progress import after_each_tile
        from ..render import adapt
        from .. import kernels

        params, host_cs = self.params(args["params"])
        t = int(round(args["time"]))
        out_img = args["output"]
        self._check_inputs(args, t)
        src_img = args["clips"][0]["frames"][t]
        sx1, sy1, sx2, sy2 = (int(v) for v in src_img["bounds"])
        fx, fy = self.prepare(params, host_cs, args)
        multires = bool(args["multires"])
        if multires:
            target = (round(sx1 * fx), round(sy1 * fy), round(sx2 * fx), round(sy2 * fy))
        else:
            target = (sx1, sy1, sx2, sy2)  # restore at the clip's own size

        inputs = []
        total = sum(len(v) for v in views) or 1
        done = 0
        for index, clip_views in enumerate(views):
            images = args["clips"][index]["frames"]
            frames = {}
            for n, view in clip_views.items():
                done += 1
                if view is None:
                    continue
                img = images[n]
                channels = _COMPONENTS[img["components"]]
                frame = Frame(pixels=view, channels=channels, colorspace=host_cs, number=n,
                              premultiplied=img.get("premultiplication") != _UNPREMULTIPLIED,
                              pixel_aspect=float(img.get("par") or 1.0))
                # One float32 copy: conversions work in place and the host's source must stay untouched.
                frame = frame.replace(pixels=_as_float(view))
                if not multires and (fx, fy) != (1.0, 1.0):
                    # The host has already scaled the clip to its output size: reduce it (as a Resize node
                    # would, bicubic in linear light) to what the node expects, and the node brings back
                    # detail at the clip's size.
                    frame = _reduce(frame, n, round(frame.width / fx), round(frame.height / fy))
                want = self.impl.want(params, index, _clip_info(frame.width, frame.height, channels, frame.colorspace,
                                                                frame.premultiplied, frame.pixel_aspect,
                                                                args.get("frame_range")))
                frames[n] = adapt(frame, want)
                poll.check(0.2 * done / total)
            inputs.append(frames)

        with after_each_tile(lambda done: poll.check(0.2 + 0.7 * done)):  # a tiled model can stop mid-frame
            result = self.impl.render(params, t, inputs)
        poll.check(0.9)
        pixels = result.pixels
        if not isinstance(pixels, np.ndarray) or not pixels.flags.writeable or \
                any(np.shares_memory(pixels, v) for cv in views for v in cv.values() if v is not None):
            pixels = np.array(pixels, np.float32)
        result = result.replace(pixels=pixels)
        out_premultiplied = out_img.get("premultiplication") != _UNPREMULTIPLIED
        from ..nodes.base import Want

        result = adapt(result, Want(colorspace=host_cs, premultiplied=out_premultiplied))
        th, tw = target[3] - target[1], target[2] - target[0]
        pixels = result.pixels
        if pixels.shape[:2] != (th, tw):  # sizes in absolute pixels at a render scale other than 1
            pixels = kernels.resample(np.ascontiguousarray(pixels, np.float32), (th, tw), filter="lanczos3")
        pixels = _match_channels(pixels, tuple(result.channels), _COMPONENTS[out_img["components"]])
        self._write(dst, out_img, pixels, target, args["window"])
        poll.check(1.0)

    @staticmethod
    def _write(dst: np.ndarray, out_img: dict, pixels: np.ndarray, target, window) -> None:
        """Fill the render window of the output: the node's pixels where they are, 0 elsewhere."""
        ox1, oy1, ox2, oy2 = (int(v) for v in out_img["bounds"])
        wx1, wy1 = max(int(window[0]), ox1), max(int(window[1]), oy1)
        wx2, wy2 = min(int(window[2]), ox2), min(int(window[3]), oy2)
        if wx2 <= wx1 or wy2 <= wy1:
            return
        region = dst[oy2 - wy2:oy2 - wy1, wx1 - ox1:wx2 - ox1]
        tx1, ty1, tx2, ty2 = target
        ix1, iy1, ix2, iy2 = max(wx1, tx1), max(wy1, ty1), min(wx2, tx2), min(wy2, ty2)
        if ix2 <= ix1 or iy2 <= iy1:
            region[...] = 0
            return
        if (ix1, iy1, ix2, iy2) != (wx1, wy1, wx2, wy2):
            region[...] = 0
        _store(dst[oy2 - iy2:oy2 - iy1, ix1 - ox1:ix2 - ox1], pixels[ty2 - iy2:ty2 - iy1, ix1 - tx1:ix2 - tx1])


def _reduce(frame, t: int, width: int, height: int):
    from ..nodes.base import find
    from ..render import adapt

    resize = find("Resize")()
    params = {"scale": 0.0, "width": max(1, width), "height": max(1, height), "filter": "bicubic"}
    frame = adapt(frame, resize.want(params, 0, None))
    return resize.render(params, t, [{t: frame}])


_LIVE: set[int] = set()


def live_instances() -> int:
    """How many instances the plugin holds (a test host checks that unloading leaves none)."""
    return len(_LIVE)


def purge_caches() -> None:
    """OfxActionPurgeCaches: let go of loaded models (the host is short of memory). Every functools
    cache of the model-running modules goes (the networks, their prepared fp16/int8 copies, measured
    overlaps: a prepared copy holds its network, so clearing one alone frees nothing); renders in
    flight keep their own references. Looked up by attribute, so a renamed cache is skipped, not fatal."""
    import sys as _sys

    for name in ("clarifx.nodes.restore", "clarifx.nodes.temporal"):
        module = _sys.modules.get(name)
        for value in list(vars(module).values()) if module else ():
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                value.cache_clear()
    torch = _sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _render_cuda(instance: Instance, args: dict, poll: _HostPoll) -> None:
    """OFX CUDA render: the host's device buffers are wrapped zero-copy with CuPy, and every transfer is
    queued on the host's stream. The nodes run on the CPU today, so the pixels are staged through host
    memory; the result is written into the host's device buffer before returning."""
    import cupy

    from .._arrays import wrap_cuda_pointer

    stream = cupy.cuda.ExternalStream(int(args["stream"])) if args.get("stream") else cupy.cuda.Stream(null=True)
    device = cupy.cuda.runtime.getDevice()

    def device_view(img: dict):
        x1, y1, x2, y2 = (int(v) for v in img["bounds"])
        h, w = y2 - y1, x2 - x1
        c = len(_COMPONENTS[img["components"]])
        dtype = np.dtype(_DEPTHS[img["depth"]])
        row = int(img["row_bytes"])
        top = int(img["data"]) + (h - 1) * row
        base = min(int(img["data"]), top)
        flat = wrap_cuda_pointer(base, ((h - 1) * abs(row) + w * c * dtype.itemsize,), np.uint8, device=device)
        return cupy.ndarray((h, w, c), dtype, flat.data + (top - base), (-row, c * dtype.itemsize, dtype.itemsize))

    with stream:
        views = [{n: cupy.asnumpy(device_view(img), stream=stream) if img else None
                  for n, img in clip["frames"].items()} for clip in args["clips"]]
        stream.synchronize()
        out_img = args["output"]
        dst_device = device_view(out_img)
        staged = cupy.asnumpy(dst_device, stream=stream)  # keeps pixels outside the window as they were
        stream.synchronize()
        instance._render_views(args, views, staged, poll)
        dst_device[...] = cupy.asarray(staged)
        # The staging buffer is freed when this returns, so the copy must be done by then.
        stream.synchronize()


# ---------------------------------------------------------------------------------------------------
# Installing and checking


def bundle_path() -> Path | None:
    """The bundle built with this clarifx: $CLARIFX_OFX_BUNDLE, the one inside the package (pip install),
    or the development build's (tools/dev-build)."""
    here = Path(__file__).resolve().parent
    candidates = [os.environ.get("CLARIFX_OFX_BUNDLE"), here / BUNDLE_NAME,
                  here.parents[2] / "build" / "dev" / "ofx_bridge" / BUNDLE_NAME]
    for c in candidates:
        if c and (Path(c) / BINARY).is_file():
            return Path(c)
    return None


def search_dirs() -> list[Path]:
    """Where hosts look for plugins, in their order: $OFX_PLUGIN_PATH, then the standard folder."""
    dirs = [Path(p) for p in os.environ.get("OFX_PLUGIN_PATH", "").split(os.pathsep) if p]
    return dirs + [Path(STANDARD_DIR)]


def _package_parent() -> Path:
    return Path(__file__).resolve().parents[2]  # the folder holding the clarifx package


def write_config(bundle: Path) -> Path:
    """Tell the plugin which Python to start and where clarifx is (written into an installed bundle)."""
    cfg = bundle / CONFIG
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"python={sys.executable}\npath={_package_parent()}\n")
    return cfg


def install(path: str | os.PathLike | None = None) -> Path:
    """Copy the bundle to `path` (default: the first folder of $OFX_PLUGIN_PATH, else /usr/OFX/Plugins)
    and point it at this Python. Returns the installed bundle."""
    source = bundle_path()
    if source is None:
        raise FileNotFoundError("no built OFX bundle: reinstall clarifx with `pip install .` (CMake option "
                                "CLARIFX_OFX=ON, the default) or set CLARIFX_OFX_BUNDLE")
    target_dir = Path(path) if path is not None else search_dirs()[0]
    target = target_dir / BUNDLE_NAME
    if target.resolve() == source.resolve():
        raise ValueError(f"{target}: that is the bundle being installed; choose another folder")
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".clarifx-ofx-", dir=target_dir))
        try:
            shutil.copytree(source, staging / BUNDLE_NAME, symlinks=False)
            write_config(staging / BUNDLE_NAME)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / BUNDLE_NAME, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except PermissionError as e:
        raise PermissionError(f"{target_dir}: cannot write there ({e.strerror}); use `clarifx ofx install "
                              "--path DIR` and add DIR to OFX_PLUGIN_PATH") from None
    return target


_PROBE = """
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
lib.OfxGetPlugin.restype = ctypes.c_void_p
class Plugin(ctypes.Structure):
    _fields_ = [("api", ctypes.c_char_p), ("api_version", ctypes.c_int), ("identifier", ctypes.c_char_p),
                ("major", ctypes.c_uint), ("minor", ctypes.c_uint)]
out = []
for i in range(lib.OfxGetNumberOfPlugins()):
    p = Plugin.from_address(lib.OfxGetPlugin(i))
    out.append([p.identifier.decode(), p.major, p.minor, p.api.decode()])
print(json.dumps(out))
"""


def probe(bundle: Path) -> list[list]:
    """Load the bundle's binary in a fresh Python, as a host would, and list what it exposes."""
    result = subprocess.run([sys.executable, "-c", _PROBE, str(bundle / BINARY)], capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise RuntimeError((result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1])
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def _elf_dynamic(binary: Path) -> tuple[list[str], list[str]]:
    """(DT_NEEDED libraries, DT_RUNPATH/DT_RPATH folders) of a 64-bit little-endian ELF file: what the
    loader will look for when a host dlopens the plugin, read without running anything."""
    import struct

    data = binary.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{binary}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    needed, paths = [], []
    for _name, type_, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if type_ != 6:  # SHT_DYNAMIC; its sh_link is the string table the entries point into
            continue
        strtab = sections[link][4]
        for k in range(0, size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, offset + k)
            if tag in (1, 15, 29):  # DT_NEEDED, DT_RPATH, DT_RUNPATH
                end = data.index(b"\0", strtab + value)
                text = data[strtab + value:end].decode()
                (needed if tag == 1 else paths).extend([text] if tag == 1 else text.split(":"))
    return needed, paths


_LOAD_PROBE = "import ctypes, sys; ctypes.CDLL(sys.argv[1])"


def embedded_python(bundle: Path) -> dict[str, Any]:
    """Which libpython the bundle's binary links (name, the file its run path finds, its major.minor)
    and whether the loader can load that file. The plugin starts that Python, so clarifx and its
    packages must be installed for the same major.minor."""
    import re

    binary = bundle / BINARY
    needed, paths = _elf_dynamic(binary)
    names = [n for n in needed if re.match(r"libpython\d+\.\d+", n)]
    if not names:
        return {"library": None, "path": None, "version": None, "loads": False,
                "error": "the plugin links no libpython"}
    name = names[0]
    version = re.match(r"libpython(\d+\.\d+)", name).group(1)
    folders = [p.replace("$ORIGIN", str(binary.parent)) for p in paths if p]
    found = next((str(Path(f) / name) for f in folders if (Path(f) / name).is_file()), None)
    # Loaded in a separate process: another Python's libpython must not meet this one's symbols.
    result = subprocess.run([sys.executable, "-c", _LOAD_PROBE, found or name], capture_output=True, text=True,
                            timeout=60)
    error = (result.stderr.strip().splitlines() or [""])[-1] if result.returncode else None
    return {"library": name, "path": found, "version": version, "loads": result.returncode == 0, "error": error}


def python_lines(bundle: Path) -> tuple[list[str], bool]:
    """Doctor lines about the Python `bundle` embeds, and whether it matches this one and loads."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        info = embedded_python(bundle)
    except (OSError, ValueError) as e:
        return [f"embedded Python: cannot read {bundle / BINARY} ({e})"], False
    if info["library"] is None:
        return [f"embedded Python: {info['error']}"], False
    where = info["path"] or f"{info['library']} (not in the plugin's run path: the system loader must find it)"
    lines = [f"embedded Python: {info['library']} (Python {info['version']}) at {where}: " +
             ("loads" if info["loads"] else f"cannot be loaded ({info['error']})")]
    ok = info["loads"]
    if info["version"] != here:
        ok = False
        lines.append(f"warning: the plugin embeds Python {info['version']} but clarifx is installed in Python {here} "
                     f"({sys.executable}); reinstall clarifx with a Python {info['version']}, or rebuild the "
                     "plugin (pip install .) with this one")
    return lines, ok


def doctor() -> tuple[list[str], bool]:
    """What a host will see: (report lines, whether all is well)."""
    from .. import models

    lines, ok = [], True
    built = bundle_path()
    lines.append(f"bundle built with this clarifx: {built or 'none (pip install . builds it)'}")
    ok &= built is not None
    installed = []
    for d in search_dirs():
        b = d / BUNDLE_NAME
        if (b / BINARY).is_file():
            installed.append(b)
    if installed:
        for b in installed:
            cfg = b / CONFIG
            where = cfg.read_text().replace("\n", " ").strip() if cfg.is_file() else "no clarifx.cfg"
            lines.append(f"installed: {b} ({where})")
    else:
        ok = False
        lines.append("installed: nowhere a host looks (" + ", ".join(map(str, search_dirs())) +
                     "); run `clarifx ofx install`")
    first = installed[0] if installed else built
    if first is not None:
        python, python_ok = python_lines(first)
        lines += python
        ok &= python_ok
        try:
            plugins = probe(first)
            lines.append(f"a host loading {first} sees {len(plugins)} effect(s):")
            lines += [f"  {ident} v{major}.{minor}" for ident, major, minor, _ in plugins]
            ok &= bool(plugins)
        except Exception as e:  # noqa: BLE001  (reported, not raised: the doctor says what is wrong)
            ok = False
            lines.append(f"loading {first} fails: {e}")
    for t in exposed_types():
        try:
            default = t.param("model").default
        except KeyError:
            continue
        there = default in models.CARDS and models.installed_path(default).exists()
        lines.append(f"{t.name}: default model {default} " + ("installed" if there else
                     f"not installed (clarifx models install {default}, or choose another model)"))
    lines.append("CUDA render: " + ("offered to hosts (CuPy present)" if cuda_render_possible()
                                    else "not offered (pip install 'clarifx[cuda]')"))
    return lines, bool(ok)


def add_cli(subparsers) -> None:
    """Register `clarifx ofx install [--path DIR]` and `clarifx ofx doctor`."""
    p = subparsers.add_parser("ofx", help="install or check the OpenFX plugin")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    i = actions.add_parser("install", help="copy the plugin where OpenFX hosts look")
    i.add_argument("--path", metavar="DIR", help="folder to install into (default: first of $OFX_PLUGIN_PATH, "
                   f"else {STANDARD_DIR})")
    actions.add_parser("doctor", help="what a host will see of the plugin")
    p.set_defaults(run=_cli)


def _cli(args) -> int:
    if args.action == "install":
        target = install(args.path)
        print(f"installed {target}")
        if not any(target.parent.resolve() == d.resolve() for d in search_dirs() if d.exists()):
            print(f"note: hosts do not look in {target.parent}; add it to OFX_PLUGIN_PATH")
        return 0
    lines, ok = doctor()
    print("\n".join(lines))
    return 0 if ok else 1
