"""Inference users can trust, through the restore nodes (SuperResolution, Denoise) with real models:
highlights above 1.0 survive, SDR is untouched, alpha is handled apart, colour does not shift, tiles
join exactly, and every precision either runs close to fp32 or is refused with a clear message."""

from pathlib import Path

import numpy as np
import pytest

import clarifx
from clarifx import colour, kernels, models
from clarifx.imageio import read_image, write_image
from clarifx.metrics import delta_e2000, psnr_y, srgb_to_lab
from clarifx.models import precision, working

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")

from clarifx.models.tiling import run_tiled  # noqa: E402 (needs torch)

CUDA = torch.cuda.is_available()
SRGB_FILE = "srgb_tx"  # float EXRs holding sRGB-encoded values: read and written without conversion


def _installed(name):
    if not models.installed_path(name).exists():
        pytest.skip(f"model {name} is not installed (clarifx models install {name})")
    return name


def _photo(name="astronaut", y=0, x=0, h=None, w=None) -> np.ndarray:
    img = getattr(skdata, name)().astype(np.float32) / 255.0
    return np.ascontiguousarray(img[y:y + h if h else None, x:x + w if w else None, :3])


def _render(tmp_path, pixels, node="SuperResolution", *, space=SRGB_FILE, out_space=None, name="out", **params):
    """`pixels` written as a float EXR read as `space`, through one restore node, written back as a float
    EXR in `out_space` (default: `space`) and read again."""
    src, dst = tmp_path / f"{name}-in.exr", tmp_path / f"{name}.exr"
    write_image(src, pixels, dtype="float")
    g = clarifx.Graph()
    r = g.create("Read", file=str(src), colorspace=space)
    g.create("Write", g.create(node, r, **params), file=str(dst), dtype="float", colorspace=out_space or space)
    g.render(progress=False)
    return read_image(dst)


def _model_out(net, rgb: np.ndarray) -> np.ndarray:
    """The model run on (H, W, 3) pixels as clarifx ran it before highlights were split off: untiled, as is
    (prepared for fp32 on the CPU, as the nodes prepare it)."""
    net, _ = precision.prepare(net, "fp32", "cpu")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    return run_tiled(net, x, scale=net.scale, tile=None, overlap=0, border=net.border)[0].permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------------------------
# CIEDE2000 against the published test data

# Sharma, Wu and Dalal, "The CIEDE2000 color-difference formula: implementation notes, supplementary
# test data, and mathematical observations", Color Res. Appl. 30(1), 21-30 (2005), Table 1:
# L1 a1 b1 L2 a2 b2 dE00 (the paper gives dE00 to 4 decimals).
SHARMA = """
50.0000 2.6772 -79.7751 50.0000 0.0000 -82.7485 2.0425
50.0000 3.1571 -77.2803 50.0000 0.0000 -82.7485 2.8615
50.0000 2.8361 -74.0200 50.0000 0.0000 -82.7485 3.4412
50.0000 -1.3802 -84.2814 50.0000 0.0000 -82.7485 1.0000
50.0000 -1.1848 -84.8006 50.0000 0.0000 -82.7485 1.0000
50.0000 -0.9009 -85.5211 50.0000 0.0000 -82.7485 1.0000
50.0000 0.0000 0.0000 50.0000 -1.0000 2.0000 2.3669
50.0000 -1.0000 2.0000 50.0000 0.0000 0.0000 2.3669
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0009 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0010 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0011 7.2195
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0012 7.2195
50.0000 -0.0010 2.4900 50.0000 0.0009 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0010 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0011 -2.4900 4.7461
50.0000 2.5000 0.0000 50.0000 0.0000 -2.5000 4.3065
50.0000 2.5000 0.0000 73.0000 25.0000 -18.0000 27.1492
50.0000 2.5000 0.0000 61.0000 -5.0000 29.0000 22.8977
50.0000 2.5000 0.0000 56.0000 -27.0000 -3.0000 31.9030
50.0000 2.5000 0.0000 58.0000 24.0000 15.0000 19.4535
50.0000 2.5000 0.0000 50.0000 3.1736 0.5854 1.0000
50.0000 2.5000 0.0000 50.0000 3.2972 0.0000 1.0000
50.0000 2.5000 0.0000 50.0000 1.8634 0.5757 1.0000
50.0000 2.5000 0.0000 50.0000 3.2592 0.3350 1.0000
60.2574 -34.0099 36.2677 60.4626 -34.1751 39.4387 1.2644
63.0109 -31.0961 -5.8663 62.8187 -29.7946 -4.0864 1.2630
61.2901 3.7196 -5.3901 61.4292 2.2480 -4.9620 1.8731
35.0831 -44.1164 3.7933 35.0232 -40.0716 1.5901 1.8645
22.7233 20.0904 -46.6940 23.0331 14.9730 -42.5619 2.0373
36.4612 47.8580 18.3852 36.2715 50.5065 21.2231 1.4146
90.8027 -2.0831 1.4410 91.1528 -1.6435 0.0447 1.4441
90.9257 -0.5406 -0.9208 88.6381 -0.8985 -0.7239 1.5381
6.7747 -0.2908 -2.4247 5.8714 -0.0985 -2.2286 0.6377
2.0776 0.0795 -1.1350 0.9033 -0.0636 -0.5514 0.9082
"""


