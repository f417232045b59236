"""Read and Write: where footage enters and leaves a graph."""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from .. import colour
from ..footage import atomic_write_text, kind_of, open_sink, open_source, output_colorspace
from ..frame import PQ_REC2020, Frame
from ..video import video_tags
from .base import NodeType, Param, Want, register


class Prefetcher:
    """Reads frames in a known order on a background thread, a few ahead of the renderer."""

    def __init__(self, read, order: list[int], depth: int = 2):
        self._read = read
        self._order = list(order)
        self._next = 0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clarifx-decode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for n in self._order:
            try:
                item = (n, self._read(n), None)
            except BaseException as e:  # handed to the renderer, which raises it at this frame
                item = (n, None, e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None or self._stop.is_set():
                return

    def take(self, n: int):
        """Frame n if it is the next one read ahead, else None (the caller reads it itself)."""
        if self._next >= len(self._order) or self._order[self._next] != n:
            self.stop()
            return None
        self._next += 1
        _, frame, error = self._queue.get()
        if error is not None:
            raise error
        return frame

    @property
    def active(self) -> bool:
        return not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


@register
class Read(NodeType):
    name = "Read"
    help = "Read an image, an image sequence (shot.%04d.exr, shot.####.exr) or a video."
    inputs = ()
    params = (
        Param("file", "file", "", "Image file, image sequence pattern or video file."),
        Param("colorspace", "string", "auto",
              "Colourspace of the footage ('auto': from the file's metadata, else from its format)."),
        Param("alpha", "choice", "auto", "How the file stores alpha ('auto': as its format defines).",
              choices=("auto", "premultiplied", "straight")),
    )

    def __init__(self):
        self._source = None
        self._file = None
        self._prefetch: Prefetcher | None = None

    def source(self, params):
        if not params["file"]:
            raise ValueError("Read: parameter 'file' is not set")
        if self._file != params["file"]:
            self.close()
            self._source = open_source(params["file"])
            self._file = params["file"]
        return self._source

    def _interpret(self, params, x):
        """ClipInfo or Frame `x` with the colourspace / alpha state the user says the file has, and grey
        footage as RGB (every node and video codec downstream expects colour channels)."""
        # Provenance describes the file it was written into, not what is made from it next.
        changes = {"tags": {k: v for k, v in x.tags.items() if not k.startswith("clarifx:")}}
        if x.channels[:1] == ("Y",) and x.channels[1:] in ((), ("A",)):
            changes["channels"] = ("R", "G", "B") + x.channels[1:]
            if isinstance(x, Frame):
                y = x.pixels[:, :, :1]
                changes["pixels"] = np.concatenate([y, y, y, x.pixels[:, :, 1:]], axis=2)
        if params["colorspace"] != "auto":
            changes["colorspace"] = colour.canonical(params["colorspace"])
        if params["alpha"] != "auto":
            changes["premultiplied"] = params["alpha"] == "premultiplied"
        return dataclasses.replace(x, **changes)

    def clip(self, params, inputs):
        return self._interpret(params, self.source(params).info)

    def prefetch(self, params, order: list[int]) -> None:
        self._stop_prefetch()
        self._prefetch = Prefetcher(self.source(params).read, order)

    def render(self, params, t, inputs):
        frame = self._prefetch.take(t) if self._prefetch and self._prefetch.active else None
        if frame is None:
            frame = self.source(params).read(t)
        return self._interpret(params, frame)

    def _stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.stop()
            self._prefetch = None

    def close(self) -> None:
        self._stop_prefetch()
        if self._source is not None:
            self._source.close()
        self._source = self._file = None


@register
class Write(NodeType):
    name = "Write"
    help = ("Write an image, an image sequence or a video. Files appear complete or not at all; a sequence "
            "render that was interrupted resumes at the first missing or damaged frame.")
    is_writer = True
    params = (
        Param("file", "file", "", "Output image, image sequence pattern (out.%04d.exr) or video file."),
        Param("colorspace", "string", "auto",
              "Colourspace to write ('auto': the input's, where the format can store it)."),
        Param("codec", "choice", "auto", "Video codec ('auto': from the extension: .mp4 H.264, .mov ProRes, "
              ".mkv FFV1).", choices=("auto", "h264", "h265", "prores", "prores4444", "ffv1")),
        Param("bit_depth", "int", 0, "Video bits per sample (0: the codec's default).", min=0, max=16),
        Param("dtype", "choice", "auto", "Image sample type ('auto': half for EXR, 10-bit for DPX, 16-bit "
              "for TIFF, 8-bit for PNG and JPEG).", choices=("auto", "uint8", "uint10", "uint16", "half", "float")),
        Param("compression", "string", "auto", "Image compression as OpenImageIO names it (e.g. zip, piz, dwaa)."),
        Param("quality", "int", 0, "Video quality (CRF for H.264/H.265; 0: the default).", min=0, max=63),
        Param("fps", "float", 0.0, "Video frame rate (0: the input's, else 24).", min=0.0, max=1000.0),
        Param("mastering_display", "string", "",
              "HDR10 mastering display for H.265, as G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)."),
        Param("max_cll", "int", 0, "HDR10 maximum content light level in nits (H.265).", min=0, max=10000),
        Param("max_fall", "int", 0, "HDR10 maximum frame-average light level in nits (H.265).", min=0, max=10000),
    )

    def __init__(self):
        self._sink = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @staticmethod
    def _float_storage(params) -> bool:
        if params["dtype"] != "auto":
            return params["dtype"] in ("half", "float")
        return kind_of(params["file"]) != "video" and Path(params["file"]).suffix.lower() == ".exr"

    def want(self, params, index, clip):
        if not params["file"]:
            raise ValueError("Write: parameter 'file' is not set")
        space = params["colorspace"]
        if space == "auto":
            space = output_colorspace(params["file"], clip.colorspace, float_storage=self._float_storage(params))
        elif kind_of(params["file"]) == "video":
            video_tags(colour.canonical(space))  # refuses, early, what a video cannot be tagged with
        # Video stores straight alpha (ProRes 4444); image formats take premultiplied frames.
        return Want(colorspace=space, premultiplied=kind_of(params["file"]) != "video")

    # --- rendering: begin, render (per frame), finish or abort ---
    def begin(self, params, clip, frames: list[int], fingerprint: str) -> list[int]:
        """Open the output; return the frames still to render (a sequence resumes where it stopped)."""
        file = params["file"]
        kind = kind_of(file)
        if kind == "image" and len(frames) > 1:
            raise ValueError(f"{file}: one image cannot hold {len(frames)} frames; "
                             "write a sequence (out.%04d.png) or a video")
        hdr10 = None
        if params["mastering_display"] or params["max_cll"] or params["max_fall"]:
            hdr10 = {"mastering_display": params["mastering_display"],
                     "max_cll": params["max_cll"], "max_fall": params["max_fall"]}
        elif params["codec"] == "h265" and clip.colorspace == PQ_REC2020:
            hdr10 = clip.tags.get("hdr10")  # an HDR10 source keeps its static metadata
        auto = lambda key: None if params[key] in ("auto", 0) else params[key]  # noqa: E731
        self._sink = open_sink(file, fps=Fraction(params["fps"] or clip.fps or 24).limit_denominator(100000),
                               codec=auto("codec"), bit_depth=auto("bit_depth"), dtype=auto("dtype"),
                               compression=auto("compression"), hdr10=hdr10, quality=auto("quality"))
        todo = list(frames)
        if kind == "sequence":
            todo = self._resume(file, clip, frames, fingerprint)
        self._error = None
        self._queue = queue.Queue(maxsize=1)
        self._taken = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._drain, name="clarifx-write", daemon=True)
        self._thread.start()
        return todo

    def _resume(self, file: str, clip, frames: list[int], fingerprint: str) -> list[int]:
        """Frames to render: all of them, unless the last render of this output came from the same graph,
        in which case the frames it completed are kept. The record sits beside the frames."""
        record = Path(file).parent / f".{Path(file).name}.clarifx-render"
        try:
            same = json.loads(record.read_text()).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            same = False
        todo = [t for t in frames
                if not (same and self._sink.is_complete(t, clip.width, clip.height, len(clip.channels)))]
        atomic_write_text(record, json.dumps({"fingerprint": fingerprint}) + "\n")
        return todo

    def _drain(self) -> None:
        while True:
            frame = self._queue.get()
            self._taken.release()
            if frame is None or self._error is not None:
                return
            try:
                self._sink.write(frame)
            except BaseException as e:
                self._error = e

    def _hand_over(self, item) -> None:
        """Give `item` to the writer thread and wait until it takes it: one frame is written while the
        next is rendered, and no third one waits in between (at 3840x2160 each is 100 MB)."""
        self._queue.put(item)  # the slot is free: the previous item was taken
        while not self._taken.acquire(timeout=0.1):
            if not self._thread.is_alive():
                return

    def render(self, params, t, inputs):
        frame = inputs[0][t]
        if kind_of(params["file"]) == "video" and not colour.is_data(frame.colorspace):
            tags = video_tags(frame.colorspace)
            if frame.tags.get("color_trc") != tags["color_trc"]:  # re-encoded: say what it is now
                frame = frame.replace(tags={**frame.tags, **tags, "color_range": "tv"})
        if self._error is not None:
            raise self._error
        self._hand_over(frame)
        return frame

    def finish(self) -> None:
        """Write the last frame and complete the output."""
        self._hand_over(None)
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error
        self._sink.close()
        self._sink = None

    def abort(self) -> None:
        """Stop: frames already rendered are still written (sequences keep them, so a re-run resumes after
        them); an unfinished video is removed whole."""
        if self._thread is not None:
            if self._thread.is_alive():
                self._hand_over(None)
            self._thread.join()
            self._thread = None
        if self._sink is not None:
            self._sink.abort()
            self._sink = None

    def close(self) -> None:
        self.abort()
