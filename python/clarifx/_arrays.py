"""Array interop: the one place that knows numpy, torch and CuPy apart.

Kernels see every array as a 4-D (N, C, H, W) strided view handed over by DLPack, so nothing is
copied on the way in or out. Outputs are allocated by the caller's own library on the caller's device,
so results come back as the caller's type. On CUDA the kernel runs on the library's current stream.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import numpy as np

FLOAT_DTYPES = ("float32", "float16")


def _library(x, name: str = "array") -> str:
    """'numpy', 'torch' or 'cupy'; ValueError naming `name` for anything else."""
    if isinstance(x, np.ndarray):
        return "numpy"
    module = type(x).__module__.split(".")[0]
    if module == "torch" and "torch" in sys.modules:
        return "torch"
    if module == "cupy" and "cupy" in sys.modules:
        return "cupy"
    raise ValueError(f"{name}: expected a numpy array, torch tensor or CuPy array, got {type(x).__name__}")


def _dtype_name(x) -> str:
    return str(x.dtype).removeprefix("torch.")


@dataclass(frozen=True)
class Device:
    """Where an array lives: ('cpu', None) or ('cuda', ordinal)."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"cuda:{self.index}"


def device_of(x, name: str = "array") -> Device:
    lib = _library(x, name)
    if lib == "numpy":
        return Device("cpu")
    if lib == "torch":
        return Device("cpu") if x.device.type == "cpu" else Device(x.device.type, x.device.index)
    return Device("cuda", x.device.id)


def check_array(x, name: str, ranks: tuple[int, ...]) -> None:
    """ValueError naming `name` unless x is a float32/float16 numpy, torch or CuPy array of an allowed rank."""
    _library(x, name)
    if x.ndim not in ranks:
        allowed = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{name}: expected {allowed} dimensions, got shape {tuple(x.shape)}")
    if _dtype_name(x) not in FLOAT_DTYPES:
        raise ValueError(f"{name}: dtype must be float32 or float16, got {_dtype_name(x)}")
    dev = device_of(x)
    if dev.kind not in ("cpu", "cuda"):
        raise ValueError(f"{name}: unsupported device {dev}")


def check_same_device(**arrays) -> None:
    """ValueError naming the odd one out unless the given arrays (None skipped) share one device."""
    items = [(name, device_of(a, name)) for name, a in arrays.items() if a is not None]
    first_name, first = items[0]
    for name, dev in items[1:]:
        if dev != first:
            raise ValueError(f"{name} is on {dev} but {first_name} is on {first}")


def nchw(x):
    """View x as (N, C, H, W) without copying: rank 4 is already NCHW, rank 3 is HWC."""
    if x.ndim == 4:
        return x
    if _library(x) == "torch":
        return x.permute(2, 0, 1).unsqueeze(0)
    return x.transpose(2, 0, 1)[None]


def empty(like, shape: tuple[int, ...]):
    """An uninitialised array of the same library, device and dtype as `like`."""
    lib = _library(like)
    dtype = like.dtype
    if lib == "numpy":
        return np.empty(shape, dtype=dtype)
    if lib == "torch":
        import torch

        return torch.empty(shape, dtype=dtype, device=like.device)
    import cupy

    with cupy.cuda.Device(like.device.id):
        return cupy.empty(shape, dtype=dtype)


def stream_of(x) -> int:
    """Handle of the caller's current CUDA stream for x's device (0 on the CPU)."""
    dev = device_of(x)
    if dev.kind == "cpu":
        return 0
    if _library(x) == "torch":
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream
    import cupy

    with cupy.cuda.Device(dev.index):
        return cupy.cuda.get_current_stream().ptr


def capsule(x, stream: int):
    """A DLPack capsule viewing x (no copy). Read-only numpy arrays need the versioned protocol."""
    if _library(x) == "torch" and x.requires_grad:
        x = x.detach()
    kwargs = {}
    if device_of(x).kind == "cuda":
        # We run on the producer's own current stream, so it needs no synchronisation. DLPack reserves
        # 0 for CUDA; 1 names the legacy default stream.
        kwargs["stream"] = stream or 1
    with _current_device(x):  # torch and CuPy export (and check the stream) on the current device only
        try:
            return x.__dlpack__(max_version=(1, 0), **kwargs)
        except TypeError:  # producers that predate DLPack 1.0
            return x.__dlpack__(**kwargs)


def _current_device(x):
    """A context making x's GPU the current one (nothing for CPU arrays)."""
    dev = device_of(x)
    if dev.kind != "cuda":
        return contextlib.nullcontext()
    if _library(x) == "torch":
        import torch

        return torch.cuda.device(x.device)
    import cupy

    return cupy.cuda.Device(dev.index)


def wrap_cuda_pointer(ptr: int, shape: tuple[int, ...], dtype, *, device: int, strides: tuple[int, ...] | None = None,
                      owner=None):
    """A CuPy array over device memory that someone else owns (an OFX host's CUDA buffer), without copying.

    strides are in bytes (C-contiguous if None); `owner` is kept alive as long as the array.
    Hand the result to torch with torch.from_dlpack, or straight to clarifx.kernels.
    """
    import cupy

    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if strides is None:
        strides, step = [], dtype.itemsize
        for s in reversed(shape):
            strides.insert(0, step)
            step *= s
    strides = tuple(int(s) for s in strides)
    extent = dtype.itemsize + sum((s - 1) * abs(st) for s, st in zip(shape, strides)) if all(shape) else 0
    memory = cupy.cuda.UnownedMemory(int(ptr), extent, owner, device)
    return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(memory, 0), strides)
