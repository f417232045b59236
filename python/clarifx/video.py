"""Video in and out through PyAV (FFmpeg): VideoSource reads frames by number, VideoSink writes them.

Pixels are RGB(A) float32 in [0, 1] in the stream's own encoding (no transfer function is applied);
alpha is straight. YCbCr <-> RGB is done here in numpy rather than by swscale, whose fixed-point paths
are off by up to 4 codes at 10 bits (white lands on 943 instead of 940): the matrix and range come from
the colour tags, chroma is resampled linearly (horizontally co-sited with the even luma samples,
vertically centred: the MPEG-2/H.264/HEVC default) and codes are rounded, not truncated.

Frames are numbered from 1 by presentation time at the clip's frame rate, so random access lands on
the same pixels as sequential decoding. Nothing is held but the decoder's frames and one decoded
frame of look-ahead, so memory stays flat however long the clip.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .frame import LINEAR, PQ_REC2020, REC709, SRGB, ClipInfo, FootageError, Frame

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mxf", ".y4m", ".mpg", ".mpeg", ".m2v",
    ".ts", ".m2ts", ".mts", ".vob", ".wmv", ".asf", ".flv", ".ogv", ".dv", ".3gp", ".nut", ".ivf",
    ".h264", ".264", ".hevc", ".265",
})

# FFmpeg's names of the colour tag values (libavutil/pixdesc.c); unspecified and reserved are left out.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
              9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRANSFERS = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
              14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
_MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
             9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
             13: "chroma-derived-c", 14: "ictcp", 15: "ipt-c2", 16: "ycgco-re", 17: "ycgco-ro"}
_RANGES = {1: "tv", 2: "pc"}
_TAGS = {"color_primaries": _PRIMARIES, "color_trc": _TRANSFERS, "colorspace": _MATRICES,
         "color_range": _RANGES}

# OCIO colourspace of a stream by its transfer tag; anything else is taken as BT.709/BT.1886 video.
_COLORSPACES = {"smpte2084": PQ_REC2020, "iec61966-2-1": SRGB, "linear": LINEAR}
# ... and the tags written for the colourspaces clarifx encodes into video.
_WRITE_TAGS = {
    REC709: {"color_primaries": "bt709", "color_trc": "bt709", "colorspace": "bt709"},
    SRGB: {"color_primaries": "bt709", "color_trc": "iec61966-2-1", "colorspace": "bt709"},
    PQ_REC2020: {"color_primaries": "bt2020", "color_trc": "smpte2084", "colorspace": "bt2020nc"},
}


def video_tags(colorspace: str) -> dict[str, str]:
    """FFmpeg colour tags that say `colorspace`; ValueError for colourspaces video cannot be tagged with."""
    if colorspace not in _WRITE_TAGS:
        raise ValueError(f"colourspace '{colorspace}' cannot be tagged in a video; "
                         f"use one of: {', '.join(_WRITE_TAGS)}")
    return dict(_WRITE_TAGS[colorspace])
_HDR_TRANSFERS = ("smpte2084", "arib-std-b67")

# (Kr, Kb) of the YCbCr matrices converted here; YCgCo, ICtCp and constant luminance are refused.
_LUMA_WEIGHTS = {"bt709": (0.2126, 0.0722), "bt470bg": (0.299, 0.114), "smpte170m": (0.299, 0.114),
                 "fcc": (0.30, 0.11), "smpte240m": (0.212, 0.087), "bt2020nc": (0.2627, 0.0593)}

# A forward jump this short is decoded through: a seek restarts at a keyframe that may lie behind
# the current position and decodes at least as many frames again. (Intra-only codecs always seek.)
_FORWARD_DECODE = 24


def probe(path) -> ClipInfo:
    """What a video holds (VideoSource(path).info) without keeping it open."""
    with VideoSource(path) as source:
        return source.info


def _reason(error: BaseException) -> str:
    """The cause of an FFmpeg or OS error on one line, without the file name FFmpeg appends."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def _tag_names(obj) -> dict[str, str]:
    """The colour tags an FFmpeg codec context or frame sets, as FFmpeg names."""
    names = {key: table.get(int(getattr(obj, key) or 0)) for key, table in _TAGS.items()}
    return {key: name for key, name in names.items() if name is not None}


