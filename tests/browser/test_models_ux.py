"""The Models and Endpoints panels as a data scientist lives in them (issue 13, points
1, 2, 5, 7, 10) in a real JupyterLab and a real Chromium.

- Live: with the panel open, a model registered into the lab's workspace (from this
  process: another process than the server, as a kernel is) shows up without a reload
  or a click: the server's ``event: model`` on ``GET /events``; then the refresh button.
- The quickstart's own model, a PyTorch state dict: Deploy is disabled before trying,
  with the server's reason (deploy's own preflight) as its tooltip and under the card.
- A model whose server fails to start: the endpoint row reads Failed with a readable
  reason (the exception's line), the traceback folded, the empty log explained.
- The card at 300 px: every version action inside the sidebar; "1 version";
  the comparison bars print their values; screenshots light and dark at 300 and 800 px.
"""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter import registry, serving
from kfjupyter.serving.api import servable

from .conftest import SCREENSHOTS, open_sidebar, show_sections

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("kserve")


def bomb():
    """A custom model whose unpickling fails in the model server (its class travels by value)."""

    def _boom(self, state):
        raise RuntimeError("this model cannot be loaded: boom")

    cls = type("Bomb", (), {"__setstate__": _boom, "__module__": "__main__"})
    obj = cls()
    obj.x = 1
    return obj


def set_sidebar_width(page, sidebar, width: int) -> None:
    """Drag the left area's split handle so the sidebar is ``width`` px wide."""
    from playwright.sync_api import expect

    page.keyboard.press("Escape")  # no menu left open over the handle
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    handle.hover()
    box = handle.bounding_box()
    left = sidebar.bounding_box()["x"]
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(left + width, y, steps=6)
    page.mouse.up()
    expect(sidebar).to_be_visible()
    got = sidebar.bounding_box()["width"]
    assert abs(got - width) < 16, f"sidebar {got} px wide, not {width} (handle at {box}, sidebar left {left})"


def set_theme(page, name: str) -> None:
    from playwright.sync_api import expect

    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text(name, exact=True).click()
    light = "false" if "Dark" in name else "true"
    expect(page.locator(f"body[data-jp-theme-light='{light}']")).to_have_count(1)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)  # the theme's splash gone


