"""The model registry, `clarifx models`, and the SuperResolution node with an imported model."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clarifx
from clarifx import cli, kernels, models
from clarifx.imageio import read_image, write_image
from clarifx.metrics import psnr_y

MODELS = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data")) / "models"


def test_models_list_shows_every_card(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLARIFX_MODELS", str(tmp_path))
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name, c in models.CARDS.items():
        line = next(row for row in out.splitlines() if row.startswith(name + " "))
        assert c.licence in line and str(c.scale) in line
        assert ("(not installed)" in line) != c.embedded  # embedded models ship with clarifx


def test_unknown_and_uninstalled_models_are_one_line_errors(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.float32))
    env = {**os.environ, "CLARIFX_MODELS": str(tmp_path / "none")}
    for model, scale, message in (("nope", 2, "unknown model 'nope'"),
                                  ("realesrgan-x4plus", 2, "upscales by 4, not 2"),
                                  ("waifu2x-photo-x2", 2, "is not installed")):
        r = subprocess.run([sys.executable, "-m", "clarifx.cli", "upscale", str(tmp_path / "a.png"),
                            str(tmp_path / "b.png"), "--scale", str(scale), "--model", model],
                           capture_output=True, text=True, env=env)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and message in lines[0], r.stderr
    r = subprocess.run([sys.executable, "-m", "clarifx.cli", "models", "install", "waifu2x-photo-x2", "--from",
                        str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "scale2.0x_model.param: not found" in r.stderr


@pytest.fixture
def waifu2x(tmp_path, monkeypatch):
    folder = MODELS / "waifu2x-photo"
    if not (folder / "scale2.0x_model.param").exists():
        pytest.skip(f"{folder} is missing (run ../shared/scripts/fetch-data)")
    monkeypatch.setenv("CLARIFX_MODELS", str(tmp_path / "models"))
    assert cli.main(["models", "install", "waifu2x-photo-x2", "--from", str(folder)]) == 0
    return models.load("waifu2x-photo-x2")


def _photo_pair(tmp_path, scale=2):
    """HR: a real photo crop; LR: its antialiased bicubic reduction by `scale`, stored as 16-bit sRGB PNG."""
    from skimage import data

    hr = (data.astronaut()[40:136, 180:276] / 255.0).astype(np.float32)
    lr = np.clip(kernels.resample(hr, (96 // scale, 96 // scale), filter="bicubic"), 0, 1)
    write_image(tmp_path / "lr.png", lr, dtype="uint16")
    return hr, read_image(tmp_path / "lr.png")


def _psnr_against_lanczos(tmp_path, model: str, scale=2) -> tuple[float, float]:
    """Y-PSNR against the real HR photo of `model` and of Lanczos, both run through `clarifx upscale`."""
    hr, _ = _photo_pair(tmp_path, scale)
    scores = []
    for name in (model, "lanczos"):
        assert cli.main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / f"{name}.png"), "--scale", str(scale),
                         "--model", name, "--dtype", "uint16", "--quiet"]) == 0
        b = scale
        scores.append(psnr_y(read_image(tmp_path / f"{name}.png")[b:-b, b:-b], hr[b:-b, b:-b]))
    return scores[0], scores[1]


def test_an_imported_model_restores_more_than_lanczos(tmp_path, waifu2x):
    row = next(m for m in models.list_models() if m["name"] == "waifu2x-photo-x2")
    assert row["installed"] and row["parameters"] > 100_000
    learned, lanczos = _psnr_against_lanczos(tmp_path, "waifu2x-photo-x2")
    assert learned > lanczos + 0.5, (learned, lanczos)


def test_the_node_runs_the_model_as_is_tiled_or_not(tmp_path, waifu2x):
    import torch

    from clarifx.models.tiling import run_tiled

    _, lr = _photo_pair(tmp_path)
    g = clarifx.Graph()
    r = g.create("Read", file=str(tmp_path / "lr.png"))
    for name, tile in (("w.exr", 0), ("t.exr", 20)):  # written as the model made it: sRGB-encoded float
        g.create("Write", g.create("SuperResolution", r, model="waifu2x-photo-x2", tile=tile),
                 file=str(tmp_path / name), dtype="float", colorspace="srgb_tx")
    g.render(progress=False)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None]
    expected = run_tiled(waifu2x, x, scale=2, tile=None, overlap=0, border=waifu2x.border)[0].permute(1, 2, 0)
    whole, tiled = read_image(tmp_path / "w.exr"), read_image(tmp_path / "t.exr")
    assert whole.shape == (96, 96, 3)
    np.testing.assert_allclose(whole, expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(tiled, whole, atol=1e-3)


def test_forensic_mode_reduces_back_to_the_input_and_records_provenance(tmp_path, waifu2x):
    import hashlib

    from clarifx.footage import probe

    _, lr = _photo_pair(tmp_path)
    write_image(tmp_path / "lr.exr", lr, dtype="float")  # float in and out: the constraint is not quantised
    for out in ("f.exr", "f.mkv"):
        assert cli.main(["upscale", str(tmp_path / "lr.exr"), str(tmp_path / out), "--scale", "2", "--model",
                         "waifu2x-photo-x2", "--mode", "forensic", "--quiet"] + (["--dtype", "float"] if
                                                                                   out.endswith("exr") else [])) == 0
    sr = read_image(tmp_path / "f.exr")
    from clarifx import colour
    from clarifx.frame import LINEAR, SRGB

    # The model worked in sRGB; the constraint holds there (the EXR is linear, as EXRs are).
    assert probe(tmp_path / "f.exr").colorspace == LINEAR
    sr_srgb = colour.convert(clarifx.Frame(sr.copy(), ("R", "G", "B"), LINEAR), SRGB).pixels
    lr_srgb = colour.convert(clarifx.Frame(lr.copy(), ("R", "G", "B"), LINEAR), SRGB).pixels
    rms = np.sqrt(np.mean((kernels.resample(sr_srgb, lr.shape[:2], filter="bicubic") - lr_srgb) ** 2))
    assert rms <= 0.5 / 255
    restored = tmp_path / "r.exr"
    assert cli.main(["upscale", str(tmp_path / "lr.exr"), str(restored), "--scale", "2", "--model",
                     "waifu2x-photo-x2", "--dtype", "float", "--quiet"]) == 0
    assert not np.allclose(read_image(restored), sr, atol=1e-3)  # forensic mode changed something
    sha = hashlib.sha256(models.installed_path("waifu2x-photo-x2").read_bytes()).hexdigest()
    for out in ("f.exr", "f.mkv"):
        tags = probe(tmp_path / out).tags
        assert tags["clarifx:model"] == "waifu2x-photo-x2" and tags["clarifx:weights_sha256"] == sha
        assert tags["clarifx:mode"] == "forensic" and tags["clarifx:version"] == clarifx.__version__


@pytest.mark.parametrize("name, scale", [("fast-x2", 2), ("fast-x4", 4)])
def test_the_embedded_fast_models_ship_installed_and_beat_lanczos(tmp_path, monkeypatch, name, scale):
    monkeypatch.setenv("CLARIFX_MODELS", str(tmp_path / "empty"))
    row = next(m for m in models.list_models() if m["name"] == name)
    assert row["installed"] and 50_000 < row["parameters"] <= 100_000 and "trained here" in row["origin"]
    assert row["scale"] == scale and row["character"] == "fast"
    assert models.install(name) == models.installed_path(name)  # nothing to convert
    learned, lanczos = _psnr_against_lanczos(tmp_path, name, scale)
    assert learned > lanczos + 0.5, (learned, lanczos)


@pytest.mark.parametrize("name, scale", [("fidelity-x2", 2), ("fidelity-x4", 4)])
def test_the_embedded_fidelity_models_beat_lanczos_and_answer_to_their_family_name(tmp_path, monkeypatch,
                                                                                   name, scale):
    monkeypatch.setenv("CLARIFX_MODELS", str(tmp_path / "empty"))
    row = next(m for m in models.list_models() if m["name"] == name)
    assert row["installed"] and row["scale"] == scale and "trained here" in row["origin"]
    learned, lanczos = _psnr_against_lanczos(tmp_path, "fidelity", scale)  # `--model fidelity` at this scale
    assert learned > lanczos + 0.5, (learned, lanczos)
    assert cli.main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / "full.png"), "--scale", str(scale),
                     "--model", name, "--dtype", "uint16", "--quiet"]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "full.png"), read_image(tmp_path / "fidelity.png"))


def test_a_family_name_without_a_model_at_that_scale_is_named():
    assert models.for_scale("fidelity", 4) == "fidelity-x4" and models.for_scale("fast", 2) == "fast-x2"
    assert models.for_scale("fast", 4) == "fast-x4" and models.for_scale("fidelity", 2) == "fidelity-x2"
    assert models.for_scale("waifu2x-photo-x2", 2) == "waifu2x-photo-x2"  # other names pass through
    with pytest.raises(ValueError, match="--model fast: no embedded fast model upscales by 3"):
        models.for_scale("fast", 3)
