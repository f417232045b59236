"""The OFX plugin, driven by the C++ test host like a compositing host would, against the same nodes run
through clarifx's Python API (Graph: Read -> node -> Write, float EXR files)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import clarifx
from clarifx import imageio
from clarifx.frame import LINEAR, Frame

SR = "io.clarifx.SuperResolution"
MODEL = {"model": "fast-x2"}  # embedded, always there
TOLERANCE = 1e-5


def photo(width: int = 96, height: int = 72, top: int = 100, left: int = 180, alpha: bool = True) -> np.ndarray:
    """A crop of a real photograph in linear light, premultiplied RGBA with a soft alpha edge."""
    from skimage import data

    srgb = data.astronaut()[top:top + height, left:left + width].astype(np.float32) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)
    a = np.ones((height, width, 1), np.float32)
    if alpha:
        a[:, : width // 4, 0] = np.linspace(0.2, 1.0, width // 4, dtype=np.float32)
    return np.concatenate([linear * a, a], axis=2)


def python_api(tmp_path, frames: dict[int, np.ndarray], chain: list[tuple[str, dict]], t: int) -> np.ndarray:
    """Frame t of Read -> chain -> Write rendered by clarifx's own graph engine."""
    folder = tmp_path / f"api{len(list(tmp_path.glob('api*')))}"
    folder.mkdir()
    for n, pixels in frames.items():
        imageio.write_frame(folder / f"src.{n:04d}.exr", Frame(pixels.copy(), ("R", "G", "B", "A"), LINEAR, number=n),
                            dtype="float")
    g = clarifx.Graph()
    node = g.create("Read", file=str(folder / "src.%04d.exr"), colorspace=LINEAR, alpha="premultiplied")
    for type_name, params in chain:
        node = g.create(type_name, node, **params)
    w = g.create("Write", node, file=str(folder / "out.%04d.exr"), colorspace=LINEAR, dtype="float")
    g.render(w, frames=(t, t), progress=False)
    return imageio.read_frame(folder / f"out.{t:04d}.exr", t).pixels


def assert_same(plugin: np.ndarray, reference: np.ndarray, tolerance: float = TOLERANCE) -> None:
    assert plugin.shape == reference.shape
    assert np.isfinite(plugin).all(), "the plugin left poisoned (NaN) pixels in the output"
    diff = np.abs(plugin - reference).max()
    assert diff <= tolerance, f"max abs diff {diff} > {tolerance}"


def statuses_ok(inst: dict) -> None:
    for action in ("create", "clip_preferences", "roi_status", "frames_needed_status", "render", "destroy"):
        assert inst[action] == 0, (action, inst)


# ------------------------------------------------------------------------------------------------ describe


def test_every_node_is_an_effect_with_parameters_from_its_descriptors(run_host):
    run = run_host(SR, {1: photo()}, params=MODEL)
    cycle = run.cycle
    ids = {p["id"]: p for p in cycle["plugins"]}
    shipped = [t for t in clarifx.nodes.base.all_types() if t.__module__.startswith("clarifx.nodes.")]
    assert len(shipped) >= 10  # other tests register node types of their own in this process: not ours
    for t in shipped:
        ident = "io.clarifx." + t.name
        if t.is_writer or not t.inputs:
            assert ident not in ids  # Read and Write are the host's business
        else:
            assert ids[ident]["major"] == t.version and ids[ident]["api"] == "OfxImageEffectPluginAPI"
    assert cycle["load"] == 0 and cycle["describe"] == 0 and cycle["describe_in_context"] == 0
    assert cycle["contexts"] == ["OfxImageEffectContextFilter", "OfxImageEffectContextGeneral"]
    assert cycle["tiles"] == 0 and cycle["multires"] == 1 and cycle["temporal"] == 1
    assert cycle["thread_safety"] == "OfxImageEffectRenderInstanceSafe"
    assert cycle["clips"] == ["Source", "Output"]

    ofx_type = {"float": "OfxParamTypeDouble", "int": "OfxParamTypeInteger", "bool": "OfxParamTypeBoolean",
                "choice": "OfxParamTypeChoice", "string": "OfxParamTypeString", "file": "OfxParamTypeString"}
    described = {p["name"]: p for p in cycle["params"]}
    node = clarifx.nodes.find("SuperResolution")
    assert set(described) == {p.name for p in node.params} | {"host_colorspace"}
    for p in node.params:
        d = described[p.name]
        assert d["type"] == ofx_type[p.type] and d["label"] == p.title and d["hint"] == p.help
        default = d["OfxParamPropDefault"][0]
        if p.type == "choice":
            assert d["choices"] == list(p.choices) and d["choices"][default] == p.default
        else:
            assert default == p.default
        if p.min is not None:
            assert d["OfxParamPropMin"] == [p.min] and d["OfxParamPropMax"] == [p.max]


