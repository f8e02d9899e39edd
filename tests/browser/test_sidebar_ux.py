"""The Kubeflow sidebar as a data scientist lives in it, in a real JupyterLab and a real
Chromium: a failed job opens on the rank that failed it, with its traceback in the
cell's own line numbers; every section is usable with all of them open in a 300 px
sidebar, and a section opened for the user gets room."""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter.jobs import JobFailedError

from .conftest import SCREENSHOTS

pytestmark = pytest.mark.slow

FAILING = """import os
r = int(os.environ["RANK"])
print(f"rank {r} starting", flush=True)
if r == 1:
    1 / 0
"""


def open_sidebar(page, lab, width: int = 300):
    """JupyterLab in a 1400×900 window with the Kubeflow sidebar open, dragged to ``width`` px."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{lab.url}/lab?token={lab.token}")
    tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]')
    expect(tab).to_be_visible(timeout=60_000)
    page.wait_for_timeout(300)  # the layout JupyterLab restores (the sidebar may be open already)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    sidebar = page.locator("#kfjupyter-sidebar")
    expect(sidebar).to_be_visible(timeout=60_000)
    box = sidebar.bounding_box()
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    hbox = handle.bounding_box()
    if box and hbox:
        page.mouse.move(hbox["x"] + hbox["width"] / 2, hbox["y"] + hbox["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + width, hbox["y"] + hbox["height"] / 2, steps=5)
        page.mouse.up()
    return sidebar


def test_a_failed_job_opens_on_its_failing_rank_with_cell_lines(lab, browser_page):
    from playwright.sync_api import expect

    job = kfjupyter.train(FAILING, workers=2, name="ui-fail", user_ns={})
    with pytest.raises(JobFailedError):
        job.wait(timeout=120)
    page = browser_page
    sidebar = open_sidebar(page, lab)
    row = sidebar.locator('.kf-JobRow[data-job-name="ui-fail"]')
    expect(row).to_have_attribute("data-status", "Failed", timeout=60_000)
    expect(row.locator(".kf-JobRow-id")).to_have_text(job.id.removeprefix("ui-fail-"))
    row.click()
    detail = page.locator(f'.kf-JobDetail[data-job-id="{job.id}"]')
    expect(detail).to_be_visible(timeout=30_000)
    # the log shown first is rank 1's, the rank that failed
    expect(detail.locator('.kf-LogViewer[data-rank="1"]')).to_be_visible(timeout=30_000)
    expect(detail.locator(".kf-LogViewer-text")).to_contain_text("rank 1 starting", timeout=30_000)
    error = detail.locator(".kf-JobDetail-error")
    expect(error).to_contain_text("Cell (the %%kf_train cell), line 5, in <module>")
    expect(error).to_contain_text("ZeroDivisionError")
    assert "kf_bootstrap" not in error.inner_text() and "runpy" not in error.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "failed-job-detail.png"))


def section_heights(page) -> dict[str, float]:
    return page.evaluate(
        """() => {
             const out = {};
             const acc = document.querySelector('#kfjupyter-sidebar .lm-AccordionPanel');
             for (const title of acc.querySelectorAll(':scope > .lm-AccordionPanel-title')) {
               const content = title.nextElementSibling;
               out[title.textContent.trim()] = content && content.offsetParent ? content.getBoundingClientRect().height : 0;
             }
             return out;
           }"""
    )


def test_every_section_is_usable_with_all_open_in_a_300px_sidebar(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    sidebar = open_sidebar(page, lab, 300)
    width = sidebar.bounding_box()["width"]
    assert 280 <= width <= 320, width
    titles = sidebar.locator(".lm-AccordionPanel-title")
    expect(titles).to_have_count(6, timeout=30_000)
    # open every section
    for i in range(titles.count()):
        title = titles.nth(i)
        if title.get_attribute("aria-expanded") != "true":
            title.click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('#kfjupyter-sidebar .lm-AccordionPanel-title')]
                 .every(t => t.getAttribute('aria-expanded') === 'true')"""
    )
    page.wait_for_timeout(500)  # the accordion's own layout pass
    heights = section_heights(page)
    assert len(heights) == 6, heights
    for name, height in heights.items():
        assert height >= 90, (name, heights)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sidebar-300px-all-open.png"))

    # close two, open one again: it comes back usable, not as a strip
    titles.filter(has_text="Endpoints").click()
    titles.filter(has_text="Tuning").click()
    titles.filter(has_text="Endpoints").click()
    page.wait_for_timeout(500)
    heights = section_heights(page)
    endpoints = next(h for name, h in heights.items() if "Endpoints" in name)
    assert endpoints >= 0.3 * sum(heights.values()) - 1, heights
