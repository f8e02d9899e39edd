"""REST for the Pipeline panel: a step's handed-on values
(GET /pipelines/runs/{id}/steps/{step}/outputs), the notebook's run history
(GET /pipelines/runs?path=) and Run on Kubeflow Pipelines without an endpoint (a 400 saying
what to set, nothing recorded)."""

from __future__ import annotations

import asyncio
import json
import time

from server_support import *  # noqa: F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, check_schema, error_of, get_json

pytestmark = AUTH_WARNINGS_ARE_ERRORS


def notebook(cells):
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags}, "outputs": [], "source": src}
            for i, (tags, src) in enumerate(cells)
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


async def post(jp_fetch, *parts, body):
    response = await jp_fetch(API, *parts, method="POST", body=json.dumps(body), raise_error=False, request_timeout=60)
    return response.code, json.loads(response.body)


async def finished(jp_fetch, run_id):
    deadline = time.monotonic() + 120
    while True:
        run = await get_json(jp_fetch, "pipelines", "runs", run_id)
        if run["status"] in ("Succeeded", "Failed", "Cancelled"):
            return run
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)


@async_test
async def test_step_outputs_route_and_history(jp_fetch, jp_root_dir):
    (jp_root_dir / "flow.ipynb").write_text(json.dumps(notebook([(["step:a"], "xs = [1, 2]\nname = 'n'"), (["step:b"], "print(xs, name)")])))
    code, run = await post(jp_fetch, "pipelines", "runs", body={"path": "flow.ipynb"})
    assert code == 201, run
    run = await finished(jp_fetch, run["id"])
    assert run["status"] == "Succeeded", run
    out = await get_json(jp_fetch, "pipelines", "runs", run["id"], "steps", "a", "outputs")
    check_schema(out, "StepOutputs")
    assert out["step"] == "a" and out["backend"] == "local"
    by = {o["name"]: o for o in out["outputs"]}
    assert by["xs"]["preview"] == "[1, 2]" and by["xs"]["type"] == "list" and by["xs"]["to"] == ["b"]
    assert by["name"]["preview"] == "'n'" and by["name"]["available"] is True
    code, err = await error_of(jp_fetch, "pipelines", "runs", run["id"], "steps", "nope", "outputs")
    assert code == 404 and err["reason"] == "StepNotFound"
    code, second = await post(jp_fetch, "pipelines", "runs", body={"path": "flow.ipynb"})
    second = await finished(jp_fetch, second["id"])
    listed = await get_json(jp_fetch, "pipelines", "runs", path="flow.ipynb")
    assert [(r["id"], r["backend"]) for r in listed["runs"]] == [(second["id"], "local"), (run["id"], "local")]


@async_test
async def test_run_on_kfp_without_an_endpoint_is_a_400_saying_what_to_set(jp_fetch, jp_root_dir, monkeypatch):
    monkeypatch.delenv("KFJUPYTER_KFP_URL", raising=False)
    monkeypatch.delenv("KFP_HOST", raising=False)
    (jp_root_dir / "k.ipynb").write_text(json.dumps(notebook([(["step:a"], "a = 1")])))
    code, err = await post(jp_fetch, "pipelines", "runs", body={"path": "k.ipynb", "backend": "kubernetes"})
    assert code == 400, err
    assert "no Kubeflow Pipelines endpoint: set KFJUPYTER_KFP_URL" in err["message"]
    assert (await get_json(jp_fetch, "pipelines", "runs", path="k.ipynb"))["runs"] == []
