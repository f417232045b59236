"""Temporal processing on sequences made from real photos by known motion: alignment and robust fusion,
the Flow, TemporalDenoise and TemporalSuperResolution nodes through the graph, streaming, and chunked
renders that must give bit-identical frames."""

import numpy as np
import pytest

import clarifx
from clarifx import footage, synthetic, temporal
from clarifx.frame import SRGB
from clarifx.imageio import read_image, write_image
from clarifx.metrics import e_warp, endpoint_error, psnr_y

SIGMA = 15 / 255


@pytest.fixture(scope="module")
def astronaut():
    return synthetic.photo("astronaut")


def _noisy(frames, sigma=SIGMA, seed=0):
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 1).astype(np.float32) for f in frames]


def _write_sequence(folder, frames):
    """16-bit PNGs numbered from 1 (sRGB, which is what the temporal nodes work in)."""
    folder.mkdir(exist_ok=True)
    for n, f in enumerate(frames, start=1):
        write_image(folder / f"f.{n:04d}.png", f, dtype="uint16")
    return folder / "f.%04d.png"


def _render(source, node, out, frames=None, **params):
    g = clarifx.Graph()
    n = g.create(node, g.create("Read", file=str(source)), **params)
    g.create("Write", n, file=str(out), dtype="float", colorspace=SRGB)  # float, in the nodes' own colour
    g.render(frames=frames, progress=False)
    return n


def _read(pattern, n):
    return read_image(str(pattern).replace("%04d", f"{n:04d}"))


# --- the pieces ---

def test_noise_sigma_is_estimated_from_one_frame(astronaut):
    clean = astronaut[100:300, 100:356]
    for sigma in (10 / 255, SIGMA, 25 / 255):  # texture inflates it below about 10/255
        noisy = clean + np.random.default_rng(1).normal(0, sigma, clean.shape).astype(np.float32)
        assert temporal.noise_sigma(noisy) == pytest.approx(sigma, rel=0.12)


def test_align_with_true_flow_and_robust_weights(astronaut):
    s = synthetic.KnownMotion(astronaut, "object", frames=3)
    cur, nb = s.frames[1], s.frames[2]
    warped, mask = temporal.align(nb, s.flow(1, 2), s.flow(2, 1))
    truth = s.occlusion(1, 2)
    assert mask[truth].mean() < 0.35 and mask[~truth].mean() > 0.97  # the true flow is consistent, where it exists
    keep = mask > 0.5
    assert np.abs(warped - cur)[keep].mean() < 0.01
    # A neighbour with a patch of garbage the flow knows nothing about: weight ~0 there, ~1 elsewhere.
    poisoned = warped.copy()
    poisoned[60:100, 150:200] = 1.0 - poisoned[60:100, 150:200]
    (w,) = temporal.weights(cur, [poisoned], [mask], noise_var=(2 / 255) ** 2)
    assert w[65:95, 155:195].max() < 0.01
    assert np.median(w[keep & (np.arange(256) < 140)[None, :]]) > 0.9
    fused = temporal.average(cur, [poisoned], [w])
    np.testing.assert_allclose(fused[65:95, 155:195], cur[65:95, 155:195], atol=1e-3)  # falls back to frame t


# --- nodes through the graph ---

def test_flow_node_writes_motion_vectors(tmp_path, astronaut):
    s = synthetic.KnownMotion(astronaut, "pan", frames=4, size=(96, 128))
    src = _write_sequence(tmp_path / "in", s.frames)
    _render(src, "Flow", tmp_path / "flow.%04d.exr")
    with footage.open_source(tmp_path / "flow.%04d.exr") as vectors:
        frames = {n: vectors.read(n) for n in range(1, 5)}
    inner = np.zeros((96, 128), bool)
    inner[8:-8, 8:-8] = True
    for n, f in frames.items():
        ch = {c: i for i, c in enumerate(f.channels)}
        fwd = f.pixels[:, :, [ch["forward.u"], ch["forward.v"]]]
        bwd = f.pixels[:, :, [ch["backward.u"], ch["backward.v"]]]
        if n < 4:
            assert endpoint_error(fwd, s.flow(n - 1, n), mask=inner)[0] < 0.3
        else:
            assert not fwd.any()  # no next frame
        if n > 1:
            assert endpoint_error(bwd, s.flow(n - 1, n - 2), mask=inner)[0] < 0.3
        else:
            assert not bwd.any()


