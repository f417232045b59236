"""Render benchmark: a 1080p clip through Read -> Resize x2 -> Write, as `clarifx upscale` runs it.

Prints frames per second and peak memory of the render (run in a child process, so its peak RSS is its
own), and, measured in the same run, the time each stage takes alone: start-up, decode, colour
conversion, resize, encode. When
decode and encode overlap with processing, the pipeline takes less than the sum of its stages.

    python benchmarks/render.py [--frames 300] [--out .mp4|.mov|.%04d.exr]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data"))


def source_clip(frames: int) -> Path:
    """A 1920x1080 H.264 clip panning across a real photograph (made once, then cached)."""
    from clarifx.footage import open_sink
    from clarifx.frame import REC709, Frame
    from clarifx.imageio import read_image

    path = DATA / "bench" / f"pan1080_{frames}.mp4"
    if path.exists():
        return path
    photos = sorted((DATA / "photos" / "train").glob("*.jpg"), key=lambda p: p.stat().st_size)
    if not photos:
        sys.exit(f"no photos in {DATA}/photos/train: run ../shared/scripts/fetch-data first")
    from clarifx import kernels

    photo = read_image(photos[-1])
    scale = max(1080 / photo.shape[0], (1920 + frames) / photo.shape[1])
    photo = kernels.resample(photo, (round(photo.shape[0] * scale) + 1, round(photo.shape[1] * scale) + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_sink(path, fps=25) as sink:
        for n in range(frames):
            x = n * (photo.shape[1] - 1920) // max(frames - 1, 1)
            pixels = np.ascontiguousarray(photo[:1080, x:x + 1920, :3])
            sink.write(Frame(pixels, ("R", "G", "B"), REC709, number=n + 1))
    return path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", default=".mp4", help="output kind: .mp4, .mov or .%%04d.exr")
    args = parser.parse_args()

    from clarifx import kernels
    from clarifx.footage import open_sink, open_source

    clip = source_clip(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"out{args.out}"
        cmd = [sys.executable, "-m", "clarifx.cli", "upscale", str(clip), str(out), "--scale", "2", "--quiet"]
        pipeline = timed(lambda: subprocess.run(cmd, check=True))
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        # Each stage alone, on the same frames.
        with open_source(clip) as src:
            one = src.read(1)

            def decode():
                for n in range(1, args.frames + 1):
                    src.read(n)

            decode = timed(decode)
        big = kernels.resample(one.pixels, (2160, 3840), filter="lanczos3")
        def resize_all():
            for _ in range(args.frames):
                kernels.resample(one.pixels, (2160, 3840), filter="lanczos3")

        resize = timed(resize_all)
        from clarifx import colour
        from clarifx.frame import LINEAR

        def convert():  # what the graph does around Resize: to linear light at 1080p, back at 2160p
            for _ in range(args.frames):
                colour.convert(one.replace(pixels=one.pixels.copy()), LINEAR)
                colour.convert(one.replace(pixels=big.copy(), colorspace=LINEAR), one.colorspace)

        colour_s = timed(convert)
        startup = timed(lambda: subprocess.run([sys.executable, "-c", "import clarifx.graph"], check=True))
        alone = Path(tmp) / f"alone{args.out}"

        def encode():
            with open_sink(alone, fps=25) as sink:
                for n in range(1, args.frames + 1):
                    sink.write(one.replace(pixels=big, number=n))

        encode_s = timed(encode)

    n = args.frames
    print(f"Read -> Resize x2 (lanczos) -> Write {args.out}: {n} frames 1920x1080 -> 3840x2160, {os.cpu_count()} cores")
    print(f"{'stage':<28}{'seconds':>10}{'frames/s':>10}")
    stages = (("start-up (import)", startup), ("decode", decode), ("colour (OCIO, both ways)", colour_s),
              ("resize", resize), ("encode", encode_s))
    total = sum(s for _, s in stages)
    for name, s in (*stages, ("sum of stages", total), ("pipeline (clarifx upscale)", pipeline)):
        print(f"{name:<28}{s:>10.1f}{n / s:>10.2f}")
    print(f"pipeline / sum of stages: {pipeline / total:.2f} (below 1: stages overlap)")
    print(f"peak RSS of the render: {peak_mib:.0f} MiB (target < 1536)")


if __name__ == "__main__":
    main()