def _code_scale(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma span, chroma centre, chroma span) in codes of a `bits`-deep YCbCr stream."""
    s = 1 << (bits - 8)
    if full:
        top = (1 << bits) - 1
        return 0.0, float(top), 128.0 * s, float(top)
    return 16.0 * s, 219.0 * s, 128.0 * s, 224.0 * s


# ---------------------------------------------------------------------------------------------- read

def _plane(vf, comp) -> np.ndarray:
    """A 2-D view of one component's plane (every component has its own plane here)."""
    plane = vf.planes[comp.plane]
    dtype = np.dtype(np.uint8) if comp.bits <= 8 else np.dtype(">u2" if vf.format.is_big_endian else "<u2")
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:, : plane.width]


def _is_yuv(fmt) -> bool:
    return not (fmt.is_rgb or fmt.has_palette or fmt.is_bayer or fmt.name.startswith("xyz")) \
        and len(fmt.components) >= 3


def _readable(fmt) -> bool:
    """Planar with one plane per component and samples in the low bits: read as is."""
    comps = fmt.components
    return (len({c.plane for c in comps}) == len(comps) and "msb" not in fmt.name
            and not (fmt.has_palette or fmt.is_bayer or fmt.name.startswith("xyz")))


def _planar_twin(fmt) -> str:
    """A planar format that swscale repacks `fmt` into without changing values: the same depth and
    chroma subsampling for YCbCr, so chroma is still resampled here; 8 or 16 bits for the rest."""
    bits = max(c.bits for c in fmt.components)
    alpha = "a" if any(c.is_alpha for c in fmt.components) else ""
    if not _is_yuv(fmt):
        return f"gbr{alpha}p" + ("16le" if bits > 8 else "")
    sub = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (1, 2): "440", (4, 1): "411", (4, 4): "410"}.get(
        (1024 // fmt.chroma_width(1024), 1024 // fmt.chroma_height(1024)), "444")
    name = f"yuv{alpha}{sub}p" + ("" if bits == 8 else f"{bits}le")
    try:
        av.VideoFormat(name)
    except ValueError:  # no such planar twin: 4:4:4 at 16 bits holds anything
        return f"yuv{alpha}444p16le"
    return name


def _upsample(c: np.ndarray, n: int, axis: int, centred: bool, out: np.ndarray) -> None:
    """Linear interpolation of chroma samples to `n` along `axis` (0 or 1), into `out`. Sample j sits
    on luma sample j*f, or (centred) midway across its f luma samples; edges repeat."""
    def along(s):
        return (slice(None), s) if axis else (s,)

    m = c.shape[axis]
    factor = -(-n // m)
    padded = np.concatenate([c[along(slice(0, 1))], c, c[along(slice(m - 1, m))]], axis=axis)
    for k in range(factor):  # output samples k, k+f, k+2f... all sit at offset d from a source sample
        d = (k + 0.5) / factor - 0.5 if centred else k / factor
        count = len(range(k, n, factor))
        near = padded[along(slice(1, count + 1))]
        if d == 0:
            out[along(slice(k, None, factor))] = near
        else:
            far = padded[along(slice(2, count + 2) if d > 0 else slice(0, count))]
            out[along(slice(k, None, factor))] = near + abs(d) * (far - near)


def _to_rgb(vf, matrix: str | None, full: bool) -> np.ndarray:
    """(H, W, 3|4) float32 in [0, 1] from a decoded frame."""
    if re.search(r"f(16|32)[lb]e$", vf.format.name):  # float RGB (FFV1 can hold it): as stored
        alpha = any(c.is_alpha for c in vf.format.components)
        return vf.to_ndarray(format="gbrapf32le" if alpha else "gbrpf32le")
    if not _readable(vf.format):
        # Repack to planar as limited range on both sides, so swscale moves values without rescaling.
        vf = vf.reformat(format=_planar_twin(vf.format), src_color_range=1, dst_color_range=1)
    fmt = vf.format
    comps = fmt.components
    planes = [_plane(vf, c) for c in comps]
    height, width = planes[0].shape
    alpha = [p.astype(np.float32) / ((1 << c.bits) - 1) for p, c in zip(planes, comps) if c.is_alpha]
    colour = [p for p, c in zip(planes, comps) if not c.is_alpha]
    bits = comps[0].bits
    if fmt.is_rgb:
        rgb = np.stack(colour, axis=-1).astype(np.float32) / ((1 << bits) - 1)
    elif len(colour) == 1:  # grey
        y0, ys, _, _ = _code_scale(bits, full)
        rgb = np.repeat((colour[0].astype(np.float32)[..., None] - y0) / ys, 3, axis=-1)
    else:
        kr, kb = _LUMA_WEIGHTS[matrix]
        kg = 1.0 - kr - kb
        y0, ys, c0, cs = _code_scale(bits, full)
        ycc = np.empty((height, width, 3), np.float32)  # codes less their offsets
        np.subtract(colour[0], y0, out=ycc[..., 0], dtype=np.float32)
        for i, c in ((1, colour[1]), (2, colour[2])):
            wide = np.empty((c.shape[0], width), np.float32)
            _upsample(c.astype(np.float32) - c0, width, 1, False, wide)
            _upsample(wide, height, 0, True, ycc[..., i])
        # rows: Y', Cb, Cr; columns: R, G, B
        to_rgb = np.array([[1 / ys, 1 / ys, 1 / ys],
                           [0.0, -2 * kb * (1 - kb) / kg / cs, 2 * (1 - kb) / cs],
                           [2 * (1 - kr) / cs, -2 * kr * (1 - kr) / kg / cs, 0.0]], np.float32)
        rgb = ycc @ to_rgb
    out = np.concatenate([rgb, alpha[0][..., None]], axis=-1) if alpha else rgb
    return np.clip(out, 0.0, 1.0, out=out)


def _hdr10(vf) -> dict | None:
    """HDR10 static metadata of a decoded frame in VideoSink's `hdr10` form, or None."""
    side = {sd.type.name: bytes(sd) for sd in vf.side_data}
    mastering = side.get("MASTERING_DISPLAY_METADATA")
    if mastering is None:
        return None
    # AVMasteringDisplayMetadata: AVRational primaries[3 (R, G, B)][2], white[2], min, max; has_*.
    v = struct.unpack("=22i", mastering[:88])
    q = [v[i] / v[i + 1] if v[i + 1] else 0.0 for i in range(0, 20, 2)]
    if not (v[20] and v[21]):
        return None
    c = [round(x * 50000) for x in q[:8]]
    lum_min, lum_max = round(q[8] * 10000), round(q[9] * 10000)
    meta = {"mastering_display":
            f"G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})WP({c[6]},{c[7]})L({lum_max},{lum_min})"}
    light = side.get("CONTENT_LIGHT_LEVEL")
    if light is not None:
        meta["max_cll"], meta["max_fall"] = struct.unpack("=2I", light[:8])
    return meta


class VideoSource:
    """Frames of the first video stream of a file by number, 1..N; a context manager.

    `info` describes the clip: its tags hold the colour tags the file sets (FFmpeg names), "codec",
    "pix_fmt", "bit_depth" and, for HDR10 video, "hdr10" in VideoSink's form.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._container = self._frames = None
        try:
            self._open()
            count = self._stream.frames or self._count_packets()
            self._restart()
            first, error = self._next()
            if first is None or count == 0:
                cause = f": {_reason(error)}" if error else ""
                raise FootageError(f"{self.path}: no decodable frames{cause}")
            stream, cc = self._stream, self._stream.codec_context
            fmt = first.format
            tags = _tag_names(first) | _tag_names(cc)  # the stream's (container's) tags win
            default_range = "tv" if _is_yuv(fmt) and not fmt.name.startswith("yuvj") else "pc"
            self._full = tags.get("color_range", default_range) == "pc"
            self._matrix = tags.get("colorspace")
            if self._matrix in (None, "gbr"):  # untagged: guess as players do
                wide = tags.get("color_primaries") == "bt2020" or tags.get("color_trc") in _HDR_TRANSFERS
                hd = first.height > 576 or first.width > 1024
                self._matrix = "bt2020nc" if wide else "bt709" if hd else "smpte170m"
            if _is_yuv(fmt) and self._matrix not in _LUMA_WEIGHTS:
                raise FootageError(f"{self.path}: unsupported YCbCr matrix {self._matrix!r}")
        except av.FFmpegError as e:
            self.close()
            raise FootageError(f"{self.path}: cannot read video: {_reason(e)}") from None
        except FootageError:
            self.close()
            raise
        self._fps = stream.guessed_rate or stream.average_rate or stream.base_rate
        self._pts0 = first.pts if self._fps else None
        self._ahead = (1, first)

        tags |= {"codec": cc.name, "pix_fmt": fmt.name, "bit_depth": max(c.bits for c in fmt.components)}
        # Provenance; Matroska stores tag names upper-cased.
        tags |= {k.lower(): v for k, v in self._container.metadata.items() if k.lower().startswith("clarifx:")}
        hdr10 = _hdr10(first)
        if hdr10:
            tags["hdr10"] = hdr10
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        self.info = ClipInfo(
            path=self.path, kind="video", width=first.width, height=first.height,
            channels=("R", "G", "B", "A") if any(c.is_alpha for c in fmt.components) else ("R", "G", "B"),
            first=1, last=count,
            colorspace=_COLORSPACES.get(tags.get("color_trc"), REC709),
            premultiplied=False, pixel_aspect=float(sar) if sar else 1.0,
            fps=Fraction(self._fps) if self._fps else None, format=f"{cc.name} {fmt.name}", tags=tags)

    # Decoder state: _current is the last decoded (number, frame) at or before the frame asked for,
    # _ahead the next one (None at the end), _frames the decoding generator (None: reposition),
    # _damage the first decode error since decoding started there. Numbers between _current and
    # _ahead hold _current (AVI drop frames, variable rates), unless there was damage: then those
    # frames were lost to it. (A decoder reports an error late, with frame threads and B-frames,
    # but before it outputs any frame shown after the lost one.)

    def _open(self) -> None:
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError) as e:
            raise FootageError(f"{self.path}: cannot open video: {_reason(e)}") from None
        if not self._container.streams.video:
            raise FootageError(f"{self.path}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._fresh = True

    def _count_packets(self) -> int:
        """Frames in a container that does not record its count: one per packet, demuxed, not decoded."""
        count = 0
        self._fresh = False
        try:
            for packet in self._container.demux(self._stream):
                count += packet.size > 0
        except av.FFmpegError:
            pass  # damage ends the count: frames after it cannot be reached anyway
        return count

    def _decoding(self):
        """Decoded frames in order; a packet the decoder rejects is yielded as its error, and
        decoding goes on (as FFmpeg's own tools do) so one damaged packet loses only its frames."""
        for packet in self._container.demux(self._stream):  # ends with an empty packet: the flush
            try:
                frames = self._stream.decode(packet)
            except av.FFmpegError as e:
                yield e
                continue
            yield from frames

    def _restart(self) -> None:
        """Decode from the first frame (a fresh demuxer: seeking to 0 is not exact in every format)."""
        if not self._fresh:
            self._container.close()
            self._open()
        self._fresh = False
        self._frames = self._decoding()
        self._current = self._ahead = self._damage = None

    def _next(self):
        """The next decoded frame (None at the end) and the last decode error met on the way."""
        error = None
        while True:
            try:
                item = next(self._frames, None)
            except av.FFmpegError as e:  # the demuxer failed: nothing after this can be read
                return None, e
            if not isinstance(item, av.FFmpegError):
                return item, error
            error = item

    def _number(self, vf, previous: int | None) -> int | None:
        """Frame number of `vf` from its timestamp, else one after `previous` (None: unknown)."""
        if vf.pts is None or self._pts0 is None:
            return None if previous is None else previous + 1
        return round((vf.pts - self._pts0) * self._stream.time_base * self._fps) + 1

    def _advance(self) -> None:
        vf, error = self._next()
        self._damage = self._damage or error
        self._current = self._ahead
        self._ahead = None if vf is None else (self._number(vf, self._current[0]), vf)

    def _covers(self, n: int) -> bool:
        """Decoding forward from here reaches frame n without a seek."""
        if self._frames is None:
            return False
        start = self._current or self._ahead
        if start is None or start[0] > n:
            return False
        if self._ahead is None:
            return True
        limit = 0 if self._stream.codec_context.codec.intra_only else _FORWARD_DECODE
        return n - self._ahead[0] <= limit

    def _seek(self, n: int) -> None:
        """Put frame n ahead: seek to the keyframe before it and back off where decoding starts after
        n (an open GOP shows frames before its keyframe that cannot be decoded from there)."""
        back = 0
        while True:
            target = n - back
            if target <= 1 or self._pts0 is None:
                self._restart()
                vf, self._damage = self._next()
                self._ahead = None if vf is None else (1, vf)
                return
            offset = int(self._pts0 + (target - 1) / (self._fps * self._stream.time_base))
            try:
                self._container.seek(offset, stream=self._stream, backward=True)
            except av.FFmpegError:  # a stream that cannot seek is decoded from its start
                back = n
                continue
            self._frames = self._decoding()
            self._current = None
            vf, self._damage = self._next()
            number = None if vf is None else self._number(vf, None)
            if number is not None and number <= n:
                self._ahead = (number, vf)
                return
            back = max(2 * back, 16)

    def read(self, number: int) -> Frame:
        """Frame `number` (first..last) as RGB(A) float32 in [0, 1]."""
        info = self.info
        if not isinstance(number, (int, np.integer)) or not info.first <= number <= info.last:
            raise FootageError(f"{self.path}: frame {number} is out of range {info.first}-{info.last}")
        n = int(number)
        if self._container is None:
            raise FootageError(f"{self.path}: frame {n}: the source is closed")
        try:
            if not self._covers(n):
                self._seek(n)
            while self._ahead is not None and self._ahead[0] <= n:
                self._advance()
            if self._current is None:
                raise FootageError(f"{self.path}: frame {n}: nothing decodes up to it")
            last, vf = self._current
            if n != last and self._damage is not None:
                raise FootageError(f"{self.path}: frame {n}: cannot decode: {_reason(self._damage)}")
            if self._ahead is None and n >= last + self._span(vf):
                raise FootageError(f"{self.path}: frame {n}: the video ends after frame {last} "
                                   f"(truncated or damaged)")
            pixels = _to_rgb(vf, self._matrix, self._full)
        except (av.FFmpegError, ValueError) as e:
            self._frames = None
            raise FootageError(f"{self.path}: frame {n}: cannot decode: {_reason(e)}") from None
        if (vf.width, vf.height) != (info.width, info.height):
            raise FootageError(f"{self.path}: frame {n}: size changed to {vf.width}x{vf.height} "
                               f"from {info.width}x{info.height}")
        return Frame(pixels=pixels, channels=info.channels, colorspace=info.colorspace, number=n,
                     premultiplied=False, pixel_aspect=info.pixel_aspect, tags=dict(info.tags))

    def _span(self, vf) -> int:
        """How many frame numbers a frame covers by its duration (at least 1)."""
        if vf.duration and self._fps:
            return max(1, round(vf.duration * self._stream.time_base * self._fps))
        return 1

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._frames = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- write

_DEFAULT_CODECS = {".mp4": "h264", ".m4v": "h264", ".mov": "prores", ".mkv": "ffv1", ".mxf": "dnxhr"}

# codec -> (encoder, {bit depth: pixel format without alpha}, default depth, stores alpha, options)
_CODECS = {
    "h264": ("libx264", {8: "yuv420p", 10: "yuv420p10le"}, 8, False, {"preset": "medium"}),
    "h265": ("libx265", {8: "yuv420p", 10: "yuv420p10le"}, 10, False, {"preset": "medium"}),
    "prores": ("prores_ks", {10: "yuv422p10le"}, 10, False, {"profile": "hq", "vendor": "apl0"}),
    "prores4444": ("prores_ks", {10: "yuv444p10le"}, 10, True, {"profile": "4444", "vendor": "apl0"}),
    # Archival FFV1 settings: version 3, every frame a keyframe, per-slice CRCs.
    "ffv1": ("ffv1", {16: "gbrp16le"}, 16, True, {"level": "3", "g": "1", "slicecrc": "1"}),
    "dnxhr": ("dnxhd", {10: "yuv422p10le"}, 10, False, {"profile": "dnxhr_hqx"}),
}
_DEFAULT_CRF = {"h264": 16, "h265": 18}
_ALPHA_FORMATS = {"yuv444p10le": "yuva444p10le", "gbrp16le": "gbrap16le"}
_MASTERING = re.compile(r"G\(\d+,\d+\)B\(\d+,\d+\)R\(\d+,\d+\)WP\(\d+,\d+\)L\(\d+,\d+\)")


def _check_tags(tags: dict) -> dict[str, str]:
    """The colour tags of `tags` (other keys ignored); ValueError naming an unknown value."""
    out = {}
    for key, table in _TAGS.items():
        if tags.get(key) is not None:
            if tags[key] not in table.values():
                raise ValueError(f"{key}: unknown FFmpeg name {tags[key]!r}")
            out[key] = tags[key]
    return out


def _rate(fps) -> Fraction:
    """fps as a Fraction; a float such as 29.97 is taken as the NTSC rate 30000/1001 it stands for."""
    if not isinstance(fps, float):
        return Fraction(fps)
    ntsc = round(fps * 1.001)
    if fps != round(fps) and abs(fps * 1.001 - ntsc) < 1e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _host(pixels) -> np.ndarray:
    """A numpy array of a numpy, torch or CuPy array (device arrays are copied to the host)."""
    module = type(pixels).__module__.split(".")[0]
    if module == "torch":
        return pixels.detach().cpu().numpy()
    if module == "cupy":
        return pixels.get()
    return np.asarray(pixels)


def _chroma_down(c: np.ndarray, fx: int, fy: int) -> np.ndarray:
    """Subsample chroma by 2 (or 1) per axis, matching _upsample's siting: a [1 2 1] filter centred
    on the even columns, the mean of row pairs."""
    if fx == 2:
        padded = np.concatenate([c[:, :1], c, c[:, -1:]], axis=1)
        c = 0.25 * padded[:, 0:-2:2] + 0.5 * padded[:, 1:-1:2] + 0.25 * padded[:, 2::2]
    if fy == 2:
        c = 0.5 * (c[0::2] + c[1::2])
    return c


class VideoSink:
    """Writes frames in order to a video file that appears, complete, only on close().

    Codecs: h264 (8 or 10 bits, 4:2:0), h265 (10 or 8 bits, 4:2:0; hdr10= adds HDR10 metadata),
    prores (422 HQ), prores4444 (keeps alpha), ffv1 (lossless 16-bit RGB(A)), dnxhr (HQX, 10-bit
    4:2:2, 256x120 at least). Alpha reaches only prores4444 and ffv1; other codecs drop it. `quality`
    is the CRF of h264/h265. The colour tags (`tags`, else the first frame's) are written to the
    stream and choose the YCbCr matrix and range; what they leave out is taken as BT.709, video range.
    """

    wants_premultiplied = False

    def __init__(self, path, *, fps, codec=None, bit_depth=None, tags=None, hdr10=None, quality=None):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        codec = codec or _DEFAULT_CODECS.get(suffix)
        if codec is None:
            raise ValueError(f"{self.path}: no default codec for {suffix or 'no extension'!r}; "
                             f"pass codec= one of {', '.join(_CODECS)}")
        if codec not in _CODECS:
            raise ValueError(f"codec must be one of {', '.join(_CODECS)}, got {codec!r}")
        encoder, formats, default_depth, self._keeps_alpha, options = _CODECS[codec]
        bit_depth = default_depth if bit_depth is None else bit_depth
        if bit_depth not in formats:
            raise ValueError(f"bit_depth for {codec} must be one of {sorted(formats)}, got {bit_depth!r}")
        self.fps = _rate(fps)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self._tags = None if tags is None else _check_tags(tags)
        if self._tags and codec != "ffv1" and self._tags.get("colorspace", "bt709") not in _LUMA_WEIGHTS:
            raise ValueError(f"colorspace: cannot convert to the {self._tags['colorspace']!r} matrix")
        options = dict(options)
        if quality is not None:
            if codec not in _DEFAULT_CRF:
                raise ValueError(f"quality applies to h264 and h265 (CRF), not {codec}")
            if not isinstance(quality, int) or not 0 <= quality <= 51:
                raise ValueError(f"quality must be a CRF from 0 to 51, got {quality!r}")
        if codec in _DEFAULT_CRF:
            options["crf"] = str(_DEFAULT_CRF[codec] if quality is None else quality)
        if codec == "h265":
            options["x265-params"] = "log-level=error"
        if hdr10 is not None:
            if codec != "h265":
                raise ValueError(f"hdr10 metadata needs codec h265, got {codec}")
            if bit_depth != 10:
                raise ValueError(f"hdr10 needs bit_depth 10, got {bit_depth}")
            options["x265-params"] += self._hdr10_params(hdr10)
        self.codec, self.bit_depth = codec, bit_depth
        self._encoder, self._format, self._options = encoder, formats[bit_depth], options
        self._hdr10 = hdr10 is not None
        self._stream = None
        self._written = 0
        self._finished = False
        self._container = None
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix,
                                             dir=self.path.parent)
        except OSError as e:
            raise FootageError(f"{self.path}: cannot create video: {_reason(e)}") from None
        os.close(fd)
        try:
            # moov atom first: a cut-short copy still opens, and players can start before the end
            # use_metadata_tags: MP4/QuickTime keep our own keys (provenance such as "clarifx:model").
            movflags = {"movflags": "+faststart+use_metadata_tags"} if suffix in (".mp4", ".m4v", ".mov") else {}
            self._container = av.open(self._tmp, "w", options=movflags)
        except (av.FFmpegError, OSError) as e:
            Path(self._tmp).unlink(missing_ok=True)
            raise FootageError(f"{self.path}: cannot create video: {_reason(e)}") from None

    @staticmethod
    def _hdr10_params(hdr10: dict) -> str:
        display = hdr10.get("mastering_display", "")
        if not _MASTERING.fullmatch(display):
            raise ValueError(f"hdr10 mastering_display must look like G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min), "
                             f"got {display!r}")
        params = f":hdr10=1:master-display={display}"
        if "max_cll" in hdr10 or "max_fall" in hdr10:
            cll, fall = int(hdr10.get("max_cll", 0)), int(hdr10.get("max_fall", 0))
            params += f":max-cll={cll},{fall}"
        return params

    def _start(self, frame: Frame, pixels: np.ndarray, alpha: bool) -> None:
        """Open the encoder for the first frame's size, alpha, pixel aspect and tags."""
        height, width = pixels.shape[:2]
        pix_fmt = _ALPHA_FORMATS[self._format] if alpha else self._format
        fmt = av.VideoFormat(pix_fmt)
        fx, fy = width // fmt.chroma_width(width), height // fmt.chroma_height(height)
        if fmt.chroma_width(width) * fx != width or fmt.chroma_height(height) * fy != height:
            raise FootageError(f"{self.path}: {self.codec} {pix_fmt} needs even sizes where chroma is "
                               f"subsampled, got {width}x{height}")
        suffix = self.path.suffix.lower()
        # H.264/H.265 keep the pixel aspect in the bitstream, QuickTime/MP4 (and MXF for ProRes) in the
        # container; the other muxers read it from the stream, where PyAV cannot set it.
        stores_aspect = (self.codec in ("h264", "h265") or suffix in (".mov", ".mp4", ".m4v")
                         or (suffix == ".mxf" and self.codec.startswith("prores")))
        if frame.pixel_aspect != 1.0 and not stores_aspect:
            raise FootageError(f"{self.path}: pixel aspect {frame.pixel_aspect:g} cannot be stored "
                               f"by {self.codec} in {suffix}: use h264/h265 or a .mov file")

        tags = dict(self._tags if self._tags is not None else _check_tags(frame.tags))
        if self._hdr10:
            tags |= _WRITE_TAGS[PQ_REC2020]
        if fmt.is_rgb:
            tags |= {"colorspace": "gbr", "color_range": "pc"}
        elif tags.get("colorspace") not in _LUMA_WEIGHTS:  # a source's odd matrix: pixels are RGB now
            tags["colorspace"] = "bt2020nc" if tags.get("color_primaries") == "bt2020" else "bt709"
        tags = {"color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv"} | tags
        self._tag_codes = {key: next(code for code, v in _TAGS[key].items() if v == name)
                           for key, name in tags.items()}

        options = dict(self._options)
        if self._encoder == "libx264" and width * height > 1920 * 1080:
            # x264's default 40-frame lookahead alone holds about 1 GB at 3840x2160; 10 frames of
            # lookahead keep its rate control and about half that memory.
            options["rc-lookahead"] = "10"
        stream = self._container.add_stream(self._encoder, rate=self.fps, options=options)
        for key, value in frame.tags.items():  # provenance ("clarifx:model", ...) in the container
            if key.startswith("clarifx:"):
                self._container.metadata[key] = str(value)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        cc = stream.codec_context
        cc.time_base = 1 / self.fps
        for key, code in self._tag_codes.items():
            setattr(cc, key, code)
        if frame.pixel_aspect != 1.0:
            cc.sample_aspect_ratio = Fraction(frame.pixel_aspect).limit_denominator(1000)
        self._stream, self._size, self._alpha = stream, (height, width), alpha
        self._full = tags["color_range"] == "pc"
        self._weights = None if fmt.is_rgb else _LUMA_WEIGHTS[tags["colorspace"]]

    def _encode(self, rgb: np.ndarray, alpha: np.ndarray | None):
        """An av.VideoFrame holding rgb (H, W, 3) and alpha (H, W) in [0, 1], rounded to codes."""
        pix_fmt = self._stream.pix_fmt
        if self._weights is None:  # 16-bit RGB(A)
            planes = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=-1)
            vf = av.VideoFrame.from_ndarray(np.rint(planes * 65535.0).astype(np.uint16), format=pix_fmt)
        else:
            fmt = av.VideoFormat(pix_fmt)
            height, width = self._size
            kr, kb = self._weights
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            # In-place arithmetic: at 3840x2160 every temporary plane is 33 MB.
            y = r * np.float32(kr)
            y += g * np.float32(1.0 - kr - kb)
            y += b * np.float32(kb)
            fx, fy = width // fmt.chroma_width(width), height // fmt.chroma_height(height)
            cb = _chroma_down(np.subtract(b, y, out=b) / np.float32(2 * (1 - kb)), fx, fy)
            cr = _chroma_down(np.subtract(r, y, out=r) / np.float32(2 * (1 - kr)), fx, fy)
            bits = fmt.components[0].bits
            y0, ys, c0, cs = _code_scale(bits, self._full)
            top = (1 << bits) - 1
            values = [(y, y0, ys), (cb, c0, cs), (cr, c0, cs)]
            if alpha is not None:
                values.append((alpha, 0.0, top))
            vf = av.VideoFrame(width, height, pix_fmt)
            for comp, (value, offset, scale) in zip(fmt.components, values):
                value *= np.float32(scale)
                value += np.float32(offset)
                _plane(vf, comp)[...] = np.clip(np.rint(value, out=value), 0, top, out=value)
        for key, code in self._tag_codes.items():
            setattr(vf, key, code)
        return vf

    def write(self, frame: Frame) -> None:
        """Append a frame (straight alpha); any failure aborts the sink, leaving no file behind."""
        if self._container is None:
            raise FootageError(f"{self.path}: the sink is closed or was aborted")
        number = frame.number or self._written + 1
        try:
            pixels = _host(frame.pixels)
            if pixels.ndim != 3 or tuple(frame.channels[:3]) != ("R", "G", "B") \
                    or pixels.shape[2] != len(frame.channels):
                raise FootageError(f"{self.path}: frame {number}: expected R, G, B (A) channels, "
                                   f"got {frame.channels} with shape {pixels.shape}")
            alpha_index = frame.alpha_index
            if alpha_index is not None and frame.premultiplied:
                raise FootageError(f"{self.path}: frame {number}: alpha must be straight, not premultiplied")
            if not np.isfinite(pixels).all():
                raise FootageError(f"{self.path}: frame {number}: pixels are not finite (NaN or infinity)")
            keep_alpha = alpha_index is not None and self._keeps_alpha
            if self._stream is None:
                self._start(frame, pixels, keep_alpha)
            if pixels.shape[:2] != self._size:
                raise FootageError(f"{self.path}: frame {number}: size {pixels.shape[1]}x{pixels.shape[0]} "
                                   f"differs from the first frame's {self._size[1]}x{self._size[0]}")
            if keep_alpha != self._alpha:
                raise FootageError(f"{self.path}: frame {number}: alpha "
                                   f"{'appears' if keep_alpha else 'is missing'} unlike in the first frame")
            rgb = np.clip(pixels[..., :3], 0.0, 1.0, dtype=np.float32)
            alpha = np.clip(pixels[..., alpha_index], 0.0, 1.0, dtype=np.float32) if keep_alpha else None
            vf = self._encode(rgb, alpha)
            vf.pts = self._written
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
            self._written += 1
        except FootageError:
            self.abort()
            raise
        except (av.FFmpegError, OSError, ValueError) as e:
            self.abort()
            raise FootageError(f"{self.path}: frame {number}: cannot encode: {_reason(e)}") from None

    def close(self) -> None:
        """Flush the encoder and move the finished file over `path`."""
        if self._finished:
            return
        if self._container is None:
            raise FootageError(f"{self.path}: nothing to finish: writing failed or was aborted")
        try:
            if self._stream is None:
                raise FootageError(f"{self.path}: no frames were written")
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp made it private; give it a normal file's mode
            os.replace(self._tmp, self.path)
        except FootageError:
            self.abort()
            raise
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise FootageError(f"{self.path}: cannot finish video: {_reason(e)}") from None
        self._container = None
        self._finished = True

    def abort(self) -> None:
        """Drop what was written; `path` is left as it was."""
        if self._finished:
            return
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, OSError):
                pass  # the file is being thrown away
            self._container = None
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
