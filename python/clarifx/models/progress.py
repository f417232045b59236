"""Per-tile progress of model inference, kept apart from models/tiling.py so that code setting it up
(the OFX bridge) need not import torch.

Within ``after_each_tile(callback)`` (in this thread), ``run_tiled`` calls ``callback(fraction)`` after
each tile, ``fraction`` being the share of the frame's tiles done: progress for long frames, and a point
where a render can be stopped mid-frame by raising from ``callback`` (the OFX bridge's host abort).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable

_AFTER_TILE: contextvars.ContextVar[Callable[[float], None] | None] = \
    contextvars.ContextVar("clarifx_after_tile", default=None)


@contextlib.contextmanager
def after_each_tile(callback: Callable[[float], None]):
    token = _AFTER_TILE.set(callback)
    try:
        yield
    finally:
        _AFTER_TILE.reset(token)


def tile_callback() -> Callable[[float], None] | None:
    return _AFTER_TILE.get()
