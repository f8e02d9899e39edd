"""The Endpoints panel in a real JupyterLab and a real Chromium.

A tiny scikit-learn model (iris) is registered through the Python API in the test's
workspace (the lab's KFJUPYTER_HOME). In the lab: Deploy on its version in the Models
panel, the endpoint shows Ready in the Endpoints panel (URL, version, 100 %), "Try it"
sends a V1 payload through the server and shows the answer, and Undeploy stops it. Then
a canary endpoint (deployed from Python) shows its split, streams its servers' logs (the
endpoint job's channels server/primary, server/canary, server/router), is promoted and
rolled back from the panel.
Every wait is on the UI's state (Playwright's ``expect``) or on the endpoint's processes,
never a fixed sleep.
"""

from __future__ import annotations

import json
import re
import time

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
    kfjupyter.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), framework="sklearn", input_example=X[:2])


def wait_stopped(name: str, timeout: float = 30) -> None:
    """The endpoint's processes are gone (the record reads Cancelled before they stop)."""
    from kfjupyter.runtime.processes import alive

    info = serving.get_endpoint(name).record.backend_info
    procs = info["servers"] + ([info["router"]] if info.get("router") else [])
    deadline = time.monotonic() + timeout
    while any(alive(p["pid"], p.get("create_time")) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p["pid"], p.get("create_time")) for p in procs), f"{name} still has processes"


