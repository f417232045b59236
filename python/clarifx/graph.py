"""The node graph and its Python API.

    g = clarifx.Graph()
    r = g.create("Read", file="in.%04d.exr")
    z = g.create("Resize", r, scale=2, filter="lanczos")
    w = g.create("Write", z, file="out.%04d.exr")
    g.render(w, frames=(1, 48))
    g.save("shot.json")        # clarifx.Graph.load("shot.json") gives the same graph back

Nodes are created by type ("Resize", or the versioned ID "clarifx.Resize.1"), parameters are addressed
by name and inputs by index or name. Rendering happens only through writer nodes over a frame range.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import nodes  # noqa: F401  (registers the built-in node types)
from .frame import ClipInfo
from .nodes.base import NodeType, find

FORMAT = "clarifx.graph"
FORMAT_VERSION = 1


class Node:
    """One node in a graph: a type, checked parameter values and input connections."""

    def __init__(self, graph: "Graph", name: str, type_: type[NodeType], params: dict[str, Any]):
        self.graph = graph
        self.name = name
        self.type = type_
        self.impl = type_()  # per-node runtime state (open files, caches)
        self.params = {p.name: p.default for p in type_.params}
        self.inputs: list[Node | None] = [None] * len(type_.inputs)
        self.set(**params)

    def set(self, **params) -> "Node":
        for key, value in params.items():
            try:
                spec = self.type.param(key)
            except KeyError:
                known = ", ".join(p.name for p in self.type.params)
                raise ValueError(f"{self.name}: {self.type.id()} has no parameter '{key}' (it has: {known})") from None
            self.params[key] = spec.check(value, self.name)
        return self

    def __getitem__(self, key: str) -> Any:
        if key not in self.params:
            raise KeyError(f"{self.name} has no parameter '{key}'")
        return self.params[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(**{key: value})

    def input_index(self, input: int | str) -> int:
        names = self.type.inputs
        if isinstance(input, str):
            if input not in names:
                raise ValueError(f"{self.name}: no input named '{input}' (inputs: {', '.join(names) or 'none'})")
            return names.index(input)
        if not 0 <= input < len(names):
            raise ValueError(f"{self.name}: input {input} out of range ({len(names)} inputs)")
        return input

    def connect(self, input: int | str, source: "Node | None") -> "Node":
        index = self.input_index(input)
        if source is not None:
            if source.graph is not self.graph:
                raise ValueError(f"{self.name}: cannot connect {source.name} from another graph")
            if self is source or self in self.graph.upstream(source):
                raise ValueError(f"{self.name}: connecting {source.name} would make a cycle")
        self.inputs[index] = source
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.id(),
                "inputs": [None if n is None else n.name for n in self.inputs],
                "params": dict(self.params)}

    def __repr__(self) -> str:
        return f"<{self.type.id()} {self.name}>"


class Graph:
    def __init__(self):
        self.nodes: dict[str, Node] = {}

    def create(self, type_name: str, *inputs: Node | None, name: str | None = None, **params) -> Node:
        """Add a node of `type_name` fed by `inputs` (in input order), with `params` by name."""
        type_ = find(type_name)
        if len(inputs) > len(type_.inputs):
            raise ValueError(f"{type_.id()} takes {len(type_.inputs)} input(s), got {len(inputs)}")
        if name is None:
            k = 1
            while f"{type_.name}{k}" in self.nodes:
                k += 1
            name = f"{type_.name}{k}"
        elif name in self.nodes:
            raise ValueError(f"a node named '{name}' already exists")
        node = Node(self, name, type_, params)
        for i, source in enumerate(inputs):
            node.connect(i, source)
        self.nodes[name] = node
        return node

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node named '{name}'") from None

    def upstream(self, node: Node) -> list[Node]:
        """`node` and everything it depends on, inputs before the nodes that use them."""
        order: list[Node] = []

        def visit(n: Node) -> None:
            if n in order:
                return
            for source in n.inputs:
                if source is not None:
                    visit(source)
            order.append(n)

        visit(node)
        return order

    def writers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.type.is_writer]

    def clip(self, node: Node) -> ClipInfo:
        """What `node` outputs (size, frame range, channels, ...), from its inputs."""
        inputs = []
        for i, source in enumerate(node.inputs):
            if source is None:
                raise ValueError(f"{node.name}: input '{node.type.inputs[i]}' is not connected")
            inputs.append(self.clip(source))
        return node.impl.clip(node.params, inputs)

    def render(self, *writers: Node, frames: tuple[int, int] | None = None, progress: bool = True):
        """Render `writers` (default: every writer) over `frames` (inclusive; default: the whole clip)."""
        from .render import render

        return render(self, list(writers) or self.writers(), frames, progress=progress)

    # --- files ---
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "nodes": [n.to_dict() for n in self.nodes.values()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "graph") -> "Graph":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a clarifx graph (expected \"format\": \"{FORMAT}\")")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source}: graph format version {data.get('version')!r} is not supported "
                             f"(this clarifx reads version {FORMAT_VERSION})")
        g = cls()
        entries = data.get("nodes", [])
        try:
            for e in entries:
                g.create(e["type"], name=e["name"], **e.get("params", {}))
            for e in entries:
                for i, input_name in enumerate(e.get("inputs", [])):
                    if input_name is not None:
                        g[e["name"]].connect(i, g[input_name])
        except (KeyError, TypeError) as err:
            raise ValueError(f"{source}: malformed node entry ({err})") from None
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        return g

    def save(self, path: str | os.PathLike) -> Path:
        """Write the graph as JSON, atomically."""
        from .footage import atomic_write_text

        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Graph":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise OSError(f"{path}: cannot read graph: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        return cls.from_dict(data, source=str(path))
