"""Film grain: the native kernels against the numpy reference, and the grain's own properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import ref_grain as ref
from conftest import ODD_SIZES, assert_close

from clarifx import _native, kernels

# Sizes that cross several 32-pixel blocks, in both directions, with partial blocks at the edges.
SIZES = ODD_SIZES + [(70, 100), (130, 97)]
LAYOUTS = ["nchw", "hwc"]
# (AR lag, grain channels, image channels, clip)
CONFIGS = [(0, 1, 3, None), (1, 3, 3, (0.0, 1.0)), (2, 3, 4, None), (3, 1, 4, (0.0, 1.0))]
# Every config in both layouts; the sizes are spread over them.
CASES = [(SIZES[k % len(SIZES)], layout, config)
         for k, (config, layout) in enumerate(itertools.product(CONFIGS, LAYOUTS))]


def taps(lag: int) -> int:
    return 2 * lag * (lag + 1)


def random_params(rng, channels: int, lag: int) -> kernels.GrainParams:
    """Random stable filters (sum of |coefficients| < 1), luma taps and three-point strength curves."""
    coeffs = rng.uniform(-1.0, 1.0, (channels, taps(lag)))
    if lag:
        coeffs *= rng.uniform(0.3, 0.9) / np.abs(coeffs).sum(axis=1, keepdims=True)
    strength = [[(0.0, rng.uniform(0.0, 0.05)), (rng.uniform(0.2, 0.8), rng.uniform(0.0, 0.1)),
                 (1.0, rng.uniform(0.0, 0.05))] for _ in range(channels)]
    return kernels.GrainParams(strength=strength, ar_lag=lag, ar_coeffs=coeffs.tolist(),
                               ar_luma=rng.uniform(-0.8, 0.8, channels).tolist())


def ref_filter_args(p: kernels.GrainParams):
    c, lag = p.channels, p.ar_lag
    coeffs = np.zeros((c, taps(lag))) if p.ar_coeffs is None else np.asarray(p.ar_coeffs)
    luma = np.zeros(c) if p.ar_luma is None else np.asarray(p.ar_luma)
    return c, lag, coeffs, luma


def reference(image_nchw, p: kernels.GrainParams, seed: int, frame: int, clip=None) -> np.ndarray:
    return ref.apply_grain(image_nchw, *ref_filter_args(p), p.lut(), seed, frame, clip)


def random_seed(rng) -> int:
    return int(rng.integers(0, 2**64, dtype=np.uint64))


def random_image(rng, shape, dtype: str) -> np.ndarray:
    # A little outside [0, 1], so the strength curve's clamping is exercised.
    return rng.uniform(-0.1, 1.1, shape).astype(dtype)


def as_nchw(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "nchw" else a.transpose(2, 0, 1)[None]


def image_shape(layout: str, size, channels: int, batch: int = 2):
    h, w = size
    return (batch, channels, h, w) if layout == "nchw" else (h, w, channels)


def grain_field(p: kernels.GrainParams, seed: int, frames: int, size: int, frame: int = 0) -> np.ndarray:
    """G of every grain channel over a flat image, with the strength fixed at 1: (frames, channels, size, size)."""
    unit = kernels.GrainParams(strength=[[(0.0, 1.0)]] * p.channels, ar_lag=p.ar_lag, ar_coeffs=p.ar_coeffs,
                               ar_luma=p.ar_luma)
    flat = np.full((frames, p.channels, size, size), 0.5, np.float32)
    return kernels.grain(flat, unit, seed=seed, frame=frame).astype(np.float64) - 0.5


# ---- the host-side pieces ----

@pytest.mark.parametrize("lag", range(4))
@pytest.mark.parametrize("channels", [1, 3])
def test_template_matches_reference(rng, lag, channels):
    p = random_params(rng, channels, lag)
    seed, frame = random_seed(rng), int(rng.integers(-10**6, 10**6))
    got = kernels.grain_template(p, seed=seed, frame=frame)
    assert got.shape == (channels, 64, 64) and got.dtype == np.float32
    assert_close(got, ref.grain_template(*ref_filter_args(p), seed, frame), "float32", "template")
    np.testing.assert_allclose(np.sqrt(np.mean(got.astype(np.float64) ** 2, axis=(1, 2))), 1.0, rtol=1e-5)


def test_offsets_match_reference(rng):
    seed, frame = random_seed(rng), int(rng.integers(-10**6, 10**6))
    got = _native.grain_offsets(seed, frame, 9, 13)
    np.testing.assert_array_equal(got, ref.grain_offsets(seed, frame, 9, 13))
    assert got.min() >= 0 and got.max() <= ref.MAX_OFFSET
    # A block's offset does not depend on how many blocks the image has.
    np.testing.assert_array_equal(_native.grain_offsets(seed, frame, 4, 5), got[:4, :5])


# ---- the applied grain against the reference ----

@pytest.mark.parametrize("size,layout,config", CASES, ids=[f"{h}x{w}-{lay}-lag{c[0]}-{c[1]}of{c[2]}"
                                                            for (h, w), lay, c in CASES])
def test_grain_matches_reference(backend, dtype, rng, size, layout, config):
    lag, grain_channels, image_channels, clip = config
    p = random_params(rng, grain_channels, lag)
    seed, frame = random_seed(rng), int(rng.integers(-1000, 1000))
    image = random_image(rng, image_shape(layout, size, image_channels), dtype)
    out = backend.poisoned(image.shape, dtype)
    result = kernels.grain(backend.array(image), p, seed=seed, frame=frame, clip=clip, out=out)
    assert result is out
    got = backend.numpy(result)
    expected = reference(as_nchw(image, layout), p, seed, frame, clip)
    assert_close(as_nchw(got, layout), expected, dtype)
    np.testing.assert_array_equal(as_nchw(got, layout)[:, grain_channels:], as_nchw(image, layout)[:, grain_channels:])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_in_place(backend, dtype, rng, layout):
    p = random_params(rng, 3, 2)
    seed, frame = random_seed(rng), int(rng.integers(-1000, 1000))
    image = random_image(rng, image_shape(layout, (45, 70), 4), dtype)
    x = backend.array(image)
    result = kernels.grain(x, p, seed=seed, frame=frame, clip=(0.0, 1.0), out=x)
    assert result is x
    got = as_nchw(backend.numpy(x), layout)
    assert_close(got, reference(as_nchw(image, layout), p, seed, frame, (0.0, 1.0)), dtype)
    np.testing.assert_array_equal(got[:, 3], as_nchw(image, layout)[:, 3])


def test_new_output_by_default(backend, rng):
    p = random_params(rng, 3, 1)
    image = random_image(rng, (40, 33, 3), "float32")
    x = backend.array(image)
    result = kernels.grain(x, p, seed=7, frame=3)
    assert type(result) is type(x) and result is not x
    np.testing.assert_array_equal(backend.numpy(x), image)
    assert_close(as_nchw(backend.numpy(result), "hwc"), reference(as_nchw(image, "hwc"), p, 7, 3), "float32")


def test_cuda_matches_cpu(cuda_backend, dtype, rng):
    p = random_params(rng, 3, 3)
    seed, frame = random_seed(rng), int(rng.integers(-1000, 1000))
    for layout, clip in (("nchw", None), ("hwc", (0.0, 1.0))):
        image = random_image(rng, image_shape(layout, (131, 200), 4, batch=3), dtype)
        cpu = kernels.grain(image, p, seed=seed, frame=frame, clip=clip)
        out = cuda_backend.poisoned(image.shape, dtype)
        kernels.grain(cuda_backend.array(image), p, seed=seed, frame=frame, clip=clip, out=out)
        cuda_backend.synchronize()
        assert_close(cuda_backend.numpy(out), cpu, dtype, f"{layout} out")
        x = cuda_backend.array(image)
        kernels.grain(x, p, seed=seed, frame=frame, clip=clip, out=x)
        cuda_backend.synchronize()
        assert_close(cuda_backend.numpy(x), cpu, dtype, f"{layout} in place")


# ---- determinism ----

def test_deterministic_and_batch_equals_frames(rng):
    p = random_params(rng, 3, 2)
    seed, frame = random_seed(rng), int(rng.integers(-1000, 1000))
    image = random_image(rng, (3, 3, 50, 70), "float32")
    batch = kernels.grain(image, p, seed=seed, frame=frame)
    np.testing.assert_array_equal(kernels.grain(image, p, seed=seed, frame=frame), batch)
    for n in range(3):
        single = kernels.grain(image[n:n + 1], p, seed=seed, frame=frame + n)
        np.testing.assert_array_equal(single[0], batch[n])


def test_seed_and_frame_change_the_grain(rng):
    p = random_params(rng, 1, 1)
    seed, frame = random_seed(rng), int(rng.integers(-1000, 1000))
    g = grain_field(p, seed, 1, 128, frame)[0, 0]
    for other in (grain_field(p, seed, 1, 128, frame + 1), grain_field(p, seed ^ 1, 1, 128, frame)):
        assert abs(np.corrcoef(g.ravel(), other[0, 0].ravel())[0, 1]) < 0.2


# ---- statistics of the grain ----

def test_std_follows_strength_curve(rng):
    lo_std, hi_std = 0.02, 0.05
    # 0.25 sits on the flat part, 0.75 half way up the ramp from (0.5, lo_std) to (1, 2 hi_std - lo_std).
    curve = [(0.0, lo_std), (0.5, lo_std), (1.0, 2 * hi_std - lo_std)]
    p = kernels.GrainParams(strength=[curve], ar_lag=1, ar_coeffs=[[0.0, 0.45, 0.0, 0.45]])
    seed = random_seed(rng)
    for level, expected in ((0.25, lo_std), (0.75, hi_std)):
        flat = np.full((16, 1, 256, 256), level, np.float32)
        grain = kernels.grain(flat, p, seed=seed).astype(np.float64) - level
        assert grain.std() == pytest.approx(expected, rel=0.05), f"intensity {level}"


def phase_stats(g: np.ndarray, axis: int):
    """Per position within a block along `axis` (2 = rows, 3 = columns) of (frames, 1, H, W) grain:
    the variance, and the correlation of each pixel with its next neighbour along that axis."""
    g = np.moveaxis(g[:, 0], axis - 1, -1)  # put the axis last
    phase = np.arange(g.shape[-1]) % ref.BLOCK
    var = np.array([g[..., phase == k].var() for k in range(ref.BLOCK)])
    a, b = g[..., :-1], g[..., 1:]
    corr = np.array([np.corrcoef(a[..., phase[:-1] == k].ravel(), b[..., phase[:-1] == k].ravel())[0, 1]
                     for k in range(ref.BLOCK)])
    return var, corr


@pytest.mark.parametrize("axis", [2, 3], ids=["rows", "columns"])
def test_no_seams(rng, axis):
    # Strongly correlated grain: a seam would break the neighbour correlation.
    p = kernels.GrainParams(strength=[[(0.0, 1.0)]], ar_lag=1, ar_coeffs=[[0.0, 0.45, 0.0, 0.45]])
    g = grain_field(p, random_seed(rng), 16, 256)
    var, corr = phase_stats(g, axis)
    interior_var, interior_corr = var[2:].mean(), corr[2:-1].mean()
    assert interior_corr > 0.4
    # The two blended pixels keep the interior's variance ...
    np.testing.assert_allclose(var[:2] / interior_var, 1.0, atol=0.1)
    # ... and pairs across the seam (31 -> 0) and inside the overlap stay nearly as correlated as elsewhere.
    seam_corr = corr[[ref.BLOCK - 1, 0, 1]]
    assert np.all(seam_corr > 0.7 * interior_corr), (seam_corr, interior_corr)


@pytest.mark.parametrize("luma", [-0.7, 0.0, 0.7])
def test_chroma_follows_luma(rng, luma):
    coeffs = [[0.0, 0.45, 0.0, 0.45]] * 3
    p = kernels.GrainParams(strength=[[(0.0, 1.0)]] * 3, ar_lag=1, ar_coeffs=coeffs, ar_luma=[0.0, luma, luma])
    g = grain_field(p, random_seed(rng), 16, 128)
    for c in (1, 2):
        corr = np.corrcoef(g[:, 0].ravel(), g[:, c].ravel())[0, 1]
        if luma == 0.0:
            assert abs(corr) < 0.1
        else:
            assert np.sign(corr) == np.sign(luma) and abs(corr) > 0.4, corr


# ---- bad arguments ----

UNSTABLE = [
    (1, [[0.0, 1.1, 0.0, 0.0]]),                 # grows 10% per row
    (1, [[0.0, 0.0, 0.0, 1.2]]),                 # grows 20% per column
    (2, [[0.3, -0.3] * 6]),                      # an oscillating mode that explodes
    (3, [[2.0] * 24]),                           # overflows
]


@pytest.mark.parametrize("lag,coeffs", UNSTABLE)
def test_unstable_filter_raises(rng, lag, coeffs):
    p = kernels.GrainParams(strength=[[(0.0, 0.1)]], ar_lag=lag, ar_coeffs=coeffs)
    with pytest.raises(ValueError, match="unstable"):
        ref.grain_template(*ref_filter_args(p), 0, 0)
    for _ in range(2):  # the verdict does not depend on the seed or frame
        seed, frame = random_seed(rng), int(rng.integers(-1000, 1000))
        with pytest.raises(ValueError, match="unstable"):
            kernels.grain_template(p, seed=seed, frame=frame)
        with pytest.raises(ValueError, match="unstable"):
            kernels.grain(np.zeros((1, 1, 8, 8), np.float32), p, seed=seed, frame=frame)


def test_unstable_chroma_filter_raises():
    stable, unstable = [0.0, 0.3, 0.0, 0.3], [0.0, 1.2, 0.0, 0.0]
    p = kernels.GrainParams(strength=[[(0.0, 0.1)]] * 3, ar_lag=1, ar_coeffs=[stable, stable, unstable])
    with pytest.raises(ValueError, match="unstable"):
        kernels.grain(np.zeros((1, 3, 8, 8), np.float32), p)


@pytest.mark.parametrize("coeffs", [[0.0, 1.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.5], [-0.4, 0.4, -0.4, 0.4]])
def test_unit_root_and_mixed_sign_filters_accepted(rng, coeffs):
    p = kernels.GrainParams(strength=[[(0.0, 0.1)]], ar_lag=1, ar_coeffs=[coeffs])
    seed = random_seed(rng)
    assert_close(kernels.grain_template(p, seed=seed), ref.grain_template(*ref_filter_args(p), seed, 0), "float32")


def test_wrong_coefficient_count():
    image = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="ar_coeffs"):
        kernels.grain(image, kernels.GrainParams(strength=[[(0.0, 0.1)]], ar_lag=2, ar_coeffs=[[0.1] * 4]))
    with pytest.raises(ValueError, match="ar_luma"):
        kernels.grain(image, kernels.GrainParams(strength=[[(0.0, 0.1)]] * 2, ar_luma=[0.0, 0.1, 0.2]))
    with pytest.raises(ValueError, match="ar_lag"):
        kernels.grain(image, kernels.GrainParams(strength=[[(0.0, 0.1)]], ar_lag=4))


def test_image_with_fewer_channels_than_grain():
    p = kernels.GrainParams(strength=[[(0.0, 0.1)]] * 3)
    with pytest.raises(ValueError, match="channels"):
        kernels.grain(np.zeros((16, 16, 2), np.float32), p)


@pytest.mark.parametrize("strength", [
    [],                                   # no channel
    [[]],                                 # no point
    [[(0.5, 0.1), (0.2, 0.1)]],           # intensities not increasing
    [[(0.2, 0.1), (0.2, 0.2)]],           # repeated intensity
    [[(0.0, float("nan"))]],              # not finite
    [[(0.0, 0.1)], [(0.0, 0.1), (float("inf"), 0.1)]],
    [[(0.0, 0.1), (1.0, -0.01)]],         # negative standard deviation
])
def test_bad_strength_points(strength):
    with pytest.raises(ValueError, match="strength"):
        kernels.GrainParams(strength=strength)
