"""Denoise and Deblock: the RestoreNet architecture, the embedded restore-x1 and deblock-x1 models through
the nodes and the CLI.

Ground truth is a real photograph (scikit-image's astronaut); the inputs are made from it with the
same degradations the model card measures (clarifx.train.degrade), so every gain is against the clean
original, never against the model's own output.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")

import clarifx  # noqa: E402
from clarifx.frame import SRGB  # noqa: E402
from clarifx import cli, models  # noqa: E402
from clarifx.imageio import read_image, write_image  # noqa: E402
from clarifx.metrics import psnr_y  # noqa: E402
from clarifx.train import archs, degrade  # noqa: E402


@pytest.mark.parametrize("scale", [1, 2])
def test_restore_net_starts_as_the_identity_or_bicubic_at_any_size(scale):
    net = archs.build("restore", scale=scale, channels=8, blocks=1)
    x = torch.rand(2, 3, 17, 31)
    base = x if scale == 1 else torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic",
                                                                align_corners=False)
    torch.testing.assert_close(net(x), base)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    out = net(x)
    assert out.shape == (2, 3, 17 * scale, 31 * scale) and not torch.allclose(out, base, atol=1e-3)
    # odd sizes are padded inside, so a crop of the output equals the output of the crop away from edges
    torch.testing.assert_close(net(x[..., :16, :30])[..., :8 * scale, :20 * scale], out[..., :8 * scale, :20 * scale])


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skdata.astronaut()[96:352, 128:384].astype(np.float32) / 255.0)


def _through_node(tmp_path, src: np.ndarray, name: str, node: str = "Denoise", **params) -> np.ndarray:
    """src -> 16-bit PNG -> Read -> node -> Write (float EXR in the node's own sRGB, unclipped) -> pixels."""
    inp, out = tmp_path / f"{name}-in.png", tmp_path / f"{name}-out.exr"
    write_image(inp, src, dtype="uint16")
    g = clarifx.Graph()
    node = g.create(node, g.create("Read", file=str(inp)), **params)
    g.render(g.create("Write", node, file=str(out), dtype="float", colorspace=SRGB), progress=False)
    return read_image(out)[:, :, :3]


def _q16(img):
    return np.round(np.clip(img, 0, 1) * 65535) / 65535


# Gains measured on this crop at commit time: noise15 +4.2, noise10+poisson +3.5, jpeg20 +0.4, h264-crf35 +0.13 dB
# (the model card has photos/misc); deblocking is far from its target yet, but must never make things worse.
@pytest.mark.parametrize("condition, gain", [("noise15", 3.0), ("noise10+poisson", 2.5), ("jpeg20", 0.2),
                                             ("h264-crf35", 0.0)])
def test_restore_x1_removes_noise_and_some_compression(tmp_path, photo, condition, gain):
    bad = degrade.EVAL_CONDITIONS[condition](photo, np.random.default_rng(0))
    out = _through_node(tmp_path, bad, condition)
    before, after = psnr_y(_q16(bad), photo, shave=1), psnr_y(np.clip(out, 0, 1), photo, shave=1)
    assert after >= before + gain, (condition, before, after)


def test_restore_x1_leaves_a_clean_photo_alone(tmp_path, photo):
    out = np.clip(_through_node(tmp_path, photo, "clean"), 0, 1)
    assert psnr_y(out, photo, shave=1) >= 40.0
    assert np.abs(out - _q16(photo)).mean() < 2.0 / 255


# Gains measured on this crop at commit time: jpeg20 +1.02, h264-crf35 +0.47 dB, clean back at 44.7 dB
# (photos/misc: the model card); restore-x1 gives +0.40 and +0.13 here, and the clean crop back at 43.5.
@pytest.mark.parametrize("condition, gain", [("jpeg20", 0.8), ("h264-crf35", 0.35)])
def test_deblock_x1_removes_compression_artefacts(tmp_path, photo, condition, gain):
    bad = degrade.EVAL_CONDITIONS[condition](photo, np.random.default_rng(0))
    out = _through_node(tmp_path, bad, condition, node="Deblock")
    before, after = psnr_y(_q16(bad), photo, shave=1), psnr_y(np.clip(out, 0, 1), photo, shave=1)
    assert after >= before + gain, (condition, before, after)


def test_deblock_x1_leaves_a_clean_photo_nearly_untouched(tmp_path, photo):
    out = np.clip(_through_node(tmp_path, photo, "clean", node="Deblock"), 0, 1)
    assert psnr_y(out, photo, shave=1) >= 44.2


def test_cli_deblock_cleans_a_real_jpeg_file(tmp_path, photo, capsys):
    from PIL import Image

    src, out = tmp_path / "shot.jpg", tmp_path / "clean.png"
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(src, quality=20)
    assert cli.main(["deblock", str(src), str(out), "--quiet"]) == 0
    before, after = psnr_y(read_image(src)[:, :, :3], photo), psnr_y(read_image(out)[:, :, :3], photo)
    assert after >= before + 0.8, (before, after)
    assert cli.main(["deblock", str(src), str(tmp_path / "x.png"), "--model", "fast-x2", "--quiet"]) == 1
    assert "Deblock: model 'fast-x2' changes the size by 2" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_strength_scales_the_correction(tmp_path, photo):
    bad = _q16(degrade.EVAL_CONDITIONS["noise15"](photo, np.random.default_rng(1)))
    full = _through_node(tmp_path, bad, "full", strength=1.0)
    half = _through_node(tmp_path, bad, "half", strength=0.5)
    none = _through_node(tmp_path, bad, "none", strength=0.0)
    np.testing.assert_allclose(none, bad, atol=1e-6)
    np.testing.assert_allclose(half, bad + 0.5 * (full - bad), atol=1e-5)


def test_denoise_refuses_a_model_that_changes_the_size(tmp_path, photo):
    with pytest.raises(ValueError, match="Denoise: model 'fast-x2' changes the size by 2"):
        _through_node(tmp_path, photo[:32, :32], "sr", model="fast-x2")


def test_cli_denoise_cleans_a_noisy_photo(tmp_path, photo, capsys):
    src, out = tmp_path / "shot.png", tmp_path / "clean.png"
    write_image(src, degrade.EVAL_CONDITIONS["noise15"](photo, np.random.default_rng(2)))
    assert cli.main(["denoise", str(src), str(out), "--quiet"]) == 0
    before, after = psnr_y(read_image(src)[:, :, :3], photo), psnr_y(read_image(out)[:, :, :3], photo)
    assert after >= before + 3.0
    assert cli.main(["denoise", str(src), str(tmp_path / "x.png"), "--strength", "3"]) == 1
    assert "--strength 3: must be between 0 and 2" in capsys.readouterr().err


def test_embedded_restore_models_are_registered_with_their_tasks():
    rows = {m["name"]: m for m in models.list_models()}
    assert rows["restore-x1"]["task"] == "denoise+deblock" and rows["restore-x1"]["scale"] == 1
    assert rows["denoise-x2"]["task"] == "joint" and rows["denoise-x2"]["scale"] == 2
    assert rows["deblock-x1"]["task"] == "deblock" and rows["deblock-x1"]["scale"] == 1
    for name in ("restore-x1", "denoise-x2", "deblock-x1"):
        assert rows[name]["installed"] and rows[name]["parameters"] == archs.param_count(models.load(name))


def test_a_frame_without_rgb_is_named_with_its_node_and_number():
    from clarifx.frame import Frame
    from clarifx.nodes.restore import Denoise

    frame = Frame(pixels=np.zeros((8, 8, 2), np.float32), channels=("Y", "A"), colorspace=SRGB, number=12)
    params = {"model": "restore-x1", "strength": 1.0, "tile": 0, "precision": "fp32", "device": "cpu"}
    with pytest.raises(ValueError, match=r"Denoise: needs R, G and B channels, frame 12 has \('Y', 'A'\)"):
        Denoise().render(params, 12, [{12: frame}])
