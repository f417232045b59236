"""Imported ncnn weights (clarifx.models.ncnn) against the ncnn runtime's own output.

* every pretrained model pair found under $CLARIFX_DATA/models (see ../shared/scripts/fetch-data)
  runs in torch and in the ncnn CPU runtime on the same crop of a real photo: max |diff| <= 1e-3;
* small hand-built graphs with random weights exercise every supported layer and parameter form
  (padding modes, groups, activations, weight encodings, resize modes, crops) the same way;
* the safetensors round trip is bit-identical, and bad inputs fail with a ValueError that names
  the layer type or the file.
Tests that need ncnn or the model files skip cleanly without them; the rest always run.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from clarifx.models import ncnn as cn

DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache" / "clarifx-data"))
MODELS = DATA / "models"
TOL = 1e-3  # in 0..1 image units
HEAVY = ("realesrgan-x4plus", "REALSR_DF2K")  # 23 RRDB blocks: tiny inputs only


def _model_pairs():
    pairs = sorted(p for p in MODELS.glob("*/*.param") if p.with_suffix(".bin").exists())
    if not pairs:
        return [pytest.param(None, id="no-models")]
    return [pytest.param(p, id=f"{p.parent.name}/{p.stem}") for p in pairs]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny inputs gain nothing from threads, and on a loaded 2-core machine OpenMP spinning makes
    a 0.5 s forward take 5-15 s; both runtimes use one thread here."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ncnn_rt():
    return pytest.importorskip("ncnn", reason="the ncnn runtime (pip install ncnn) is not installed")


def _run_ncnn(ncnn, param, binp, x_chw: np.ndarray, in_name: str, out_name: str, border: int = 0) -> np.ndarray:
    """The ncnn CPU runtime on one (C, H, W) float32 image, fp32 throughout; ``border`` pads the
    input by edge replication with ncnn's own copy_make_border first (as waifu2x-ncnn does)."""
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 1
    assert net.load_param(str(param)) == 0, f"ncnn could not read {param}"
    assert net.load_model(str(binp)) == 0, f"ncnn could not read {binp}"
    assert net.input_names() == [in_name] and out_name in net.output_names()
    m = ncnn.Mat(np.ascontiguousarray(x_chw, dtype=np.float32))
    if border:
        m = ncnn.copy_make_border(m, border, border, border, border, ncnn.BorderType.BORDER_REPLICATE, 0.0)
    ex = net.create_extractor()
    assert ex.input(in_name, m) == 0
    ret, out = ex.extract(out_name)
    assert ret == 0, f"ncnn failed to extract {out_name}"
    return np.array(out).copy()


def _photo_crop(size: int) -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    img = skdata.astronaut()[120:120 + size, 180:180 + size]  # face and suit: edges, skin, flat areas
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _torch(net, x_chw, pad=False):
    with torch.inference_mode():
        x = torch.from_numpy(x_chw)[None]
        return (net.upscale(x) if pad else net(x))[0].numpy()


# ---------------------------------------------------------------------------------------------
# the real pretrained models


@pytest.mark.parametrize("param", _model_pairs())
def test_pretrained_model_matches_ncnn_runtime(param, ncnn_rt, tmp_path):
    if param is None:
        pytest.skip(f"no ncnn models under {MODELS} (run ../shared/scripts/fetch-data)")
    binp = param.with_suffix(".bin")
    net = cn.load(param, binp)

    layers = cn.read_param(param)
    assert net.input_name == next(ly.outputs[0] for ly in layers if ly.type == "Input")
    family = param.parent.name
    if family == "waifu2x-photo":  # upconv_7: 6 unpadded 3x3 convs + deconv(4, stride 2, crop 3)
        assert (net.scale, net.border, net.output_name) == (2, 7, "Eltwise4")
    elif "animevideov3" in param.stem:
        assert (net.scale, net.border) == (int(param.stem[-1]), 0)
    else:
        assert (net.scale, net.border) == (4, 0)

    size = 32 if any(h in param.stem for h in HEAVY) else 48
    x = _photo_crop(size)
    ours = _torch(net, x)
    ref = _run_ncnn(ncnn_rt, param, binp, x, net.input_name, net.output_name)
    assert ours.shape == ref.shape == (3, *net.output_size(size, size))
    diff = float(np.abs(ours - ref).max())
    assert diff <= TOL, f"{param.name}: max |torch - ncnn| = {diff:.3g}"
    assert 0.2 < float(ours.mean()) < 0.9  # RGB in 0..1 out for RGB in 0..1 in

    # upscale(): pad by the border as waifu2x-ncnn does, output covers the whole image
    if net.border:
        ours_pad = _torch(net, x, pad=True)
        ref_pad = _run_ncnn(ncnn_rt, param, binp, x, net.input_name, net.output_name, border=net.border)
        assert ours_pad.shape == ref_pad.shape == (3, net.scale * size, net.scale * size)
        assert float(np.abs(ours_pad - ref_pad).max()) <= TOL

    # converted weights round-trip through safetensors bit for bit, without the ncnn files
    st = tmp_path / f"{param.stem}.safetensors"
    cn.state_dict_to_safetensors(net, st, {"source": f"{family}/{param.name}", "license": "see package"})
    back = cn.load_safetensors(st)
    assert (back.scale, back.border, back.input_name, back.output_name) == \
        (net.scale, net.border, net.input_name, net.output_name)
    assert back.meta["source"] == f"{family}/{param.name}"
    assert np.array_equal(_torch(back, x), ours)
    if family != "waifu2x-photo":  # float16 in the .bin stays float16 on disk
        assert st.stat().st_size < binp.stat().st_size * 1.1


