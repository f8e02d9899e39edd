"""Charts (ECharts) and the tuning views in a real JupyterLab and a real Chromium.

A small real study (``kfjupyter.tune``, a few quick trials over a float and a categorical
param) is shown in the sidebar's Tuning panel with its x axis and legend, the
intermediate values, parallel coordinates, Optuna's parameter importances and a slice
plot; "Retrain with the best" starts a training job and opens its tab. The same study
displayed in a notebook cell is drawn by the extension's MIME renderer (the same
components). A ``%%kf_train`` cell's widget draws its metrics chart through the MIME
renderer too, with axis ticks, and drops its Cancel button once the job ended. Light and
dark, with the charts' text at WCAG AA contrast in both.
"""

from __future__ import annotations

import pytest

import kfjupyter

from .conftest import SCREENSHOTS, open_sidebar, show_sections, write_notebook

pytestmark = pytest.mark.slow

STUDY_CELL = """\
import json, os
x = kfjupyter.param("x", low=-2.0, high=2.0)
width = kfjupyter.param("width", choices=[8, 32])
with open(os.path.join(kfjupyter.output_dir(), "model.json"), "w") as fh:
    json.dump({"x": x, "width": width}, fh)
for step in range(3):
    kfjupyter.report(step=step, loss=(x - 0.5) ** 2 + 1.0 / (step + 1) + width / 1000)
"""

TRAIN_CELL = """\
%%kf_train --name chart-train
import time
for step in range(5):
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
    time.sleep(0.2)
"""

#: The WCAG contrast of each chart text against the page's background (alpha blended).
CONTRAST_JS = """
(root) => {
  const parse = c => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(',').map(s => parseFloat(s));
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const bgVar = getComputedStyle(document.body).getPropertyValue('--jp-layout-color1').trim();
  const probe = document.createElement('div');
  probe.style.color = bgVar;
  document.body.appendChild(probe);
  const bg = parse(getComputedStyle(probe).color);
  probe.remove();
  const out = [];
  for (const t of root.querySelectorAll('svg text')) {
    if (!t.textContent.trim()) continue;
    const fill = parse(getComputedStyle(t).fill);
    if (!fill || !bg) continue;
    const opacity = parseFloat(getComputedStyle(t).opacity || '1') * parseFloat(t.getAttribute('fill-opacity') || '1');
    const a = fill.a * opacity;
    const blend = { r: fill.r * a + bg.r * (1 - a), g: fill.g * a + bg.g * (1 - a), b: fill.b * a + bg.b * (1 - a) };
    const [l1, l2] = [lum(blend), lum(bg)].sort((x, y) => y - x);
    out.push({ text: t.textContent, ratio: (l1 + 0.05) / (l2 + 0.05) });
  }
  return out;
}
"""


def assert_readable(locator) -> None:
    """Every text of the charts under ``locator`` at 4.5:1 or more against the background."""
    ratios = locator.evaluate(CONTRAST_JS)
    assert ratios, "no chart text found"
    low = [r for r in ratios if r["ratio"] < 4.5]
    assert not low, low[:5]


def run_cells(page, notebook, count: int) -> None:
    """Run the notebook's first ``count`` cells, once its kernel answers (the first cell
    run again if the kernel was not listening yet)."""
    import re

    from playwright.sync_api import expect

    first = notebook.locator(".jp-Cell").first
    for attempt in range(3):
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            raise AssertionError(f"a dialog is open: {dialog.first.inner_text()}")
        first.locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        try:
            expect(first.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[[0-9*]+\]"), timeout=20_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    for i in range(1, count):
        notebook.locator(".jp-Cell").nth(i).locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")


def open_and_run(page, lab, name: str, cells: list[str]):
    """Write notebook ``name`` of ``cells``, open it, run every cell once its kernel is idle; its panel."""
    from playwright.sync_api import expect

    write_notebook(lab.root / name, cells)
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell")).to_have_count(len(cells), timeout=60_000)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)
    run_cells(page, notebook, len(cells))
    return notebook


def switch_theme(page, name: str, light: bool) -> None:
    from playwright.sync_api import expect

    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text(name, exact=True).click()
    expect(page.locator(f"body[data-jp-theme-light='{'true' if light else 'false'}']")).to_have_count(1)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)


