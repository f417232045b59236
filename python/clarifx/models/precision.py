"""Where and in which number format a model runs: device (cpu | cuda) and precision (fp32 | fp16 | bf16 | int8).

One place decides what each combination means, refuses the ones that cannot work with a message that
says what to do instead, and turns a loaded fp32 model into the module that runs:

* fp32: everywhere. On CUDA, cuDNN's TF32 convolutions are switched off around the run (`context`), so
  fp32 means fp32 there too. fp32, fp16 and bf16 run a channels-last copy of the model (`prepare`).
* fp16, bf16: CUDA only; a half-precision copy of the model on the GPU, fed one tile at a time from
  the CPU frame, accumulated in fp32. (On the 2-core development CPU fp16 convolutions ran 11x slower
  than fp32; bf16 ran 1.4x faster but is not offered on the CPU yet: its quality is unmeasured.)
* int8: the CPU only (torch's quantized kernels, fbgemm/x86 or qnnpack). Static post-training
  quantization in eager mode: the model's Conv2d layers (FastSR's, RestoreNet's) run on int8 weights
  (per output channel) and uint8 activations whose ranges are calibrated once on the photograph
  bundled with clarifx; everything between and around them (activations, residual adds, pixel
  shuffle, the bicubic residual base) stays fp32, so in FastSR and RestoreNet the int8 error only
  touches the learned correction, not the image itself. Dynamic quantization does not apply (it
  covers Linear/LSTM layers, not convolutions), and the PT2E flow has moved out of torch into torchao,
  which clarifx does not depend on. benchmarks/speed.py measures both sides: fast-x2 in int8 runs
  1.47x as fast as fp32 (channels-last; 2.2x the plain layout), 0.055 dB below it on photos/misc.
  Channels-last int8 was no faster.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICES = ("auto", "cpu", "cuda")

_CALIBRATION = Path(__file__).resolve().parent.parent / "data" / "astronaut.png"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve(precision: str, device: str = "auto", *, where: str = "model") -> str:
    """The device ("cpu" or "cuda") a model runs on for `precision` and `device`; ValueError naming
    `where` when the combination cannot run here."""
    if precision not in PRECISIONS:
        raise ValueError(f"{where}: precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if device not in DEVICES:
        raise ValueError(f"{where}: device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "auto":  # half precision asks for the GPU, int8 for the CPU, fp32 takes what there is
        wants_gpu = precision in ("fp16", "bf16") or (precision == "fp32" and cuda_available())
        device = "cuda" if wants_gpu else "cpu"
    if precision == "int8" and device == "cuda":
        raise ValueError(f"{where}: precision int8 runs on the CPU only (torch's quantized kernels); "
                         "on CUDA use fp16 or bf16")
    if precision in ("fp16", "bf16") and device == "cpu":
        raise ValueError(f"{where}: precision {precision} needs a CUDA GPU (device cuda); "
                         "on the CPU use fp32, or int8 for speed")
    if device == "cuda" and not cuda_available():
        why = f"precision {precision} needs" if precision in ("fp16", "bf16") else "device cuda needs"
        raise ValueError(f"{where}: {why} a CUDA GPU, and torch sees none here "
                         "(a CPU build of torch, or no driver); use device cpu with fp32 or int8")
    return device


def check(net, precision: str, *, where: str = "precision int8") -> None:
    """ValueError when `net` cannot run in `precision` (only int8 depends on the model: it quantizes
    torch Conv2d layers, and a model without any has no int8 path)."""
    if precision != "int8":
        return
    from torch import nn

    if not any(isinstance(m, nn.Conv2d) for m in net.modules()):
        raise ValueError(f"{where}: {type(net).__name__} has no int8 path (clarifx quantizes torch Conv2d layers, "
                         "as its own models have; imported ncnn graphs run their convolutions functionally); "
                         "use fp32")


def prepare(net, precision: str, device: str):
    """(module, dtype): `net` (fp32, on the CPU; left untouched) made ready to run in `precision` on
    `device` (as `resolve` returned it), and the dtype its input tiles are cast to."""
    import torch

    if precision == "int8":
        return quantize_int8(net), torch.float32
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    # Channels-last weights make the convolutions run channels-last (oneDNN's faster layout on the CPU:
    # fast-x2 1.6x, fidelity-x2 1.45x on one core at 640x360, same output within 1e-6; cuDNN's for half).
    return copy.deepcopy(net).to(device=device, dtype=dtype, memory_format=torch.channels_last).eval(), dtype


@contextlib.contextmanager
def context(precision: str, device: str):
    """Around a run: on CUDA, fp32 really is fp32 (cuDNN's TF32 convolutions off)."""
    if device == "cuda" and precision == "fp32":
        import torch

        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    else:
        yield


def calibration_images():
    """What int8 activation ranges are measured on: the bundled photograph (sRGB, 256x256) whole and
    reduced by 2, so fine and coarse detail both set the ranges. (N, 3, H, W) float32 tensors."""
    import numpy as np
    import torch

    from .. import kernels
    from ..imageio import read_image

    img = np.ascontiguousarray(read_image(_CALIBRATION)[:, :, :3])
    half = np.clip(kernels.resample(img, (img.shape[0] // 2, img.shape[1] // 2), filter="bicubic"), 0, 1)
    return [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None] for a in (img, half)]


def quantize_int8(net, calibration=None):
    """An int8 copy of `net` (see the module docstring); `net` itself is untouched.

    Every Conv2d becomes quantize -> int8 conv -> dequantize; everything between convolutions (PReLU,
    ReLU, residual adds, pixel shuffles, the bicubic base) stays fp32. Per-layer quantization costs two
    cheap element-wise passes per conv but needs nothing of the architecture, and it sidesteps torch's
    quantized PReLU, which is wrong for positive inputs (2.13: it scales them by about 0.9; quantizing
    fast-x2's PReLUs with it cost 0.92 dB on photos/misc, against 0.055 dB this way).

    calibration: the (N, C, H, W) inputs the activation ranges are measured on (default:
    `calibration_images()`). ValueError when `net` has no Conv2d to quantize.
    """
    import torch
    from torch import nn
    from torch.ao import quantization as tq

    check(net, "int8")
    engine = torch.backends.quantized.engine
    if engine not in ("x86", "fbgemm", "qnnpack", "onednn"):
        engine = next(e for e in ("x86", "fbgemm", "qnnpack") if e in torch.backends.quantized.supported_engines)
        torch.backends.quantized.engine = engine
    qconfig = tq.get_default_qconfig(engine)  # per-channel int8 weights, histogram-calibrated uint8 activations

    q = copy.deepcopy(net).cpu().float().eval()
    for parent in list(q.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                wrapped = nn.Sequential(tq.QuantStub(), child, tq.DeQuantStub())
                wrapped.qconfig = qconfig  # only the wrapped convs get a qconfig: the rest stays fp32
                setattr(parent, name, wrapped)
    with warnings.catch_warnings():  # torch 2.13 announces the move of these APIs to torchao
        warnings.simplefilter("ignore")
        tq.prepare(q, inplace=True)
        with torch.inference_mode():
            for x in calibration if calibration is not None else calibration_images():
                q(x)
        tq.convert(q, inplace=True)
    q.precision = "int8"
    return q
