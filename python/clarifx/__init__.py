"""clarifx: restore footage (super-resolution, denoising, temporal processing, archival repair)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clarifx")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

from . import kernels, nodes  # noqa: E402
from .frame import ClipInfo, Frame  # noqa: E402
from .graph import Graph, Node  # noqa: E402

__all__ = ["Graph", "Node", "Frame", "ClipInfo", "kernels", "nodes", "__version__"]
