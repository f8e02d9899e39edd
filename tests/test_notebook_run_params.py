"""What the notebook toolbar's "Run with parameters…" reads and checks (issue 13, point 11):
``notebook_parameters`` (names, defaults, types, where found — the ``parameters`` cell, else
Kale's ``pipeline-parameters``), the type check of ``start_from_notebook`` naming the bad
value before anything starts, ``results_table`` and ``output_in_folder`` of a real sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfjupyter import jobs
from kfjupyter.errors import InvalidOptionError
from kfjupyter.notebook_runs import api
from kfjupyter.notebook_runs.params import check_value_types, notebook_parameters

pytestmark = pytest.mark.timeout(240)


def write(path, cells):
    """A notebook of (tags, source) code cells."""
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags},
                   "outputs": [], "source": src} for i, (tags, src) in enumerate(cells)],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path.write_text(json.dumps(nb))
    return path


def test_the_parameters_cell_gives_names_defaults_and_types(workdir):
    nb = write(workdir / "p.ipynb", [
        ([], "import math"),
        (["parameters"], "lr = 0.1\nlayers: int = 2\nname = 'run'\nflag = True\nnothing = None\n"
                         "sizes = [1, 2]\nscale = math.pi\n%matplotlib inline"),
    ])  # fmt: skip
    found = notebook_parameters(nb)
    assert (found["cell"], found["tag"], found["readable"]) == (1, "parameters", True)
    assert [(p["name"], p["value"], p["type"], p["source"]) for p in found["parameters"]] == [
        ("lr", 0.1, "float", "0.1"), ("layers", 2, "int", "2"), ("name", "run", "str", "'run'"),
        ("flag", True, "bool", "True"), ("nothing", None, "None", "None"), ("sizes", [1, 2], "list", "[1, 2]"),
        ("scale", None, None, "math.pi"),
    ]  # fmt: skip


def test_a_kale_pipeline_parameters_cell_is_read_when_there_is_no_parameters_cell(workdir):
    nb = write(workdir / "k.ipynb", [(["imports"], "import os"), (["pipeline-parameters"], "C = 1.0\nseed = 7"),
                                     (["step:train"], "print(C)")])  # fmt: skip
    found = notebook_parameters(nb)
    assert (found["cell"], found["tag"]) == (1, "pipeline-parameters")
    assert {p["name"]: p["type"] for p in found["parameters"]} == {"C": "float", "seed": "int"}
    # a `parameters` cell wins over Kale's
    both = write(workdir / "b.ipynb", [(["pipeline-parameters"], "C = 1.0"), (["parameters"], "alpha = 3")])
    assert [p["name"] for p in notebook_parameters(both)["parameters"]] == ["alpha"]


def test_a_notebook_without_a_parameters_cell_takes_none(workdir):
    found = notebook_parameters(write(workdir / "n.ipynb", [([], "x = 1")]))
    assert (found["cell"], found["tag"], found["parameters"]) == (None, None, [])


def test_a_value_of_the_wrong_type_is_refused_naming_it(workspace, workdir):
    nb = write(workdir / "t.ipynb", [(["parameters"], "lr = 0.1\nflag = False\nname = 'a'\nanything = None")])
    declared = notebook_parameters(nb)
    check_value_types({"lr": 1, "flag": True, "name": "b", "anything": [1]}, declared)  # all fine
    with pytest.raises(InvalidOptionError, match=r"sweep parameter 'lr': value 'abc' is not a number \(the notebook's default is 0.1\)"):
        api.start_from_notebook(nb, sweep={"lr": [0.1, "abc"]}, max_parallel=2)
    with pytest.raises(InvalidOptionError, match=r"parameter 'flag': value 'yes' is not True or False"):
        api.start_from_notebook(nb, {"flag": "yes"})
    with pytest.raises(InvalidOptionError, match=r"'typo' not in the 'parameters' cell"):
        api.start_from_notebook(nb, sweep={"typo": [1, 2]})
    with pytest.raises(InvalidOptionError, match="invalid max_parallel 0"):
        api.start_from_notebook(nb, sweep={"lr": [1, 2]}, max_parallel=0)
    assert jobs.count() == 0  # nothing was started


def test_a_sweep_from_the_toolbar_gives_its_results_table_and_openable_outputs(workspace, workdir):
    nb = write(workdir / "s.ipynb", [(["parameters"], "lr = 0.1"),
                                     ([], "import kfjupyter\nkfjupyter.report(score=lr * 10)")])  # fmt: skip
    sweep = api.start_from_notebook(nb, sweep={"lr": [0.5, 0.25]}, max_parallel=2)
    assert sweep.record.kind == "sweep"
    sweep.wait(timeout=180)
    table = api.results_table(sweep.id)
    assert table["kind"] == "sweep" and table["status"] == "Succeeded"
    assert table["columns"] == ["lr", "score", "status", "job_id"]
    assert [row[:3] for row in table["rows"]] == [[0.5, 5.0, "Succeeded"], [0.25, 2.5, "Succeeded"]]
    first = table["runs"][0]
    assert first["output_notebook"].endswith("output.ipynb")
    # the output lies in the workspace (outside the root): a copy next to the notebook
    opened = api.output_in_folder(first["id"], workdir)
    assert opened == workdir / f"s-{first['id']}-output.ipynb"
    assert json.loads(opened.read_text())["cells"][1]["metadata"]["tags"] == ["injected-parameters"]
    # under a root that holds it (not hidden), the output itself
    output = Path(first["output_notebook"]).resolve()
    assert api.output_in_folder(first["id"], workspace) == output
    with pytest.raises(InvalidOptionError, match="is a sweep"):
        api.output_in_folder(sweep.id, workdir)
    with pytest.raises(InvalidOptionError, match="not under the server's root"):
        api.output_in_folder(first["id"], workdir / "elsewhere")
