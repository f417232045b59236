"""clarifx.train: a tiny seeded smoke run of the trainer, weights round trip, the fast arch budget."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from clarifx.train import archs  # noqa: E402
from clarifx.train.__main__ import load_config, load_weights, main, save_weights, val_set, validate  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "python" / "clarifx" / "train" / "configs"


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """A few small real photographs (scikit-image's bundled samples), so the smoke run needs no fetch."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    (root / "train").mkdir()
    (root / "misc").mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(root / "train" / f"{name}.png")
    Image.fromarray(data.rocket()).save(root / "misc" / "rocket.png")
    return root


def _tiny_config(tmp_path, photo_dir, **over):
    cfg = {
        "name": "tiny-x2", "arch": "fast", "arch_args": {"channels": 16, "blocks": 2}, "scale": 2, "seed": 3,
        "train_dir": str(photo_dir / "train"), "eval_dir": str(photo_dir / "misc"), "val_photos": ["chelsea.png"],
        "val_crops": 4, "val_size": 48, "versions_per_photo": 1, "patch": 24, "batch": 8, "steps": 80,
        "lr": 3e-3, "lr_min": 1e-4, "val_every": 40, "eval_misc": True, "eval_max_side": 128,
    }
    cfg.update(over)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("name", ["fast-x2", "fast-x4"])
def test_fast_configs_are_within_the_parameter_budget(name):
    cfg = load_config(CONFIGS / f"{name}.json")
    model = archs.build(cfg["arch"], scale=cfg["scale"], **cfg["arch_args"])
    n = archs.param_count(model)
    assert 20_000 < n <= 100_000
    # starts as the bicubic residual base: zero-initialised last conv
    x = torch.rand(1, 3, 8, 8)
    base = torch.nn.functional.interpolate(x, scale_factor=cfg["scale"], mode="bicubic", align_corners=False)
    torch.testing.assert_close(model(x), base)


def test_unknown_arch_and_config_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match="arch"):
        archs.build("nope")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "loss": "l3"}))
    with pytest.raises(ValueError, match=r"bad.json: loss 'l3' is not 'l1' or 'mse'"):
        load_config(path)


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_smoke_run_lowers_loss_and_weights_reload(tmp_path, photo_dir, capsys, loss):
    torch.set_num_threads(1)
    cfg_path = _tiny_config(tmp_path, photo_dir, loss=loss)
    out = tmp_path / "run"
    assert main([str(cfg_path), "--out", str(out), "--steps", "60"]) == 0
    log = capsys.readouterr().out
    losses = [float(line.split("loss ")[1].split()[0]) for line in log.splitlines() if line.startswith("step ")]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    assert "photos/misc (1 images, clean)" in log

    wpath = out / "tiny-x2.safetensors"
    card = (out / "tiny-x2.md").read_text()
    assert "python -m clarifx.train" in card and "| bicubic |" in card and "Parameters:" in card
    assert f"{loss.upper()} loss, Adam" in card
    model = load_weights(wpath)
    # the reloaded weights reproduce the validation figure recorded at save time
    from safetensors import safe_open

    with safe_open(str(wpath), "pt") as f:
        recorded = float(f.metadata()["val_psnr"])
    cfg = load_config(cfg_path)
    vhr, vlr = val_set([str(photo_dir / "train" / "chelsea.png")], cfg)
    assert validate(model, vhr, vlr, 2) == pytest.approx(recorded, abs=1e-3)
    assert main([str(cfg_path), "--eval-only", str(wpath)]) == 0
    line = capsys.readouterr().out
    assert "tiny-x2" in line and "SSIM" in line and "lanczos3" in line
    # and the network learned something beyond its bicubic starting point
    assert any(p.abs().sum() > 0 for p in model.body[-1].parameters())


