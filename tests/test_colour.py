"""clarifx.colour against independent formulas: IEC sRGB, pure gamma, matrices derived from primaries."""

import re

import numpy as np
import pytest

from clarifx import colour
from clarifx.frame import LINEAR, PQ_REC2020, RAW, REC709, SRGB, Frame

RNG = np.random.default_rng()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Default config, fresh caches and the same random data whichever tests run."""
    global RNG
    RNG = np.random.default_rng(20240607)
    monkeypatch.delenv("OCIO", raising=False)
    yield
    colour.clear_caches()


def frame(pixels, space, channels=("R", "G", "B"), **kw):
    return Frame(pixels=pixels, channels=channels, colorspace=space, **kw)


def hdr_colours(n):
    """Colours from 1e-3 to 1000 with channels within 4x of each other, plus exact HDR greys."""
    mag = 10 ** RNG.uniform(-3, 3, (n, 1))
    x = mag * RNG.uniform(0.25, 1.0, (n, 3))
    x[:3] = [[8.0] * 3, [100.0] * 3, [1000.0] * 3]
    return x.astype(np.float32).reshape(1, n, 3)


# -- independent references ------------------------------------------------------------------

def srgb_eotf(v):
    """IEC 61966-2-1 sRGB decoding, with the published constants."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def xyz(xy):
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries, white):
    p = np.stack([xyz(c) for c in primaries], axis=1)
    return p * np.linalg.solve(p, xyz(white))


def adaptation(cone, src_white, dst_white):
    """von Kries adaptation in the cone space `cone` (Bradford, CAT02, ...)."""
    gain = (cone @ xyz(dst_white)) / (cone @ xyz(src_white))
    return np.linalg.inv(cone) @ np.diag(gain) @ cone


D65 = (0.3127, 0.3290)
ACES_WHITE = (0.32168, 0.33767)
REC709_PRIMARIES = [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)]
AP1_PRIMARIES = [(0.713, 0.293), (0.165, 0.830), (0.128, 0.044)]
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
CAT02 = np.array([[0.7328, 0.4296, -0.1624], [-0.7036, 1.6975, 0.0061], [0.0030, 0.0136, 0.9834]])


def rec709_to_ap1(cone):
    to_xyz = rgb_to_xyz(REC709_PRIMARIES, D65)
    from_xyz = np.linalg.inv(rgb_to_xyz(AP1_PRIMARIES, ACES_WHITE))
    return from_xyz @ adaptation(cone, D65, ACES_WHITE) @ to_xyz


# -- configs and names ------------------------------------------------------------------------

@pytest.mark.parametrize("uri", ["ocio://default", "ocio://studio-config-latest"])
def test_builtin_configs_load_and_know_the_frame_constants(uri):
    config = colour.get_config(uri)
    assert config is colour.get_config(uri)  # cached
    for name in (LINEAR, SRGB, REC709, PQ_REC2020, RAW):
        assert colour.canonical(name, config) == name
        assert colour.canonical(name, uri) == name


def test_default_config_without_ocio_env():
    assert colour.get_config() is colour.get_config("ocio://default")
    with pytest.raises(ValueError, match="unknown colourspace 'ARRI LogC4'"):
        colour.canonical("ARRI LogC4")  # studio-only


def test_ocio_env_is_honoured(monkeypatch):
    monkeypatch.setenv("OCIO", "ocio://studio-config-latest")
    colour.clear_caches()
    assert colour.get_config().getName().startswith("studio-config")
    assert colour.canonical("arri_logc4") == "ARRI LogC4"


def test_config_from_a_file(tmp_path):
    path = tmp_path / "show.ocio"
    path.write_text(colour.get_config("ocio://default").serialize())
    assert colour.canonical("srgb_tx", str(path)) == SRGB
    assert colour.get_config(str(path)) is colour.get_config(str(path))


@pytest.mark.parametrize("name", ["/no/such/config.ocio", "ocio://no-such-builtin"])
def test_bad_config_names_itself(name):
    with pytest.raises(ValueError, match=name):
        colour.get_config(name)


