"""The Pipeline panel in a real JupyterLab and a real Chromium.

A small tagged notebook: Compile first fails on a cell that reads a name no step supplies
(the error names that cell, and its button selects it); the panel then tags a skipped
cell as step ``double`` (its other tag kept) and adds ``prev:`` edges to another cell;
Save writes the tags into the .ipynb on disk; Compile draws the DAG (one SVG box per
step, only the prev: edge that passes no data dashed, a legend; boxes keyboard-reachable); Export YAML downloads the KFP pipeline; Run shows the
steps live until Succeeded, a step's log, a second run taken from the cache, and a third
with another parameter value (typed in the panel) re-running only the steps it reaches;
a run started from Python shows up through the job events. Every wait is on the UI's state (Playwright's ``expect``) or the file on disk, never a
fixed sleep.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from .conftest import SCREENSHOTS, open_sidebar, show_sections

pytestmark = pytest.mark.slow

CELLS = [
    (["imports"], "import time"),
    (["pipeline-parameters"], "factor = 2"),
    (["step:load", "hide-input"], "x = 21\ntime.sleep(3)\nprint('loaded', x)"),
    (["skip", "remove-output"], "y = x * factor\nprint('double', y)"),
    (["step:report"], "print('report', y)"),
]


def write_tagged(path, cells) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags}, "outputs": [], "source": src}
            for i, (tags, src) in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "kubeflow_notebook": {"pipeline_name": "ui-pipe"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))


def tags_on_disk(path) -> list[list[str]]:
    return [c["metadata"].get("tags", []) for c in json.loads(path.read_text())["cells"]]


def wait_disk(path, predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        tags = tags_on_disk(path)
        if predicate(tags):
            return tags
        assert time.monotonic() < deadline, f"the notebook on disk has {tags}"
        time.sleep(0.2)


def test_tags_saved_dag_drawn_run_live_then_cached(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    path = lab.root / "pipe.ipynb"
    write_tagged(path, CELLS)

    page.goto(f"{lab.url}/lab/tree/pipe.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cells = notebook.locator(".jp-Cell")
    expect(cells).to_have_count(5, timeout=60_000)

    sidebar = open_sidebar(page)
    show_sections(sidebar, "Pipeline")  # fold the others: the Pipeline panel gets the height
    panel = sidebar.locator("#kfjupyter-pipeline")
    expect(panel).to_be_visible()
    expect(panel.locator(".kf-Pipeline-notebook")).to_have_text("pipe.ipynb")

    # Run, then Compile, the notebook as it is: cell 5 reads y, which the skipped cell 4
    # assigns; both say so and name the cell.
    error = panel.locator(".kf-Pipeline-error")
    panel.locator(".kf-Pipeline-run").click()
    expect(error).to_have_attribute("data-cell", "4", timeout=30_000)
    expect(panel.locator(".kf-PipelineRun")).to_have_count(0)  # nothing started
    panel.locator(".kf-Pipeline-compile").click()
    expect(panel.locator(".kf-Pipeline-compile")).to_have_text("Compile", timeout=30_000)  # done
    expect(error).to_contain_text("'y'")
    expect(error).to_have_attribute("data-cell", "4")
    error.locator(".kf-Pipeline-errorCell").click()  # selects the cell it names
    form = panel.locator(".kf-PipelineTags")
    expect(form.locator(".kf-PipelineTags-head")).to_contain_text("Cell 5")

    # Cell 4: from skip to step "double"; its own tag stays.
    cells.nth(3).locator(".jp-InputPrompt").click()
    expect(form.locator(".kf-PipelineTags-head")).to_contain_text("Cell 4")
    expect(form.get_by_label("Cell role")).to_have_value("skip")
    form.get_by_label("Cell role").select_option("step")
    expect(form.locator(".kf-PipelineTags-problem")).to_contain_text("needs a name")
    form.get_by_label("Step name").fill("double")
    expect(form.locator(".kf-PipelineTags-problem")).to_have_count(0)
    expect(form.locator(".kf-PipelineTag")).to_have_text(["step:double", "remove-output"])

    # Cell 5: after double (data flows too) and after load (no data: an explicit edge only).
    cells.nth(4).locator(".jp-InputPrompt").click()
    expect(form.locator(".kf-PipelineTags-head")).to_contain_text("Cell 5")
    form.get_by_label("After double").check()
    form.get_by_label("After load").check()
    form.get_by_label("CPU limit").fill("1")
    expect(form.locator(".kf-PipelineTag")).to_have_text(["step:report", "prev:double", "prev:load", "limit:cpu:1"])

    # Save: the tags are in the .ipynb on disk.
    cells.nth(4).locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+s")
    saved = wait_disk(path, lambda t: "step:double" in t[3] and "prev:load" in t[4])
    assert saved == [
        ["imports"],
        ["pipeline-parameters"],
        ["step:load", "hide-input"],
        ["step:double", "remove-output"],
        ["step:report", "prev:double", "prev:load", "limit:cpu:1"],
    ]

    # Compile: the DAG, a box per step, edges with the names passed, the prev-only one dashed.
    panel.locator(".kf-Pipeline-compile").click()
    dag = panel.locator("svg.kf-PipelineDag")
    expect(dag.locator(".kf-PipelineDag-node")).to_have_count(3, timeout=30_000)
    expect(panel.locator(".kf-Pipeline-error")).to_have_count(0)
    for step in ("load", "double", "report"):
        expect(dag.locator(f'.kf-PipelineDag-node[data-step="{step}"]')).to_have_count(1)
    expect(dag.locator('.kf-PipelineDag-edge[data-source="load"][data-target="double"]')).to_contain_text("x")
    expect(dag.locator('.kf-PipelineDag-edge[data-source="double"][data-target="report"]')).to_contain_text("y")
    expect(dag.locator('.kf-PipelineDag-edge.kf-mod-explicit[data-source="load"][data-target="report"]')).to_have_count(1)
    # Dashed: only the prev: edge that carries nothing (double -> report has prev: but carries y).
    expect(dag.locator('.kf-PipelineDag-edge.kf-mod-orderOnly')).to_have_count(1)
    expect(dag.locator('.kf-PipelineDag-edge.kf-mod-orderOnly[data-source="load"][data-target="report"]')).to_have_count(1)
    edge_dash = lambda src, dst: dag.locator(f'.kf-PipelineDag-edge[data-source="{src}"][data-target="{dst}"] path').evaluate(
        "p => getComputedStyle(p).strokeDasharray"
    )
    assert edge_dash("double", "report") == "none"
    assert edge_dash("load", "report") != "none"
    expect(panel.locator(".kf-PipelineDag-legend")).to_contain_text("order only")
    # The boxes are buttons a keyboard reaches: Enter on one selects its step's first cell.
    node = dag.locator('.kf-PipelineDag-node[data-step="load"]')
    expect(node).to_have_attribute("role", "button")
    node.focus()
    page.keyboard.press("Enter")
    expect(form.locator(".kf-PipelineTags-head")).to_contain_text("Cell 3")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(SCREENSHOTS / "pipeline-tags-dag.png"))

    # Export YAML: the KFP pipeline, downloaded as pipe.yaml.
    with page.expect_download(timeout=60_000) as download:
        panel.locator(".kf-Pipeline-export").click()
    assert download.value.suggested_filename == "pipe.yaml"
    exported = yaml.safe_load(open(download.value.path()).read())
    assert exported["pipelineInfo"]["name"] == "ui-pipe"
    expect(panel.locator(".kf-Pipeline-notice")).to_contain_text("Exported")

    # Run: the steps live — load runs (3 s), then every step succeeds. Its log, opened
    # while it runs, is the run's channel step/load, streamed (no poll of a step-logs route).
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    panel.locator(".kf-Pipeline-run").click()
    steps = panel.locator(".kf-PipelineStep")
    expect(steps).to_have_count(3, timeout=30_000)
    load = panel.locator('.kf-PipelineStep[data-step="load"]')
    expect(load).to_have_attribute("data-status", "Running", timeout=60_000)
    load.locator(".kf-PipelineStep-logsButton").click()
    expect(dag.locator('.kf-PipelineDag-node[data-step="load"]')).to_have_attribute("data-status", "Running")
    for step in ("load", "double", "report"):
        expect(panel.locator(f'.kf-PipelineStep[data-step="{step}"]')).to_have_attribute(
            "data-status", "Succeeded", timeout=90_000
        )
    expect(panel.locator(".kf-PipelineRun")).to_have_attribute("data-status", "Succeeded", timeout=30_000)
    expect(dag.locator('.kf-PipelineDag-node[data-status="Succeeded"]')).to_have_count(3)
    expect(load.locator(".kf-PipelineStep-logs")).to_contain_text("loaded 21", timeout=30_000)
    expect(load.locator(".kf-PipelineStep-logs")).to_have_attribute("data-stream", "ended", timeout=30_000)
    expect(load.locator(".kf-PipelineStep-cache")).to_contain_text("not cached")
    streams = [u for u in requests if "/logs/stream?" in u]
    assert any("channel=step%2Fload" in u for u in streams), streams
    # once the step has ended, its whole log is read once (tail=0, follow=false)
    assert any("channel=step%2Fload&tail=0&follow=false" in u for u in streams), streams
    sidebar.screenshot(path=str(SCREENSHOTS / "pipeline-panel.png"))

    # A second run: nothing changed, every step from the cache, with the reason.
    first = panel.locator(".kf-PipelineRun").get_attribute("data-run")
    panel.locator(".kf-Pipeline-run").click()
    expect(panel.locator(".kf-PipelineRun")).not_to_have_attribute("data-run", first or "", timeout=30_000)
    expect(panel.locator(".kf-PipelineRun")).to_have_attribute("data-status", "Succeeded", timeout=60_000)
    for step in ("load", "double", "report"):
        row = panel.locator(f'.kf-PipelineStep[data-step="{step}"]')
        expect(row).to_have_attribute("data-status", "Cached")
        expect(row.locator(".kf-PipelineStep-cache")).to_contain_text("cached: same code")
    expect(dag.locator('.kf-PipelineDag-node[data-status="Cached"]')).to_have_count(3)

    # A third run with another value of the parameter: load comes from the cache, double
    # (which reads it) and report (downstream) run again.
    panel.get_by_label("Parameter factor").fill("3")
    second = panel.locator(".kf-PipelineRun").get_attribute("data-run")
    panel.locator(".kf-Pipeline-run").click()
    expect(panel.locator(".kf-PipelineRun")).not_to_have_attribute("data-run", second or "", timeout=30_000)
    expect(panel.locator(".kf-PipelineRun")).to_have_attribute("data-status", "Succeeded", timeout=60_000)
    expect(panel.locator('.kf-PipelineStep[data-step="load"]')).to_have_attribute("data-status", "Cached")
    double = panel.locator('.kf-PipelineStep[data-step="double"]')
    expect(double).to_have_attribute("data-status", "Succeeded")
    expect(double.locator(".kf-PipelineStep-cache")).to_contain_text("not cached")
    double.locator(".kf-PipelineStep-logsButton").click()
    expect(double.locator(".kf-PipelineStep-logs")).to_contain_text("double 63", timeout=30_000)
    expect(load.locator(".kf-PipelineStep-logs")).to_have_count(0)  # one step's log open: one stream
    assert not [u for u in requests if "/steps/" in u and u.split("?")[0].endswith("/logs")], requests

    # A run started elsewhere (the Python API, as %kf_pipeline or the CLI would): its job
    # event brings it into the panel.
    import kfjupyter.pipelines as kp

    outside = kp.run_pipeline(str(path), {"factor": 4})
    try:
        expect(panel.locator(".kf-PipelineRun")).to_have_attribute("data-run", outside.id, timeout=30_000)
        expect(panel.locator(".kf-PipelineRun")).to_have_attribute("data-status", "Succeeded", timeout=60_000)
    finally:
        outside.wait(60)
    assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors


def test_tag_form_keeps_spelling_and_leaves_conflicts_alone(lab, browser_page):
    """Kale's block: stays block: through an edit; a cell whose tags conflict shows the
    conflict naming the tags, its form is read-only, and its tags stay as they were."""
    from playwright.sync_api import expect

    page = browser_page
    path = lab.root / "kale.ipynb"
    write_tagged(
        path,
        [
            (["block:prep", "hide-cell"], "x = 1"),
            (["step:a", "step:b"], "import os"),
        ],
    )
    page.goto(f"{lab.url}/lab/tree/kale.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cells = notebook.locator(".jp-Cell")
    expect(cells).to_have_count(2, timeout=60_000)
    sidebar = open_sidebar(page)
    show_sections(sidebar, "Pipeline")
    panel = sidebar.locator("#kfjupyter-pipeline")
    form = panel.locator(".kf-PipelineTags")

    cells.nth(0).locator(".jp-InputPrompt").click()
    expect(form.locator(".kf-PipelineTags-head")).to_contain_text("Cell 1")
    expect(form.get_by_label("Step name")).to_have_value("prep")
    form.get_by_label("Memory limit").fill("2GB")  # the compiler would refuse it: not written
    expect(form.locator(".kf-PipelineTags-problem")).to_contain_text("not a Kubernetes quantity")
    expect(form.locator(".kf-PipelineTag")).to_have_text(["block:prep", "hide-cell"])
    form.get_by_label("Memory limit").fill("2Gi")
    expect(form.locator(".kf-PipelineTag")).to_have_text(["block:prep", "hide-cell", "limit:memory:2Gi"])

    cells.nth(1).locator(".jp-InputPrompt").click()
    expect(form.locator(".kf-PipelineTags-head")).to_contain_text("Cell 2")
    conflict = form.locator(".kf-PipelineTags-conflict")
    expect(conflict).to_contain_text("step:a")
    expect(conflict).to_contain_text("step:b")
    expect(form.get_by_label("Cell role")).to_be_disabled()

    page.keyboard.press("Control+s")
    saved = wait_disk(path, lambda t: "limit:memory:2Gi" in t[0])
    assert saved == [["block:prep", "hide-cell", "limit:memory:2Gi"], ["step:a", "step:b"]]
