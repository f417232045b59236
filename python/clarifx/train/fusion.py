"""Training the temporal fusion weights (archs.FuseNet, the embedded model `fuse-weights`).

``python -m clarifx.train python/clarifx/train/configs/fuse-weights.json`` dispatches here (its config
has "task": "fusion"). Sequences are made from the real photos of photos/train by known motion
(clarifx.synthetic: pans, zooms, rotations, a region moving over a background, and still shots), at
speeds from 0 to 3, and degraded the way footage is: the whole clip through H.264/H.265 (the flicker of
re-quantised blocks that a still camera shows), independent sensor noise per frame, or light noise and
JPEG per frame. Neighbours are aligned exactly as clarifx.temporal aligns them at render time (DIS flow
on the degraded frames, the native warp kernel, forward-backward occlusions), so the net learns to
trust the flow only as far as it deserves.

Loss (losses()): the binary cross-entropy of the net's weights against the least-error weights measured
on the clean frames (target_weights), plus `image_weight` times the L1 of the fused frame t and
`temporal_weight` times the temporal-consistency loss: the change from fused frame t-1 (warped by the
true flow) to fused frame t against the same change in the clean frames, over pixels both frames show.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import synthetic, temporal
from . import archs, degrade

DEFAULTS = {
    "name": "fuse-weights",
    "task": "fusion",
    "arch": "fuse",
    "arch_args": {"channels": 16},
    "scale": 1,
    "seed": 0,
    "train_dir": None,  # default: photos/train of the fetched data
    "val_photos": [],
    "radius": 2,
    "size": [96, 128],
    "samples": 1200,
    "val_samples": 96,
    "photo_scale_range": [0.2, 0.5],
    "speed_range": [0.2, 3.0],
    "still_prob": 0.2,
    "degrade": {"video": 0.4, "noise": 0.35, "light": 0.25},
    "crf_range": [24, 42],
    "noise_range": [2.0, 25.0],
    "batch": 8,
    "crop": 64,
    "steps": 3000,
    "lr": 2e-3,
    "lr_min": 1e-5,
    "target_power": 2.0,  # fit target_weights ** this: the net cannot see the misalignment that the target
    #                       measures on clean frames, and trusting a wrong neighbour (a ghost) costs more
    #                       than refusing a right one. Squared, the clean-frame optimum loses 0.03 dB; on
    #                       the known-motion SR sequences the net gained 0.27 dB where a region moves
    "ghost_weight": 0.0,  # misaligned pixels count 1 + this x (1 - target) in the weight loss (8: the band
    #                       round a moving region 0.6 dB better than without)
    "image_weight": 10.0,
    "temporal_weight": 1.0,
    "val_every": 250,
}


def load_config(path) -> dict:
    with open(path) as f:
        cfg = json.load(f)
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
    cfg = {**DEFAULTS, **cfg}
    if cfg["train_dir"] is None:
        from .__main__ import DATA_DIR

        cfg["train_dir"] = str(DATA_DIR / "photos" / "train")
    return cfg


def _degrade_clip(frames, cfg, rng) -> list[np.ndarray]:
    kinds = list(cfg["degrade"])
    kind = rng.choice(kinds, p=np.array([cfg["degrade"][k] for k in kinds]) / sum(cfg["degrade"].values()))
    if kind == "video":  # light sensor noise, then the clip through a codec as one stream
        sigma = rng.uniform(0.0, 3.0) / 255
        noisy = [degrade.gaussian_noise(f, sigma, rng) for f in frames]
        codec = "libx264" if rng.random() < 0.6 else "libx265"
        return degrade.video_clip(noisy, codec, int(rng.integers(cfg["crf_range"][0], cfg["crf_range"][1] + 1)),
                                  preset="veryfast")
    if kind == "noise":
        sigma = rng.uniform(*cfg["noise_range"]) / 255
        return [np.clip(degrade.gaussian_noise(f, sigma, rng), 0, 1) for f in frames]
    q = int(rng.integers(60, 96))  # "light": footage as the SR measurements make it
    return [np.clip(degrade.jpeg(degrade.gaussian_noise(f, 4 / 255, rng), q), 0, 1) for f in frames]


def make_sample(photo: np.ndarray, cfg, rng) -> dict:
    """One training sample: frames t-1 and t of a known-motion clip, each with its neighbours within the
    radius aligned onto it as render time aligns them, the clean frames and the true flow t -> t-1."""
    r = cfg["radius"]
    h, w = cfg["size"]
    still = rng.random() < cfg["still_prob"]
    motion = str(rng.choice(synthetic.MOTIONS))
    speed = 0.0 if still else float(rng.uniform(*cfg["speed_range"]))
    n = 2 * r + 2
    clip = synthetic.KnownMotion(photo, motion, frames=n, size=(h, w), speed=speed)
    frames = [np.ascontiguousarray(f, dtype=np.float32) for f in _degrade_clip(clip.frames, cfg, rng)]
    window = temporal.Window()
    out = {}
    for key, t in (("prev", r), ("cur", r + 1)):
        near = {k: frames[k] for k in temporal.window_frames(t, r, 0, n - 1)}
        aligned, masks = window.aligned(t, near)
        aligned_clean, _ = window.aligned(t, near, images={k: clip.frames[k] for k in near})
        out[key] = (frames[t], np.stack(aligned), np.stack(masks), clip.frames[t], np.stack(aligned_clean))
    out["flow"] = clip.flow(r + 1, r)
    out["visible"] = ~clip.occlusion(r + 1, r)
    return out


def _crop_of(path: str, cfg, rng) -> np.ndarray:
    """A region of the photo, area-reduced by a random factor, large enough for the clip's motion."""
    from .__main__ import _area_down, _read_photo

    img = _area_down(_read_photo(path), float(rng.uniform(*cfg["photo_scale_range"])))
    h, w = cfg["size"]
    ch, cw = min(img.shape[0], int(h * 2.2)), min(img.shape[1], int(w * 2.2))
    y, x = int(rng.integers(0, img.shape[0] - ch + 1)), int(rng.integers(0, img.shape[1] - cw + 1))
    return np.ascontiguousarray(img[y:y + ch, x:x + cw])


