"""Rendering a graph over a frame range.

Each writer pulls frame t through the graph. A node's input frames are converted to the colourspace and
alpha state that node wants, once, and kept in a cache exactly as long as some node will still ask for
them (a temporal node asking for t-k..t+k reuses frames across steps). Readers decode ahead on a
background thread and writers encode behind on another, so I/O overlaps processing.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, colour
from .frame import Frame, with_alpha_state
from .nodes.base import Want, wanted_colorspace
from .nodes.io import Read
from .sequence import SequencePattern

Key = tuple[str, int]  # (node name, frame number)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a render; the message says where it stopped and how to resume."""


@dataclass
class RenderReport:
    rendered: dict[str, list[int]] = field(default_factory=dict)  # writer name -> frames written this run
    kept: dict[str, list[int]] = field(default_factory=dict)      # writer name -> complete frames resumed over
    seconds: float = 0.0


def _satisfies(frame: Frame, want: Want) -> bool:
    if wanted_colorspace(want, frame.colorspace) != frame.colorspace:
        return False
    return want.premultiplied is None or frame.alpha_index is None or frame.premultiplied == want.premultiplied


def adapt(frame: Frame, want: Want) -> Frame:
    """`frame` converted (in place) to the colourspace and alpha state `want` asks for."""
    target = wanted_colorspace(want, frame.colorspace)
    if target != frame.colorspace:
        frame = colour.convert(frame, target)
    if want.premultiplied is not None:
        frame = with_alpha_state(frame, want.premultiplied)
    return frame


class _Engine:
    def __init__(self, graph, writers):
        self.order = []  # every node the writers depend on, inputs first
        for w in writers:
            self.order += [n for n in graph.upstream(w) if n not in self.order]
        self.uses = {n.name: 0 for n in self.order}  # how many node inputs read each node
        for n in self.order:
            for source in n.inputs:
                self.uses[source.name] += 1
        self.clips = {n.name: graph.clip(n) for n in self.order}
        self.cache: dict[Key, list[Frame]] = {}  # variants of one frame (different colourspace / alpha)

    def _requests(self, node, t):
        """(input index, source node, frame number, want) for everything `node` needs to render t."""
        for i, source in enumerate(node.inputs):
            want = node.impl.want(node.params, i, self.clips[source.name])
            for n in node.impl.frames_needed(node.params, t, i):
                yield i, source, n, want

    def pull(self, node, t) -> Frame:
        inputs = [dict() for _ in node.inputs]
        for i, source, n, want in self._requests(node, t):
            inputs[i][n] = self._get(source, n, want)
        frame = node.impl.render(node.params, t, inputs)
        return frame if frame.number == t else frame.replace(number=t)  # a node may build on a neighbour

    def _get(self, source, n, want) -> Frame:
        key = (source.name, n)
        variants = self.cache.get(key)
        if variants is None:
            variants = self.cache[key] = [self.pull(source, n)]
        for frame in variants:
            if _satisfies(frame, want):
                return frame
        base = variants[0]
        # Convert in place when nobody else can see these pixels; otherwise convert a copy.
        shared = self.uses[source.name] > 1 or any(
            f.pixels is base.pixels for k, fs in self.cache.items() if k != key for f in fs)
        frame = adapt(base.replace(pixels=base.pixels.copy()) if shared else base, want)
        if shared:
            variants.append(frame)
        else:
            variants[:] = [frame]
        return frame

    def needed(self, writers, t, out: set | None = None) -> set[Key]:
        """Every (node, frame) the writers' frame t depends on."""
        out = set() if out is None else out
        for w in writers:
            for _, source, n, _ in self._requests(w, t):
                if (source.name, n) not in out:
                    out.add((source.name, n))
                    self.needed([source], n, out)
        return out

    def read_order(self, steps: list[tuple[int, list]]) -> dict[str, list[int]]:
        """The frames each reader will be asked for, in order, simulating the cache."""
        reads: dict[str, list[int]] = {n.name: [] for n in self.order if isinstance(n.impl, Read)}
        cached: set[Key] = set()

        def visit(node, t):
            for _, source, n, _ in self._requests(node, t):
                if (source.name, n) not in cached:
                    visit(source, n)
                    cached.add((source.name, n))
                    if source.name in reads:
                        reads[source.name].append(n)

        for k, (t, writers) in enumerate(steps):
            for w in writers:
                visit(w, t)
            if k + 1 < len(steps):
                cached &= self.needed(steps[k + 1][1], steps[k + 1][0])
        return reads

    def evict(self, keep: set[Key]) -> None:
        for key in [k for k in self.cache if k not in keep]:
            del self.cache[key]


