"""The Endpoints panel in a real JupyterLab and a real Chromium.

A tiny scikit-learn model (iris) is registered through the Python API in the test's
workspace (the lab's KFJUPYTER_HOME). In the lab: Deploy on its version in the Models
panel, the endpoint shows Ready in the Endpoints panel (URL, version, 100 %), "Try it"
sends a V1 payload through the server and shows the answer, and Undeploy stops it.
Every wait is on the UI's state (Playwright's ``expect``), never a fixed sleep.
"""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter import serving

from .conftest import SCREENSHOTS

pytestmark = pytest.mark.slow
pytest.importorskip("kserve")
pytest.importorskip("sklearn")


def register() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    kfjupyter.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), framework="sklearn")


def test_deploy_from_models_try_it_and_undeploy(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    register()
    try:
        page.goto(f"{lab.url}/lab?token={lab.token}")
        page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]').click()
        sidebar = page.locator("#kfjupyter-sidebar")
        titles = sidebar.locator(".jp-AccordionPanel-title")
        expect(titles).to_have_count(4)
        expect(titles.nth(3)).to_contain_text("Endpoints")
        titles.nth(0).click()  # fold Jobs and Tuning
        titles.nth(1).click()
        models = sidebar.locator("#kfjupyter-models")
        expect(models).to_be_visible()
        rows = models.locator(".kf-ModelRow")
        expect(rows).to_have_count(1, timeout=30_000)
        rows.first.click()
        version = models.locator('.kf-ModelVersion[data-version="1"]')
        expect(version).to_be_visible()
        version.locator(".kf-ModelVersion-deploy").click()  # POST /endpoints: the server deploys

        endpoints = sidebar.locator("#kfjupyter-endpoints")
        expect(endpoints).to_be_visible(timeout=60_000)
        card = endpoints.locator('.kf-Endpoint[data-endpoint="iris"]')
        expect(card.locator(".kf-Endpoint-status")).to_have_text("Ready", timeout=60_000)
        expect(card.locator(".kf-Endpoint-url")).to_contain_text("http://127.0.0.1:")
        expect(card.locator(".kf-Endpoint-versions")).to_contain_text("iris:1 100%")
        assert [ep.status for ep in serving.list_endpoints()] == ["Running"]

        card.get_by_label("Payload for iris").fill('{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
        card.locator(".kf-Endpoint-send").click()
        answer = card.locator(".kf-Endpoint-answer")
        expect(answer).to_contain_text('{"predictions":[0,2]}', timeout=30_000)
        titles.nth(2).click()  # fold Models: the endpoint gets the height for the screenshot
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        sidebar.screenshot(path=str(SCREENSHOTS / "endpoints-panel.png"))

        card.locator(".kf-Endpoint-undeploy").click()
        expect(card.locator(".kf-Endpoint-status")).to_have_text("Undeployed", timeout=30_000)
        assert [ep.status for ep in serving.list_endpoints()] == ["Cancelled"]
    finally:
        for ep in serving.list_endpoints():
            if ep.status not in ("Cancelled", "Failed", "Succeeded"):
                ep.undeploy()
