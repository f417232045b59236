"""The working range of learned models, and how scene-linear highlights get past them.

Models are trained on display-referred sRGB in [0, 1]; the restore nodes ask for sRGB-encoded colour,
so a scene-linear highlight at 8.0 arrives as 2.45, far outside anything a model has seen. Measured on
a flat 48x48 patch at 2.45, the imported models miss by +0.12 (waifu2x-photo-x2) and -0.24
(realesr-animevideov3-x2) in sRGB, i.e. 12-25% once back in linear light.

Squeezing highlights into the models' range with a compressive curve does not cure that: decoding
after the model multiplies the model's error by the curve's inverse slope (about 50x at linear 8.0 for
a curve that puts 8.0 at 1.5, without bound as values grow). So highlights are split off instead, in
linear light (where splitting and resampling are physical, and where an sRGB error at the knee costs
2.4x, not the 7.6x it costs at 2.45):

    lin    = srgb_to_linear(v)
    base   = linear_to_srgb(knee(lin))   v itself wherever v <= 1; above, levels off just over 1.0
    excess = lin - knee(lin)             0 up to 1.0, then growing like lin (continuous slope at 1.0)
    out    = linear_to_srgb(srgb_to_linear(model(base)) + max(lanczos3(excess), 0))

The model sees only values it knows (at most 1 + HEADROOM in linear light), the excess is carried by a
linear resampler that keeps flat areas exactly flat whatever their level, and with an identity model
the input comes back (to float rounding). The knee has slope 1 at 1.0, so both parts have a continuous
slope there and a smooth gradient through 1.0 stays smooth. The upscaled excess is clamped at 0
because it only ever adds light: Lanczos's negative lobes would otherwise dig dark rings around
specular highlights. A frame with nothing above 1.0 (any SDR footage) goes to the model untouched and
gives exactly what it gave before, and so does every pixel the excess does not reach. Values below 0
(out-of-gamut colour) go to the model as they are.

The sRGB curve is colour.srgb_to_linear's: the one OCIO applies for the "sRGB Encoded Rec.709 (sRGB)"
space the nodes ask for.
"""

from __future__ import annotations

import numpy as np

from ..colour import linear_to_srgb, srgb_to_linear

HEADROOM = 0.05  # how far above 1.0 (linear) the model may see: its error stays at its in-range level there


def knee(v: np.ndarray) -> np.ndarray:
    """v up to 1.0; above, 1 + H * (1 - exp(-(v - 1) / H)): slope 1 at 1.0, levelling off at 1 + H."""
    v = np.asarray(v, dtype=np.float32)
    over = np.maximum(v - np.float32(1.0), np.float32(0.0))
    soft = np.float32(1.0 + HEADROOM) - np.float32(HEADROOM) * np.exp(-over / np.float32(HEADROOM))
    return np.where(v > 1.0, soft, v).astype(np.float32)


def split(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(base for the model, linear-light excess above it) of (H, W, 3) float32 sRGB-encoded colour;
    excess is None (and base is `rgb` itself) when nothing exceeds 1.0."""
    over = rgb > 1.0
    if not over.any():
        return rgb, None
    lin = srgb_to_linear(rgb[over])
    soft = knee(lin)
    base = rgb.copy()
    base[over] = linear_to_srgb(soft)
    excess = np.zeros(rgb.shape, np.float32)
    excess[over] = lin - soft
    return base, excess


def join(out: np.ndarray, excess: np.ndarray | None) -> np.ndarray:
    """The model's output `out` (h, w, 3, sRGB-encoded) with the excess, resampled to its size, added back
    in linear light. Pixels the excess does not reach are returned exactly as the model made them."""
    if excess is None:
        return out
    from .. import kernels

    h, w = out.shape[:2]
    if excess.shape[:2] != (h, w):
        excess = np.maximum(kernels.resample(np.ascontiguousarray(excess), (h, w), filter="lanczos3"), 0.0)
    for y in range(0, h, 256):  # in bands: the curve's temporaries stay small beside a 4K/8K frame
        rows, add = out[y:y + 256], excess[y:y + 256]
        lit = add > 0
        rows[lit] = linear_to_srgb(srgb_to_linear(rows[lit]) + add[lit])
    return out
