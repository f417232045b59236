"""Fixtures for the kernel tests: every test runs on each array library and device present.

`backend` converts numpy inputs to numpy / torch / torch-cuda / cupy arrays and back; CUDA backends
skip cleanly without a GPU. Inputs are fresh random draws each run (CLARIFX_TEST_SEED=N replays one;
the seed is printed with any failure), and outputs are passed in pre-filled with NaN so that an
element a kernel forgot to write fails the comparison.
"""

from __future__ import annotations

import os
import secrets

import numpy as np
import pytest

from clarifx import kernels

TOLERANCE = {"float32": 1e-5, "float16": 2e-3}


def _torch():
    return pytest.importorskip("torch")


class Backend:
    def __init__(self, name: str):
        self.name = name
        self.cuda = name in ("torch-cuda", "cupy")

    def __repr__(self) -> str:
        return self.name

    def array(self, a: np.ndarray):
        """A copy of numpy array `a` in this backend (same dtype)."""
        a = np.ascontiguousarray(a)
        if self.name == "numpy":
            return a.copy()
        if self.name.startswith("torch"):
            t = _torch().from_numpy(a.copy())
            return t.cuda() if self.cuda else t
        import cupy

        return cupy.asarray(a)

    def numpy(self, x) -> np.ndarray:
        if isinstance(x, np.ndarray):
            return x
        if self.name.startswith("torch"):
            return x.detach().cpu().numpy()
        return x.get()

    def poisoned(self, shape, dtype) -> object:
        """An output array filled with NaN."""
        return self.array(np.full(shape, np.nan, dtype=dtype))

    def synchronize(self) -> None:
        if self.name == "torch-cuda":
            _torch().cuda.synchronize()
        elif self.name == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()


def _backend_available(name: str) -> str | None:
    """None if usable, else the reason to skip."""
    if name == "numpy":
        return None
    if name.startswith("torch"):
        try:
            import torch
        except ImportError:
            return "torch is not installed"
        if name == "torch-cuda" and not (torch.cuda.is_available() and kernels.cuda_available()):
            return "no CUDA GPU (or clarifx built without CUDA)"
        return None
    try:
        import cupy
    except ImportError:
        return "cupy is not installed"
    if not (cupy.is_available() and kernels.cuda_available()):
        return "no CUDA GPU (or clarifx built without CUDA)"
    return None


BACKENDS = ["numpy", "torch", "torch-cuda", "cupy"]


def _backend_or_skip(name: str) -> Backend:
    reason = _backend_available(name)
    if reason:
        pytest.skip(reason)
    return Backend(name)


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    return _backend_or_skip(request.param)


@pytest.fixture(params=["torch-cuda", "cupy"])
def cuda_backend(request) -> Backend:
    """For tests that compare a CUDA run with the CPU run on the same inputs."""
    return _backend_or_skip(request.param)


@pytest.fixture(params=["float32", "float16"])
def dtype(request) -> str:
    return request.param


@pytest.fixture
def rng(request) -> np.random.Generator:
    seed = int(os.environ.get("CLARIFX_TEST_SEED", secrets.randbits(32)))
    print(f"{request.node.nodeid}: CLARIFX_TEST_SEED={seed}")
    return np.random.default_rng(seed)


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str, what: str = "output") -> None:
    """Max abs error within the tolerance for `dtype`; NaN anywhere (e.g. an unwritten poisoned element) fails."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.isfinite(actual).all(), f"{what}: {np.count_nonzero(~np.isfinite(actual))} non-finite elements"
    err = np.abs(actual - expected)
    worst = np.unravel_index(np.argmax(err), err.shape) if err.size else ()
    assert err.size == 0 or err.max() <= TOLERANCE[dtype], (
        f"{what}: max abs error {err.max():.3g} at {worst} (got {actual[worst]}, expected {expected[worst]}), "
        f"tolerance {TOLERANCE[dtype]}"
    )


# Sizes every kernel is tried on: single pixel, odd, and wider than any tile or vector width.
ODD_SIZES = [(1, 1), (17, 31), (3, 4097)]
