"""Pure-numpy reference of film grain synthesis, written from the rules in csrc/include/clarifx/grain.h.

Slow and simple on purpose: every backend is checked against it.
"""

from __future__ import annotations

import functools

import numpy as np

BLOCK = 32
OVERLAP = 2
SIZE = 64
MAX_OFFSET = SIZE - BLOCK - OVERLAP
LUT_SIZE = 256
TOP = 16  # warm-up rows above the crop
SIDE = 8  # warm-up columns left and right of the crop
FIELD_H = TOP + SIZE
FIELD_W = SIDE + SIZE + SIDE
MAX_GAIN = 20.0  # largest crop RMS of the stability probe (seed 0, frame 0, channel 0 noise)

_MASK = (1 << 64) - 1


def mix64(z):
    """SplitMix64 finaliser on Python ints or uint64 arrays (wrapping arithmetic)."""
    if isinstance(z, int):
        z = (z + 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def grain_key(seed: int, frame: int, stream: int) -> int:
    return mix64(mix64(mix64(seed & _MASK) ^ (frame & _MASK)) ^ stream)


def taps(lag: int) -> list[tuple[int, int]]:
    """(dy, dx) of the AR neighbours in coefficient order."""
    return [(dy, dx) for dy in range(-lag, 1) for dx in range(-lag, lag + 1) if (dy, dx) < (0, 0)]


def gaussian_field(seed: int, frame: int, channel: int) -> np.ndarray:
    count = FIELD_H * FIELD_W
    k = np.arange(2 * count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = mix64(np.uint64(grain_key(seed, frame, 1 + channel)) + k)
    u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    u1, u2 = u[0::2], u[1::2]
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return z.reshape(FIELD_H, FIELD_W)


def ar_filter(noise: np.ndarray, lag: int, coeffs, luma_tap: np.ndarray | None) -> np.ndarray:
    """Raster-order AR filter with zeros outside the field; luma_tap is weight * channel 0's field."""
    nb = taps(lag)
    same_row = [(dx, a) for (dy, dx), a in zip(nb, coeffs) if dy == 0]
    rows_above = [(dy, dx, a) for (dy, dx), a in zip(nb, coeffs) if dy < 0]
    g = np.zeros((FIELD_H + lag, FIELD_W + 2 * lag))  # padded by lag above, left and right
    with np.errstate(over="ignore", invalid="ignore"):
        for y in range(FIELD_H):
            py = y + lag
            row = noise[y].copy()
            if luma_tap is not None:
                row += luma_tap[y]
            for dy, dx, a in rows_above:
                row += a * g[py + dy, lag + dx: lag + dx + FIELD_W]
            if not same_row:
                g[py, lag: lag + FIELD_W] = row
            for x in range(FIELD_W if same_row else 0):
                px = x + lag
                g[py, px] = row[x] + sum(a * g[py, px + dx] for dx, a in same_row)
    return g[lag:, lag: lag + FIELD_W]


def _crop(field: np.ndarray) -> np.ndarray:
    return field[TOP:, SIDE: SIDE + SIZE]


def _rms(a: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.mean(a * a)))


@functools.lru_cache(maxsize=None)
def _probe_gain(lag: int, coeffs: tuple[float, ...]) -> float:
    """Crop RMS of one filter run over the fixed stability probe (channel 0 noise of seed 0, frame 0)."""
    return _rms(_crop(ar_filter(gaussian_field(0, 0, 0), lag, coeffs, None)))


def grain_template(channels: int, lag: int, ar_coeffs, ar_luma, seed: int, frame: int) -> np.ndarray:
    """(channels, 64, 64) float32 unit-RMS templates; ValueError if a filter diverges."""
    coeffs = np.asarray(ar_coeffs, dtype=np.float32).astype(np.float64).reshape(channels, -1)
    luma = np.asarray(ar_luma, dtype=np.float32).astype(np.float64)
    for c in range(channels):
        if not _probe_gain(lag, tuple(coeffs[c])) <= MAX_GAIN:
            raise ValueError("ar_coeffs make the grain filter unstable")
    out = np.zeros((channels, SIZE, SIZE), dtype=np.float32)
    field0 = None
    for c in range(channels):
        luma_tap = None if c == 0 else luma[c] * field0
        g = ar_filter(gaussian_field(seed, frame, c), lag, coeffs[c], luma_tap)
        if c == 0:
            field0 = g
        rms = _rms(_crop(g))
        out[c] = _crop(g) / rms if rms > 0 else 0.0
    return out


def grain_offsets(seed: int, frame: int, blocks_y: int, blocks_x: int) -> np.ndarray:
    """(blocks_y, blocks_x, 2) int32 (oy, ox)."""
    by, bx = np.meshgrid(np.arange(blocks_y, dtype=np.uint64), np.arange(blocks_x, dtype=np.uint64), indexing="ij")
    with np.errstate(over="ignore"):
        u = mix64(np.uint64(grain_key(seed, frame, 0)) + ((by << np.uint64(32)) | bx))
    oy = (u >> np.uint64(32)) % np.uint64(MAX_OFFSET + 1)
    ox = (u & np.uint64(0xFFFFFFFF)) % np.uint64(MAX_OFFSET + 1)
    return np.stack([oy, ox], axis=-1).astype(np.int32)


def _blend(prev, cur, i):
    w_prev = np.where(i == 0, 27.0, 17.0) / 32.0
    return w_prev * prev + (44.0 / 32.0 - w_prev) * cur


def grain_field(tmpl: np.ndarray, offsets: np.ndarray, height: int, width: int) -> np.ndarray:
    """G(x, y) of one channel over a height x width image."""
    y = np.arange(height)[:, None]
    x = np.arange(width)[None, :]
    by, ly = y // BLOCK, y % BLOCK
    bx, lx = x // BLOCK, x % BLOCK

    def patch(block_y, block_x, dy, dx):
        oy = offsets[block_y, block_x, 0]
        ox = offsets[block_y, block_x, 1]
        return tmpl[oy + dy, ox + dx]

    def row_of_blocks(block_y, dy):
        h = patch(block_y, bx, dy, lx)
        seam = (lx < OVERLAP) & (bx > 0)
        left = patch(block_y, np.where(seam, bx - 1, bx), dy, np.where(seam, lx + BLOCK, lx))
        return np.where(seam, _blend(left, h, lx), h)

    by_b, ly_b = np.broadcast_to(by, (height, width)), np.broadcast_to(ly, (height, width))
    g = row_of_blocks(by_b, ly_b)
    seam = (ly_b < OVERLAP) & (by_b > 0)
    above = row_of_blocks(np.where(seam, by_b - 1, by_b), np.where(seam, ly_b + BLOCK, ly_b))
    return np.where(seam, _blend(above, g, ly_b), g)


def strength(lut: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Linear interpolation in a 256-entry curve at clamp(v, 0, 1) * 255."""
    t = np.clip(v, 0.0, 1.0) * (LUT_SIZE - 1)
    i = np.minimum(np.floor(t).astype(np.int64), LUT_SIZE - 2)
    f = t - i
    return lut[i] + f * (lut[i + 1] - lut[i])


def apply_grain(image: np.ndarray, channels: int, lag: int, ar_coeffs, ar_luma, lut: np.ndarray, seed: int,
                frame: int, clip=None) -> np.ndarray:
    """image: (N, C, H, W) float array; returns float64 (N, C, H, W). Channels >= `channels` pass through unclipped."""
    image = np.asarray(image, dtype=np.float64)
    n, _, h, w = image.shape
    out = image.copy()
    blocks = (-(-h // BLOCK), -(-w // BLOCK))
    for i in range(n):
        tmpl = grain_template(channels, lag, ar_coeffs, ar_luma, seed, frame + i).astype(np.float64)
        offsets = grain_offsets(seed, frame + i, *blocks)
        for c in range(channels):
            g = grain_field(tmpl[c], offsets, h, w)
            out[i, c] = image[i, c] + strength(lut[c].astype(np.float64), image[i, c]) * g
    if clip is not None:
        out[:, :channels] = np.clip(out[:, :channels], clip[0], clip[1])
    return out
