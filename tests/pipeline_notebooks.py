"""Small tagged notebooks for the pipeline runner's tests (written with nbformat)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def write_notebook(path: Path, cells: list[tuple[list[str] | None, str]], name: str | None = None) -> Path:
    """``cells``: (tags or None for markdown, source). Returns ``path``."""
    nb = new_notebook()
    for tags, source in cells:
        if tags is None:
            nb.cells.append(new_markdown_cell(source))
        else:
            nb.cells.append(new_code_cell(source, metadata={"tags": tags} if tags else {}))
    if name:
        nb.metadata["kubeflow_notebook"] = {"pipeline_name": name}
    nbformat.write(nb, str(path))
    return path


def failing_notebook(path: Path, name: str = "flaky") -> Path:
    """start → (fragile → after) and (start → other): fragile raises unless ``ok.marker``
    exists in the notebook's folder (steps run there)."""
    return write_notebook(
        path,
        [
            (["imports"], "import os"),
            (["pipeline-parameters"], "scale = 2"),
            (["step:start"], "numbers = [1, 2, 3]"),
            (["step:fragile"], "if not os.path.exists('ok.marker'):\n    raise RuntimeError('no marker file')\ndoubled = [n * scale for n in numbers]"),
            (["step:after"], "total = sum(doubled)\nprint('total', total)"),
            (["step:other", "prev:start"], "count = len(numbers)"),
            (["pipeline-metrics"], "total\ncount"),
        ],
        name=name,
    )
