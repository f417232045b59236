"""Network architectures trained by ``python -m clarifx.train``.

``FastSR`` ("fast" x2/x4): a plain stack of 3x3 convolutions on the LR image, a pixel
shuffle to the output size, and a global residual on an upscale of the input:

    out = pixel_shuffle(body(x), s) + interpolate(x, scale=s, mode=base)

The residual base is computed with ``torch.nn.functional.interpolate`` (bicubic,
``align_corners=False``, i.e. Keys a=-0.75 as torch implements it; no clamp), both in training
and at inference, so the network only learns the high-frequency correction. The fused native
kernel (pixel shuffle + resample) can replace the last two ops at inference as long as it uses
the same base filter.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class FastSR(nn.Module):
    def __init__(self, scale: int = 2, channels: int = 40, blocks: int = 5, base: str = "bicubic"):
        super().__init__()
        self.scale = int(scale)
        self.border = 0  # padded convolutions: the output covers the whole input
        self.base = base
        self.channels = int(channels)
        self.blocks = int(blocks)
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.PReLU(channels)]
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.PReLU(channels)]
        layers += [nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        # start as "bicubic": the residual branch's last conv at zero
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.base
        kw = {} if mode == "nearest" else {"align_corners": False}
        up = F.interpolate(x, scale_factor=self.scale, mode=mode, **kw)
        return F.pixel_shuffle(self.body(x), self.scale) + up


ARCHS = {"fast": FastSR}


def build(arch: str, **kwargs) -> nn.Module:
    try:
        cls = ARCHS[arch]
    except KeyError:
        raise ValueError(f"arch: unknown architecture {arch!r} (known: {sorted(ARCHS)})") from None
    return cls(**kwargs)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
