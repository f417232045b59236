"""Foreign CUDA buffers (an OFX host's) wrapped as CuPy arrays: no copy, exact geometry, owner kept alive."""

import gc
import weakref

import numpy as np
import pytest

from clarifx import kernels

cupy = pytest.importorskip("cupy")


class Owner:
    """Stands for the host object that owns the device memory."""


def test_wrap_views_the_given_pointer_with_its_geometry():
    ptr = 0x7F00_0000_0000  # never dereferenced: wrapping touches no memory
    a = kernels.wrap_cuda_pointer(ptr, (1, 4, 1080, 1920), "float16", device=0)
    assert a.data.ptr == ptr
    assert a.shape == (1, 4, 1080, 1920) and a.dtype == np.float16
    assert a.strides == (4 * 1080 * 1920 * 2, 1080 * 1920 * 2, 1920 * 2, 2)
    assert a.device.id == 0


def test_wrap_keeps_host_row_padding_and_owner():
    owner = Owner()
    alive = weakref.ref(owner)
    row_bytes = 2048 * 4 * 4  # a host that pads RGBA float rows to 2048 pixels
    a = kernels.wrap_cuda_pointer(0x7F00_0000_0000, (1080, 1920, 4), np.float32, device=0,
                                  strides=(row_bytes, 16, 4), owner=owner)
    assert a.strides == (row_bytes, 16, 4)
    del owner
    gc.collect()
    assert alive() is not None  # the array holds the host's buffer owner
    del a
    gc.collect()
    assert alive() is None
