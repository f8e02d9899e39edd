"""Writes the golden input notebooks of tests/test_pipeline_compile.py (run it by hand
after changing a case here, then regenerate the expectations with KFJ_UPDATE_GOLDEN=1)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def code(source: str, *tags: str):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def kale_style():
    """Kale's vocabulary: block:/step:, prev:, imports/functions/parameters/metrics, skip,
    untagged continuations, image/limit/cache, a line magic, kubeflow_notebook metadata,
    and an explicit prev: with no data flow."""
    cells = [
        new_markdown_cell("# A Kale notebook"),
        code("%matplotlib inline\nimport json\nimport math", "imports"),
        code("import random", ),  # untagged: continues the imports
        code("lr = 0.1\nepochs = 3\nname = \"it's \\\"quoted\\\"\"\nlayers = [8, 4]\nverbose = True\n"
             "config = {\"opt\": \"sgd\", \"momentum\": 0.9}", "pipeline-parameters", "parameters"),
        code("def loss(w, data):\n    return sum((w * x - y) ** 2 for x, y in data) / len(data)", "functions"),
        code("random.seed(0)\ndata = [(x, 2 * x + random.random()) for x in range(20)]", "block:load_data"),
        code("print(len(data))"),  # untagged: continues load_data
        new_markdown_cell("Training."),
        code("w = 0.0\nfor epoch in range(epochs):\n    w = w - lr * 0.01 * sum(2 * (w * x - y) * x for x, y in data)\n",
             "step:train", "prev:load_data", "image:python:3.11-slim", "limit:cpu:2",
             "limit:memory:1Gi", "limit:nvidia.com/gpu:1"),
        code("train_loss = loss(w, data)\nprint(json.dumps({\"w\": w, \"loss\": train_loss}))"),
        code("import matplotlib.pyplot as plt\nplt.plot([x for x, _ in data])", "skip"),
        code("print('after a skip cell: continues train, as in Kale')"),
        code("summary = {\"w\": w, \"loss\": train_loss, \"name\": name, \"layers\": layers}\n"
             "if verbose:\n    print(summary, config)", "step:report", "cache:false"),
        code("print(\"training finished\")", "step:notify", "prev:train"),
        code("print(train_loss)", "pipeline-metrics"),
    ]
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "kubeflow_notebook": {
            "experiment_name": "golden",
            "pipeline_name": "kale-style",
            "pipeline_description": "a Kale-tagged notebook",
            "docker_image": "python:3.11",
            "volumes": [],
        },
    })


def branches():
    """Parallel branches assigning the same name: the nearest ANCESTOR supplies it; a name
    rebound down a chain comes from the nearest step; no kubeflow_notebook metadata."""
    cells = [
        code("base = 10\nscale = 2", "step:a"),
        code("model = base + 1\nscale = scale * 3", "step:b", "prev:a"),
        code("model = base + 2", "step:c", "prev:a"),
        code("result = model * scale", "step:d", "prev:b"),
        code("other = model", "step:e", "prev:c"),
        code("total = result + other", "step:f"),
    ]
    return new_notebook(cells=cells, metadata={})


CASES = {"kale_style": kale_style, "branches": branches}

if __name__ == "__main__":
    for case, build in CASES.items():
        nb = build()
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{case.replace('_', '-')}-{i:02d}"
        nbformat.validate(nb)
        (HERE / case).mkdir(exist_ok=True)
        nbformat.write(nb, HERE / case / "notebook.ipynb")
