"""clarifx.train.degrade: every stage does what it claims, measured; the pipeline is seeded."""
import math

import numpy as np
import pytest

pytest.importorskip("torch")
from clarifx.metrics import psnr_y  # noqa: E402
from clarifx.train import degrade as d  # noqa: E402


def _photo(size=256):
    from skimage import data

    img = data.astronaut()[:size, 128:128 + size].astype(np.float32) / 255.0
    return np.ascontiguousarray(img)


def _noise_img(h=96, w=96, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_same_seed_same_output_different_seed_differs():
    img = _photo(96)
    a, _ = d.degrade(img, seed=7, scale=2)
    b, _ = d.degrade(img, seed=7, scale=2)
    c, _ = d.degrade(img, seed=8, scale=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_video_compression_is_deterministic_for_both_codecs():
    img = _photo(64)
    for codec in ("libx264", "libx265"):
        assert np.array_equal(d.video(img, codec, 30), d.video(img, codec, 30))


@pytest.mark.parametrize("shape,scale", [((67, 45), 4), ((64, 64), 2), ((50, 31), 3)])
def test_lr_has_requested_size_exactly(shape, scale):
    hr = _noise_img(*shape)
    for seed in range(3):
        lr, hr_out = d.degrade(hr, seed=seed, scale=scale)
        assert lr.shape == (shape[0] // scale, shape[1] // scale, 3)
        assert lr.dtype == np.float32 and lr.min() >= 0 and lr.max() <= 1
        assert hr_out is not None and hr_out.shape == hr.shape


@pytest.mark.parametrize("make", [
    lambda: d.gaussian_kernel(1.3, 0.6, 0.7),
    lambda: d.disc_kernel(2.2),
    lambda: d.motion_kernel(6.0, 0.4),
    lambda: d.airy_kernel(1.5),
])
def test_blur_scales_white_noise_variance_by_sum_of_squared_taps(make):
    # For i.i.d. input, var(k * x) = sum(k^2) var(x): the high-frequency energy drops by exactly that.
    k = make()
    assert abs(k.sum() - 1) < 1e-5
    x = _noise_img(256, 256, seed=1)
    y = d.convolve(x, k)
    m = k.shape[0]
    ratio = y[m:-m, m:-m].var() / x.var()
    expected = float((k.astype(np.float64) ** 2).sum())
    assert ratio == pytest.approx(expected, rel=0.08)


def test_gaussian_blur_attenuates_a_sinusoid_by_its_transfer_function():
    sigma, f = 1.5, 0.125  # cycles per pixel
    x = np.arange(256)
    row = 0.5 + 0.25 * np.cos(2 * np.pi * f * x)
    img = np.repeat(np.repeat(row[None, :, None], 64, 0), 3, 2).astype(np.float32)
    y = d.convolve(img, d.gaussian_kernel(sigma))[32, 32:-32, 0]
    amp = 2 * np.mean((y - 0.5) * np.cos(2 * np.pi * f * x[32:-32]))
    assert amp / 0.25 == pytest.approx(math.exp(-2 * math.pi ** 2 * sigma ** 2 * f ** 2), rel=0.02)


def test_airy_first_dark_ring_at_radius():
    k = d.airy_kernel(3.0, size=21, supersample=1)
    c = k[10]
    assert c[10] == c.max()
    assert c[13] < 1e-3 * c[10]  # first zero 3 px from the centre


def test_gaussian_noise_std_matches_sigma_on_flat_image():
    rng = np.random.default_rng(0)
    flat = np.full((256, 256, 3), 0.5, np.float32)
    for sigma in (2 / 255, 10 / 255, 25 / 255):
        out = d.gaussian_noise(flat, sigma, rng)
        assert out.std() == pytest.approx(sigma, rel=0.03)
        assert abs(out.mean() - 0.5) < 0.01 * sigma + 1e-4
    grey = d.gaussian_noise(flat, 0.05, rng, gray=True)
    assert np.array_equal(grey[..., 0], grey[..., 2])


def test_poisson_variance_scales_with_signal():
    rng = np.random.default_rng(0)
    peak = 200.0
    v = {}
    for s in (0.1, 0.3, 0.6):
        out = d.poisson_noise(np.full((256, 256, 3), s, np.float32), peak, rng)
        assert out.mean() == pytest.approx(s, rel=0.02)
        v[s] = out.var()
        assert v[s] == pytest.approx(s / peak, rel=0.05)
    assert v[0.6] / v[0.1] == pytest.approx(6.0, rel=0.08)


def _blockiness(img):
    y = img @ np.array([0.299, 0.587, 0.114], np.float32)
    dx = np.abs(np.diff(y, axis=1))  # dx[:, i] = y[:, i+1] - y[:, i]
    edge = dx[:, 7::8].mean()
    inner = np.delete(dx, np.s_[7::8], axis=1).mean()
    return edge / inner


def test_jpeg_q20_is_blocky_on_the_8x8_grid_and_q95_is_not():
    img = _photo(256)
    b_src, b20, b95 = _blockiness(img), _blockiness(d.jpeg(img, 20)), _blockiness(d.jpeg(img, 95))
    assert b20 > 1.25 * b95
    assert b95 < 1.1 * b_src + 0.05
    assert psnr_y(d.jpeg(img, 95), img) > psnr_y(d.jpeg(img, 20), img) + 6


def test_h264_crf35_loses_psnr_against_crf15():
    img = _photo(128)
    p15 = psnr_y(d.video(img, "libx264", 15), img)
    p35 = psnr_y(d.video(img, "libx264", 35), img)
    assert p15 > p35 + 5
    assert psnr_y(d.video(img, "libx265", 35), img) < p15


def test_video_handles_odd_sizes():
    img = _noise_img(33, 21)
    assert d.video(img, "libx264", 23).shape == (33, 21, 3)
    assert d.video(_noise_img(7, 5), "libx265", 23).shape == (7, 5, 3)


@pytest.mark.parametrize("f", ["area", "bilinear", "bicubic"])
def test_resize_filters_give_exact_size(f):
    out = d.resize(_noise_img(40, 30), (17, 11), f)
    assert out.shape == (17, 11, 3)


def test_light_degradation_keeps_size_and_is_seeded():
    img = _photo(64)
    a = d.degrade_light(img, {"noise": {"p": 1.0, "sigma_range": [3, 3], "gaussian_prob": 1.0}}, seed=1)
    b = d.degrade_light(img, {"noise": {"p": 1.0, "sigma_range": [3, 3], "gaussian_prob": 1.0}}, seed=1)
    assert a.shape == img.shape and np.array_equal(a, b)
    assert 0.5 / 255 < np.abs(a - img).mean() < 5 / 255
