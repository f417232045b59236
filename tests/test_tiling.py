"""Tiled inference (clarifx.models.tiling): tiled == untiled above the receptive field, seams
blend to exactly one, the receptive radius is measured right, memory stays O(output + tile)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from clarifx.models import precision
from clarifx.models.tiling import _axis_plan, _boundaries, choose_tile, exact_overlap, receptive_radius, run_tiled

# fp32 noise between tiled and untiled runs is ~1e-7 here (conv blockings differ with the tile
# shape). The issue asks for <= 1e-3; we hold 1e-5 so that a tile whose contaminated edge gets a
# small feathered weight (1e-4 .. 1e-3 errors) cannot pass.
EXACT = 1e-5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ----------------------------------------------------------------------------------------------
# nets with known receptive fields


def shuffle_net(scale=2, convs=5, features=16, channels=3, seed=0):
    """`convs` padded 3x3 convs at input resolution + pixel_shuffle: radius = convs."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(channels, features, 3, padding=1), nn.LeakyReLU(0.2)]
    for _ in range(convs - 2):
        layers += [nn.Conv2d(features, features, 3, padding=1), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(features, channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale)]
    return nn.Sequential(*layers).eval()


def x4_net(features=16, seed=0):
    """3 convs at 1x, shuffle 2, one conv at 2x, shuffle 2. Output Y: the 2x conv reaches 2x
    pixels (Y//2)+-1, i.e. 1x pixels Y//4 +-1, then 3 more convs: radius 4."""
    torch.manual_seed(seed)
    f = features
    return nn.Sequential(
        nn.Conv2d(3, f, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(f, f, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(f, f * 4, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2),
        nn.Conv2d(f, 3 * 4, 3, padding=1), nn.PixelShuffle(2),
    ).eval()


def upconv7_net(features=8, seed=0):
    """waifu2x upconv_7 shape: six valid 3x3 convs, ConvTranspose2d(4, stride 2, padding 3).
    Output 2*(h - 14): border 7, scale 2, radius 7 (every output sees only real input)."""
    torch.manual_seed(seed)
    f = features
    layers = [nn.Conv2d(3, f, 3), nn.LeakyReLU(0.1)]
    for _ in range(5):
        layers += [nn.Conv2d(f, f, 3), nn.LeakyReLU(0.1)]
    layers += [nn.ConvTranspose2d(f, 3, 4, stride=2, padding=3)]
    return nn.Sequential(*layers).eval()


def right_looking_net():
    """1x1 conv, shuffle 2, then a 2x2 conv looking right/down at 2x: output Y reads 2x pixels
    Y and Y+1, so only odd Y reach input pixel Y//2 + 1 -- radius 1, seen only at odd phases."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 12, 1), nn.PixelShuffle(2), nn.ZeroPad2d((0, 1, 0, 1)),
                         nn.Conv2d(3, 3, 2)).eval()


class Constant(nn.Module):
    """Ignores its input's values: a tensor of ones of the output shape (tests the weights)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        n, c, h, w = x.shape
        return torch.ones((n, c, h * self.scale, w * self.scale), dtype=x.dtype, device=x.device)


class Nearest(nn.Module):
    """An identity-ish upscaler with radius 0 (nearest neighbour)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


def photo(h, w, seed=0, n=1):
    """Crops of a real photograph (skimage astronaut) in [0, 1], (n, 3, h, w) float32."""
    skdata = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skdata.astronaut().astype(np.float32) / 255.0).permute(2, 0, 1)
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        y = int(rng.integers(0, img.shape[1] - h + 1))
        x = int(rng.integers(0, img.shape[2] - w + 1))
        crops.append(img[:, y:y + h, x:x + w])
    return torch.stack(crops).contiguous()


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max())


# ----------------------------------------------------------------------------------------------
# tiled == untiled


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile,overlap", [(20, 10), (32, 10), (45, 12), (64, 16), (200, 10)])
def test_x2_tiled_matches_untiled(tile, overlap, device):
    net = shuffle_net(scale=2, convs=5).to(device)  # radius 5: overlap 10 = 2*radius is exact
    image = photo(97, 131, seed=tile)
    with precision.context("fp32", device):  # as the nodes run it: on CUDA, TF32 off
        ref = run_tiled(net, image, scale=2, tile=None, overlap=overlap)
        out = run_tiled(net, image, scale=2, tile=tile, overlap=overlap)
    assert out.shape == (1, 3, 194, 262) and out.device == image.device
    # cuDNN may choose another fp32 algorithm (Winograd, FFT) for another tile size
    assert maxdiff(out, ref) <= (EXACT if device == "cpu" else 1e-4)


@pytest.mark.parametrize("tile", [16, 24, 37])
def test_x4_tiled_matches_untiled(tile):
    net = x4_net()  # radius 4
    image = photo(53, 71, seed=tile, n=2)  # a batch of two
    ref = run_tiled(net, image, scale=4, tile=None, overlap=8)
    out = run_tiled(net, image, scale=4, tile=tile, overlap=8)
    assert out.shape == (2, 3, 212, 284)
    assert maxdiff(out, ref) <= EXACT


@pytest.mark.parametrize("tile,overlap", [(8, 0), (13, 0), (16, 4), (40, 3)])
def test_border_net_tiled_matches_untiled(tile, overlap):
    # Valid convs never see padding, so any overlap (even none) is exact: r - border = 0.
    net = upconv7_net()
    image = photo(61, 45, seed=tile)
    ref = run_tiled(net, image, scale=2, tile=None, overlap=0, border=7)
    with torch.no_grad():
        manual = net(F.pad(image, (7, 7, 7, 7), mode="reflect"))
    assert ref.shape == (1, 3, 122, 90)
    assert maxdiff(ref, manual) == 0.0
    out = run_tiled(net, image, scale=2, tile=tile, overlap=overlap, border=7)
    assert maxdiff(out, ref) <= EXACT


@pytest.mark.parametrize("h,w", [(1, 1), (1, 5), (3, 2), (6, 9), (11, 4)])
def test_tiny_images(h, w):
    image = photo(h, w, seed=h * 10 + w)
    net = shuffle_net(convs=2)  # radius 2: overlap 2 with hard seams is exact
    ref = run_tiled(net, image, scale=2, tile=None, overlap=2)
    assert ref.shape == (1, 3, 2 * h, 2 * w)
    assert maxdiff(run_tiled(net, image, scale=2, tile=4, overlap=2, feather=0), ref) <= EXACT
    # border net: reflection is impossible on an axis of <= 7 pixels, which replicates instead
    bnet = upconv7_net()
    bref = run_tiled(bnet, image, scale=2, tile=None, overlap=0, border=7)
    padded = F.pad(image, (7, 7, 0, 0), mode="reflect" if w > 7 else "replicate")
    padded = F.pad(padded, (0, 0, 7, 7), mode="reflect" if h > 7 else "replicate")
    with torch.no_grad():
        manual = bnet(padded)
    assert maxdiff(bref, manual) == 0.0
    assert maxdiff(run_tiled(bnet, image, scale=2, tile=2, overlap=0, border=7), bref) <= EXACT


def test_reflect_on_one_axis_replicate_on_the_other():
    image = photo(3, 20)
    bnet = upconv7_net()
    out = run_tiled(bnet, image, scale=2, tile=None, overlap=0, border=7)
    padded = F.pad(F.pad(image, (7, 7, 0, 0), mode="reflect"), (0, 0, 7, 7), mode="replicate")
    with torch.no_grad():
        assert maxdiff(out, bnet(padded)) == 0.0


def test_reduced_precision_image_and_net_dtype():
    net = shuffle_net(convs=3)
    image = photo(40, 50)
    ref = run_tiled(net, image, scale=2, tile=None, overlap=0)
    half = run_tiled(net, image.half(), scale=2, tile=16, overlap=6)  # net stays fp32
    assert half.dtype == torch.float16
    assert maxdiff(half, ref) < 2e-3
    net64 = shuffle_net(convs=3).double()
    out = run_tiled(net64, image, scale=2, tile=16, overlap=6)  # runs in fp64, returns fp32
    assert out.dtype == torch.float32
    assert maxdiff(out, ref) <= EXACT


def test_runs_under_inference_mode():
    net = shuffle_net(convs=3)
    out = run_tiled(net, photo(20, 20), scale=2, tile=8, overlap=2)
    assert not out.requires_grad and out.is_inference()


# ----------------------------------------------------------------------------------------------
# the tests can fail: below the receptive field the result measurably differs


def test_tile_below_receptive_field_differs():
    net = shuffle_net(convs=5)  # radius 5, receptive field 11 pixels wide
    image = photo(37, 53, seed=3)
    ref = run_tiled(net, image, scale=2, tile=None, overlap=0)
    for tile, overlap in [(4, 2), (6, 3), (8, 0)]:  # windows of 8..12 pixels: too small
        assert maxdiff(run_tiled(net, image, scale=2, tile=tile, overlap=overlap), ref) > 1e-3


@pytest.mark.parametrize("convs", [3, 5])
def test_exactness_bound_is_tight(convs):
    # exact iff radius <= overlap - ceil(feather/2); with hard seams the step is sharp
    net = shuffle_net(convs=convs)
    image = photo(80, 90, seed=convs)
    ref = run_tiled(net, image, scale=2, tile=None, overlap=0)

    def diff(overlap, feather):
        return maxdiff(run_tiled(net, image, scale=2, tile=24, overlap=overlap, feather=feather), ref)

    assert diff(convs, 0) <= EXACT
    assert diff(convs - 1, 0) > 1e-4
    assert diff(convs + 2, 4) <= EXACT
    assert diff(2 * convs, None) <= EXACT  # default feather = overlap
    assert diff(convs, None) > 1e-4


def test_border_net_with_wrong_border_is_caught():
    with pytest.raises(ValueError, match="border"):
        run_tiled(upconv7_net(), photo(30, 30), scale=2, tile=16, overlap=4, border=0)
    with pytest.raises(ValueError, match="scale"):
        run_tiled(shuffle_net(), photo(30, 30), scale=3, tile=None, overlap=4)


# ----------------------------------------------------------------------------------------------
# blending weights: partition of unity, no seams


@pytest.mark.parametrize("size,tile,overlap,scale,feather",
                         [(97, 20, 10, 2, 10), (131, 32, 8, 3, 16), (50, 7, 3, 1, 5),
                          (64, 16, 0, 2, 0), (10, 2, 1, 4, 2)])
def test_axis_weights_partition_unity(size, tile, overlap, scale, feather):
    total = torch.zeros(size * scale, dtype=torch.float64)
    plan = _axis_plan(size, tile, overlap, scale, feather)
    assert len(plan) == -(-size // tile)
    for start, stop, w in plan:
        assert 0 <= start < stop <= size and stop - start <= tile + 2 * overlap
        assert w.shape == ((stop - start) * scale,) and float(w.min()) >= 0.0
        total[start * scale:stop * scale] += w
    assert float((total - 1).abs().max()) < 1e-12


@pytest.mark.parametrize("tile,overlap,feather", [(16, 8, None), (23, 5, 10), (10, 4, 0)])
def test_weights_sum_to_one_in_2d(tile, overlap, feather):
    out = run_tiled(Constant(3), torch.zeros(2, 3, 47, 61), scale=3, tile=tile, overlap=overlap,
                    feather=feather)
    assert float((out - 1).abs().max()) < 1e-6


def test_flat_stays_flat_and_no_seams():
    net = Nearest(2)
    flat = torch.full((1, 3, 70, 90), 0.37)
    out = run_tiled(net, flat, scale=2, tile=20, overlap=8)
    assert float((out - 0.37).abs().max()) < 1e-6
    # a smooth ramp: the output rows/columns at and around every seam are the untiled ones
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 70), torch.linspace(0, 1, 90), indexing="ij")
    ramp = torch.stack([yy, xx, yy * xx])[None]
    ref = run_tiled(net, ramp, scale=2, tile=None, overlap=8)
    out = run_tiled(net, ramp, scale=2, tile=20, overlap=8)
    seams_x = [b * 2 for b in _boundaries(90, 20)[1:-1]]  # 5 cores of 18 columns
    seams_y = [b * 2 for b in _boundaries(70, 20)[1:-1]]  # 4 cores of 17-18 rows
    assert seams_x == [36, 72, 108, 144] and seams_y == [34, 70, 104]
    cols = out[..., [s + d for s in seams_x for d in (-2, -1, 0, 1)]]
    rows = out[..., [s + d for s in seams_y for d in (-2, -1, 0, 1)], :]
    ref_cols = ref[..., [s + d for s in seams_x for d in (-2, -1, 0, 1)]]
    ref_rows = ref[..., [s + d for s in seams_y for d in (-2, -1, 0, 1)], :]
    assert maxdiff(cols, ref_cols) < 1e-6 and maxdiff(rows, ref_rows) < 1e-6
    # horizontal gradient steps across seams equal those of the untiled output
    assert maxdiff(out.diff(dim=-1), ref.diff(dim=-1)) < 1e-6


# ----------------------------------------------------------------------------------------------
# receptive radius


@pytest.mark.parametrize("net,scale,border,expected", [
    (lambda: shuffle_net(convs=5), 2, 0, 5),
    (lambda: shuffle_net(convs=3, scale=3), 3, 0, 3),
    (lambda: x4_net(), 4, 0, 4),
    (lambda: upconv7_net(), 2, 7, 7),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(),
                           nn.Conv2d(4, 3, 3, padding=2, dilation=2)), 1, 0, 4),
    (lambda: Nearest(2), 2, 0, 0),
    (lambda: right_looking_net(), 2, 0, 1),
])
def test_receptive_radius_matches_analytic(net, scale, border, expected):
    assert receptive_radius(net(), scale, border=border) == expected


def test_receptive_radius_leaves_the_net_alone_and_grows_the_probe():
    net = shuffle_net(convs=20, features=4)  # radius 20 > what a 32 probe can show
    before = [p.clone() for p in net.parameters()]
    assert receptive_radius(net, 2, probe=32) == 20
    assert all(p.dtype == torch.float32 and torch.equal(p, q)
               for p, q in zip(net.parameters(), before))


class GlobalMean(nn.Module):
    def forward(self, x):
        return x - x.mean(dim=(2, 3), keepdim=True)


def test_receptive_radius_global_net_raises_or_gives_an_effective_radius():
    with pytest.raises(ValueError, match="global"):
        receptive_radius(GlobalMean(), 1, probe=16, max_probe=64)
    # far pixels weigh 1/64**2 each: below tol they are ignored
    assert receptive_radius(GlobalMean(), 1, tol=1e-3) == 0


def test_receptive_radius_without_autograd_uses_impulses():
    class NoGrad(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            with torch.no_grad():
                return self.inner(x)

    assert receptive_radius(NoGrad(x4_net()), 4) == 4
    assert receptive_radius(NoGrad(upconv7_net()), 2, border=7) == 7


def test_measured_radius_gives_an_exact_overlap():
    net = x4_net(seed=3)
    radius = receptive_radius(net, 4)
    image = photo(45, 58, seed=9)
    ref = run_tiled(net, image, scale=4, tile=None, overlap=0)
    out = run_tiled(net, image, scale=4, tile=2 * 2 * radius, overlap=2 * radius)
    assert maxdiff(out, ref) <= EXACT


def test_exact_overlap_beyond_a_fixed_32():
    # A padded net that sees 20 pixels (five 3x3 convs dilated by 4): the 32 pixels of overlap the
    # node once used leave seams; the measured overlap (2 * 20) joins exactly.
    torch.manual_seed(1)
    layers = []
    for i in range(5):
        layers += [nn.Conv2d(3 if i == 0 else 8, 12 if i == 4 else 8, 3, padding=4, dilation=4), nn.LeakyReLU(0.2)]
    net = nn.Sequential(*layers[:-1], nn.PixelShuffle(2)).eval()
    overlap, exact = exact_overlap(net, 2)
    assert (overlap, exact) == (40, True)
    image = photo(90, 100, seed=4)
    ref = run_tiled(net, image, scale=2, tile=None, overlap=0)
    assert maxdiff(run_tiled(net, image, scale=2, tile=80, overlap=overlap), ref) <= EXACT
    assert maxdiff(run_tiled(net, image, scale=2, tile=80, overlap=32), ref) > 1e-4


def test_exact_overlap_of_border_nets_and_far_seeing_nets():
    assert exact_overlap(upconv7_net(), 2, border=7) == (0, True)  # valid convs: no overlap needed
    assert exact_overlap(shuffle_net(convs=5), 2) == (10, True)
    # seeing farther than limit/2 (or globally): the limit, flagged inexact
    assert exact_overlap(shuffle_net(convs=20, features=4), 2, limit=24) == (24, False)
    assert exact_overlap(GlobalMean(), 1, limit=16) == (16, False)


# ----------------------------------------------------------------------------------------------
# choose_tile


def test_choose_tile():
    mib = 2 ** 20
    assert choose_tile(64, 64, scale=2, channels_out=3, budget_bytes=512 * mib) is None
    tile = choose_tile(2160, 3840, scale=2, channels_out=3, budget_bytes=512 * mib, overlap=16)
    per_px = 4 * (3 + 3 * 64 + 2 * 3 * 4)
    assert tile % 8 == 0 and tile >= 32
    assert (tile + 32) ** 2 * per_px <= 512 * mib < (tile + 8 + 32) ** 2 * per_px
    assert choose_tile(2160, 3840, scale=2, channels_out=3, budget_bytes=2048 * mib,
                       overlap=16) > tile
    assert choose_tile(2160, 3840, scale=4, channels_out=3, budget_bytes=512 * mib,
                       overlap=16) < tile
    with pytest.raises(ValueError, match="budget_bytes"):
        choose_tile(2160, 3840, scale=2, channels_out=3, budget_bytes=10_000, overlap=16)


# ----------------------------------------------------------------------------------------------
# argument checking


@pytest.mark.parametrize("kwargs,name", [
    (dict(tile=10, overlap=6), "tile"),
    (dict(tile=0, overlap=0), "tile"),
    (dict(tile=16, overlap=-1), "overlap"),
    (dict(tile=16, overlap=4, border=-1), "border"),
    (dict(tile=16, overlap=4, scale=0), "scale"),
    (dict(tile=16, overlap=4, scale=2.0), "scale"),
    (dict(tile=16, overlap=4, feather=9), "feather"),
    (dict(tile=16, overlap=4, dtype=torch.int32), "dtype"),
    (dict(tile=True, overlap=0), "tile"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    kwargs = dict(dict(scale=2), **kwargs)
    with pytest.raises(ValueError, match=name):
        run_tiled(shuffle_net(convs=3), torch.zeros(1, 3, 20, 20), **kwargs)


@pytest.mark.parametrize("image", [torch.zeros(3, 20, 20), torch.zeros(1, 1, 3, 20, 20),
                                   torch.zeros(1, 3, 20, 20, dtype=torch.uint8),
                                   torch.zeros(1, 3, 0, 20), np.zeros((1, 3, 20, 20))])
def test_bad_image(image):
    with pytest.raises(ValueError, match="image"):
        run_tiled(shuffle_net(convs=3), image, scale=2, tile=8, overlap=2)


# ----------------------------------------------------------------------------------------------
# memory: O(output + one tile)

_MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys, torch, torch.nn as nn
    from clarifx.models.tiling import run_tiled
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.LeakyReLU(0.2),
                        nn.Conv2d(16, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    image = torch.rand(1, 3, 2048, 2048)
    run_tiled(net, image[..., :64, :64], scale=2, tile=None, overlap=4)  # load kernels
    run_tiled(net, image[..., :64, :64], scale=2, tile=32, overlap=4)
    mib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = mib()
    out = run_tiled(net, image, scale=2, tile=128, overlap=4)
    tiled = mib() - base
    out_mib = out.numel() * 4 / 2 ** 20
    del out
    run_tiled(net, image, scale=2, tile=None, overlap=4)
    untiled = mib() - base
    print(json.dumps(dict(tiled=tiled, untiled=untiled, output=out_mib)))
""")


def test_memory_tiled_is_output_plus_one_tile():
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    # peak growth over the baseline (torch + input): tiled = the 192 MiB output + a tile
    assert m["tiled"] < m["output"] + 128, m
    assert m["untiled"] > m["tiled"] + 64, m  # the whole frame's intermediates cost more than one tile's


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_net_cpu_frame_peak_gpu_memory():
    net = shuffle_net(convs=3, features=32).cuda()
    image = torch.rand(1, 3, 1024, 1024)
    ref = run_tiled(net, image.cuda(), scale=2, tile=None, overlap=0).cpu()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = run_tiled(net, image, scale=2, tile=128, overlap=6)  # frame stays on the CPU
    peak = torch.cuda.max_memory_allocated() - base
    assert out.device.type == "cpu"
    assert maxdiff(out, ref) <= 1e-3  # TF32/cuDNN algorithms may differ by tile shape
    assert peak < 64 * 2 ** 20


def test_after_each_tile_reports_every_tile_and_can_stop_the_frame():
    from clarifx.models.progress import after_each_tile

    net = shuffle_net(scale=2, convs=5)
    image = photo(40, 56, seed=3)
    tiles = len(_axis_plan(40, 16, 4, 2, 4)) * len(_axis_plan(56, 16, 4, 2, 4))
    assert tiles > 4
    seen = []
    with after_each_tile(seen.append):
        run_tiled(net, image, scale=2, tile=16, overlap=4)
    assert seen == [k / tiles for k in range(1, tiles + 1)]

    class Stop(Exception):
        pass

    def stop_at_the_third(fraction):
        seen.append(fraction)
        if len(seen) == 3:
            raise Stop

    seen.clear()
    with pytest.raises(Stop), after_each_tile(stop_at_the_third):
        run_tiled(net, image, scale=2, tile=16, overlap=4)
    assert len(seen) == 3
    seen.clear()
    run_tiled(net, image, scale=2, tile=16, overlap=4)  # outside the block nobody is called
    assert seen == []