# ------------------------------------------------------------------------------------------------ pixels


def test_superresolution_upscales_in_a_multiresolution_host_like_the_python_api(run_host, tmp_path):
    src = photo()
    run = run_host(SR, {1: src}, profile="nuke", params=MODEL)
    inst = run.instance()
    statuses_ok(inst)
    assert inst["rod"] == [0, 0, 2 * src.shape[1], 2 * src.shape[0]]  # grown for the upscale
    assert inst["roi"] == [0, 0, src.shape[1], src.shape[0]]  # whole frames in
    assert inst["frames_needed"] == [1, 1]
    assert_same(run.output(), python_api(tmp_path, {1: src}, [("SuperResolution", MODEL)], 1))


def test_resolve_like_host_keeps_the_clip_size_and_restores_detail_at_it(run_host, tmp_path):
    src = photo()
    run = run_host(SR, {1: src}, profile="resolve", params=MODEL)
    inst = run.instance()
    statuses_ok(inst)
    assert inst["rod_status"] == 14  # the host's default: the clip's own size
    assert inst["output_bounds"] == [0, 0, src.shape[1], src.shape[0]]
    # The host has already scaled the clip to the timeline: reduce it, then let the model restore it.
    h, w = src.shape[:2]
    reference = python_api(tmp_path, {1: src}, [("Resize", {"scale": 0.0, "width": w // 2, "height": h // 2,
                                                             "filter": "bicubic"}),
                                                 ("SuperResolution", MODEL)], 1)
    assert_same(run.output(), reference)
    assert np.abs(run.output() - src).mean() < 0.02  # and it is the same picture


def test_render_scale_half(run_host, tmp_path):
    src = photo(128, 96)
    run = run_host(SR, {1: src}, profile="natron", params=MODEL, render_scale=0.5)
    inst = run.instance()
    statuses_ok(inst)
    assert inst["rod"] == [0, 0, 256, 192]  # canonical, whatever the scale
    assert inst["output_bounds"] == [0, 0, 128, 96]
    # The host hands over the source at half size (2x2 box average), and the node upscales that.
    half = (src[0::2, 0::2] + src[0::2, 1::2] + src[1::2, 0::2] + src[1::2, 1::2]) / np.float32(4)
    assert_same(run.output(), python_api(tmp_path, {1: half}, [("SuperResolution", MODEL)], 1))


def test_negative_row_bytes_give_the_same_pixels(run_host, tmp_path):
    src = photo()
    up = run_host(SR, {1: src}, profile="natron", params=MODEL)
    down = run_host(SR, {1: src}, profile="natron", params=MODEL, negative_row_bytes=True)
    statuses_ok(down.instance())
    assert down.cycle["context"] == "OfxImageEffectContextGeneral"
    assert np.array_equal(down.output(), up.output())
    assert_same(down.output(), python_api(tmp_path, {1: src}, [("SuperResolution", MODEL)], 1))


def test_four_renders_on_concurrent_threads(run_host, tmp_path):
    src = photo()
    run = run_host(SR, {1: src}, profile="nuke", params=MODEL, threads=4)
    reference = python_api(tmp_path, {1: src}, [("SuperResolution", MODEL)], 1)
    for k in range(4):
        statuses_ok(run.instance(k))
        assert_same(run.output(k), reference)