def test_deploy_from_models_try_it_undeploy_and_canary_controls(lab, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    register()
    try:
        page.goto(f"{lab.url}/lab?token={lab.token}")
        page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]').click()
        sidebar = page.locator("#kfjupyter-sidebar")
        titles = sidebar.locator(".jp-AccordionPanel-title")
        expect(titles.filter(has_text="Endpoints")).to_have_count(1)
        names = [t.strip().title() for t in titles.all_inner_texts()]  # CSS shows them upper-case
        assert {"Jobs", "Tuning", "Models", "Endpoints"} <= set(names), names
        for i, name in enumerate(names):  # fold all but Models and Endpoints
            if name not in ("Models", "Endpoints") and titles.nth(i).get_attribute("aria-expanded") == "true":
                titles.nth(i).click()
        models = sidebar.locator("#kfjupyter-models")
        expect(models).to_be_visible()
        rows = models.locator(".kf-ModelRow")
        expect(rows).to_have_count(1, timeout=30_000)
        rows.first.click()
        version = models.locator('.kf-ModelVersion[data-version="1"]')
        expect(version).to_be_visible()
        # what to send it: the signature and the input example the registration recorded
        version_card = models.locator('.kf-VersionCard[data-version="1"]')
        expect(version_card.locator(".kf-VersionCard-signature")).to_have_text("float64[-1, 4] -> int64[-1]")
        expect(version_card.locator(".kf-VersionCard-example")).to_contain_text("[[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2]]")
        version_card.locator(".kf-ModelVersion-deploy").click()  # POST /endpoints

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
        expect(answer).to_contain_text('"predictions": [', timeout=30_000)  # formatted JSON
        text = answer.inner_text()
        assert json.loads(text[text.index("{"):]) == {"predictions": [0, 2]} and "\n  " in text
        titles.filter(has_text="Models").click()  # fold Models: the endpoint gets the height for the screenshot
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        sidebar.screenshot(path=str(SCREENSHOTS / "endpoints-panel.png"))

        # Undeploy asks first, saying what stops; Cancel leaves it serving
        card.locator(".kf-Endpoint-undeploy").click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text("Undeploy iris?")
        expect(dialog).to_contain_text("stops serving iris:1 100%")
        dialog.locator(".jp-mod-reject").click()
        expect(dialog).to_have_count(0)
        assert [ep.status for ep in serving.list_endpoints()] == ["Running"]
        card.locator(".kf-Endpoint-undeploy").click()
        page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(card.locator(".kf-Endpoint-status")).to_have_text("Undeployed", timeout=30_000)
        assert [ep.status for ep in serving.list_endpoints()] == ["Cancelled"]
        wait_stopped("iris")

        # a canary endpoint (deployed from Python, seen by the panel): promote, then roll back
        register()  # iris:2
        canary_ep = kfjupyter.deploy("iris:1", name="canary", canary="iris:2", canary_percent=30)
        for _ in range(40):  # access-log lines: a log longer than its box, to see it follow the end
            canary_ep.predict([[5.1, 3.5, 1.4, 0.2]])
        card = endpoints.locator('.kf-Endpoint[data-endpoint="canary"]')
        expect(card.locator(".kf-Endpoint-status")).to_have_text("Ready", timeout=60_000)
        versions = card.locator(".kf-Endpoint-version")
        expect(versions).to_have_text(["iris:1 70%", "iris:2 30% canary"])
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        # the log, streamed while the endpoint serves: a tab per server (the job's channels)
        card.locator(".kf-Endpoint-logs").click()
        expect(card.locator(".kf-Endpoint-following")).to_be_visible()
        log = card.locator(".kf-Endpoint-log")
        expect(log).to_have_attribute("data-channel", "server/primary")
        expect(log.locator(".kf-RankTab")).to_have_text(["primary", "canary", "router"])
        expect(card.locator(".kf-Endpoint-logtext")).not_to_be_empty(timeout=30_000)
        # "following": the newest line is in view (the log scrolls as it follows)
        page.wait_for_function(
            "() => { const el = document.querySelector('.kf-Endpoint[data-endpoint=\"canary\"] .kf-Endpoint-logtext');"
            " return el && el.scrollHeight > el.clientHeight && el.scrollHeight - el.scrollTop - el.clientHeight < 30; }",
            timeout=30_000,
        )
        log.locator('.kf-RankTab[data-channel="server/canary"]').click()
        expect(log).to_have_attribute("data-channel", "server/canary")
        expect(log).to_have_attribute("data-stream", "streaming", timeout=30_000)
        expect(card.locator(".kf-Endpoint-logtext")).not_to_be_empty()
        sidebar.screenshot(path=str(SCREENSHOTS / "endpoints-logs.png"))

        card.locator(".kf-Endpoint-promote").click()
        expect(dialog).to_contain_text("iris:2 takes all the traffic of canary (now 30%)")
        dialog.locator(".jp-mod-accept").click()
        expect(versions).to_have_text(["iris:2 100%"], timeout=30_000)
        expect(card.locator(".kf-Endpoint-promote")).to_have_count(0)
        # the canary is the primary now: its channel is gone, the log shows the primary's
        expect(log).to_have_attribute("data-channel", "server/primary", timeout=30_000)
        expect(log.locator('.kf-RankTab[data-channel="server/canary"]')).to_have_count(0)
        expect(card.locator(".kf-Endpoint-logtext")).not_to_be_empty()
        assert serving.get_endpoint("canary").versions == {"iris:2": 100}
        card.locator(".kf-Endpoint-rollback").click()  # undo the promote: iris:1 comes back up
        expect(dialog).to_contain_text("goes back to iris:1")
        dialog.locator(".jp-mod-accept").click()
        busy = card.locator(".kf-Endpoint-busy")  # ~3 s: a clear busy state, every action waits
        expect(busy).to_contain_text("Rolling back")
        expect(card.locator(".kf-Endpoint-rollback")).to_be_disabled()
        expect(versions).to_have_text(["iris:1 100%"], timeout=60_000)
        expect(busy).to_have_count(0, timeout=30_000)  # until the server answered
        assert serving.get_endpoint("canary").versions == {"iris:1": 100}
        expect(card.locator(".kf-Endpoint-error")).to_have_count(0)

        card.locator(".kf-Endpoint-undeploy").click()
        dialog.locator(".jp-mod-accept").click()
        expect(card.locator(".kf-Endpoint-status")).to_have_text("Undeployed", timeout=30_000)
        expect(card.locator(".kf-Endpoint-following")).to_have_count(0)  # stopped following
        expect(log).to_have_attribute("data-stream", "ended", timeout=30_000)  # its last lines, once
        expect(card.locator(".kf-Endpoint-logtext")).not_to_be_empty()
        wait_stopped("canary")
        streams = [u for u in requests if "/logs/stream?" in u]
        assert any("channel=server%2Fprimary" in u and "follow=true" in u for u in streams), streams
        assert any("channel=server%2Fcanary" in u for u in streams), streams
        assert any("channel=server%2Fprimary" in u and "follow=false" in u for u in streams), streams
        assert not [u for u in requests if re.search(r"/endpoints/[^/?]+/logs", u)], requests  # no poll
    finally:
        for ep in serving.list_endpoints():
            if ep.status not in ("Cancelled", "Failed", "Succeeded"):
                ep.undeploy()
