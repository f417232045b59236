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
