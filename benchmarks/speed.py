"""SR speed on the CPU: frames per second for 1280x720 -> 2560x1440, against the waifu2x photo model
under the ncnn CPU runtime on the same frame, measured in one run.

    python benchmarks/speed.py [--frames 3] [--threads N]

Needs ../shared/scripts/fetch-data for the waifu2x ncnn files and `pip install ncnn`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data"))


def best_of(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="timed runs per method (best is kept)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import ncnn
    import torch

    from clarifx import kernels, models
    from clarifx.models.tiling import run_tiled

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    from skimage import data

    frame = kernels.resample(data.astronaut().astype(np.float32) / 255, (720, 1280), filter="bicubic")
    frame = np.clip(frame + rng.normal(0, 0.002, frame.shape).astype(np.float32), 0, 1)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous()

    folder = DATA / "models" / "waifu2x-photo"
    if not models.installed_path("waifu2x-photo-x2").exists():
        models.install("waifu2x-photo-x2", folder)
    rows = {}
    for name in ("fast-x2", "waifu2x-photo-x2"):
        net = models.load(name)
        rows[f"{name} (clarifx, torch fp32)"] = best_of(
            lambda: run_tiled(net, x, scale=2, tile=None, overlap=0, border=net.border), args.frames)

    # The reference: waifu2x under ncnn's own CPU runtime, input padded by its 7-pixel border.
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = args.threads
    net.load_param(str(folder / "scale2.0x_model.param"))
    net.load_model(str(folder / "scale2.0x_model.bin"))
    padded = np.ascontiguousarray(np.pad(frame, ((7, 7), (7, 7), (0, 0)), mode="edge").transpose(2, 0, 1))

    def run_ncnn():
        ex = net.create_extractor()
        ex.input("Input1", ncnn.Mat(padded))
        return np.array(ex.extract("Eltwise4")[1])

    assert run_ncnn().shape == (3, 1440, 2560)
    rows["waifu2x-photo-x2 (ncnn CPU runtime)"] = best_of(run_ncnn, args.frames)

    reference = rows["waifu2x-photo-x2 (ncnn CPU runtime)"]
    print(f"1280x720 -> 2560x1440 on the CPU, {args.threads} threads, best of {args.frames}")
    print(f"{'method':<40}{'s/frame':>9}{'fps':>8}{'vs ncnn waifu2x':>17}")
    for name, s in rows.items():
        print(f"{name:<40}{s:>9.2f}{1 / s:>8.2f}{reference / s:>16.2f}x")


if __name__ == "__main__":
    main()
