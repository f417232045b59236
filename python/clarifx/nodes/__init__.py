"""The node types clarifx knows: `clarifx.nodes.list()` names them, `describe(id)` tells all about one."""

from __future__ import annotations

from typing import Any

from . import image, io, restore, temporal  # noqa: F401  (each module registers its node types)
from .base import NodeType, Param, Want, all_types, find

__all__ = ["NodeType", "Param", "Want", "list", "describe", "find"]


def list() -> list[str]:  # noqa: A001  (the API reads clarifx.nodes.list())
    """The versioned IDs of every node type, e.g. "clarifx.Resize.1"."""
    return [t.id() for t in all_types()]


def describe(type_id: str) -> dict[str, Any]:
    """ID, help, inputs and parameters (type, default, range, choices, help) of a node type."""
    return find(type_id).describe()
