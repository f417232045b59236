"""The README's Python examples run as written against the installed package."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return next(b for b in blocks if marker in b)


def test_readme_kernel_example_runs():
    scope: dict = {}
    exec(compile(_example("from clarifx import kernels"), str(README), "exec"), scope)
    assert tuple(scope["sr"].shape) == (1, 3, 1080, 1920)
    assert scope["small"].shape == (540, 960, 3)
    assert not (scope["grainy"] == scope["img"]).all()


def test_readme_graph_example_runs(tmp_path, monkeypatch):
    from clarifx.imageio import read_image, write_image

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng()
    for n in range(1, 49):
        write_image(f"in.{n:04d}.exr", rng.random((12, 16, 3), dtype=np.float32) * 2, dtype="half")
    scope: dict = {}
    exec(compile(_example("clarifx.Graph()"), str(README), "exec"), scope)
    assert read_image("out.0048.exr").shape == (24, 32, 3)
    assert scope["clarifx"].Graph.load("shot.json").to_dict() == scope["g"].to_dict()
