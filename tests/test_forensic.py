"""Forensic mode: project() lands on {x : D(x) = lr} at the point nearest the network output; provenance().

D is the native antialiased resampler (clarifx.kernels.resample). The "network output" here is a
deliberately inventive upscale of a real photo crop: Lanczos upscale, unsharp-masked, with added
high-frequency texture, so that D(sr) is visibly not lr before the projection.
"""

import hashlib
import json

import numpy as np
import pytest

import clarifx
from clarifx import kernels
from clarifx.models import forensic

skdata = pytest.importorskip("skimage.data")

LIMIT = 0.5 / 255          # the forensic promise: rms(D(x) - lr) <= 0.5/255


def _rms(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a)))


def _photo(name: str) -> np.ndarray:
    return getattr(skdata, name)().astype(np.float32) / 255.0


def _crop(img: np.ndarray, h: int, w: int, rng) -> np.ndarray:
    y = int(rng.integers(0, img.shape[0] - h + 1))
    x = int(rng.integers(0, img.shape[1] - w + 1))
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def _inventive(lr: np.ndarray, s: int, rng) -> np.ndarray:
    """Lanczos upscale, sharpened, plus invented texture: what a hallucinating network might output."""
    h, w = lr.shape[:2]
    up = np.asarray(kernels.resample(lr, (h * s, w * s), filter="lanczos3"))
    soft = np.asarray(kernels.resample(kernels.resample(up, (h, w), filter="bilinear"), (h * s, w * s),
                                       filter="bilinear"))
    texture = rng.normal(0.0, 0.06, up.shape).astype(np.float32)
    return (up + 1.2 * (up - soft) + texture).astype(np.float32)


def _case(photo: str, s: int, kernel: str, seed: int, h: int = 37, w: int = 51, channels: int = 3):
    """(sr, lr): lr = D(HR crop) with odd sizes, sr = an inventive upscale of lr."""
    rng = np.random.default_rng(seed)
    hr = _crop(_photo(photo), h * s, w * s, rng)
    if channels == 4:  # an alpha that varies (a soft matte), handled like colour
        yy, xx = np.mgrid[0:h * s, 0:w * s]
        alpha = (0.5 + 0.5 * np.sin(xx / 7.0) * np.cos(yy / 5.0)).astype(np.float32)
        hr = np.concatenate([hr, alpha[..., None]], axis=2)
    lr = np.asarray(kernels.resample(hr, (h, w), filter=kernel))
    return _inventive(lr, s, rng), lr


def _d(x, lr, kernel):
    return np.asarray(kernels.resample(x, lr.shape[:2], filter=kernel))


@pytest.mark.parametrize("kernel", ["bicubic", "box"])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_projection_reproduces_input(s, kernel):
    for seed, (photo, h, w) in enumerate([("astronaut", 37, 51), ("chelsea", 29, 41)]):
        sr, lr = _case(photo, s, kernel, seed=10 * s + seed, h=h, w=w)
        before = _rms(_d(sr, lr, kernel) - lr)
        assert before > 4 * LIMIT, "the test image must start out inconsistent"
        x, rms = forensic.project(sr, lr, scale=s, kernel=kernel)
        assert x.shape == sr.shape and x.dtype == np.float32
        after = _rms(_d(x, lr, kernel) - lr)          # measured here, not taken from project()
        assert after <= LIMIT and after <= 0.25 / 255
        assert rms == pytest.approx(after, rel=1e-3, abs=1e-9)
        assert _rms(x - sr) < _rms(sr - np.asarray(kernels.resample(lr, sr.shape[:2], filter="bicubic")))


def test_one_step_is_exact_to_float32():
    sr, lr = _case("astronaut", 2, "bicubic", seed=3)
    x, rms = forensic.project(sr, lr, scale=2, kernel="bicubic", iterations=1, tol=0.0)
    assert rms < 1e-6          # the pseudo-inverse step lands on the constraint in one go


def test_rgba_and_torch_nchw():
    torch = pytest.importorskip("torch")
    cases = [_case("chelsea", 3, "bicubic", seed=s, h=23, w=31, channels=4) for s in (1, 2)]
    sr = torch.from_numpy(np.stack([c[0] for c in cases]).transpose(0, 3, 1, 2).copy())
    lr = torch.from_numpy(np.stack([c[1] for c in cases]).transpose(0, 3, 1, 2).copy())
    x, rms = forensic.project(sr, lr, scale=3, kernel="bicubic")
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (2, 4, 69, 93)
    d = kernels.resample(x, (23, 31), filter="bicubic")
    assert _rms((d - lr).numpy()) <= LIMIT
    assert _rms((d - lr)[:, 3].numpy()) <= LIMIT        # alpha too
    for n, (sr_n, lr_n) in enumerate(cases):            # same answer as one HWC image at a time
        x_n, _ = forensic.project(sr_n, lr_n, scale=3, kernel="bicubic")
        np.testing.assert_allclose(x[n].numpy().transpose(1, 2, 0), x_n, atol=1e-5)


def test_highlights_are_not_clipped():
    sr, lr = _case("astronaut", 2, "box", seed=5, h=21, w=25)
    sr, lr = sr * 6.0, lr * 6.0                         # scene-linear values well above 1.0
    x, _ = forensic.project(sr, lr, scale=2, kernel="box")
    assert x.max() > 1.5
    assert _rms(_d(x, lr, "box") - lr) <= LIMIT


def test_consistent_output_is_returned_unchanged():
    sr, _ = _case("chelsea", 2, "bicubic", seed=7)
    lr = _d(sr, np.empty((37, 51, 3)), "bicubic")       # sr already satisfies D(sr) = lr
    x, rms = forensic.project(sr, lr, scale=2, kernel="bicubic")
    assert rms <= 1e-7
    assert np.max(np.abs(x - sr)) <= 1e-6
    assert x is not sr and not np.shares_memory(x, sr)


