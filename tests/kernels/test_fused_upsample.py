"""fused_upsample: every backend, dtype, scale and filter against pixel_shuffle + resample in float64,
and against the unfused torch sequence (nearest, i.e. 'box') and our own resample (bilinear)."""

from __future__ import annotations

import numpy as np
import pytest

import ref_resample as ref
from clarifx import kernels
from conftest import ODD_SIZES, assert_close


def _inputs(rng, dtype, scale, size, batch=2, channels=3):
    base = rng.random((batch, channels, *size)).astype(dtype)
    features = (rng.random((batch, channels * scale * scale, *size)) - 0.5).astype(dtype)
    return features, base


@pytest.mark.parametrize("clamp", [None, (0.25, 0.75)], ids=["unclamped", "clamped"])
@pytest.mark.parametrize("filter", kernels.FILTERS)
@pytest.mark.parametrize("size", ODD_SIZES, ids=str)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_reference(backend, dtype, rng, scale, size, filter, clamp):
    features, base = _inputs(rng, dtype, scale, size)
    out = backend.poisoned((2, 3, size[0] * scale, size[1] * scale), dtype)
    result = kernels.fused_upsample(backend.array(features), backend.array(base), scale, filter=filter, clamp=clamp,
                                    out=out)
    backend.synchronize()
    assert result is out
    assert_close(backend.numpy(out), ref.fused_upsample(features, base, scale, filter, clamp), dtype)


@pytest.mark.parametrize("scale", [2, 3])
def test_channels_last_views(backend, dtype, rng, scale):
    """Channel-interleaved memory (torch channels_last, HWC buffers) arrives as NCHW views with stride_c = 1."""
    size = (9, 14)
    features, base = _inputs(rng, dtype, scale, size, batch=2, channels=4)

    def nhwc(a):  # channel-interleaved storage of a, viewed as NCHW
        stored = backend.array(a.transpose(0, 2, 3, 1))
        return stored.permute(0, 3, 1, 2) if backend.name.startswith("torch") else stored.transpose(0, 3, 1, 2)

    out = nhwc(np.full((2, 4, size[0] * scale, size[1] * scale), np.nan, dtype))
    kernels.fused_upsample(nhwc(features), nhwc(base), scale, filter="bicubic", clamp=(0.0, 1.0), out=out)
    backend.synchronize()
    assert_close(backend.numpy(out), ref.fused_upsample(features, base, scale, "bicubic", (0.0, 1.0)), dtype)


def test_float16_sums_round_to_nearest_even(backend, rng):
    """With 'box' the sum is exact in float32; storing it must round like numpy: ties to even,
    subnormals, and overflow to inf from 65520 up."""
    scale, size = 2, (16, 24)
    magnitude = 2.0 ** rng.uniform(-26, 16, (2, 1, *size))
    base = (np.sign(rng.uniform(-1, 1, magnitude.shape)) * magnitude).astype(np.float16)
    features = (rng.uniform(-1, 1, (2, 4, *size)) * 2.0 ** rng.integers(-24, 12, (2, 4, *size))).astype(np.float16)
    base[0, 0, 0, :3] = [65504, -65504, 65504]  # the largest half, then sums at and beyond the overflow
    features[0, :, 0, :3] = np.array([16, -1024, 15], np.float16)  # tie -> inf, -inf, rounds down
    out = backend.poisoned((2, 1, size[0] * scale, size[1] * scale), "float16")
    kernels.fused_upsample(backend.array(features), backend.array(base), scale, filter="box", out=out)
    backend.synchronize()
    nearest = np.repeat(np.repeat(base, scale, axis=2), scale, axis=3)
    with np.errstate(over="ignore"):  # the overflow to inf is the point
        expected = (ref.pixel_shuffle(features, scale).astype(np.float32) + nearest.astype(np.float32)).astype(np.float16)
    assert expected[0, 0, 0, 0] == np.inf and expected[0, 0, 0, 2] == -np.inf and expected[0, 0, 0, 4] == 65504
    assert np.array_equal(backend.numpy(out), expected)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_box_is_pixel_shuffle_plus_torch_nearest(rng, scale):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    features, base = (torch.from_numpy(a) for a in _inputs(rng, "float32", scale, (13, 22)))
    expected = F.pixel_shuffle(features, scale) + F.interpolate(base, scale_factor=scale, mode="nearest")
    assert_close(kernels.fused_upsample(features, base, scale, filter="box"), expected.numpy(), "float32")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bilinear_is_pixel_shuffle_plus_resample(rng, scale):
    torch = pytest.importorskip("torch")
    features, base = (torch.from_numpy(a) for a in _inputs(rng, "float32", scale, (13, 22)))
    size = (13 * scale, 22 * scale)
    expected = (torch.nn.functional.pixel_shuffle(features, scale) + kernels.resample(base, size, filter="bilinear"))
    fused = kernels.fused_upsample(features, base, scale, filter="bilinear", clamp=(0.1, 0.9))
    assert_close(fused.numpy(), expected.clamp_(0.1, 0.9).numpy(), "float32")


@pytest.mark.parametrize("filter", kernels.FILTERS)
@pytest.mark.parametrize("size", ODD_SIZES, ids=str)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_cuda_matches_cpu(cuda_backend, dtype, rng, scale, size, filter):
    features, base = _inputs(rng, dtype, scale, size)
    out = cuda_backend.poisoned((2, 3, size[0] * scale, size[1] * scale), dtype)
    kernels.fused_upsample(cuda_backend.array(features), cuda_backend.array(base), scale, filter=filter, clamp=(0, 1),
                           out=out)
    cuda_backend.synchronize()
    expected = kernels.fused_upsample(features, base, scale, filter=filter, clamp=(0, 1))
    assert_close(cuda_backend.numpy(out), expected, dtype, "CUDA vs CPU")


def test_wrong_feature_channel_count_is_a_value_error(rng):
    features, base = _inputs(rng, "float32", 2, (4, 5))
    with pytest.raises(ValueError, match=r"^features: expected shape \(2, 12, 4, 5\)"):
        kernels.fused_upsample(features[:, :11], base, 2)


def test_wrong_out_shape_is_a_value_error(rng):
    features, base = _inputs(rng, "float32", 2, (4, 5))
    with pytest.raises(ValueError, match=r"^out: expected shape"):
        kernels.fused_upsample(features, base, 2, out=np.empty((2, 3, 8, 11), np.float32))


def test_scale_5_is_a_value_error(rng):
    features, base = _inputs(rng, "float32", 5, (4, 5))
    with pytest.raises(ValueError, match=r"^scale must be 2, 3 or 4, got 5"):
        kernels.fused_upsample(features, base, 5)


def test_unknown_filter_is_a_value_error(rng):
    features, base = _inputs(rng, "float32", 2, (4, 5))
    with pytest.raises(ValueError, match=r"^filter: unknown value 'nearest'"):
        kernels.fused_upsample(features, base, 2, filter="nearest")


def test_clamp_bounds_in_the_wrong_order_are_a_value_error(rng):
    features, base = _inputs(rng, "float32", 2, (4, 5))
    with pytest.raises(ValueError, match=r"^clamp: lower bound is above the upper bound"):
        kernels.fused_upsample(features, base, 2, clamp=(1.0, 0.0))
