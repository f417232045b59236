"""Users' own checkpoints (.pth, .safetensors) through spandrel: CLI, Graph, and refusals (models/user.py).

The checkpoints are real: built with spandrel's own architecture classes (random weights, seeded) and
saved the way people save them; clarifx's output is compared with spandrel running the same file."""

import importlib.util
import pickle
import re
import sys
import warnings

import numpy as np
import pytest

# find_spec, not pytest.importorskip: importing spandrel needs clarifx's torchvision stand-in (models/user.py)
if importlib.util.find_spec("spandrel") is None:
    pytest.skip("spandrel is not installed (pip install --no-deps spandrel einops)", allow_module_level=True)
torch = pytest.importorskip("torch")

import clarifx  # noqa: E402
from clarifx import cli, kernels, models  # noqa: E402
from clarifx.imageio import read_image, write_image  # noqa: E402
from clarifx.models import user  # noqa: E402

spandrel = user._spandrel("tests")  # imported the way clarifx imports it (torchvision shim when absent)
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SPAN import SPAN  # noqa: E402

ARCHS = {  # small but real: the layouts people's checkpoints have, with fewer blocks and features
    "esrgan-x4": (lambda: ESRGAN(num_filters=16, num_blocks=1, scale=4), 4),
    "compact-x2": (lambda: Compact(num_feat=16, num_conv=4, upscale=2), 2),
    "span-x2": (lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2), 2),
    "compact-x1": (lambda: Compact(num_feat=16, num_conv=4, upscale=1), 1),
}


def _checkpoint(tmp_path, arch: str, suffix: str):
    """A checkpoint file of `arch` (seeded random weights) and the state dict it holds."""
    from safetensors.torch import save_file

    torch.manual_seed(sorted(ARCHS).index(arch))
    net = ARCHS[arch][0]()
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / f"{arch}{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    elif arch == "esrgan-x4":  # as RealESRGAN_x4plus.pth is: BasicSR's names, under params_ema
        torch.save({"params_ema": _basicsr_names(state)}, path)
    else:
        torch.save({"params_ema": state}, path)
    return path, state


def _basicsr_names(state):
    """ESRGAN weights under BasicSR's RRDBNet names (conv_first, body.N.rdbM.convK, conv_up1, ...)."""
    blocks = sum(1 for k in state if re.fullmatch(r"model\.1\.sub\.\d+\.RDB1\.conv1\.0\.weight", k))
    named = {"model.0": "conv_first", f"model.1.sub.{blocks}": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    out = {}
    for key, value in state.items():
        rdb = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key)
        prefix, kind = key.rsplit(".", 1)
        out[f"body.{rdb[1]}.rdb{rdb[2]}.conv{rdb[3]}.{rdb[4]}" if rdb else f"{named[prefix]}.{kind}"] = value
    assert len(out) == len(state)
    return out


def _photo(tmp_path):
    """A real photo crop as a 16-bit sRGB PNG, and the exact values clarifx reads from it."""
    from skimage import data

    img = (data.astronaut()[40:136, 180:276] / 255.0).astype(np.float32)
    lr = np.clip(kernels.resample(img, (40, 40), filter="bicubic"), 0, 1)
    write_image(tmp_path / "lr.png", lr, dtype="uint16")
    return tmp_path / "lr.png", read_image(tmp_path / "lr.png")


