import os
import random
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data

from clarifx import video
from clarifx.frame import PQ_REC2020, REC709, FootageError, Frame
from clarifx.video import VIDEO_EXTENSIONS, VideoSink, VideoSource, probe

DATA = Path.home() / ".cache" / "clarifx-data" / "video"
RGB = ("R", "G", "B")
RGBA = ("R", "G", "B", "A")
HDR10 = {"mastering_display": "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)",
         "max_cll": 1000, "max_fall": 400}


@pytest.fixture(scope="module")
def photo():
    return skimage.data.astronaut().astype(np.float32) / 255


def moving(photo, count, height, width, alpha=False):
    """Frames of a crop panning over a photo (each frame differs), straight alpha as a ramp."""
    frames = []
    for i in range(count):
        pixels = photo[60 + 3 * i: 60 + 3 * i + height, 90 + 5 * i: 90 + 5 * i + width]
        if alpha:
            ramp = np.broadcast_to(np.linspace(0, 1, width, dtype=np.float32)[:, None], (height, width, 1))
            pixels = np.concatenate([pixels, ramp], axis=-1)
        frames.append(Frame(np.ascontiguousarray(pixels), RGBA if alpha else RGB, REC709, number=i + 1,
                            premultiplied=False))
    return frames


def write(path, frames, **kwargs):
    kwargs.setdefault("fps", 25)
    with VideoSink(path, **kwargs) as sink:
        for frame in frames:
            sink.write(frame)
    return path


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2))


def pyav_h264(path, frames, x264_params):
    """A test clip encoded by PyAV itself, with encoder settings our sink does not expose (GOP, B-frames)."""
    with av.open(str(path), "w") as container:
        options = {"preset": "ultrafast", "x264-params": x264_params}
        stream = container.add_stream("libx264", rate=25, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for i, pixels in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.rint(pixels * 255).astype(np.uint8), format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return path


# --------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("name, codec, kwargs, size, min_psnr, pix_fmt", [
    ("a.mp4", None, {}, (96, 128), 36, "h264 yuv420p"),
    ("b.mp4", "h264", {"bit_depth": 10}, (96, 128), 36, "h264 yuv420p10le"),
    ("c.mkv", "h265", {}, (96, 128), 36, "hevc yuv420p10le"),
    ("d.mov", None, {}, (96, 128), 40, "prores yuv422p10le"),
    ("e.mxf", None, {}, (144, 256), 38, "dnxhd yuv422p10le"),
])
def test_lossy_round_trip_keeps_the_picture(tmp_path, photo, name, codec, kwargs, size, min_psnr, pix_fmt):
    frames = moving(photo, 6, *size)
    write(tmp_path / name, frames, codec=codec, **kwargs)
    with VideoSource(tmp_path / name) as source:
        assert source.info.format == pix_fmt
        assert (source.info.first, source.info.last) == (1, 6)
        assert (source.info.height, source.info.width) == size
        for frame in frames:
            got = source.read(frame.number)
            assert got.pixels.dtype == np.float32 and got.pixels.shape == (*size, 3)
            assert psnr(got.pixels, frame.pixels) > min_psnr
            # the right frame, not a neighbour: the pan moves 3-5 pixels a frame
            other = frames[frame.number % len(frames)]
            assert psnr(got.pixels, other.pixels) < min_psnr - 10


def test_ffv1_is_near_exact_with_alpha(tmp_path, photo):
    frames = moving(photo, 4, 40, 56, alpha=True)
    write(tmp_path / "a.mkv", frames)
    with VideoSource(tmp_path / "a.mkv") as source:
        assert source.info.channels == RGBA and source.info.premultiplied is False
        assert source.info.format == "ffv1 gbrap16le"
        for frame in frames:
            got = source.read(frame.number)
            assert got.channels == RGBA and got.premultiplied is False
            np.testing.assert_allclose(got.pixels, frame.pixels, atol=1e-5)


def test_prores4444_keeps_alpha(tmp_path, photo):
    frames = moving(photo, 3, 48, 64, alpha=True)
    write(tmp_path / "a.mov", frames, codec="prores4444")
    with VideoSource(tmp_path / "a.mov") as source:
        assert source.info.channels == RGBA
        for frame in frames:
            got = source.read(frame.number).pixels
            np.testing.assert_allclose(got[..., 3], frame.pixels[..., 3], atol=2e-3)
            assert psnr(got[..., :3], frame.pixels[..., :3]) > 50


