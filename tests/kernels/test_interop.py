"""How warp and occlusion meet the caller's arrays: zero-copy views, result types, argument errors, linking."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from clarifx import _native, kernels
from conftest import assert_close
from ref_warp import occlusion_ref, warp_ref

H, W = 17, 31
SENTINEL = -7.0


def inputs(rng, n=1, c=3, dtype="float32"):
    image = rng.uniform(-0.5, 1.5, (n, c, H, W)).astype(dtype)
    flow = rng.normal(0, 4, (n, 2, H, W)).astype(dtype)
    return image, flow


def test_out_views_into_larger_arrays(backend, rng):
    """out= and mask= as strided views into bigger arrays: the parents see the results, nothing else changes."""
    image, flow = inputs(rng, n=2)
    out_parent = backend.array(np.full((3, 5, H + 6, W + 9), SENTINEL, np.float32))
    mask_parent = backend.array(np.full((2, 4, H + 2, 2 * W), SENTINEL, np.float32))
    out = out_parent[1:, 1:4, 5 : 5 + H, 3 : 3 + W]
    mask = mask_parent[:, 2:3, 1 : 1 + H, ::2]
    res, res_mask = kernels.warp(backend.array(image), backend.array(flow), border="reflect", out=out, mask=mask)
    assert res is out and res_mask is mask

    expected, expected_mask = warp_ref(image, flow, border="reflect")
    parent = backend.numpy(out_parent).copy()
    assert_close(parent[1:, 1:4, 5 : 5 + H, 3 : 3 + W], expected, "float32")
    parent[1:, 1:4, 5 : 5 + H, 3 : 3 + W] = SENTINEL
    assert (parent == SENTINEL).all()
    parent = backend.numpy(mask_parent).copy()
    np.testing.assert_array_equal(parent[:, 2:3, 1 : 1 + H, ::2], expected_mask)
    parent[:, 2:3, 1 : 1 + H, ::2] = SENTINEL
    assert (parent == SENTINEL).all()


def test_hwc_views_of_transposed_arrays(backend, rng):
    image, flow = inputs(rng)
    chw_image, chw_flow = backend.array(image[0]), backend.array(flow[0])
    hwc = (lambda a: a.permute(1, 2, 0)) if backend.name.startswith("torch") else (lambda a: a.transpose(1, 2, 0))
    out, mask = kernels.warp(hwc(chw_image), hwc(chw_flow), interp="bicubic")
    expected, expected_mask = warp_ref(image, flow, "bicubic")
    assert tuple(out.shape) == (H, W, 3) and tuple(mask.shape) == (H, W, 1)
    assert_close(backend.numpy(out).transpose(2, 0, 1)[None], expected, "float32")
    np.testing.assert_array_equal(backend.numpy(mask).transpose(2, 0, 1)[None], expected_mask)

    backward = -flow[0] + rng.normal(0, 0.5, flow[0].shape).astype(np.float32)
    occluded = kernels.occlusion(hwc(chw_flow), hwc(backend.array(backward)))
    expected, margin = occlusion_ref(flow, backward[None])
    decided = (margin > 1e-3)[0, 0]
    np.testing.assert_array_equal(backend.numpy(occluded)[..., 0][decided], expected[0, 0][decided])


def test_read_only_numpy_inputs(rng):
    image, flow = inputs(rng)
    image.setflags(write=False)
    flow.setflags(write=False)
    out, mask = kernels.warp(image, flow)
    expected, expected_mask = warp_ref(image, flow)
    assert_close(out, expected, "float32")
    np.testing.assert_array_equal(mask, expected_mask)
    occluded = kernels.occlusion(flow, flow)
    assert occluded.shape == (1, 1, H, W)


@pytest.mark.parametrize("layout", ["nchw", "hwc"])
def test_results_follow_the_caller(backend, dtype, layout, rng):
    image, flow = inputs(rng, dtype=dtype)
    if layout == "hwc":
        image, flow = image[0].transpose(1, 2, 0), flow[0].transpose(1, 2, 0)
    im, fl = backend.array(image), backend.array(flow)
    out, mask = kernels.warp(im, fl)
    occluded = kernels.occlusion(fl, fl)
    for result, shape in ((out, im.shape), (mask, im.shape[:-1] + (1,) if layout == "hwc" else (1, 1, H, W))):
        assert type(result) is type(im) and result.dtype == im.dtype and tuple(result.shape) == tuple(shape)
    assert type(occluded) is type(fl) and occluded.dtype == fl.dtype
    if backend.cuda:
        assert out.device == im.device and occluded.device == fl.device


def test_torch_inputs_that_require_grad(rng):
    torch = pytest.importorskip("torch")
    image, flow = inputs(rng)
    im = torch.from_numpy(image).requires_grad_()
    fl = torch.from_numpy(flow).requires_grad_()
    out, mask = kernels.warp(im, fl)
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    expected, _ = warp_ref(image, flow)
    assert_close(out.numpy(), expected, "float32")
    assert kernels.occlusion(fl, -fl).shape == (1, 1, H, W)


def test_zero_size_arrays(backend):
    for image_shape, flow_shape in (((0, 3, 4, 5), (0, 2, 4, 5)), ((1, 3, 0, 5), (1, 2, 0, 5)), ((4, 0, 2), (4, 0, 2))):
        image = backend.array(np.zeros(image_shape, np.float32))
        flow = backend.array(np.zeros(flow_shape, np.float32))
        out, mask = kernels.warp(image, flow)
        assert tuple(out.shape) == image_shape and mask.shape[-1 if len(image_shape) == 3 else 1] == 1
        assert backend.numpy(kernels.occlusion(flow, flow)).size == 0
    image = backend.array(np.zeros((1, 0, 4, 5), np.float32))
    out, _ = kernels.warp(image, backend.array(np.zeros((1, 2, 4, 5), np.float32)))
    assert tuple(out.shape) == (1, 0, 4, 5)


def raises_naming(name: str):
    return pytest.raises(ValueError, match=rf"^{re.escape(name)}\b")


def test_bad_arguments_name_the_argument(rng):
    image, flow = inputs(rng)
    with raises_naming("image"):
        kernels.warp(image[0, 0], flow)
    with raises_naming("flow"):
        kernels.warp(image, flow[0])
    with raises_naming("image"):
        kernels.warp(image.astype(np.int32), flow)
    with raises_naming("image"):
        kernels.warp(image.astype(np.float64), flow)
    with raises_naming("flow"):
        kernels.warp(image, flow.astype(np.float64))
    with raises_naming("flow"):
        kernels.warp(image, np.zeros((1, 3, H, W), np.float32))
    with raises_naming("flow"):
        kernels.warp(image, flow[:, :, :-1])
    with pytest.raises(ValueError, match=rf"flow: expected shape \({H}, {W}, 2\)"):  # in the caller's layout
        kernels.warp(image[0].transpose(1, 2, 0), np.zeros((H, W, 3), np.float32))
    with raises_naming("out"):
        kernels.warp(image, flow, out=np.zeros((1, 3, H, W - 1), np.float32))
    with raises_naming("out"):
        kernels.warp(image, flow, out=np.zeros((1, 3, H, W), np.float16))
    with raises_naming("mask"):
        kernels.warp(image, flow, mask=np.zeros((1, 3, H, W), np.float32))
    with raises_naming("mask"):
        kernels.warp(image, flow, mask=np.zeros((1, 1, H, W), np.float16))
    with raises_naming("interp"):
        kernels.warp(image, flow, interp="nearest")
    with raises_naming("border"):
        kernels.warp(image, flow, border="wrap")
    with raises_naming("image"):
        kernels.warp(image.tolist(), flow)
    with raises_naming("out"):
        kernels.warp(image, flow, out=[0.0])
    with raises_naming("mask"):
        kernels.warp(image, flow, mask="mask")
    with raises_naming("out"):
        kernels.resample(image, scale=2, out=image.tolist())
    with raises_naming("flow"):
        kernels.warp(image, flow.tolist())
    with raises_naming("forward"):
        kernels.occlusion(flow.tolist(), flow)
    with raises_naming("forward"):
        kernels.occlusion(image, flow)
    with raises_naming("backward"):
        kernels.occlusion(flow, flow.astype(np.float16))
    with raises_naming("backward"):
        kernels.occlusion(flow, flow[:, :, 1:])


def test_outputs_that_overlap_or_cannot_be_written(rng):
    image, flow = inputs(rng)
    with raises_naming("out"):
        kernels.warp(image, flow, out=image)
    parent = np.zeros((1, 4, H, W), np.float32)
    parent[:, :3] = image
    with raises_naming("out"):
        kernels.warp(parent[:, :3], flow, out=parent[:, 1:])
    out = np.zeros_like(image)
    with raises_naming("mask"):
        kernels.warp(image, flow, out=out, mask=out[:, :1])
    read_only = np.zeros_like(image)
    read_only.setflags(write=False)
    with raises_naming("out"):
        kernels.warp(image, flow, out=read_only)
    with raises_naming("out"):
        kernels.occlusion(flow, flow, out=flow[:, :1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_flow(backend, bad, rng):
    """check_finite=True raises (on CUDA after waiting on the stream); False stays quiet and reads 0."""
    image, flow = inputs(rng)
    flow[0, 1, 4, 6] = bad
    im, fl = backend.array(image), backend.array(flow)
    with raises_naming("flow"):
        kernels.warp(im, fl)
    with pytest.raises(ValueError, match="forward or backward"):
        kernels.occlusion(fl, fl)
    with pytest.raises(ValueError, match="forward or backward"):
        kernels.occlusion(backend.array(np.zeros_like(flow)), fl)
    out, mask = kernels.warp(im, fl, check_finite=False)
    occluded = kernels.occlusion(fl, fl, check_finite=False)
    backend.synchronize()
    assert (backend.numpy(out)[0, :, 4, 6] == 0).all() and backend.numpy(mask)[0, 0, 4, 6] == 0
    assert backend.numpy(occluded)[0, 0, 4, 6] == 1


def test_mixed_devices(cuda_backend, rng):
    image, flow = inputs(rng)
    with raises_naming("flow"):
        kernels.warp(cuda_backend.array(image), flow)
    with raises_naming("out"):
        kernels.warp(cuda_backend.array(image), cuda_backend.array(flow), out=np.zeros_like(image))
    with raises_naming("backward"):
        kernels.occlusion(cuda_backend.array(flow), flow)


def test_native_module_links_neither_torch_nor_the_cuda_driver():
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd")
    libraries = subprocess.run([ldd, _native.__file__], capture_output=True, text=True, check=True).stdout
    assert "libc.so" in libraries  # ldd did list the module's libraries
    linked = re.findall(r"^\s*(\S+)", libraries, re.M)
    offending = [lib for lib in linked if re.match(r"lib(torch|c10|cuda\.so)", lib)]
    assert not offending, f"clarifx._native links {offending}"