def test_study_charts_in_the_sidebar_and_the_notebook_and_retrain_with_the_best(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    study = kfjupyter.tune(
        STUDY_CELL, "loss", trials=6, parallel=2, algorithm="random", seed=3, name="charts-study",
        user_ns={}, workdir=str(lab.root),
    )  # fmt: skip
    study.wait(timeout=120)
    assert study.status == "Succeeded", study.error
    write_notebook(lab.root / "study.ipynb", [f"import kfjupyter\nkfjupyter.Study({study.id!r})"])
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{lab.url}/lab/tree/study.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell")).to_have_count(1, timeout=60_000)

    # The sidebar's Tuning panel: the study's charts.
    sidebar = open_sidebar(page)
    show_sections(sidebar, "Tuning")
    tuning = sidebar.locator("#kfjupyter-tuning")
    row = tuning.locator('.kf-StudyRow[data-study-name="charts-study"]')
    expect(row).to_be_visible(timeout=60_000)
    row.click()
    detail = tuning.locator(f'.kf-StudyDetail[data-study-id="{study.id}"]')
    try:
        expect(detail).to_be_visible(timeout=30_000)
    except AssertionError:
        raise AssertionError(f"no study detail; page errors: {page.kf_errors}") from None
    expect(detail.locator(".kf-StudyDetail-message")).to_have_text("6/6 trials done (6 complete), 0 running")
    charts = detail.locator(".kf-StudyCharts")
    plot = charts.locator(".kf-ObjectivePlot")
    expect(plot).to_have_attribute("data-points", "6")
    svg = plot.locator("svg")
    expect(svg).to_have_count(1)
    expect(svg.locator("text", has_text="trial").first).to_be_visible()  # the x axis' name
    for legend in ("complete", "best so far", "best trial"):
        expect(svg.locator("text", has_text=legend).first).to_be_visible()
    assert svg.locator("text").count() >= 8  # tick labels on both axes
    # log scale of the objective (positive values): the toggle redraws it
    charts.locator(".kf-StudyCharts-log").check()
    expect(plot).to_have_attribute("data-log", "true")
    charts.locator(".kf-StudyCharts-log").uncheck()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(SCREENSHOTS / "charts-study-objective-light.png"))
    assert_readable(charts)

    charts.locator('.kf-StudyCharts-tab[data-chart="intermediate"]').click()
    expect(charts.locator(".kf-IntermediatePlot")).to_have_attribute("data-curves", "6")
    expect(charts.locator(".kf-IntermediatePlot svg text", has_text="step").first).to_be_visible()

    charts.locator('.kf-StudyCharts-tab[data-chart="parallel"]').click()
    parallel = charts.locator(".kf-ParallelPlot")
    expect(parallel).to_have_attribute("data-axes", "3")
    expect(parallel).to_have_attribute("data-lines", "6")
    for name in ("x", "width", "loss"):
        expect(parallel.locator("svg text", has_text=name).first).to_be_visible()
    expect(parallel.locator("svg text", has_text="32").first).to_be_visible()  # a categorical axis
    sidebar.screenshot(path=str(SCREENSHOTS / "charts-study-parallel-light.png"))

    charts.locator('.kf-StudyCharts-tab[data-chart="importance"]').click()
    importance = charts.locator(".kf-ImportancePlot")
    expect(importance).to_be_visible(timeout=30_000)
    expect(importance).to_have_attribute("data-trials", "6")
    assert set(importance.get_attribute("data-params").split(",")) == {"x", "width"}
    expect(importance.locator("svg text", has_text="%").first).to_be_visible()
    api = study.param_importances()
    top = max(api["importances"], key=api["importances"].get)
    assert importance.get_attribute("data-params").split(",")[0] == top  # the most important first
    sidebar.screenshot(path=str(SCREENSHOTS / "charts-study-importance-light.png"))

    charts.locator('.kf-StudyCharts-tab[data-chart="slice"]').click()
    expect(charts.locator(".kf-SlicePlot")).to_have_attribute("data-param", "x")
    charts.locator(".kf-SlicePlot select").select_option("width")
    expect(charts.locator(".kf-SlicePlot")).to_have_attribute("data-param", "width")
    expect(charts.locator(".kf-SlicePlot svg text", has_text="width").first).to_be_visible()

    # The same study displayed by a notebook cell: the MIME renderer, the same components.
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)
    notebook.locator(".jp-Cell").first.locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    output = notebook.locator(".jp-Cell").first.locator(".jp-OutputArea-output")
    expect(output.first).to_be_visible(timeout=60_000)
    view = notebook.locator(f'.kf-MimeStudy[data-study-id="{study.id}"]')
    try:
        expect(view).to_be_visible(timeout=30_000)
    except AssertionError:
        raise AssertionError(f"no MIME view: {output.first.inner_html()[:800]}; {page.kf_errors}") from None
    expect(view.locator(".kf-MimeStudy-progress")).to_have_text("6/6 trials done (6 complete), 0 running")
    expect(view.locator(".kf-ObjectivePlot")).to_have_attribute("data-points", "6")
    expect(view.locator(".kf-ObjectivePlot svg text", has_text="best so far").first).to_be_visible()
    view.locator('.kf-StudyCharts-tab[data-chart="parallel"]').click()
    expect(view.locator(".kf-ParallelPlot svg text", has_text="width").first).to_be_visible()
    # not the plain-HTML fallback (that is for where the extension is not installed)
    expect(notebook.locator(".kf-study-view")).to_have_count(0)
    notebook.screenshot(path=str(SCREENSHOTS / "charts-study-notebook-light.png"))

    # Dark: the charts are drawn again in the theme's colours, text still readable.
    switch_theme(page, "JupyterLab Dark", light=False)
    expect(plot.locator("svg")).to_have_count(0)  # the parallel tab is open in the sidebar
    charts.locator('.kf-StudyCharts-tab[data-chart="objective"]').click()
    expect(plot.locator("svg text", has_text="best so far").first).to_be_visible()
    assert_readable(charts)
    view.locator('.kf-StudyCharts-tab[data-chart="objective"]').click()
    assert_readable(view)
    sidebar.screenshot(path=str(SCREENSHOTS / "charts-study-objective-dark.png"))
    notebook.screenshot(path=str(SCREENSHOTS / "charts-study-notebook-dark.png"))
    switch_theme(page, "JupyterLab Light", light=True)

    # Retrain with the best: a training job with the best params, its tab opened.
    detail.locator(".kf-RetrainBest").click()
    tab = page.locator(".kf-JobDetail").filter(has=page.locator(".kf-JobDetail-name", has_text="charts-study-best"))
    expect(tab).to_be_visible(timeout=30_000)
    expect(tab).to_have_attribute("data-status", "Succeeded", timeout=90_000)
    job = kfjupyter.jobs.get(tab.get_attribute("data-job-id"))
    assert job.kind == "train"
    from kfjupyter.tracking import get_run

    assert study.best_params.items() <= get_run(job.id).params.items()

    # Register the best: asks the model's name, registers the best trial's file, says so.
    detail.locator(".kf-RegisterBest").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Register the best trial’s model")
    dialog.locator("input").fill("charts-best")
    dialog.locator(".jp-mod-accept").click()
    expect(page.locator(".jp-toast-message").filter(has_text="Registered charts-best:1")).to_be_visible(
        timeout=30_000)  # fmt: skip
    version = kfjupyter.registry.get_version("charts-best:1")
    assert version.params == study.best_params and version.lineage["study_id"] == study.id
    assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors


def test_training_widget_chart_has_axes_and_no_cancel_once_finished(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    notebook = open_and_run(page, lab, "train.ipynb", ["%load_ext kfjupyter\nimport kfjupyter", TRAIN_CELL])

    # The widget's chart: the MIME renderer's ECharts chart, with ticks on both axes.
    output = notebook.locator(".jp-Cell").nth(1).locator(".jp-Cell-outputArea")
    chart = output.locator('.kf-MimeJob .kf-Chart[data-metric="loss"]')
    try:
        expect(chart).to_be_visible(timeout=90_000)
    except AssertionError:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "charts-train-widget-failed.png"))
        raise AssertionError(f"no chart: {output.inner_html()[:1500]}; {page.kf_errors}") from None
    # finished: the widget says so, its chart has all five points …
    expect(output.locator(".widget-html", has_text="Succeeded").first).to_be_visible(timeout=60_000)
    expect(chart.locator(".kf-Chart-series")).to_have_attribute("data-points", "5", timeout=30_000)
    ticks = chart.locator("svg text")
    expect(ticks.filter(has_text="step").first).to_be_visible(timeout=15_000)
    numbers = [t for t in ticks.all_text_contents() if t.replace(".", "", 1).isdigit()]
    assert len(numbers) >= 4, ticks.all_text_contents()  # x and y tick labels
    # … and no Cancel button (not a disabled orange one)
    cancel = output.locator(".widget-button", has_text="Cancel")
    expect(cancel).to_have_count(1)  # the widget's button is there …
    expect(cancel).to_be_hidden(timeout=30_000)  # … and hidden: nothing to cancel
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    output.screenshot(path=str(SCREENSHOTS / "charts-train-widget-light.png"))
    assert_readable(chart)

    # The job's tab draws the same chart, axes and ticks too.
    sidebar = open_sidebar(page)
    show_sections(sidebar, "Jobs")
    row = sidebar.locator(".kf-JobRow", has_text="chart-train").first
    expect(row).to_be_visible(timeout=30_000)
    row.click()
    tab_chart = page.locator('.kf-JobDetail .kf-Chart[data-metric="loss"]')
    expect(tab_chart.locator("svg text", has_text="step").first).to_be_visible(timeout=30_000)

    switch_theme(page, "JupyterLab Dark", light=False)
    expect(tab_chart.locator("svg text", has_text="step").first).to_be_visible()
    assert_readable(tab_chart)
    page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .kf-JobDetail").screenshot(
        path=str(SCREENSHOTS / "charts-train-jobtab-dark.png")
    )
    page.locator(".lm-TabBar-tab", has_text="train.ipynb").first.click()
    expect(chart.locator("svg text", has_text="step").first).to_be_visible()
    assert_readable(chart)
    output.screenshot(path=str(SCREENSHOTS / "charts-train-widget-dark.png"))
    assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors


