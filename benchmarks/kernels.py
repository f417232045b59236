"""Native kernels against the obvious alternatives, measured side by side in one run.

    python benchmarks/kernels.py [--repeat N] [--threads T]

CPU (1920x1080 RGB float32): warp vs torch grid_sample and OpenCV remap; fused upsample vs the unfused
torch sequence; resample vs torch antialiased interpolate and OpenCV resize; grain frames per second.
CUDA (3840x2160, when a GPU is present): warp and fused upsample as a share of the measured
device-to-device copy bandwidth, and against the unfused torch sequence.
Each timing is the median of interleaved repeats, so the contenders see the same machine state, and
each of our calls follows a torch or OpenCV call, as it does in a pipeline that mixes models and kernels.
Targets come from issue 2; a ratio is faster-is-higher (their time / ours).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from clarifx import kernels

try:
    import cv2
except ImportError:  # OpenCV is a test extra; its rows are skipped without it
    cv2 = None


def interleaved(contenders: dict, repeat: int) -> dict[str, float]:
    """Median seconds per call of each callable, timed round-robin after one warm-up call each."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, times: dict[str, float], ours: str, target: tuple[str, float] | None = None) -> None:
    print(f"\n{title}")
    for name, t in times.items():
        ratio = "" if name == ours else f"   clarifx is {t / times[ours]:.2f}x as fast"
        print(f"  {name:<44} {t * 1e3:8.2f} ms{ratio}")
    if target:
        name, want = target
        got = times[name] / times[ours]
        print(f"  target: >= {want}x {name}: {'met' if got >= want else 'NOT met'} ({got:.2f}x)")


def base_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return x, y