def _saved_random_model(path, arch: str, scale: int, std: float, **arch_args):
    """A network of `arch` with random weights (from torch's current seed), saved as the trainer saves."""
    model = archs.build(arch, scale=scale, **arch_args)
    for p in model.parameters():
        p.data.normal_(0, std)
    save_weights(model, path, {"arch": arch, "arch_args": arch_args, "scale": scale, "name": path.stem})
    return model


def test_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = _saved_random_model(tmp_path / "t.safetensors", "fast", 2, 0.1, channels=8, blocks=1)
    again = load_weights(tmp_path / "t.safetensors")
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_seeded_runs_are_identical(tmp_path, photo_dir):
    torch.set_num_threads(1)
    cfg_path = _tiny_config(tmp_path, photo_dir, eval_misc=False, steps=6, val_every=3)
    from safetensors.torch import load_file

    outs = []
    for k in range(2):
        main([str(cfg_path), "--out", str(tmp_path / f"r{k}")])
        outs.append(load_file(str(tmp_path / f"r{k}" / "tiny-x2.safetensors")))
    assert outs[0].keys() == outs[1].keys()
    for name in outs[0]:
        assert torch.equal(outs[0][name], outs[1][name]), name


def test_light_degradations_in_the_trainer_keep_the_lr_size():
    from clarifx.train.__main__ import DEFAULTS, make_lr

    hr = torch.rand(3, 3, 32, 32)
    cfg = {**DEFAULTS, "degrade": {"noise": {"p": 1.0, "sigma_range": [5, 5], "gaussian_prob": 1.0}}}
    rng = np.random.default_rng(0)
    lr = make_lr(hr, cfg, rng)
    clean = make_lr(hr, {**cfg, "degrade": None}, rng)
    assert lr.shape == clean.shape == (3, 3, 16, 16)
    assert 1 / 255 < (lr - clean).abs().mean() < 8 / 255


