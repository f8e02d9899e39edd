"""The Pipeline panel's Python API: the values a step handed on (``PipelineRun.step_outputs``:
names, types, sizes, previews, who reads them), and a notebook's run history
(``list_runs(notebook=)``: newest first, with status and backend), on real local runs."""

from __future__ import annotations

import pytest

from kfjupyter.errors import InvalidOptionError
from kfjupyter.jobs import JobFailedError
from kfjupyter.pipelines import list_runs, run_pipeline

from pipeline_notebooks import write_notebook

pytestmark = pytest.mark.timeout(120)


def outputs_notebook(path):
    return write_notebook(
        path,
        [
            (["imports"], "import numpy as np"),
            (["step:make"], "rows = [1, 2, 3]\nconfig = {'lr': 0.1, 'name': 'demo'}\nmatrix = np.zeros((4, 3), dtype='float32')\n"
                            "class Box:\n    pass\nbox = Box()"),
            (["step:use", "prev:make"], "total = sum(rows) + matrix.shape[0] + config['lr']\nprint(type(box).__name__)"),
            (["step:late", "prev:use"], "assert total > 0\nlater = [total] * 100"),
            (["step:end"], "print(len(later))"),
        ],
        name="outs",
    )  # fmt: skip


def test_step_outputs_name_type_size_preview_and_readers(workdir):
    nb = outputs_notebook(workdir / "outs.ipynb")
    run = run_pipeline(str(nb), backend="local", wait=True)
    assert run.status == "Succeeded", (run.record.error, run.steps)
    outs = {o["name"]: o for o in run.step_outputs("make")}
    assert set(outs) == {"rows", "config", "matrix"} | ({"box"} & set(outs))
    assert outs["rows"]["type"] == "list" and outs["rows"]["format"] == "json"
    assert outs["rows"]["preview"] == "[1, 2, 3]"
    assert outs["config"]["preview"] == "{'lr': 0.1, 'name': 'demo'}"
    assert outs["matrix"]["type"] == "numpy.ndarray" and outs["matrix"]["format"] == "numpy"
    assert outs["matrix"]["preview"] == "array shape (4, 3) dtype float32"
    for o in outs.values():
        assert o["available"] is True and o["size"] > 0
        assert o["to"] == ["use"]
    # a value that is not JSON or numpy: its type, no preview (nothing is unpickled)
    if "box" in outs:
        assert outs["box"]["preview"] is None and outs["box"]["type"].endswith("Box")
    # a long list is shortened
    (later,) = run.step_outputs("late")
    assert later["name"] == "later" and later["to"] == ["end"]
    assert len(later["preview"]) <= 200 and "..." in later["preview"]
    # only what a later step reads is handed on; a step that hands nothing on has none
    assert [(o["name"], o["to"], o["type"]) for o in run.step_outputs("use")] == [("total", ["late"], "float")]
    assert run.step_outputs("end") == []
    with pytest.raises(InvalidOptionError, match="no step 'ghost'"):
        run.step_outputs("ghost")


def test_outputs_of_a_step_that_did_not_run_are_listed_unavailable(workdir):
    nb = write_notebook(
        workdir / "fails.ipynb",
        [(["step:first"], "raise RuntimeError('boom')\nx = 1"), (["step:second", "prev:first"], "y = x + 1")],
        name="fails",
    )
    run = run_pipeline(str(nb), backend="local")
    with pytest.raises(JobFailedError):
        run.wait()
    assert run.status == "Failed"
    (x,) = run.step_outputs("first")
    assert x == {"name": "x", "type": None, "format": None, "size": None, "to": ["second"], "preview": None,
                 "available": False}  # fmt: skip


def test_run_history_of_a_notebook_newest_first(workdir):
    nb = write_notebook(workdir / "hist.ipynb", [(["step:a"], "a = 1"), (["step:b", "prev:a"], "b = a + 1")], name="hist")
    other = write_notebook(workdir / "other.ipynb", [(["step:a"], "a = 2")], name="other")
    first = run_pipeline(str(nb), backend="local", wait=True)
    run_pipeline(str(other), backend="local", wait=True)
    second = run_pipeline(str(nb), {}, backend="local", cache=False, wait=True)
    runs = list_runs(notebook=str(nb))
    assert [r.id for r in runs] == [second.id, first.id]
    rows = [r.to_dict() for r in runs]
    assert [r["status"] for r in rows] == ["Succeeded", "Succeeded"]
    assert [r["backend"] for r in rows] == ["local", "local"]
    assert rows[0]["created_at"] >= rows[1]["created_at"]


def test_kfp_backend_without_an_endpoint_is_refused_with_what_to_set(workdir, monkeypatch):
    monkeypatch.delenv("KFJUPYTER_KFP_URL", raising=False)
    monkeypatch.delenv("KFP_HOST", raising=False)
    nb = write_notebook(workdir / "k.ipynb", [(["step:a"], "a = 1")], name="k")
    with pytest.raises(InvalidOptionError, match="no Kubeflow Pipelines endpoint: set KFJUPYTER_KFP_URL"):
        run_pipeline(str(nb), backend="kubernetes")
    assert list_runs(notebook=str(nb)) == []  # nothing recorded


def test_notebook_drawings_follow_the_theme(workdir):
    """The notebook's DAG (HTML output) takes its colours from JupyterLab's variables (the
    labels' halo is the page's background, not white, in a dark theme); the steps table
    shows a status as icon + words, Skipped and Cancelled told apart."""
    import xml.dom.minidom

    from kfjupyter.pipelines import from_notebook
    from kfjupyter.pipelines.api import _status_html

    from kfjupyter.pipelines.render import to_svg

    svg = to_svg(from_notebook(str(outputs_notebook(workdir / "outs.ipynb"))))
    xml.dom.minidom.parseString(svg)  # still a well-formed SVG document
    assert ".kfj-label{fill:var(--jp-ui-font-color1,#3d4852);stroke:var(--jp-layout-color0,#ffffff)}" in svg
    assert 'class="kfj-label"' in svg
    skipped, cancelled = _status_html("Skipped"), _status_html("Cancelled")
    assert "⤼" in skipped and "⊘" in cancelled
    assert "--jp-warn-color1" in cancelled and "--jp-warn-color1" not in skipped
    assert ">Succeeded<" in _status_html("Succeeded") and "✓" in _status_html("Succeeded")
