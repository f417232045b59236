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

import math

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


@torch.no_grad()
def grow(small: FastSR, big: FastSR, seed: int = 0) -> None:
    """Set a wider and deeper FastSR's weights so that it computes exactly what `small` computes
    (Net2Net: Chen et al., 2016), so training a bigger model starts where a trained small one ends.

    Wider: big channel j repeats small channel g(j) (the first ones map to themselves, the rest are drawn
    at random); a layer reading replicated channels splits each original weight among the copies in
    random shares that sum to 1, so the copies drift apart once trained. Deeper: the extra layers sit
    evenly between the copied ones as a centred identity conv with PReLU slope 1 (exactly the identity).
    """
    if (big.scale, big.base) != (small.scale, small.base) or big.channels < small.channels \
            or big.blocks < small.blocks:
        raise ValueError(f"grow: cannot grow a FastSR x{small.scale} {small.channels}x{small.blocks} "
                         f"({small.base}) into x{big.scale} {big.channels}x{big.blocks} ({big.base})")
    rng = torch.Generator().manual_seed(seed)
    c, cb = small.channels, big.channels
    g = torch.cat([torch.arange(c), torch.randint(0, c, (cb - c,), generator=rng)])
    share = 0.5 + torch.rand(cb, generator=rng)  # a copy's share of its original's outgoing weight
    share = (share / torch.zeros(c).index_add_(0, g, share)[g])[None, :, None, None]
    hidden_small = [(small.body[2 * k], small.body[2 * k + 1]) for k in range(small.blocks + 1)]
    hidden_big = [(big.body[2 * k], big.body[2 * k + 1]) for k in range(big.blocks + 1)]
    # small layer k goes to big layer round(k * B'/B) (layer 0 stays first, the last stays last)
    at = {round(k * big.blocks / small.blocks) if small.blocks else 0: k for k in range(small.blocks + 1)}
    for p, (conv, act) in enumerate(hidden_big):
        if p in at:
            sconv, sact = hidden_small[at[p]]
            w = sconv.weight[g]
            conv.weight.copy_(w if at[p] == 0 else w[:, g] * share)
            conv.bias.copy_(sconv.bias[g])
            act.weight.copy_(sact.weight[g])
        else:
            conv.weight.zero_()
            conv.weight[torch.arange(cb), torch.arange(cb), 1, 1] = 1.0
            conv.bias.zero_()
            act.weight.fill_(1.0)
    big.body[-1].weight.copy_(small.body[-1].weight[:, g] * share)
    big.body[-1].bias.copy_(small.body[-1].bias)


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.kaiming_normal_(self.conv1.weight, a=0.1, nonlinearity="leaky_relu")
        nn.init.zeros_(self.conv1.bias)
        nn.init.kaiming_normal_(self.conv2.weight, a=0.1, nonlinearity="leaky_relu")
        self.conv2.weight.data *= 0.1  # each block starts close to the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class RestoreNet(nn.Module):
    """Same-size restoration (scale 1: denoise, deblock) or joint restoration + SR (scale 2, 4).

    The image is folded into its four 2x2 phases (pixel unshuffle), residual blocks of two 3x3 convs
    run at half resolution (four times cheaper, twice the reach: JPEG's 8x8 blocks sit inside the
    receptive field), and the result is unfolded straight to the output size as a residual on the
    input itself (scale 1) or on its bicubic upscale, so "change nothing" is where training starts.
    Residual blocks rather than a plain stack: a plain stack of this depth sat at the identity for
    hundreds of steps here. Leaky ReLU quantizes to int8, unlike PReLU.
    """

    def __init__(self, scale: int = 1, channels: int = 48, blocks: int = 4):
        super().__init__()
        self.scale = int(scale)
        self.border = 0
        self.channels = int(channels)
        self.blocks = int(blocks)
        up = 2 * self.scale
        self.head = nn.Conv2d(12, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(channels) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, 3 * up * up, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = h % 2, w % 2
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        r = F.pixel_shuffle(self.tail(self.body(self.head(F.pixel_unshuffle(xp, 2)))), 2 * self.scale)
        r = r[..., : h * self.scale, : w * self.scale]
        if self.scale == 1:
            return x + r
        return r + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


class ChainSR(nn.Module):
    """Networks run one after another, e.g. two x2 upscalers for x4, trained end to end: ``stages`` is a
    list of {"arch", "scale", "args"}; a config's ``"init": {"stages.0": path, ...}`` starts each stage
    from trained weights, so the run begins exactly where the plain chain of those models is."""

    def __init__(self, scale: int = 4, stages: list | None = None):
        super().__init__()
        self.scale = int(scale)
        self.border = 0
        self.stages = nn.ModuleList(build(s["arch"], scale=s["scale"], **s.get("args", {})) for s in stages or [])
        product = math.prod(m.scale for m in self.stages)
        if product != self.scale:
            raise ValueError(f"arch_args.stages: the stages upscale by {product}, not by the model's scale {scale}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class FuseNet(nn.Module):
    """How much each neighbouring frame, aligned onto the current one by optical flow, may count at each
    pixel when they are averaged (clarifx.temporal): the learned form of the hand-made rule there.

    forward(current (N, 3, H, W), aligned (N, K, 3, H, W), masks (N, K, H, W)) -> weights (N, K, H, W) in
    [0, 1], zero where the mask is. Each neighbour is judged on its own by the same small net from what
    the rule uses (its difference to the current frame, that difference's local energy, the current
    frame's noise level) plus the current frame itself, so it can tell compression noise that averaging
    removes (blocks that flicker from frame to frame) from misalignment that averaging would smear (edges
    that do not line up). Dilated convs give it a reach of 17 px at 5k MACs a pixel.
    """

    FEATURES = 9  # current RGB, difference RGB, mask, log local energy, log noise variance

    def __init__(self, scale: int = 1, channels: int = 16):
        super().__init__()
        self.scale = int(scale)
        self.border = 0
        self.channels = int(channels)
        c = self.channels
        self.body = nn.Sequential(
            nn.Conv2d(self.FEATURES, c, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(c, c, 3, padding=2, dilation=2), nn.LeakyReLU(0.1),
            nn.Conv2d(c, c, 3, padding=4, dilation=4), nn.LeakyReLU(0.1),
            nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(c, 1, 1))

    @staticmethod
    def local_energy(x: torch.Tensor) -> torch.Tensor:
        """Mean over channels and a 5x5 window (edges replicated): (..., C, H, W) -> (..., H, W). The
        energy feature the net sees, and what its training target measures errors with."""
        flat = x.reshape(-1, *x.shape[-3:]).mean(1, keepdim=True)
        pooled = F.avg_pool2d(F.pad(flat, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
        return pooled.reshape(*x.shape[:-3], *x.shape[-2:])

    @staticmethod
    def noise_var(current: torch.Tensor) -> torch.Tensor:
        """(N,) variance of white noise in each frame: the median absolute finest diagonal Haar
        coefficient / 0.6745, squared (as clarifx.temporal.noise_sigma)."""
        x = current[..., : current.shape[-2] // 2 * 2, : current.shape[-1] // 2 * 2]
        hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
        return (hh.abs().flatten(1).median(dim=1).values / 0.6745) ** 2

    def logits(self, current: torch.Tensor, aligned: torch.Tensor, masks: torch.Tensor,
               noise_var: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K, H, W) logits of the weights (what training fits); noise_var (N,): the frames' noise
        variance, when `current` is a band of a larger frame."""
        n, k, _, h, w = aligned.shape
        cur = current[:, None].expand(n, k, 3, h, w).reshape(n * k, 3, h, w)
        diff = aligned.reshape(n * k, 3, h, w) - cur
        energy = self.local_energy(diff.square())[:, None]
        noise_var = self.noise_var(current) if noise_var is None else noise_var
        noise = torch.log(noise_var + 1e-6)[:, None].expand(n, k).reshape(n * k, 1, 1, 1)
        m = masks.reshape(n * k, 1, h, w)
        x = torch.cat([cur - 0.5, 16 * diff, m, torch.log(energy + 1e-6) / 4, (noise / 4).expand(n * k, 1, h, w)], 1)
        return self.body(x).reshape(n, k, h, w)

    def forward(self, current: torch.Tensor, aligned: torch.Tensor, masks: torch.Tensor,
                noise_var: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(current, aligned, masks, noise_var)) * masks


ARCHS = {"fast": FastSR, "restore": RestoreNet, "chain": ChainSR, "fuse": FuseNet}


def build(arch: str, **kwargs) -> nn.Module:
    try:
        cls = ARCHS[arch]
    except KeyError:
        raise ValueError(f"arch: unknown architecture {arch!r} (known: {sorted(ARCHS)})") from None
    return cls(**kwargs)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