def smooth_flow(h: int, w: int) -> np.ndarray:
    """(2, H, W) camera-like motion: a 2 degree rotation with a 3% zoom about the centre, plus ripples."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy, t, z = (w - 1) / 2, (h - 1) / 2, np.deg2rad(2.0), 1.03
    sx = z * (np.cos(t) * (x - cx) - np.sin(t) * (y - cy)) + cx + 2 * np.sin(y / 37)
    sy = z * (np.sin(t) * (x - cx) + np.cos(t) * (y - cy)) + cy + 2 * np.cos(x / 53)
    return np.stack([sx - x, sy - y]).astype(np.float32)


def bench_warp(repeat: int, rng: np.random.Generator) -> None:
    h, w = 1080, 1920
    image = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32))
    image_hwc = image[0].permute(1, 2, 0).contiguous().numpy()
    gx, gy = base_grid(h, w)
    flows = {
        "smooth camera-like flow": torch.from_numpy(smooth_flow(h, w))[None],
        "random per-pixel flow, N(0, 3 px): cache-hostile worst case":
            torch.from_numpy(rng.normal(0, 3, (1, 2, h, w)).astype(np.float32)),
    }
    for label, flow in flows.items():
        flow_hwc = flow[0].permute(1, 2, 0).contiguous().numpy()

        def grid_sample(mode="bilinear"):  # the flow has to become a normalised sampling grid first
            grid = torch.stack([(gx + flow[:, 0]) * (2 / (w - 1)) - 1, (gy + flow[:, 1]) * (2 / (h - 1)) - 1], -1)
            return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)

        contenders = {
            "clarifx.warp NCHW (bilinear, clamp, + mask)": lambda: kernels.warp(image, flow),
            "clarifx.warp HWC (bilinear, clamp, + mask)": lambda: kernels.warp(image_hwc, flow_hwc),
            "torch grid_sample (grid from flow)": grid_sample,
            "clarifx.warp NCHW (bicubic, clamp, + mask)": lambda: kernels.warp(image, flow, interp="bicubic"),
            "torch grid_sample bicubic (grid from flow)": lambda: grid_sample("bicubic"),
        }
        if cv2 is not None:
            xs, ys = gx.numpy(), gy.numpy()
            contenders["OpenCV remap HWC (maps from flow)"] = lambda: cv2.remap(
                image_hwc, xs + flow_hwc[..., 0], ys + flow_hwc[..., 1], cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE)
        times = interleaved(contenders, repeat)
        bilinear = {k: t for k, t in times.items() if "bicubic" not in k}
        bicubic = {k: t for k, t in times.items() if "bicubic" in k}
        report(f"warp {w}x{h} RGB float32, {label}, bilinear", bilinear,
               "clarifx.warp NCHW (bilinear, clamp, + mask)",
               ("torch grid_sample (grid from flow)", 1.5) if label.startswith("smooth") else None)
        report(f"warp {w}x{h} RGB float32, {label}, bicubic", bicubic, "clarifx.warp NCHW (bicubic, clamp, + mask)")


def unfused_upsample(features, base, scale, mode):
    up = F.interpolate(base, scale_factor=scale, mode=mode, align_corners=False)
    return (F.pixel_shuffle(features, scale) + up).clamp_(0, 1)


def bench_fused_upsample(repeat: int, rng: np.random.Generator) -> None:
    s, h, w = 2, 540, 960  # 1920x1080 output
    base = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32))
    features = torch.from_numpy(rng.normal(0, 0.1, (1, 3 * s * s, h, w)).astype(np.float32))
    for mode in ("bilinear", "bicubic"):
        times = interleaved({
            f"clarifx.fused_upsample ({mode})": lambda: kernels.fused_upsample(features, base, s, filter=mode,
                                                                               clamp=(0, 1)),
            "torch pixel_shuffle + interpolate + add + clamp": lambda: unfused_upsample(features, base, s, mode),
        }, repeat)
        report(f"fused upsample x{s} to {w * s}x{h * s} RGB float32, {mode}", times,
               f"clarifx.fused_upsample ({mode})", ("torch pixel_shuffle + interpolate + add + clamp", 2.0))


def bench_resample(repeat: int, rng: np.random.Generator) -> None:
    h, w = 1080, 1920
    image = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32))
    image_hwc = image[0].permute(1, 2, 0).contiguous().numpy()
    for label, (oh, ow) in (("up x2", (2 * h, 2 * w)), ("down x0.5", (h // 2, w // 2)), ("down x0.3", (324, 576))):
        out = torch.empty(1, 3, oh, ow)
        contenders = {
            "clarifx.resample lanczos3": lambda: kernels.resample(image, (oh, ow), filter="lanczos3"),
            "clarifx.resample bicubic": lambda: kernels.resample(image, (oh, ow), filter="bicubic"),
            # A fresh output is first-touched page by page (~25 ms for 100 MB here); every contender
            # but this row pays that, so this row shows the kernel alone.
            "clarifx.resample bicubic, into out=": lambda: kernels.resample(image, (oh, ow), filter="bicubic",
                                                                           out=out),
            "torch interpolate bicubic antialias": lambda: F.interpolate(image, size=(oh, ow), mode="bicubic",
                                                                         antialias=True, align_corners=False),
        }
        if cv2 is not None:
            up = oh > h
            contenders["OpenCV resize lanczos4 HWC" if up else "OpenCV resize area HWC"] = lambda: cv2.resize(
                image_hwc, (ow, oh), interpolation=cv2.INTER_LANCZOS4 if up else cv2.INTER_AREA)
            contenders["OpenCV resize cubic HWC (no antialias)"] = lambda: cv2.resize(
                image_hwc, (ow, oh), interpolation=cv2.INTER_CUBIC)
        times = interleaved(contenders, repeat)
        report(f"resample {w}x{h} -> {ow}x{oh} ({label}) RGB float32", times, "clarifx.resample bicubic")


def bench_grain(repeat: int, rng: np.random.Generator) -> None:
    from clarifx.demo import DEMO_GRAIN

    image = rng.random((1080, 1920, 3), dtype=np.float32)
    out = np.empty_like(image)
    frame = iter(range(10**9))  # a new frame each call: templates are rebuilt every time
    times = interleaved({"clarifx.grain (lag 1, 3 channels)": lambda: kernels.grain(image, DEMO_GRAIN, frame=next(frame),
                                                                                      out=out)}, repeat)
    fps = 1.0 / times["clarifx.grain (lag 1, 3 channels)"]
    lag3 = kernels.GrainParams(strength=[[(0.0, 0.04), (1.0, 0.02)]] * 3, ar_lag=3,
                               ar_coeffs=[[0.02] * 24] * 3, ar_luma=[0.0, 0.5, 0.5])
    t3 = interleaved({"lag3": lambda: kernels.grain(image, lag3, frame=next(frame), out=out)}, repeat)["lag3"]
    print("\ngrain 1920x1080 RGB float32 (templates rebuilt each frame)")
    print(f"  lag 1: {fps:7.1f} fps   lag 3: {1 / t3:7.1f} fps   target: >= 50 fps: "
          f"{'met' if min(fps, 1 / t3) >= 50 else 'NOT met'}")


def bench_float16(repeat: int, rng: np.random.Generator) -> None:
    """float16 storage against float32 for each CPU kernel (outputs preallocated, so only the kernel counts)."""
    from clarifx.demo import DEMO_GRAIN

    h, w = 1080, 1920
    flow = rng.normal(0, 3, (1, 2, h, w)).astype(np.float32)
    print("\nfloat16 against float32 on the CPU, 1920x1080 RGB (float16 time / float32 time)")
    for name, run in {
        "warp (bilinear)": lambda img, out, small, features, up: kernels.warp(img, flow, out=out),
        "fused upsample x2 (bilinear)": lambda img, out, small, features, up: kernels.fused_upsample(
            features, small, 2, out=out),
        "resample to 3840x2160 (bicubic)": lambda img, out, small, features, up: kernels.resample(
            img, (2 * h, 2 * w), filter="bicubic", out=up),
        "grain (lag 1)": lambda img, out, small, features, up: kernels.grain(img, DEMO_GRAIN, out=out),
    }.items():
        args = {}
        for dtype in ("float32", "float16"):
            img = rng.random((1, 3, h, w)).astype(dtype)
            small = np.ascontiguousarray(img[:, :, ::2, ::2])
            args[dtype] = (img, np.empty_like(img), small, np.repeat(small, 4, axis=1),
                           np.empty((1, 3, 2 * h, 2 * w), dtype))
        times = interleaved({d: (lambda a=a: run(*a)) for d, a in args.items()}, repeat)
        print(f"  {name:<34} {times['float32'] * 1e3:7.2f} ms -> {times['float16'] * 1e3:7.2f} ms"
              f"   {times['float16'] / times['float32']:.2f}x")


def bench_cuda(repeat: int) -> None:
    dev = torch.device("cuda")
    h, w = 2160, 3840

    def cuda_time(fn) -> float:
        fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        samples = []
        for _ in range(repeat):
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        return statistics.median(samples)

    big = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(big)
    copy_bw = 2 * big.numel() / cuda_time(lambda: dst.copy_(big))
    print(f"\nCUDA {torch.cuda.get_device_name()}: device-to-device copy {copy_bw / 1e9:.0f} GB/s")

    image = torch.rand(1, 3, h, w, device=dev)
    flow = torch.randn(1, 2, h, w, device=dev) * 3
    out, mask = torch.empty_like(image), torch.empty(1, 1, h, w, device=dev)
    t = cuda_time(lambda: kernels.warp(image, flow, out=out, mask=mask, check_finite=False))
    moved = (image.numel() + flow.numel() + out.numel() + mask.numel()) * 4
    gx, gy = (g.to(dev) for g in base_grid(h, w))
    t_gs = cuda_time(lambda: F.grid_sample(image, torch.stack([(gx + flow[:, 0]) * (2 / (w - 1)) - 1,
                                                              (gy + flow[:, 1]) * (2 / (h - 1)) - 1], -1),
                                           mode="bilinear", padding_mode="border", align_corners=True))
    print(f"  warp {w}x{h} RGB: {t * 1e3:.3f} ms, {moved / t / 1e9:.0f} GB/s = {moved / t / copy_bw:.0%} of copy "
          f"(target >= 70%); {t_gs / t:.2f}x grid_sample (target >= 2x)")

    s = 2
    base = torch.rand(1, 3, h // s, w // s, device=dev)
    features = torch.randn(1, 3 * s * s, h // s, w // s, device=dev)
    up = torch.empty(1, 3, h, w, device=dev)
    t = cuda_time(lambda: kernels.fused_upsample(features, base, s, clamp=(0, 1), out=up))
    moved = (base.numel() + features.numel() + up.numel()) * 4
    t_unfused = cuda_time(lambda: unfused_upsample(features, base, s, "bilinear"))
    print(f"  fused upsample x{s} to {w}x{h} RGB: {t * 1e3:.3f} ms, {moved / t / 1e9:.0f} GB/s = "
          f"{moved / t / copy_bw:.0%} of copy (target >= 70%); {t_unfused / t:.2f}x unfused torch (target >= 2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per contender (median taken)")
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        if cv2 is not None:
            cv2.setNumThreads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", OpenCV {cv2.__version__}" if cv2 is not None else ", OpenCV absent"))
    rng = np.random.default_rng(0)
    bench_warp(args.repeat, rng)
    bench_fused_upsample(args.repeat, rng)
    bench_resample(args.repeat, rng)
    bench_grain(args.repeat, rng)
    bench_float16(args.repeat, rng)
    if torch.cuda.is_available() and kernels.cuda_available():
        bench_cuda(args.repeat)
    else:
        print("\nCUDA: no GPU here; the CUDA rows run where one is present")


if __name__ == "__main__":
    main()
