"""The Kubeflow sidebar in a real JupyterLab and a real Chromium.

A notebook runs ``%%kf_train --workers 2`` twice: ``ui-train`` (a few steps, reporting a
loss) must appear in the Jobs panel, stream its logs and reach Succeeded; ``ui-cancel``
(sleeping) is cancelled from the panel and must show Cancelled. Every wait is on the
UI's state (Playwright's ``expect``), never a fixed sleep.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from .conftest import SCREENSHOTS, write_notebook

pytestmark = pytest.mark.slow

TRAIN_CELL = """\
%%kf_train --workers 2 --name ui-train
import os, time
import kfjupyter
rank = int(os.environ.get("RANK", "0"))
for step in range(6):
    print(f"rank {rank} step {step}", flush=True)
    kfjupyter.report(step=step, loss=1.0 / (step + 1) + 0.1 * rank)
    time.sleep(0.4)
print(f"rank {rank} done", flush=True)
"""

CANCEL_CELL = """\
%%kf_train --workers 2 --name ui-cancel --no-wait
import time
print("sleeping", flush=True)
time.sleep(600)
"""


def test_jobs_panel_follows_train_and_cancel(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    write_notebook(lab.root / "train.ipynb", ["%load_ext kfjupyter", TRAIN_CELL, CANCEL_CELL])

    # Auth stays real: without the token every route of the API is refused.
    for route in ("kfjupyter/api/v1/jobs", "kfjupyter/api/v1/events", "kfjupyter/api/v1/settings"):
        status, _ = lab.api(route, token="")
        assert status in (401, 403), (route, status)

    # The settings schema reaches JupyterLab's settings registry.
    status, body = lab.api("lab/api/settings/kfjupyter:plugin")
    assert status == 200, body
    properties = json.loads(body)["schema"]["properties"]
    assert properties["defaultBackend"]["enum"] == ["local", "kubernetes"]
    assert {"namespace", "defaultImage"} <= set(properties)

    page.goto(f"{lab.url}/lab/tree/train.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell")).to_have_count(3, timeout=60_000)

    # The Kubeflow sidebar: its own icon in the left bar, the Jobs panel first.
    tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]')
    expect(tab).to_be_visible()
    tab.click()
    sidebar = page.locator("#kfjupyter-sidebar")
    expect(sidebar).to_be_visible()
    expect(sidebar.locator(".kf-Sidebar-title")).to_have_text("Kubeflow")
    expect(sidebar.locator(".jp-AccordionPanel-title").first).to_contain_text("Jobs")
    expect(sidebar.locator(".kf-JobsPanel-empty")).to_contain_text("No jobs yet")
    expect(sidebar.locator('[data-connection="live"]')).to_be_visible(timeout=30_000)

    # Run the three cells (the kernel queues them while it starts).
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)
    notebook.locator(".jp-Cell").first.locator(".jp-InputPrompt").click()
    for _ in range(3):
        page.keyboard.press("Shift+Enter")

    train = sidebar.locator('.kf-JobRow[data-job-name="ui-train"]')
    expect(train).to_be_visible(timeout=60_000)
    expect(train).to_have_attribute("data-status", re.compile("Pending|Running|Succeeded"))
    expect(train).to_contain_text("2 workers")

    # The job's tab: logs per rank (streamed), the loss chart, the final state.
    train.click()
    detail = page.locator('.kf-JobDetail[data-job-id]').filter(has=page.locator(".kf-JobDetail-name", has_text="ui-train"))
    expect(detail).to_be_visible()
    logs = detail.locator(".kf-LogViewer-text")
    # a tab per log channel of the job (its ranks), once the job has reached its backend
    expect(detail.locator(".kf-RankTab")).to_have_text(["rank 0", "rank 1"], timeout=60_000)
    expect(detail.locator(".kf-LogViewer")).to_have_attribute("data-channel", "rank-0")
    expect(logs).to_contain_text("rank 0 step 0", timeout=90_000)
    expect(logs).to_contain_text("rank 0 done", timeout=90_000)
    expect(train).to_have_attribute("data-status", "Succeeded", timeout=90_000)
    expect(detail).to_have_attribute("data-status", "Succeeded")
    expect(detail.locator(".kf-LogViewer")).to_have_attribute("data-stream", "ended", timeout=30_000)
    expect(detail.locator(".kf-LogViewer-state")).to_contain_text("Succeeded")
    detail.locator('.kf-RankTab[data-rank="1"]').click()
    expect(detail.locator('.kf-LogViewer[data-channel="rank-1"][data-rank="1"] .kf-LogViewer-text')).to_contain_text(
        "rank 1 done"
    )
    expect(logs).not_to_contain_text("rank 0 step")
    chart = detail.locator('.kf-Chart[data-metric="loss"]')
    expect(chart.locator(".kf-Chart-series")).to_have_count(2, timeout=30_000)
    # a training job's metric channels are labelled by rank: the legend keeps "rank N"
    expect(chart.locator(".kf-Chart-legendItem")).to_contain_text(["rank 0: ", "rank 1: "])
    expect(detail.locator(".kf-Cancel")).to_have_count(0)
    # A hidden job tab holds no log stream open; shown again, it reads the log anew.
    tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab")
    tabs.filter(has_text="train.ipynb").click()
    expect(detail.locator(".kf-LogViewer")).to_have_attribute("data-stream", "paused")
    tabs.filter(has_text="Job ui-train").click()
    expect(detail.locator(".kf-LogViewer")).to_have_attribute("data-stream", "ended", timeout=30_000)
    expect(detail.locator('.kf-LogViewer[data-rank="1"] .kf-LogViewer-text')).to_contain_text("rank 1 done")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "job-detail.png"))

    # The second job: appears while running, cancelled from the panel.
    cancel_row = sidebar.locator('.kf-JobRow[data-job-name="ui-cancel"]')
    expect(cancel_row).to_have_attribute("data-status", "Running", timeout=90_000)
    duration = cancel_row.locator(".kf-Duration")
    expect(duration).to_have_class(re.compile("kf-mod-ticking"))
    first = duration.inner_text()
    expect(duration).not_to_have_text(first, timeout=5_000)  # ticks on the client
    cancel_row.locator(".kf-Cancel").click()
    # Cancel asks first, saying what stops and what is kept; "Keep running" keeps it
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Cancel ui-cancel?")
    expect(dialog).to_contain_text("kept")
    dialog.locator("button", has_text="Keep running").click()
    expect(dialog).to_have_count(0)
    expect(cancel_row).to_have_attribute("data-status", "Running")
    cancel_row.locator(".kf-Cancel").click()
    page.locator(".jp-Dialog button", has_text="Cancel job").click()
    expect(cancel_row).to_have_attribute("data-status", "Cancelled", timeout=60_000)
    expect(cancel_row.locator(".kf-Cancel")).to_have_count(0)

    # The jobs' records agree with the panel.
    status, body = lab.api("kfjupyter/api/v1/jobs")
    assert status == 200
    by_name = {j["name"]: j for j in json.loads(body)["jobs"]}
    assert by_name["ui-train"]["status"] == "Succeeded"
    assert by_name["ui-cancel"]["status"] == "Cancelled"

    # Filters: only the cancelled job under "Cancelled".
    status_filter = sidebar.locator('select[data-filter="status"]')
    status_filter.select_option("Cancelled")
    expect(sidebar.locator(".kf-JobRow")).to_have_count(1)
    expect(sidebar.locator(".kf-JobRow")).to_have_attribute("data-job-name", "ui-cancel")
    status_filter.select_option("")
    expect(sidebar.locator(".kf-JobRow")).to_have_count(2)
    expect(sidebar.locator(".kf-JobsPanel-count")).to_have_text("2 of 2 jobs")
    sidebar.screenshot(path=str(SCREENSHOTS / "jobs-panel.png"))
    page.screenshot(path=str(SCREENSHOTS / "lab.png"))

    # Back to the cell that started the job.
    train.locator(".kf-OpenSource").click()
    active = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-mod-active")
    expect(active).to_contain_text("--name ui-train")

    # A papermill sweep started from Python: its job tab shows the results table.
    from kfjupyter.notebook_runs import run_notebook

    write_notebook(lab.root / "grid.ipynb", ["a = 1", "import kfjupyter\nkfjupyter.report(score=a * 10)"])
    grid = nbformat.read(str(lab.root / "grid.ipynb"), as_version=4)
    grid.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(grid, str(lab.root / "grid.ipynb"))
    sweep = run_notebook(lab.root / "grid.ipynb", sweep={"a": [1, 2]}, name="ui-sweep", max_parallel=2)
    sweep_row = sidebar.locator(f'.kf-JobRow[data-job-id="{sweep.id}"]')  # its runs share its name
    expect(sweep_row).to_be_visible(timeout=60_000)
    sweep_row.click()
    sweep_tab = page.locator(f'.kf-JobDetail[data-job-id="{sweep.id}"]')
    expect(sweep_tab).to_have_attribute("data-status", "Succeeded", timeout=120_000)
    table = sweep_tab.locator(".kf-NotebookRun[data-kind='sweep'] table.kf-NotebookRun-table")
    expect(table.locator("th")).to_have_text(["#", "a", "score", "status", "output"], timeout=30_000)
    expect(table.locator('td[data-column="score"]')).to_have_text(["10", "20"])
    assert sweep.wait(timeout=60).status == "Succeeded"
    tabs.filter(has_text="train.ipynb").click()

    # The dark theme: the panel follows JupyterLab's variables.
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
    expect(page.locator("body[data-jp-theme-name='JupyterLab Dark']")).to_have_count(1)
    expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1)
    sidebar.screenshot(path=str(SCREENSHOTS / "jobs-panel-dark.png"))

    assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors
