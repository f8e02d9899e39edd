"""The Experiments panel in a real JupyterLab and a real Chromium.

Two small training runs of one experiment, with a different ``lr``, are made through the
Python API in the test's workspace. The panel lists them (the differing param as a column),
filters them with the search syntax of ``kfjupyter.runs`` (on the server), compares the two
(the param that differs, the curves of both overlaid, parallel coordinates), opens a run's
job tab from its link, and re-runs one with another ``lr``: the new run shows up through the
sidebar's job events. Every wait is on the UI's state (Playwright's ``expect``).
"""

from __future__ import annotations

import pytest

import kfjupyter

from .conftest import SCREENSHOTS, open_sidebar, show_sections

pytestmark = pytest.mark.slow

CELL = "for s in range(3):\n    kfjupyter.report(step=s, loss=lr * (3 - s))\n"


def fit(lr: float):
    return kfjupyter.train(CELL, workers=1, name="exp-fit", user_ns={"lr": lr}, experiment="ui-exp").wait(120)


def test_experiments_panel_lists_compares_and_opens_a_runs_job(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    a, b = fit(0.1), fit(0.3)
    status, _ = lab.api("kfjupyter/api/v1/runs", token="")
    assert status in (401, 403)

    page.goto(f"{lab.url}/lab?token={lab.token}")
    sidebar = open_sidebar(page)
    show_sections(sidebar, "Experiments")  # fold the others: the Experiments panel gets the height
    panel = sidebar.locator("#kfjupyter-experiments")
    expect(panel).to_be_visible()

    # The runs, newest first, with the param that differs as a column.
    rows = panel.locator(".kf-RunRow")
    expect(rows).to_have_count(2, timeout=30_000)
    expect(rows.nth(0)).to_have_attribute("data-run", b.id)
    expect(panel.get_by_label("Experiment", exact=True)).to_contain_text("ui-exp (2)")
    lr_cells = panel.locator('.kf-RunRow td[data-column="params.lr"]')
    expect(lr_cells).to_have_text(["0.3", "0.1"])
    # sort by lr on the server: ascending
    panel.locator('.kf-RunsTable-sort[data-column="params.lr"]').click()
    expect(lr_cells).to_have_text(["0.1", "0.3"])
    # the filter is kfjupyter.runs()'s, applied by the server; a wrong one says why
    search = panel.get_by_label("Filter runs")
    search.fill("metrics.loss > 0.2")
    search.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run", b.id)
    search.fill("metricz.loss > 0.2")
    search.press("Enter")
    expect(panel.locator(".kf-Experiments-error")).to_contain_text("unknown prefix")
    search.fill("")
    search.press("Enter")
    expect(rows).to_have_count(2)
    expect(panel.locator(".kf-Experiments-error")).to_have_count(0)

    # Compare the two: lr is the one param that differs; both curves, parallel coordinates.
    for run in (a, b):
        panel.get_by_label(f"Select {run.id}").check()
    panel.locator(".kf-Experiments-compare").click()
    compare = panel.locator(".kf-Compare")
    params = compare.locator(".kf-Compare-param")
    expect(params).to_have_count(1, timeout=30_000)
    expect(params.first).to_have_attribute("data-param", "lr")
    expect(params.first.locator("td")).to_have_text(["0.1", "0.3"])
    expect(compare.locator('.kf-Compare-metric[data-metric="loss"] td')).to_have_text(["0.1", "0.3"])
    expect(compare.locator(".kf-Chart-series")).to_have_count(2)
    expect(compare.locator(".kf-Parallel-line")).to_have_count(2)
    expect(compare.locator(".kf-Parallel-axis")).to_have_count(2)  # lr → loss
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(SCREENSHOTS / "experiments-compare.png"))

    # A run's job link opens the job's tab, as the Jobs panel does.
    compare.locator(f'.kf-Compare-run[data-run="{a.id}"] .kf-RunLinks-job').click()
    detail = page.locator(f'.kf-JobDetail[data-job-id="{a.id}"]')
    expect(detail).to_be_visible(timeout=30_000)
    expect(detail.locator(".kf-JobDetail-name")).to_contain_text("exp-fit")

    # Re-run the first with lr 0.05 (POST /runs/{id}/rerun): the new run arrives through
    # the job events, linked to the one it came from.
    panel.locator(".kf-Compare-close").click()
    panel.locator(f'.kf-RunRow[data-run="{a.id}"] .kf-RunRow-name').click()
    run_detail = panel.locator(f'.kf-RunDetail[data-run="{a.id}"]')
    run_detail.get_by_label("param lr").fill("0.05")
    run_detail.locator(".kf-Rerun-button").click()
    started = run_detail.locator(".kf-Rerun-job")
    expect(started).to_be_visible(timeout=30_000)
    new_id = started.inner_text()
    expect(rows).to_have_count(3, timeout=60_000)
    expect(panel.locator(f'.kf-RunRow[data-run="{new_id}"] td[data-column="params.lr"]')).to_have_text("0.05")
    kfjupyter.jobs.get(new_id).wait(120)
    assert kfjupyter.tracking.get_run(new_id).source_run == a.id
    assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors
