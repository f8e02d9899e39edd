"""Every panel of the Kubeflow sidebar and a job's tab, in JupyterLab's light and dark
themes, at 300 px and 800 px: no text below WCAG AA contrast, checked by axe-core (the
accessibility engine) in a real Chromium; screenshots of each are kept as artefacts."""

from __future__ import annotations

import json

import pytest

import kfjupyter
from kfjupyter import registry

from .conftest import REPO, SCREENSHOTS
from .test_sidebar_ux import open_sidebar

pytestmark = pytest.mark.slow

AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"

TRAIN = """import os
import kfjupyter
r = int(os.environ["RANK"])
for step in range(4):
    kfjupyter.report(step=step, loss=1.0 / (step + 1) + 0.1 * r)
print("rank", r, "done", flush=True)
"""

TRIAL = """x = kfjupyter.param("x", low=-2.0, high=2.0)
for step in range(3):
    kfjupyter.report(step=step, loss=(x - 1) ** 2 + 1 / (step + 1))
"""


def contrast_violations(page, selector: str) -> list[str]:
    """axe-core's color-contrast rule over the elements under ``selector``: each failing
    node with its colours and ratio."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async (selector) => {
             const r = await axe.run({ include: [[selector]] }, { runOnly: ['color-contrast'], resultTypes: ['violations'] });
             return r.violations.flatMap(v => v.nodes.map(n => ({ target: n.target.join(' '), summary: n.failureSummary,
                                                                  html: n.html.slice(0, 160) })));
           }""",
        selector,
    )
    return [json.dumps(v) for v in result]


def set_theme(page, dark: bool) -> None:
    from playwright.sync_api import expect

    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark" if dark else "JupyterLab Light", exact=True).click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false" if dark else "true", timeout=30_000)
    page.wait_for_timeout(600)  # the theme's CSS applied and panels drawn again


def test_every_panel_has_readable_text_in_light_and_dark_at_300_and_800px(lab, browser_page, tmp_path):
    from playwright.sync_api import expect

    job = kfjupyter.train(TRAIN, workers=2, name="theme-train", user_ns={}).wait(timeout=120)
    study = kfjupyter.tune(TRIAL, "loss", trials=3, parallel=1, seed=1, name="theme-tune", user_ns={}, wait=True)
    weights = tmp_path / "weights.txt"
    weights.write_text("w = 1\n")
    registry.register_model("theme-model", str(weights), framework="custom", metrics={"accuracy": 0.9}, job=job)
    registry.register_model("theme-model", str(weights), framework="custom", metrics={"accuracy": 0.95})

    page = browser_page
    problems: dict[str, list[str]] = {}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (300, 800):
        sidebar = open_sidebar(page, lab, width)
        expect(sidebar.locator(f'.kf-JobRow[data-job-id="{job.id}"]')).to_be_visible(timeout=60_000)
        titles = sidebar.locator(".lm-AccordionPanel-title")
        for i in range(titles.count()):
            if titles.nth(i).get_attribute("aria-expanded") != "true":
                titles.nth(i).click()
        sidebar.locator(f'.kf-JobRow[data-job-id="{job.id}"]').click()
        expect(page.locator(f'.kf-JobDetail[data-job-id="{job.id}"]')).to_be_visible(timeout=30_000)
        expect(page.locator(".kf-LogViewer-text").first).to_contain_text("done", timeout=30_000)
        for dark in (False, True):
            set_theme(page, dark)
            theme = "dark" if dark else "light"
            for name, selector in (("sidebar", "#kfjupyter-sidebar"), ("job-tab", f'.kf-JobDetail[data-job-id="{job.id}"]')):
                page.locator(selector).screenshot(path=str(SCREENSHOTS / f"theme-{name}-{theme}-{width}px.png"))
                found = contrast_violations(page, selector)
                if found:
                    problems[f"{name} {theme} {width}px"] = found
        set_theme(page, False)
    assert study.status == "Succeeded", study.error
    assert not problems, "text below WCAG AA contrast:\n" + "\n".join(
        f"{where}:\n  " + "\n  ".join(found[:8]) for where, found in problems.items()
    )
