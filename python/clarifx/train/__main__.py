"""``python -m clarifx.train CONFIG.json [--out DIR] [--steps N] [--time-limit S]``

Seeded trainer for the embedded default SR models. Data: real photos (``photos/train`` from
``shared/scripts/fetch-data``; ``photos/misc`` is the team's evaluation set and is only ever
read by the final evaluation, never sampled for training). Each training photo is area-downscaled
by a seeded random factor in ``hr_scale_range`` (default [1/2, 1]) to remove JPEG artefacts; HR
crops with random flips / 90-degree rotations are cut from those; LR = antialiased bicubic
downscale of the HR crop by ``scale`` (torch ``interpolate(antialias=True)``, identical to
``clarifx.kernels.resample(filter="bicubic")``), optionally followed by light degradations from
``clarifx.train.degrade`` when the config has a ``degrade`` dict. L1 loss, Adam, cosine schedule,
periodic validation PSNR (BT.601 Y, ``scale``-pixel border shaved) on fixed crops of held-out
training-set photos (``val_photos``, excluded from the training pool). Writes
``<name>.safetensors`` and a model card ``<name>.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clarifx.train import archs

DATA_DIR = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache" / "clarifx-data"))

DEFAULTS = {
    "name": "model",
    "task": "sr",
    "arch": "fast",
    "arch_args": {},
    "scale": 2,
    "seed": 0,
    "train_dir": str(DATA_DIR / "photos" / "train"),
    "eval_dir": str(DATA_DIR / "photos" / "misc"),
    "val_photos": [],
    "val_crops": 16,
    "val_size": 128,
    "hr_scale_range": [0.5, 1.0],
    "versions_per_photo": 2,
    "max_photo_side": 0,
    "patch": 48,
    "batch": 16,
    "steps": 1000,
    "lr": 1e-3,
    "lr_min": 1e-5,
    "loss": "l1",  # or "mse": near the identity (small errors: deblocking) L1's gradient is only their noisy
    #                sign and a zero-started residual net did not move in 1000 steps; MSE's scales with them
    "grad_clip": 0.0,  # > 0: clip the gradient's global norm to this (a deeper net diverged at lr 5e-4 without)
    "val_every": 200,
    "texture_min": 2.0,
    "texture_tries": 4,
    "degrade": None,
    "eval_misc": True,
    "eval_max_side": 512,
    "eval_conditions": [],
    "eval_pipelines": [],
    "init": None,  # weights to start from, e.g. a previous stage: a path relative to the repository root, or
    #                {"part": path} for sub-networks
    "grow": None,  # a trained smaller FastSR (path) that a wider/deeper FastSR starts as, exactly (archs.grow)
}
TASKS = {"sr": "super-resolution", "restore": "noise and compression-artefact removal (same size)",
         "deblock": "compression-artefact removal: JPEG, H.264, H.265 (same size)",
         "joint": "joint denoising + super-resolution"}


def load_config(path: str | os.PathLike) -> dict:
    with open(path) as f:
        cfg = json.load(f)
    if cfg.get("task") == "fusion":  # the temporal fusion weights: their own data and loop (train/fusion.py)
        from . import fusion

        return fusion.load_config(path)
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
    if cfg.get("loss", "l1") not in ("l1", "mse"):
        raise ValueError(f"{path}: loss {cfg['loss']!r} is not 'l1' or 'mse'")
    return {**DEFAULTS, **cfg}


def _read_photo(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _area_down(img: np.ndarray, factor: float) -> np.ndarray:
    from clarifx.kernels import resample

    if factor >= 1.0:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    return np.clip(resample(np.ascontiguousarray(img), size, filter="box"), 0.0, 1.0)


def _photo_list(cfg) -> tuple[list[str], list[str]]:
    paths = sorted(glob.glob(os.path.join(cfg["train_dir"], "*.jpg")) + glob.glob(os.path.join(cfg["train_dir"], "*.png")))
    if not paths:
        raise FileNotFoundError(f"train_dir: no photos in {cfg['train_dir']} (run shared/scripts/fetch-data)")
    val = [p for p in paths if os.path.basename(p) in set(cfg["val_photos"])]
    train = [p for p in paths if p not in val]
    return train, val


def start_run(cfg, out) -> tuple[np.random.Generator, Path, list[str], list[str]]:
    """What every trainer does first: seed torch, make the run's numpy generator and output folder, and
    split photos/train into training and held-out validation photos."""
    torch.manual_seed(cfg["seed"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return (np.random.default_rng(cfg["seed"]), out) + _photo_list(cfg)


def run_device() -> str:
    """Where a run trained, for its model card."""
    return (f"CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s)")


def build_pool(paths, cfg, rng) -> list[np.ndarray]:
    """Area-downscaled HR versions of each photo, stored as uint8 to save memory."""
    pool = []
    lo, hi = cfg["hr_scale_range"]
    for p in paths:
        img = _read_photo(p)
        if cfg["max_photo_side"] and max(img.shape[:2]) > cfg["max_photo_side"]:
            img = _area_down(img, cfg["max_photo_side"] / max(img.shape[:2]))
        for _ in range(cfg["versions_per_photo"]):
            v = _area_down(img, float(rng.uniform(lo, hi)))
            pool.append((v * 255.0 + 0.5).astype(np.uint8))
    return pool


def sample_batch(pool, cfg, rng) -> torch.Tensor:
    size = cfg["patch"] * cfg["scale"]
    out = np.empty((cfg["batch"], size, size, 3), np.float32)
    areas = np.array([im.shape[0] * im.shape[1] for im in pool], np.float64)
    which = rng.choice(len(pool), size=cfg["batch"], p=areas / areas.sum())
    for i, k in enumerate(which):
        im = pool[k]
        for _ in range(max(1, cfg["texture_tries"])):  # prefer textured crops over flat sky
            y = int(rng.integers(0, im.shape[0] - size + 1))
            x = int(rng.integers(0, im.shape[1] - size + 1))
            c = im[y:y + size, x:x + size]
            if _texture(c) >= cfg["texture_min"]:
                break
        if rng.random() < 0.5:
            c = c[:, ::-1]
        c = np.rot90(c, int(rng.integers(0, 4)))
        out[i] = c.astype(np.float32) / 255.0
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _texture(c: np.ndarray) -> float:
    """Mean absolute horizontal+vertical luma difference (0..255 scale) of a uint8 crop."""
    y = c[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean())


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscale (same as clarifx.kernels.resample(filter='bicubic'))."""
    h, w = hr.shape[-2:]
    return F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)


