"""Tiled inference for image-to-image networks (super-resolution, denoising, ...).

A frame is cut into tiles, each tile is run through the net with extra context around it, and the
tile outputs are blended with feathered weights into one preallocated output, so memory stays
O(output + one tile) instead of O(activations of the whole frame).

The net contract
----------------
``net`` is any callable (normally a ``torch.nn.Module`` in eval mode) with

    net(x: (N, C, h, w)) -> (N, C', (h - 2*border) * scale, (w - 2*border) * scale)

for every ``h, w > 2*border``, and it is *aligned*: output pixel ``(Y, X)`` belongs to input pixel
``(border + Y // scale, border + X // scale)`` of what the net was given. Two kinds of net fit:

* ``border=0`` -- the output covers the whole input; the net pads internally (``padding=1`` convs
  followed by ``pixel_shuffle``, the usual ESRGAN / SwinIR / Real-ESRGAN style).
* ``border=b`` -- the net loses ``b`` input pixels per side (valid convolutions, e.g. waifu2x
  ``upconv_7``: six valid 3x3 convs then ``ConvTranspose2d(k=4, s=2, p=3)`` -> ``border=7``,
  ``scale=2``). Such a net expects its caller to pad; :func:`run_tiled` is that caller: it pads the
  frame by ``border`` pixels per side by reflection (replication on an axis too short to reflect,
  e.g. a 1x1 image) -- do not pre-pad.

Either way :func:`run_tiled` returns ``(N, C', H*scale, W*scale)`` for an ``(N, C, H, W)`` image,
and with ``tile=None`` it is exactly ``net(pad(image, border))``, the reference tiling is measured
against.

Tiling and exactness
--------------------
Along each axis the frame is cut into ``n = ceil(H / tile)`` near-equal *cores* (each <= ``tile``)
at boundaries ``b_0=0 < b_1 < ... < b_n=H``. Each tile's net input is its core plus ``overlap``
input pixels of context per side (clamped to the frame: a tile at the frame edge sees the frame
edge exactly as the untiled run does), plus the ``border`` pixels the net consumes. Tile ``i``'s
weight along an axis is ``R(y - b_i) - R(y - b_{i+1})`` where ``y`` is an output pixel's centre
in input pixels and ``R`` a raised-cosine step from 0 to 1 over ``[-feather/2, +feather/2]``
(``R = 1`` for ``b_0``, ``0`` for ``b_n``); the 2-D weight is the product of both axes. The sum
telescopes, so weights are >= 0 and sum to exactly 1 everywhere (flat stays flat, no seams), and
each tile's weight is zero farther than ``feather/2`` from its core.

A tile's output differs from the untiled output only within ``r - border`` input pixels of an
interior edge of its context window, where ``r = receptive_radius(net, ...)``. Hence

    tiled == untiled (to float rounding)  iff  r - border <= overlap - ceil(feather / 2)

With the default ``feather = overlap`` that is ``overlap >= 2 * (r - border)``; ``feather=0``
(hard seams) needs only ``overlap >= r - border``. A smaller overlap still runs, and the
feathering hides the seams, but the result is no longer identical to the untiled run.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Callable

import torch
import torch.nn.functional as F

from . import progress

__all__ = ["run_tiled", "receptive_radius", "exact_overlap", "choose_tile"]

Net = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------
# argument checking


def _int(name: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _net_device_dtype(net) -> tuple[torch.device | None, torch.dtype | None]:
    if isinstance(net, torch.nn.Module):
        for t in net.parameters():
            return t.device, t.dtype
        for t in net.buffers():
            if t.is_floating_point():
                return t.device, t.dtype
    return None, None


# ----------------------------------------------------------------------------------------------
# padding and tile layout


def _pad_edges(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two axes by ``pad`` per side: reflect, or replicate where the axis is too
    short to reflect (reflection needs ``pad < size``)."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    x = F.pad(x, (pad, pad, 0, 0), mode="reflect" if pad < w else "replicate")
    x = F.pad(x, (0, 0, pad, pad), mode="reflect" if pad < h else "replicate")
    return x


def _boundaries(size: int, tile: int) -> list[int]:
    """Core boundaries: ceil(size/tile) near-equal cores, each at most ``tile`` long."""
    n = -(-size // tile)
    return [(i * size) // n for i in range(n + 1)]


def _step(t: torch.Tensor, half: float) -> torch.Tensor:
    """Raised-cosine step: 0 for t <= -half, 1 for t >= half (hard step at 0 when half == 0)."""
    if half == 0:
        return (t > 0).to(t.dtype)
    u = ((t + half) / (2.0 * half)).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * u)


def _axis_plan(size: int, tile: int, overlap: int, scale: int, feather: int):
    """Tiles along one axis: ``[(start, stop, weights | None)]`` where ``[start, stop)`` is the
    context window in input pixels and ``weights`` (float64, length ``(stop-start)*scale``) the
    blend weight of each output pixel of the window (``None``: all ones, a single tile)."""
    bounds = _boundaries(size, tile)
    n = len(bounds) - 1
    if n == 1:
        return [(0, size, None)]
    half = feather / 2.0
    plan = []
    for i in range(n):
        start = max(0, bounds[i] - overlap)
        stop = min(size, bounds[i + 1] + overlap)
        centre = (torch.arange(start * scale, stop * scale, dtype=torch.float64) + 0.5) / scale
        w = torch.ones_like(centre) if i == 0 else _step(centre - bounds[i], half)
        if i < n - 1:
            w = w - _step(centre - bounds[i + 1], half)
        plan.append((start, stop, w))
    return plan


def _check_output(y, x_shape, scale: int, border: int, channels: int | None):
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise ValueError(f"net must return a floating-point tensor, got {type(y).__name__}"
                         + (f" of {y.dtype}" if isinstance(y, torch.Tensor) else ""))
    n, _, h, w = x_shape
    want_h, want_w = (h - 2 * border) * scale, (w - 2 * border) * scale
    if y.ndim != 4 or y.shape[0] != n or y.shape[2] != want_h or y.shape[3] != want_w:
        raise ValueError(
            f"net returned {tuple(y.shape)} for an input of {tuple(x_shape)}; with scale={scale} "
            f"and border={border} it must return (N={n}, C', {want_h}, {want_w}) "
            f"(check scale and border)")
    if channels is not None and y.shape[1] != channels:
        raise ValueError(f"net returned {y.shape[1]} channels for one tile and {channels} for "
                         f"another")


# ----------------------------------------------------------------------------------------------
# public API


def run_tiled(net: Net, image: torch.Tensor, *, scale: int, tile: int | None, overlap: int,
              border: int = 0, device=None, dtype=None, feather: int | None = None) -> torch.Tensor:
    """Run an image-to-image ``net`` over ``image`` tile by tile (see the module docstring for the
    net contract and the exactness rule).

    image: ``(N, C, H, W)`` floating tensor, on the CPU or a GPU. The result is
        ``(N, C', H*scale, W*scale)`` with ``image``'s dtype, on ``image``'s device.
    scale: integer upscale factor of the net (1 for denoisers).
    tile: core size of a tile in input pixels; ``None`` runs the whole (padded) frame at once.
        Must be >= 2*overlap.
    overlap: input pixels of context added on each side of every core (clamped at frame edges).
    border: input pixels the net loses per side (0 when it pads internally); the frame is padded
        by this much by reflection (replication on an axis too short to reflect).
    device, dtype: where and in which precision the net runs; default: those of the net's first
        parameter, else the image's. The net must already be there (it is never moved or
        copied); each tile is copied to ``device``/``dtype`` on its way in, and its output
        converted back to ``image``'s device on its way out (accumulated in float32 for
        float16/bfloat16 images). A CPU frame can so be run on a GPU net with GPU memory for
        one tile only.
    feather: width in input pixels of the raised-cosine blend ramp centred on each seam,
        ``0 <= feather <= 2*overlap``; default ``overlap``. 0 gives hard seams.

    Memory: the output (plus, when ``border > 0``, one padded copy of the input) and the working
    set of one tile. Runs under ``torch.inference_mode()``; the result is an inference tensor.
    """
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 4:
        raise ValueError(f"image must have rank 4 (N, C, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a floating-point tensor, got {image.dtype}")
    if image.numel() == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
    if not callable(net):
        raise ValueError(f"net must be callable, got {type(net).__name__}")
    scale = _int("scale", scale, 1)
    overlap = _int("overlap", overlap, 0)
    border = _int("border", border, 0)
    if tile is not None:
        tile = _int("tile", tile, 1)
        if tile < 2 * overlap:
            raise ValueError(f"tile ({tile}) must be >= 2*overlap ({2 * overlap})")
    feather = overlap if feather is None else _int("feather", feather, 0)
    if feather > 2 * overlap:
        raise ValueError(f"feather ({feather}) must be <= 2*overlap ({2 * overlap})")

    net_device, net_dtype = _net_device_dtype(net)
    device = torch.device(device) if device is not None else (net_device or image.device)
    dtype = dtype if dtype is not None else (net_dtype or image.dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")

    n, _, height, width = image.shape
    with torch.inference_mode():
        src = _pad_edges(image, border)
        if tile is None or (tile >= height and tile >= width):
            x = src.to(device=device, dtype=dtype)
            y = net(x)
            _check_output(y, x.shape, scale, border, None)
            return y.to(device=image.device, dtype=image.dtype)

        acc_dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
        plan_y = _axis_plan(height, tile, overlap, scale, feather)
        plan_x = _axis_plan(width, tile, overlap, scale, feather)
        plan_y = [(a, b, None if w is None else w.to(image.device, acc_dtype)) for a, b, w in plan_y]
        plan_x = [(a, b, None if w is None else w.to(image.device, acc_dtype)) for a, b, w in plan_x]

        out = None
        after_tile = progress.tile_callback()
        done = 0
        for y0, y1, wy in plan_y:
            for x0, x1, wx in plan_x:
                # src is padded by `border`: window [y0, y1) plus the border lives at [y0, y1+2b)
                x = src[..., y0:y1 + 2 * border, x0:x1 + 2 * border]
                x = x.to(device=device, dtype=dtype, copy=True)
                y = net(x)
                _check_output(y, x.shape, scale, border, None if out is None else out.shape[1])
                y = y.to(device=image.device, dtype=acc_dtype)
                del x
                if out is None:
                    out = torch.zeros((n, y.shape[1], height * scale, width * scale),
                                      dtype=acc_dtype, device=image.device)
                view = out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale]
                if wy is None and wx is None:
                    view.add_(y)
                else:
                    ones_y = wy if wy is not None else torch.ones_like(wx[:1])
                    ones_x = wx if wx is not None else torch.ones_like(wy[:1])
                    view.addcmul_(y, ones_y[:, None] * ones_x[None, :])
                del y
                done += 1
                if after_tile is not None:
                    after_tile(done / (len(plan_y) * len(plan_x)))
        return out.to(image.dtype)


def receptive_radius(net: Net, scale: int, channels: int = 3, probe: int = 64, *, border: int = 0,
                     phases: int = 4, tol: float = 0.0, max_probe: int = 1024,
                     seed: int = 0) -> int:
    """How many input pixels on each side can influence an output pixel, measured empirically.

    Method (gradient support): the net is copied to float64 on the CPU (the caller's net is
    untouched) and run on a ``probe x probe`` random background in [0.25, 0.75] (plus ``border``
    per side). For output pixels ``Y = X`` at every sub-pixel phase ``0..scale-1`` of ``phases``
    consecutive input pixels near the centre (so nets that are only equivariant to shifts of 2
    or 4 pixels, e.g. with strided layers inside, are covered), the gradient of that output pixel
    (summed over channels) with respect to the input is taken; input pixels whose gradient is
    nonzero influence it. Backpropagation through convolutions and (leaky) ReLUs gives exact
    zeros outside the receptive field and, in float64, nonzero values however small the far
    influence (a product of many small weights), so no threshold is needed; the random
    background keeps ReLUs from hiding paths. The radius is the largest ``|q - (border + Y //
    scale)|`` over influencing pixels ``q`` on either axis (Chebyshev), i.e. counted from the
    aligned pixel of the :func:`run_tiled` contract: the overlap :func:`run_tiled` needs depends
    on ``radius - border``.

    A net whose output does not carry gradients is probed by impulses instead: one run on the
    background, one per phase with a small random-sign bump (0.05..0.1) on one pixel; outputs
    that change by more than float64 rounding are influenced.

    If the influence reaches the probe's edge, the probe doubles up to ``max_probe``; a net
    whose influence is global (global pooling, channel attention, full attention) raises
    ValueError. ``tol > 0`` ignores influence below ``tol`` times the strongest (e.g. 1e-4 gives
    an effective radius for such nets). Non-Module callables must accept float64 input.
    """
    if not callable(net):
        raise ValueError(f"net must be callable, got {type(net).__name__}")
    scale = _int("scale", scale, 1)
    channels = _int("channels", channels, 1)
    probe = _int("probe", probe, 8)
    border = _int("border", border, 0)
    phases = _int("phases", phases, 1)
    max_probe = _int("max_probe", max_probe, probe)
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be in [0, 1), got {tol}")
    if phases > probe // 2:
        raise ValueError(f"phases ({phases}) must be <= probe/2 ({probe // 2})")
    net64 = copy.deepcopy(net).to(device="cpu", dtype=torch.float64) \
        if isinstance(net, torch.nn.Module) else net
    gen = torch.Generator().manual_seed(seed)
    size = probe
    while True:
        radius = _probe_radius(net64, scale, channels, size, border, phases, tol, gen)
        if radius is not None:
            return radius
        if size >= max_probe:
            raise ValueError(
                f"net: the influence of one input pixel reaches the edge of a {size}x{size} "
                f"probe (max_probe={max_probe}); its receptive field is global or larger "
                f"than the probe. Pass a larger max_probe, or tol > 0 for an effective radius.")
        size = min(2 * size, max_probe)


def _support_radius(mask: torch.Tensor, centre: int) -> int | None:
    """Chebyshev radius of a 2-D support mask around (centre, centre); None if it touches the
    edge of the mask (the field may go on beyond) or 0 if empty."""
    qy, qx = torch.nonzero(mask, as_tuple=True)
    if qy.numel() == 0:
        return 0
    last = mask.shape[0] - 1
    if int(qy.min()) == 0 or int(qx.min()) == 0 or int(qy.max()) == last or int(qx.max()) == last:
        return None
    return max(int((qy - centre).abs().max()), int((qx - centre).abs().max()))


def _probe_radius(net, scale, channels, size, border, phases, tol, gen) -> int | None:
    side = size + 2 * border
    background = 0.25 + 0.5 * torch.rand((1, channels, side, side), generator=gen,
                                         dtype=torch.float64)
    first = size // 2 - phases // 2
    radius = 0
    with torch.enable_grad():
        x = background.clone().requires_grad_(True)
        y = net(x)
        _check_output(y, x.shape, scale, border, None)
        if y.requires_grad:
            for k in range(phases):
                for j in range(scale):
                    out_px = (first + k) * scale + j
                    (g,) = torch.autograd.grad(y[0, :, out_px, out_px].sum(), x,
                                               retain_graph=True)
                    g = g[0].abs().amax(dim=0)
                    r = _support_radius(g > tol * float(g.max()), border + first + k)
                    if r is None:
                        return None
                    radius = max(radius, r)
            return radius
    # no autograd through this net: impulse responses
    with torch.no_grad():
        base = y.detach()
        del x, y
        noise = 1e-12 * max(float(base.abs().max()), 1e-300)
        for k in range(phases):
            q = border + first + k
            bump = (0.05 + 0.05 * torch.rand(channels, generator=gen, dtype=torch.float64)) \
                * torch.where(torch.rand(channels, generator=gen) < 0.5, -1.0, 1.0).double()
            x = background.clone()
            x[0, :, q, q] += bump
            diff = (net(x) - base).abs().amax(dim=(0, 1))
            mask = diff > max(tol * float(diff.max()), noise)
            oy, ox = torch.nonzero(mask, as_tuple=True)
            if oy.numel() == 0:
                continue
            iy, ix = oy // scale, ox // scale  # aligned input pixel (minus border) of each output
            if int(iy.min()) == 0 or int(ix.min()) == 0 or int(iy.max()) == size - 1 \
                    or int(ix.max()) == size - 1:
                return None
            q0 = q - border
            radius = max(radius, int((iy - q0).abs().max()), int((ix - q0).abs().max()))
    return radius


def exact_overlap(net: Net, scale: int, *, border: int = 0, limit: int = 64) -> tuple[int, bool]:
    """``(overlap, exact)``: the overlap that makes :func:`run_tiled` with the default feather give
    the untiled result, ``2 * (receptive_radius - border)``, measured on ``net`` once (see
    :func:`receptive_radius`; about a second for a small net on the CPU). Nets that see farther
    than ``limit / 2`` pixels beyond their border, or whose field is global, get ``limit`` and
    ``exact=False``: the feathered blend then hides the seams without reproducing the untiled
    output exactly."""
    scale = _int("scale", scale, 1)
    border = _int("border", border, 0)
    limit = _int("limit", limit, 0)
    try:
        # the probe must show border + limit/2 pixels of influence on each side of the centre
        radius = receptive_radius(net, scale, border=border, probe=32,
                                  max_probe=max(32, 2 * (border + limit) + 16))
    except ValueError:
        return limit, False
    need = 2 * max(0, radius - border)
    return (need, True) if need <= limit else (limit, False)


def choose_tile(height: int, width: int, *, scale: int, channels_out: int, budget_bytes: int,
                overlap: int = 0, channels_in: int = 3, features: int = 64, live: int = 3,
                bytes_per_value: int = 4, multiple: int = 8) -> int | None:
    """The largest ``tile`` for :func:`run_tiled` whose per-tile working set fits ``budget_bytes``;
    ``None`` when the whole frame fits (run untiled).

    The working set of a window of ``w x w`` input pixels (core + 2*overlap) is modelled as
    ``w*w * bytes_per_value * (channels_in + live*features + 2*channels_out*scale**2)``: the input,
    ``live`` activation tensors of ``features`` channels at input resolution alive at once
    (about 3 for a plain conv stack under inference_mode: a layer's input, its output and an
    activation), and the output twice (the net's pre-shuffle tensor and the shuffled output).
    For nets with wide features after upsampling, count those as ``features * scale**2``. The
    budget excludes the frame-sized output buffer, which :func:`run_tiled` always holds.
    The tile is rounded down to a multiple of ``multiple`` (nets with strided layers need it) and
    is at least ``2*overlap``; ValueError names ``budget_bytes`` when even that does not fit.
    """
    height = _int("height", height, 1)
    width = _int("width", width, 1)
    scale = _int("scale", scale, 1)
    channels_out = _int("channels_out", channels_out, 1)
    budget_bytes = _int("budget_bytes", budget_bytes, 1)
    overlap = _int("overlap", overlap, 0)
    channels_in = _int("channels_in", channels_in, 1)
    features = _int("features", features, 0)
    live = _int("live", live, 0)
    bytes_per_value = _int("bytes_per_value", bytes_per_value, 1)
    multiple = _int("multiple", multiple, 1)

    per_pixel = bytes_per_value * (channels_in + live * features + 2 * channels_out * scale ** 2)
    if height * width * per_pixel <= budget_bytes:
        return None
    window = math.isqrt(budget_bytes // per_pixel)
    tile = min(window - 2 * overlap, max(height, width))
    if tile >= multiple:
        tile -= tile % multiple
    smallest = max(1, 2 * overlap)
    if tile < smallest:
        need = (smallest + 2 * overlap) ** 2 * per_pixel
        raise ValueError(
            f"budget_bytes ({budget_bytes}) too small: the smallest tile ({smallest}) with "
            f"overlap {overlap} needs {need} bytes ({per_pixel} bytes per input pixel)")
    return tile
