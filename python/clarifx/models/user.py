"""Users' own checkpoints (.pth, .pt, .ckpt, .safetensors): architecture and scale recognised by spandrel.

A `--model` / `model=` argument that is an existing file, or ends in one of `SUFFIXES`, is a user
checkpoint (registry names win over files of the same name). Loading it:

* the weights are read without running code: safetensors, or `torch.load(weights_only=True)`, which
  refuses any pickled object other than tensors and plain containers (a whole pickled model, or a
  crafted `__reduce__`), so a downloaded .pth cannot run code on the machine that opens it;
* spandrel (`pip install --no-deps spandrel einops`; see `_spandrel` for why --no-deps) recognises the
  architecture and its hyper-parameters from the state dict and builds the network;
* the result is wrapped to clarifx's model contract (`_wrapper`): a torch module with `.scale`
  (spandrel's) and `.border = 0`, in eval mode, taking (N, 3, H, W) sRGB in [0, 1].

Every refusal is one ValueError line that names the file.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import types
import warnings
from pathlib import Path

SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
INSTALL = "pip install --no-deps spandrel einops"  # --no-deps: spandrel's torchvision requirement is not met here


def is_checkpoint(name) -> bool:
    """Whether a model argument names a checkpoint file rather than a registry model."""
    name = os.fspath(name)
    return name.lower().endswith(SUFFIXES) or os.path.isfile(name)


def load(path):
    """The checkpoint at `path` as a torch module (see `_wrapper`), loaded once per version of the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{path}: model file not found")
    st = p.stat()
    return _load(str(p.resolve()), st.st_mtime_ns, st.st_size, str(path))


def card(path):
    """A ModelCard describing the checkpoint at `path` (loads it: the scale is the network's)."""
    from . import ModelCard

    net = load(path)
    task = {"SR": "sr", "FaceSR": "face restoration"}.get(net.purpose, "restoration")
    return ModelCard(str(path), task, net.scale, "user", "unknown (user checkpoint)",
                     f"user checkpoint, {net.architecture} recognised by spandrel", "",
                     str(Path(path).parent), Path(path).name)


@functools.lru_cache(maxsize=4)
def _load(resolved: str, mtime_ns: int, size: int, shown: str):
    spandrel = _spandrel(shown)
    state = _state_dict(Path(resolved), shown)
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ValueError(f"{shown}: spandrel recognises no supported architecture in this checkpoint "
                         f"(spandrel {spandrel.__version__})") from None
    except Exception as e:  # a state dict that looks like an architecture but does not fit it
        raise ValueError(f"{shown}: spandrel could not build the network: {_one_line(e)}") from e
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ValueError(f"{shown}: {desc.architecture.name} is a {desc.purpose} model (image and mask in); "
                         "clarifx runs image-to-image models")
    if (desc.input_channels, desc.output_channels) != (3, 3):
        raise ValueError(f"{shown}: {desc.architecture.name} model with {desc.input_channels} input and "
                         f"{desc.output_channels} output channels; clarifx runs RGB models (3 in, 3 out)")
    return _wrapper()(desc.float().cpu().eval(), shown)


def _state_dict(path: Path, shown: str) -> dict:
    """The checkpoint's tensors, read without executing pickled code."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError for a damaged file
            raise ValueError(f"{shown}: not a readable safetensors file: {_one_line(e)}") from e
    try:
        with warnings.catch_warnings():  # torch warns before refusing a TorchScript archive; the error says it
            warnings.filterwarnings("ignore", message=".*TorchScript")
            state = torch.load(path, map_location="cpu", weights_only=True)  # never weights_only=False
    except Exception as e:
        text = str(e)
        if "TorchScript" in text:  # compiled code, not weights: torch.jit.load would run it
            raise ValueError(f"{shown}: refused: a TorchScript archive (code), not a state dict; clarifx reads "
                             "weights only. Save the model's state_dict() or a .safetensors file instead") from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)  # the first object torch refused to build
        if found:
            raise ValueError(f"{shown}: refused: the checkpoint holds pickled Python objects ({found.group(1)}) "
                             "that would run code when loaded; clarifx reads weights only. Save the model's "
                             "state_dict() (torch.save(model.state_dict(), ...)) or a .safetensors file "
                             "instead") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)  # torch's own reason, without its advice
        raise ValueError(f"{shown}: not a torch checkpoint "
                         f"({detail.group(1).strip() if detail else _one_line(e)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{shown}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _one_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


@functools.cache
def _wrapper():
    """The UserModel class, defined on first use: torch is imported only when a checkpoint is loaded."""
    from torch import nn

    class UserModel(nn.Module):
        """clarifx's model contract around a spandrel ImageModelDescriptor.

        forward is spandrel's call API (it pads to the architecture's size requirements, runs the
        architecture's own call, e.g. RestoreFormer's normalisation, clamps to [0, 1] and crops), so
        clarifx's output is what spandrel itself gives. The network is also registered as a child
        module, so .to(), copy.deepcopy (int8 and half-precision copies) and .modules() reach it and
        the descriptor inside a copy still calls the copied network."""

        border = 0

        def __init__(self, descriptor, path: str):
            super().__init__()
            self.net = descriptor.model
            self.descriptor = descriptor
            self.scale = int(descriptor.scale)
            self.path = path
            self.architecture = descriptor.architecture.name
            self.purpose = descriptor.purpose
            self.eval()

        def forward(self, x):
            return self.descriptor(x)

        def extra_repr(self) -> str:
            return f"{self.path}: {self.architecture} x{self.scale}"

    return UserModel


def _spandrel(shown: str):
    """spandrel, imported without torchvision.

    spandrel 0.4 imports every architecture when it is imported, and two of them import torchvision
    at module level: LaMa (`torchvision.transforms.functional.rotate, InterpolationMode`; an inpainting
    model, which clarifx refuses before it runs) and RestoreFormer (`...functional.normalize`, used in
    its call to map [0, 1] to [-1, 1]). No other spandrel code touches torchvision. There is no CPU
    torchvision to install, so when it is absent a three-module shim with exactly those names is put
    in sys.modules for the duration of spandrel's import and taken out again: spandrel keeps the
    functions it imported, and nothing else in the process sees a fake torchvision."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        raise ValueError(f"{shown}: loading a checkpoint file needs spandrel: {INSTALL}")
    shim = _torchvision_shim() if importlib.util.find_spec("torchvision") is None else {}
    sys.modules.update(shim)
    try:
        import spandrel
    finally:
        for name in shim:
            sys.modules.pop(name, None)
    return spandrel


def _torchvision_shim() -> dict:
    import enum

    import torch

    class InterpolationMode(enum.Enum):  # torchvision's values; LaMa reads .BILINEAR
        NEAREST = "nearest"
        NEAREST_EXACT = "nearest-exact"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"
        BOX = "box"
        HAMMING = "hamming"
        LANCZOS = "lanczos"

    def normalize(tensor, mean, std, inplace=False):
        """torchvision's: per channel (tensor - mean) / std over (..., C, H, W)."""
        mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std) if inplace else (tensor - mean) / std

    def rotate(*args, **kwargs):
        raise NotImplementedError("torchvision is not installed (clarifx does not run LaMa inpainting models)")

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode, functional.normalize, functional.rotate = InterpolationMode, normalize, rotate
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    package = types.ModuleType("torchvision")
    package.transforms = transforms
    return {"torchvision": package, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}
