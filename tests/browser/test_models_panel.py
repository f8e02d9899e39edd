"""The Models panel of the Kubeflow sidebar in a real JupyterLab and a real Chromium.

Two models are registered through the Python API in the test's workspace (the lab's
KFJUPYTER_HOME): ``iris`` v1..v3 with ``production`` on v1, and ``digits`` v1..v2. In the
lab: the Models section lists both, the search box narrows to ``iris``, its versions
show their metrics side by side and the comparison chart, and ``production`` is moved
from v1 to v2 from the panel: the chips and the alias history follow, and the server
agrees. Every wait is on the UI's state (Playwright's ``expect``), never a fixed sleep.
"""

from __future__ import annotations

import json

import pytest

from kfjupyter import registry

from .conftest import SCREENSHOTS, open_sidebar

pytestmark = pytest.mark.slow


def register(tmp_path) -> str:
    """The models; digits v2 comes from a real (finished) job: its lineage. The job's id."""
    import kfjupyter

    weights = tmp_path / "weights.txt"
    weights.write_text("w = 1\n")
    for acc in (0.81, 0.9, 0.95):
        registry.register_model("iris", str(weights), framework="custom", metrics={"accuracy": acc, "loss": 1 - acc})
    registry.register_model("digits", str(weights), framework="custom", metrics={"accuracy": 0.7})
    job = kfjupyter.train("print('training digits')", name="digits-train", user_ns={})
    job.wait(60)
    registry.register_model("digits", str(weights), framework="custom", metrics={"accuracy": 0.99}, job=job)
    registry.set_alias("iris", "production", 1)
    return job.id


def test_models_panel_lists_searches_and_moves_an_alias(lab, browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    job_id = register(tmp_path)
    status, _ = lab.api("kfjupyter/api/v1/models", token="")
    assert status in (401, 403)

    page.goto(f"{lab.url}/lab?token={lab.token}")
    sidebar = open_sidebar(page)
    titles = sidebar.locator(".jp-AccordionPanel-title")
    expect(titles.nth(2)).to_contain_text("Models")
    titles.nth(0).click()  # fold Jobs and Tuning: the Models panel gets the height
    titles.nth(1).click()
    models = sidebar.locator("#kfjupyter-models")
    expect(models).to_be_visible()

    rows = models.locator(".kf-ModelRow")
    expect(rows).to_have_count(2, timeout=30_000)
    expect(rows.filter(has_text="iris").locator(".kf-AliasChip")).to_have_text("@production:v1")

    # search on the server: "iri" leaves iris
    models.get_by_label("Search models").fill("iri")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".kf-ModelRow-name")).to_have_text("iris")

    # its versions: metrics side by side, the comparison chart
    rows.first.click()
    detail = models.locator(".kf-ModelDetail")
    versions = detail.locator(".kf-ModelVersion")
    expect(versions).to_have_count(3)
    expect(detail.locator(".kf-ModelVersions th")).to_contain_text(["v", "aliases", "accuracy", "loss"])
    expect(versions.nth(0)).to_have_attribute("data-version", "3")
    expect(versions.nth(0)).to_contain_text("0.95")
    expect(detail.locator(".kf-ModelChart-bar")).to_have_count(3)
    expect(detail.locator('.kf-ModelVersion[data-version="1"] .kf-AliasChip')).to_have_text("@production")
    # serving is wired: the selected version's card (the newest first) has Deploy, enabled
    expect(detail.locator(".kf-ModelDetail-count")).to_have_text("3 versions")
    expect(detail.locator('.kf-VersionCard[data-version="3"] .kf-ModelVersion-deploy')).to_be_enabled()
    versions.nth(2).click()  # another version's card
    expect(detail.locator('.kf-VersionCard[data-version="1"] .kf-ModelVersion-deploy')).to_be_enabled()
    expect(detail.locator(".kf-AliasHistory li")).to_have_count(1)

    # move production from v1 to v2
    detail.get_by_label("Alias", exact=True).fill("production")
    detail.get_by_label("Version for the alias").select_option("2")
    detail.locator(".kf-AliasForm-set").click()
    dialog = page.locator(".jp-Dialog")  # moving an alias says what it changes first
    expect(dialog).to_contain_text("Move production from v1 to v2?")
    expect(dialog).to_contain_text("No endpoint serves v1.")
    dialog.locator(".jp-mod-accept").click()
    expect(detail.locator('.kf-ModelVersion[data-version="2"] .kf-AliasChip')).to_have_text("@production")
    expect(detail.locator('.kf-ModelVersion[data-version="1"] .kf-AliasChip')).to_have_count(0)
    history = detail.locator(".kf-AliasHistory li")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("production: v1 → v2")
    expect(rows.first.locator(".kf-AliasChip")).to_have_text("@production:v2")

    status, body = lab.api("kfjupyter/api/v1/models/iris/aliases")
    assert status == 200
    data = json.loads(body)
    assert data["aliases"] == {"production": 2}
    assert [(e["from_version"], e["to_version"]) for e in data["history"]] == [(None, 1), (1, 2)]
    assert registry.get_version("iris", alias="production").number == 2

    # a wider sidebar for the screenshot, as a user would drag it for the table
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    expect(detail.locator(".kf-ModelChart")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sidebar.screenshot(path=str(SCREENSHOTS / "models-panel.png"))

    # lineage: digits v2's job opens in its tab, as from the Jobs panel
    models.get_by_label("Search models").fill("digits")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".kf-ModelRow-name")).to_have_text("digits")
    rows.first.click()
    expect(detail.locator(".kf-ModelDetail-title")).to_have_text("digits")
    link = detail.locator('.kf-ModelVersion[data-version="2"] .kf-ModelLineage-job')
    expect(link).to_have_text("digits-train")
    link.click()
    expect(page.locator(f'.kf-JobDetail[data-job-id="{job_id}"]')).to_be_visible(timeout=20_000)
    models.get_by_label("Search models").fill("iri")  # back to iris for the dark screenshot
    expect(rows.first.locator(".kf-ModelRow-name")).to_have_text("iris")
    expect(rows).to_have_count(1)
    rows.first.click()
    expect(detail.locator(".kf-ModelDetail-title")).to_have_text("iris")

    # the dark theme: the panel follows JupyterLab's variables
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
    expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)
    expect(detail.locator(".kf-ModelChart-bar")).to_have_count(3)
    sidebar.screenshot(path=str(SCREENSHOTS / "models-panel-dark.png"))
    errors = [e for e in page.kf_errors if "kfjupyter" in e.lower() or "pageerror" in e]
    assert not errors, errors
