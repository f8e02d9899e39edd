"""The Tuning panel of the Kubeflow sidebar in a real JupyterLab and a real Chromium.

A notebook runs ``%%kf_tune --trials 6 --parallel 2 --algorithm random``: the study
``ui-tune`` must appear in the Tuning panel, its trials fill in while it runs (pushed by
the server's job events, no timer), the objective plot draw its dots and the
best-so-far line, and the study reach Succeeded with its best trial shown; a trial's log
opens on demand: the study job's channel ``trial/N`` (``GET /jobs/{id}/logs/stream``), an
ended trial's read whole once, a running trial's followed until it ends, never the old
``/studies/{id}/trials/{n}/log`` route. A second study (``ui-tune-cancel``, sleeping) is
cancelled from the panel while one of its trials' log is followed. A study started from Python (``kfjupyter.tune``) has a job tab with a log tab per
trial worker (its ``channels.logs``), streamed. Every wait is on the UI's state
(Playwright's ``expect``), never a fixed sleep.
"""

from __future__ import annotations

import json
import re

import pytest

import kfjupyter

from .conftest import SCREENSHOTS, open_sidebar, write_notebook

pytestmark = pytest.mark.slow

TUNE_CELL = """\
%%kf_tune --objective loss --trials 6 --parallel 2 --algorithm random --seed 7 --name ui-tune --out best
import time
x = kfjupyter.param("x", low=-2.0, high=2.0)
lr = kfjupyter.param("lr", low=1e-4, high=1e-1, log=True)
for step in range(4):
    time.sleep(0.3)
    print(f"x={x:.4f} step {step}", flush=True)
    kfjupyter.report(step=step, loss=(x - 0.5) ** 2 + 0.1 / (step + 1))
"""

CANCEL_CELL = """\
%%kf_tune --objective loss --trials 4 --parallel 2 --algorithm random --name ui-tune-cancel --no-wait
import time
x = kfjupyter.param("x", low=0.0, high=1.0)
time.sleep(600)
kfjupyter.report(step=0, loss=x)
"""


