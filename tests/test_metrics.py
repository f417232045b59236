import numpy as np
import pytest

from clarifx.metrics import luma_bt601, psnr, psnr_y


def test_psnr_of_a_known_error():
    rng = np.random.default_rng()
    a = rng.random((32, 48))
    assert psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-9)  # MSE 1e-4 at peak 1
    assert psnr(a, a) == float("inf")


def test_psnr_shave_and_mask_select_pixels():
    a = np.zeros((10, 10))
    b = np.zeros((10, 10))
    b[0, :] = 1.0  # error only in the top row
    assert psnr(a, b, shave=1) == float("inf")
    mask = np.ones((10, 10), bool)
    mask[0] = False
    assert psnr(a, b, mask=mask) == float("inf")
    assert psnr(a, b) == pytest.approx(10.0)  # MSE 0.1


def test_luma_is_bt601_studio_range():
    assert luma_bt601(np.zeros(3)) == pytest.approx(16 / 255)
    assert luma_bt601(np.ones(3)) == pytest.approx(235 / 255)
    rgb = np.random.default_rng().random((4, 5, 3))
    assert psnr_y(rgb, rgb) == float("inf")


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((2, 2)), np.zeros((2, 3)))


# --- SSIM, flow error and temporal stability ---

def _photo():
    from skimage import data

    return (data.astronaut()[100:196, 150:278] / 255.0).astype(np.float32)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    from clarifx.metrics import ssim, ssim_y

    a = _photo()
    b = np.clip(a + np.random.default_rng(0).normal(0, 0.05, a.shape), 0, 1)
    ya, yb = luma_bt601(a), luma_bt601(b)
    expected = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=1.0)
    assert ssim(ya, yb) == pytest.approx(expected, abs=1e-6)
    assert ssim_y(a, b) == pytest.approx(expected, abs=1e-6) and expected < 0.9
    assert ssim(ya, ya) == pytest.approx(1.0)


def test_endpoint_error_of_known_offsets():
    from clarifx.metrics import endpoint_error

    truth = np.zeros((8, 10, 2))
    flow = truth.copy()
    flow[:4] = (3.0, 4.0)  # error 5 on the top half
    flow[4:6] = (0.6, 0.0)  # 0.6 on a quarter
    assert endpoint_error(flow, truth) == pytest.approx((5 * 0.5 + 0.6 * 0.25, 0.5))
    mask = np.zeros((8, 10), bool)
    mask[4:] = True
    assert endpoint_error(flow, truth, mask=mask) == pytest.approx((0.3, 1.0))


def test_e_warp_counts_only_visible_pixels_and_measures_change():
    """A whole-pixel pan (exact under warping): e_warp is 0 for the true frames, grows by exactly a
    luma offset added to the current frame, and ignores garbage where the mask says occluded."""
    from clarifx.metrics import e_warp

    big = _photo()
    prev, cur = big[:, 3:99], big[:, 0:96]  # cur[y, x] = prev[y, x - 3]
    flow = np.zeros(cur.shape[:2] + (2,), np.float32)
    flow[..., 0] = -3.0
    occluded = np.zeros(cur.shape[:2], bool)
    occluded[:, :3] = True  # what prev does not show
    assert e_warp(prev, cur, flow, occluded=occluded) == pytest.approx(0.0, abs=1e-6)
    brighter = np.clip(cur + 0.02, 0, None)
    assert e_warp(prev, brighter, flow, occluded=occluded) == pytest.approx(0.02 * 219 / 255, rel=1e-4)
    assert e_warp(prev, cur, flow) == pytest.approx(0.0, abs=1e-6)  # flow leaving the frame never counts
    poisoned = cur.copy()
    poisoned[40:50, 40:50] = 1e6  # say, an object that appears
    occluded[40:50, 40:50] = True
    assert e_warp(prev, poisoned, flow, occluded=occluded) == pytest.approx(0.0, abs=1e-6)
    assert e_warp(prev, poisoned, flow) > 1e3  # without the mask the garbage counts
    with pytest.raises(ValueError, match="do not match"):
        e_warp(prev, cur, flow[:, :10])


def test_flicker_follows_mean_luminance():
    from clarifx.metrics import flicker, mean_luma

    base = _photo() * 0.8
    gains = [0.0, 0.02, -0.01, 0.03]
    frames = [base + g for g in gains]
    assert mean_luma(frames) == pytest.approx(luma_bt601(base).mean() + np.array(gains) * 219 / 255)
    assert flicker(frames) == pytest.approx(np.abs(np.diff(gains)).mean() * 219 / 255, rel=1e-6)
    assert flicker(frames, frames) == pytest.approx(0.0, abs=1e-12)  # the reference's own changes do not count


def test_tof_is_zero_for_the_reference_and_grows_with_jitter():
    from clarifx.metrics import tof

    big = _photo()
    ref = [big[:, 2 * t: 2 * t + 96] for t in range(4)]  # a steady pan
    jitter = [big[:, 2 * t + (3 if t % 2 else 0): 2 * t + 96 + (3 if t % 2 else 0)] for t in range(4)]
    assert tof(ref, ref) == 0.0
    assert tof(jitter, ref) > 1.5