def test_idempotent():
    sr, lr = _case("astronaut", 3, "bicubic", seed=8)
    x1, _ = forensic.project(sr, lr, scale=3, kernel="bicubic", tol=0.0)
    x2, _ = forensic.project(x1, lr, scale=3, kernel="bicubic")
    assert np.max(np.abs(x2 - x1)) <= 1e-6
    x3, _ = forensic.project(x1, lr, scale=3, kernel="bicubic", tol=0.0, iterations=5)   # forced to step
    assert np.max(np.abs(x3 - x1)) <= 1e-5


def _dense_downscale(hs: int, ws: int, h: int, w: int, kernel: str) -> np.ndarray:
    """The (h*w, hs*ws) matrix of the native D, read off by resampling every unit image (no separability assumed)."""
    eye = np.eye(hs * ws, dtype=np.float32).reshape(hs * ws, 1, hs, ws)
    out = np.asarray(kernels.resample(eye, (h, w), filter=kernel))
    return out.reshape(hs * ws, h * w).T.astype(np.float64)


@pytest.mark.parametrize("kernel", ["bicubic", "box"])
def test_matches_exact_least_change_solution(kernel):
    # x* = argmin ||x - sr|| s.t. A x = lr, solved densely in float64 from the native kernel's own matrix.
    s, h, w = 3, 7, 5
    sr, lr = _case("chelsea", s, kernel, seed=11, h=h, w=w)
    a = _dense_downscale(h * s, w * s, h, w, kernel)
    for c in range(3):
        v = sr[..., c].ravel().astype(np.float64)
        lam = np.linalg.solve(a @ a.T, lr[..., c].ravel() - a @ v)
        want = (v + a.T @ lam).reshape(h * s, w * s)
        x, _ = forensic.project(sr, lr, scale=s, kernel=kernel, tol=0.0)   # the fixed point, not the stop rule
        np.testing.assert_allclose(x[..., c], want, atol=2e-5)


def test_box_correction_is_blockwise_constant():
    # For the box kernel at an integer scale D is the s x s block mean, and the least change adds to
    # every pixel of a block the block's residual: x = sr + nearest_upscale(lr - blockmean(sr)).
    s = 4
    sr, lr = _case("astronaut", s, "box", seed=12, h=19, w=27)
    blocks = sr.reshape(19, s, 27, s, 3).mean(axis=(1, 3))
    want = sr + np.repeat(np.repeat(lr - blocks, s, axis=0), s, axis=1)
    x, _ = forensic.project(sr, lr, scale=s, kernel="box", tol=0.0)
    np.testing.assert_allclose(x, want, atol=2e-5)


@pytest.mark.parametrize("s", [2, 4])
def test_change_is_minimal_among_consistent_outputs(s):
    sr, lr = _case("chelsea", s, "bicubic", seed=13)
    x, _ = forensic.project(sr, lr, scale=s, kernel="bicubic", tol=0.0)
    # Naive alternatives that also reproduce lr: a bicubic upscale of lr, and classic iterative
    # back-projection (Irani & Peleg: back-project the residual with a bicubic upscale), each made exactly
    # consistent by a final projection.
    naive = np.asarray(kernels.resample(lr, sr.shape[:2], filter="bicubic"))
    ibp = sr.copy()
    for _ in range(10):
        ibp = ibp + np.asarray(kernels.resample(lr - _d(ibp, lr, "bicubic"), sr.shape[:2], filter="bicubic"))
    dist = _rms(x - sr)
    for alt in (naive, ibp):
        alt, _ = forensic.project(alt, lr, scale=s, kernel="bicubic", tol=0.0)
        assert _rms(_d(alt, lr, "bicubic") - lr) <= LIMIT
        d_alt = _rms(alt - sr)
        assert dist < d_alt
        # x - sr is orthogonal to every consistent direction: Pythagoras holds for any consistent alt.
        assert d_alt ** 2 == pytest.approx(dist ** 2 + _rms(alt - x) ** 2, rel=1e-3)
    assert _rms(naive - sr) > 1.5 * dist    # the naive upscale throws away much of sr


def test_bad_arguments_name_the_argument():
    sr, lr = _case("astronaut", 2, "bicubic", seed=14, h=9, w=11)
    with pytest.raises(ValueError, match="sr"):
        forensic.project(sr[:-1], lr, scale=2)
    with pytest.raises(ValueError, match="sr"):
        forensic.project(sr, lr, scale=3)
    with pytest.raises(ValueError, match="kernel"):
        forensic.project(sr, lr, scale=2, kernel="gaussian")
    bad = sr.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="sr"):
        forensic.project(bad, lr, scale=2)


def test_provenance(tmp_path):
    weights = tmp_path / "fidelity-x2.safetensors"
    payload = np.random.default_rng(0).bytes(3 * 2**20 + 17)   # more than one read block
    weights.write_bytes(payload)
    params = {"scale": 2, "kernel": "box", "tile": 256, "precision": "fp32"}
    meta = forensic.provenance("fidelity", weights, params)
    assert meta["clarifx:weights_sha256"] == hashlib.sha256(payload).hexdigest()
    assert meta["clarifx:model"] == "fidelity"
    assert json.loads(meta["clarifx:params"]) == params
    assert meta["clarifx:version"] == clarifx.__version__
    assert meta["clarifx:mode"] == "forensic"
    assert meta["clarifx:kernel"] == "box"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert forensic.provenance("fidelity", str(weights), {"scale": 2})["clarifx:kernel"] == "bicubic"
    with pytest.raises(FileNotFoundError):
        forensic.provenance("fidelity", tmp_path / "missing.safetensors", params)