def build_set(paths, count: int, cfg, rng, log=print) -> dict[str, torch.Tensor]:
    """`count` samples as stacked tensors (photos taken in turn)."""
    parts: dict[str, list] = {}
    t0 = time.time()
    photos = {}
    for i in range(count):
        p = paths[i % len(paths)]
        if i < len(paths) or rng.random() < 0.1:  # a fresh region now and then
            photos[p] = _crop_of(p, cfg, rng)
        s = make_sample(photos[p], cfg, rng)
        for key in ("prev", "cur"):
            for name, a in zip(("frame", "aligned", "masks", "clean", "aligned_clean"), s[key]):
                parts.setdefault(f"{key}_{name}", []).append(a)
        parts.setdefault("flow", []).append(s["flow"])
        parts.setdefault("visible", []).append(s["visible"])
        if (i + 1) % 200 == 0:
            log(f"  {i + 1}/{count} samples ({time.time() - t0:.0f}s)")

    def tensor(name, a):
        a = np.stack(a).astype(np.float32)
        if name.endswith(("aligned", "aligned_clean")):
            return torch.from_numpy(a).permute(0, 1, 4, 2, 3).contiguous()
        if name.endswith(("frame", "clean")):
            return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
        return torch.from_numpy(a)

    return {k: tensor(k, v) for k, v in parts.items()}


def fuse(current, aligned, weights):
    """temporal.average in torch: (current + sum_k w_k aligned_k) / (1 + sum_k w_k)."""
    return (current + (weights[:, :, None] * aligned).sum(1)) / (1 + weights.sum(1))[:, None]