def test_temporal_denoise_beats_single_frame_and_renders_in_chunks_bit_identically(tmp_path, astronaut):
    cv2 = pytest.importorskip("cv2")
    s = synthetic.KnownMotion(astronaut, "object", frames=7, size=(128, 160))
    noisy = _noisy(s.frames)
    src = _write_sequence(tmp_path / "in", noisy)
    whole, parts = tmp_path / "whole.%04d.exr", tmp_path / "parts.%04d.exr"
    _render(src, "TemporalDenoise", whole)
    _render(src, "TemporalDenoise", parts, frames=(1, 3))
    _render(src, "TemporalDenoise", parts, frames=(4, 7))
    gains = []
    for n in range(1, 8):
        out = _read(whole, n)
        np.testing.assert_array_equal(out, _read(parts, n))  # chunks carry their handles: no seam
        if 3 <= n <= 5:  # frames with two neighbours each side
            noisy_n = _read(src, n)
            nlm = cv2.fastNlMeansDenoisingColored((noisy_n * 255 + 0.5).astype(np.uint8), None, 10, 10, 7, 21)
            single = psnr_y(nlm / 255.0, s.frames[n - 1])
            gains.append((psnr_y(out, s.frames[n - 1]) - psnr_y(noisy_n, s.frames[n - 1]),
                          psnr_y(out, s.frames[n - 1]) - single))
    gains = np.array(gains).mean(axis=0)
    assert gains[0] > 4.0 and gains[1] > 1.5, gains  # vs the noisy input, vs OpenCV's single-frame NL-means


def test_temporal_denoise_keeps_a_still_clean_clip(tmp_path, astronaut):
    """Nothing moves and there is no noise: the output is the input (up to 16-bit rounding)."""
    frame = astronaut[200:264, 200:280]
    src = _write_sequence(tmp_path / "in", [frame] * 4)
    _render(src, "TemporalDenoise", tmp_path / "o.%04d.exr", radius=1)
    for n in range(1, 5):
        np.testing.assert_allclose(_read(tmp_path / "o.%04d.exr", n), _read(src, n), atol=1e-5)


def test_temporal_sr_is_steadier_than_per_frame_sr_at_no_loss(tmp_path, astronaut, monkeypatch):
    pytest.importorskip("torch")
    from clarifx.nodes.temporal import TemporalSuperResolution

    s = synthetic.KnownMotion(astronaut, "pan", frames=9, size=(128, 192))
    src = _write_sequence(tmp_path / "in", synthetic.degraded_lr(s.frames))
    held = []
    real_render = TemporalSuperResolution.render

    def watching(self, params, t, inputs):
        held.append((len(inputs[0]), len(self._results)))
        return real_render(self, params, t, inputs)

    monkeypatch.setattr(TemporalSuperResolution, "render", watching)
    _render(src, "TemporalSuperResolution", tmp_path / "t.%04d.exr", model="fast-x2", radius=1)
    _render(src, "SuperResolution", tmp_path / "p.%04d.exr", model="fast-x2")
    # frame t needs t-2r..t+2r and keeps the 2r+1 upscales of its window, never more
    assert max(h[0] for h in held) == 5 and max(h[1] for h in held) <= 3
    steady, per_frame = [], []
    for n in range(3, 8):
        t = n - 1
        for store, name in ((steady, "t"), (per_frame, "p")):
            prev, cur = _read(tmp_path / f"{name}.%04d.exr", n - 1), _read(tmp_path / f"{name}.%04d.exr", n)
            store.append((e_warp(np.clip(prev, 0, 1), np.clip(cur, 0, 1), s.flow(t, t - 1),
                                 occluded=s.occlusion(t, t - 1)),
                          psnr_y(np.clip(cur, 0, 1), s.frames[t], shave=4)))
    steady, per_frame = np.mean(steady, axis=0), np.mean(per_frame, axis=0)
    assert steady[0] < 0.5 * per_frame[0], (steady, per_frame)
    assert steady[1] >= per_frame[1], (steady, per_frame)


