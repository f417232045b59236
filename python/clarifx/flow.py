"""Dense optical flow between two frames, and occlusions from forward-backward consistency.

Convention (the same as kernels.warp and OpenCV): flow from frame a to frame b is an (H, W, 2) array
of (dx, dy) in pixels, channel 0 = dx, y pointing down the rows, such that pixel (x, y) of a shows
what b shows at (x + dx, y + dy). So `kernels.warp(b, estimate(a, b))` looks like a, and
`occlusion(estimate(a, b), estimate(b, a))` marks the pixels of a that b does not show.

Two estimators:
- 'dis': OpenCV's DIS optical flow (Kroeger et al., ECCV 2016) on the CPU, for numpy frames. The
  default preset 'medium' was chosen by measurement on known-motion sequences (see README,
  "Temporal processing and flow"): 'fast' and 'ultrafast' lose sub-pixel accuracy for little time.
- 'pyramid': coarse-to-fine iterative Lucas-Kanade in torch that warps with clarifx's native warp
  kernel at every level; it runs wherever torch and the kernels run, and is the estimator on CUDA.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .models import precision

PRESETS = ("ultrafast", "fast", "medium", "fine")
METHODS = ("auto", "dis", "pyramid")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _grey(image, name: str) -> np.ndarray:
    """Full-range BT.601 luma of (H, W, 3+) or (H, W) numpy, float32 in the image's own scale."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] >= 3:
        return (0.299 * a[:, :, 0] + 0.587 * a[:, :, 1] + 0.114 * a[:, :, 2]).astype(np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        return a[:, :, 0].astype(np.float32)
    if a.ndim == 2:
        return a.astype(np.float32)
    raise ValueError(f"{name}: expected an (H, W) or (H, W, C) image, got shape {a.shape}")


def _dis(preset: str):
    import cv2

    if preset == "fine":  # 'medium' with patches down to the full resolution and more refinement
        d = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        d.setFinestScale(0)
        d.setVariationalRefinementIterations(10)
        return d
    return cv2.DISOpticalFlow_create({"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                                      "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                                      "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset])


def _to_u8(grey: np.ndarray, presmooth: float) -> np.ndarray:
    import cv2

    if presmooth > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), presmooth)
    return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)


def estimate(a, b, *, method: str = "auto", preset: str = "medium", init=None, presmooth: float = 0.0):
    """Flow from frame `a` to frame `b` (see the module's convention), (H, W, 2) float32.

    a, b: (H, W, C) RGB (luma is used) or (H, W) grey, values in [0, 1] (display-referred frames give
    the most even gradients). numpy frames use 'dis' on the CPU unless method='pyramid'; torch
    tensors use 'pyramid' on their own device and return a torch tensor there.
    preset: DIS quality ('ultrafast', 'fast', 'medium', 'fine'). init: a flow to start from (DIS:
    its initial field; pyramid: added at the coarsest level). presmooth: Gaussian sigma in pixels
    applied first, for noisy frames.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    if tuple(a.shape[:2]) != tuple(b.shape[:2]):
        raise ValueError(f"b: size {tuple(b.shape[:2])} differs from a's {tuple(a.shape[:2])}")
    if init is not None and tuple(init.shape) != (a.shape[0], a.shape[1], 2):
        raise ValueError(f"init: expected shape {(a.shape[0], a.shape[1], 2)}, got {tuple(init.shape)}")
    if _is_torch(a) or method == "pyramid":
        return pyramid_flow(a, b, init=init, presmooth=presmooth)
    _check_finite(a=a, b=b)
    ga, gb = _to_u8(_grey(a, "a"), presmooth), _to_u8(_grey(b, "b"), presmooth)
    dis = _dis(preset)
    if init is None:
        return dis.calc(ga, gb, None)
    # DIS starts from a flow it is given in place of its own coarsest estimate.
    return dis.calc(ga, gb, np.array(init, dtype=np.float32, copy=True))


def occlusion(forward, backward, *, alpha1: float = 0.01, alpha2: float = 0.5):
    """(H, W) float32 mask, 1.0 where the pixels of a that forward = estimate(a, b) maps leave b or
    come back inconsistently through backward = estimate(b, a) (native kernel; Sundaram et al. 2010)."""
    return kernels.occlusion(forward, backward, alpha1=alpha1, alpha2=alpha2)[..., 0]


def upscale(flow, size: tuple[int, int]):
    """`flow` (H, W, 2) resampled to size = (height, width) with its vectors scaled to match."""
    h, w = flow.shape[:2]
    up = kernels.resample(np.ascontiguousarray(flow, dtype=np.float32), size, filter="bilinear")
    up[..., 0] *= size[1] / w
    up[..., 1] *= size[0] / h
    return up


def compose(first, second):
    """The flow a -> c from first = a -> b and second = b -> c: first + second sampled where first lands."""
    along, _ = kernels.warp(np.ascontiguousarray(second), np.ascontiguousarray(first), border="clamp")
    return first + along


# --- coarse-to-fine Lucas-Kanade in torch, warping with the native kernel ---

def _check_finite(**frames) -> None:
    for name, x in frames.items():
        if not bool((x.isfinite() if _is_torch(x) else np.isfinite(x)).all()):
            raise ValueError(f"{name}: the frame has NaN or infinite values; optical flow needs finite pixels")


def _torch_grey(x, name):
    import torch

    if not _is_torch(x):
        x = torch.from_numpy(np.ascontiguousarray(x))
    x = x.float()
    if x.ndim == 3 and x.shape[2] >= 3:
        g = 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]
    elif x.ndim == 3 and x.shape[2] == 1:
        g = x[:, :, 0]
    elif x.ndim == 2:
        g = x
    else:
        raise ValueError(f"{name}: expected an (H, W) or (H, W, C) image, got shape {tuple(x.shape)}")
    return g[None, None].contiguous()


def _gauss(x, sigma: float):
    import torch
    import torch.nn.functional as F

    r = max(1, int(3 * sigma + 0.5))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def pyramid_flow(a, b, *, init=None, presmooth: float = 0.0, levels: int = 0, iterations: int = 8,
                 window: float = 3.0, smooth: float = 1.0):
    """Coarse-to-fine iterative Lucas-Kanade: at each pyramid level b is warped by the current flow
    (kernels.warp), and a Gaussian-windowed least-squares step corrects the flow; the flow is then
    smoothed and handed to the next finer level. Returns (H, W, 2) in a's library and device."""
    _check_finite(a=a, b=b)  # once here, so the warps inside need not check
    was_numpy = not _is_torch(a)
    ga, gb = _torch_grey(a, "a"), _torch_grey(b, "b")
    with precision.context("fp32", ga.device.type):  # on CUDA, cuDNN's TF32 convolutions would cost accuracy
        flow = _pyramid(ga, gb, init, presmooth, levels, iterations, window, smooth)
    out = flow[0].permute(1, 2, 0).contiguous()
    return out.cpu().numpy() if was_numpy else out