def test_python_already_running_in_the_host(run_host, tmp_path, python_lib):
    src = photo(alpha=False)
    run = run_host("io.clarifx.Resize", {1: src}, profile="nuke", python_lib=python_lib,
                   params={"scale": 1.5, "filter": "bicubic"})
    statuses_ok(run.instance())
    assert run.instance()["rod"] == [0, 0, 144, 108]
    assert_same(run.output(), python_api(tmp_path, {1: src}, [("Resize", {"scale": 1.5, "filter": "bicubic"})], 1))


@pytest.mark.parametrize("depth, tolerance", [("half", 2e-3), ("byte", 0.5 / 255 + 1e-6)])
def test_half_and_byte_buffers(run_host, tmp_path, depth, tolerance):
    src = photo(alpha=False)
    params = {"scale": 2.0, "filter": "lanczos"}
    run = run_host("io.clarifx.Resize", {1: src}, profile="natron", params=params, depth=depth,
                   components="RGB")
    statuses_ok(run.instance())
    # The host stores the source at its depth first; the reference reads the same stored values.
    stored = src.astype(np.float16).astype(np.float32) if depth == "half" else \
        np.rint(np.clip(src, 0, 1) * 255).astype(np.float32) / 255
    reference = python_api(tmp_path, {1: stored}, [("Resize", params)], 1)[:, :, :3]
    if depth == "byte":
        reference = np.clip(reference, 0, 1)
    assert_same(run.output(), reference, tolerance)


# ------------------------------------------------------------------------------------------------ time


TEMPORAL_NODE = '''
from clarifx.nodes.base import NodeType, Param, register


@register
class TemporalMeanProbe(NodeType):
    """Mean of frames t-k..t+k: a stand-in for temporal nodes, to check GetFramesNeeded end to end."""
    name = "TemporalMeanProbe"
    params = (Param("radius", "int", 1, "Frames on each side.", min=0, max=4),)

    def frames_needed(self, params, t, index):
        return list(range(t - params["radius"], t + params["radius"] + 1))

    def render(self, params, t, inputs):
        frames = [inputs[0][n] for n in self.frames_needed(params, t, 0)]
        return frames[0].replace(pixels=sum(f.pixels for f in frames) / len(frames), number=t)
'''


