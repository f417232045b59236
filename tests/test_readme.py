"""The README's kernel example runs as written against the installed package."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_kernel_example_runs():
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(example, str(README), "exec"), scope)
    assert tuple(scope["sr"].shape) == (1, 3, 1080, 1920)
    assert scope["small"].shape == (540, 960, 3)
    assert not (scope["grainy"] == scope["img"]).all()