def _warp_back(image, flow):
    """image (N, C, H, W) sampled at x + flow (N, H, W, 2): frame t-1 brought onto frame t (bilinear)."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    gx = (xs + flow[..., 0]) * 2 / (w - 1) - 1
    gy = (ys + flow[..., 1]) * 2 / (h - 1) - 1
    return F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=True)


def target_weights(frame, clean, aligned_clean):
    """The weights that would minimise the fused error: s2 / (s2 + e2), s2 being the local energy of the
    frame's own error (noise, compression) and e2 that of the aligned neighbour's misalignment, measured on
    the clean frames aligned by the same flow. (Averaging a frame with error variance s2 and a neighbour
    with as much error plus a bias e, the weight s2 / (s2 + e2) on the neighbour gives the least error.)"""
    s2 = archs.FuseNet.local_energy((frame - clean).square()).clamp(min=(0.5 / 255) ** 2)
    e2 = archs.FuseNet.local_energy((aligned_clean - clean[:, None]).square())
    return s2[:, None] / (s2[:, None] + e2)


def losses(model, batch, power: float = 1.0, ghost: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight loss, L1 of fused frame t, temporal-consistency loss) of a batch. The weight loss is the
    binary cross-entropy of the net's logits against target_weights ** power over usable pixels: unlike the
    fused frame's loss alone, its gradient does not vanish where the sigmoid saturates (trained on the
    fused loss alone, the net learnt to trust every neighbour fully within 100 steps and stayed there)."""
    out, bce = {}, 0.0
    for key in ("prev", "cur"):
        frame, aligned, masks = batch[f"{key}_frame"], batch[f"{key}_aligned"], batch[f"{key}_masks"]
        logits = model.logits(frame, aligned, masks)
        target = target_weights(frame, batch[f"{key}_clean"], batch[f"{key}_aligned_clean"]) ** power
        count = masks * (1 + ghost * (1 - target))
        bce = bce + (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * count).sum() \
            / count.sum().clamp(min=1) / 2
        out[key] = fuse(frame, aligned, torch.sigmoid(logits) * masks)
    fidelity = (out["cur"] - batch["cur_clean"]).abs().mean()
    vis = batch["visible"][:, None]
    change = out["cur"] - _warp_back(out["prev"], batch["flow"])
    truth = batch["cur_clean"] - _warp_back(batch["prev_clean"], batch["flow"])
    consistency = ((change - truth).abs() * vis).sum() / (3 * vis.sum()).clamp(min=1)
    return bce, fidelity, consistency


def _crop(data, idx, size, rng) -> dict[str, torch.Tensor]:
    h, w = data["cur_frame"].shape[-2:]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    batch = {k: v[idx][..., y:y + size, x:x + size] for k, v in data.items() if k != "flow"}
    flow = data["flow"][idx][:, y:y + size, x:x + size]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    qx, qy = xs + flow[..., 0], ys + flow[..., 1]
    inside = (qx >= 0) & (qx <= size - 1) & (qy >= 0) & (qy <= size - 1)  # flows that leave the crop do not count
    batch["flow"], batch["visible"] = flow, batch["visible"] * inside
    return batch


def _psnr_fused(model, data, which: str | None = None) -> float:
    """Y-PSNR of fused frame t against the clean one over the set: the model's weights, or the rule's
    ('rule', at TemporalSuperResolution's default tolerance) or none at all ('none': frame t itself)."""
    from ..metrics import psnr_y

    vals = []
    with torch.no_grad():
        for i in range(len(data["cur_frame"])):
            cur, al, ms = data["cur_frame"][i:i + 1], data["cur_aligned"][i:i + 1], data["cur_masks"][i:i + 1]
            if which == "none":
                fused = cur
            elif which == "rule":
                c = cur[0].permute(1, 2, 0).numpy()
                ws = temporal.weights(c, [a.permute(1, 2, 0).numpy() for a in al[0]], list(ms[0].numpy()), tolerance=3.0)
                fused = fuse(cur, al, torch.from_numpy(np.stack(ws))[None])
            else:
                fused = fuse(cur, al, model(cur, al, ms))
            vals.append(psnr_y(fused[0].permute(1, 2, 0).clamp(0, 1).numpy(),
                               data["cur_clean"][i].permute(1, 2, 0).numpy(), shave=4))
    return float(np.mean(vals))


