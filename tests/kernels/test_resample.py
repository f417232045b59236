"""resample: every backend, dtype, layout and filter against the float64 numpy reference, plus
torch's antialiased interpolate as an independent check of the convention."""

from __future__ import annotations

import numpy as np
import pytest

import ref_resample as ref
from clarifx import kernels
from conftest import ODD_SIZES, assert_close

# (input size, output size): up, down, same, non-integer and per-axis different, from every ODD_SIZES input.
CASES = [
    (ODD_SIZES[0], (1, 1)),
    (ODD_SIZES[0], (3, 5)),
    (ODD_SIZES[1], (34, 62)),
    (ODD_SIZES[1], (51, 124)),
    (ODD_SIZES[1], (7, 12)),
    (ODD_SIZES[1], (29, 13)),
    (ODD_SIZES[1], (17, 31)),
    (ODD_SIZES[2], (5, 1000)),
    (ODD_SIZES[2], (2, 8194)),
    (ODD_SIZES[2], (1, 8194)),  # vertical-first even for float16 input
    (ODD_SIZES[2], (1, 1)),
]


def _case_id(case) -> str:
    (h, w), (oh, ow) = case
    return f"{h}x{w}->{oh}x{ow}"


@pytest.mark.parametrize("filter", kernels.FILTERS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_nchw_matches_reference(backend, dtype, rng, filter, case):
    (h, w), size = case
    image = rng.random((2, 3, h, w)).astype(dtype)
    out = backend.poisoned((2, 3, *size), dtype)
    result = kernels.resample(backend.array(image), size, filter=filter, out=out)
    backend.synchronize()
    assert result is out
    assert_close(backend.numpy(out), ref.resample(image, size, filter), dtype)


@pytest.mark.parametrize("filter", kernels.FILTERS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_hwc_matches_reference(backend, dtype, rng, filter, case):
    (h, w), size = case
    image = rng.random((h, w, 3)).astype(dtype)
    out = backend.poisoned((*size, 3), dtype)
    kernels.resample(backend.array(image), size, filter=filter, out=out)
    backend.synchronize()
    expected = ref.resample(image.transpose(2, 0, 1)[None], size, filter)[0].transpose(1, 2, 0)
    assert_close(backend.numpy(out), expected, dtype)


@pytest.mark.parametrize("channels", [1, 2, 4, 5])
@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[7]], ids=_case_id)
def test_hwc_channel_counts(backend, dtype, rng, case, channels):
    """Interleaved pixels of up to four channels are made and stored whole; wider ones a channel at a time."""
    (h, w), size = case
    image = rng.random((h, w, channels)).astype(dtype)
    out = backend.poisoned((*size, channels), dtype)
    kernels.resample(backend.array(image), size, filter="lanczos3", out=out)
    backend.synchronize()
    expected = ref.resample(image.transpose(2, 0, 1)[None], size, "lanczos3")[0].transpose(1, 2, 0)
    assert_close(backend.numpy(out), expected, dtype)


@pytest.mark.parametrize("filter", ["bicubic", "lanczos3"])
def test_strided_views_read_and_write_only_their_elements(backend, dtype, rng, filter):
    full = rng.random((2, 5, 40, 70)).astype(dtype)
    image = backend.array(full)[:, 1:4, 3::2, ::3]  # every stride differs from the compact one
    size = (37, 18)
    canvas = backend.poisoned((2, 3, 2 * size[0], size[1] + 4), dtype)
    out = canvas[:, :, ::2, 2:-2]
    kernels.resample(image, size, filter=filter, out=out)
    backend.synchronize()
    written = backend.numpy(canvas)
    assert_close(written[:, :, ::2, 2:-2], ref.resample(full[:, 1:4, 3::2, ::3], size, filter), dtype)
    untouched = np.ones(written.shape, bool)
    untouched[:, :, ::2, 2:-2] = False
    assert np.isnan(written[untouched]).all(), "resample wrote outside the out view"


def test_float16_identity_keeps_every_value(backend):
    """Box at the same size multiplies by exactly 1: all 65536 float16 values (subnormals, inf, NaN) survive."""
    every = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(1, 1, 256, 256)
    out = backend.poisoned(every.shape, "float16")
    kernels.resample(backend.array(every), (256, 256), filter="box", out=out)
    backend.synchronize()
    assert np.array_equal(backend.numpy(out), every, equal_nan=True)


def test_scale_argument_rounds_to_the_same_size(rng):
    image = rng.random((1, 2, 17, 31)).astype(np.float32)
    assert_close(kernels.resample(image, scale=1.5), kernels.resample(image, (26, 46)), "float32")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(34, 62), (40, 75), (20, 30), (13, 41), (64, 12)], ids=str)
def test_matches_torch_antialiased_interpolate(rng, mode, size):
    torch = pytest.importorskip("torch")
    image = rng.random((1, 3, 27, 48)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(image), size=size, mode=mode, antialias=True,
                                               align_corners=False)
    assert_close(kernels.resample(image, size, filter=mode), expected.numpy(), "float32")


@pytest.mark.parametrize("filter", kernels.FILTERS)
@pytest.mark.parametrize("case", CASES[1:5] + CASES[7:], ids=_case_id)
@pytest.mark.parametrize("layout", ["nchw", "hwc"])
def test_cuda_matches_cpu(cuda_backend, dtype, rng, filter, case, layout):
    (h, w), size = case
    image = rng.random((2, 3, h, w) if layout == "nchw" else (h, w, 3)).astype(dtype)
    out_shape = (2, 3, *size) if layout == "nchw" else (*size, 3)
    out = cuda_backend.poisoned(out_shape, dtype)
    kernels.resample(cuda_backend.array(image), size, filter=filter, out=out)
    cuda_backend.synchronize()
    assert_close(cuda_backend.numpy(out), kernels.resample(image, size, filter=filter), dtype, "CUDA vs CPU")


def test_unknown_filter_is_a_value_error(rng):
    image = rng.random((1, 1, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^filter: unknown value 'lanczos4'"):
        kernels.resample(image, (8, 8), filter="lanczos4")


def test_wrong_out_shape_is_a_value_error(rng):
    image = rng.random((1, 2, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^out: expected shape"):
        kernels.resample(image, (8, 8), out=np.empty((1, 2, 8, 9), np.float32))
