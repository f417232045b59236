"""SR speed on the CPU: frames per second for 1280x720 -> 2560x1440, against the waifu2x photo model
under the ncnn CPU runtime on the same frame, measured in one run; and what int8 costs in quality.
The x4 models make the same 2560x1440 output from 640x360 in the same rounds.

    python benchmarks/speed.py [--frames 3] [--threads N] [--size 512]

The methods take turns (one call each per round, `--frames` rounds, best kept), so a machine shared
with other work slows them alike. int8 is fast-x2 quantized by clarifx.models.precision (as the nodes'
`precision=int8` runs it); its quality loss is measured on photos/misc by DESIGN.md's protocol (HR long
side --size, Y-PSNR, 2-pixel border shaved) against fp32 in the same run, without the photo its ranges
were calibrated on (astronaut).

On a CUDA GPU it also times 1920x1080 -> 3840x2160 (the x4 models from 960x540) in fp32, fp16 and bf16,
each model prepared as the nodes prepare it (clarifx.models.precision): "on GPU" with the frame already
in GPU memory (the OFX CUDA render path), "CPU frame" through run_tiled from and back to a CPU frame
(the CLI's path, transfers included). Beside each half-precision row: its largest difference from the
fp32 output and its Y-PSNR against it. Target (issue 4): fast-x2 in fp16 at >= 60 fps. `--gpu-only`
skips the CPU table.

Needs ../shared/scripts/fetch-data for the waifu2x ncnn files and photos/misc, and `pip install ncnn`
(not for --gpu-only).
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


def gpu_table(frame: np.ndarray, runs: int, device: str = "cuda", size: tuple[int, int] = (1080, 1920)) -> None:
    """The CUDA rows (see the module docstring) from `frame`, the CPU test frame, resampled to `size`
    (device "cpu" and a small size run the same code where there is no GPU)."""
    import torch

    from clarifx import kernels, models
    from clarifx.metrics import psnr_y
    from clarifx.models import precision
    from clarifx.models.tiling import run_tiled

    h, w = size
    big = kernels.resample(frame, (h, w), filter="bicubic").clip(0, 1)
    cpu = {2: torch.from_numpy(big).permute(2, 0, 1)[None].contiguous()}
    cpu[4] = torch.nn.functional.interpolate(cpu[2], size=(h // 2, w // 2), mode="area")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn) -> float:  # best seconds per call over `runs` calls, after two warm-ups
        fn(), fn()
        best = float("inf")
        for _ in range(runs):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - start)
        return best

    where = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"\n{w}x{h} -> {2 * w}x{2 * h} on {where}, best of {runs}")
    print(f"{'model':<14}{'precision':>10}{'on GPU fps':>12}{'CPU frame fps':>15}{'max |d| vs fp32':>17}"
          f"{'Y-PSNR vs fp32':>16}")
    for name in [m for m in SR_MODELS if m in models.CARDS]:
        net, reference = models.load(name), None
        for prec in ("fp32", "fp16", "bf16"):
            module, dtype = precision.prepare(net, prec, device)
            x = cpu[net.scale]
            on_gpu = x.to(device, dtype)
            with precision.context(prec, device), torch.inference_mode():
                gpu_s = timed(lambda: module(on_gpu))
                cpu_s = timed(lambda: run_tiled(module, x, scale=net.scale, tile=None, overlap=0, border=net.border,
                                                device=device, dtype=dtype))
                out = module(on_gpu).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            if reference is None:
                reference, diff, db = out, "", ""
            else:
                diff = f"{np.abs(out - reference).max():.2e}"
                db = f"{psnr_y(out, reference):.1f} dB"
            print(f"{name:<14}{prec:>10}{1 / gpu_s:>12.1f}{1 / cpu_s:>15.1f}{diff:>17}{db:>16}")
            if device == "cuda":
                torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="timed runs per method (best is kept)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--size", type=int, default=512, help="HR long side for the int8 quality check")
    parser.add_argument("--gpu-only", action="store_true", help="only the CUDA table")
    parser.add_argument("--gpu-runs", type=int, default=20, help="timed calls per CUDA row (best is kept)")
    args = parser.parse_args()

    import torch

    from clarifx import kernels, models
    from clarifx.models import precision
    from clarifx.models.tiling import run_tiled

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    from skimage import data

    frame = kernels.resample(data.astronaut().astype(np.float32) / 255, (720, 1280), filter="bicubic")
    frame = np.clip(frame + rng.normal(0, 0.002, frame.shape).astype(np.float32), 0, 1)
    if torch.cuda.is_available():
        gpu_table(frame, args.gpu_runs)
    elif args.gpu_only:
        raise SystemExit("--gpu-only: torch sees no CUDA GPU here")
    if args.gpu_only:
        return
    import ncnn

    x = torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous()
    inputs = {2: x, 4: torch.nn.functional.interpolate(x, size=(360, 640), mode="area")}

    folder = DATA / "models" / "waifu2x-photo"
    if not models.installed_path("waifu2x-photo-x2").exists():
        models.install("waifu2x-photo-x2", folder)
    methods = {}
    for name in [m for m in SR_MODELS if m in models.CARDS] + ["waifu2x-photo-x2"]:
        net, _ = precision.prepare(models.load(name), "fp32", "cpu")  # as the nodes run it (channels-last)
        methods[f"{name} (clarifx, torch fp32)"] = lambda net=net: run_tiled(
            net, inputs[net.scale], scale=net.scale, tile=None, overlap=0, border=net.border)
    int8, _ = precision.prepare(models.load(INT8), "int8", "cpu")
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
