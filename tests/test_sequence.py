import re
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import skimage.data

from clarifx import frame as fr
from clarifx.frame import FootageError, Frame
from clarifx.imageio import ImageIOError, probe_image, write_frame
from clarifx.sequence import ImageSink, ImageSource, SequencePattern, SequenceSink, SequenceSource

ASTRONAUT = skimage.data.astronaut().astype(np.float32) / 255


def shot(number, h=32, w=48, alpha=False):
    """Frame `number` of a pan across a real photo: each frame a crop moved 3 pixels right."""
    pixels = ASTRONAUT[120:120 + h, 150 + 3 * number:150 + 3 * number + w]
    channels = ("R", "G", "B")
    if alpha:
        pixels = np.concatenate([pixels, np.full((h, w, 1), 0.5, np.float32)], axis=2)
        pixels[..., :3] *= 0.5
        channels += ("A",)
    return Frame(np.ascontiguousarray(pixels), channels, fr.LINEAR, number=number)


def names(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# --- patterns ---

@pytest.mark.parametrize("text, frame7, frame_minus1, frame_big", [
    ("shot.%04d.exr", "shot.0007.exr", "shot.-001.exr", "shot.12345.exr"),
    ("shot.####.exr", "shot.0007.exr", "shot.-001.exr", "shot.12345.exr"),
    ("shot.%d.exr", "shot.7.exr", "shot.-1.exr", "shot.12345.exr"),
    ("shot.#.exr", "shot.7.exr", "shot.-1.exr", "shot.12345.exr"),
    ("plate_v2_%06d.dpx", "plate_v2_000007.dpx", "plate_v2_-00001.dpx", "plate_v2_012345.dpx"),
    ("out/#####_beauty.png", "out/00007_beauty.png", "out/-0001_beauty.png", "out/12345_beauty.png"),
])
def test_pattern_spellings_padding_and_negative_frames(text, frame7, frame_minus1, frame_big):
    pattern = SequencePattern.parse(text)
    assert pattern.text == text
    assert pattern.path(7) == Path(frame7)
    assert pattern.path(-1) == Path(frame_minus1)
    assert pattern.path(12345) == Path(frame_big)


def test_pattern_keeps_the_folder_and_what_was_given(tmp_path):
    pattern = SequencePattern.parse(tmp_path / "renders" / "a.%03d.tif")
    assert pattern.text == str(tmp_path / "renders" / "a.%03d.tif")
    assert pattern.path(5) == tmp_path / "renders" / "a.005.tif"


@pytest.mark.parametrize("text", ["shot.exr", "shot.0001.exr", "shot.%s.exr", "5%.png"])
def test_no_placeholder_is_none(text):
    assert SequencePattern.parse(text) is None


def test_two_placeholders_are_refused():
    with pytest.raises(ValueError, match="more than one frame placeholder"):
        SequencePattern.parse("shot.%04d.####.exr")


def test_scan_follows_the_padding_and_ignores_other_names(tmp_path):
    for name in ["shot.0001.exr", "shot.0002.exr", "shot.0010.exr", "shot.-001.exr", "shot.12345.exr",
                 # not frames of shot.%04d.exr:
                 "shot.001.exr", "shot.00003.exr", "shot.0004.exr.tmp", "shot.0005.EXR", "other.0006.exr",
                 ".shot.0007.exr.k2j3x.exr", "shot.v008.exr", "shot.-0009.exr", "shot.0011.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "shot.0012.exr").mkdir()
    assert SequencePattern.parse(tmp_path / "shot.%04d.exr").scan() == [-1, 1, 2, 10, 12345]
    assert SequencePattern.parse(tmp_path / "shot.####.exr").scan() == [-1, 1, 2, 10, 12345]
    # Unpadded: "shot.001.exr" is not how %d writes frame 1.
    (tmp_path / "shot.3.exr").write_bytes(b"")
    assert SequencePattern.parse(tmp_path / "shot.%d.exr").scan() == [3, 12345]


def test_scan_of_a_missing_folder_is_empty(tmp_path):
    assert SequencePattern.parse(tmp_path / "nowhere" / "a.%04d.exr").scan() == []


# --- sources ---

def write_shot(tmp_path, numbers, pattern="shot.%04d.exr", **kw):
    sink = SequenceSink(str(tmp_path / pattern), **kw)
    for n in numbers:
        sink.write(shot(n))
    return str(tmp_path / pattern)


def test_sequence_source_info_and_frames(tmp_path):
    text = write_shot(tmp_path, [-2, -1, 0, 1, 3, 6], pattern="shot.####.exr", dtype="float")
    with SequenceSource(text) as source:
        info = source.info
        assert (info.kind, info.path, info.first, info.last, info.missing) == ("sequence", text, -2, 6, (2, 4, 5))
        assert (info.width, info.height, info.channels, info.format) == (48, 32, ("R", "G", "B"), "openexr float")
        assert info.colorspace == fr.LINEAR and info.fps is None and info.frames == 6
        for n in (-2, 0, 6):
            got = source.read(n)
            assert got.number == n
            np.testing.assert_array_equal(got.pixels, shot(n).pixels)
        assert not np.array_equal(source.read(0).pixels, source.read(1).pixels)


@pytest.mark.parametrize("number", [4, 0, 99])
def test_missing_frame_is_named(tmp_path, number):
    text = write_shot(tmp_path, [1, 2, 3, 5])
    source = SequenceSource(text)
    assert source.info.missing == (4,)
    missing = Path(text).parent / f"shot.{number:04d}.exr"
    with pytest.raises(FootageError, match=re.escape(f"{text}: frame {number} is missing ({missing})") + "$"):
        source.read(number)


def test_unreadable_first_frame_is_named_with_its_number(tmp_path):
    (tmp_path / "shot.1001.exr").write_bytes(b"garbage")
    with pytest.raises(FootageError, match=r"shot\.1001\.exr: frame 1001: cannot open"):
        SequenceSource(str(tmp_path / "shot.%04d.exr"))


def test_no_frames(tmp_path):
    (tmp_path / "shot.0001.png").write_bytes(b"")
    with pytest.raises(FootageError, match=r"no frames match .*shot\.%04d\.exr"):
        SequenceSource(str(tmp_path / "shot.%04d.exr"))


def test_a_frame_of_another_size_is_named(tmp_path):
    text = write_shot(tmp_path, [1, 2])
    write_frame(tmp_path / "shot.0003.exr", shot(3, h=30, w=40))
    write_frame(tmp_path / "shot.0004.exr", shot(4, alpha=True))
    source = SequenceSource(text)
    source.read(2)
    with pytest.raises(FootageError, match=r"shot\.0003\.exr: frame 3 is 40x30 R,G,B, the sequence is 48x32 R,G,B"):
        source.read(3)
    with pytest.raises(FootageError, match=r"shot\.0004\.exr: frame 4 is 48x32 R,G,B,A, the sequence is 48x32"):
        source.read(4)


@pytest.mark.parametrize("pattern", ["shot.%04d.exr", "shot.%04d.png"])
def test_truncated_frame_in_a_sequence(tmp_path, pattern):
    text = write_shot(tmp_path, [1, 2, 3], pattern=pattern)
    cut = Path(SequencePattern.parse(text).path(2))
    cut.write_bytes(cut.read_bytes()[:-300])
    source = SequenceSource(text)
    source.read(3)
    with pytest.raises(ImageIOError, match=re.escape(f"{cut}: frame 2:")):
        source.read(2)


def test_image_source_is_frame_one(tmp_path):
    path = write_frame(tmp_path / "still.png", shot(0, alpha=True))
    with ImageSource(path) as source:
        assert (source.info.kind, source.info.first, source.info.last, source.info.frames) == ("image", 1, 1, 1)
        got = source.read(1)
        assert got.number == 1 and got.channels == ("R", "G", "B", "A")
        np.testing.assert_allclose(got.pixels, shot(0, alpha=True).pixels, atol=1 / 255)
        with pytest.raises(FootageError, match=r"still\.png: frame 2 is missing"):
            source.read(2)


def test_image_source_of_a_missing_file(tmp_path):
    with pytest.raises(FootageError, match="gone.exr"):
        ImageSource(tmp_path / "gone.exr")


# --- sinks ---

def test_sequence_sink_writes_each_frame_to_its_path(tmp_path):
    with SequenceSink(tmp_path / "out.%04d.dpx") as sink:
        assert sink.wants_premultiplied
        assert sink.path(-3) == tmp_path / "out.-003.dpx"
        assert sink.write(shot(-3)) == tmp_path / "out.-003.dpx"
        sink.write(shot(10))
    assert names(tmp_path) == ["out.-003.dpx", "out.0010.dpx"]   # nothing else: temps renamed away
    assert probe_image(tmp_path / "out.0010.dpx").format == "dpx uint10"


def test_sink_dtype_and_compression_reach_the_file(tmp_path):
    sink = SequenceSink(tmp_path / "out.%04d.exr", dtype="float", compression="piz")
    sink.write(shot(1))
    spec = oiio.ImageInput.open(str(sink.path(1))).spec()
    assert (str(spec.format), spec.get_string_attribute("compression")) == ("float", "piz")


def test_sink_arguments_are_checked_up_front(tmp_path):
    with pytest.raises(ValueError, match="dtype='uint16'"):
        SequenceSink(tmp_path / "out.%04d.exr", dtype="uint16")
    with pytest.raises(ImageIOError, match=r"\.gif"):
        SequenceSink(tmp_path / "out.%04d.gif")
    with pytest.raises(ValueError, match="no frame placeholder"):
        SequenceSink(tmp_path / "out.exr")
    with pytest.raises(ValueError, match="dtype='half'"):
        ImageSink(tmp_path / "out.png", dtype="half")
    assert names(tmp_path) == []


def test_is_complete_for_resuming(tmp_path):
    sink = SequenceSink(tmp_path / "out.%04d.exr")
    for n in (1, 2, 3):
        sink.write(shot(n, alpha=True))
    rgba = ("R", "G", "B", "A")
    assert sink.is_complete(1, 48, 32, rgba)
    assert sink.is_complete(1, 48, 32, 4)              # a channel count does too
    assert not sink.is_complete(4, 48, 32, rgba)       # not written
    assert not sink.is_complete(1, 64, 32, rgba)       # another size
    assert not sink.is_complete(1, 48, 32, ("R", "G", "B"))
    cut = sink.path(2)
    cut.write_bytes(cut.read_bytes()[:-200])           # header intact, pixels cut short
    assert probe_image(cut).width == 48
    assert not sink.is_complete(2, 48, 32, rgba)
    sink.path(3).write_bytes(b"\0" * 100)
    assert not sink.is_complete(3, 48, 32, rgba)
    # The same files for a float render are not complete: they hold half.
    assert not SequenceSink(tmp_path / "out.%04d.exr", dtype="float").is_complete(1, 48, 32, rgba)


def test_is_complete_compares_what_the_format_keeps(tmp_path):
    sink = SequenceSink(tmp_path / "out.%04d.jpg")
    sink.write(shot(1, alpha=True))
    assert sink.is_complete(1, 48, 32, ("R", "G", "B", "A"))   # JPEG keeps no alpha
    assert sink.is_complete(1, 48, 32, 4)


def test_image_sink_writes_one_frame(tmp_path):
    sink = ImageSink(tmp_path / "still.tif")
    assert sink.path(1) == tmp_path / "still.tif"
    assert not sink.is_complete(1, 48, 32, ("R", "G", "B"))
    sink.write(shot(5))
    assert sink.is_complete(1, 48, 32, ("R", "G", "B"))
    np.testing.assert_allclose(ImageSource(tmp_path / "still.tif").read(1).pixels, shot(5).pixels, atol=1e-5)
    with pytest.raises(FootageError, match=r"still\.tif: an image file holds one frame; got frame 6 after frame 5"):
        sink.write(shot(6))
    sink.close()
    assert names(tmp_path) == ["still.tif"]


def test_rewriting_a_frame_replaces_it_whole(tmp_path):
    sink = SequenceSink(tmp_path / "out.%04d.png")
    sink.write(shot(1))
    sink.write(shot(2).replace(number=1))
    with SequenceSource(tmp_path / "out.%04d.png") as source:
        np.testing.assert_allclose(source.read(1).pixels, shot(2).pixels, atol=0.5 / 255 + 1e-6)
    assert names(tmp_path) == ["out.0001.png"]
