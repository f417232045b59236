"""SR speed on the CPU: frames per second for 1280x720 -> 2560x1440, against the waifu2x photo model
under the ncnn CPU runtime on the same frame, measured in one run; and what int8 costs in quality.
The x4 models make the same 2560x1440 output from 640x360 in the same rounds.

    python benchmarks/speed.py [--frames 3] [--threads N] [--size 512]

The methods take turns (one call each per round, `--frames` rounds, best kept), so a machine shared
with other work slows them alike. int8 is fast-x2 quantized by clarifx.models.precision (as the nodes'
`precision=int8` runs it); its quality loss is measured on photos/misc by DESIGN.md's protocol (HR long
side --size, Y-PSNR, 2-pixel border shaved) against fp32 in the same run, without the photo its ranges
were calibrated on (astronaut).

Needs ../shared/scripts/fetch-data for the waifu2x ncnn files and photos/misc, and `pip install ncnn`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

INT8 = "fast-x2"  # the model also timed and scored in int8
SR_MODELS = ("fast-x2", "fidelity-x2", "fast-x4", "fidelity-x4")  # the embedded ones that exist are timed
DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data"))


def interleaved_best(methods: dict, runs: int) -> dict:
    """Best time of each method over `runs` rounds, the methods taking turns within a round."""
    for fn in methods.values():
        fn()  # warm-up
    times = {name: [] for name in methods}
    for _ in range(runs):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def int8_quality(name: str, size: int) -> tuple[float, float, int]:
    """Mean Y-PSNR of model `name` in fp32 and in int8 on photos/misc (without the calibration photo),
    scored by the trainer's evaluate_photos (the model cards' protocol)."""
    from clarifx import models
    from clarifx.models.precision import quantize_int8
    from clarifx.train.__main__ import evaluate_photos
    from quality import eval_paths  # benchmarks/quality.py

    paths = [p for p in eval_paths() if Path(p).stem != "astronaut"]
    e = evaluate_photos(quantize_int8(models.load(name)), paths, 2, size, "clean", [[name]])
    return e[name], e["model"], e["n"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="timed runs per method (best is kept)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--size", type=int, default=512, help="HR long side for the int8 quality check")
    args = parser.parse_args()

    import ncnn
    import torch

    from clarifx import kernels, models
    from clarifx.models.precision import quantize_int8
    from clarifx.models.tiling import run_tiled

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    from skimage import data

    frame = kernels.resample(data.astronaut().astype(np.float32) / 255, (720, 1280), filter="bicubic")
    frame = np.clip(frame + rng.normal(0, 0.002, frame.shape).astype(np.float32), 0, 1)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous()
    inputs = {2: x, 4: torch.nn.functional.interpolate(x, size=(360, 640), mode="area")}

    folder = DATA / "models" / "waifu2x-photo"
    if not models.installed_path("waifu2x-photo-x2").exists():
        models.install("waifu2x-photo-x2", folder)
    methods = {}
    for name in [m for m in SR_MODELS if m in models.CARDS] + ["waifu2x-photo-x2"]:
        net = models.load(name)
        methods[f"{name} (clarifx, torch fp32)"] = lambda net=net: run_tiled(
            net, inputs[net.scale], scale=net.scale, tile=None, overlap=0, border=net.border)
    int8 = quantize_int8(models.load(INT8))
    methods[f"{INT8} (clarifx, torch int8)"] = \
        lambda: run_tiled(int8, x, scale=2, tile=None, overlap=0, device="cpu", dtype=torch.float32)

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
    methods["waifu2x-photo-x2 (ncnn CPU runtime)"] = run_ncnn
    rows = interleaved_best(methods, args.frames)

    reference = rows["waifu2x-photo-x2 (ncnn CPU runtime)"]
    print(f"1280x720 -> 2560x1440 on the CPU, {args.threads} threads, best of {args.frames} interleaved rounds")
    print(f"{'method':<40}{'s/frame':>9}{'fps':>8}{'vs ncnn waifu2x':>17}")
    for name, s in rows.items():
        print(f"{name:<40}{s:>9.2f}{1 / s:>8.2f}{reference / s:>16.2f}x")
    fp32_s, int8_s = rows[f"{INT8} (clarifx, torch fp32)"], rows[f"{INT8} (clarifx, torch int8)"]
    fp32_db, int8_db, n = int8_quality(INT8, args.size)
    print(f"{INT8} int8: {fp32_s / int8_s:.2f}x the fp32 speed (target 1.5x); Y-PSNR {int8_db:.2f} dB against "
          f"{fp32_db:.2f} dB in fp32 on {n} photos of photos/misc, a loss of {fp32_db - int8_db:.3f} dB "
          f"(target <= 0.15)")


if __name__ == "__main__":
    main()
