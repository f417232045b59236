import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import skimage.data

from clarifx import frame as fr
from clarifx.frame import FootageError, Frame
from clarifx.imageio import (IMAGE_EXTENSIONS, ImageIOError, _ocio_name, probe_image, read_frame, read_image,
                             write_frame, write_image)



def photo(h=48, w=64, name="astronaut"):
    """A crop of a real photograph, float32 in [0, 1]."""
    img = getattr(skimage.data, name)()
    return np.ascontiguousarray(img[100:100 + h, 180:180 + w], dtype=np.float32) / 255


def straight_rgba(h=48, w=64):
    """Photo colour with a soft alpha ramp down to nearly transparent (where premultiplication hurts most)."""
    alpha = np.linspace(1.0, 2 / 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 1), np.float32)
    return np.concatenate([photo(h, w), alpha], axis=2)


def premultiplied(straight):
    out = straight.copy()
    out[..., :3] *= out[..., 3:]
    return out


def oiio_write(path, pixels, fmt, **attrs):
    """Write with OIIO directly, for files write_frame refuses to make (NaN, no colourspace, data windows)."""
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, fmt)
    for key, value in attrs.items():
        spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec) and out.write_image(pixels) and out.close()


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def entries(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# --- round trips, format by format ---

@pytest.mark.parametrize("dtype", ["half", "float"])
@pytest.mark.parametrize("alpha", [False, True])
def test_exr_round_trip_keeps_values_above_one(tmp_path, dtype, alpha):
    rng = np.random.default_rng(1)
    pixels = photo() * 6.0 + rng.random((48, 64, 3), dtype=np.float32)   # scene-linear highlights up to 7
    channels = ("R", "G", "B")
    if alpha:
        pixels = np.concatenate([pixels, rng.random((48, 64, 1), dtype=np.float32)], axis=2)
        channels += ("A",)
    path = write_frame(tmp_path / "a.exr", Frame(pixels, channels, fr.LINEAR), dtype=dtype)
    got = read_frame(path)
    expected = pixels.astype(np.float16).astype(np.float32) if dtype == "half" else pixels
    np.testing.assert_array_equal(got.pixels, expected)
    assert got.pixels.dtype == np.float32 and got.pixels.max() > 6.0
    assert got.channels == channels and got.premultiplied
    assert probe_image(path).format == f"openexr {dtype}"


def test_exr_passes_an_extra_depth_channel_through(tmp_path):
    rng = np.random.default_rng(2)
    rgba = premultiplied(straight_rgba())
    depth = rng.uniform(1.0, 5000.0, (48, 64, 1)).astype(np.float32)
    frame = Frame(np.concatenate([rgba, depth], axis=2), ("R", "G", "B", "A", "Z"), fr.LINEAR)
    got = read_frame(write_frame(tmp_path / "z.exr", frame, dtype="float"))
    assert got.channels == ("R", "G", "B", "A", "Z")
    np.testing.assert_array_equal(got.pixels, frame.pixels)


def test_dpx_10bit_within_half_a_code_and_unbiased(tmp_path):
    pixels = np.concatenate([photo(), photo(name="chelsea")], axis=1)
    path = write_frame(tmp_path / "a.dpx", Frame(pixels, ("R", "G", "B"), fr.REC709))
    info = probe_image(path)
    assert info.format == "dpx uint10" and info.colorspace == fr.REC709
    err = (read_frame(path).pixels - pixels) * 1023
    # OIIO alone truncates to 10 bits: errors up to a whole code, all downwards.
    assert np.abs(err).max() <= 0.52
    assert abs(err.mean()) < 0.05


@pytest.mark.parametrize("dtype, tolerance", [("uint16", 0.5 / 65535 + 1e-7), ("float", 0.0)])
def test_tiff_round_trip(tmp_path, dtype, tolerance):
    pixels = np.concatenate([photo(), np.random.default_rng(3).random((48, 64, 3), dtype=np.float32)], axis=1)
    colorspace = fr.SRGB
    if dtype == "float":
        pixels = pixels * 3.0   # float TIFF keeps values above 1
        colorspace = fr.LINEAR
    path = write_frame(tmp_path / "a.tif", Frame(pixels, ("R", "G", "B"), colorspace), dtype=dtype)
    assert (probe_image(path).format, probe_image(path).colorspace) == (f"tiff {dtype}", colorspace)
    np.testing.assert_allclose(read_frame(path).pixels, pixels, rtol=0, atol=tolerance)


@pytest.mark.parametrize("dtype, levels", [("uint8", 255), ("uint16", 65535)])
def test_png_exact_after_quantisation(tmp_path, dtype, levels):
    rng = np.random.default_rng(4)
    pixels = np.concatenate([photo(), rng.random((48, 64, 3), dtype=np.float32)], axis=1)
    path = write_frame(tmp_path / "a.png", Frame(pixels, ("R", "G", "B"), fr.SRGB), dtype=dtype)
    assert probe_image(path).format == f"png {dtype}"
    got = read_frame(path).pixels * levels
    np.testing.assert_array_equal(np.round(got), np.round(pixels * levels))
    np.testing.assert_allclose(got, np.round(got), atol=1e-3)   # decoded values lie on the grid


def test_jpeg_round_trip_psnr(tmp_path):
    pixels = photo(64, 96)
    path = write_frame(tmp_path / "a.jpeg", Frame(pixels, ("R", "G", "B"), fr.SRGB))
    got = read_frame(path)
    assert got.channels == ("R", "G", "B") and probe_image(path).format == "jpeg uint8"
    assert 35.0 < psnr(got.pixels, pixels) < 70.0   # lossy, but close


def test_grey_and_grey_alpha_png(tmp_path):
    rng = np.random.default_rng(5)
    grey = np.round(rng.random((16, 24, 1), dtype=np.float32) * 255) / 255
    got = read_frame(write_frame(tmp_path / "y.png", Frame(grey, ("Y",), fr.SRGB)))
    assert got.channels == ("Y",)
    np.testing.assert_allclose(got.pixels, grey, atol=1e-6)
    ya = np.concatenate([grey, np.ones_like(grey)], axis=2)
    assert read_frame(write_frame(tmp_path / "ya.png", Frame(ya, ("Y", "A"), fr.SRGB))).channels == ("Y", "A")


# --- alpha ---

@pytest.mark.parametrize("ext, dtype, levels", [(".png", "uint8", 255), (".png", "uint16", 65535),
                                                (".tif", "uint16", 65535)])
def test_premultiplied_alpha_round_trips_through_straight_alpha_formats(tmp_path, ext, dtype, levels):
    straight = straight_rgba()
    frame = Frame(premultiplied(straight), ("R", "G", "B", "A"), fr.SRGB)
    path = write_frame(tmp_path / f"a{ext}", frame, dtype=dtype)

    # The file holds straight colour, as PNG and TIFF readers elsewhere expect.
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    stored = oiio.ImageInput.open(str(path), config).read_image(0, 0, 0, 4, "float")
    np.testing.assert_allclose(stored, straight, atol=0.5 / levels + 1e-6)

    got = read_frame(path)
    assert got.premultiplied and got.channels == ("R", "G", "B", "A")
    np.testing.assert_allclose(got.pixels, frame.pixels, atol=1.0 / levels + 1e-6)
    # Un-premultiplying what was read gives back the stored straight colour even where alpha is 2/255;
    # premultiplying in the file's integer type (OIIO's own way) leaves a few codes there.
    recovered = got.pixels[..., :3] / got.pixels[..., 3:]
    np.testing.assert_allclose(recovered, stored[..., :3], atol=1e-5)


@pytest.mark.parametrize("ext", [".png", ".tif", ".exr", ".dpx", ".jpg"])
def test_straight_alpha_frames_read_back_premultiplied(tmp_path, ext):
    straight = straight_rgba()
    frame = Frame(straight, ("R", "G", "B", "A"), fr.SRGB, premultiplied=False)
    got = read_frame(write_frame(tmp_path / f"a{ext}", frame, dtype="uint16" if ext == ".dpx" else None))
    expected = premultiplied(straight)
    if ext == ".jpg":   # no alpha: the colour as composited over black
        assert got.channels == ("R", "G", "B")
        assert psnr(got.pixels, expected[..., :3]) > 35.0
    else:
        assert got.channels == ("R", "G", "B", "A")
        np.testing.assert_allclose(got.pixels, expected, atol=1.0 / 255)
    assert np.array_equal(frame.pixels, straight), "the caller's pixels must not change"


def test_formats_without_extra_channels_keep_colour_and_alpha(tmp_path):
    rgba = premultiplied(straight_rgba())
    pixels = np.concatenate([rgba, np.full((48, 64, 1), 7.0, np.float32)], axis=2)
    frame = Frame(pixels, ("R", "G", "B", "A", "Z"), fr.SRGB)
    assert read_frame(write_frame(tmp_path / "a.png", frame)).channels == ("R", "G", "B", "A")
    assert read_frame(write_frame(tmp_path / "a.dpx", frame, dtype="uint16")).channels == ("R", "G", "B", "A")
    with pytest.raises(ValueError, match="10-bit RGBA DPX"):
        write_frame(tmp_path / "b.dpx", frame)
    assert read_frame(write_frame(tmp_path / "a.jpg", frame)).channels == ("R", "G", "B")


# --- metadata ---

@pytest.mark.parametrize("ext, colorspace, aspect", [
    (".exr", "ACEScg", 2.0),
    (".exr", fr.PQ_REC2020, 0.5),
    (".dpx", fr.LINEAR, 1.5),
    (".dpx", fr.REC709, 2.0),
    (".png", fr.REC709, 1.5),
    (".png", fr.SRGB, 0.75),
    (".tif", fr.SRGB, 2.0),
])
def test_pixel_aspect_and_colourspace_round_trip(tmp_path, ext, colorspace, aspect):
    frame = Frame(photo(), ("R", "G", "B"), colorspace, pixel_aspect=aspect)
    path = write_frame(tmp_path / f"a{ext}", frame)
    info = probe_image(path)
    assert (info.colorspace, info.pixel_aspect) == (colorspace, pytest.approx(aspect, rel=1e-6))
    got = read_frame(path, 12)
    assert (got.colorspace, got.pixel_aspect, got.number) == (colorspace, pytest.approx(aspect, rel=1e-6), 12)


@pytest.mark.parametrize("ext, fmt, attrs, expected", [
    (".exr", "half", {}, fr.LINEAR),                                       # no name: float -> linear
    (".exr", "half", {"oiio:ColorSpace": "lin_ap1_scene"}, "ACEScg"),     # an alias
    (".tif", "uint16", {}, fr.SRGB),
    (".tif", "float", {}, fr.LINEAR),
    (".dpx", "uint16", {"oiio:BitsPerSample": 10}, fr.REC709),
    (".dpx", "uint16", {"oiio:BitsPerSample": 10, "dpx:Transfer": "Printing density"}, fr.RAW),
    (".hdr", "float", {}, fr.LINEAR),
    (".bmp", "uint8", {}, fr.SRGB),
])
def test_colourspace_from_the_file_or_guessed(tmp_path, ext, fmt, attrs, expected):
    path = tmp_path / f"a{ext}"
    pixels = photo(8, 8)
    oiio_write(path, pixels, fmt, **attrs)
    assert path.suffix in IMAGE_EXTENSIONS
    assert probe_image(path).colorspace == expected
    np.testing.assert_allclose(read_frame(path).pixels, pixels, atol=0.02)   # the read-only formats too


def test_reads_binary_ppm(tmp_path):
    pixels = photo(8, 12)
    (tmp_path / "a.ppm").write_bytes(b"P6\n12 8\n255\n" + np.round(pixels * 255).astype(np.uint8).tobytes())
    frame = read_frame(tmp_path / "a.ppm")
    assert frame.channels == ("R", "G", "B") and frame.colorspace == fr.SRGB
    np.testing.assert_allclose(frame.pixels, np.round(pixels * 255) / 255, atol=1e-6)


def test_only_colourspace_names_and_aliases_count():
    assert _ocio_name("lin_rec709_scene") == fr.LINEAR
    assert _ocio_name("scene_linear") is None   # a role: its meaning belongs to a config, not the file
    assert _ocio_name("NotAColourspace") is None


def test_probe_reads_the_header_only(tmp_path):
    path = write_frame(tmp_path / "a.exr", Frame(photo(), ("R", "G", "B"), fr.LINEAR), dtype="float")
    path.write_bytes(path.read_bytes()[:-2000])   # pixels cut, header intact
    info = probe_image(path)
    assert (info.kind, info.first, info.last, info.width, info.height) == ("image", 1, 1, 64, 48)
    assert info.channels == ("R", "G", "B") and info.premultiplied
    with pytest.raises(ImageIOError):
        read_frame(path)


@pytest.mark.parametrize("x, y", [(2, 1), (-2, -1), (6, 8)])   # inside, overscan, over the far corner
def test_exr_data_window_is_placed_in_the_display_window(tmp_path, x, y):
    path = tmp_path / "bbox.exr"
    inner = photo(6, 4) + 0.1
    # A data window (Nuke writes a bounding box, or overscan) in an 8x10 display window.
    spec = oiio.ImageSpec(4, 6, 3, "float")
    spec.x, spec.y, spec.full_x, spec.full_y, spec.full_width, spec.full_height = x, y, 0, 0, 8, 10
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec) and out.write_image(inner) and out.close()
    got = read_frame(path).pixels
    assert got.shape == (10, 8, 3) and (probe_image(path).width, probe_image(path).height) == (8, 10)
    expected = np.zeros((10 + 12, 8 + 8, 3), np.float32)   # the display window with a margin all round
    expected[6 + y:6 + y + 6, 4 + x:4 + x + 4] = inner
    np.testing.assert_array_equal(got, expected[6:16, 4:12])


