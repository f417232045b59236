"""clarifx: restore footage (super-resolution, denoising, temporal processing, archival repair)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clarifx")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

from . import kernels  # noqa: E402

__all__ = ["kernels", "__version__"]
