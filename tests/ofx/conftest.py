"""Fixtures for the OFX bridge: the built bundle, the C++ test host (compiled here with the system
compiler), and running the host on frames written from numpy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TESTHOST_SOURCE = REPO / "ofx_bridge" / "testhost" / "testhost.cpp"
INCLUDE = REPO / "ofx_bridge" / "include"
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))


@pytest.fixture(scope="session")
def bundle() -> Path:
    from clarifx import ofx

    path = ofx.bundle_path()
    if path is None:
        pytest.skip("no OFX bundle built (pip install . builds it; tools/dev-build for development)")
    return path


def _compile(out: Path, *extra: str) -> Path:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the test host")
    cmd = [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", f"-I{INCLUDE}", str(TESTHOST_SOURCE), "-o", str(out),
           *extra, "-ldl", "-lpthread"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def testhost(tmp_path_factory) -> Path:
    return _compile(tmp_path_factory.mktemp("testhost") / "clarifx-ofx-testhost")


@pytest.fixture(scope="session")
def cuda_testhost(tmp_path_factory) -> Path:
    """The test host with its CUDA path (cudaMalloc buffers, a stream), cudart linked statically."""
    if not (CUDA_HOME / "include" / "cuda_runtime_api.h").exists():
        pytest.skip(f"no CUDA toolkit at {CUDA_HOME}")
    return _compile(tmp_path_factory.mktemp("testhost-cuda") / "clarifx-ofx-testhost-cuda", "-DCLARIFX_TESTHOST_CUDA",
                    f"-I{CUDA_HOME / 'include'}", f"-L{CUDA_HOME / 'lib64'}", "-lcudart_static", "-lrt")


@pytest.fixture(scope="session")
def python_lib() -> str:
    """The shared libpython of this interpreter, which a host with its own Python has loaded."""
    return str(Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME"))


@dataclass
class HostRun:
    report: dict
    returncode: int
    stderr: str
    components: int

    @property
    def cycle(self) -> dict:
        return self.report["cycles"][0]

    def instance(self, k: int = 0, cycle: int = 0) -> dict:
        return self.report["cycles"][cycle]["instances"][k]

    def output(self, k: int = 0, cycle: int = 0) -> np.ndarray:
        inst = self.instance(k, cycle)
        x1, y1, x2, y2 = inst["output_bounds"]
        return np.fromfile(inst["output_file"], np.float32).reshape(y2 - y1, x2 - x1, self.components)


def write_frames(prefix: Path, frames: dict[int, np.ndarray]) -> None:
    """Frames for the host: float32 RGBA, top-down, one raw file per frame number."""
    for t, pixels in frames.items():
        assert pixels.dtype == np.float32 and pixels.shape[2] == 4
        np.ascontiguousarray(pixels).tofile(f"{prefix}.{t}.raw")


@pytest.fixture
def run_host(testhost, bundle, tmp_path):
    """run_host(effect, frames, profile=..., params={...}, **options) -> HostRun."""
    count = [0]

    def run(effect: str, frames: dict[int, np.ndarray], *, profile: str = "nuke", params: dict | None = None,
            time: int | None = None, host: Path | None = None, bundle_dir: Path | None = None, env=None,
            components: str = "RGBA", **options) -> HostRun:
        count[0] += 1
        work = tmp_path / f"run{count[0]}"
        work.mkdir()
        write_frames(work / "in", frames)
        first, last = min(frames), max(frames)
        h, w = next(iter(frames.values())).shape[:2]
        cmd = [str(host or testhost), "--bundle", str(bundle_dir or bundle), "--effect", effect, "--profile", profile,
               "--input", str(work / "in"), "--output", str(work / "out"), "--report", str(work / "report.json"),
               "--width", str(w), "--height", str(h), "--first", str(first), "--last", str(last),
               "--time", str(first if time is None else time), "--components", components]
        for name, value in (params or {}).items():
            cmd += ["--param", f"{name}={value}"]
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value is not False and value is not None:
                cmd += [flag, str(value)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                                env={**os.environ, **(env or {})})
        if result.returncode == 77:
            pytest.skip("no CUDA device")
        assert result.returncode == 0, result.stderr
        report = json.loads((work / "report.json").read_text())
        return HostRun(report, result.returncode, result.stderr, 3 if components == "RGB" else 4)

    return run