@pytest.mark.parametrize("alias, name", [
    ("srgb_tx", SRGB), ("SRGB_TX", SRGB), ("lin_rec709", LINEAR), ("scene_linear", "ACEScg"),
    ("g24_rec709", REC709), ("none", RAW), ("data", RAW),
])
def test_canonical_resolves_aliases_and_roles(alias, name):
    assert colour.canonical(alias) == name


@pytest.mark.parametrize("typo, suggestion", [
    ("Linear Rec.709 (sRGB", LINEAR), ("lin_rec790", "lin_rec709"), ("acescgg", "ACEScg"),
])
def test_unknown_name_suggests_a_close_one(typo, suggestion):
    with pytest.raises(ValueError) as err:
        colour.canonical(typo)
    assert str(err.value) == f"unknown colourspace {typo!r} (did you mean {suggestion!r}?)"


def test_is_data():
    assert colour.is_data(RAW) and colour.is_data("none") and colour.is_data("data")
    assert not colour.is_data("ACEScg") and not colour.is_data(SRGB)
    with pytest.raises(ValueError, match="unknown colourspace"):
        colour.is_data("nope")


def test_is_scene_linear(tmp_path):
    linear, other = [LINEAR, "lin_ap1", "ACES2065-1"], [SRGB, REC709, "ACEScct", PQ_REC2020, RAW]
    assert all(colour.is_scene_linear(n) for n in linear)
    assert not any(colour.is_scene_linear(n) for n in other)
    # A config without encodings: decided from the transforms to the scene_linear role.
    text = colour.get_config().serialize()
    path = tmp_path / "old.ocio"
    path.write_text("\n".join(line for line in text.splitlines() if not line.strip().startswith("encoding:")))
    old = colour.get_config(path)
    assert not old.getColorSpace(LINEAR).getEncoding()
    assert all(colour.is_scene_linear(n, old) for n in linear)
    assert not any(colour.is_scene_linear(n, old) for n in other)


# -- conversions against formulas -------------------------------------------------------------

def test_srgb_to_linear_is_the_iec_eotf():
    v = RNG.uniform(0, 1, (64, 64, 3)).astype(np.float32)
    v[0, :4, 0] = [0.0, 0.04045, 0.5, 1.0]
    got = colour.convert(frame(v.copy(), SRGB), "lin_rec709").pixels
    ref = srgb_eotf(v)
    # Above the knee both are the same power law.
    high = v > 0.04045
    np.testing.assert_allclose(got[high], ref[high], rtol=2e-6)
    # OCIO uses the exactly continuous knee (slope 12.923 at 0.03929); the published 12.92 / 0.04045
    # are its rounding, 2.5e-4 relative apart at most.
    np.testing.assert_allclose(got[~high], ref[~high], rtol=3e-4, atol=1e-9)


def test_gamma24_to_linear_is_a_pure_power():
    v = RNG.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    v[0, :3, 0] = [0.0, 1.0, 2.0]  # no clamp above 1
    got = colour.convert(frame(v.copy(), REC709), LINEAR).pixels
    np.testing.assert_allclose(got, v.astype(np.float64) ** 2.4, rtol=2e-6, atol=1e-9)


def test_linear_rec709_to_acescg_is_the_bradford_matrix():
    # The configs go Rec.709 -> ACES2065-1 -> ACEScg with Bradford D65 -> ACES white.
    m = rec709_to_ap1(BRADFORD)
    assert np.abs(rec709_to_ap1(CAT02) - m).max() > 1e-3  # so the check below tells them apart
    v = RNG.uniform(-0.5, 100, (32, 32, 3)).astype(np.float32)
    got = colour.convert(frame(v.copy(), LINEAR), "ACEScg").pixels
    ref = v.astype(np.float64) @ m.T
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("via", ["ACEScg", "ACES2065-1", "Linear Rec.2020", "ACEScct", SRGB, REC709, PQ_REC2020])
def test_hdr_round_trip(via):
    x = hdr_colours(4096)
    there = colour.convert(frame(x.copy(), LINEAR), via)
    assert there.colorspace == via
    back = colour.convert(there, LINEAR).pixels
    np.testing.assert_allclose(back, x, rtol=1e-5)