# --- errors ---

@pytest.mark.parametrize("ext", [".exr", ".png", ".tif", ".jpg"])
def test_truncated_file_names_file_and_frame(tmp_path, ext):
    path = write_frame(tmp_path / f"cut{ext}", Frame(photo(64, 96), ("R", "G", "B"), fr.SRGB))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(ImageIOError, match=rf"cut\{ext}: frame 7\b") as e:
        read_frame(path, 7)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("ext", [".exr", ".png", ".dpx", ".tif"])
def test_garbage_file_names_file_and_frame(tmp_path, ext):
    path = tmp_path / f"junk{ext}"
    path.write_bytes(np.random.default_rng(9).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(FootageError, match=rf"junk\{ext}: frame 3\b"):
        read_frame(path, 3)


def test_corrupt_compressed_data_is_an_error(tmp_path):
    path = write_frame(tmp_path / "flip.png", Frame(photo(64, 96), ("R", "G", "B"), fr.SRGB))
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(ImageIOError, match=r"flip\.png: frame 1\b"):
        read_frame(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageIOError, match="nothere.exr: frame 2: cannot open \\(no such file\\)"):
        read_frame(tmp_path / "nothere.exr", 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_in_an_exr(tmp_path, bad):
    pixels = photo(8, 8)
    pixels[3, 4, 1] = bad
    oiio_write(tmp_path / "nan.exr", pixels, "half")
    with pytest.raises(ImageIOError, match=r"nan\.exr: frame 5 contains non-finite pixels"):
        read_frame(tmp_path / "nan.exr", 5)


def test_non_finite_pixels_are_not_written(tmp_path):
    pixels = photo(8, 8)
    pixels[0, 0, 0] = np.nan
    with pytest.raises(ImageIOError, match=r"out\.exr.*non-finite"):
        write_frame(tmp_path / "out.exr", Frame(pixels, ("R", "G", "B"), fr.LINEAR))
    assert entries(tmp_path) == []


@pytest.mark.parametrize("name, dtype", [("a.png", "half"), ("a.jpg", "uint16"), ("a.exr", "uint8"),
                                         ("a.dpx", "float"), ("a.tif", "int7")])
def test_impossible_dtype_is_a_value_error(tmp_path, name, dtype):
    with pytest.raises(ValueError, match="dtype"):
        write_frame(tmp_path / name, Frame(photo(4, 4), ("R", "G", "B"), fr.SRGB), dtype=dtype)
    assert entries(tmp_path) == []


def test_default_dtypes(tmp_path):
    frame = Frame(photo(4, 4), ("R", "G", "B"), fr.SRGB)
    formats = {ext: probe_image(write_frame(tmp_path / f"a{ext}", frame)).format
               for ext in (".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg")}
    assert formats == {".exr": "openexr half", ".dpx": "dpx uint10", ".tif": "tiff uint16",
                       ".tiff": "tiff uint16", ".png": "png uint8", ".jpg": "jpeg uint8", ".jpeg": "jpeg uint8"}
    assert {".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".hdr"} <= IMAGE_EXTENSIONS


def test_written_files_get_ordinary_permissions_and_no_temp_remains(tmp_path):
    target = tmp_path / "a.exr"
    write_frame(target, Frame(photo(), ("R", "G", "B"), fr.LINEAR))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask   # not mkstemp's 0600
    target.chmod(0o640)
    write_frame(target, Frame(photo() * 2, ("R", "G", "B"), fr.LINEAR))   # replacing keeps the mode
    assert target.stat().st_mode & 0o777 == 0o640
    np.testing.assert_allclose(read_frame(target).pixels, photo() * 2, rtol=1e-3)
    assert entries(tmp_path) == ["a.exr"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.unknownformat"
    target.write_bytes(b"precious")
    with pytest.raises(ImageIOError, match="keep.unknownformat"):
        write_image(target, np.zeros((4, 4, 3)))
    assert target.read_bytes() == b"precious"
    assert entries(tmp_path) == ["keep.unknownformat"]


def test_write_into_a_missing_folder_names_the_file(tmp_path):
    with pytest.raises(ImageIOError, match=r"nofolder/a\.png: cannot write \(No such file or directory\)"):
        write_frame(tmp_path / "nofolder" / "a.png", Frame(photo(4, 4), ("R", "G", "B"), fr.SRGB))


_FILL_THE_DISK = """
import json, resource, signal, sys
import numpy as np
from clarifx import imageio
from clarifx.frame import Frame

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # get EFBIG back from write(), as with a full disk
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

def disk_full(fn):
    def limited(*args, **kw):
        resource.setrlimit(resource.RLIMIT_FSIZE, (30000, hard))
        try:
            return fn(*args, **kw)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    return limited

# JPEG is encoded in memory (libjpeg would exit the process); the disk fills once its bytes go out.
imageio._copy_out = disk_full(imageio._copy_out)
pixels = np.random.default_rng(0).random((160, 200, 4), dtype=np.float32)
result = {}
for name in sys.argv[1:]:
    write = imageio.write_frame if name.endswith(".jpg") else disk_full(imageio.write_frame)
    try:
        rgba = not name.endswith(".dpx")  # 10-bit DPX is written without alpha
        write(name, Frame(pixels if rgba else pixels[..., :3], ("R", "G", "B", "A")[:4 if rgba else 3], "Raw"))
        result[name] = "written"
    except imageio.ImageIOError as e:
        result[name] = str(e)
print(json.dumps(result))
"""


def test_write_failing_part_way_like_a_full_disk(tmp_path):
    names = [str(tmp_path / f"big{ext}") for ext in (".exr", ".png", ".tif", ".dpx", ".jpg")]
    for name in names:
        Path(name).write_bytes(b"old frame")
    run = subprocess.run([sys.executable, "-c", _FILL_THE_DISK, *names], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for name in names:
        assert result[name].startswith(f"{name}: cannot write ("), result[name]
        assert "\n" not in result[name]
        assert Path(name).read_bytes() == b"old frame"
    assert entries(tmp_path) == sorted(Path(n).name for n in names)   # no temp files left


# --- the older array API (demo.py) ---

def test_read_and_write_image(tmp_path):
    image = np.random.default_rng(10).integers(0, 256, (17, 31, 3)).astype(np.float32) / 255
    write_image(tmp_path / "a.png", image)
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), image, atol=1e-6)
    hdr = image * 8.0
    write_image(tmp_path / "a.exr", hdr, dtype="float")
    np.testing.assert_array_equal(read_image(tmp_path / "a.exr"), hdr)


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageIOError, match="broken.png"):
        read_image(bad)
