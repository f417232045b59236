"""Seeded synthetic degradation pipeline: (LR, HR) pairs from a clean HR crop.

Images are float32 (H, W, 3) numpy arrays in [0, 1] (display-referred, the models' working space).
Everything is deterministic from an integer seed: the same (image, config, seed) gives bit-identical
output (each stage draws from one ``numpy.random.Generator``; JPEG and x264/x265 run single-threaded).

Stages (each with a probability ``p`` and parameter ranges in the config dict):

- ``blur``: one kernel chosen by ``weights`` among
  ``gaussian`` (anisotropic, sigma_x/sigma_y/rotation), ``disc`` (defocus), ``motion`` (line of
  length L at an angle) and ``airy`` (diffraction PSF ``(2 J1(r')/r')^2``, first zero at ``radius``);
  applied by 2-D convolution with reflect padding; kernels sum to 1.
- ``resize``: a random scale in ``scale_range`` with a filter drawn from ``filters``
  (``box`` = area, ``bilinear``, ``bicubic``) through ``clarifx.kernels.resample``.
- ``noise``: Gaussian (``sigma_range`` in 0..255 units, colour or grey with ``gray_prob``) or
  Poisson (``peak_range``: photons at signal 1.0; variance = signal / peak).
- ``jpeg``: JPEG at a quality in ``quality_range`` (PIL, 4:2:0), in memory.
- ``video``: H.264 (libx264) or H.265 (libx265) at a CRF in ``crf_range`` through PyAV: a clip of
  ``frames`` copies of the image is encoded (yuv420p, in memory) and the last decoded frame returned.

``degrade(hr, cfg, seed, scale)`` runs two rounds in the Real-ESRGAN order
(round 1: blur -> resize -> noise -> jpeg; round 2: blur -> resize -> noise -> jpeg/video), then a final
resize to exactly ``(h // scale, w // scale)`` (filter drawn from the final stage's ``filters``) and
a final compression stage. The result is clipped to [0, 1] after each stage (as a camera/codec would).
"""
from __future__ import annotations

import copy
import io
import math

import numpy as np

# -------------------------------------------------------------------------------------------------
# kernels


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x - r, y - r


def _odd(n: float) -> int:
    n = int(math.ceil(n))
    return n if n % 2 == 1 else n + 1