# -- frames: alpha, buffers, special cases ----------------------------------------------------

def rgbaz(h=24, w=40):
    px = RNG.uniform(0, 4, (h, w, 5)).astype(np.float32)
    alpha = RNG.uniform(0.05, 1, (h, w)).astype(np.float32)
    alpha[::5, ::3] = 0.0   # glows / holes: colour without coverage
    alpha[1::7] = 1.0
    px[..., 3] = alpha
    px[..., :3] *= alpha[..., None]
    px[alpha == 0, :3] = [0.3, 0.2, 0.1]
    return px


def test_premultiplied_frame_is_unpremultiplied_around_the_conversion():
    px = rgbaz()
    before = px.copy()
    out = colour.convert(frame(px, LINEAR, ("R", "G", "B", "A", "Z")), SRGB)

    a = before[..., 3:4]
    covered = before[..., 3] > 0
    straight = np.divide(before[..., :3], a, out=np.zeros_like(before[..., :3]), where=a > 0)
    expected = colour.convert_pixels(straight, LINEAR, SRGB) * a
    np.testing.assert_allclose(out.pixels[covered, :3], expected[covered], rtol=2e-6, atol=1e-7)
    assert np.array_equal(out.pixels[~covered], before[~covered])       # alpha 0: untouched
    assert np.array_equal(out.pixels[..., 3:], before[..., 3:])          # alpha and Z untouched
    # The encoding is non-linear, so converting the premultiplied values directly would differ.
    direct = colour.convert_pixels(before[..., :3].copy(), LINEAR, SRGB)
    assert np.abs(direct[covered] - out.pixels[covered, :3]).max() > 1e-2


def test_straight_alpha_frame_converts_colour_directly():
    px = rgbaz()
    before = px.copy()
    out = colour.convert(frame(px, LINEAR, ("R", "G", "B", "A", "Z"), premultiplied=False), SRGB)
    expected = colour.convert_pixels(before[..., :3].copy(), LINEAR, SRGB)
    assert np.array_equal(out.pixels[..., :3], expected)
    assert np.array_equal(out.pixels[..., 3:], before[..., 3:])


def test_converts_in_place_without_a_copy():
    px = RNG.uniform(0, 1, (16, 16, 4)).astype(np.float32)
    f = frame(px, SRGB, ("R", "G", "B", "A"), premultiplied=False)
    out = colour.convert(f, "ACEScg")
    assert out.pixels is px and out.colorspace == "ACEScg"
    assert colour.convert_pixels(px, "ACEScg", LINEAR) is px


def test_in_place_on_a_view():
    # A crop of a larger bottom-up buffer (negative row stride, as OFX hosts hand out).
    big = RNG.uniform(0, 1, (20, 30, 4)).astype(np.float32)
    before = big.copy()
    view = big[15:2:-1, 5:25]
    expected = colour.convert_pixels(np.ascontiguousarray(view), SRGB, LINEAR)
    assert colour.convert_pixels(view, SRGB, LINEAR) is view
    assert np.array_equal(big[15:2:-1, 5:25, :3], expected[..., :3])
    outside = np.ones(big.shape[:2], bool)
    outside[3:16, 5:25] = False
    assert np.array_equal(big[outside], before[outside])
    assert np.array_equal(big[..., 3], before[..., 3])


@pytest.mark.parametrize("kind", ["float16", "read-only"])
def test_half_and_read_only_pixels_are_converted_on_a_copy(kind):
    px = RNG.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    if kind == "float16":
        px = px.astype(np.float16)
    else:
        px.flags.writeable = False
    before = px.copy()
    out = colour.convert(frame(px, SRGB), LINEAR)
    assert out.pixels is not px and out.pixels.dtype == px.dtype
    assert np.array_equal(px, before)
    np.testing.assert_allclose(out.pixels, srgb_eotf(before), rtol=1e-3, atol=1e-4)


