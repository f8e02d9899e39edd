"""REST of papermill runs from JupyterLab (/notebook-runs…) on a real jupyter server: a
notebook's parameters (its `parameters` cell, or Kale's `pipeline-parameters`), a sweep
started by POST and its results table, its run's output opened under the root, and the
refusals (a value of the wrong type named, a link, an unknown job) with nothing started."""

from __future__ import annotations

import asyncio
import json
import os
import time

from server_support import *  # noqa: F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, check_schema, error_of, get_json

import kfjupyter

pytestmark = AUTH_WARNINGS_ARE_ERRORS


def write(root, name, cells):
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags},
                   "outputs": [], "source": src} for i, (tags, src) in enumerate(cells)],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps(nb))
    return name


async def post(jp_fetch, *parts, body) -> tuple[int, dict]:
    response = await jp_fetch(API, *parts, method="POST", body=json.dumps(body), raise_error=False, request_timeout=60)
    return response.code, json.loads(response.body)


@async_test
async def test_parameters_of_a_notebook_and_a_kale_notebook(jp_fetch, jp_root_dir):
    write(jp_root_dir, "sub/p.ipynb", [(["parameters"], "lr = 0.1\nname = 'x'")])
    found = await get_json(jp_fetch, "notebook-runs", "parameters", path="sub/p.ipynb")
    assert (found["cell"], found["tag"]) == (0, "parameters")
    assert [(p["name"], p["value"], p["type"]) for p in found["parameters"]] == [("lr", 0.1, "float"), ("name", "x", "str")]
    write(jp_root_dir, "kale.ipynb", [(["pipeline-parameters"], "C = 2")])
    found = await get_json(jp_fetch, "notebook-runs", "parameters", path="kale.ipynb")
    assert found["tag"] == "pipeline-parameters" and found["parameters"][0]["name"] == "C"
    code, body = await error_of(jp_fetch, "notebook-runs", "parameters", path="missing.ipynb")
    assert (code, body["reason"]) == (404, "NotebookNotFound")
    os.symlink(jp_root_dir / "kale.ipynb", jp_root_dir / "link.ipynb")
    code, body = await error_of(jp_fetch, "notebook-runs", "parameters", path="link.ipynb")
    assert code == 400 and "link" in body["message"]


@async_test
async def test_bad_values_are_refused_naming_them_and_nothing_starts(jp_fetch, jp_root_dir):
    write(jp_root_dir, "t.ipynb", [(["parameters"], "lr = 0.1")])
    code, body = await post(jp_fetch, "notebook-runs", body={"path": "t.ipynb", "sweep": {"lr": [0.1, "fast"]}})
    assert code == 400 and body["reason"] == "InvalidOption"
    assert body["message"] == "sweep parameter 'lr': value 'fast' is not a number (the notebook's default is 0.1)"
    code, body = await post(jp_fetch, "notebook-runs", body={"path": "t.ipynb", "sweep": {"lr": [1, 2]}, "max_parallel": 0})
    assert code == 400 and "max_parallel" in body["message"]
    code, body = await post(jp_fetch, "notebook-runs", body={"path": "t.ipynb", "sweep": [1], "x": 1})
    assert code == 400 and "unknown fields: x" in body["message"]
    code, body = await post(jp_fetch, "notebook-runs", body={"path": "t.ipynb", "sweep": "lr=1,2"})
    assert code == 400 and "sweep must be a JSON object" in body["message"]
    assert kfjupyter.jobs.count() == 0
    code, body = await error_of(jp_fetch, "notebook-runs", "nope", "results")
    assert (code, body["reason"]) == (404, "JobNotFound")


@async_test
async def test_a_sweep_started_over_rest_and_its_results_table(jp_fetch, jp_root_dir):
    write(jp_root_dir, "s.ipynb", [(["parameters"], "lr = 0.1"), ([], "import kfjupyter\nkfjupyter.report(score=lr * 10)")])
    code, job = await post(jp_fetch, "notebook-runs", body={"path": "s.ipynb", "sweep": {"lr": [0.5, 0.25]}, "max_parallel": 2})
    assert code == 201, job
    check_schema(job, "Job")
    assert job["kind"] == "sweep" and job["max_parallel"] == 2
    deadline = time.monotonic() + 180
    while True:
        table = await get_json(jp_fetch, "notebook-runs", job["id"], "results")
        if table["status"] in ("Succeeded", "Failed", "Cancelled"):
            break
        assert time.monotonic() < deadline, table
        await asyncio.sleep(0.5)
    assert table["status"] == "Succeeded", table
    assert table["columns"] == ["lr", "score", "status", "job_id"]
    assert [row[:3] for row in table["rows"]] == [[0.5, 5.0, "Succeeded"], [0.25, 2.5, "Succeeded"]]
    run_id = table["runs"][1]["id"]
    code, opened = await post(jp_fetch, "notebook-runs", run_id, "output", body={})
    assert code == 200, opened
    assert opened["path"] == f"s-{run_id}-output.ipynb" and (jp_root_dir / opened["path"]).is_file()
    code, body = await post(jp_fetch, "notebook-runs", job["id"], "output", body={})
    assert code == 400 and "is a sweep" in body["message"]