def train(cfg: dict, out, *, time_limit: float | None = None, log=print, command: str = "") -> dict:
    from .__main__ import run_device, save_weights, set_lr, start_run

    rng, out, train_paths, val_paths = start_run(cfg, out)
    t0 = time.time()
    log(f"data: {len(train_paths)} train photos, {len(val_paths)} val photos")
    data = build_set(train_paths, cfg["samples"], cfg, rng, log)
    val = build_set(val_paths or train_paths[:1], cfg["val_samples"], cfg, np.random.default_rng(cfg["seed"] + 1), log)
    log(f"samples: {cfg['samples']} train, {cfg['val_samples']} val ({time.time() - t0:.0f}s)")
    model = archs.build(cfg["arch"], scale=1, **cfg["arch_args"])
    params = archs.param_count(model)
    base = {"none": _psnr_fused(None, val, "none"), "rule": _psnr_fused(None, val, "rule")}
    log(f"model: {params} params; val frame t alone {base['none']:.3f} dB, hand-made rule {base['rule']:.3f} dB")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    steps, best, wpath = int(cfg["steps"]), -1e9, out / f"{cfg['name']}.safetensors"
    hist: list[tuple[float, float, float]] = []
    t_start, step = time.time(), 0
    for step in range(1, steps + 1):
        lr_now = set_lr(opt, cfg, step, steps, time.time() - t_start, time_limit)
        idx = torch.from_numpy(rng.integers(0, cfg["samples"], cfg["batch"]))
        bce, fid, con = losses(model, _crop(data, idx, cfg["crop"], rng), cfg["target_power"], cfg["ghost_weight"])
        loss = bce + cfg["image_weight"] * (fid + cfg["temporal_weight"] * con)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append((bce.item(), fid.item(), con.item()))
        done = step == steps or (time_limit is not None and time.time() - t_start >= time_limit)
        if step % cfg["val_every"] == 0 or done:
            v = _psnr_fused(model, val)
            b, f, c = np.mean(hist[-cfg["val_every"]:], axis=0)
            log(f"step {step}/{steps} weights {b:.4f} L1 {f:.5f} temporal {c:.5f} lr {lr_now:.2e} val {v:.3f} dB "
                f"(rule {base['rule']:.3f}) {time.time() - t_start:.0f}s")
            if v > best:
                best = v
                save_weights(model, wpath, cfg, {"val_psnr": f"{v:.4f}", "step": str(step)})
        if done:
            break
    info = {"params": params, "steps": steps, "steps_done": step, "train_s": time.time() - t_start,
            "val": best, "base": base, "command": command, "time_limit": time_limit, "device": run_device()}
    write_card(out / f"{cfg['name']}.md", cfg, info)
    return info


def write_card(path, cfg, info) -> None:
    lines = [
        f"# {cfg['name']}: temporal fusion weights",
        "",
        "Architecture `fuse` (archs.FuseNet): per neighbour, 4 3x3 convs (dilations 1, 2, 4, 1) of "
        f"{cfg['arch_args'].get('channels', 16)} channels and a 1x1 conv to a sigmoid weight, {info['params']} parameters.",
        "",
        f"Data: sequences of {cfg['size'][1]}x{cfg['size'][0]} made by known motion from the photos of photos/train "
        f"(validation photos {', '.join(cfg['val_photos']) or 'none'} held out), radius {cfg['radius']}; degradations "
        f"{json.dumps(cfg['degrade'])} (video: the clip through H.264/H.265 at CRF {cfg['crf_range'][0]}-{cfg['crf_range'][1]}; "
        f"noise: Gaussian sigma {cfg['noise_range'][0]:g}-{cfg['noise_range'][1]:g}/255 per frame; light: 4/255 and JPEG 60-95). "
        "Neighbours aligned by DIS flow on the degraded frames, as at render time.",
        "",
        "Training: binary cross-entropy of the weights against the least-error weights s2 / (s2 + e2) (s2: the "
        "frame's own local error, e2: the aligned neighbour's misalignment, both measured on the clean frames) "
        f"raised to the power {cfg['target_power']:g}, misaligned pixels counting 1 + {cfg['ghost_weight']:g} x "
        f"(1 - target); plus {cfg['image_weight']:g} x (L1 of the fused frame + {cfg['temporal_weight']:g} x "
        f"temporal consistency). Adam lr {cfg['lr']} cosine to {cfg['lr_min']}, "
        f"batch {cfg['batch']} crops of {cfg['crop']}, seed {cfg['seed']}; {info['steps_done']} steps (cap {info['steps']}, "
        f"time limit {info['time_limit']} s) in {info['train_s']:.0f} s on {info['device']}.",
        f"Command: `{info['command']}`",
        "",
        f"Validation (fused frame t, Y-PSNR over {cfg['val_samples']} held-out clips): frame t alone "
        f"{info['base']['none']:.3f} dB, the hand-made rule {info['base']['rule']:.3f} dB, this model {info['val']:.3f} dB.",
        "",
    ]
    Path(path).write_text("\n".join(lines))
