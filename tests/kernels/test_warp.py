"""kernels.warp against the numpy reference, against shifted copies and torch's grid_sample, and CUDA against CPU."""

from __future__ import annotations

import numpy as np
import pytest

from clarifx import kernels
from conftest import ODD_SIZES, assert_close
from ref_warp import warp_ref

LAYOUTS = ["nchw", "hwc"]


@pytest.fixture(params=["float32", "float16"])
def flow_dtype(request) -> str:
    return request.param


def random_image(rng, n, c, h, w, dtype):
    return rng.uniform(-0.5, 1.5, (n, c, h, w)).astype(dtype)


def random_flow(rng, n, h, w, dtype):
    """Mostly a few pixels of motion, with a third of the samples thrown well outside the frame."""
    flow = rng.normal(0, 2.5, (n, 2, h, w))
    far = rng.random((n, 2, h, w)) < 0.3
    reach = np.array([w, h]).reshape(1, 2, 1, 1)
    flow = np.where(far, rng.uniform(-1.5, 1.5, flow.shape) * (reach + 4), flow)
    return flow.astype(dtype)


def to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """NCHW -> the layout a caller would hold (HWC takes batch item 0)."""
    return a if layout == "nchw" else np.ascontiguousarray(a[0].transpose(1, 2, 0))