PIPE_CELLS = [
    (["imports"], "import time"),
    (["step:make"], "rows = [1, 2, 3]"),
    (["step:left", "prev:make"], "left = sum(rows)"),
    (["step:right", "prev:make"], "right = max(rows)"),
    (["step:join"], "total = left + right\nprint('total', total)"),
]


def test_a_pipeline_and_its_run_are_drawn_in_the_notebook_as_the_panel_draws_them(lab, browser_page):
    """The notebook's output of a Pipeline and of a PipelineRun: the extension's MIME
    renderer lays the DAG out with dagre (the Pipeline panel's component), a run's steps
    with their states; readable in light and dark."""
    import json

    from playwright.sync_api import expect

    from kfjupyter import pipelines

    page = browser_page
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"p{i}", "metadata": {"tags": tags},
                     "outputs": [], "source": src} for i, (tags, src) in enumerate(PIPE_CELLS)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    (lab.root / "pipe.ipynb").write_text(json.dumps(nb))
    run = pipelines.run_pipeline(lab.root / "pipe.ipynb").wait(timeout=120)
    assert run.status == "Succeeded", run.error
    page.set_viewport_size({"width": 1200, "height": 1000})
    notebook = open_and_run(page, lab, "show.ipynb", [
        "import kfjupyter\nkfjupyter.pipelines.from_notebook('pipe.ipynb')",
        f"kfjupyter.pipelines.get_run({run.id!r})",
    ])  # fmt: skip

    drawn = notebook.locator(".jp-Cell").nth(0).locator(".kf-MimePipeline")
    expect(drawn.locator(".kf-PipelineDag-node")).to_have_count(4, timeout=60_000)
    expect(drawn.locator(".kf-PipelineDag-edge")).to_have_count(4)
    # dagre's layers: make above left and right, side by side, above join
    box = {n: drawn.locator(f'.kf-PipelineDag-node[data-step="{n}"]').bounding_box() for n in ("make", "left", "right", "join")}
    assert box["make"]["y"] < box["left"]["y"] == box["right"]["y"] < box["join"]["y"]
    assert box["left"]["x"] != box["right"]["x"]

    shown = notebook.locator(".jp-Cell").nth(1).locator(f'.kf-MimePipeline[data-run-id="{run.id}"]')
    expect(shown.locator('.kf-PipelineDag-node[data-status="Succeeded"]')).to_have_count(4, timeout=60_000)
    expect(shown.locator(".kf-MimeStudy-header")).to_contain_text("Succeeded")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    notebook.screenshot(path=str(SCREENSHOTS / "pipeline-notebook-light.png"))
    switch_theme(page, "JupyterLab Dark", light=False)
    assert_readable(shown)
    notebook.screenshot(path=str(SCREENSHOTS / "pipeline-notebook-dark.png"))
    switch_theme(page, "JupyterLab Light", light=True)
    assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors
