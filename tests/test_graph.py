"""The node graph, its Python API and graph files: rendering real pixels, colour and alpha handling,
caching, resuming, and every failure that must lose nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import clarifx
from clarifx import colour, kernels
from clarifx.frame import LINEAR, SRGB, FootageError
from clarifx.imageio import read_image, write_image
from clarifx.nodes.base import NodeType, Param, register

DATA = Path(os.environ.get("CLARIFX_DATA", Path.home() / ".cache/clarifx-data"))


def photo(h=48, w=64, shift=0):
    """A crop of a real photograph (linear light), moving by `shift` pixels per frame."""
    from skimage import data

    img = data.astronaut()[100 + shift: 100 + shift + h, 150 + 2 * shift: 150 + 2 * shift + w] / 255.0
    return (img.astype(np.float32) ** 2.2).astype(np.float32)


@pytest.fixture
def exr_sequence(tmp_path):
    """in.%04d.exr, frames 1-6, float, scene-linear with highlights above 1.0."""
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(1, 7):
        img = photo(shift=n) * 4.0  # highlights up to ~4.0
        write_image(folder / f"in.{n:04d}.exr", img, dtype="float")
    return folder / "in.%04d.exr"


def sequence_frames(pattern, frames):
    return [read_image(str(pattern).replace("%04d", f"{n:04d}")) for n in frames]


# --- the API ---

def test_node_types_are_listed_and_described():
    ids = clarifx.nodes.list()
    for name in ("Read", "Write", "Resize", "Colorspace", "Premult", "Unpremult"):
        assert f"clarifx.{name}.1" in ids
    d = clarifx.nodes.describe("clarifx.Resize.1")
    assert d["inputs"] == ["source"]
    params = {p["name"]: p for p in d["params"]}
    assert params["filter"]["choices"] == ["lanczos", "bicubic", "bilinear", "box"]
    assert params["scale"]["type"] == "float" and params["scale"]["range"] == [0.0, 16.0]
    assert all(p["help"] for p in d["params"])
    assert clarifx.nodes.describe("Resize") == d


def test_parameters_are_checked_and_errors_name_the_node():
    g = clarifx.Graph()
    r = g.create("Read", file="x.exr")
    with pytest.raises(ValueError, match="Resize1: parameter 'scale' must be in"):
        g.create("Resize", r, scale=100)
    with pytest.raises(ValueError, match="'filter' must be one of"):
        g.create("Resize", r, filter="sinc")
    with pytest.raises(ValueError, match="has no parameter 'sclae'"):
        g.create("Resize", r, sclae=2)
    with pytest.raises(ValueError, match="unknown node type 'Blur'"):
        g.create("Blur", r)
    z = g.create("Resize", r, filter="lanczos3")  # an alias of a choice
    assert z["filter"] == "lanczos"
    z["width"] = 320
    assert z["width"] == 320 and isinstance(z["scale"], float)
    z2 = g.create("Resize", z)
    with pytest.raises(ValueError, match="would make a cycle"):
        z.connect("source", z2)
    assert z.input_index("source") == 0


def test_graph_files_round_trip_exactly(tmp_path):
    g = clarifx.Graph()
    r = g.create("Read", file="in.%04d.exr", colorspace="ACEScg")
    z = g.create("Resize", r, scale=2, filter="bicubic")
    c = g.create("Colorspace", z, to_space="srgb_tx")
    g.create("Write", c, file="out.####.png", name="Out")
    g.save(tmp_path / "a.json")
    h = clarifx.Graph.load(tmp_path / "a.json")
    assert h.to_dict() == g.to_dict()
    h.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert h["Out"].inputs[0].name == "Colorspace1"


def test_bad_graph_files_name_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        clarifx.Graph.load(bad)
    bad.write_text(json.dumps({"format": "clarifx.graph", "version": 1,
                               "nodes": [{"name": "A", "type": "clarifx.Resize.1", "params": {"scale": -1}}]}))
    with pytest.raises(ValueError, match="bad.json: A: parameter 'scale'"):
        clarifx.Graph.load(bad)
    bad.write_text(json.dumps({"format": "clarifx.graph", "version": 99, "nodes": []}))
    with pytest.raises(ValueError, match="version 99"):
        clarifx.Graph.load(bad)


# --- rendering real pixels ---

def test_resize_renders_the_native_resampler_in_linear_light(tmp_path, exr_sequence):
    g = clarifx.Graph()
    r = g.create("Read", file=str(exr_sequence))
    z = g.create("Resize", r, scale=2, filter="lanczos")
    w = g.create("Write", z, file=str(tmp_path / "out.%04d.exr"), dtype="float")
    report = g.render(w, frames=(2, 5), progress=False)
    assert report.rendered == {"Write1": [2, 3, 4, 5]}
    for n, got in zip(range(2, 6), sequence_frames(tmp_path / "out.%04d.exr", range(2, 6))):
        src = read_image(str(exr_sequence).replace("%04d", f"{n:04d}"))
        expected = kernels.resample(src, (96, 128), filter="lanczos3")
        np.testing.assert_array_equal(got, expected)  # linear in, linear out: no colour conversion at all
    assert not (tmp_path / "out.0001.exr").exists() and not (tmp_path / "out.0006.exr").exists()


def test_python_and_json_graphs_give_identical_frames(tmp_path, exr_sequence):
    g = clarifx.Graph()
    r = g.create("Read", file=str(exr_sequence))
    z = g.create("Resize", r, width=100, filter="bicubic")
    g.create("Write", z, file=str(tmp_path / "py.%04d.png"))
    g.render(frames=(1, 6), progress=False)
    g["Write1"]["file"] = str(tmp_path / "json.%04d.png")
    g.save(tmp_path / "shot.json")
    from clarifx import cli

    assert cli.main(["render", str(tmp_path / "shot.json"), "--quiet"]) == 0
    a = sequence_frames(tmp_path / "py.%04d.png", range(1, 7))
    b = sequence_frames(tmp_path / "json.%04d.png", range(1, 7))
    assert a[0].shape == (75, 100, 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_colour_is_converted_once_in_and_once_out(tmp_path, monkeypatch):
    """sRGB PNGs through two Resize nodes: one conversion to linear, one back; pixels equal a hand pipeline."""
    src = tmp_path / "in.png"
    img = photo() ** (1 / 2.2)
    write_image(src, img)
    calls = []
    real_convert = colour.convert

    def counting(frame, dst, config=None):
        calls.append((frame.colorspace, colour.canonical(dst)))
        return real_convert(frame, dst, config)

    monkeypatch.setattr(colour, "convert", counting)
    g = clarifx.Graph()
    z1 = g.create("Resize", g.create("Read", file=str(src)), scale=2, filter="bicubic")
    z2 = g.create("Resize", z1, scale=0.5, filter="bicubic")
    g.create("Write", z2, file=str(tmp_path / "out.png"), dtype="uint16")
    g.render(progress=False)
    assert calls == [(SRGB, LINEAR), (LINEAR, SRGB)]

    lin = real_convert(clarifx.Frame(read_image(src), ("R", "G", "B"), SRGB), LINEAR).pixels
    lin = kernels.resample(kernels.resample(lin, (96, 128), filter="bicubic"), (48, 64), filter="bicubic")
    expected = real_convert(clarifx.Frame(lin, ("R", "G", "B"), LINEAR), SRGB).pixels
    np.testing.assert_allclose(read_image(tmp_path / "out.png"), np.clip(expected, 0, 1), atol=1 / 65535 + 1e-6)


def test_scene_linear_highlights_survive_untouched(tmp_path):
    img = photo() * 1.0
    img[10:30, 10:40] = 8.0  # a flat highlight
    write_image(tmp_path / "hdr.exr", img, dtype="float")
    g = clarifx.Graph()
    r = g.create("Read", file=str(tmp_path / "hdr.exr"))
    g.create("Write", r, file=str(tmp_path / "copy.exr"), dtype="float")
    g.create("Write", g.create("Resize", r, scale=2), file=str(tmp_path / "big.exr"), dtype="float")
    g.render(progress=False)
    np.testing.assert_array_equal(read_image(tmp_path / "copy.exr"), img)
    big = read_image(tmp_path / "big.exr")
    np.testing.assert_allclose(big[30:50, 30:70], 8.0, rtol=1e-6)  # inside the flat area, away from edges


def test_alpha_is_handled_premultiplied_by_resize(tmp_path):
    """Straight-alpha PNG in and out: the graph premultiplies for Resize and un-premultiplies after."""
    rng = np.random.default_rng(3)
    rgb = photo() ** (1 / 2.2)
    alpha = np.clip(rng.random((48, 64, 1)) * 1.2, 0, 1).astype(np.float32)
    alpha[:, :8] = 0.0
    write_image(tmp_path / "a.png", np.concatenate([rgb, alpha], axis=2), dtype="uint16")
    g = clarifx.Graph()
    z = g.create("Resize", g.create("Read", file=str(tmp_path / "a.png")), scale=2, filter="bilinear")
    g.create("Write", z, file=str(tmp_path / "b.exr"), dtype="float")
    g.render(progress=False)

    stored = read_image(tmp_path / "a.png")  # OIIO hands PNG alpha over premultiplied
    frame = clarifx.Frame(stored.copy(), ("R", "G", "B", "A"), SRGB, premultiplied=True)
    lin = colour.convert(frame, LINEAR)
    expected = kernels.resample(lin.pixels, (96, 128), filter="bilinear")
    np.testing.assert_allclose(read_image(tmp_path / "b.exr"), expected, atol=1e-5)


class _Average3(NodeType):
    """A temporal test node: the mean of frames t-1, t, t+1 (clamped to the clip)."""

    name = "TestAverage3"
    params = (Param("radius", "int", 1, "frames each side", min=0, max=3),)

    def frames_needed(self, params, t, index):
        return list(range(t - params["radius"], t + params["radius"] + 1))

    def render(self, params, t, inputs):
        frames = list(inputs[0].values())
        return frames[0].replace(pixels=np.mean([f.pixels for f in frames], axis=0).astype(np.float32))


register(_Average3)


def test_temporal_nodes_get_their_window_and_each_frame_is_decoded_once(tmp_path, exr_sequence, monkeypatch):
    from clarifx import sequence

    reads = []
    real_read = sequence.SequenceSource.read

    def counting(self, n):
        reads.append(n)
        return real_read(self, n)

    monkeypatch.setattr(sequence.SequenceSource, "read", counting)
    g = clarifx.Graph()
    a = g.create("TestAverage3", g.create("Read", file=str(exr_sequence)))
    g.create("Write", a, file=str(tmp_path / "avg.%04d.exr"), dtype="float")
    g.render(frames=(2, 5), progress=False)
    assert sorted(reads) == [1, 2, 3, 4, 5, 6]  # the window slides; nothing is read twice
    src = {n: read_image(str(exr_sequence).replace("%04d", f"{n:04d}")) for n in range(1, 7)}
    for n in range(2, 6):
        expected = np.mean([src[n - 1], src[n], src[n + 1]], axis=0)
        np.testing.assert_allclose(read_image(tmp_path / f"avg.{n:04d}.exr"), expected, rtol=1e-6, atol=1e-7)


# --- failures that must lose nothing ---

def _resize_graph(src, out):
    g = clarifx.Graph()
    g.create("Write", g.create("Resize", g.create("Read", file=str(src)), scale=2), file=str(out))
    return g


def test_an_interrupted_sequence_resumes_at_missing_and_damaged_frames(tmp_path, exr_sequence):
    out = tmp_path / "out.%04d.exr"
    g = _resize_graph(exr_sequence, out)
    g.render(progress=False)
    path = lambda n: tmp_path / f"out.{n:04d}.exr"  # noqa: E731
    reference = {n: path(n).read_bytes() for n in range(1, 7)}
    path(3).unlink()
    path(5).write_bytes(reference[5][: len(reference[5]) // 2])  # a damaged frame
    before = {n: path(n).stat().st_mtime_ns for n in (1, 2, 4, 6)}
    report = _resize_graph(exr_sequence, out).render(progress=False)
    assert report.rendered["Write1"] == [3, 5] and report.kept["Write1"] == [1, 2, 4, 6]
    assert {n: path(n).stat().st_mtime_ns for n in (1, 2, 4, 6)} == before
    assert all(path(n).read_bytes() == reference[n] for n in range(1, 7))
    # A changed graph renders everything again rather than mixing old and new frames.
    g2 = _resize_graph(exr_sequence, out)
    g2["Resize1"]["filter"] = "bicubic"
    assert g2.render(progress=False).rendered["Write1"] == [1, 2, 3, 4, 5, 6]


def test_output_equal_to_input_is_refused_and_the_input_kept(tmp_path, exr_sequence):
    before = sorted(p.read_bytes() for p in exr_sequence.parent.iterdir())
    for out in (exr_sequence, str(exr_sequence).replace("%04d", "####")):
        g = _resize_graph(exr_sequence, out)
        with pytest.raises(ValueError, match="would overwrite the input of Read1"):
            g.render(progress=False)
    single = exr_sequence.parent / "in.0001.exr"
    with pytest.raises(ValueError, match="would overwrite"):
        _resize_graph(single, single).render(progress=False)
    assert sorted(p.read_bytes() for p in exr_sequence.parent.iterdir()) == before


def test_a_missing_input_frame_names_file_and_frame_and_keeps_earlier_frames(tmp_path, exr_sequence):
    (exr_sequence.parent / "in.0004.exr").unlink()
    g = _resize_graph(exr_sequence, tmp_path / "out.%04d.exr")
    with pytest.raises(FootageError, match=r"frame 4"):
        g.render(progress=False)
    assert sorted(p.name for p in tmp_path.glob("out.*")) == ["out.0001.exr", "out.0002.exr", "out.0003.exr"]
    assert not list(tmp_path.glob(".out*.tmp*")) and not list(tmp_path.glob(".out.0*"))


def test_bad_input_frames_are_named(tmp_path, exr_sequence):
    seq = exr_sequence.parent
    write_image(seq / "in.0003.exr", photo(h=40), dtype="float")  # another resolution
    with pytest.raises(FootageError, match=r"in\.0003\.exr.*frame 3|frame 3.*in\.0003\.exr"):
        _resize_graph(exr_sequence, tmp_path / "o.%04d.exr").render(progress=False)
    bad = photo()
    bad[5, 5, 1] = np.nan
    _write_exr_unchecked(seq / "in.0003.exr", bad)
    with pytest.raises(FootageError, match=r"in\.0003\.exr"):
        _resize_graph(exr_sequence, tmp_path / "p.%04d.exr").render(progress=False)
    (seq / "in.0003.exr").write_bytes(b"\x76\x2f\x31\x01garbage")
    with pytest.raises(FootageError, match=r"in\.0003\.exr"):
        _resize_graph(exr_sequence, tmp_path / "q.%04d.exr").render(progress=False)


def _write_exr_unchecked(path, pixels):
    """An EXR holding whatever `pixels` hold (clarifx itself refuses to write NaN)."""
    import OpenImageIO as oiio

    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], "float"))
    assert out.write_image(pixels)
    out.close()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "clarifx.cli", *map(str, args)], capture_output=True, text=True,
                          **kw)


def test_ctrl_c_half_way_loses_nothing_and_the_rerun_resumes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for n in range(1, 41):
        write_image(src / f"f.{n:04d}.png", photo(96, 128, shift=n % 20) ** (1 / 2.2))
    g = _resize_graph(src / "f.%04d.png", tmp_path / "out.%04d.exr")
    g["Resize1"]["scale"] = 4.0
    g.save(tmp_path / "shot.json")
    proc = subprocess.Popen([sys.executable, "-m", "clarifx.cli", "render", str(tmp_path / "shot.json"), "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(list(tmp_path.glob("out.*.exr"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted at frame" in lines[0], err
    written = sorted(tmp_path.glob("out.*.exr"))
    assert 3 <= len(written) < 40
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.0")]  # no temp files left
    r = _cli("render", tmp_path / "shot.json")
    assert r.returncode == 0, r.stderr
    assert f"{len(written)} complete frame(s) kept" in r.stdout
    assert len(list(tmp_path.glob("out.*.exr"))) == 40
    for p in written[:2] + sorted(tmp_path.glob("out.*.exr"))[-2:]:
        n = int(p.name.split(".")[1])
        src_frame = read_image(src / f"f.{n:04d}.png")
        assert read_image(p).shape == (384, 512, 3) and np.isfinite(read_image(p)).all()
        assert abs(read_image(p).mean() - colour.convert(
            clarifx.Frame(src_frame, ("R", "G", "B"), SRGB), LINEAR).pixels.mean()) < 0.01


def test_a_full_disk_gives_one_line_naming_the_file_and_keeps_finished_frames(tmp_path, exr_sequence):
    g = _resize_graph(exr_sequence, tmp_path / "out.%04d.exr")
    g["Write1"]["dtype"] = "float"
    g.save(tmp_path / "shot.json")
    one_frame = 96 * 128 * 3 * 4
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({one_frame // 2}, {one_frame // 2})); "
              "from clarifx import cli; sys.exit(cli.main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", script, "render", str(tmp_path / "shot.json"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clarifx: error:") and "out.0001.exr" in lines[0], r.stderr
    assert not list(tmp_path.glob("out.*")) and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


# --- the CLI on real clips ---

def _clip(name):
    path = DATA / "video" / name
    if not path.exists():
        pytest.skip(f"{path} is missing (run ../shared/scripts/fetch-data)")
    return path


def test_cli_upscale_and_convert_a_real_clip(tmp_path):
    clip = _clip("bikes.mp4")
    from clarifx.footage import probe

    r = _cli("upscale", clip, tmp_path / "up.mov", "--scale", 2, "--frames", "1-5", "--quiet")
    assert r.returncode == 0, r.stderr
    src, up = probe(clip), probe(tmp_path / "up.mov")
    assert (up.width, up.height, up.frames) == (2 * src.width, 2 * src.height, 5)
    assert up.fps == src.fps and up.tags["codec"].startswith("prores")
    with clarifx.footage.open_source(clip) as a, clarifx.footage.open_source(tmp_path / "up.mov") as b:
        for n in (1, 5):
            small = kernels.resample(b.read(n).pixels, (src.height, src.width), filter="box")
            assert np.abs(small - a.read(n).pixels).mean() < 0.02  # same picture, same colours
    r = _cli("convert", clip, tmp_path / "frames.%04d.png", "--frames", "10-12", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("frames.*")) == [f"frames.{n:04d}.png" for n in (10, 11, 12)]


def test_cli_info_describes_sequences_and_videos(tmp_path, exr_sequence):
    (exr_sequence.parent / "in.0003.exr").unlink()
    r = _cli("info", exr_sequence)
    assert r.returncode == 0, r.stderr
    assert "sequence, 64x48, 5 frame(s) (1-6)" in r.stdout and "missing frames: 3" in r.stdout
    clip = _clip("vtest.avi")
    r = _cli("info", clip, "--json")
    info = json.loads(r.stdout)
    assert (info["width"], info["height"], info["last"]) == (768, 576, 795)


def test_cli_errors_are_one_line(tmp_path, exr_sequence):
    cases = [
        ("upscale", tmp_path / "nope.%04d.exr", tmp_path / "o.%04d.exr", "--scale", 2),
        ("upscale", tmp_path / "nope.mp4", tmp_path / "o.mp4", "--scale", 2),
        ("upscale", exr_sequence, exr_sequence, "--scale", 2),
        ("upscale", exr_sequence, tmp_path / "o.%04d.exr", "--scale", 2, "--frames", "3-9"),
        ("convert", exr_sequence, tmp_path / "one.png"),
        ("render", tmp_path / "missing.json"),
    ]
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(2000))
    cases.append(("info", tmp_path / "garbage.mp4"))
    for args in cases:
        r = _cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("clarifx: error:"), (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_hdr10_video_written_from_a_graph_keeps_its_metadata_through_a_convert(tmp_path, exr_sequence):
    from clarifx.footage import probe
    from clarifx.frame import PQ_REC2020

    display = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    g = clarifx.Graph()
    g.create("Write", g.create("Read", file=str(exr_sequence)), file=str(tmp_path / "hdr.mp4"), codec="h265",
             colorspace="rec2100_pq_display", mastering_display=display, max_cll=1000, max_fall=400)
    g.render(frames=(1, 3), progress=False)
    info = probe(tmp_path / "hdr.mp4")
    assert info.colorspace == PQ_REC2020 and info.tags["bit_depth"] == 10
    assert info.tags["hdr10"] == {"mastering_display": display, "max_cll": 1000, "max_fall": 400}
    r = _cli("convert", tmp_path / "hdr.mp4", tmp_path / "again.mp4", "--codec", "h265", "--quiet")
    assert r.returncode == 0, r.stderr
    again = probe(tmp_path / "again.mp4")
    assert again.colorspace == PQ_REC2020 and again.tags["hdr10"] == info.tags["hdr10"]


def test_rendering_shows_progress_with_rate_and_time_left(tmp_path, exr_sequence, capsys):
    _resize_graph(exr_sequence, tmp_path / "out.%04d.exr").render(progress=True)
    err = capsys.readouterr().err
    assert "Write1" in err and "6/6" in err and ("frame/s" in err or "s/frame" in err)
    assert "<" in err  # elapsed<remaining


def test_grey_footage_becomes_rgb_and_reaches_video(tmp_path):
    rng = np.random.default_rng(5)
    for n in range(1, 4):
        write_image(tmp_path / f"g.{n:04d}.png", rng.random((32, 48, 1), dtype=np.float32))
    r = _cli("convert", tmp_path / "g.%04d.png", tmp_path / "g.mkv", "--quiet")
    assert r.returncode == 0, r.stderr
    with clarifx.footage.open_source(tmp_path / "g.mkv") as video:
        frame = video.read(2)
    from clarifx.frame import REC709

    grey = read_image(tmp_path / "g.0002.png")
    expected = colour.convert(clarifx.Frame(np.repeat(grey, 3, axis=2), ("R", "G", "B"), SRGB), REC709).pixels
    assert frame.channels == ("R", "G", "B") and frame.colorspace == REC709
    for c in range(3):  # FFV1 is lossless: the same grey in every channel, re-encoded for video
        np.testing.assert_allclose(frame.pixels[:, :, c], expected[:, :, 0], atol=2e-5)


def _rgba(tmp_path):
    rng = np.random.default_rng(7)
    rgba = np.concatenate([photo(), rng.random((48, 64, 1), dtype=np.float32)], axis=2)
    rgba[:, :, :3] *= rgba[:, :, 3:]  # EXR holds premultiplied colour
    write_image(tmp_path / "rgba.exr", rgba, dtype="float")
    return rgba


def test_colorspace_node_converts_colour_only_and_can_reinterpret(tmp_path):
    rgba = _rgba(tmp_path)
    g = clarifx.Graph()
    r = g.create("Read", file=str(tmp_path / "rgba.exr"))
    g.create("Write", g.create("Colorspace", r, to_space="ACEScg"), file=str(tmp_path / "cg.exr"), dtype="float")
    g.create("Write", g.create("Colorspace", r, from_space="ACEScg", to_space="lin_rec709"),
             file=str(tmp_path / "re.exr"), dtype="float")
    g.render(progress=False)
    expected = colour.convert(clarifx.Frame(rgba.copy(), ("R", "G", "B", "A"), LINEAR), "ACEScg").pixels
    np.testing.assert_allclose(read_image(tmp_path / "cg.exr"), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(read_image(tmp_path / "cg.exr")[:, :, 3], rgba[:, :, 3])
    expected = colour.convert(clarifx.Frame(rgba.copy(), ("R", "G", "B", "A"), "ACEScg"), LINEAR).pixels
    np.testing.assert_allclose(read_image(tmp_path / "re.exr"), expected, rtol=1e-6, atol=1e-7)


def test_unpremult_hands_straight_colour_to_the_nodes_after_it(tmp_path):
    rgba = _rgba(tmp_path)
    seen = {}

    class _Probe(NodeType):  # takes frames as they come and records them
        name = "TestProbe"

        def render(self, params, t, inputs):
            seen[t] = inputs[0][t]
            return inputs[0][t]

    if "clarifx.TestProbe.1" not in clarifx.nodes.list():
        register(_Probe)
    g = clarifx.Graph()
    u = g.create("Unpremult", g.create("Read", file=str(tmp_path / "rgba.exr")))
    g.create("Write", g.create("TestProbe", u), file=str(tmp_path / "out.exr"), dtype="float")
    g.render(progress=False)
    straight = rgba.copy()
    a = rgba[:, :, 3:]
    straight[:, :, :3] = np.divide(rgba[:, :, :3], a, out=rgba[:, :, :3].copy(), where=a > 0)
    assert seen[1].premultiplied is False
    np.testing.assert_allclose(seen[1].pixels, straight, rtol=1e-6)
    # The EXR written after it is premultiplied again, as the format requires.
    np.testing.assert_allclose(read_image(tmp_path / "out.exr"), rgba, rtol=1e-6, atol=1e-7)
    p = clarifx.Graph()
    p.create("Write", p.create("TestProbe", p.create("Premult", p.create("Read", file=str(tmp_path / "rgba.exr"),
                                                                          alpha="straight"))),
             file=str(tmp_path / "p.exr"), dtype="float")
    p.render(progress=False)
    premultiplied = rgba.copy()
    premultiplied[:, :, :3] *= rgba[:, :, 3:]  # a file declared straight gets multiplied once
    np.testing.assert_allclose(seen[1].pixels, premultiplied, rtol=1e-6)
