"""The Pipeline panel as a data scientist lives in it (issue 13, point 9), in a real
JupyterLab and Chromium: an untagged notebook says "No steps yet" (no technical error);
Run on Kubeflow Pipelines without an endpoint says what to set (nothing started); a local
run shows every status as icon + words, with a legend for each status and the edges;
each notebook cell wears its step's badge with the status; a step's handed-on values
(names, types, previews); the run history (two runs, newest first, either one shown);
the toolbar stays in view while the panel scrolls; light and dark screenshots, the dark
theme's text checked for WCAG AA contrast and the DAG labels' halo for the theme's colour.
"""

from __future__ import annotations

import json

import pytest

from .conftest import SCREENSHOTS, open_sidebar, show_sections

pytestmark = pytest.mark.slow

FLOW = [
    (["imports"], "import numpy as np"),
    (["step:make"], "rows = [1, 2, 3]\nmatrix = np.zeros((4, 3), dtype='float32')\nprint('made', len(rows))"),
    ([], "extra = 5  # continues step make"),
    (["step:use"], "total = sum(rows) + matrix.shape[0] + extra\nprint('total', total)"),
]

#: The contrast of an element's text with the background it is drawn on (WCAG 2 formula).
CONTRAST_JS = """
(els) => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const background = el => { for (let n = el; n; n = n.parentElement) { const c = parse(getComputedStyle(n).backgroundColor);
    if (c && c.a > 0.5) return c; } return { r: 255, g: 255, b: 255, a: 1 }; };
  return els.filter(el => el.offsetParent !== null && el.textContent.trim()).map(el => {
    const fg = parse(getComputedStyle(el).color); const bg = background(el);
    const a = fg.a; const mix = { r: fg.r * a + bg.r * (1 - a), g: fg.g * a + bg.g * (1 - a), b: fg.b * a + bg.b * (1 - a) };
    const l1 = lum(mix), l2 = lum(bg);
    return { text: el.textContent.trim().slice(0, 40), cls: el.className, ratio: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05) };
  });
}
"""


def write_tagged(path, cells) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags} if tags else {},
             "outputs": [], "source": src}
            for i, (tags, src) in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    path.write_text(json.dumps(nb, indent=1))