def test_tuning_panel_follows_a_study_and_cancels_another(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    write_notebook(lab.root / "tune.ipynb", ["%load_ext kfjupyter\nimport kfjupyter", TUNE_CELL, CANCEL_CELL])
    for route in ("kfjupyter/api/v1/studies", "kfjupyter/api/v1/studies/x/trials/0/log"):
        status, _ = lab.api(route, token="")
        assert status in (401, 403), (route, status)

    page.goto(f"{lab.url}/lab/tree/tune.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell")).to_have_count(3, timeout=60_000)

    # The Kubeflow sidebar: Jobs first, Tuning second (added through IKubeflowSidebar).
    sidebar = open_sidebar(page)
    titles = sidebar.locator(".jp-AccordionPanel-title")
    expect(titles.nth(0)).to_contain_text("Jobs")
    expect(titles.nth(1)).to_contain_text("Tuning")
    tuning = sidebar.locator("#kfjupyter-tuning")
    expect(tuning.locator(".kf-TuningPanel-empty")).to_contain_text("No tuning studies yet")
    expect(sidebar.locator('[data-connection="live"]')).to_be_visible(timeout=30_000)
    titles.nth(0).click()  # fold Jobs away: the Tuning panel gets the sidebar's height
    # a wider sidebar, as a user would drag it for the trial table
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 260, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()

    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)
    notebook.locator(".jp-Cell").first.locator(".jp-InputPrompt").click()
    for _ in range(3):
        page.keyboard.press("Shift+Enter")

    # The study appears; selected, its trials fill in while it runs.
    row = tuning.locator('.kf-StudyRow[data-study-name="ui-tune"]')
    expect(row).to_be_visible(timeout=60_000)
    row.click()
    expect(row).to_have_attribute("aria-selected", "true")
    detail = tuning.locator(".kf-StudyDetail[data-study-id]")
    expect(detail.locator(".kf-StudyDetail-name")).to_have_text("ui-tune")
    running = detail.locator('.kf-TrialRow[data-state="RUNNING"]')
    expect(detail).to_have_attribute("data-status", "Running", timeout=60_000)
    expect(running.first).to_be_visible(timeout=30_000)
    expect(detail.locator(".kf-Cancel")).to_be_visible()
    live_rows = detail.locator(".kf-TrialRow").count()
    assert 1 <= live_rows <= 6
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(SCREENSHOTS / "tuning-running.png"))

    # … to the end: six complete trials, their dots and the best-so-far line, the best trial.
    expect(row).to_have_attribute("data-status", "Succeeded", timeout=90_000)
    expect(detail).to_have_attribute("data-status", "Succeeded")
    expect(detail.locator(".kf-TrialRow")).to_have_count(6)
    expect(detail.locator('.kf-TrialRow[data-state="COMPLETE"]')).to_have_count(6)
    plot = detail.locator(".kf-ObjectivePlot")
    expect(plot).to_have_attribute("data-points", "6")
    # drawn by ECharts (SVG): the x axis is the trial number, the legend names the series
    expect(plot.locator("svg")).to_have_count(1)
    expect(plot.locator("svg text", has_text="trial").first).to_be_visible()
    expect(plot.locator("svg text", has_text="best so far")).to_have_count(1)
    assert int(plot.get_attribute("data-best-line")) >= 2
    expect(detail.locator(".kf-Cancel")).to_have_count(0)
    expect(row.locator(".kf-StudyProgress-text")).to_have_text("6/6")
    expect(detail.locator(".kf-StudyDetail-message")).to_contain_text("6/6 trials done")

    # The panel agrees with the server's study and with the notebook's --out.
    status, body = lab.api("kfjupyter/api/v1/studies")
    assert status == 200
    studies = {s["name"]: s for s in json.loads(body)["studies"]}
    best = studies["ui-tune"]["best"]
    best_row = detail.locator(".kf-TrialRow.kf-mod-best")
    expect(best_row).to_have_attribute("data-trial", str(best["number"]))
    expect(detail.locator(".kf-BestTrial")).to_have_attribute("data-trial", str(best["number"]))
    expect(detail.locator(".kf-BestTrial-head")).to_contain_text(f"trial {best['number']}")
    expect(row.locator(".kf-StudyRow-bestValue")).not_to_have_text("–")

    # Sorting by the objective puts the best trial first.
    detail.locator('th[data-column="value"] button').click()
    expect(detail.locator(".kf-TrialRow").first).to_have_attribute("data-trial", str(best["number"]))
    expect(detail.locator('th[data-column="value"]')).to_have_attribute("aria-sort", "ascending")

    # A trial's log, on demand: the study job's channel trial/N, the whole log read once.
    best_row.click()
    trial_log = detail.locator(f'.kf-TrialLog[data-trial="{best["number"]}"]')
    log = trial_log.locator(".kf-TrialLog-text")
    expect(log).to_contain_text(f"x={best['params']['x']:.4f} step 3")
    expect(log).not_to_contain_text("step 4")
    expect(trial_log).to_have_attribute("data-follow", "false")
    expect(trial_log).to_have_attribute("data-stream", "ended")
    study_id = studies["ui-tune"]["id"]
    trial_stream = f"/kfjupyter/api/v1/jobs/{study_id}/logs/stream?channel=trial%2F{best['number']}&tail=0&follow=false"
    assert any(trial_stream in u for u in requests), [u for u in requests if "/logs/stream" in u]
    sidebar.screenshot(path=str(SCREENSHOTS / "tuning-panel.png"))
    page.screenshot(path=str(SCREENSHOTS / "tuning-lab.png"))

    # The second study is cancelled from the panel: no trial is left running.
    cancel_row = tuning.locator('.kf-StudyRow[data-study-name="ui-tune-cancel"]')
    expect(cancel_row).to_be_visible(timeout=60_000)
    cancel_row.click()
    cancel_detail = tuning.locator('.kf-StudyDetail[data-study-id^="ui-tune-cancel-"]')
    expect(cancel_detail.locator('.kf-TrialRow[data-state="RUNNING"]').first).to_be_visible(timeout=60_000)
    # A running trial's log is followed (its tail, then the trial's channel stays open) …
    cancel_id = cancel_detail.get_attribute("data-study-id")
    number = cancel_detail.locator('.kf-TrialRow[data-state="RUNNING"]').first.get_attribute("data-trial")
    cancel_detail.locator(f'.kf-TrialRow[data-trial="{number}"]').click()
    running_log = cancel_detail.locator(f'.kf-TrialLog[data-trial="{number}"]')
    expect(running_log).to_have_attribute("data-follow", "true")
    expect(running_log).to_have_attribute("data-stream", "streaming", timeout=30_000)
    expect(running_log.locator(".kf-TrialLog-state")).to_have_text("live")
    followed = f"/kfjupyter/api/v1/jobs/{cancel_id}/logs/stream?channel=trial%2F{number}&tail=1000&follow=true"
    assert any(followed in u for u in requests), [u for u in requests if "/logs/stream" in u]
    cancel_detail.locator(".kf-Cancel").click()
    expect(cancel_row).to_have_attribute("data-status", "Cancelled", timeout=60_000)
    expect(cancel_detail.locator('.kf-TrialRow[data-state="CANCELLED"]').first).to_be_visible()
    # … until the trial ends: then its whole log, read once.
    expect(running_log).to_have_attribute("data-follow", "false", timeout=30_000)
    expect(running_log).to_have_attribute("data-stream", "ended", timeout=30_000)
    expect(cancel_detail.locator('.kf-TrialRow[data-state="RUNNING"]')).to_have_count(0)
    expect(cancel_detail.locator(".kf-Cancel")).to_have_count(0)
    expect(cancel_detail.locator(".kf-ObjectivePlot-empty")).to_contain_text("No trial has reported")
    expect(tuning.locator(".kf-StudyRow")).to_have_count(2)

    # The dark theme: the panel follows JupyterLab's variables.
    row.click()
    expect(detail.locator(".kf-StudyDetail-name")).to_have_text("ui-tune")
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
    expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)  # the theme has loaded
    expect(plot).to_have_attribute("data-points", "6")
    expect(plot.locator("svg text", has_text="best so far")).to_have_count(1)
    sidebar.screenshot(path=str(SCREENSHOTS / "tuning-panel-dark.png"))

    assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors
    assert re.search(r"6/6 trials done", studies["ui-tune"]["message"] or "")
    # Every trial log came through the log stream: none through the old per-trial route.
    assert not [u for u in requests if re.search(r"/studies/[^?]*/trials/[^?]*/log", u)], requests


