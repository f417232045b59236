"""clarifx.flow against the true flow of sequences made from real photos by known motion, occlusions from
forward-backward consistency against the true ones, and the known-motion generator itself."""

import numpy as np
import pytest
import torch

from clarifx import flow, kernels, synthetic
from clarifx.metrics import endpoint_error


@pytest.fixture(scope="module")
def astronaut():
    return synthetic.photo("astronaut")


def _sequence(photo, motion, **kw):
    return synthetic.KnownMotion(photo, motion, frames=kw.pop("frames", 4), **kw)


@pytest.mark.parametrize("motion", synthetic.MOTIONS)
def test_the_true_flow_explains_the_frames(astronaut, motion):
    s = _sequence(astronaut, motion)
    for t, u in ((1, 2), (2, 1), (0, 3)):
        keep = ~s.occlusion(t, u)
        warped, _ = kernels.warp(s.frames[u], s.flow(t, u), interp="bicubic")
        residual = np.abs(warped - s.frames[t]).mean(axis=2)[keep].mean()
        unmoved = np.abs(s.frames[u] - s.frames[t]).mean(axis=2)[keep].mean()
        assert residual < 0.25 * unmoved and residual < 0.01, (t, u, residual, unmoved)
    if motion in ("pan", "object"):  # the edge the camera leaves (and the background the region covers)
        assert 0.005 < s.occlusion(1, 2).mean() < 0.1


# Measured with `python benchmarks/temporal.py --only flow` (DIS 'medium', 3 photos): EPE 0.10-0.28 px.
# The bounds leave room for another photo and OpenCV build, and fail for a flow off by a pixel.
BOUNDS = {"pan": (0.25, 0.97), "zoom": (0.3, 0.97), "rotate": (0.3, 0.97), "object": (0.5, 0.88)}


@pytest.mark.parametrize("motion", synthetic.MOTIONS)
def test_dis_flow_is_accurate_on_known_motion(astronaut, motion):
    s = _sequence(astronaut, motion)
    epe, under1 = endpoint_error(flow.estimate(s.frames[1], s.frames[2]), s.flow(1, 2), mask=~s.occlusion(1, 2))
    max_epe, min_under1 = BOUNDS[motion]
    assert epe < max_epe and under1 > min_under1, (epe, under1)
    # The other direction is the other flow, not this one negated blindly.
    epe_back, _ = endpoint_error(flow.estimate(s.frames[2], s.frames[1]), s.flow(2, 1), mask=~s.occlusion(2, 1))
    assert epe_back < max_epe


def test_fine_preset_is_more_accurate_than_ultrafast(astronaut):
    s = _sequence(astronaut, "rotate", speed=3.0)
    mask = ~s.occlusion(1, 2)
    errs = {p: endpoint_error(flow.estimate(s.frames[1], s.frames[2], preset=p), s.flow(1, 2), mask=mask)[0]
            for p in ("ultrafast", "fine")}
    assert errs["fine"] < 0.5 * errs["ultrafast"], errs


def test_an_initial_flow_is_used(astronaut):
    """A 42-pixel pan is beyond the coarsest scale of 'ultrafast' on a small frame: from nothing it fails,
    started from the true flow (as from the previous frame's flow in steady motion) it stays right."""
    s = _sequence(astronaut, "pan", speed=20.0, size=(160, 200))
    mask = ~s.occlusion(1, 2)
    truth = s.flow(1, 2)
    cold = endpoint_error(flow.estimate(s.frames[1], s.frames[2], preset="ultrafast"), truth, mask=mask)[0]
    warm = endpoint_error(flow.estimate(s.frames[1], s.frames[2], preset="ultrafast", init=truth), truth,
                          mask=mask)[0]
    assert cold > 5.0 and warm < 0.6, (cold, warm)