def sidebar_width(page, sidebar, px: int) -> None:
    """Drag the left area's edge so the Kubeflow sidebar is about ``px`` wide."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    left = sidebar.bounding_box()["x"]
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(left + px, box["y"] + 200, steps=5)
    page.mouse.up()
    width = sidebar.bounding_box()["width"]
    assert abs(width - px) < 40, (width, px)


def shots(page, sidebar, theme: str) -> None:
    """The sidebar at 300 px and 800 px wide (``pipeline-ux-{theme}-{width}.png``)."""
    for px in (300, 800):
        sidebar_width(page, sidebar, px)
        sidebar.screenshot(path=str(SCREENSHOTS / f"pipeline-ux-{theme}-{px}.png"))


def after_content(locator) -> str:
    return locator.evaluate("el => getComputedStyle(el, '::after').content")


def test_pipeline_panel_statuses_history_values_badges_backend(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    write_tagged(lab.root / "plain.ipynb", [([], "x = 1"), ([], "print(x)")])
    write_tagged(lab.root / "flow.ipynb", FLOW)

    # An untagged notebook: "No steps yet", and Compile adds no technical error.
    page.goto(f"{lab.url}/lab/tree/plain.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell")).to_have_count(2, timeout=60_000)
    sidebar = open_sidebar(page)
    show_sections(sidebar, "Pipeline")
    panel = sidebar.locator("#kfjupyter-pipeline")
    expect(panel.locator(".kf-Pipeline-notebook")).to_have_text("plain.ipynb")
    empty = panel.locator(".kf-Pipeline-noSteps")
    expect(empty).to_contain_text("No steps yet: tag a cell with step:NAME")
    expect(empty).to_contain_text("cell toolbar")
    panel.locator(".kf-Pipeline-compile").click()
    expect(panel.locator(".kf-Pipeline-compile")).to_have_text("Compile", timeout=30_000)
    expect(panel.locator(".kf-Pipeline-error")).to_have_count(0)
    expect(empty).to_be_visible()
    sidebar.screenshot(path=str(SCREENSHOTS / "pipeline-ux-nosteps.png"))

    page.goto(f"{lab.url}/lab/tree/flow.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cells = notebook.locator(".jp-Cell")
    expect(cells).to_have_count(4, timeout=60_000)
    sidebar = page.locator("#kfjupyter-sidebar")
    if not sidebar.is_visible():  # the layout restored may have it open already
        sidebar = open_sidebar(page)
    show_sections(sidebar, "Pipeline")
    panel = sidebar.locator("#kfjupyter-pipeline")
    expect(panel.locator(".kf-Pipeline-notebook")).to_have_text("flow.ipynb")
    expect(panel.locator(".kf-Pipeline-noSteps")).to_have_count(0)

    # Cell badges from the tags alone: the step each cell belongs to (the untagged cell
    # continues make), none on the imports cell.
    expect(cells.nth(1)).to_have_attribute("data-kf-step", "make")
    expect(cells.nth(2)).to_have_attribute("data-kf-step", "make")
    expect(cells.nth(3)).to_have_attribute("data-kf-step", "use")
    assert cells.nth(0).get_attribute("data-kf-step") is None
    assert after_content(cells.nth(1).locator(".jp-InputArea")) == '"step make"'

    # Kubeflow Pipelines without an endpoint: a clear error, nothing started.
    backend = panel.get_by_label("Run on")
    expect(backend.locator("option")).to_have_text(["Local (this machine)", "Kubeflow Pipelines"])
    backend.select_option("kubernetes")
    panel.locator(".kf-Pipeline-run").click()
    error = panel.locator(".kf-Pipeline-error")
    expect(error).to_contain_text("Cannot run on Kubeflow Pipelines", timeout=30_000)
    expect(error).to_contain_text("no Kubeflow Pipelines endpoint: set KFJUPYTER_KFP_URL")
    expect(panel.locator(".kf-PipelineRun")).to_have_count(0)
    expect(panel.locator(".kf-PipelineHistory")).to_have_count(0)

    # A local run: statuses as icon + words, in the steps, the DAG and the cells.
    backend.select_option("local")
    expect(error).to_have_count(0)
    panel.locator(".kf-Pipeline-run").click()
    run = panel.locator(".kf-PipelineRun")
    expect(run).to_have_attribute("data-status", "Succeeded", timeout=90_000)
    expect(run.locator(".kf-PipelineRun-backend")).to_have_text("local")
    make = panel.locator('.kf-PipelineStep[data-step="make"]')
    expect(make.locator(".kf-PipelineStatus-icon")).to_have_text("✓")
    expect(make.locator(".kf-PipelineStatus-text")).to_have_text("Succeeded")
    dag = panel.locator("svg.kf-PipelineDag")
    expect(dag.locator('.kf-PipelineDag-node[data-step="make"] .kf-PipelineDag-status')).to_have_text("✓ Succeeded")
    expect(cells.nth(1)).to_have_attribute("data-kf-step-status", "Succeeded")
    assert after_content(cells.nth(2).locator(".jp-InputArea")) == '"step make · ✓ Succeeded"'

    # The legend: every status (icon, words, meaning) and the data edges.
    legend = panel.locator(".kf-PipelineDag-legend")
    expect(legend.locator(".kf-PipelineDag-legendBody")).to_be_hidden()  # folded: the DAG keeps the room
    legend.locator("summary").click()
    expect(legend.locator(".kf-PipelineDag-legendBody")).to_be_visible()
    for status in ("Pending", "Running", "Succeeded", "Cached", "Failed", "Skipped", "Cancelled"):
        item = legend.locator(f'[data-legend="{status}"]')
        expect(item.locator(".kf-PipelineStatus-text")).to_have_text(status)
        expect(item.locator(".kf-PipelineDag-legendMeaning")).not_to_be_empty()
    expect(legend.locator('[data-legend="data"]')).to_contain_text("data passed")
    icon = lambda s: legend.locator(f'[data-legend="{s}"] .kf-PipelineStatus-icon')  # noqa: E731
    colour = lambda s: icon(s).evaluate("el => getComputedStyle(el).color")  # noqa: E731
    assert icon("Skipped").inner_text() != icon("Cancelled").inner_text()
    assert colour("Skipped") != colour("Cancelled"), (colour("Skipped"), colour("Cancelled"))
    assert len({colour(s) for s in ("Running", "Succeeded", "Failed", "Cancelled")}) == 4

    # The values step make handed on: names, types, previews, who reads them.
    make.get_by_role("button", name="Values step make handed on").click()
    values = make.locator(".kf-PipelineValues")
    expect(values.locator("tr")).to_have_count(3, timeout=30_000)
    rows = values.locator('tr[data-name="rows"]')
    expect(rows.locator(".kf-PipelineValues-preview")).to_have_text("[1, 2, 3]")
    expect(rows.locator(".kf-PipelineValues-type")).to_contain_text("list")
    expect(rows.locator(".kf-PipelineValues-to")).to_have_text("→ use")
    matrix = values.locator('tr[data-name="matrix"]')
    expect(matrix.locator(".kf-PipelineValues-preview")).to_have_text("array shape (4, 3) dtype float32")
    expect(matrix.locator(".kf-PipelineValues-type")).to_contain_text("numpy.ndarray")
    expect(values.locator('tr[data-name="extra"] .kf-PipelineValues-preview')).to_have_text("5")
    # a click on a DAG box selects its step (its values shown) too
    dag.locator('.kf-PipelineDag-node[data-step="use"]').click()
    expect(panel.locator('.kf-PipelineStep[data-step="use"] .kf-PipelineValues')).to_contain_text("hands nothing on")
    expect(values).to_have_count(0)
    sidebar.screenshot(path=str(SCREENSHOTS / "pipeline-ux-light.png"))
    panel.locator(".kf-Pipeline-graph").screenshot(path=str(SCREENSHOTS / "pipeline-ux-dag-light.png"))
    shots(page, sidebar, "light")
    notebook.screenshot(path=str(SCREENSHOTS / "pipeline-ux-cells-light.png"))

    # Run history: a second run, listed first; the first one shown again on a click.
    first = run.get_attribute("data-run")
    panel.locator(".kf-Pipeline-run").click()
    expect(run).not_to_have_attribute("data-run", first or "", timeout=30_000)
    expect(run).to_have_attribute("data-status", "Succeeded", timeout=90_000)
    second = run.get_attribute("data-run")
    items = panel.locator(".kf-PipelineHistory-item")
    expect(items).to_have_count(2, timeout=30_000)
    expect(items.nth(0)).to_have_attribute("data-run", second or "")
    expect(items.nth(1)).to_have_attribute("data-run", first or "")
    expect(items.nth(0)).to_have_attribute("aria-pressed", "true")
    for i in range(2):
        expect(items.nth(i).locator(".kf-PipelineStatus-text")).to_have_text("Succeeded")
        expect(items.nth(i).locator(".kf-PipelineHistory-backend")).to_have_text("local")
        expect(items.nth(i).locator(".kf-PipelineHistory-time")).to_have_text(__import__("re").compile(r"\d\d:\d\d"))
    expect(panel.locator('.kf-PipelineStep[data-step="make"]')).to_have_attribute("data-status", "Cached")
    items.nth(1).click()
    expect(run).to_have_attribute("data-run", first or "")
    expect(items.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(panel.locator('.kf-PipelineStep[data-step="make"]')).to_have_attribute("data-status", "Succeeded")

    # The toolbar stays in view when the panel scrolls.
    scroller = sidebar.locator(".kf-PipelinePanelWidget")
    scrolled = scroller.evaluate("el => { el.scrollTop = el.scrollHeight; return el.scrollTop; }")
    assert scrolled > 0, "the panel should have content to scroll at this height"
    toolbar = panel.locator(".kf-Pipeline-toolbar")
    top, box = scroller.bounding_box(), toolbar.bounding_box()
    assert box["y"] >= top["y"] - 1 and box["y"] < top["y"] + 12, (top, box)
    expect(toolbar.locator(".kf-Pipeline-run")).to_be_visible()
    scroller.evaluate("el => { el.scrollTop = 0; }")

    # Dark theme: the halo of the DAG's labels is the panel's (dark) background, text AA.
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
    expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)
    halo = dag.locator(".kf-PipelineDag-label").first.evaluate("el => getComputedStyle(el).stroke")
    assert halo not in ("rgb(255, 255, 255)", "#ffffff", "white"), halo
    texts = panel.locator(
        ".kf-PipelineStatus-text, .kf-PipelineDag-legendMeaning, .kf-PipelineHistory-time, .kf-PipelineHistory-backend, "
        ".kf-PipelineStep-name, .kf-PipelineRun-backend, .kf-Pipeline-notebook"
    )
    ratios = texts.evaluate_all(CONTRAST_JS)
    assert len(ratios) > 10, ratios
    low = [r for r in ratios if r["ratio"] < 4.5]
    assert not low, low
    sidebar.screenshot(path=str(SCREENSHOTS / "pipeline-ux-dark.png"))
    panel.locator(".kf-Pipeline-graph").screenshot(path=str(SCREENSHOTS / "pipeline-ux-dag-dark.png"))
    panel.locator(".kf-PipelineRun").screenshot(path=str(SCREENSHOTS / "pipeline-ux-run-dark.png"))
    shots(page, sidebar, "dark")
    notebook.screenshot(path=str(SCREENSHOTS / "pipeline-ux-cells-dark.png"))
    errors = [e for e in page.kf_errors if "kfjupyter" in e.lower() or "pageerror" in e]
    assert not errors, errors