def test_temporal_nodes_ask_for_neighbouring_frames(run_host, tmp_path, monkeypatch):
    (tmp_path / "probe_nodes.py").write_text(textwrap.dedent(TEMPORAL_NODE))
    env = {"CLARIFX_NODE_MODULES": "probe_nodes",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    frames = {n: photo(top=100 + 8 * n, alpha=False) for n in range(1, 6)}
    run = run_host("io.clarifx.TemporalMeanProbe", frames, profile="nuke", time=3, params={"radius": 2}, env=env)
    inst = run.instance()
    statuses_ok(inst)
    assert inst["frames_needed"] == [1, 5]
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_nodes  # noqa: F401  (registers the node type here too)

    assert_same(run.output(), python_api(tmp_path, frames, [("TemporalMeanProbe", {"radius": 2})], 3))


# ------------------------------------------------------------------------------------------------ failures


def test_an_exception_inside_a_node_is_a_host_message_not_a_crash(run_host):
    src = photo()
    # Denoise refuses a model that changes the size: a ValueError raised inside the node's render.
    run = run_host("io.clarifx.Denoise", {1: src}, profile="nuke", params=MODEL)
    inst = run.instance()
    assert inst["create"] == 0 and inst["render"] == 1  # kOfxStatFailed
    assert inst["destroy"] == 0 and run.cycle["unload"] == 0
    assert any(m.startswith("OfxMessageError|clarifx|") and "changes the size by 2" in m
               for m in run.report["messages"]), run.report["messages"]
    out = run.output()
    assert np.isnan(out).all() or not np.isfinite(out).any()  # nothing written over the host's buffer

    run = run_host(SR, {1: src}, profile="nuke", params={"model": "no-such-model"})
    inst = run.instance()
    assert inst["rod_status"] == 1 and inst["render"] == 1
    assert any("unknown model 'no-such-model'" in m for m in run.report["messages"])


def test_a_plugin_whose_python_side_fails_exposes_nothing_and_says_why(run_host):
    run = run_host(SR, {1: photo()}, env={"CLARIFX_NODE_MODULES": "no_such_studio_nodes"})
    assert run.cycle["plugins"] == [] and run.cycle["dlclose"] == 0
    assert "clarifx OFX: ModuleNotFoundError: No module named 'no_such_studio_nodes'" in run.stderr
    assert "no effects exposed" in run.stderr


def test_load_and_unload_twice_without_leaks(run_host):
    src = photo(alpha=False)
    run = run_host("io.clarifx.Resize", {1: src}, profile="nuke", params={"scale": 2.0}, cycles=3)
    cycles = run.report["cycles"]
    for k, cycle in enumerate(cycles):
        assert cycle["load"] == 0 and cycle["unload"] == 0 and cycle["dlclose"] == 0
        assert cycle["images_outstanding"] == 0  # every image fetched was released
        assert cycle["live_propsets"] == 1  # only the host's own; the plugin keeps nothing of ours
        assert cycle["instances"][0]["instance_data_left"] == 0
        assert np.array_equal(run.output(0, k), run.output(0, 0))
    # Python and the models stay loaded across unloads; nothing else should grow.
    assert cycles[2]["rss_kb"] - cycles[1]["rss_kb"] < 16 * 1024


# ------------------------------------------------------------------------------------------------ CUDA


def test_cuda_render_equals_the_cpu_render(run_host, cuda_testhost):
    cupy = pytest.importorskip("cupy")
    if not cupy.is_available():
        pytest.skip("no CUDA device")
    src = photo()
    cpu = run_host(SR, {1: src}, profile="resolve", params=MODEL)
    gpu = run_host(SR, {1: src}, profile="resolve", params=MODEL, cuda=True, host=cuda_testhost)
    assert gpu.cycle["cuda_render"] == "true"
    statuses_ok(gpu.instance())
    assert_same(gpu.output(), cpu.output())


# ------------------------------------------------------------------------------------------------ install


def test_install_then_a_host_renders_from_the_installed_copy(run_host, tmp_path, bundle):
    plugins = tmp_path / "plugins"
    cli = [sys.executable, "-m", "clarifx.cli"]
    env = {**os.environ, "OFX_PLUGIN_PATH": str(plugins)}
    done = subprocess.run(cli + ["ofx", "install"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    installed = plugins / "Clarifx.ofx.bundle"
    assert (installed / "Contents" / "Linux-x86-64" / "Clarifx.ofx").is_file()
    assert f"python={sys.executable}" in (installed / "Contents" / "Resources" / "clarifx.cfg").read_text()

    doctor = subprocess.run(cli + ["ofx", "doctor"], capture_output=True, text=True, env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"installed: {installed}" in doctor.stdout and "io.clarifx.SuperResolution v1." in doctor.stdout

    src = photo(alpha=False)
    run = run_host("io.clarifx.Resize", {1: src}, params={"scale": 2.0}, bundle_dir=installed)
    statuses_ok(run.instance())

    nowhere = subprocess.run(cli + ["ofx", "install", "--path", "/proc/no-such-dir"], capture_output=True, text=True)
    assert nowhere.returncode == 1 and "clarifx: error:" in nowhere.stderr and "Traceback" not in nowhere.stderr


# ------------------------------------------------------------------------------------------------ identity


def test_is_identity_answers_from_parameter_values():
    from clarifx import ofx

    ctx = {"time": 4.0, "source_rod": (0, 0, 96, 72), "source_par": 1.0, "frame_range": (1, 9), "multires": True}
    answers = {}
    for node, values in [("Denoise", {"strength": 0.0}), ("Denoise", {"strength": 0.5}),
                         ("TemporalDenoise", {"strength": 0.0}), ("TemporalDenoise", {}),
                         ("Resize", {"scale": 1.0}), ("Resize", {"scale": 0.0, "width": 96}),
                         ("Resize", {"scale": 0.0, "width": 97}), ("SuperResolution", MODEL)]:
        answers[node, tuple(values.items())] = ofx.Instance(node).is_identity({**ctx, "params": values})
    assert list(answers.values()) == [("Source", 4.0), None, ("Source", 4.0), None, ("Source", 4.0),
                                      ("Source", 4.0), None, None]
    # Without the Source's region no size is known: a Resize by 2 must not pass its input through.
    assert ofx.Instance("Resize").is_identity({**ctx, "source_rod": None, "params": {"scale": 2.0}}) is None


def test_identity_skips_render_and_the_host_passes_the_source_through(run_host):
    src = photo(alpha=False)
    run = run_host("io.clarifx.Resize", {1: src}, profile="nuke", params={"scale": 1.0})
    inst = run.instance()
    assert (inst["is_identity"], inst["identity_clip"], inst["identity_time"]) == (0, "Source", 1)
    assert inst["render"] == -1 and inst["identity_copy"] == 0  # the host copied; Render never came
    assert inst["rod_status"] == 14 and np.array_equal(run.output(), src)


# ------------------------------------------------------------------------------------------------ temporal ranges


def test_temporal_denoise_clips_its_window_to_the_source_range_and_matches_the_python_api(run_host, tmp_path):
    frames = {n: photo(top=100 + 3 * n, alpha=False) for n in range(1, 6)}
    noisy = {n: np.clip(f + np.random.default_rng(n).normal(0, 0.03, f.shape).astype(np.float32) *
                        np.array([1, 1, 1, 0], np.float32), 0, None) for n, f in frames.items()}
    params = {"radius": 2, "strength": 1.0}
    run = run_host("io.clarifx.TemporalDenoise", noisy, profile="nuke", time=1, params=params)
    inst = run.instance()
    statuses_ok(inst)
    # The host's range is 1..5: frame 1 needs 1..3, not -1..3 (a window the host cannot fill).
    assert inst["frames_needed"] == [1, 3] and inst["is_identity"] == 14
    assert_same(run.output(), python_api(tmp_path, noisy, [("TemporalDenoise", params)], 1))

    still = run_host("io.clarifx.TemporalDenoise", noisy, profile="nuke", time=3, params={"strength": 0.0})
    assert still.instance()["is_identity"] == 0 and still.instance()["render"] == -1
    assert np.array_equal(still.output(), noisy[3])


# ------------------------------------------------------------------------------------------------ several inputs


PROBE_NODES = '''
import os

from clarifx.nodes.base import NodeType, Param, register


@register
class MixProbe(NodeType):
    """source[t] * (1 - mix) + matte[t + 1] * mix: two inputs, each with its own frames."""
    name = "MixProbe"
    inputs = ("source", "matte")
    params = (Param("mix", "float", 0.25, "How much of the matte.", min=0.0, max=1.0),)

    def frames_needed(self, params, t, index):
        return [t + index]

    def render(self, params, t, inputs):
        with open(os.environ["PROBE_RENDER_LOG"], "a") as log:  # proves whether the node ran
            log.write(f"{t}\\n")
        a, b = inputs[0][t], inputs[1][t + 1]
        return a.replace(pixels=a.pixels * (1 - params["mix"]) + b.pixels * params["mix"])
'''


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """The test-only node module, registered in the plugin (CLARIFX_NODE_MODULES) and here."""
    (tmp_path / "probe_mix_nodes.py").write_text(textwrap.dedent(PROBE_NODES))
    log = tmp_path / "renders.log"
    log.write_text("")
    env = {"CLARIFX_NODE_MODULES": "probe_mix_nodes", "PROBE_RENDER_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    monkeypatch.setenv("PROBE_RENDER_LOG", str(log))
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_mix_nodes  # noqa: F401

    return env, log


def mix_inputs(tmp_path):
    frames = {n: photo(top=90 + 4 * n, alpha=False) for n in range(1, 6)}
    mattes = {n: photo(top=140, left=60 + 5 * n) for n in range(2, 9)}
    for n, pixels in mattes.items():  # the test host's raw layout (conftest.write_frames)
        pixels.tofile(f"{tmp_path / 'matte'}.{n}.raw")
    return frames, mattes


def test_every_input_clip_is_fetched_with_its_own_frames(run_host, tmp_path, probe):
    env, log = probe
    frames, mattes = mix_inputs(tmp_path)
    run = run_host("io.clarifx.MixProbe", frames, profile="natron", time=3, env=env, params={"mix": 0.25},
                   clip_input=f"Matte={tmp_path / 'matte'}", clip_range="Matte=2:8", progress=True)
    inst = run.instance()
    statuses_ok(inst)
    assert run.cycle["clips"] == ["Source", "Matte", "Output"]
    assert inst["frames_needed_clips"] == {"Source": [3, 3], "Matte": [4, 4]}
    # General context: one output frame per Source frame, whatever the optional Matte holds (2..8).
    assert (inst["time_domain_status"], inst["time_domain"]) == (0, [1, 5])
    assert log.read_text() == "3\n"

    folder = tmp_path / "api"
    folder.mkdir()
    g = clarifx.Graph()
    reads = []
    for name, clip in (("src", frames), ("matte", mattes)):
        for n, pixels in clip.items():
            imageio.write_frame(folder / f"{name}.{n:04d}.exr", Frame(pixels, ("R", "G", "B", "A"), LINEAR, number=n),
                                dtype="float")
        reads.append(g.create("Read", file=str(folder / f"{name}.%04d.exr"), colorspace=LINEAR, alpha="premultiplied"))
    w = g.create("Write", g.create("MixProbe", *reads, mix=0.25), file=str(folder / "out.%04d.exr"),
                 colorspace=LINEAR, dtype="float")
    g.render(w, frames=(3, 3), progress=False)
    assert_same(run.output(), imageio.read_frame(folder / "out.0003.exr", 3).pixels)

    # The host's progress bar: opened, moved forward to the end, closed.
    steps = run.report["progress"]
    assert steps[0] == "start:clarifx MixProbe" and steps[-1] == "end"
    values = [float(s.split(":")[1]) for s in steps[1:-1]]
    assert values == sorted(values) and values[-1] == 1.0 and len(values) >= 3


def test_an_unconnected_second_input_is_named(run_host, tmp_path, probe):
    env, log = probe
    frames, _ = mix_inputs(tmp_path)
    run = run_host("io.clarifx.MixProbe", frames, profile="natron", time=3, env=env, missing_clip="Matte=unconnected")
    inst = run.instance()
    assert inst["render"] == 1 and inst["destroy"] == 0 and run.cycle["images_outstanding"] == 0
    assert "OfxMessageError|clarifx|MixProbe: input 'matte' (clip Matte) is not connected" in run.report["messages"]
    assert log.read_text() == ""


# ------------------------------------------------------------------------------------------------ missing images


@pytest.mark.parametrize("mode, says", [
    ("null", "the host gave no Source image for frame 1"),       # Resolve: kOfxStatOK and a NULL image
    ("failed", "the host gave no Source image for frame 1"),     # the fetch fails
    ("unconnected", "input 'source' (clip Source) is not connected"),
])
def test_resolve_without_a_source_image_gets_a_message_and_a_failed_status(run_host, mode, says):
    run = run_host("io.clarifx.Resize", {1: photo()}, profile="resolve", params={"scale": 2.0},
                   missing_clip=f"Source={mode}")
    inst = run.instance()
    assert inst["create"] == 0 and inst["render"] == 1 and inst["destroy"] == 0 and run.cycle["unload"] == 0
    assert [m for m in run.report["messages"] if m.startswith("OfxMessageError")] == \
        [f"OfxMessageError|clarifx|Resize: {says}" + (" (is the clip connected, and does it hold that frame?)"
                                                       if mode != "unconnected" else "")]
    assert run.cycle["images_outstanding"] == 0
    assert np.isnan(run.output()).all()  # nothing written over the host's buffer


# ------------------------------------------------------------------------------------------------ abort, progress


def test_the_host_aborts_between_frames_and_from_the_progress_bar(run_host, tmp_path, probe):
    env, log = probe
    frames, _ = mix_inputs(tmp_path)
    options = dict(profile="natron", time=3, env=env, clip_input=f"Matte={tmp_path / 'matte'}",
                   clip_range="Matte=2:8")
    # Abort checks: before the output image (1), before each input frame (2: Source; 3: Matte -> abort).
    run = run_host("io.clarifx.MixProbe", frames, abort_after=2, **options)
    inst = run.instance()
    assert inst["render"] == 1 and run.cycle["source_fetches"] == 1 and run.cycle["abort_calls"] == 3
    assert not [m for m in run.report["messages"] if m.startswith("OfxMessageError")]  # the host asked
    assert run.cycle["images_outstanding"] == 0 and log.read_text() == ""

    # Cancel on the progress bar once the node has run: abandoned before the output is written.
    run = run_host("io.clarifx.MixProbe", frames, progress=True, progress_cancel_at=0.9, **options)
    assert run.instance()["render"] == 1 and log.read_text() == "3\n"
    assert run.report["progress"][-2:] == ["update:0.9000", "end"]
    assert np.isnan(run.output()).all()


def test_a_tiled_model_reports_progress_per_tile_and_stops_mid_frame_on_cancel(run_host):
    params = {**MODEL, "tile": 24}  # 72 x 96 in tiles of 24: 12 tiles
    run = run_host(SR, {1: photo()}, profile="natron", params=params, progress=True)
    updates = [float(p.split(":")[1]) for p in run.report["progress"] if p.startswith("update:")]
    per_tile = [u for u in updates if 0.2 < u < 0.9]
    assert len(per_tile) == 11 and per_tile == sorted(per_tile)  # the 12th tile is at 0.9 itself
    assert not np.isnan(run.output()).any()

    run = run_host(SR, {1: photo()}, profile="natron", params=params, progress=True, progress_cancel_at=0.5)
    updates = [float(p.split(":")[1]) for p in run.report["progress"] if p.startswith("update:")]
    assert 0.5 <= updates[-1] < 0.6 and 0.9 not in updates  # abandoned inside the model, at the tile
    assert run.instance()["render"] == 1 and run.cycle["images_outstanding"] == 0
    assert not [m for m in run.report["messages"] if m.startswith("OfxMessageError")]
    assert np.isnan(run.output()).all()


# ------------------------------------------------------------------------------------------------ caches, doctor


def test_purge_caches_lets_go_of_every_model_cache():
    from clarifx import ofx
    from clarifx.nodes import restore

    restore._network("fast-x2")
    restore._runnable("fast-x2", "fp32", "cpu")
    assert restore._network.cache_info().currsize and restore._runnable.cache_info().currsize
    ofx.purge_caches()
    assert restore._network.cache_info().currsize == 0 and restore._runnable.cache_info().currsize == 0


def test_doctor_names_the_embedded_python_and_warns_on_another_version(bundle, tmp_path):
    import shutil

    from clarifx import ofx

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    lines, ok = ofx.python_lines(bundle)
    assert ok and lines[0].startswith(f"embedded Python: libpython{here}") and lines[0].endswith(": loads")

    # The same plugin as if built against another Python: its DT_NEEDED names libpython9.99 (same length).
    copy = tmp_path / "Clarifx.ofx.bundle"
    shutil.copytree(bundle, copy)
    binary = copy / ofx.BINARY
    old, new = f"libpython{here}.".encode(), b"libpython9.99."
    assert len(old) == len(new)  # the same length keeps every offset in the file valid
    data = binary.read_bytes()
    assert old in data
    binary.write_bytes(data.replace(old, new))
    info = ofx.embedded_python(copy)
    assert info["version"] == "9.99" and not info["loads"]
    lines, ok = ofx.python_lines(copy)
    assert not ok and "cannot be loaded" in lines[0]
    assert lines[1].startswith(f"warning: the plugin embeds Python 9.99 but clarifx is installed in Python {here}")