WORKER_CELL = """\
import time
x = kfjupyter.param("x", low=0.0, high=1.0)
for step in range(3):
    print(f"worker line x={x:.4f} step {step}", flush=True)
    kfjupyter.report(step=step, loss=x)
    time.sleep(0.3)
"""


def test_a_study_job_tab_streams_its_trial_workers_logs(lab, browser_page):
    """The job tab of a tune job: one log tab per trial worker (``worker-0``, ``worker-1``),
    each streamed through its channel, to the end of the study."""
    from playwright.sync_api import expect

    page = browser_page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    study = kfjupyter.tune(
        WORKER_CELL, "loss", trials=2, parallel=2, algorithm="random", seed=5, name="ui-tune-logs",
        user_ns={}, workdir=str(lab.root),
    )  # fmt: skip
    try:
        page.goto(f"{lab.url}/lab?token={lab.token}")
        page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]').click()
        sidebar = page.locator("#kfjupyter-sidebar")
        row = sidebar.locator(f'.kf-JobRow[data-job-id="{study.id}"]')
        expect(row).to_be_visible(timeout=60_000)
        row.click()
        detail = page.locator(f'.kf-JobDetail[data-job-id="{study.id}"]')
        expect(detail).to_be_visible()
        tabs = detail.locator(".kf-RankTab")
        expect(tabs).to_have_text(["worker 0", "worker 1"], timeout=60_000)
        viewer = detail.locator(".kf-LogViewer")
        expect(viewer).to_have_attribute("data-channel", "worker-0")
        logs = detail.locator(".kf-LogViewer-text")
        expect(logs).to_contain_text("worker line x=", timeout=60_000)
        expect(detail).to_have_attribute("data-status", "Succeeded", timeout=90_000)
        expect(viewer).to_have_attribute("data-stream", "ended", timeout=30_000)
        expect(detail.locator(".kf-LogViewer-state")).to_contain_text("Succeeded")
        # The chart's series is the study's metric channel, named by its label.
        chart = detail.locator('.kf-Chart[data-metric="loss"]')
        expect(chart.locator(".kf-Chart-series")).to_have_attribute("data-label", "trials", timeout=30_000)
        expect(chart.locator(".kf-Chart-legendItem")).to_contain_text(["trials: "])
        expect(chart.locator(".kf-Chart-legend")).not_to_contain_text("rank")

        # Each worker's own lines: the trial it ran, with its x.
        done = study.wait(timeout=60)
        by_worker = {t["worker"]: t for t in done.trials}
        assert set(by_worker) == {0, 1}, done.trials
        for worker in (0, 1):
            tabs.nth(worker).click()
            expect(viewer).to_have_attribute("data-channel", f"worker-{worker}")
            x = by_worker[worker]["params"]["x"]
            expect(logs).to_contain_text(f"worker line x={x:.4f} step 2", timeout=30_000)
            expect(logs).not_to_contain_text(f"x={by_worker[1 - worker]['params']['x']:.4f}")
            expect(viewer).to_have_attribute("data-stream", "ended", timeout=30_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "tune-job-tab.png"))
        streams = [u for u in requests if f"/jobs/{study.id}/logs/stream" in u]
        assert any("channel=worker-0" in u for u in streams), streams
        assert any("channel=worker-1" in u for u in streams), streams
        assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors
    finally:
        if study.status not in ("Succeeded", "Failed", "Cancelled"):
            study.cancel()
