"""`clarifx demo`: the main job on the bundled sample, with measured results.

Reduce the sample, restore it with the embedded model (fast-x2, trained here) and with each resampling
filter, and measure each against the original; add sensor-like noise to the sample and clean it with the
embedded restore-x1. It also warps the sample by a known rotation and back, and adds film grain.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np

from . import kernels
from .imageio import read_image, write_image
from .metrics import psnr_y

SAMPLE = "astronaut.png"  # NASA portrait of Eileen Collins (public domain), cropped to 256x256
MODEL = "fast-x2"         # the embedded default models
CLEANER = "restore-x1"

# A fine, slightly clumped 35mm-like grain: colour channels share most of the green-led luma grain.
DEMO_GRAIN = kernels.GrainParams(
    strength=[[(0.0, 0.035), (0.4, 0.05), (1.0, 0.02)]] * 3,
    ar_lag=1,
    ar_coeffs=[[0.1, 0.25, 0.1, 0.25]] * 3,
    ar_luma=[0.0, 0.7, 0.7],
)


def sample_image() -> np.ndarray:
    with resources.as_file(resources.files("clarifx") / "data" / SAMPLE) as path:
        return read_image(path)


def _restorer(model: str):
    """An embedded model as a function on an sRGB (H, W, 3) image, as the restore nodes run it. Loaded
    before the clock starts, so the times printed are the model's alone."""
    from . import models

    net = models.load(model)  # a clear error when torch is missing
    import torch

    def run(image: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            return net(x)[0].permute(1, 2, 0).numpy()

    return run


def rotation_flow(h: int, w: int, degrees: float) -> np.ndarray:
    """(H, W, 2) backward flow that rotates an image by `degrees` about its centre."""
    t = np.deg2rad(degrees)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    sx = np.cos(t) * (x - cx) - np.sin(t) * (y - cy) + cx
    sy = np.sin(t) * (x - cx) + np.cos(t) * (y - cy) + cy
    return np.stack([sx - x, sy - y], axis=-1).astype(np.float32)


def run(out_dir: str | Path = "clarifx-demo") -> dict[str, float]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    original = sample_image()[:, :, :3]
    h, w, _ = original.shape
    print(f"clarifx demo: {SAMPLE} ({w}x{h}), bundled sample")
    results: dict[str, float] = {}

    lowres = kernels.resample(original, scale=0.5, filter="bicubic")
    print("  x2 upscale of an antialiased bicubic reduction, Y-PSNR against the original:")
    upscaled = {}
    for f in kernels.FILTERS:
        start = time.perf_counter()
        upscaled[f] = np.clip(kernels.resample(lowres, (h, w), filter=f), 0.0, 1.0)
        ms = (time.perf_counter() - start) * 1e3
        results[f"psnr_{f}"] = psnr_y(upscaled[f], original, shave=2)
        print(f"    {f:<9} {results[f'psnr_{f}']:6.2f} dB   ({ms:.1f} ms)")
    restore = _restorer(MODEL)
    start = time.perf_counter()
    upscaled[MODEL] = np.clip(restore(lowres), 0.0, 1.0)
    ms = (time.perf_counter() - start) * 1e3
    results[f"psnr_{MODEL}"] = psnr_y(upscaled[MODEL], original, shave=2)
    print(f"    {MODEL:<9} {results[f'psnr_{MODEL}']:6.2f} dB   ({ms:.1f} ms, embedded model)")
    print(f"    {MODEL} gains {results[f'psnr_{MODEL}'] - results['psnr_bicubic']:+.2f} dB over bicubic and "
          f"{results[f'psnr_{MODEL}'] - results['psnr_lanczos3']:+.2f} dB over lanczos3")

    from .train.degrade import EVAL_CONDITIONS

    noisy = EVAL_CONDITIONS["noise10+poisson"](original, np.random.default_rng(0))
    clean = _restorer(CLEANER)
    start = time.perf_counter()
    cleaned = np.clip(clean(noisy), 0.0, 1.0)
    ms = (time.perf_counter() - start) * 1e3
    results["psnr_noisy"] = psnr_y(noisy, original, shave=2)
    results[f"psnr_{CLEANER}"] = psnr_y(cleaned, original, shave=2)
    print(f"  noise (Gaussian 10/255 + Poisson, {results['psnr_noisy']:.2f} dB) cleaned by {CLEANER}: "
          f"{results[f'psnr_{CLEANER}']:.2f} dB ({results[f'psnr_{CLEANER}'] - results['psnr_noisy']:+.2f} dB, "
          f"{ms:.1f} ms, embedded model)")

    flow = rotation_flow(h, w, 5.0)
    rotated, _ = kernels.warp(original, flow, interp="bicubic", border="zero")
    back, valid = kernels.warp(rotated, rotation_flow(h, w, -5.0), interp="bicubic", border="zero")
    inner = kernels.warp(valid, flow, border="zero")[0] > 0.5  # pixels whose round trip stayed inside
    results["psnr_rotation_round_trip"] = psnr_y(back, original, mask=((valid > 0.5) & inner)[:, :, 0])
    print(f"  warp: rotate 5 degrees and back (bicubic), Y-PSNR over valid pixels: "
          f"{results['psnr_rotation_round_trip']:.2f} dB")

    grainy = kernels.grain(upscaled[MODEL], DEMO_GRAIN, seed=7, frame=1, clip=(0.0, 1.0))
    results["grain_std"] = float(np.std(grainy - upscaled[MODEL]))
    print(f"  grain: seed 7, frame 1, added noise std {results['grain_std']:.4f}")

    nearest = kernels.resample(lowres, (h, w), filter="box")
    gap = np.ones((h, 4, 3), np.float32)
    comparison = np.concatenate([nearest, gap, upscaled[MODEL], gap, original], axis=1)
    denoised = np.concatenate([noisy, gap, cleaned, gap, original], axis=1)
    for name, img in [("lowres", lowres), ("upscaled_lanczos3", upscaled["lanczos3"]),
                      (f"upscaled_{MODEL}", upscaled[MODEL]), ("rotated", rotated), ("grain", grainy),
                      ("comparison", comparison), ("noisy", noisy), (f"cleaned_{CLEANER}", cleaned),
                      ("comparison_noise", denoised)]:
        write_image(out / f"{name}.png", img)
    print(f"  wrote {out}/{{lowres,upscaled_lanczos3,upscaled_{MODEL},rotated,grain,comparison}}.png "
          f"(comparison: nearest | {MODEL} | original) and {{noisy,cleaned_{CLEANER},comparison_noise}}.png "
          f"(noisy | {CLEANER} | original)")
    return results
