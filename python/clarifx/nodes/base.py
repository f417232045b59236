"""Node descriptors: typed parameters and node types with stable, versioned IDs.

The same descriptors drive the Python API, graph files, the CLI and the OFX bridge (which turns each
Param into an OFX parameter), so everything a host or a script needs to know lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..frame import ClipInfo, Frame

PARAM_TYPES = ("float", "int", "bool", "choice", "string", "file")


@dataclass(frozen=True)
class Param:
    name: str
    type: str                           # one of PARAM_TYPES
    default: Any
    help: str
    label: str = ""
    min: float | None = None            # hard limits (numbers)
    max: float | None = None
    choices: tuple[str, ...] = ()       # for "choice"
    aliases: dict[str, str] = field(default_factory=dict)  # accepted spellings of a choice -> the choice

    def __post_init__(self):
        assert self.type in PARAM_TYPES, self.type

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def check(self, value: Any, where: str) -> Any:
        """`value` converted to this parameter's type, or ValueError naming `where`.`name`."""
        what = f"{where}: parameter '{self.name}'"
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{what} must be true or false, got {value!r}")
            return value
        if self.type in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{what} must be a number, got {value!r}")
            if self.type == "int":
                if value != int(value):
                    raise ValueError(f"{what} must be a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise ValueError(f"{what} must be in [{self.min}, {self.max}], got {value!r}")
            return value
        if not isinstance(value, str):
            raise ValueError(f"{what} must be a string, got {value!r}")
        if self.type == "choice":
            value = self.aliases.get(value, value)
            if value not in self.choices:
                raise ValueError(f"{what} must be one of {', '.join(self.choices)}; got {value!r}")
        return value

    def describe(self) -> dict[str, Any]:
        d = {"name": self.name, "type": self.type, "default": self.default, "label": self.title, "help": self.help}
        if self.min is not None or self.max is not None:
            d["range"] = [self.min, self.max]
        if self.choices:
            d["choices"] = list(self.choices)
        return d


@dataclass(frozen=True)
class Want:
    """How a node wants the frames of one input: colourspace (None: as they come; LINEAR_LIGHT: any
    scene-linear space) and alpha state (None: as it comes)."""

    colorspace: str | None = None
    premultiplied: bool | None = None


LINEAR_LIGHT = "linear light"  # Want.colorspace token: any scene-linear space will do


def wanted_colorspace(want: Want, current: str) -> str:
    """The colourspace a frame in `current` is converted to for `want`."""
    from .. import colour
    from ..frame import LINEAR

    if want.colorspace is None or colour.is_data(current):
        return current
    if want.colorspace == LINEAR_LIGHT:
        return current if colour.is_scene_linear(current) else LINEAR
    return colour.canonical(want.colorspace)


def wanted_clip(clip: ClipInfo, want: Want) -> ClipInfo:
    """`clip` as it looks after its frames are converted for `want`."""
    import dataclasses

    premultiplied = clip.premultiplied if want.premultiplied is None else want.premultiplied
    return dataclasses.replace(clip, colorspace=wanted_colorspace(want, clip.colorspace), premultiplied=premultiplied)


class NodeType:
    """A kind of node. Subclasses set the class attributes and override the methods they need."""

    name: ClassVar[str]                 # "Resize"
    version: ClassVar[int] = 1
    help: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("source",)   # input names; index or name addresses an input
    params: ClassVar[tuple[Param, ...]] = ()
    is_writer: ClassVar[bool] = False   # renders end at writers

    @classmethod
    def id(cls) -> str:
        return f"clarifx.{cls.name}.{cls.version}"

    @classmethod
    def param(cls, name: str) -> Param:
        for p in cls.params:
            if p.name == name:
                return p
        raise KeyError(name)

    # --- behaviour (params are the node's checked values) ---
    def want(self, params: dict, index: int, clip: ClipInfo) -> Want:
        """How input `index` (holding `clip`) must arrive."""
        return Want()

    def frames_needed(self, params: dict, t: int, index: int) -> list[int]:
        """Frames of input `index` needed to render frame t (temporal nodes ask for t-k..t+k)."""
        return [t]

    def clip(self, params: dict, inputs: list[ClipInfo]) -> ClipInfo:
        """What this node outputs, given what its inputs hold (default: its first input as it wants it)."""
        return wanted_clip(inputs[0], self.want(params, 0, inputs[0]))

    def is_identity(self, params: dict, inputs: list[ClipInfo]) -> int | None:
        """The index of the input this node would return unchanged with these parameters, else None
        (hosts then skip the render and pass that input through)."""
        return None

    def render(self, params: dict, t: int, inputs: list[dict[int, Frame]]) -> Frame:
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"id": cls.id(), "name": cls.name, "version": cls.version, "help": cls.help,
                "inputs": list(cls.inputs), "params": [p.describe() for p in cls.params]}


_REGISTRY: dict[str, type[NodeType]] = {}


def register(cls: type[NodeType]) -> type[NodeType]:
    assert cls.id() not in _REGISTRY, cls.id()
    _REGISTRY[cls.id()] = cls
    return cls


def find(type_name: str) -> type[NodeType]:
    """The node type for "clarifx.Resize.1", "Resize.1" or "Resize" (the latest version)."""
    name = type_name.removeprefix("clarifx.")
    base, _, version = name.partition(".")
    matches = [c for c in _REGISTRY.values() if c.name == base and (not version or str(c.version) == version)]
    if not matches:
        known = ", ".join(sorted({c.name for c in _REGISTRY.values()}))
        raise ValueError(f"unknown node type '{type_name}' (known: {known})")
    return max(matches, key=lambda c: c.version)


def all_types() -> list[type[NodeType]]:
    return sorted(_REGISTRY.values(), key=lambda c: (c.name, c.version))
