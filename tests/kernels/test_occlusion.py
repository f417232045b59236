"""kernels.occlusion against the numpy reference, known translations and inconsistent regions; CUDA against CPU."""

from __future__ import annotations

import numpy as np
import pytest

from clarifx import kernels
from conftest import ODD_SIZES
from ref_warp import occlusion_ref

LAYOUTS = ["nchw", "hwc"]

# Pixels whose consistency test lies this close (relative) to its threshold may go either way with
# float rounding (the reference sums in float64), so the comparison leaves them out.
NEAR_TIE = 1e-3


def to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "nchw" else np.ascontiguousarray(a[0].transpose(1, 2, 0))


def from_layout(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "nchw" else a.transpose(2, 0, 1)[None]


def run_occlusion(backend, forward, backward, layout, **kwargs) -> np.ndarray:
    """Occlusion of NCHW numpy flows on `backend` in `layout` into a NaN-filled output; NCHW numpy result."""
    fw, bw = to_layout(forward, layout), to_layout(backward, layout)
    shape = (fw.shape[0], 1) + fw.shape[2:] if layout == "nchw" else fw.shape[:2] + (1,)
    out = backend.poisoned(shape, fw.dtype)
    res = kernels.occlusion(backend.array(fw), backend.array(bw), out=out, **kwargs)
    assert res is out
    backend.synchronize()
    return from_layout(backend.numpy(res), layout)


def random_flows(rng, n, h, w, dtype):
    """A forward flow and a backward flow that mostly undoes it, with noise that breaks the round trip in places."""
    forward = rng.normal(0, 3, (n, 2, h, w))
    backward = -forward + rng.normal(0, 0.6, forward.shape) * (rng.random((n, 1, h, w)) < 0.5)
    return forward.astype(dtype), backward.astype(dtype)


def assert_matches(actual: np.ndarray, expected: np.ndarray, margin: np.ndarray) -> None:
    decided = margin > NEAR_TIE
    assert np.isfinite(actual).all() and np.isin(actual, (0.0, 1.0)).all()
    np.testing.assert_array_equal(actual[decided], expected[decided])
    assert decided.mean() > 0.95  # the comparison covers almost every pixel


@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_reference(backend, dtype, layout, size, rng):
    h, w = size
    n = 2 if layout == "nchw" else 1
    forward, backward = random_flows(rng, n, h, w, dtype)
    alpha1, alpha2 = float(rng.uniform(0, 0.05)), float(rng.uniform(0.1, 1.0))
    out = run_occlusion(backend, forward, backward, layout, alpha1=alpha1, alpha2=alpha2)
    expected, margin = occlusion_ref(forward, backward, alpha1, alpha2)
    assert_matches(out, expected, margin)


def test_translation_is_occluded_only_where_it_leaves_the_frame(backend, dtype, rng):
    h, w = 19, 33
    dx, dy = float(rng.integers(-8, 8)) + 0.5, float(rng.integers(-6, 6)) - 0.25
    forward = np.empty((1, 2, h, w), dtype)
    forward[:, 0], forward[:, 1] = dx, dy
    out = run_occlusion(backend, forward, -forward, "nchw")
    ys, xs = np.mgrid[0:h, 0:w]
    leaves = (xs + dx < 0) | (xs + dx > w - 1) | (ys + dy < 0) | (ys + dy > h - 1)
    np.testing.assert_array_equal(out[0, 0], leaves)
    assert leaves.any() and not leaves.all()


def test_inconsistent_region_is_flagged(backend, dtype, rng):
    """A translation whose backward flow is wrong on a rectangle of the next frame: pixels that land well
    inside the rectangle are occluded, pixels that land well away from it (inside the frame) are not."""
    h, w = 40, 60
    dx, dy = 3.0, -2.0
    forward = np.empty((1, 2, h, w), dtype)
    forward[:, 0], forward[:, 1] = dx, dy
    backward = -forward
    top, left = int(rng.integers(5, 20)), int(rng.integers(5, 35))
    backward[:, :, top : top + 12, left : left + 15] += np.array([4.0, -3.0], dtype).reshape(1, 2, 1, 1)
    out = run_occlusion(backend, forward, backward, "nchw")

    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = xs + dx, ys + dy  # where each pixel lands (integer, so no blending at the rectangle's edge)
    in_frame = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    in_region = (ty >= top) & (ty < top + 12) & (tx >= left) & (tx < left + 15)
    np.testing.assert_array_equal(out[0, 0][in_frame], in_region[in_frame])
    np.testing.assert_array_equal(out[0, 0][~in_frame], 1.0)


def test_non_finite_flow_is_occluded_without_check(backend, rng):
    forward, backward = random_flows(rng, 1, 17, 31, "float32")
    forward[0, 0, 3, 4], backward[0, 1, 9, 20] = np.nan, np.inf
    out = run_occlusion(backend, forward, backward, "nchw", check_finite=False)
    assert out[0, 0, 3, 4] == 1.0 and out[0, 0, 9, 20] == 1.0
    # What a pixel that samples the infinite backward value gets is not specified: leave those out.
    ys, xs = np.mgrid[0:17, 0:31]
    near_bad = (np.abs(xs + forward[0, 0] - 20) < 2) & (np.abs(ys + forward[0, 1] - 9) < 2)
    expected, margin = occlusion_ref(forward, backward)
    margin[0, 0][near_bad] = 0.0
    assert_matches(out, expected, margin)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cuda_matches_cpu(cuda_backend, dtype, layout, rng):
    n = 3 if layout == "nchw" else 1
    forward, backward = random_flows(rng, n, 67, 131, dtype)
    forward[0, :, 5, 7] = np.nan
    cpu = kernels.occlusion(forward, backward, check_finite=False)
    out = run_occlusion(cuda_backend, forward, backward, layout, check_finite=False)
    _, margin = occlusion_ref(forward, backward)
    assert_matches(out, cpu, margin)