def test_alpha_is_dropped_by_codecs_without_it(tmp_path, photo):
    write(tmp_path / "a.mp4", moving(photo, 2, 48, 64, alpha=True))
    assert probe(tmp_path / "a.mp4").channels == RGB


# ------------------------------------------------------------------------------------------- colour

PATCHES = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1],
                    [0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0.5], [0.8, 0.4, 0.2],
                    [0, 1, 1], [1, 0, 1], [1, 1, 0], [0.1, 0.6, 0.9]], np.float32)


def patch_image():
    """4 x 3 patches of 16 x 16 pixels, one colour each."""
    image = np.repeat(np.repeat(PATCHES.reshape(3, 4, 3), 16, axis=0), 16, axis=1)
    return np.ascontiguousarray(image)


def patch_centres(image):
    """Mean of the central 8 x 8 pixels of each patch (chroma subsampling blurs the borders)."""
    return image.reshape(3, 16, 4, 16, -1)[:, 4:12, :, 4:12].mean(axis=(1, 3)).reshape(12, -1)


def ramp_image():
    """Linear ramps in R, G and B: chroma is linear too, so resampling it loses nothing inside."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    return np.stack([x / 63, y / 47, 1 - (x + y) / 110], axis=-1)


@pytest.mark.parametrize("matrix, primaries, trc, rng, kr, kb", [
    ("bt709", "bt709", "bt709", "tv", 0.2126, 0.0722),
    ("bt2020nc", "bt2020", "bt2020-10", "tv", 0.2627, 0.0593),
    ("bt709", "bt709", "bt709", "pc", 0.2126, 0.0722),
])
def test_colours_use_the_tagged_matrix_and_range(tmp_path, matrix, primaries, trc, rng, kr, kb):
    tags = {"color_primaries": primaries, "color_trc": trc, "colorspace": matrix, "color_range": rng}
    frames = [Frame(patch_image(), RGB, REC709, number=1), Frame(ramp_image(), RGB, REC709, number=2)]
    # CRF 0: x264 at its finest, within a few codes of what the sink computed
    write(tmp_path / "a.mp4", frames, codec="h264", bit_depth=10, quality=0, tags=tags)

    with av.open(str(tmp_path / "a.mp4")) as container:
        luma = next(container.decode(video=0)).to_ndarray()[:48, :64].astype(np.float64)
    y = PATCHES @ [kr, 1 - kr - kb, kb]
    expected = 64 + 876 * y if rng == "tv" else 1023 * y
    np.testing.assert_allclose(patch_centres(luma[..., None])[:, 0], expected, atol=0.6)

    with VideoSource(tmp_path / "a.mp4") as source:
        assert {k: source.info.tags[k] for k in tags} == tags
        np.testing.assert_allclose(patch_centres(source.read(1).pixels), PATCHES, atol=2e-3)
        error = np.abs(source.read(2).pixels - frames[1].pixels)
    # chroma sited differently when reading than when writing shifts it: 0.005 and more on average
    assert error.mean() < 0.0025 and error[2:-2, 2:-2].max() < 0.01


def test_untagged_standard_definition_is_read_as_bt601(tmp_path):
    # PyAV tags nothing and swscale converts with BT.601 by default, as SD encoders did
    pyav_h264(tmp_path / "sd.mp4", [patch_image()], "")
    with VideoSource(tmp_path / "sd.mp4") as source:
        assert not {"colorspace", "color_range", "color_primaries"} & set(source.info.tags)
        np.testing.assert_allclose(patch_centres(source.read(1).pixels), PATCHES, atol=0.02)


@pytest.mark.parametrize("name, codec", [("a.mp4", "h264"), ("b.mov", "prores"), ("c.mkv", "h265")])
def test_tags_fps_and_pixel_aspect_are_carried(tmp_path, photo, name, codec):
    tags = {"color_primaries": "bt2020", "color_trc": "arib-std-b67", "colorspace": "bt2020nc",
            "color_range": "tv"}
    frames = [f.replace(pixel_aspect=64 / 45, tags=dict(tags, codec="prores", bit_depth=12))
              for f in moving(photo, 3, 48, 64)]
    write(tmp_path / name, frames, codec=codec, fps=Fraction(24000, 1001))  # tags from the first frame
    info = probe(tmp_path / name)
    assert info.fps == Fraction(24000, 1001) and info.last == 3
    assert info.pixel_aspect == pytest.approx(64 / 45)
    assert {k: info.tags[k] for k in tags} == tags
    assert info.colorspace == REC709 and info.premultiplied is False and info.kind == "video"
    with VideoSource(tmp_path / name) as source:
        frame = source.read(2)
    assert frame.number == 2 and frame.tags == info.tags
    assert frame.pixel_aspect == pytest.approx(64 / 45) and frame.colorspace == REC709


def test_ffv1_in_matroska_is_rgb_and_refuses_non_square_pixels(tmp_path, photo):
    frames = moving(photo, 2, 48, 64)
    write(tmp_path / "a.mkv", frames, fps=30, tags={"color_trc": "linear"})
    info = probe(tmp_path / "a.mkv")  # Matroska records no frame count: counted from packets
    assert info.fps == 30 and info.last == 2
    assert info.tags["color_trc"] == "linear" and info.tags["colorspace"] == "gbr"
    assert info.tags["bit_depth"] == 16 and info.colorspace == video.LINEAR
    with pytest.raises(FootageError, match="b.mkv: pixel aspect 2 cannot be stored"):
        write(tmp_path / "b.mkv", [f.replace(pixel_aspect=2.0) for f in frames])
    assert not (tmp_path / "b.mkv").exists()


def test_hdr10_metadata_reaches_the_stream(tmp_path, photo):
    write(tmp_path / "a.mp4", moving(photo, 3, 48, 64), codec="h265", hdr10=HDR10)
    info = probe(tmp_path / "a.mp4")
    assert info.tags["hdr10"] == HDR10
    assert info.colorspace == PQ_REC2020
    assert (info.tags["color_primaries"], info.tags["color_trc"], info.tags["colorspace"]) == \
        ("bt2020", "smpte2084", "bt2020nc")
    assert info.tags["bit_depth"] == 10
    # the mastering display SEI as HEVC carries it: G, B, R and white point chromaticities, max luminance
    sei = struct.pack(">8HI", 13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450, 10000000)
    assert sei in (tmp_path / "a.mp4").read_bytes()


def test_hdr10_needs_h265_and_a_well_formed_display(tmp_path):
    with pytest.raises(ValueError, match="h265"):
        VideoSink(tmp_path / "a.mp4", fps=25, hdr10=HDR10)
    with pytest.raises(ValueError, match="mastering_display"):
        VideoSink(tmp_path / "a.mp4", fps=25, codec="h265", hdr10={"mastering_display": "G(1,2)"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"codec": "mjpeg"}, "codec must be one of"),
    ({"bit_depth": 12}, "bit_depth"),
    ({"codec": "prores", "quality": 10}, "quality applies"),
    ({"quality": 60}, "CRF"),
    ({"tags": {"colorspace": "bt999"}}, "colorspace"),
    ({"fps": 0}, "fps"),
    ({"tags": {"colorspace": "ycgco"}}, "cannot convert"),
])
def test_bad_sink_arguments_are_value_errors(tmp_path, kwargs, match):
    kwargs = {"fps": 25} | kwargs
    with pytest.raises(ValueError, match=match):
        VideoSink(tmp_path / "a.mp4", **kwargs)
    with pytest.raises(ValueError, match="no default codec"):
        VideoSink(tmp_path / "a.avi", fps=25)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ random access

@pytest.mark.parametrize("name, x264_params", [
    # closed GOPs of 7 with B-frames; Matroska keeps no frame count and millisecond timestamps
    ("closed.mkv", "keyint=7:min-keyint=7:scenecut=0:bframes=2"),
    # open GOPs: B-frames shown before each keyframe cannot be decoded from it, so a seek backs off
    ("open.mp4", "keyint=8:min-keyint=8:scenecut=0:bframes=3:open-gop=1"),
])
def test_random_access_equals_sequential(tmp_path, photo, monkeypatch, name, x264_params):
    frames = [f.pixels for f in moving(photo, 60, 48, 64)]
    pyav_h264(tmp_path / name, frames, x264_params)
    order = list(range(1, 61)) + [60, 1, 59, 30, 29, 31, 2, 45, 8, 8, 52, 7]
    random.Random(1).shuffle(order)

    with VideoSource(tmp_path / name) as source:
        assert source.info.last == 60
        random_reads = {n: source.read(n).pixels for n in order}
    monkeypatch.setattr(video, "_FORWARD_DECODE", 10**9)  # never seek: plain sequential decoding
    with VideoSource(tmp_path / name) as source:
        for n in range(1, 61):
            sequential = source.read(n).pixels
            np.testing.assert_array_equal(random_reads[n], sequential, err_msg=f"frame {n}")
            assert psnr(sequential, frames[n - 1]) > 30


def test_random_access_in_an_intra_only_clip(tmp_path, photo):
    write(tmp_path / "a.mov", moving(photo, 30, 48, 64))  # ProRes: every frame a keyframe
    with VideoSource(tmp_path / "a.mov") as source:
        sequential = [source.read(n).pixels for n in range(1, 31)]
    with VideoSource(tmp_path / "a.mov") as source:
        for n in (17, 3, 4, 30, 29, 1, 12, 12):
            np.testing.assert_array_equal(source.read(n).pixels, sequential[n - 1], err_msg=f"frame {n}")


# ------------------------------------------------------------------------------------------- errors

def test_missing_and_garbage_files_name_the_file(tmp_path):
    with pytest.raises(FootageError, match="nothere.mp4"):
        VideoSource(tmp_path / "nothere.mp4")
    (tmp_path / "junk.mp4").write_bytes(os.urandom(5000))
    with pytest.raises(FootageError, match="junk.mp4") as error:
        probe(tmp_path / "junk.mp4")
    assert "\n" not in str(error.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    with av.open(str(tmp_path / "tone.wav"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        samples.sample_rate = 8000
        container.mux(stream.encode(samples))
        container.mux(stream.encode(None))
    with pytest.raises(FootageError, match="tone.wav: no video stream"):
        VideoSource(tmp_path / "tone.wav")


def test_out_of_range_frames_name_file_and_frame(tmp_path, photo):
    write(tmp_path / "a.mp4", moving(photo, 3, 48, 64))
    with VideoSource(tmp_path / "a.mp4") as source:
        for n in (0, 4, -1):
            with pytest.raises(FootageError, match=rf"a.mp4: frame {n} is out of range 1-3"):
                source.read(n)
        assert source.read(3).number == 3
    with pytest.raises(FootageError, match=r"a.mp4: frame 2: the source is closed"):
        source.read(2)


def test_float_frame_rates_mean_ntsc(tmp_path, photo):
    write(tmp_path / "a.mov", moving(photo, 2, 48, 64), fps=29.97)
    assert probe(tmp_path / "a.mov").fps == Fraction(30000, 1001)
    write(tmp_path / "b.mov", moving(photo, 2, 48, 64), fps=12.5)
    assert probe(tmp_path / "b.mov").fps == Fraction(25, 2)


def test_truncated_file_fails_on_the_lost_frames(tmp_path, photo):
    rng = np.random.default_rng(0)
    # noise makes every frame's packet large
    frames = [f.replace(pixels=np.clip(f.pixels + rng.normal(0, 0.05, f.pixels.shape), 0, 1,
                                       dtype=np.float32)) for f in moving(photo, 30, 48, 64)]
    write(tmp_path / "full.mp4", frames)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the front

    with VideoSource(tmp_path / "full.mp4") as full, VideoSource(tmp_path / "cut.mp4") as cut:
        assert cut.info.last == 30
        np.testing.assert_array_equal(cut.read(2).pixels, full.read(2).pixels)
        with pytest.raises(FootageError, match=r"cut.mp4: frame 30: ") as error:
            cut.read(30)
        assert "\n" not in str(error.value)
        np.testing.assert_array_equal(cut.read(3).pixels, full.read(3).pixels)  # still usable
        with pytest.raises(FootageError, match=r"cut.mp4: frame 29: "):
            cut.read(29)


@pytest.mark.parametrize("name", ["a.mov", "a.mp4"])
def test_a_damaged_packet_loses_only_its_frame(tmp_path, photo, name):
    write(tmp_path / name, moving(photo, 6, 48, 64))
    with av.open(str(tmp_path / name)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size, p.pts) for p in container.demux(stream) if p.size]
        ticks = stream.time_base * stream.guessed_rate
    pos, size, pts = packets[3]  # the fourth in decoding order
    lost = round(pts * ticks) + 1
    data = bytearray((tmp_path / name).read_bytes())
    data[pos: pos + size] = b"\xff" * size
    (tmp_path / ("bad" + name)).write_bytes(bytes(data))

    with VideoSource(tmp_path / name) as good, VideoSource(tmp_path / ("bad" + name)) as bad:
        for n in range(1, 7):
            if n == lost:
                with pytest.raises(FootageError, match=rf"bad{name}: frame {n}: cannot decode"):
                    bad.read(n)
            elif n == 1 or name.endswith(".mov"):  # the keyframe, and ProRes frames, stand alone
                np.testing.assert_array_equal(bad.read(n).pixels, good.read(n).pixels)
            else:
                bad.read(n)  # H.264 frames referring to the lost one decode concealed, not as errors


# --------------------------------------------------------------------------------------- atomicity

def test_output_appears_only_on_close(tmp_path, photo):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    sink = VideoSink(target, fps=25)
    for frame in moving(photo, 3, 48, 64):
        sink.write(frame)
    assert target.read_bytes() == b"old"
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(hidden) == 1 and hidden[0].endswith(".mp4")
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    assert probe(target).last == 3
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_abort_keeps_the_destination_and_leaves_no_temp(tmp_path, photo):
    target = tmp_path / "out.mov"
    target.write_bytes(b"precious")
    sink = VideoSink(target, fps=25)
    sink.write(moving(photo, 1, 48, 64)[0])
    sink.abort()
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mov"]

    with pytest.raises(RuntimeError):
        with VideoSink(tmp_path / "ctx.mp4", fps=25) as sink:
            sink.write(moving(photo, 1, 48, 64)[0])
            raise RuntimeError("render failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out.mov"]


@pytest.mark.parametrize("bad, match", [
    (lambda f: f.replace(pixels=f.pixels[:32]), "out.mp4: frame 2: size 64x32 differs"),
    (lambda f: f.replace(pixels=np.where(f.pixels > 0.5, np.nan, f.pixels)),
     "out.mp4: frame 2: .*not finite"),
    (lambda f: f.replace(channels=RGBA, pixels=np.dstack([f.pixels, f.pixels[..., :1]]), premultiplied=True),
     "out.mp4: frame 2: alpha must be straight"),
])
def test_failing_write_leaves_nothing(tmp_path, photo, bad, match):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"precious")
    first, second = moving(photo, 2, 48, 64)
    sink = VideoSink(target, fps=25)
    sink.write(first)
    with pytest.raises(FootageError, match=match):
        sink.write(bad(second))
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    with pytest.raises(FootageError, match="closed"):
        sink.write(second)
    with pytest.raises(FootageError, match="out.mp4: nothing to finish"):
        sink.close()  # never a silent success after a failure


def test_sink_errors_name_the_output(tmp_path, photo):
    with pytest.raises(FootageError, match="empty.mp4: no frames"):
        VideoSink(tmp_path / "empty.mp4", fps=25).close()
    with pytest.raises(FootageError, match="odd.mp4: .*needs even sizes"):
        write(tmp_path / "odd.mp4", [Frame(np.zeros((9, 16, 3), np.float32), RGB, REC709)])
    with pytest.raises(FootageError, match="small.mxf: frame 1: cannot encode"):
        write(tmp_path / "small.mxf", moving(photo, 1, 48, 64))  # DNxHR needs 256x120 or more
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FootageError, match="nodir"):
        VideoSink(tmp_path / "nodir" / "a.mp4", fps=25)


def test_extensions_and_sink_class_attributes():
    assert {".mp4", ".mov", ".mkv", ".avi", ".mxf", ".webm", ".m4v", ".y4m"} <= VIDEO_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in VIDEO_EXTENSIONS)
    assert VideoSink.wants_premultiplied is False


# -------------------------------------------------------------------------------------- real clips

@pytest.mark.parametrize("name, width, height, count, fps", [
    ("vtest.avi", 768, 576, 795, 10),
    ("bikes.mp4", 640, 272, 250, 25),
])
def test_real_clips(monkeypatch, name, width, height, count, fps):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not fetched (../shared/scripts/fetch-data)")
    info = probe(path)
    assert (info.width, info.height, info.first, info.last, info.fps) == (width, height, 1, count, fps)
    assert info.channels == RGB and info.kind == "video"

    wanted = [count, 1, 2, count // 2 + 7, count - 1, 40, 41, count // 3, 3]
    with VideoSource(path) as source:
        random_reads = {n: source.read(n).pixels for n in wanted}
    monkeypatch.setattr(video, "_FORWARD_DECODE", 10**9)
    with VideoSource(path) as source:
        for n in sorted(wanted):
            frame = source.read(n)
            assert frame.pixels.shape == (height, width, 3)
            assert 0 <= frame.pixels.min() <= frame.pixels.max() <= 1
            np.testing.assert_array_equal(random_reads[n], frame.pixels, err_msg=f"frame {n}")
    assert np.abs(random_reads[1] - random_reads[count]).mean() > 0.01