def _spandrel_output(state, lr):
    """What spandrel itself makes of the image: its loader and its call API."""
    desc = spandrel.ModelLoader().load_from_state_dict(state)
    with torch.inference_mode():
        return desc(torch.from_numpy(lr).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


def _write_float(tmp_path, name):  # clarifx's output as the model made it: sRGB-encoded float
    return ["--dtype", "float", "--colorspace", "srgb_tx", "--quiet"], tmp_path / name


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_cli_upscale_runs_a_checkpoint_as_spandrel_does(tmp_path, suffix):
    lr_path, lr = _photo(tmp_path)
    path, state = _checkpoint(tmp_path, "esrgan-x4", suffix)
    flags, out = _write_float(tmp_path, "sr.exr")
    assert cli.main(["upscale", str(lr_path), str(out), "--scale", "4", "--model", str(path)] + flags) == 0
    got, expected = read_image(out), _spandrel_output(state, lr)
    assert got.shape == (160, 160, 3) and expected.std() > 0.01  # a real picture, not a constant
    assert np.abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("arch,suffix", [("span-x2", ".pth"), ("compact-x2", ".safetensors")])
def test_graph_super_resolution_takes_a_checkpoint_path(tmp_path, arch, suffix):
    lr_path, lr = _photo(tmp_path)
    path, state = _checkpoint(tmp_path, arch, suffix)
    g = clarifx.Graph()
    sr = g.create("SuperResolution", g.create("Read", file=str(lr_path)), model=str(path))
    g.create("Write", sr, file=str(tmp_path / "sr.exr"), dtype="float", colorspace="srgb_tx")
    g.render(progress=False)
    got, expected = read_image(tmp_path / "sr.exr"), _spandrel_output(state, lr)
    assert got.shape == (80, 80, 3)
    # The node runs a channels-last copy (models/precision.py), which sums in another order than spandrel's
    # own run; the untrained weights here make activations large.
    assert np.abs(got - expected).max() <= 5e-5
    net = models.load(str(path))
    assert (net.scale, net.border, net.training) == (2, 0, False)


def test_tiled_output_equals_untiled_for_a_checkpoint(tmp_path):
    # the tiler measures the net's receptive field through the wrapper (copied to float64) to size the overlap
    lr_path, _ = _photo(tmp_path)
    path, _ = _checkpoint(tmp_path, "compact-x2", ".pth")
    g = clarifx.Graph()
    r = g.create("Read", file=str(lr_path))
    for name, tile in (("whole.exr", 0), ("tiled.exr", 24)):  # 24 >= 2 * its overlap (12)
        g.create("Write", g.create("SuperResolution", r, model=str(path), tile=tile),
                 file=str(tmp_path / name), dtype="float", colorspace="srgb_tx")
    g.render(progress=False)
    np.testing.assert_allclose(read_image(tmp_path / "tiled.exr"), read_image(tmp_path / "whole.exr"), atol=1e-5)


def test_int8_quantizes_the_checkpoints_own_network(tmp_path):
    # precision.prepare deep-copies the wrapper; the copied descriptor must call the quantized copy
    lr_path, _ = _photo(tmp_path)
    path, _ = _checkpoint(tmp_path, "compact-x2", ".pth")
    g = clarifx.Graph()
    r = g.create("Read", file=str(lr_path))
    for name, precision in (("fp32.exr", "fp32"), ("int8.exr", "int8")):
        g.create("Write", g.create("SuperResolution", r, model=str(path), precision=precision, device="cpu"),
                 file=str(tmp_path / name), dtype="float", colorspace="srgb_tx")
    g.render(progress=False)
    diff = np.abs(read_image(tmp_path / "int8.exr") - read_image(tmp_path / "fp32.exr")).max()
    assert 0 < diff < 0.02, diff


def test_cli_denoise_runs_a_same_size_checkpoint(tmp_path):
    lr_path, lr = _photo(tmp_path)
    path, state = _checkpoint(tmp_path, "compact-x1", ".pth")
    flags, out = _write_float(tmp_path, "dn.exr")
    assert cli.main(["denoise", str(lr_path), str(out), "--model", str(path)] + flags) == 0
    got, expected = read_image(out), _spandrel_output(state, lr)
    assert got.shape == lr.shape
    assert np.abs(got - expected).max() <= 1e-5


def _error(capsys, argv) -> str:
    """The CLI's one error line for `argv` (asserting it failed with exactly one line)."""
    assert cli.main(argv + ["--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_wrong_scale_is_refused_naming_the_models_scale(tmp_path, capsys):
    lr_path, _ = _photo(tmp_path)
    path, _ = _checkpoint(tmp_path, "esrgan-x4", ".safetensors")
    line = _error(capsys, ["upscale", str(lr_path), str(tmp_path / "o.png"), "--scale", "2", "--model", str(path)])
    assert f"--model {path} upscales by 4, not 2" in line
    path, _ = _checkpoint(tmp_path, "esrgan-x4", ".pth")
    line = _error(capsys, ["denoise", str(lr_path), str(tmp_path / "o.png"), "--model", str(path)])
    assert "changes the size by 4" in line and str(path) in line
    assert not (tmp_path / "o.png").exists()


class Payload:
    """A pickled object whose loading runs code: unpickling it opens (creates) `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_code_is_refused_and_never_runs(tmp_path, capsys):
    proof = pickle.loads(pickle.dumps(Payload(tmp_path / "proof")))  # the payload is live under plain pickle
    proof.close()
    assert (tmp_path / "proof").exists()

    lr_path, _ = _photo(tmp_path)
    _, state = _checkpoint(tmp_path, "compact-x2", ".pth")
    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted.pth"
    torch.save({"params_ema": state, "extra": Payload(marker)}, crafted)
    whole = tmp_path / "whole-model.pth"  # torch.save(model): the classic pickle that needs its code
    torch.save(ARCHS["compact-x2"][0](), whole)
    for path, what in ((crafted, "io.open"), (whole, "spandrel.architectures.")):
        line = _error(capsys, ["upscale", str(lr_path), str(tmp_path / "o.png"), "--scale", "2",
                               "--model", str(path)])
        assert str(path) in line and "pickled Python objects" in line and what in line, line
    with pytest.raises(ValueError, match="refused"):
        models.load(str(crafted))
    assert not marker.exists()


def test_wrong_channels_unknown_architectures_and_missing_files_are_one_line_errors(tmp_path, capsys):
    lr_path, _ = _photo(tmp_path)
    grey = tmp_path / "grey.pth"
    torch.manual_seed(0)
    torch.save(Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2).state_dict(), grey)
    unknown = tmp_path / "unknown.safetensors"
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(4, 4)}, str(unknown))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated; people still have such files
        warnings.simplefilter("ignore")
        torch.jit.trace(Compact(num_feat=8, num_conv=2, upscale=2), torch.rand(1, 3, 8, 8)).save(str(scripted))
    for path, message in ((grey, "1 input and 1 output channels"),
                          (unknown, "recognises no supported architecture"),
                          (junk, "not a torch checkpoint"),
                          (scripted, "a TorchScript archive"),
                          (tmp_path / "missing.pth", "model file not found")):
        line = _error(capsys, ["upscale", str(lr_path), str(tmp_path / "o.png"), "--scale", "2",
                               "--model", str(path)])
        assert f"{path}: " in line and message in line, line
        with pytest.raises(ValueError, match=message):
            models.load(str(path))


def test_registry_names_still_win_and_no_fake_torchvision_is_left_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast-x2").write_bytes(b"a file named like a registry model")
    assert models.card("fast-x2") == models.CARDS["fast-x2"]
    assert models.installed_path("fast-x2").suffix == ".safetensors"
    if importlib.util.find_spec("torchvision") is None:  # the shim lived only while spandrel was imported
        assert "torchvision" not in sys.modules and "torchvision.transforms.functional" not in sys.modules