def test_a_restore_run_starts_from_init_weights_and_reports_per_condition(tmp_path, photo_dir, capsys):
    """A second stage: `init` loads the first stage's weights (the model then starts where it ended, not
    at the identity), and the evaluation runs every named condition against the degraded input."""
    torch.set_num_threads(1)
    torch.manual_seed(1)
    first = _saved_random_model(tmp_path / "stage1.safetensors", "restore", 1, 0.05, channels=8, blocks=1)
    degrade_cfg = {"noise": {"p": 1.0, "gaussian_prob": 1.0, "sigma_range": [10, 20]}}
    cfg_path = _tiny_config(tmp_path, photo_dir, name="tiny-x1", task="restore", arch="restore",
                            arch_args={"channels": 8, "blocks": 1}, scale=1, patch=32, lr=1e-9, lr_min=1e-9,
                            steps=2, val_every=1, degrade=degrade_cfg, init=str(tmp_path / "stage1.safetensors"),
                            eval_conditions=["clean", "noise15"])
    assert main([str(cfg_path), "--out", str(tmp_path / "run")]) == 0
    log = capsys.readouterr().out
    assert "init: model weights from" in log
    assert "photos/misc (1 images, clean)" in log and "photos/misc (1 images, noise15)" in log
    after = load_weights(tmp_path / "run" / "tiny-x1.safetensors")
    for (name, a), b in zip(first.state_dict().items(), after.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    card = (tmp_path / "run" / "tiny-x1.md").read_text()
    assert "condition `noise15`" in card and "| input |" in card


def test_a_chain_starts_as_its_stages_and_must_add_up_to_its_scale(tmp_path, photo_dir, capsys):
    """`init: {"stages.0": path, ...}` loads trained models into a chain's stages (the x4 fidelity model
    starts as two fast x2 models); before training moves anything it gives exactly their chained output."""
    torch.set_num_threads(1)
    torch.manual_seed(2)
    fast_args = {"channels": 8, "blocks": 1, "base": "bicubic"}
    fast = _saved_random_model(tmp_path / "fast.safetensors", "fast", 2, 0.05, **fast_args)
    stage = {"arch": "fast", "scale": 2, "args": fast_args}
    cfg_path = _tiny_config(tmp_path, photo_dir, name="tiny-chain", arch="chain", arch_args={"stages": [stage, stage]},
                            scale=4, patch=16, lr=1e-9, lr_min=1e-9, steps=2, val_every=1, grad_clip=0.1,
                            init={"stages.0": str(tmp_path / "fast.safetensors"),
                                  "stages.1": str(tmp_path / "fast.safetensors")})
    assert main([str(cfg_path), "--out", str(tmp_path / "run"), "--no-eval"]) == 0
    assert f"init: stages.1 weights from {tmp_path / 'fast.safetensors'}" in capsys.readouterr().out
    chain = load_weights(tmp_path / "run" / "tiny-chain.safetensors")
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(chain(x), fast(fast(x)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="stages upscale by 2, not by the model's scale 4"):
        archs.build("chain", scale=4, stages=[stage])


@pytest.mark.parametrize("scale, small, big", [(2, (8, 1), (12, 3)), (4, (6, 2), (6, 5)), (2, (5, 0), (9, 2))])
def test_a_grown_fast_model_starts_as_the_small_one_and_then_trains_apart(tmp_path, photo_dir, capsys,
                                                                          scale, small, big):
    """`grow: path` starts a wider/deeper FastSR exactly as a trained smaller one (fidelity-x2 grows from
    fast-x2), and the copies of a channel do not stay copies once training moves them."""
    torch.set_num_threads(1)
    torch.manual_seed(3)
    args = {"base": "bicubic"}
    path = tmp_path / "small.safetensors"
    small_net = _saved_random_model(path, "fast", scale, 0.1, channels=small[0], blocks=small[1], **args)
    cfg_path = _tiny_config(tmp_path, photo_dir, name="tiny-grown", arch="fast", scale=scale, patch=16,
                            arch_args={"channels": big[0], "blocks": big[1], **args}, grow=str(path),
                            lr=1e-9, lr_min=1e-9, steps=1, val_every=1)
    assert main([str(cfg_path), "--out", str(tmp_path / "run"), "--no-eval"]) == 0
    assert f"grow: starts as {path}" in capsys.readouterr().out
    grown = load_weights(tmp_path / "run" / "tiny-grown.safetensors")
    x = torch.rand(2, 3, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), small_net(x), atol=1e-5, rtol=0)
    # a copied channel (same weights in as its original) gets a different gradient: they train apart
    (grown(x) - torch.rand_like(grown(x))).square().mean().backward()
    w, grad = grown.body[0].weight, grown.body[0].weight.grad
    for j in range(small[0], big[0]):
        c = next(c for c in range(small[0]) if torch.equal(w[j], w[c]))
        assert not torch.allclose(grad[j], grad[c], rtol=1e-3, atol=0), (j, c)
    with pytest.raises(ValueError, match="grow: cannot grow a FastSR x2 8x1"):
        archs.grow(archs.build("fast", scale=2, channels=8, blocks=1), archs.build("fast", scale=2, channels=4, blocks=1))


def test_every_embedded_model_has_the_config_it_was_trained_from_and_fits_the_size_budget():
    from safetensors import safe_open

    from clarifx import models

    embedded = [c for c in models.CARDS.values() if c.embedded]
    names = {"fast-x2", "fast-x4", "fidelity-x2", "fidelity-x4", "restore-x1", "deblock-x1", "denoise-x2"}
    assert names <= {c.name for c in embedded}
    total = 0
    for c in embedded:
        path = models.installed_path(c.name)
        cfg = load_config(CONFIGS / f"{c.name}.json")
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        assert (meta["name"], meta["arch"], json.loads(meta["arch_args"]), int(meta["scale"])) == \
            (c.name, cfg["arch"], cfg["arch_args"], cfg["scale"]), c.name
        assert cfg["scale"] == c.scale and (path.with_suffix(".md")).exists()
        total += path.stat().st_size
    assert total <= 10 * 1024 * 1024  # issue 4: the embedded weights stay under 10 MB together