def test_temporal_sr_renders_in_chunks_bit_identically(tmp_path, astronaut):
    pytest.importorskip("torch")
    s = synthetic.KnownMotion(astronaut, "rotate", frames=6, size=(64, 96))
    src = _write_sequence(tmp_path / "in", synthetic.degraded_lr(s.frames))
    whole, parts = tmp_path / "w.%04d.exr", tmp_path / "c.%04d.exr"
    _render(src, "TemporalSuperResolution", whole, radius=1)
    _render(src, "TemporalSuperResolution", parts, frames=(1, 2), radius=1)
    _render(src, "TemporalSuperResolution", parts, frames=(3, 6), radius=1)
    for n in range(1, 7):
        a = _read(whole, n)
        assert a.shape == (64, 96, 3)
        np.testing.assert_array_equal(a, _read(parts, n))


def test_temporal_nodes_name_bad_input(tmp_path, astronaut):
    from clarifx.frame import FootageError

    folder = tmp_path / "in"
    _write_sequence(folder, [astronaut[:64, :64]] * 3)
    write_image(folder / "f.0002.png", astronaut[:48, :64], dtype="uint16")  # another size
    with pytest.raises((ValueError, FootageError), match="frame 2|f.0002"):
        _render(folder / "f.%04d.png", "TemporalDenoise", tmp_path / "o.%04d.exr", radius=1)
    g = clarifx.Graph()
    with pytest.raises(ValueError, match="parameter 'radius'"):
        g.create("TemporalDenoise", radius=0)


def test_cli_temporal_picks_the_temporal_nodes_and_refuses_what_cannot_be_temporal(tmp_path, astronaut, capsys):
    """`clarifx upscale/denoise --temporal` renders exactly what the temporal node renders; --no-temporal
    what the per-frame node renders; and the two differ."""
    from clarifx import cli

    s = synthetic.KnownMotion(astronaut, "pan", frames=4, size=(48, 64))
    src = _write_sequence(tmp_path / "src", _noisy(s.frames, seed=4))
    cases = [("upscale", ["--scale", "2", "--model", "fast-x2"], "TemporalSuperResolution", "SuperResolution",
              {"model": "fast-x2"}),
             ("denoise", ["--model", ""], "TemporalDenoise", None, {"model": ""})]
    for command, extra, temporal_node, frame_node, params in cases:
        for flag, node in (("--temporal", temporal_node), ("--no-temporal", frame_node)):
            if node is None:
                continue
            out = tmp_path / f"{command}{flag}" / "o.%04d.exr"
            out.parent.mkdir()
            assert cli.main([command, str(src), str(out), flag, "--dtype", "float", "--colorspace", SRGB,
                             "--quiet", *extra]) == 0
            ref = tmp_path / f"ref{command}{flag}" / "o.%04d.exr"
            ref.parent.mkdir()
            _render(src, node, ref, **params)
            for n in (1, 4):
                np.testing.assert_array_equal(read_image(str(out) % n), read_image(str(ref) % n))
        if frame_node:
            a = read_image(str(tmp_path / f"{command}--temporal" / "o.%04d.exr") % 2)
            b = read_image(str(tmp_path / f"{command}--no-temporal" / "o.%04d.exr") % 2)
            assert np.abs(a - b).mean() > 1e-3
    for extra, why in ((["--model", "lanczos"], "needs a learned --model"),
                       (["--model", "fast-x2", "--mode", "forensic"], "--mode forensic works frame by frame")):
        assert cli.main(["upscale", str(src), str(tmp_path / "x.%04d.png"), "--scale", "2", "--temporal", *extra]) == 1
        assert f"--temporal: {why}" in capsys.readouterr().err