def gaussian_kernel(sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, size: int | None = None) -> np.ndarray:
    """Anisotropic Gaussian, axes sigma_x, sigma_y rotated by theta (radians)."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    size = size or _odd(2 * math.ceil(3 * max(sigma_x, sigma_y)) + 1)
    x, y = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def disc_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Defocus: a uniform disc of the given radius (pixels), antialiased by supersampling."""
    size = _odd(2 * radius + 1)
    ss = supersample
    x, y = _grid(size * ss)
    inside = (x ** 2 + y ** 2) <= (radius * ss) ** 2
    k = inside.reshape(size, ss, size, ss).mean(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def motion_kernel(length: float, angle: float, supersample: int = 8) -> np.ndarray:
    """Linear motion blur: a line segment of `length` pixels at `angle` (radians), antialiased."""
    size = _odd(length + 2)
    k = np.zeros((size * supersample, size * supersample), np.float64)
    n = max(2, int(length * supersample * 4))
    t = np.linspace(-length / 2, length / 2, n)
    c = (size * supersample - 1) / 2.0
    xs = np.round(c + t * math.cos(angle) * supersample).astype(int)
    ys = np.round(c - t * math.sin(angle) * supersample).astype(int)
    np.add.at(k, (ys, xs), 1.0)
    k = k.reshape(size, supersample, size, supersample).sum(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def airy_kernel(radius: float, size: int | None = None, supersample: int = 4) -> np.ndarray:
    """Lens diffraction PSF: Airy pattern (2 J1(z)/z)^2 with its first dark ring at `radius` pixels."""
    from scipy.special import j1

    size = size or _odd(4 * radius + 3)
    x, y = _grid(size * supersample)
    r = np.hypot(x, y) / supersample
    z = 3.8317059702075125 * r / radius  # first zero of J1
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(z < 1e-8, 1.0, (2 * j1(z) / z) ** 2)
    k = k.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D convolution of each channel with reflect padding (output size = input size)."""
    import torch
    import torch.nn.functional as F

    kh, kw = kernel.shape
    t = torch.from_numpy(np.ascontiguousarray(img, np.float32)).permute(2, 0, 1)[:, None]
    ph, pw = kh // 2, kw // 2
    mode = "reflect" if (ph < img.shape[0] and pw < img.shape[1]) else "replicate"
    t = F.pad(t, (pw, pw, ph, ph), mode=mode)
    k = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1], np.float32))[None, None]
    out = F.conv2d(t, k)
    return out[:, 0].permute(1, 2, 0).contiguous().numpy()


# -------------------------------------------------------------------------------------------------
# stages (each takes an image and explicit parameters; the pipeline draws the parameters)


def resize(img: np.ndarray, size: tuple[int, int], filter: str = "bicubic") -> np.ndarray:
    from clarifx.kernels import resample

    if filter == "area":
        filter = "box"
    return resample(np.ascontiguousarray(img, np.float32), (int(size[0]), int(size[1])), filter=filter)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator, gray: bool = False) -> np.ndarray:
    """Additive Gaussian noise, sigma in [0, 1] units."""
    shape = img.shape[:2] + (1,) if gray else img.shape
    return (img + rng.normal(0.0, sigma, size=shape).astype(np.float32)).astype(np.float32)


def poisson_noise(img: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: photon counts ~ Poisson(signal * peak), back to signal units (variance = signal / peak)."""
    lam = np.clip(img, 0.0, None).astype(np.float64) * peak
    return (rng.poisson(lam) / peak).astype(np.float32)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip (PIL, 4:2:0 chroma subsampling) in memory."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_to_u8(img)).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255.0


def video(img: np.ndarray, codec: str = "libx264", crf: int = 23, frames: int = 3, preset: str = "medium") -> np.ndarray:
    """H.264/H.265 round trip through PyAV: encode `frames` copies as a clip (yuv420p), return the last
    decoded frame."""
    return video_clip([img] * frames, codec, crf, preset)[-1]


def video_clip(images: list[np.ndarray], codec: str = "libx264", crf: int = 23, preset: str = "medium") -> list[np.ndarray]:
    """H.264/H.265 round trip of a clip through PyAV (yuv420p, the encoder's own GOP and frame types):
    every decoded frame, in order. Odd or small sizes are edge-padded and cropped back."""
    import av

    h, w = images[0].shape[:2]
    # even (4:2:0) and not tiny: x265 corrupted its heap on moving clips smaller than its 64x64 CTU
    least = 64 if codec == "libx265" else 16
    eh, ew = max(least, h + h % 2), max(least, w + w % 2)
    # A raw elementary stream, not a container: Matroska's muxer now and then refused one of these
    # packets (EINVAL, seen twice in an hour of training) and the raw stream has no timestamps to check.
    fmt = {"libx264": "h264", "libx265": "hevc"}.get(codec)
    if fmt is None:
        raise ValueError(f"codec: expected libx264 or libx265, got {codec!r}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        st = out.add_stream(codec, rate=24)
        st.width, st.height = ew, eh
        st.pix_fmt = "yuv420p"
        st.thread_count = 1
        opts = {"crf": str(int(crf)), "preset": preset}
        if codec == "libx264":
            opts["threads"] = "1"
        else:
            opts["x265-params"] = "log-level=none:pools=none:frame-threads=1"
        st.options = opts
        for i, img in enumerate(images):
            frame = av.VideoFrame.from_ndarray(np.pad(_to_u8(img), ((0, eh - h), (0, ew - w), (0, 0)), mode="edge"),
                                               format="rgb24")
            frame.pts = i
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf, mode="r", format=fmt) as inp:
        decoded = [fr.to_ndarray(format="rgb24")[:h, :w].astype(np.float32) / 255.0 for fr in inp.decode(video=0)]
    if len(decoded) != len(images):
        raise RuntimeError(f"video: {codec} round trip gave {len(decoded)} frames for {len(images)}")
    return decoded


# -------------------------------------------------------------------------------------------------
# configuration and pipeline

_ROUND1 = {
    "blur": {"p": 1.0, "weights": {"gaussian": 0.55, "disc": 0.15, "motion": 0.15, "airy": 0.15},
             "sigma_range": [0.2, 3.0], "disc_radius_range": [0.5, 3.0], "motion_length_range": [1.0, 8.0],
             "airy_radius_range": [0.5, 2.5]},
    "resize": {"p": 1.0, "scale_range": [0.15, 1.5], "filters": ["box", "bilinear", "bicubic"]},
    "noise": {"p": 1.0, "gaussian_prob": 0.5, "sigma_range": [1.0, 30.0], "gray_prob": 0.4,
              "peak_range": [20.0, 1000.0]},
    "jpeg": {"p": 1.0, "quality_range": [30, 95]},
}
_ROUND2 = {
    "blur": {**_ROUND1["blur"], "p": 0.8, "sigma_range": [0.2, 1.5], "disc_radius_range": [0.5, 1.5],
             "motion_length_range": [1.0, 4.0], "airy_radius_range": [0.5, 1.5]},
    "resize": {"p": 1.0, "scale_range": [0.3, 1.2], "filters": ["box", "bilinear", "bicubic"]},
    "noise": {**_ROUND1["noise"], "sigma_range": [1.0, 25.0], "peak_range": [50.0, 1000.0]},
    "jpeg": {"p": 0.5, "quality_range": [30, 95]},
}
DEFAULT_CONFIG = {
    "rounds": [_ROUND1, _ROUND2],
    "final_resize": {"filters": ["box", "bilinear", "bicubic"]},
    "final_compress": {"p": 0.8, "video_prob": 0.4, "codecs": ["libx264", "libx265"], "crf_range": [18, 38],
                       "frames": 3, "quality_range": [30, 95]},
}
"""Real-ESRGAN-like two-round recipe (ranges in pixels of the current image; noise sigma in 0..255)."""

LIGHT_CONFIG = {
    "noise": {"p": 0.3, "gaussian_prob": 0.7, "sigma_range": [0.5, 4.0], "gray_prob": 0.5, "peak_range": [200.0, 3000.0]},
    "jpeg": {"p": 0.2, "quality_range": [75, 95]},
}
"""Light degradations for fidelity/fast SR models (applied to the LR at its size)."""


def _u(rng, r):
    return float(rng.uniform(r[0], r[1]))


def random_kernel(bcfg: dict, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    names = list(bcfg["weights"])
    w = np.array([bcfg["weights"][n] for n in names], np.float64)
    kind = names[int(rng.choice(len(names), p=w / w.sum()))]
    if kind == "gaussian":
        k = gaussian_kernel(_u(rng, bcfg["sigma_range"]), _u(rng, bcfg["sigma_range"]), _u(rng, [0, math.pi]))
    elif kind == "disc":
        k = disc_kernel(_u(rng, bcfg["disc_radius_range"]))
    elif kind == "motion":
        k = motion_kernel(_u(rng, bcfg["motion_length_range"]), _u(rng, [0, math.pi]))
    elif kind == "airy":
        k = airy_kernel(_u(rng, bcfg["airy_radius_range"]))
    else:
        raise ValueError(f"blur.weights: unknown kernel {kind!r}")
    return kind, k


def _noise(img, ncfg, rng):
    def gaussian(x):
        sigma = _u(rng, ncfg["sigma_range"]) / 255.0
        return gaussian_noise(x, sigma, rng, gray=rng.random() < ncfg.get("gray_prob", 0.0))

    def poisson(x):
        return poisson_noise(x, _u(rng, ncfg["peak_range"]), rng)

    if rng.random() < ncfg.get("both_prob", 0.0):  # shot noise, then read noise: what a sensor gives
        return gaussian(poisson(img))
    return gaussian(img) if rng.random() < ncfg.get("gaussian_prob", 0.5) else poisson(img)


def _compress(img, ccfg, rng):
    if rng.random() < ccfg.get("video_prob", 0.0):
        codecs = ccfg.get("codecs", ["libx264"])
        codec = codecs[int(rng.integers(len(codecs)))]
        crf = int(rng.integers(ccfg["crf_range"][0], ccfg["crf_range"][1] + 1))
        return video(img, codec, crf, frames=int(ccfg.get("frames", 3)))
    q = int(rng.integers(ccfg["quality_range"][0], ccfg["quality_range"][1] + 1))
    return jpeg(img, q)


def apply_round(img: np.ndarray, rcfg: dict, rng: np.random.Generator, *, min_size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """One round: blur -> resize -> noise -> jpeg/video, each stage present in rcfg and drawn with its p."""
    out = np.asarray(img, np.float32)
    if "blur" in rcfg and rng.random() < rcfg["blur"]["p"]:
        out = convolve(out, random_kernel(rcfg["blur"], rng)[1])
    if "resize" in rcfg and rng.random() < rcfg["resize"]["p"]:
        s = _u(rng, rcfg["resize"]["scale_range"])
        f = rcfg["resize"]["filters"][int(rng.integers(len(rcfg["resize"]["filters"])))]
        size = (max(min_size[0], round(out.shape[0] * s)), max(min_size[1], round(out.shape[1] * s)))
        out = resize(out, size, f)
    out = np.clip(out, 0.0, 1.0)
    if "noise" in rcfg and rng.random() < rcfg["noise"]["p"]:
        out = np.clip(_noise(out, rcfg["noise"], rng), 0.0, 1.0)
    if "jpeg" in rcfg and rng.random() < rcfg["jpeg"]["p"]:
        out = _compress(out, rcfg["jpeg"], rng)
    if "video" in rcfg and rng.random() < rcfg["video"]["p"]:
        out = _compress(out, {**rcfg["video"], "video_prob": 1.0}, rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def degrade(hr: np.ndarray, cfg: dict | None = None, seed: int = 0, scale: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Two-round degradation of an HR crop -> (LR, HR); LR has exactly (h // scale, w // scale)."""
    cfg = copy.deepcopy(DEFAULT_CONFIG if cfg is None else cfg)
    hr = np.ascontiguousarray(hr, np.float32)
    if hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"hr: expected (H, W, 3), got {hr.shape}")
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if h < 1 or w < 1:
        raise ValueError(f"hr: {hr.shape[:2]} is smaller than scale {scale}")
    rng = np.random.default_rng(seed)
    out = hr
    for rcfg in cfg.get("rounds", []):
        out = apply_round(out, rcfg, rng, min_size=(max(8, h // 2), max(8, w // 2)))
    fr = cfg.get("final_resize", {"filters": ["bicubic"]})
    f = fr["filters"][int(rng.integers(len(fr["filters"])))]
    out = np.clip(resize(out, (h, w), f), 0.0, 1.0)
    fc = cfg.get("final_compress")
    if fc and rng.random() < fc.get("p", 1.0):
        out = _compress(out, fc, rng)
    assert out.shape[:2] == (h, w)
    return np.clip(out, 0.0, 1.0).astype(np.float32), hr


def degrade_light(lr: np.ndarray, cfg: dict | None = None, seed: int = 0) -> np.ndarray:
    """Light degradations (one round, no resize) applied to an already downscaled LR image."""
    rcfg = {k: v for k, v in (LIGHT_CONFIG if cfg is None or cfg is True else cfg).items() if k != "resize"}
    return apply_round(lr, rcfg, np.random.default_rng(seed))


EVAL_CONDITIONS = {
    "clean": lambda img, rng: img,
    "noise15": lambda img, rng: np.clip(gaussian_noise(img, 15 / 255, rng), 0.0, 1.0),
    "noise10+poisson": lambda img, rng: np.clip(gaussian_noise(poisson_noise(img, 1000.0, rng), 10 / 255, rng), 0.0, 1.0),
    "jpeg20": lambda img, rng: jpeg(img, 20),
    "h264-crf35": lambda img, rng: video(img, "libx264", 35),
}
"""The fixed degradations models are evaluated under (benchmarks/quality.py, model cards): Gaussian
sigma in 0..255 units; Poisson with 1000 photons at full scale; JPEG (PIL, 4:2:0); H.264 (x264, CRF)."""