def test_pyramid_flow_with_the_warp_kernel_is_accurate(astronaut):
    torch = pytest.importorskip("torch")
    s = _sequence(astronaut, "pan", speed=2.0)
    mask = ~s.occlusion(1, 2)
    est = flow.estimate(s.frames[1], s.frames[2], method="pyramid")
    assert isinstance(est, np.ndarray) and est.shape == (192, 256, 2) and est.dtype == np.float32
    epe, under1 = endpoint_error(est, s.flow(1, 2), mask=mask)
    assert epe < 0.5 and under1 > 0.85, (epe, under1)
    # torch frames stay torch, on their device
    t = flow.estimate(torch.from_numpy(s.frames[1]), torch.from_numpy(s.frames[2]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), est, atol=1e-4)


@pytest.mark.skipif(not kernels.cuda_available(), reason="needs a CUDA GPU")
def test_pyramid_flow_on_cuda_matches_the_cpu(astronaut):
    s = _sequence(astronaut, "rotate", speed=2.0)
    a, b = (torch.from_numpy(f) for f in s.frames[1:3])
    cpu = flow.estimate(a, b, method="pyramid").numpy()
    gpu = flow.estimate(a.cuda(), b.cuda()).cpu().numpy()
    np.testing.assert_allclose(gpu, cpu, atol=2e-3)
    assert endpoint_error(gpu, s.flow(1, 2), mask=~s.occlusion(1, 2))[0] < 0.5


def test_occlusions_from_forward_backward_consistency(astronaut):
    """The background the moving region covers is found; elsewhere almost nothing is flagged."""
    s = _sequence(astronaut, "object", frames=5)
    fw, bw = flow.estimate(s.frames[2], s.frames[3]), flow.estimate(s.frames[3], s.frames[2])
    found = flow.occlusion(fw, bw) > 0.5
    truth = s.occlusion(2, 3)
    alpha = s.alpha(2)
    covered = truth & ((alpha == 0) | (alpha == 1))  # not the region's soft rim, where no one flow is true
    assert covered.sum() > 300
    assert found[covered].mean() > 0.6
    assert found[~truth].mean() < 0.05


def test_compose_and_upscale_follow_the_convention(astronaut):
    s = _sequence(astronaut, "zoom")
    composed = flow.compose(s.flow(0, 1), s.flow(1, 2))
    mask = ~s.occlusion(0, 2)
    assert endpoint_error(composed, s.flow(0, 2), mask=mask)[0] < 0.02
    small = kernels.resample(s.flow(0, 1), (96, 128), filter="box") * 0.5  # the same motion at half size
    up = flow.upscale(small, (192, 256))
    inner = np.zeros((192, 256), bool)
    inner[4:-4, 4:-4] = True
    assert endpoint_error(up, s.flow(0, 1), mask=inner)[0] < 0.02


def test_bad_arguments_are_named(astronaut):
    a = astronaut[:64, :64]
    with pytest.raises(ValueError, match="b: size"):
        flow.estimate(a, astronaut[:64, :32])
    with pytest.raises(ValueError, match="preset must be one of"):
        flow.estimate(a, a, preset="slow")
    with pytest.raises(ValueError, match="init: expected shape"):
        flow.estimate(a, a, init=np.zeros((64, 32, 2), np.float32))
    with pytest.raises(ValueError, match="a: expected an"):
        flow.estimate(np.zeros((64, 64, 2, 2), np.float32), np.zeros((64, 64, 2, 2), np.float32))
    bad = a.copy()
    bad[3, 5, 1] = np.nan
    for method in ("dis", "pyramid"):
        with pytest.raises(ValueError, match="b: the frame has NaN or infinite"):
            flow.estimate(a, bad, method=method)
    with pytest.raises(ValueError, match="a: the frame has NaN or infinite"):
        flow.estimate(torch.from_numpy(np.where(bad == bad, bad, np.inf)), torch.from_numpy(a))
    with pytest.raises(ValueError, match="motion must be one of"):
        synthetic.KnownMotion(astronaut, "shake")