def test_opaque_premultiplied_frame_converts_colour_only():
    px = RNG.uniform(0, 1, (8, 8, 4)).astype(np.float32)
    px[..., 3] = 1.0
    expected = colour.convert_pixels(px[..., :3].copy(), SRGB, LINEAR)
    out = colour.convert(frame(px, SRGB, ("R", "G", "B", "A")), LINEAR)
    assert np.array_equal(out.pixels[..., :3], expected) and np.all(out.pixels[..., 3] == 1.0)


def test_large_frames_split_across_threads_match_small_ones():
    # 600x700 is split into row bands for the pool; 40-row strips are converted whole.
    px = rgbaz(600, 700)
    channels = ("R", "G", "B", "A", "Z")
    whole = colour.convert(frame(px.copy(), SRGB, channels), "ACEScg").pixels
    strips = [colour.convert(frame(px[i:i + 40].copy(), SRGB, channels), "ACEScg").pixels for i in range(0, 600, 40)]
    assert np.array_equal(whole, np.concatenate(strips))
    rgb = px[..., :3].copy()
    strips = [colour.convert_pixels(rgb[i:i + 40].copy(), SRGB, "ACEScg") for i in range(0, 600, 40)]
    assert np.array_equal(colour.convert_pixels(rgb, SRGB, "ACEScg"), np.concatenate(strips))


def test_same_space_returns_the_frame_untouched():
    px = RNG.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    before = px.copy()
    f = frame(px, LINEAR)
    assert colour.convert(f, LINEAR) is f
    aliased = colour.convert(frame(px, "lin_rec709"), "Utility - Linear - sRGB")
    assert aliased.pixels is px and aliased.colorspace == LINEAR
    assert np.array_equal(px, before)


@pytest.mark.parametrize("src, dst", [(RAW, "ACEScg"), ("ACEScg", RAW), ("data", SRGB)])
def test_data_spaces_are_never_converted(src, dst):
    px = RNG.uniform(0, 1, (8, 8, 2)).astype(np.float32)  # e.g. motion vectors
    before = px.copy()
    f = frame(px, src, ("u", "v"))
    assert colour.convert(f, dst) is f
    assert colour.convert_pixels(px, src, dst) is px
    assert np.array_equal(px, before)


def test_empty_pixels():
    px = np.zeros((0, 5, 4), np.float32)
    assert colour.convert(frame(px, SRGB, ("R", "G", "B", "A")), LINEAR).pixels is px


@pytest.mark.parametrize("channels", [("Y",), ("Y", "A")])
def test_grey_frames_are_refused(channels):
    px = np.zeros((4, 4, len(channels)), np.float32)
    with pytest.raises(ValueError, match=re.escape(repr(channels))):
        colour.convert(frame(px, SRGB, channels), LINEAR)


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="shape"):
        colour.convert(frame(np.zeros((4, 4, 3), np.float32), SRGB, ("R", "G", "B", "A")), LINEAR)
    with pytest.raises(ValueError, match="alpha must follow"):
        colour.convert(frame(np.zeros((4, 4, 4), np.float32), SRGB, ("R", "A", "G", "B")), LINEAR)
    with pytest.raises(TypeError, match="numpy array"):
        colour.convert(frame([[[0.5, 0.5, 0.5]]], SRGB), LINEAR)
    with pytest.raises(ValueError, match="unknown colourspace 'sRGBB'"):
        colour.convert(frame(np.zeros((4, 4, 3), np.float32), "sRGBB"), LINEAR)


def test_numpy_srgb_curve_is_the_one_ocio_applies():
    """colour.srgb_to_linear / linear_to_srgb (used on parts of frames) agree with OCIO's own sRGB space,
    below 0 and above 1 included, and invert each other."""
    v = np.linspace(-0.5, 3.0, 3 * 701, dtype=np.float32).reshape(1, -1, 3)
    ocio_lin = colour.convert_pixels(v.copy(), SRGB, LINEAR)
    np.testing.assert_allclose(colour.srgb_to_linear(v), ocio_lin, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(colour.linear_to_srgb(ocio_lin), v, rtol=1e-5, atol=1e-6)