def test_ciede2000_matches_the_published_pairs():
    rows = np.array([[float(v) for v in line.split()] for line in SHARMA.strip().splitlines()])
    assert rows.shape == (34, 7)
    np.testing.assert_allclose(delta_e2000(rows[:, :3], rows[:, 3:6]), rows[:, 6], atol=5e-5)
    np.testing.assert_allclose(delta_e2000(rows[:, 3:6], rows[:, :3]), rows[:, 6], atol=5e-5)  # symmetric
    assert delta_e2000(rows[0, :3], rows[0, :3]) == 0.0


def test_srgb_to_lab_agrees_with_skimage():
    color = pytest.importorskip("skimage.color")
    rgb = np.random.default_rng(0).random((64, 3))
    np.testing.assert_allclose(srgb_to_lab(rgb), color.rgb2lab(rgb), atol=0.01)  # white points differ in the 5th digit
    np.testing.assert_allclose(srgb_to_lab(np.ones(3)), [100, 0, 0], atol=1e-9)


# ----------------------------------------------------------------------------------------------
# highlights: the knee, flat areas at 8.0, continuity across 1.0, SDR untouched


def test_knee_is_identity_below_one_smooth_at_one_and_bounded():
    v = np.linspace(-0.5, 1.0, 301, dtype=np.float32)
    assert np.array_equal(working.knee(v), v)
    h = 1e-3
    left = (working.knee(np.float32(1.0)) - working.knee(np.float32(1.0 - h))) / h
    right = (working.knee(np.float32(1.0 + h)) - working.knee(np.float32(1.0))) / h
    assert abs(left - 1) < 1e-3 and abs(right - 1) < 0.03  # slope 1 from both sides (C1)
    high = np.array([1.5, 3.0, 100.0, 1e6], np.float32)
    assert (working.knee(high) <= 1 + working.HEADROOM + 1e-6).all() and (np.diff(working.knee(high)) >= 0).all()


def test_split_and_join_give_the_input_back():
    rng = np.random.default_rng(1)
    rgb = (rng.random((20, 30, 3)) * np.where(rng.random((20, 30, 1)) < 0.3, 6.0, 1.0)).astype(np.float32)
    base, excess = working.split(rgb)
    assert base.max() <= colour.linear_to_srgb(np.float32(1 + working.HEADROOM)) + 1e-6
    assert np.array_equal(base[rgb <= 1], rgb[rgb <= 1])   # what is in range reaches the model untouched
    back = working.join(base.copy(), excess)               # an identity "model"
    np.testing.assert_allclose(back, rgb, rtol=2e-6)
    sdr = np.clip(rgb, 0, 1)
    assert working.split(sdr)[0] is sdr and working.split(sdr)[1] is None