def make_lr(hr: torch.Tensor, cfg, rng) -> torch.Tensor:
    lr = downscale(hr, cfg["scale"])
    if cfg.get("degrade"):
        from clarifx.train import degrade

        imgs = lr.permute(0, 2, 3, 1).numpy()
        outs = []
        for im in imgs:
            seed = int(rng.integers(0, 2**31 - 1))
            outs.append(degrade.degrade_light(im, cfg["degrade"], seed=seed))
        lr = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).contiguous()
    return lr


def val_set(paths, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(cfg["seed"] + 1000)
    pool = build_pool(paths, {**cfg, "versions_per_photo": 1}, rng)
    n = cfg["val_crops"]
    s = cfg["val_size"]
    crops = []
    for i in range(n):
        im = pool[i % len(pool)]
        for _ in range(50):
            y = int(rng.integers(0, im.shape[0] - s + 1))
            x = int(rng.integers(0, im.shape[1] - s + 1))
            if _texture(im[y:y + s, x:x + s]) >= max(cfg["texture_min"], 4.0):
                break
        crops.append(im[y:y + s, x:x + s].astype(np.float32) / 255.0)
    hr = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    # degraded models are validated on degraded input, with fixed seeds
    return hr, make_lr(hr, cfg, np.random.default_rng(cfg["seed"] + 2000))


def _psnr_batch(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> float:
    """Y-PSNR of the whole batch (from the mean squared error over all crops): finite even when some
    crops of a degraded validation set came out clean."""
    from clarifx.metrics import luma_bt601

    a = luma_bt601(sr.clamp(0, 1).permute(0, 2, 3, 1).numpy())[:, shave:-shave, shave:-shave]
    b = luma_bt601(hr.permute(0, 2, 3, 1).numpy())[:, shave:-shave, shave:-shave]
    return float(10.0 * np.log10(1.0 / np.mean((a - b) ** 2)))


@torch.no_grad()
def validate(model, hr, lr, scale) -> float:
    model.eval()
    sr = torch.cat([model(lr[i:i + 4]) for i in range(0, len(lr), 4)])
    model.train()
    return _psnr_batch(sr, hr, scale)


def _baselines(scale: int) -> tuple[str, ...]:
    return ("input",) if scale == 1 else ("bicubic", "lanczos3")


@torch.no_grad()
def evaluate_photos(model, paths, scale: int, max_side: int = 512, condition: str = "clean",
                    pipelines=()) -> dict:
    """DESIGN 'Measuring' protocol: HR = photo area-downscaled to <= max_side on the long side,
    LR = antialiased bicubic / scale, then the named degradation `condition` (degrade.EVAL_CONDITIONS,
    seeded per image), Y-PSNR (BT.601) with a scale-pixel border shaved.
    Returns mean Y-PSNR (and Y-SSIM as ``<key>_ssim``, skimage's structural_similarity on the shaved
    luma) for the model and the baselines: the degraded input itself at scale 1, bicubic and Lanczos-3
    (clarifx.kernels.resample) otherwise; plus each pipeline (a list of registry model names run in
    turn, e.g. ["restore-x1", "fast-x2"] for denoise-then-upscale), keyed "a+b". With `model` None only
    the baselines and pipelines are scored (benchmarks/quality.py compares registry models this way)."""
    from clarifx import models
    from clarifx.kernels import resample
    from clarifx.metrics import luma_bt601, psnr_y
    from clarifx.models.tiling import run_tiled
    from clarifx.train.degrade import EVAL_CONDITIONS

    def ssim_y(a, b):
        from skimage.metrics import structural_similarity

        ya, yb = luma_bt601(a)[scale:-scale, scale:-scale], luma_bt601(b)[scale:-scale, scale:-scale]
        return structural_similarity(ya, yb, data_range=1.0)

    def run(net, img):  # whole frame; run_tiled pads for nets that lose a border (waifu2x: 7 px a side)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
        y = run_tiled(net, x, scale=net.scale, tile=None, overlap=0, border=net.border)
        return y[0].permute(1, 2, 0).clamp(0, 1).numpy()

    chains = {"+".join(names): [models.load(n) for n in names] for names in pipelines}
    if model is not None:
        model.eval()
    rows: dict[str, list[float]] = {}
    for i, p in enumerate(paths):
        img = _read_photo(p)
        img = _area_down(img, min(1.0, max_side / max(img.shape[:2])))
        h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
        hr = np.ascontiguousarray(img[:h, :w])
        lr = hr if scale == 1 else np.clip(resample(hr, (h // scale, w // scale), filter="bicubic"), 0, 1)
        lr = EVAL_CONDITIONS[condition](lr, np.random.default_rng(i))
        outs = {} if model is None else {"model": run(model, lr)}
        for f in _baselines(scale):
            outs[f] = lr if f == "input" else np.clip(resample(lr, (h, w), filter=f), 0, 1)
        for key, chain in chains.items():
            x = lr
            for net in chain:
                x = run(net, x)
            outs[key] = x
        for key, out in outs.items():
            rows.setdefault(key, []).append(psnr_y(out, hr, shave=scale))
            rows.setdefault(key + "_ssim", []).append(ssim_y(out, hr))
    return {k: float(np.mean(v)) for k, v in rows.items()} | {"n": len(paths), "condition": condition}


def _eval_paths(cfg) -> list[str]:
    return sorted(glob.glob(os.path.join(cfg["eval_dir"], "*.jpg")) + glob.glob(os.path.join(cfg["eval_dir"], "*.png")))


def evaluate_all(model, cfg) -> list[dict]:
    """evaluate_photos on the config's eval_dir for each of its eval_conditions (default: clean)."""
    paths = _eval_paths(cfg)
    if not paths:
        raise FileNotFoundError(f"eval_dir: no photos in {cfg['eval_dir']}")
    return [evaluate_photos(model, paths, int(cfg["scale"]), cfg["eval_max_side"], cond, cfg["eval_pipelines"])
            for cond in (cfg["eval_conditions"] or ["clean"])]


def save_weights(model, path, cfg, extra_meta=None):
    from safetensors.torch import save_file

    meta = {"arch": cfg["arch"], "arch_args": json.dumps(cfg["arch_args"]), "scale": str(cfg["scale"]),
            "name": cfg["name"]}
    meta.update(extra_meta or {})
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def load_weights(path) -> torch.nn.Module:
    from ..models import load_embedded

    return load_embedded(path)


_ARCH_TEXT = {
    "FastSR": "3x3 conv stack with PReLU on the LR image, pixel shuffle, plus a global residual on torch "
              "bicubic (align_corners=False) upscale of the input",
    "ChainSR": "networks run one after another and trained end to end (the stages are in the config below)",
    "RestoreNet": "pixel unshuffle by 2, residual blocks of two 3x3 convs with leaky ReLU at half resolution, "
                  "pixel shuffle to the output size, plus a global residual on the input (scale 1) or its torch "
                  "bicubic upscale",
}


def _table(name, e, scale) -> list[str]:
    base = _baselines(scale)[0]
    lines = ["| method | Y-PSNR (dB) | vs " + base + " | Y-SSIM |", "|---|---|---|---|"]
    keys = [k for k in e if not k.endswith("_ssim") and k not in ("n", "condition")]
    for k in keys:
        gain = f"{e[k] - e[base]:+.3f}" if math.isfinite(e[k]) and math.isfinite(e[base]) else "n/a"
        lines.append(f"| {name if k == 'model' else k} | {e[k]:.3f} | {gain} | {e[k + '_ssim']:.4f} |")
    return lines


def write_card(path, cfg, info):
    deg = "\n```json\n" + json.dumps(cfg["degrade"], indent=1) + "\n```" if cfg["degrade"] else "none (clean LR)"
    scale, base = cfg["scale"], _baselines(cfg["scale"])[0]
    lr_text = "the HR crop itself" if scale == 1 else f"antialiased bicubic downscale by {scale} (PIL/torch-antialias convention)"
    lines = [
        f"# {cfg['name']}",
        "",
        f"Task: {TASKS[cfg['task']]} x{scale} (architecture `{cfg['arch']}`). Character: fidelity ({cfg['loss'].upper()}). Licence: same as clarifx. Origin: trained here.",
        "",
        "## Architecture",
        f"`clarifx.train.archs.{type(info['model']).__name__}`({json.dumps(cfg['arch_args'])}), scale {scale}: "
        f"{_ARCH_TEXT[type(info['model']).__name__]}. Parameters: {info['params']}.",
        "",
        "## Data",
        f"{info['n_train']} photos of photos/train (fetch-data), each area-downscaled by seeded random factors "
        f"in {cfg['hr_scale_range']} ({cfg['versions_per_photo']} versions per photo) to remove JPEG artefacts; "
        f"random {cfg['patch'] * scale} px HR crops, random flips and 90-degree rotations. "
        f"Validation: {cfg['val_crops']} fixed {cfg['val_size']} px crops of held-out training-set photos "
        f"{cfg['val_photos']} (excluded from training), degraded like the training input with fixed seeds. "
        "photos/misc is used only for the evaluation below.",
        "",
        "## Degradation recipe",
        f"Input = {lr_text}, then (clarifx.train.degrade.degrade_light, each stage drawn with its probability p): {deg}",
        "",
        "## Training",
        f"Command: `{info['command']}`",
        "",
        f"Config: `{json.dumps({k: v for k, v in cfg.items() if k not in ('train_dir', 'eval_dir')})}`",
        "",
        f"{'MSE' if cfg['loss'] == 'mse' else 'L1'} loss, Adam (lr {cfg['lr']} cosine to {cfg['lr_min']}), batch {cfg['batch']}, seed {cfg['seed']}. "
        f"Steps run: {info['steps_done']} (cap {info['steps']}; time limit {info['time_limit']} s), "
        f"{info['train_s'] / 60:.1f} min on {info['device']}.",
        "",
        "## Measured",
        f"Validation (held-out train crops, Y-PSNR, {scale} px shaved): model {info['val_psnr']:.2f} dB, "
        f"{base} {info['val_bicubic']:.2f} dB.",
    ]
    for e in info.get("eval", []):
        lines += [
            "",
            f"photos/misc, condition `{e['condition']}` ({e['n']} images, DESIGN protocol: HR area-downscaled to "
            f"<= {cfg['eval_max_side']} px long side, input = {lr_text} then `{e['condition']}` "
            f"(clarifx.train.degrade.EVAL_CONDITIONS), BT.601 Y-PSNR, {scale} px shaved; mean over images):",
            "",
            *_table(cfg["name"], e, scale),
        ]
    Path(path).write_text("\n".join(lines) + "\n")


def _eval_line(name, e) -> str:
    scale_base = "input" if "input" in e else "bicubic"
    others = " | ".join(f"{k} {e[k]:.3f} / {e[k + '_ssim']:.4f}" for k in e
                        if not k.endswith("_ssim") and k not in ("model", "n", "condition"))
    return (f"photos/misc ({e['n']} images, {e['condition']}): {name} {e['model']:.3f} dB / SSIM "
            f"{e['model_ssim']:.4f} | {others} | gain vs {scale_base} {e['model'] - e[scale_base]:+.3f} dB")


def set_lr(opt, cfg, step: int, steps: int, elapsed: float, time_limit: float | None) -> float:
    """Set and return the learning rate of `step` (from 1): cosine from lr to lr_min over the run's progress,
    the larger of the step and time fractions, so a run its time limit stops still anneals to lr_min."""
    progress = (step - 1) / steps
    if time_limit is not None:
        progress = max(progress, elapsed / time_limit)
    lr_now = cfg["lr_min"] + 0.5 * (cfg["lr"] - cfg["lr_min"]) * (1 + math.cos(math.pi * min(progress, 1.0)))
    for g in opt.param_groups:
        g["lr"] = lr_now
    return lr_now


def train(cfg: dict, out: str | os.PathLike, *, time_limit: float | None = None, log=print, command: str = "") -> dict:
    rng, out, train_paths, val_paths = start_run(cfg, out)
    t0 = time.time()
    pool = build_pool(train_paths, cfg, rng)
    vhr, vlr = val_set(val_paths or train_paths[:1], cfg)
    log(f"data: {len(train_paths)} train photos -> {len(pool)} HR versions, {len(vhr)} val crops ({time.time() - t0:.1f}s)")
    model = archs.build(cfg["arch"], scale=cfg["scale"], **cfg["arch_args"])
    if cfg["init"]:
        from safetensors.torch import load_file

        # a path: the whole model; {"part": path}: that sub-network (e.g. a chain's "stages.0")
        for part, path in (cfg["init"].items() if isinstance(cfg["init"], dict) else [("", cfg["init"])]):
            (model.get_submodule(part) if part else model).load_state_dict(load_file(path))
            log(f"init: {part or 'model'} weights from {path}")
    if cfg["grow"]:
        archs.grow(load_weights(cfg["grow"]), model, seed=cfg["seed"])
        log(f"grow: starts as {cfg['grow']}, widened and deepened")
    params = archs.param_count(model)
    bic = F.interpolate(vlr, scale_factor=cfg["scale"], mode="bicubic", align_corners=False)
    val_bic = _psnr_batch(bic, vhr, cfg["scale"])
    base = _baselines(cfg["scale"])[0]
    log(f"model: {cfg['arch']} {params} params; val {base} {val_bic:.3f} dB")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    steps = int(cfg["steps"])

    losses = []
    best = -1e9
    wpath = out / f"{cfg['name']}.safetensors"
    t_start = time.time()
    step = 0
    val = validate(model, vhr, vlr, cfg["scale"])
    lr_now = cfg["lr"]
    for step in range(1, steps + 1):
        lr_now = set_lr(opt, cfg, step, steps, time.time() - t_start, time_limit)
        hr = sample_batch(pool, cfg, rng)
        lr = make_lr(hr, cfg, rng)
        err = model(lr) - hr
        loss = err.square().mean() if cfg["loss"] == "mse" else err.abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        losses.append(loss.item())
        done = step == steps or (time_limit is not None and time.time() - t_start >= time_limit)
        if step % cfg["val_every"] == 0 or done:
            val = validate(model, vhr, vlr, cfg["scale"])
            log(f"step {step}/{steps} loss {np.mean(losses[-cfg['val_every']:]):.5f} lr {lr_now:.2e} "
                f"val {val:.3f} dB ({base} {val_bic:.3f}) {time.time() - t_start:.0f}s")
            if val > best:
                best = val
                save_weights(model, wpath, cfg, {"val_psnr": f"{val:.4f}", "step": str(step)})
        if done:
            break
    train_s = time.time() - t_start
    if best == -1e9:
        save_weights(model, wpath, cfg, {"val_psnr": f"{val:.4f}", "step": str(step)})
        best = val
    model = load_weights(wpath)
    info = {"model": model, "params": params, "n_train": len(train_paths), "steps": steps, "steps_done": step,
            "train_s": train_s, "device": run_device(), "val_psnr": best, "val_bicubic": val_bic, "losses": losses,
            "command": command, "time_limit": time_limit, "weights": str(wpath)}
    if cfg["eval_misc"] and _eval_paths(cfg):
        info["eval"] = evaluate_all(model, cfg)
        for e in info["eval"]:
            log(_eval_line(cfg["name"], e))
    write_card(out / f"{cfg['name']}.md", cfg, info)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clarifx.train", description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--out", default=None, help="output folder (default: runs/<name>)")
    ap.add_argument("--steps", type=int, default=None, help="override the config's step count (cosine length)")
    ap.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds of training")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: shared machines)")
    ap.add_argument("--no-eval", action="store_true", help="skip the photos/misc evaluation")
    ap.add_argument("--eval-only", metavar="WEIGHTS", default=None,
                    help="no training: evaluate WEIGHTS on the config's eval_dir (photos/misc) and print the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m clarifx.train " + " ".join(argv if argv is not None else sys.argv[1:])
    cfg = load_config(args.config)
    if cfg["task"] == "fusion":
        if args.eval_only:
            raise SystemExit(f"{args.config}: --eval-only evaluates image models; the fusion weights are "
                             "measured by benchmarks/temporal.py")
        from . import fusion

        train_fn = fusion.train
    else:
        train_fn = train
    if args.eval_only:
        for e in evaluate_all(load_weights(args.eval_only), cfg):
            print(_eval_line(cfg["name"], e), flush=True)
        return 0
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.no_eval:
        cfg["eval_misc"] = False
    out = args.out or os.path.join("runs", cfg["name"])
    train_fn(cfg, out, time_limit=args.time_limit, log=lambda s: print(s, flush=True), command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