def test_models_live_state_dict_explained_failed_endpoint_reason_narrow_card(lab, browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    page.set_viewport_size({"width": 1800, "height": 1000})  # room for an 800 px sidebar
    page.goto(f"{lab.url}/lab?token={lab.token}")
    sidebar = open_sidebar(page)
    show_sections(sidebar, "Models")
    models = sidebar.locator("#kfjupyter-models")
    expect(models.locator(".kf-TuningPanel-empty")).to_contain_text("No registered models yet", timeout=30_000)
    rows = models.locator(".kf-ModelRow")

    # 2: live. The quickstart's model: a state dict saved to a file, registered elsewhere
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1)).state_dict(), path)
    registry.register_model("quickstart-regressor", str(path), description="MLP regressor from the quickstart",
                            metrics={"loss": 0.0312}, params={"lr": 0.02})  # fmt: skip
    expect(rows).to_have_count(1, timeout=20_000)  # no reload, no click: the model event
    expect(rows.first.locator(".kf-ModelRow-name")).to_have_text("quickstart-regressor")

    # 1: Deploy offered only where it can work; the reason before trying
    rows.first.click()
    detail = models.locator(".kf-ModelDetail")
    expect(detail.locator(".kf-ModelDetail-count")).to_have_text("1 version")
    card = detail.locator('.kf-VersionCard[data-version="1"]')
    expect(card.locator(".kf-VersionCard-description")).to_have_text("MLP regressor from the quickstart")
    expect(card.locator(".kf-VersionCard-created")).not_to_have_text("–")
    deploy = card.locator(".kf-ModelVersion-deploy")
    expect(deploy).to_be_disabled()
    expect(deploy).to_have_attribute("title", servable("quickstart-regressor:1")["reason"])
    expect(card.locator(".kf-VersionCard-why")).to_contain_text("PyTorch state dict")
    expect(card.locator(".kf-VersionCard-why")).to_contain_text("model_class=")
    expect(card.locator(".kf-VersionCard-params")).to_contain_text("lr=0.02")
    expect(card.locator(".kf-VersionCard-size")).to_contain_text("B")
    assert not serving.list_endpoints()  # nothing was tried
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(SCREENSHOTS / "models-state-dict-deploy-explained.png"))

    # a second version while the card is open: the table and the count follow by themselves
    registry.register_model("quickstart-regressor", torch.nn.Sequential(torch.nn.Linear(4, 1)),
                            metrics={"loss": 0.0298}, params={"lr": 0.05})  # fmt: skip
    expect(detail.locator(".kf-ModelVersion")).to_have_count(2, timeout=20_000)
    expect(detail.locator(".kf-ModelDetail-count")).to_have_text("2 versions")
    expect(detail.locator(".kf-ModelChart-value")).to_have_text(["0.0312", "0.0298"])  # values printed
    expect(detail.locator(".kf-ModelVersions th")).to_contain_text(["lr"])  # the param that differs
    card2 = detail.locator('.kf-VersionCard[data-version="2"]')  # the newest is selected
    expect(card2.locator(".kf-ModelVersion-deploy")).to_be_enabled()  # a whole module: servable

    # the refresh button re-reads (an edit that is no model event's business to wait for)
    registry.update_model("quickstart-regressor", description="MLP regressor, retrained")
    models.locator(".kf-ModelsPanel-refresh").click()
    expect(detail.locator(".kf-ModelDetail-description")).to_have_text("MLP regressor, retrained")

    # 7: at 300 px every version action is inside the sidebar (they wrap)
    for width in (300, 800):
        set_sidebar_width(page, sidebar, width)
        panel = sidebar.bounding_box()
        for button in card2.locator(".kf-VersionCard-actions button").all():
            expect(button).to_be_visible()
            box = button.bounding_box()
            assert box["x"] >= panel["x"] - 1 and box["x"] + box["width"] <= panel["x"] + panel["width"] + 1, (width, box)
        for theme in ("JupyterLab Light", "JupyterLab Dark"):
            set_theme(page, theme)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shade = "dark" if "Dark" in theme else "light"
            sidebar.screenshot(path=str(SCREENSHOTS / f"models-card-{width}-{shade}.png"))
        set_theme(page, "JupyterLab Light")

    # 1: a server that fails to start: Failed, with its reason readable on the row
    registry.register_model("bomb", bomb(), framework="custom")
    with pytest.raises(Exception, match="before it was ready"):
        kfjupyter.deploy("bomb:1", name="bomb")
    show_sections(sidebar, "Endpoints")
    endpoints = sidebar.locator("#kfjupyter-endpoints")
    row = endpoints.locator('.kf-Endpoint[data-endpoint="bomb"]')
    expect(row.locator(".kf-Endpoint-status")).to_have_text("Failed", timeout=30_000)
    reason = row.locator(".kf-Endpoint-reason .kf-Failure-summary")
    expect(reason).to_contain_text("before it was ready")
    expect(reason).to_contain_text("RuntimeError: this model cannot be loaded: boom")
    expect(reason).not_to_contain_text("Traceback")  # the traceback is folded, not the paragraph
    expect(row.locator(".kf-Failure-details")).to_have_count(1)
    row.locator(".kf-Endpoint-logs").click()
    expect(row.locator(".kf-Endpoint-log")).to_contain_text("the reason is above")  # explained, not blank
    for width in (300, 800):
        set_sidebar_width(page, sidebar, width)
        for theme in ("JupyterLab Light", "JupyterLab Dark"):
            set_theme(page, theme)
            shade = "dark" if "Dark" in theme else "light"
            sidebar.screenshot(path=str(SCREENSHOTS / f"endpoints-failed-{width}-{shade}.png"))
    errors = [e for e in page.kf_errors if "kfjupyter" in e.lower() or "pageerror" in e]
    assert not errors, errors