def _pyramid(ga, gb, init, presmooth, levels, iterations, window, smooth):
    """pyramid_flow on (1, 1, H, W) torch grey frames; returns the (1, 2, H, W) flow."""
    import torch
    import torch.nn.functional as F

    if presmooth > 0:
        ga, gb = _gauss(ga, presmooth), _gauss(gb, presmooth)
    h, w = ga.shape[2:]
    if not levels:
        levels = 1
        while min(h, w) >> levels >= 24 and levels < 6:
            levels += 1
    pyr = [(ga, gb)]
    for _ in range(levels - 1):
        pa, pb = pyr[-1]
        size = ((pa.shape[2] + 1) // 2, (pa.shape[3] + 1) // 2)
        pyr.append((kernels.resample(pa, size, filter="bilinear"), kernels.resample(pb, size, filter="bilinear")))
    ch, cw = pyr[-1][0].shape[2:]
    flow = torch.zeros(1, 2, ch, cw, dtype=ga.dtype, device=ga.device)
    if init is not None:
        f0 = init if _is_torch(init) else torch.from_numpy(np.asarray(init, dtype=np.float32))
        f0 = f0.to(ga.device).permute(2, 0, 1)[None].float()
        flow = F.interpolate(f0, size=(ch, cw), mode="bilinear", align_corners=False)
        flow = flow * torch.tensor([cw / w, ch / h], device=ga.device).view(1, 2, 1, 1)
    dx = torch.tensor([[-0.5, 0.0, 0.5]], dtype=ga.dtype, device=ga.device).view(1, 1, 1, 3)
    for level in range(levels - 1, -1, -1):
        ia, ib = pyr[level]
        lh, lw = ia.shape[2:]
        if flow.shape[2:] != (lh, lw):
            fy, fx = lh / flow.shape[2], lw / flow.shape[3]
            flow = F.interpolate(flow, size=(lh, lw), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([fx, fy], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
        for _ in range(iterations):
            # finite frames give a finite flow (det > 0): no per-call check, which would wait on the GPU
            wb, valid = kernels.warp(ib, flow.contiguous(), border="clamp", check_finite=False)
            avg = 0.5 * (ia + wb)
            gx = F.conv2d(F.pad(avg, (1, 1, 0, 0), mode="replicate"), dx)
            gy = F.conv2d(F.pad(avg, (0, 0, 1, 1), mode="replicate"), dx.view(1, 1, 3, 1))
            it = (wb - ia) * valid
            gx, gy = gx * valid, gy * valid
            m = _gauss(torch.cat([gx * gx, gx * gy, gy * gy, gx * it, gy * it]), window)
            jxx, jxy, jyy, bx, by = m[0:1], m[1:2], m[2:3], m[3:4], m[4:5]
            reg = 1e-4 + 0.01 * (jxx + jyy)  # keeps flat regions from taking wild steps
            jxx, jyy = jxx + reg, jyy + reg
            det = jxx * jyy - jxy * jxy
            du = -(jyy * bx - jxy * by) / det
            dv = -(jxx * by - jxy * bx) / det
            step = torch.cat([du, dv], dim=1).clamp(-2.0, 2.0)
            # Smoothing every step keeps the noise of weakly textured windows from accumulating.
            flow = _gauss(flow + step, smooth)
    return flow