def from_layout(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "nchw" else a.transpose(2, 0, 1)[None]


def run_warp(backend, image, flow, layout, **kwargs):
    """Warp NCHW numpy inputs on `backend` in `layout` into NaN-filled outputs; NCHW numpy results."""
    im, fl = to_layout(image, layout), to_layout(flow, layout)
    mask_shape = (im.shape[0], 1) + im.shape[2:] if layout == "nchw" else im.shape[:2] + (1,)
    out, mask = backend.poisoned(im.shape, im.dtype), backend.poisoned(mask_shape, im.dtype)
    res, res_mask = kernels.warp(backend.array(im), backend.array(fl), out=out, mask=mask, **kwargs)
    assert res is out and res_mask is mask
    backend.synchronize()
    return from_layout(backend.numpy(res), layout), from_layout(backend.numpy(res_mask), layout)


@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("border", kernels.BORDERS)
@pytest.mark.parametrize("interp", kernels.INTERPOLATIONS)
def test_matches_reference(backend, dtype, flow_dtype, interp, border, layout, size, rng):
    h, w = size
    n, c = (2, 3) if layout == "nchw" else (1, 4)
    image, flow = random_image(rng, n, c, h, w, dtype), random_flow(rng, n, h, w, flow_dtype)
    out, mask = run_warp(backend, image, flow, layout, interp=interp, border=border)
    expected, expected_mask = warp_ref(image, flow, interp, border)
    assert_close(out, expected, dtype)
    np.testing.assert_array_equal(mask, expected_mask)


@pytest.mark.parametrize("border", kernels.BORDERS)
@pytest.mark.parametrize("interp", kernels.INTERPOLATIONS)
def test_zero_flow_returns_the_image(backend, dtype, interp, border, rng):
    image = random_image(rng, 2, 3, 17, 31, dtype)
    out, mask = run_warp(backend, image, np.zeros((2, 2, 17, 31), dtype), "nchw", interp=interp, border=border)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(mask, 1.0)


@pytest.mark.parametrize("border", kernels.BORDERS)
@pytest.mark.parametrize("interp", kernels.INTERPOLATIONS)
def test_integer_shift_equals_padded_slice(backend, dtype, interp, border, rng):
    """out[y, x] = image[y + dy, x + dx]; beyond the frame the border rule is numpy's matching pad mode."""
    h, w = 13, 21
    dx, dy = int(rng.integers(-2 * w, 2 * w)), int(rng.integers(-h, h))
    image = random_image(rng, 1, 3, h, w, dtype)
    flow = np.empty((1, 2, h, w), dtype)
    flow[:, 0], flow[:, 1] = dx, dy
    out, mask = run_warp(backend, image, flow, "nchw", interp=interp, border=border)

    mode = {"clamp": "edge", "zero": "constant", "reflect": "reflect"}[border]
    py, px = abs(dy), abs(dx)
    padded = np.pad(image, ((0, 0), (0, 0), (py, py), (px, px)), mode=mode)
    np.testing.assert_array_equal(out, padded[:, :, py + dy : py + dy + h, px + dx : px + dx + w])
    ys, xs = np.mgrid[0:h, 0:w]
    inside = (xs + dx >= 0) & (xs + dx < w) & (ys + dy >= 0) & (ys + dy < h)
    np.testing.assert_array_equal(mask[0, 0], inside)


# torch's grid_sample agrees with our convention for bilinear sampling with align_corners=True (pixel
# centres at integer coordinates, -1 and 1 at the edge pixels): 'border' clamps to the edge pixels like
# our clamp, 'zeros' reads 0 outside like our zero, and 'reflection' mirrors about the edge pixels like
# our reflect. Its bicubic uses a = -0.75 (ours: Keys, a = -0.5), so bicubic is not compared. The grid's
# normalisation rounds, hence the looser tolerance.
@pytest.mark.parametrize("border,padding_mode", [("clamp", "border"), ("zero", "zeros"), ("reflect", "reflection")])
def test_bilinear_matches_torch_grid_sample(border, padding_mode, rng):
    torch = pytest.importorskip("torch")
    n, c, h, w = 2, 3, 17, 31
    image, flow = random_image(rng, n, c, h, w, "float32"), random_flow(rng, n, h, w, "float32")
    out, _ = kernels.warp(image, flow, interp="bilinear", border=border)
    xs = np.arange(w, dtype=np.float32) + flow[:, 0]
    ys = np.arange(h, dtype=np.float32)[:, None] + flow[:, 1]
    grid = np.stack([xs * 2 / (w - 1) - 1, ys * 2 / (h - 1) - 1], axis=-1)
    expected = torch.nn.functional.grid_sample(
        torch.from_numpy(image), torch.from_numpy(grid), mode="bilinear", padding_mode=padding_mode, align_corners=True
    )
    np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_finite_flow_reads_zero_without_check(backend, layout, rng):
    n = 2 if layout == "nchw" else 1
    image, flow = random_image(rng, n, 3, 17, 31, "float32"), random_flow(rng, n, 17, 31, "float32")
    bad = rng.random((n, 17, 31)) < 0.1
    flow[:, 0][bad] = rng.choice([np.nan, np.inf, -np.inf], np.count_nonzero(bad))
    flow[:, 1][rng.random((n, 17, 31)) < 0.05] = np.nan
    out, mask = run_warp(backend, image, flow, layout, check_finite=False)
    expected, expected_mask = warp_ref(image, flow)
    assert_close(out, expected, "float32")
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(out.transpose(1, 0, 2, 3)[:, bad], 0)
    np.testing.assert_array_equal(mask[:, 0][bad], 0)


def test_offsets_beyond_32_bits_take_the_generic_path(tmp_path, rng):
    """A view whose rows lie 4 GiB apart (a sparse file, so nothing is written) exceeds the fast path's
    32-bit offsets; the per-pixel path must give the same results."""
    row = 1 << 30  # elements between rows: past the fast path's limit
    path = tmp_path / "sparse.f32"
    try:
        with open(path, "wb") as f:
            f.truncate((row + 8) * 4)
        buffer = np.memmap(path, dtype=np.float32, mode="r+")
    except OSError as e:
        pytest.skip(f"no sparse 4 GiB file here: {e}")
    values = rng.uniform(-0.5, 1.5, (2, 5)).astype(np.float32)
    buffer[:5], buffer[row : row + 5] = values[0], values[1]
    image = np.lib.stride_tricks.as_strided(buffer, shape=(1, 1, 2, 5), strides=(4, 4, row * 4, 4))
    for interp in kernels.INTERPOLATIONS:
        for border in kernels.BORDERS:
            flow = random_flow(rng, 1, 2, 5, "float32")
            out, mask = kernels.warp(image, flow, interp=interp, border=border)
            expected, expected_mask = warp_ref(values[None, None], flow, interp, border)
            assert_close(out, expected, "float32", f"{interp}/{border}")
            np.testing.assert_array_equal(mask, expected_mask)
    del image, buffer


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("border", kernels.BORDERS)
@pytest.mark.parametrize("interp", kernels.INTERPOLATIONS)
def test_cuda_matches_cpu(cuda_backend, dtype, flow_dtype, interp, border, layout, rng):
    n = 3 if layout == "nchw" else 1
    image, flow = random_image(rng, n, 3, 67, 131, dtype), random_flow(rng, n, 67, 131, flow_dtype)
    flow[0, :, 5, 7] = np.nan  # exercises the non-finite path on both
    cpu_out, cpu_mask = kernels.warp(image, flow, interp=interp, border=border, check_finite=False)
    out, mask = run_warp(cuda_backend, image, flow, layout, interp=interp, border=border, check_finite=False)
    # CUDA contracts multiply-adds into FMAs, so results differ from the CPU's in the last bits.
    assert_close(out, cpu_out, dtype)
    np.testing.assert_array_equal(mask, cpu_mask)