@pytest.mark.parametrize("model", ["fast-x2", "fast-x4", "fidelity-x4", "waifu2x-photo-x2",
                                   "realesr-animevideov3-x2"])
def test_flat_highlight_stays_at_8_through_superresolution(tmp_path, model):
    # Scene-linear EXR: a photo with a flat 8.0 block reaching the frame edge (where nets err most).
    _installed(model)
    img = _photo("chelsea", 40, 80, 64, 80)
    lin = np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4).astype(np.float32)
    lin[:40, :48] = 8.0
    out = _render(tmp_path, lin, model=model, space="Linear Rec.709 (sRGB)")
    s = models.card(model).scale
    assert out.shape == (64 * s, 80 * s, 3)
    flat = out[:40 * s - 3 * s, :48 * s - 3 * s]       # the block, 3 input pixels clear of its inner edges
    assert np.abs(flat / 8.0 - 1).max() <= 0.01, float(np.abs(flat / 8.0 - 1).max())
    # Without the split the model would see sRGB 2.45 (linear 8.0), which it never saw in training:
    net = models.load(model)
    naive = _model_out(net, np.full((40, 48, 3), 2.4542267, np.float32))
    assert np.abs(colour.srgb_to_linear(naive) / 8.0 - 1).max() > 0.01


def _same_size_model():
    for name, card in models.CARDS.items():
        if card.scale == 1 and models.installed_path(name).exists():
            return name
    pytest.skip("no same-size (Denoise) model is installed yet (restore-x1 is being trained)")


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_flat_highlight_stays_at_8_through_denoise(tmp_path, strength):
    model = _same_size_model()
    img = _photo("chelsea", 40, 80, 64, 80)
    lin = np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4).astype(np.float32)
    lin[:40, :48] = 8.0
    out = _render(tmp_path, lin, "Denoise", model=model, strength=strength, space="Linear Rec.709 (sRGB)")
    assert np.abs(out[:37, :45] / 8.0 - 1).max() <= 0.01


def test_gradient_across_the_knee_is_continuous(tmp_path):
    # A smooth horizontal ramp through sRGB 1.0 (0.6 .. 1.4) over a little texture: the output keeps
    # the ramp's slope across the knee, without a kink or a step where the split begins.
    net = models.load("fast-x2")
    h, w = 40, 120
    ramp = np.linspace(0.6, 1.4, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    out = _render(tmp_path, ramp, model="fast-x2")
    rows = out[8:-8, 8:-8].mean(axis=(0, 2)).astype(np.float64)  # away from the frame edges
    slope = np.diff(rows)
    expected = 0.8 / (w - 1) / 2                       # the ramp's slope per output pixel
    assert np.abs(slope - expected).max() < 0.1 * expected, np.abs(slope - expected).max() / expected
    # the poison: dropping the excess (clipping what the model sees) flattens the ramp at the knee
    clipped = _model_out(net, np.minimum(ramp, 1.0))[8:-8, 8:-8].mean(axis=(0, 2))
    assert np.abs(np.diff(clipped) - expected).max() > 0.5 * expected


def test_sdr_frames_give_exactly_the_models_output(tmp_path):
    net = models.load("fast-x2")
    img = _photo("astronaut", 100, 150, 48, 56)
    out = _render(tmp_path, img, model="fast-x2", device="cpu")  # bit-for-bit: the CPU on both sides
    assert np.array_equal(out, _model_out(net, img))
    img[5, 5, 0] = 1.0                                 # exactly 1.0 is still SDR
    assert np.array_equal(_render(tmp_path, img, model="fast-x2", name="one", device="cpu"), _model_out(net, img))


# ----------------------------------------------------------------------------------------------
# alpha: upscaled apart (Lanczos-3), colour run straight and re-premultiplied by the engine


def test_premultiplied_rgba_exr(tmp_path):
    img = _photo("coffee", 60, 120, 48, 64)
    lin = np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4).astype(np.float32)
    yy, xx = np.mgrid[0:48, 0:64]
    alpha = (0.1 + 0.9 / (1 + np.exp(-(xx - 30 + 6 * np.sin(yy / 5)) / 3))).astype(np.float32)  # soft matte
    rgba = np.concatenate([lin * alpha[..., None], alpha[..., None]], axis=2)  # premultiplied
    space = "Linear Rec.709 (sRGB)"
    out = _render(tmp_path, rgba, model="fast-x2", space=space, name="rgba")
    straight = _render(tmp_path, lin, model="fast-x2", space=space, name="rgb")  # the same colour, no alpha
    assert out.shape == (96, 128, 4)
    up_alpha = np.clip(kernels.resample(alpha[..., None], (96, 128), filter="lanczos3")[..., 0], 0, 1)
    np.testing.assert_allclose(out[..., 3], up_alpha, atol=1e-6)
    np.testing.assert_allclose(out[..., :3], straight * out[..., 3:], rtol=1e-4, atol=1e-6)
    # the poison: a model run on premultiplied colour gives something else along the matte's edge
    edge = (up_alpha > 0.2) & (up_alpha < 0.8)
    assert np.abs(out[..., :3][edge] - _render(tmp_path, rgba[..., :3], model="fast-x2", space=space,
                                               name="premult")[edge]).max() > 1e-3