def fingerprint(graph, writer) -> str:
    """Changes whenever anything that shapes the writer's frames changes (nodes, parameters, clarifx)."""
    data = {"clarifx": __version__, "nodes": [n.to_dict() for n in graph.upstream(writer)]}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _files(file: str, frames) -> dict[Path, int]:
    """The files a Read or Write `file` touches for `frames` (resolved path -> frame number)."""
    pattern = SequencePattern.parse(file)
    if pattern is None:
        return {Path(file).resolve(): frames[0]}
    return {pattern.path(n).resolve(): n for n in frames}


def _check_outputs(engine, writers, frames: list[int]) -> None:
    """No writer may overwrite an input, or another writer's output."""
    taken: dict[Path, str] = {}
    for node in engine.order:
        if isinstance(node.impl, Read):
            clip = engine.clips[node.name]
            for path in _files(node.params["file"], range(clip.first, clip.last + 1)):
                taken[path] = f"the input of {node.name}"
    for w in writers:
        for path, n in _files(w.params["file"], frames).items():
            if path in taken:
                raise ValueError(f"{w.name}: {w.params['file']} (frame {n}) would overwrite {taken[path]}; "
                                 "choose another output")
        for path in _files(w.params["file"], frames):
            taken[path] = f"the output of {w.name}"


def render(graph, writers, frames: tuple[int, int] | None, *, progress: bool = True) -> RenderReport:
    for w in writers:
        if not w.type.is_writer:
            raise ValueError(f"{w.name} is a {w.type.name} node; render a writer (Write) node")
    if not writers:
        raise ValueError("the graph has no Write node to render")
    engine = _Engine(graph, writers)
    clips = {w.name: engine.clips[w.name] for w in writers}
    if frames is None:
        frames = (min(c.first for c in clips.values()), max(c.last for c in clips.values()))
    first, last = frames
    if first > last:
        raise ValueError(f"frames {first}-{last}: the first frame comes after the last")
    for w in writers:
        c = clips[w.name]
        if first < c.first or last > c.last:
            raise ValueError(f"{w.name}: frames {first}-{last} are outside its input's range {c.first}-{c.last}")
    wanted = list(range(first, last + 1))
    _check_outputs(engine, writers, wanted)

    report = RenderReport()
    started = time.perf_counter()
    begun = []
    bar = None
    t = first
    try:
        todo = {}
        for w in writers:
            todo[w.name] = w.impl.begin(w.params, clips[w.name], wanted, fingerprint(graph, w))
            begun.append(w)
            report.kept[w.name] = sorted(set(wanted) - set(todo[w.name]))
            report.rendered[w.name] = []
        steps = [(s, [w for w in writers if s in todo[w.name]]) for s in wanted]
        steps = [(s, ws) for s, ws in steps if ws]
        for name, order in engine.read_order(steps).items():
            graph[name].impl.prefetch(graph[name].params, order)
        bar = _progress(len(steps), ", ".join(w.name for w in writers), progress)
        for k, (t, ws) in enumerate(steps):
            for w in ws:
                engine.pull(w, t)
                report.rendered[w.name].append(t)
            engine.evict(engine.needed(steps[k + 1][1], steps[k + 1][0]) if k + 1 < len(steps) else set())
            bar.update(1)
        for w in writers:
            w.impl.finish()
    except KeyboardInterrupt:
        for w in begun:
            w.impl.abort()
        done = sum(len(v) for v in report.rendered.values())
        raise Interrupted(f"interrupted at frame {t} after {done} frame(s); finished image frames are kept, "
                          "an unfinished video is not written; run again to resume") from None
    except BaseException:
        for w in begun:
            w.impl.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        engine.cache.clear()
        for node in engine.order:
            close = getattr(node.impl, "close", None)
            if close is not None:
                close()
    report.seconds = time.perf_counter() - started
    return report


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="frame", file=sys.stderr, disable=not enabled, dynamic_ncols=True)
