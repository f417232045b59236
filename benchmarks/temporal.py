"""Flow accuracy and temporal stability, per-frame against temporal processing, in one run (issue 5).

    python benchmarks/temporal.py                    # everything (about 15 minutes on 2 cores)
    python benchmarks/temporal.py --only flow sr     # some sections: flow, denoise, sr, clips, speed

Sequences are made from real photos by known motion (clarifx.synthetic: pan, zoom, rotate, a region
moving over a panning background), so flow and occlusions are known exactly. Each frame is degraded
independently. Stability: E_warp = mean |Y(O_t) - Y(warp(O_{t-1}))| over non-occluded pixels (x255),
with the true flow on synthetic sequences and the source's own flow (DIS on the source frames,
forward-backward occlusions) on the real clips of ../shared/scripts/fetch-data; PSNR/SSIM on BT.601 Y.
The nodes run exactly as a graph runs them (frames_needed, then render).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from clarifx import flow, metrics, synthetic
from clarifx.frame import SRGB, Frame
from clarifx.nodes import temporal as tnodes
from clarifx.nodes.restore import Denoise, SuperResolution

DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data"))
PHOTOS = ("astronaut", "coffee", "chelsea")


def run_node(cls, frames: list[np.ndarray], ts, **params) -> dict[int, np.ndarray]:
    """Node `cls` over `frames` (numbered from 0) as the render engine drives it; outputs for `ts`."""
    node = cls()
    p = {q.name: q.default for q in cls.params}
    p.update(params)
    node._range = (0, len(frames) - 1) if hasattr(node, "_range") else None
    out = {}
    for t in ts:
        need = node.frames_needed(p, t, 0)
        inputs = [{n: Frame(frames[n], ("R", "G", "B"), SRGB, number=n) for n in need}]
        out[t] = np.clip(node.render(p, t, inputs).pixels, 0, 1)
    getattr(node, "close", lambda: None)()
    return out


def stability(outs: dict, flows: dict, occl: dict, truth: list | None = None, shave: int = 0) -> dict:
    """E_warp (x255), PSNR, SSIM (against truth) and flicker over consecutive output frames."""
    ts = sorted(outs)
    ew = [metrics.e_warp(outs[t - 1], outs[t], flows[t], occluded=occl[t]) * 255 for t in ts[1:]]
    refs = None if truth is None else [truth[t] for t in ts]  # the scene's own brightness changes do not count
    row = {"ewarp": float(np.mean(ew)), "flicker": metrics.flicker([outs[t] for t in ts], refs) * 255}
    if truth is not None:
        row["psnr"] = float(np.mean([metrics.psnr_y(outs[t], truth[t], shave=shave) for t in ts]))
        row["ssim"] = float(np.mean([metrics.ssim_y(outs[t], truth[t], shave=shave) for t in ts]))
    return row


def table(title: str, rows: dict[str, dict], base: str | None = None) -> None:
    print(f"\n### {title}\n")
    keys = [k for k in ("psnr", "ssim", "ewarp", "flicker") if any(k in r for r in rows.values())]
    head = {"psnr": "Y-PSNR dB", "ssim": "Y-SSIM", "ewarp": "E_warp x255", "flicker": "flicker x255"}
    print("| method | " + " | ".join(head[k] for k in keys) + (" | E_warp vs " + base if base else "") + " |")
    print("|---" * (len(keys) + 1 + bool(base)) + "|")
    for name, r in rows.items():
        cells = [f"{r[k]:.2f}" if k != "ssim" else f"{r[k]:.4f}" for k in keys]
        if base:
            cells.append(f"{100 * (r['ewarp'] / rows[base]['ewarp'] - 1):+.0f}%")
        print(f"| {name} | " + " | ".join(cells) + " |")


def mean_rows(rows_list: list[dict[str, dict]]) -> dict[str, dict]:
    return {k: {m: float(np.mean([r[k][m] for r in rows_list])) for m in rows_list[0][k]} for k in rows_list[0]}


# --- sections ---

def section_flow(args):
    photos = [synthetic.photo(p) for p in PHOTOS]
    print("\n### Flow: end-point error (px) / share under 1 px / ms per pair, 256x192, non-occluded pixels\n")
    methods = [("ultrafast", {}), ("fast", {}), ("medium", {}), ("fine", {}), ("medium, warm start", {"warm": True}),
               ("pyramid (torch + warp kernel)", {"method": "pyramid"})]
    print("| motion | speed | " + " | ".join(m for m, _ in methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for speed in (1.0, 3.0):
        for motion in synthetic.MOTIONS:
            seqs = [synthetic.KnownMotion(p, motion, frames=6, speed=speed) for p in photos]
            cells = []
            for name, opt in methods:
                e, u, spent, pairs = [], [], 0.0, 0
                for s in seqs:
                    prev = None
                    for t in range(5):
                        start = time.perf_counter()
                        f = flow.estimate(s.frames[t], s.frames[t + 1], method=opt.get("method", "auto"),
                                          preset=name.split(",")[0] if "method" not in opt else "medium",
                                          init=prev if opt.get("warm") else None)
                        spent += time.perf_counter() - start
                        pairs += 1
                        prev = f
                        a, b = metrics.endpoint_error(f, s.flow(t, t + 1), mask=~s.occlusion(t, t + 1))
                        e.append(a)
                        u.append(b)
                cells.append(f"{np.mean(e):.3f} / {100 * np.mean(u):.1f}% / {1000 * spent / pairs:.0f}")
            print(f"| {motion} | {speed:g} | " + " | ".join(cells) + " |")


def _noisy(frames, sigma, seed):
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 1).astype(np.float32) for f in frames]


def section_denoise(args):
    import cv2

    from clarifx import models

    have_model = models.installed_path("restore-x1").exists()
    n, sigma = 9, 15 / 255
    rows_all = []
    for i, photo in enumerate(PHOTOS):
        for j, motion in enumerate(synthetic.MOTIONS):
            s = synthetic.KnownMotion(synthetic.photo(photo), motion, frames=n, size=(192, 256))
            noisy = _noisy(s.frames, sigma, seed=10 * i + j)
            ts = range(2, n - 2)
            flows = {t: s.flow(t, t - 1) for t in ts}
            occl = {t: s.occlusion(t, t - 1) for t in ts}
            nlm = {t: cv2.fastNlMeansDenoisingColored((noisy[t] * 255 + 0.5).astype(np.uint8), None, 10, 10, 7, 21)
                   .astype(np.float32) / 255 for t in ts}
            rows = {"noisy input": stability({t: noisy[t] for t in ts}, flows, occl, s.frames),
                    "single frame: OpenCV NL-means (h 10)": stability(nlm, flows, occl, s.frames)}
            if have_model:
                rows["single frame: restore-x1 (Denoise node)"] = stability(
                    run_node(Denoise, noisy, ts, model="restore-x1"), flows, occl, s.frames)
            for r in (1, 2):
                rows[f"temporal fusion, radius {r}"] = stability(
                    run_node(tnodes.TemporalDenoise, noisy, ts, radius=r), flows, occl, s.frames)
            rows["temporal fusion, radius 2, hand-made rule"] = stability(
                run_node(tnodes.TemporalDenoise, noisy, ts, radius=2, fusion="rule"), flows, occl, s.frames)
            if have_model:
                rows["temporal fusion r2 + restore-x1"] = stability(
                    run_node(tnodes.TemporalDenoise, noisy, ts, radius=2, model="restore-x1"), flows, occl, s.frames)
            rows_all.append(rows)
    table(f"Denoising, sigma 15/255, {len(rows_all)} sequences of 256x192 (3 photos x 4 motions), frames 2-6 of 9",
          mean_rows(rows_all), base="noisy input")


def section_sr(args):
    n = 13
    rows_all = []
    for i, photo in enumerate(PHOTOS):
        for j, motion in enumerate(synthetic.MOTIONS):
            s = synthetic.KnownMotion(synthetic.photo(photo), motion, frames=n, size=(192, 256))
            lr = synthetic.degraded_lr(s.frames, seed=100 * i + 10 * j)
            ts = range(5, n - 5 + 1)
            flows = {t: s.flow(t, t - 1) for t in ts}
            occl = {t: s.occlusion(t, t - 1) for t in ts}
            rows = {"per-frame fast-x2": stability(run_node(SuperResolution, lr, ts, model="fast-x2"), flows, occl,
                                                   s.frames, shave=4)}
            for r in (1, 2):
                rows[f"temporal fast-x2, radius {r}"] = stability(
                    run_node(tnodes.TemporalSuperResolution, lr, ts, model="fast-x2", radius=r), flows, occl,
                    s.frames, shave=4)
            rows["temporal fast-x2, radius 2, hand-made rule"] = stability(
                run_node(tnodes.TemporalSuperResolution, lr, ts, model="fast-x2", radius=2, fusion="rule"), flows,
                occl, s.frames, shave=4)
            rows_all.append(rows)
    table(f"x2 SR of independently degraded frames (bicubic /2, noise 4/255, JPEG 80), {len(rows_all)} sequences, "
          "HR 256x192", mean_rows(rows_all), base="per-frame fast-x2")


def read_clip(name: str, count: int, start: int = 1):
    from clarifx import footage

    path = DATA / "video" / name
    if not (path if "%" not in name else path.parent).exists():
        return None
    with footage.open_source(path) as src:
        frames = [src.read(k).pixels[:, :, :3] for k in range(start, start + count)]
    # Video decodes to Gamma 2.4 Rec.709 values; the nodes get them as display-referred as they are.
    # A grey sequence (mire-2's PGM frames) becomes R = G = B, as the nodes take colour.
    return [np.ascontiguousarray(np.clip(np.broadcast_to(f, f.shape[:2] + (3,)), 0, 1), dtype=np.float32)
            for f in frames]


def section_clips(args):
    n = 11
    clips = {"vtest.avi": read_clip("vtest.avi", n, 100), "bikes.mp4": read_clip("bikes.mp4", n, 50),
             "mire-2": read_clip("mire-2/image.%04d.pgm", n, 100)}
    for name, frames in clips.items():
        if frames is None:
            print(f"\n{name}: missing (run ../shared/scripts/fetch-data)")
            continue
        h, w = frames[0].shape[:2]
        ts = range(4, n - 4 + 1) if n > 8 else range(1, n)
        src_flows, src_occ = {}, {}
        for t in ts:  # the source's own flow and occlusions, at the output size
            fw, bw = flow.estimate(frames[t], frames[t - 1]), flow.estimate(frames[t - 1], frames[t])
            src_flows[t] = flow.upscale(fw, (2 * h, 2 * w))
            src_occ[t] = flow.occlusion(src_flows[t], flow.upscale(bw, (2 * h, 2 * w))) > 0.5
        rows = {"per-frame fast-x2": stability(run_node(SuperResolution, frames, ts, model="fast-x2"), src_flows,
                                               src_occ),
                "temporal fast-x2, radius 2": stability(run_node(tnodes.TemporalSuperResolution, frames, ts,
                                                                 model="fast-x2", radius=2), src_flows, src_occ),
                "temporal fast-x2, radius 2, hand-made rule": stability(
                    run_node(tnodes.TemporalSuperResolution, frames, ts, model="fast-x2", radius=2, fusion="rule"),
                    src_flows, src_occ)}
        table(f"{name} ({w}x{h}, frames {ts[0]}-{ts[-1]} of a {n}-frame excerpt), x2, E_warp with the source's flow",
              rows, base="per-frame fast-x2")
        sflows = {t: flow.estimate(frames[t], frames[t - 1]) for t in ts}
        socc = {t: flow.occlusion(sflows[t], flow.estimate(frames[t - 1], frames[t])) > 0.5 for t in ts}
        drows = {"source": stability({t: frames[t] for t in ts}, sflows, socc),
                 "temporal denoise, radius 2": stability(run_node(tnodes.TemporalDenoise, frames, ts, radius=2),
                                                         sflows, socc),
                 "temporal denoise, radius 2, hand-made rule": stability(
                     run_node(tnodes.TemporalDenoise, frames, ts, radius=2, fusion="rule"), sflows, socc)}
        table(f"{name}: temporal denoise against the source", drows, base="source")


def section_speed(args):
    photo = synthetic.photo(str(DATA / "photos/train/Garden.jpg")) if (DATA / "photos/train/Garden.jpg").exists() \
        else synthetic.photo("astronaut")
    h, w = (720, 1280) if min(photo.shape[:2]) >= 800 else (360, 640)
    s = synthetic.KnownMotion(photo, "pan", frames=10, size=(h, w))
    frames = s.frames
    print(f"\n### CPU throughput at {w}x{h} -> {2 * w}x{2 * h}, fast-x2, seconds per frame (steady state)\n")
    start = time.perf_counter()
    for t in range(1, 5):
        flow.estimate(frames[t], frames[t - 1])
    print(f"| DIS 'medium' flow, one pair | {(time.perf_counter() - start) / 4:.2f} |")
    start = time.perf_counter()
    run_node(SuperResolution, frames, range(4, 6), model="fast-x2")
    per_frame = (time.perf_counter() - start) / 2
    print(f"| per-frame SR | {per_frame:.2f} |")
    for r, fusion in ((1, "learned"), (2, "learned"), (2, "rule")):
        node = tnodes.TemporalSuperResolution()
        p = {q.name: q.default for q in node.params}
        p.update(radius=r, fusion=fusion)
        node._range = (0, len(frames) - 1)

        def step(t):
            inputs = [{k: Frame(frames[k], ("R", "G", "B"), SRGB, number=k) for k in node.frames_needed(p, t, 0)}]
            node.render(p, t, inputs)

        step(2 * r)  # fills the window
        start = time.perf_counter()
        for t in range(2 * r + 1, 2 * r + 3):
            step(t)
        print(f"| flow + temporal SR, radius {r}, {fusion} fusion | {(time.perf_counter() - start) / 2:.2f} |")
        node.close()


SECTIONS = {"flow": section_flow, "denoise": section_denoise, "sr": section_sr, "clips": section_clips,
            "speed": section_speed}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = ap.parse_args()
    import cv2
    import torch

    print(f"OpenCV {cv2.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.only:
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