# ----------------------------------------------------------------------------------------------
# colour: no shift against a Lanczos upscale once detail is low-passed away


def _lowpass_de(a, b, factor=4):
    small = [np.clip(kernels.resample(np.ascontiguousarray(x), (x.shape[0] // factor, x.shape[1] // factor),
                                      filter="box"), 0, 1) for x in (a, b)]
    return float(delta_e2000(srgb_to_lab(small[0]), srgb_to_lab(small[1])).mean())


def test_no_colour_shift_against_lanczos(tmp_path):
    img = np.clip(read_image(Path(clarifx.__file__).parent / "data" / "astronaut.png")[:, :, :3], 0, 1)  # 256x256
    out = _render(tmp_path, img, model="fast-x2")
    lanczos = kernels.resample(img, (512, 512), filter="lanczos3")
    de = _lowpass_de(out, lanczos)
    assert de <= 0.5, de
    # the poison: a 2% lift of red alone is a visible shift, and the measure sees it
    tinted = out.copy()
    tinted[..., 0] *= 1.02
    assert _lowpass_de(tinted, lanczos) > 0.5


# ----------------------------------------------------------------------------------------------
# tiling through the node: overlap from the measured receptive field, exact for padded nets


@pytest.mark.parametrize("model,tile", [("fast-x2", 32), ("fast-x4", 32), ("fidelity-x4", 48),
                                        ("realesr-animevideov3-x2", 80)])
def test_node_tiles_join_exactly(tmp_path, model, tile):
    from clarifx.nodes.restore import _overlap

    _installed(model)
    net = models.load(model)
    img = _photo("astronaut", 50, 60, 96, 120)
    whole = _render(tmp_path, img, model=model, name="whole", device="cpu")  # the same arithmetic per tile
    tiled = _render(tmp_path, img, model=model, tile=tile, name="tiled", device="cpu")  # 2x4 / 2x2 tiles
    assert np.abs(tiled - whole).max() <= 1e-5
    overlap = _overlap(model)  # what the node measured: 2 * receptive radius (fast-x2: 7 convs)
    assert overlap <= tile // 2 and (model != "fast-x2" or overlap == 14)
    # the poison: the same tiles with too little overlap show seams
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    short = run_tiled(net, x, scale=net.scale, tile=tile, overlap=overlap // 4)[0].permute(1, 2, 0).numpy()
    assert np.abs(short - whole).max() > 1e-4


# ----------------------------------------------------------------------------------------------
# precision and device


def test_int8_runs_close_to_fp32_and_keeps_the_gain(tmp_path):
    # HR: a photo the int8 ranges were not calibrated on; LR: its antialiased bicubic reduction.
    hr = _photo("chelsea", 20, 100, 192, 256)
    lr = np.clip(kernels.resample(hr, (96, 128), filter="bicubic"), 0, 1)
    fp32 = _render(tmp_path, lr, model="fast-x2", name="fp32")
    int8 = _render(tmp_path, lr, model="fast-x2", precision="int8", device="cpu", name="int8")
    assert np.abs(int8 - fp32).max() > 1e-4            # it did run quantized
    assert psnr_y(int8, fp32) > 40
    shaved = (slice(2, -2), slice(2, -2))
    loss = psnr_y(fp32[shaved], hr[shaved]) - psnr_y(int8[shaved], hr[shaved])
    lanczos = kernels.resample(lr, (192, 256), filter="lanczos3")
    assert loss <= 0.15, loss
    assert psnr_y(int8[shaved], hr[shaved]) > psnr_y(lanczos[shaved], hr[shaved]) + 0.5


class _Residual(torch.nn.Module):
    """conv -> leaky ReLU -> conv, added to its input: the shape of RestoreNet's blocks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.nn.functional.leaky_relu(self.a(x), 0.1))


def test_int8_quantizes_every_conv_and_nothing_else(tmp_path):
    from clarifx.models.precision import calibration_images, quantize_int8

    net = _Residual().eval()
    q = quantize_int8(net)
    convs = [m for m in q.modules() if isinstance(m, torch.nn.Conv2d)]
    int8 = [m for m in q.modules() if isinstance(m, torch.ao.nn.quantized.Conv2d)]
    assert len(int8) == 2 and not convs
    assert type(net.a) is torch.nn.Conv2d              # the model it was given is untouched
    x = calibration_images()[0]
    with torch.inference_mode():
        ref, out = net(x), q(x)
    assert 0 < float((out - ref).abs().max()) and float((out - ref).pow(2).mean().sqrt()) < 0.01
    with pytest.raises(ValueError, match="int8.*fp32"):
        quantize_int8(torch.nn.Sequential(torch.nn.Upsample(scale_factor=2)))

def test_int8_of_an_imported_model_is_refused_before_rendering(tmp_path):
    model = _installed("waifu2x-photo-x2")  # an ncnn graph with functional convolutions: no int8 path
    write_image(tmp_path / "in.png", _photo(h=16, w=16))
    g = clarifx.Graph()
    g.create("Write", g.create("SuperResolution", g.create("Read", file=str(tmp_path / "in.png")), model=model,
                               precision="int8"), file=str(tmp_path / "out.png"))
    with pytest.raises(ValueError, match="SuperResolution: model 'waifu2x-photo-x2': precision int8: NcnnNet has no"):
        g.render(progress=False)


@pytest.mark.parametrize("precision,device,message", [
    ("fp16", "cpu", "fp16 needs a CUDA GPU"),
    ("bf16", "cpu", "bf16 needs a CUDA GPU"),
    ("int8", "cuda", "int8 runs on the CPU only"),
])
def test_impossible_precisions_are_refused_before_rendering(tmp_path, precision, device, message):
    write_image(tmp_path / "in.png", _photo(h=16, w=16))
    for node in ("SuperResolution", "Denoise"):
        g = clarifx.Graph()
        n = g.create(node, g.create("Read", file=str(tmp_path / "in.png")), model="fast-x2",
                     precision=precision, device=device)
        g.create("Write", n, file=str(tmp_path / f"{node}.png"))
        with pytest.raises(ValueError, match=f"{node}: model 'fast-x2': precision {message}"):
            g.render(progress=False)
        assert not (tmp_path / f"{node}.png").exists()


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_cuda_without_a_gpu_is_refused(tmp_path, precision):
    from clarifx.models.precision import resolve

    with pytest.raises(ValueError, match="a CUDA GPU, and torch sees none"):
        resolve(precision, "cuda" if precision == "fp32" else "auto", where="SuperResolution")
    assert resolve("fp32", "auto") == "cpu" and resolve("int8", "auto") == "cpu"


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("precision,min_psnr", [("fp32", 60), ("fp16", 45), ("bf16", 35)])
def test_cuda_precisions_match_the_cpu(tmp_path, precision, min_psnr):
    img = _photo("astronaut", 100, 150, 96, 128)
    cpu = _render(tmp_path, img, model="fast-x2", device="cpu", name="cpu")
    gpu = _render(tmp_path, img, model="fast-x2", device="cuda", precision=precision, tile=48, name=precision)
    assert psnr_y(gpu, cpu) > min_psnr


# ----------------------------------------------------------------------------------------------
# Self-ensemble (--tta)

def test_self_ensemble_averages_the_model_over_the_eight_flips_and_turns():
    from clarifx.models.ensemble import SelfEnsemble

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(12, 12, 3, padding=1),
                              torch.nn.PixelShuffle(2))  # orientation-dependent: its output depends on the turn
    net.scale, net.border = 2, 0
    x = torch.rand(1, 3, 17, 31)
    with torch.inference_mode():
        got = SelfEnsemble(net)(x)[0].permute(1, 2, 0).numpy()
        img = x[0].permute(1, 2, 0).numpy()
        ref = np.zeros((34, 62, 3))
        for flip in (False, True):
            src = img[:, ::-1] if flip else img
            for k in range(4):
                turned = np.ascontiguousarray(np.rot90(src, k))
                y = net(torch.from_numpy(turned).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
                y = np.rot90(y, -k)
                ref += y[:, ::-1] if flip else y
        plain = net(x)[0].permute(1, 2, 0).numpy()
    assert got.shape == (34, 62, 3) and np.abs(got - ref / 8).max() < 1e-6
    assert np.abs(got - plain).max() > 1e-2  # the poison: not the plain pass


def test_tta_runs_the_self_ensemble_in_the_nodes_and_the_cli(tmp_path):
    from clarifx import cli
    from clarifx.models.ensemble import SelfEnsemble

    img = _photo("astronaut", 100, 150, 40, 52)
    net = models.load("fast-x2")
    ens = SelfEnsemble(precision.prepare(net, "fp32", "cpu")[0])
    whole = _render(tmp_path, img, model="fast-x2", tta=True, device="cpu")  # compared with a CPU run
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    expected = run_tiled(ens, x, scale=2, tile=None, overlap=0)[0].permute(1, 2, 0).numpy()
    assert np.abs(whole - expected).max() < 1e-5
    assert np.abs(whole - _render(tmp_path, img, model="fast-x2", name="plain", device="cpu")).max() > 1e-3
    tiled = _render(tmp_path, img, model="fast-x2", tta=True, tile=24, name="tiled", device="cpu")  # the same overlap serves
    assert np.abs(tiled - whole).max() < 1e-4
    write_image(tmp_path / "lr.exr", img, dtype="float")
    for flags, name in ((["--tta"], "cli-tta"), ([], "cli")):
        assert cli.main(["upscale", str(tmp_path / "lr.exr"), str(tmp_path / f"{name}.exr"), "--scale", "2",
                         "--model", "fast-x2", "--quiet"] + flags) == 0
    g = clarifx.Graph()  # what the CLI's --tta should have built, with the CLI's defaults otherwise
    sr = g.create("SuperResolution", g.create("Read", file=str(tmp_path / "lr.exr")), model="fast-x2", tta=True)
    g.create("Write", sr, file=str(tmp_path / "graph.exr"))
    g.render(progress=False)
    graph = read_image(tmp_path / "graph.exr")
    assert np.array_equal(read_image(tmp_path / "cli-tta.exr"), graph)
    assert not np.array_equal(read_image(tmp_path / "cli.exr"), graph)
