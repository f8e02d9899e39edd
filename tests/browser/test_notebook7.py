"""The Kubeflow sidebar in Notebook 7 (``jupyter notebook``), in a real Chromium: its shell
takes one main-area widget, and its page config has no ``serverRoot``. Clicking a job shows
its detail (in Notebook 7's ``down`` panel) and "Open cell" goes to the cell that started it.
"""

from __future__ import annotations

import os

import pytest

import kfjupyter

from .conftest import BIN, SCREENSHOTS, chromium_page, running_lab, write_notebook

pytestmark = pytest.mark.slow

BODY = """import os
print(f"hello from rank {os.environ['RANK']}")
"""


def test_notebook7_job_click_shows_the_job_and_open_cell_goes_to_its_cell(workspace, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    with running_lab(BIN, tmp_path, app="notebook") as server, chromium_page() as page:
        path = write_notebook(server.root / "nb7.ipynb", ["%load_ext kfjupyter", "x = 1", "%%kf_train --workers 2 --name nb7-train\n" + BODY])
        monkeypatch.setenv("JPY_SESSION_NAME", str(path))  # as the notebook's kernel has it
        job = kfjupyter.train(BODY, workers=2, name="nb7-train", user_ns={}).wait(timeout=60)
        assert job.record.notebook == str(path)

        page.goto(f"{server.url}/notebooks/nb7.ipynb?token={server.token}")
        expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(3, timeout=60_000)
        # View › Left Sidebar › Show Kubeflow
        page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
        page.locator(".lm-Menu-itemLabel", has_text="Left Sidebar").hover()
        page.locator(".lm-Menu-itemLabel", has_text="Show Kubeflow").click()
        sidebar = page.locator("#kfjupyter-sidebar")
        expect(sidebar).to_be_visible()
        row = sidebar.locator('.kf-JobRow[data-job-name="nb7-train"]')
        expect(row).to_have_attribute("data-status", "Succeeded", timeout=60_000)

        row.click()
        detail = page.locator(f'.kf-JobDetail[data-job-id="{job.id}"]')
        expect(detail).to_be_visible(timeout=30_000)
        expect(detail.locator(".kf-JobDetail-name")).to_contain_text("nb7-train")
        expect(detail.locator(".kf-LogViewer-text")).to_contain_text("hello from rank 0", timeout=30_000)
        box = page.locator(f"#kfjupyter-job-{job.id}").bounding_box()
        assert box and box["height"] > 250 and box["y"] + box["height"] <= 900 + 1, box  # on screen, with room
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "notebook7-job-detail.png"))

        page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").click()
        row.locator(".kf-OpenSource").click()
        active = page.locator(".jp-Notebook .jp-Cell.jp-mod-active")
        expect(active).to_contain_text("--name nb7-train", timeout=30_000)
        assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors
        assert os.environ["JPY_SESSION_NAME"] == str(path)