# ---------------------------------------------------------------------------------------------
# hand-built graphs: every layer form against the runtime


def _tagged(values: np.ndarray, enc: str) -> bytes:
    v = np.asarray(values, np.float32).ravel()
    if enc == "f32":
        return struct.pack("<I", 0) + v.astype("<f4").tobytes()
    if enc == "f16":
        b = v.astype("<f2").tobytes()
        return struct.pack("<I", 0x01306B47) + b + b"\0" * (-len(b) % 4)
    if enc == "q8":  # 256-entry codebook + uint8 indices (ncnn's "quantized data")
        table = np.linspace(v.min(), v.max(), 256).astype("<f4")
        idx = np.abs(v[:, None] - table[None]).argmin(1).astype(np.uint8).tobytes()
        return struct.pack("<BBBB", 1, 2, 3, 4) + table.tobytes() + idx + b"\0" * (-len(idx) % 4)
    raise AssertionError(enc)


class _Graph:
    """Writes a .param/.bin pair: add(type, name, inputs, outputs, params-string, weight-bytes)."""

    def __init__(self, c=3):
        self.lines = [f"Input in 0 1 data 0=0 1=0 2={c}"]
        self.bin = b""
        self.rng = np.random.default_rng(7)

    def add(self, ltype, name, ins, outs, params="", data=b""):
        self.lines.append(f"{ltype} {name} {len(ins)} {len(outs)} {' '.join(ins + outs)} {params}".rstrip())
        self.bin += data
        return outs[0]

    def conv(self, name, src, cin, cout, k=3, extra="", enc="f32", bias=True, group=1, ltype="Convolution"):
        kh, kw = (k, k) if isinstance(k, int) else k
        n = cout * (cin // group) * kh * kw
        w = self.rng.normal(0, (2.0 / (cin // group * kh * kw)) ** 0.5, n)
        data = _tagged(w, enc) + (self.rng.normal(0, 0.1, cout).astype("<f4").tobytes() if bias else b"")
        p = f"0={cout} 1={kw} 11={kh} 5={int(bias)} 6={n}" + (f" 7={group}" if group != 1 else "") + f" {extra}"
        return self.add(ltype, name, [src], [name], p.strip(), data)

    def write(self, tmp_path, stem="g"):
        blobs = {b for ln in self.lines for b in ln.split()[4:] if "=" not in b}
        param = tmp_path / f"{stem}.param"
        param.write_text("7767517\n" + f"{len(self.lines)} {len(blobs)}\n" + "\n".join(self.lines) + "\n")
        binp = tmp_path / f"{stem}.bin"
        binp.write_bytes(self.bin)
        return param, binp


def _g_conv_forms():
    g = _Graph()
    a = g.conv("c_asym", "data", 3, 8, k=(3, 5), extra="4=1 15=2 14=0 16=3 18=0.25 9=1", enc="f16")
    b = g.conv("c_same", a, 8, 8, k=3, extra="3=2 4=-233 9=2 -23310=1,0.1")  # SAME_UPPER, stride 2
    c = g.conv("c_lower", b, 8, 8, k=4, extra="4=-234 9=3 -23310=2,-0.5,0.75")  # SAME_LOWER, clip
    d = g.conv("c_dil", c, 8, 8, k=3, extra="2=2 12=1 4=2 14=1 9=4", enc="q8", bias=False)  # sigmoid
    e = g.conv("c_dw", d, 8, 8, k=3, extra="4=1 9=5", group=8, ltype="ConvolutionDepthWise")  # mish
    f = g.conv("c_grp", e, 8, 8, k=1, extra="9=6 -23310=2,0.2,0.5", group=2, ltype="ConvolutionDepthWise")
    g.conv("c_out", f, 8, 3, k=3, extra="4=1")
    return g


def _g_deconv_forms():
    g = _Graph()
    a = g.conv("d_plain", "data", 3, 6, k=4, extra="3=2 4=1 9=2 -23310=1,0.2", ltype="Deconvolution")
    b = g.conv("d_opad", a, 6, 6, k=3, extra="3=2 4=1 18=1 19=1", ltype="Deconvolution", enc="f16")
    c = g.conv("d_out", b, 6, 6, k=(3, 2), extra="3=2 4=-233 20=40 21=38", ltype="Deconvolution")
    g.conv("d_dw", c, 6, 3, k=2, extra="3=1 2=2 4=0 14=1 9=1", group=3, ltype="DeconvolutionDepthWise")
    return g


def _g_elementwise():
    g = _Graph()  # ncnn needs a Split wherever a blob feeds two layers
    a = g.conv("e1", "data", 3, 6, extra="4=1")
    g.add("Split", "sp", [a], ["s0", "s1", "s2", "s3"])
    r = g.add("ReLU", "leaky", ["s0"], ["r"], "0=0.1")
    g.add("ReLU", "relu", ["s1"], ["r0"])
    g.add("Split", "sp_r0", ["r0"], ["r0a", "r0b"])
    g.add("PReLU", "prelu", ["s2"], ["pr"], "0=6", g.rng.normal(0, 0.3, 6).astype("<f4").tobytes())
    g.add("PReLU", "prelu1", ["s3"], ["pr1"], "0=1", np.float32([0.25]).tobytes())
    g.add("Eltwise", "prod", [r, "pr"], ["x0"], "0=0")
    g.add("Split", "sp_x0", ["x0"], ["x0a", "x0b"])
    g.add("Eltwise", "sum", ["x0a", "r0a", "pr1"], ["x1"], "0=1 -23301=3,0.5,-1.5,2.0")
    g.add("Eltwise", "max", ["x1", "r0b"], ["x2"], "0=2")
    g.add("Eltwise", "sum2", ["x2", "x0b"], ["x3"], "0=1")
    g.add("Split", "sp2", ["x3"], ["t0", "t1", "t2"])
    cur = "t0"  # add, sub, mul, div, max, min, rsub, rdiv with a scalar (clamped before the rdiv)
    for i, op in enumerate(["0=0", "0=1", "0=2", "0=3", "0=4", "0=5", "0=7", "0=8"]):
        cur = g.add("BinaryOp", f"bs{i}", [cur], [f"bs{i}"], f"{op} 1=1 2={0.5 + 0.25 * i:.2f}")
    g.add("BinaryOp", "bsub", [cur, "t1"], ["b1"], "0=1")
    g.add("Split", "sp_b1", ["b1"], ["b1a", "b1b"])
    g.add("BinaryOp", "bmax", ["b1a", "t2"], ["b2"], "0=4")
    g.add("BinaryOp", "bpow", ["b2"], ["b3"], "0=6 1=1 2=2.0")
    g.add("Concat", "cat", ["b3", "b1b"], ["cat"], "0=0")
    g.conv("e_out", "cat", 12, 3, extra="4=1")
    return g


def _g_resample():
    g = _Graph()
    a = g.conv("r1", "data", 3, 8, extra="4=1")
    b = g.add("Interp", "near3", [a], ["near3"], "0=1 1=3.0 2=3.0")
    c = g.add("Interp", "bilin", [b], ["bilin"], "0=2 1=0.5 2=0.75")
    d = g.add("Interp", "bicub", [c], ["bicub"], "0=3 1=1.7 2=1.3")
    e = g.add("Interp", "near_sz", [d], ["near_sz"], "0=1 3=29 4=23")
    f = g.add("Interp", "bil_ac", [e], ["bil_ac"], "0=2 3=40 4=36 6=1")
    h = g.add("Interp", "bic_sz", [f], ["bic_sz"], "0=3 3=31 4=27")
    i = g.conv("r2", h, 8, 16, extra="4=1")
    j = g.add("PixelShuffle", "ps0", [i], ["ps0"], "0=2")
    k = g.conv("r3", j, 4, 12, extra="4=1")
    m = g.add("PixelShuffle", "ps1", [k], ["ps1"], "0=2 1=1")
    g.conv("r_out", m, 3, 3, extra="4=1")
    return g


def _g_crop():
    g = _Graph()
    a = g.conv("k1", "data", 3, 8, extra="4=1")
    g.add("Split", "sp", [a], ["a0", "a1", "a2"])
    b = g.add("Crop", "slice", ["a0"], ["slice"], "-23309=2,2,-25 -23310=2,20,-2 -23311=2,1,2")
    c = g.add("Crop", "offs", ["a1"], ["offs"], "0=3 1=2 2=1 3=-233 4=9 5=7 6=1 7=0 8=0")
    d = g.add("Crop", "ref", ["a2", c], ["ref"], "0=1 1=4 2=0")
    c2 = g.add("Crop", "slice_c", [b], ["slice_c"], "-23309=1,1 -23310=1,6 -23311=1,0")
    k = g.conv("k2", c2, 5, 4, extra="4=1")
    g.add("Crop", "fit", [k], ["fit"], "-23309=2,0,0 -23310=2,9,13 -23311=2,-2,-1")
    g.add("Crop", "fit2", [d], ["fit2"], "-23309=3,0,0,0 -23310=3,4,9,13")
    g.add("Concat", "cat", ["fit", "fit2"], ["cat"], "0=0")
    g.conv("k_out", "cat", 8, 3, extra="4=1")
    return g


GRAPHS = {"conv": _g_conv_forms, "deconv": _g_deconv_forms, "elementwise": _g_elementwise,
          "resample": _g_resample, "crop": _g_crop}


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_layer_forms_match_ncnn_runtime(kind, ncnn_rt, tmp_path):
    param, binp = GRAPHS[kind]().write(tmp_path, kind)
    net = cn.load(param, binp)
    x = np.random.default_rng(1).random((3, 27, 33), dtype=np.float32)
    ours = _torch(net, x)
    ref = _run_ncnn(ncnn_rt, param, binp, x, net.input_name, net.output_name)
    assert ours.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))  # random nets: compare relative to their range
    diff = float(np.abs(ours - ref).max())
    assert diff <= 1e-4 * scale, f"{kind}: max |torch - ncnn| = {diff:.3g} (range {scale:.3g})"


# ---------------------------------------------------------------------------------------------
# format details and errors (no ncnn, no data needed)


def test_read_param_parses_counts_blobs_and_array_params(tmp_path):
    p = tmp_path / "m.param"
    p.write_bytes(b"7767517\r\n3 3\r\nInput   in  0 1 data 0=8 1=8 2=3\r\n"
                  b"Convolution  conv1 1 1 data c1 0=4 1=3 5=1 6=108 9=2 -23310=1,0.100000\r\n"
                  b"Eltwise  add 2 1 c1 c1 out 0=1 -23301=2,2.000000e-01,1.0e+00\r\n")
    layers = cn.read_param(p)
    assert [ly.type for ly in layers] == ["Input", "Convolution", "Eltwise"]
    conv = layers[1]
    assert (conv.name, conv.n_in, conv.n_out, conv.inputs, conv.outputs) == ("conv1", 1, 1, ["data"], ["c1"])
    assert conv.params == {0: 4, 1: 3, 5: 1, 6: 108, 9: 2, 10: [np.float32(0.1).item()]}
    assert isinstance(conv.params[0], int) and isinstance(conv.params[10][0], float)
    assert layers[2].inputs == ["c1", "c1"] and layers[2].params[1] == [np.float32(0.2).item(), 1.0]


@pytest.mark.parametrize("text, match", [
    ("7767518\n1 1\nInput in 0 1 data\n", "magic"),
    ("7767517\n2 2\nInput in 0 1 data\n", "2 layers"),
    ("7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data\n", "fewer"),
    ("7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data o 0=x\n", "bad parameter"),
    ("7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data o -23310=3,1,2\n", "bad parameter"),
])
def test_malformed_param_raises_value_error_naming_the_file(tmp_path, text, match):
    p = tmp_path / "bad.param"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        cn.read_param(p)
    assert "bad.param" in str(e.value)


def test_unsupported_layer_raises_value_error_naming_it(tmp_path):
    g = _Graph()
    a = g.conv("c", "data", 3, 4, extra="4=1")
    g.add("Pooling", "pool1", [a], ["pool1"], "0=0 1=2 2=2")
    param, binp = g.write(tmp_path, "pooled")
    with pytest.raises(ValueError, match="Pooling") as e:
        cn.load(param, binp)
    assert "pooled.param" in str(e.value) and "pool1" in str(e.value)


def test_unsupported_parameter_forms_raise_value_error(tmp_path):
    g = _Graph()
    g.add("Interp", "cubic4", ["data"], ["o"], "0=4 1=2.0 2=2.0")
    param, binp = g.write(tmp_path, "interp")
    with pytest.raises(ValueError, match="resize_type 4"):
        cn.load(param, binp)


@pytest.mark.parametrize("cut", [1, 4, 100, -1])
def test_truncated_bin_raises_value_error_naming_the_file(tmp_path, cut):
    param, binp = _g_conv_forms().write(tmp_path, "trunc")
    data = binp.read_bytes()
    binp.write_bytes(data[:cut] if cut > 0 else data[:cut])
    with pytest.raises(ValueError, match="truncated") as e:
        cn.load(param, binp)
    assert "trunc.bin" in str(e.value)


def test_bin_with_trailing_bytes_is_refused(tmp_path):
    param, binp = _g_conv_forms().write(tmp_path, "long")
    binp.write_bytes(binp.read_bytes() + b"\0" * 8)
    with pytest.raises(ValueError, match="does not match") as e:
        cn.load(param, binp)
    assert "long.bin" in str(e.value)


def test_weight_encodings_decode_to_the_same_values(tmp_path):
    w = np.random.default_rng(3).normal(0, 1, 3 * 3 * 3 * 5).astype(np.float32)  # odd count: f16 padding
    nets = {}
    for enc in ("f32", "f16", "q8"):
        g = _Graph()
        g.add("Convolution", "c", ["data"], ["c"], f"0=5 1=3 5=0 6={w.size}", _tagged(w, enc))
        nets[enc] = cn.load(*g.write(tmp_path, enc))
    got = {k: n.ops[1].weight.detach().numpy().ravel() for k, n in nets.items()}
    assert np.array_equal(got["f32"], w)
    assert np.array_equal(got["f16"], w.astype(np.float16).astype(np.float32))
    assert np.abs(got["q8"] - w).max() <= (w.max() - w.min()) / 255 / 2 + 1e-6
    assert nets["f16"]._storage_dtypes["ops.1.weight"] == "float16"


def test_safetensors_round_trip_is_bit_identical_without_the_ncnn_files(tmp_path):
    param, binp = _g_resample().write(tmp_path, "rt")
    net = cn.load(param, binp)
    st = tmp_path / "out" / "rt.safetensors"
    cn.state_dict_to_safetensors(net, st, {"name": "resample-test", "scale_note": {"a": 1}})
    param.unlink()
    binp.unlink()
    back = cn.load_safetensors(st)
    x = torch.rand(2, 3, 27, 33)
    with torch.inference_mode():
        assert torch.equal(back(x), net(x))
    assert back.meta["name"] == "resample-test" and back.meta["scale_note"] == '{"a": 1}'
    assert [ly.to_json() for ly in back.layers] == [ly.to_json() for ly in net.layers]
    assert [p.name for p in st.parent.iterdir()] == ["rt.safetensors"]  # no temp file left behind
    with pytest.raises(ValueError, match="reserved"):
        cn.state_dict_to_safetensors(net, st, {"graph": "x"})


def test_load_safetensors_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="other.safetensors"):
        cn.load_safetensors(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        cn.load_safetensors(junk)


def test_geometry_and_padding_helpers(tmp_path):
    g = _Graph()  # waifu2x-like: two unpadded convs then a x2 deconv cropped by 1
    a = g.conv("c1", "data", 3, 4, extra="9=2 -23310=1,0.1")
    b = g.conv("c2", a, 4, 4)
    g.conv("up", b, 4, 3, k=4, extra="3=2 4=1", ltype="Deconvolution")
    net = cn.load(*g.write(tmp_path, "geo"))
    assert (net.scale, net.border, net.in_channels) == (2, 2, 3)
    assert net.output_size(20, 30) == (32, 52)
    x = torch.rand(1, 3, 20, 30)
    with torch.inference_mode():
        assert net.upscale(x).shape == (1, 3, 40, 60)
        assert net(x).shape == (1, 3, 32, 52)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.rand(1, 4, 20, 30))
