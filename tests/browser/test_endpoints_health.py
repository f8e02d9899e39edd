"""The Endpoints panel's live health, in a real JupyterLab and a real Chromium.

A canary endpoint with request logging (deployed from Python: iris:1 at 70 %, a slower
canary iris:2 at 30 % that refuses some inputs) takes requests from Python; the panel
shows, per version, its traffic share, requests/s, error rate and p50/p95/p99 latency
(``GET /endpoints/{id}/stats``), and the figures move as more requests come, without a
reload. Every wait is on the UI's state (Playwright's ``expect``), never a fixed sleep.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import kfjupyter
from kfjupyter import serving

from .conftest import SCREENSHOTS, show_sections

pytestmark = pytest.mark.slow
pytest.importorskip("kserve")
pytest.importorskip("sklearn")


def SlowCanary():
    """A canary that takes 30 ms and refuses rows whose first value is over 6 (by value)."""
    import time as _time

    class SlowCanary:
        n_features_in_ = 4

        def predict(self, x):
            _time.sleep(0.03)
            x = np.asarray(x)
            if (x[:, 0] > 6).any():
                raise ValueError("out of range")
            return np.zeros(len(x), dtype=int)

    return SlowCanary()


def traffic(ep, n: int, seed: int) -> None:
    from sklearn.datasets import load_iris

    X = load_iris(return_X_y=True)[0]
    rng = np.random.default_rng(seed)
    for _ in range(n):
        try:
            ep.predict([X[rng.integers(len(X))].tolist()])
        except serving.PredictionError:
            pass


def test_per_version_traffic_latency_and_errors_live(lab, browser_page):
    from playwright.sync_api import expect
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    page = browser_page
    X, y = load_iris(return_X_y=True)
    kfjupyter.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), framework="sklearn", training_sample=X)
    kfjupyter.register_model("iris", SlowCanary(), framework="custom")
    ep = kfjupyter.deploy("iris:1", name="iris", canary="iris:2", canary_percent=30, log="all")
    try:
        traffic(ep, 40, seed=0)
        page.goto(f"{lab.url}/lab?token={lab.token}")
        page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]').click()
        sidebar = page.locator("#kfjupyter-sidebar")
        expect(sidebar.locator(".jp-AccordionPanel-title").filter(has_text="Endpoints")).to_have_count(1)
        show_sections(sidebar, "Endpoints")
        card = sidebar.locator('#kfjupyter-endpoints .kf-Endpoint[data-endpoint="iris"]')
        expect(card.locator(".kf-Endpoint-status")).to_have_text("Ready", timeout=60_000)
        health = card.get_by_label("Health of iris")
        expect(health).to_be_visible(timeout=30_000)
        primary = health.locator('.kf-Endpoint-statsrow[data-version="iris:1"]')
        canary = health.locator('.kf-Endpoint-statsrow[data-version="iris:2"]')
        expect(primary.locator(".kf-Endpoint-traffic")).to_have_text("70%")
        expect(canary.locator(".kf-Endpoint-traffic")).to_have_text("30%")
        expect(canary).to_have_attribute("data-role", "canary")
        stats = ep.stats()["versions"]
        # what the API says, the panel shows: requests/s, errors, latency per version
        for row, ref in ((primary, "iris:1"), (canary, "iris:2")):
            expect(row.locator(".kf-Endpoint-rate")).to_have_text(re.compile(r"^\d+\.\d/s$"))
            expect(row.locator(".kf-Endpoint-latency")).to_have_text(re.compile(r"^[\d.]+/[\d.]+/[\d.]+$"))
        expect(primary.locator(".kf-Endpoint-errors")).to_have_text("0%")
        assert stats["iris:2"]["error_rate"] > 0.05  # rows with a sepal over 6 cm: a third of iris
        expect(canary).to_have_class(re.compile("kf-mod-failing"))
        canary_p50 = float(canary.locator(".kf-Endpoint-latency").inner_text().split("/")[0])
        primary_p50 = float(primary.locator(".kf-Endpoint-latency").inner_text().split("/")[0])
        assert canary_p50 > primary_p50 + 20  # the canary's 30 ms, judged against the primary
        expect(primary.locator(".kf-Endpoint-drift")).to_contain_text("no drift")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        sidebar.screenshot(path=str(SCREENSHOTS / "endpoints-health.png"))

        # live: more requests, and the figures follow without a reload
        before = primary.locator(".kf-Endpoint-rate").inner_text()
        traffic(ep, 120, seed=1)
        expect(primary.locator(".kf-Endpoint-rate")).not_to_have_text(before, timeout=20_000)
        requests = ep.stats()["versions"]["iris:1"]["requests"]
        expect(primary.locator(".kf-Endpoint-rate")).to_have_text(f"{requests / 60:.1f}/s", timeout=20_000)

        ep.undeploy()
        expect(card.locator(".kf-Endpoint-status")).to_have_text("Undeployed", timeout=30_000)
        expect(health).to_have_count(0)  # nothing read of an endpoint that serves nothing
        assert not [e for e in page.kf_errors if "stats" in e], page.kf_errors
    finally:
        for e in serving.list_endpoints():
            if e.status not in ("Cancelled", "Failed", "Succeeded"):
                e.undeploy()
