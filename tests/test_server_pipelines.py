"""REST of pipelines (/pipelines…) on a real jupyter server: compile the demo notebook
(notebooks/pipeline_demo.ipynb), a 400 naming the cell of a broken notebook, a real local
run to Succeeded with its steps and a step's log, a second run taken from the cache with
the reasons, cancel of a running pipeline, the KFP YAML export, bad input."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest
import yaml

from server_support import *  # noqa: F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, check_schema, error_of, get_json

from conftest import REPO

pytestmark = AUTH_WARNINGS_ARE_ERRORS

DEMO = REPO / "notebooks" / "pipeline_demo.ipynb"
TERMINAL = {"Succeeded", "Failed", "Cancelled"}


def notebook(cells: list[tuple[list[str], str]], markdown_first: bool = False) -> dict:
    """An nbformat-4 notebook of (tags, source) code cells (a markdown cell first when asked)."""
    out = []
    if markdown_first:
        out.append({"cell_type": "markdown", "id": "md", "metadata": {}, "source": "# title"})
    for i, (tags, source) in enumerate(cells):
        out.append(
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags}, "outputs": [], "source": source}
        )
    return {
        "cells": out,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write(root, name: str, nb: dict) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return name


async def post(jp_fetch, *parts: str, body: object) -> tuple[int, dict]:
    response = await jp_fetch(API, *parts, method="POST", body=json.dumps(body), raise_error=False, request_timeout=60)
    return response.code, json.loads(response.body)


async def wait_run(jp_fetch, run_id: str, until=lambda run: run["status"] in TERMINAL, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = await get_json(jp_fetch, "pipelines", "runs", run_id)
        if until(run):
            return run
        assert time.monotonic() < deadline, f"run {run_id}: condition not met; {run['status']} {run['steps']}"
        await asyncio.sleep(0.2)


@async_test
async def test_compile_the_demo_notebook(jp_fetch, jp_root_dir):
    shutil.copy(DEMO, jp_root_dir / "demo.ipynb")
    code, pipeline = await post(jp_fetch, "pipelines", "compile", body={"path": "demo.ipynb"})
    assert code == 200, pipeline
    check_schema(pipeline, "Pipeline")
    assert pipeline["name"] == "iris-demo"
    assert list(pipeline["steps"]) == ["prepare", "train-logreg", "train-forest", "evaluate"]
    assert pipeline["steps"]["prepare"]["cells"] == [5, 6]  # the untagged cell continues the step
    edges = {(e["source"], e["target"]): e for e in pipeline["edges"]}
    assert edges[("prepare", "train-logreg")]["explicit"] is True
    assert edges[("train-logreg", "evaluate")]["names"] == ["logreg"]
    assert set(pipeline["parameters"]) == {"test_size", "seed", "C", "n_estimators"}
    # a notebook in a folder, by its contents path
    (jp_root_dir / "sub").mkdir()
    shutil.copy(DEMO, jp_root_dir / "sub" / "demo.ipynb")
    code, again = await post(jp_fetch, "pipelines", "compile", body={"path": "sub/demo.ipynb"})
    assert code == 200 and list(again["steps"]) == list(pipeline["steps"])


@async_test
async def test_a_broken_notebook_is_a_400_naming_the_cell(jp_fetch, jp_root_dir):
    broken = notebook(
        [(["step:load"], "x = 1"), (["step:train", "prev:nowhere"], "y = x + 1")], markdown_first=True
    )
    write(jp_root_dir, "broken.ipynb", broken)
    code, err = await post(jp_fetch, "pipelines", "compile", body={"path": "broken.ipynb"})
    assert code == 400, err
    check_schema(err, "CompileError")
    assert err["reason"] == "PipelineError" and err["cell"] == 2  # markdown cell 0 counted
    assert "nowhere" in err["message"] and err["message"].startswith("cell 3:")  # counted from 1, as JupyterLab does
    # a name no step supplies: the cell that reads it
    missing = notebook([(["step:a"], "x = 1"), (["step:b"], "print(undefined_name)")])
    write(jp_root_dir, "missing.ipynb", missing)
    code, err = await post(jp_fetch, "pipelines", "compile", body={"path": "missing.ipynb"})
    assert code == 400 and err["cell"] == 1 and "undefined_name" in err["message"], err
    # Run refuses it the same way, and starts nothing
    code, err = await post(jp_fetch, "pipelines", "runs", body={"path": "broken.ipynb"})
    assert code == 400 and err["cell"] == 2, err
    assert (await get_json(jp_fetch, "pipelines", "runs"))["runs"] == []


@async_test
async def test_bad_requests(jp_fetch, jp_root_dir):
    (jp_root_dir / "notes.txt").write_text("hello")
    cases = [
        ({"path": ""}, 400),
        ({}, 400),
        ({"path": "../outside.ipynb"}, 400),
        ({"path": "notes.txt"}, 400),
        ({"path": "nope.ipynb"}, 404),
    ]
    for body, expected in cases:
        code, err = await post(jp_fetch, "pipelines", "compile", body=body)
        assert code == expected, (body, err)
        check_schema(err, "Error")
    response = await jp_fetch(API, "pipelines", "compile", method="POST", body=b"{not json", raise_error=False)
    assert response.code == 400
    write(jp_root_dir, "ok.ipynb", notebook([(["step:a"], "x = 1")]))
    code, err = await post(jp_fetch, "pipelines", "runs", body={"path": "ok.ipynb", "parameters": [1]})
    assert code == 400, err
    code, err = await post(jp_fetch, "pipelines", "runs", body={"path": "ok.ipynb", "colour": "red"})
    assert code == 400 and "colour" in err["message"], err
    assert (await error_of(jp_fetch, "pipelines", "runs", "no-such-run"))[0] == 404
    assert (await error_of(jp_fetch, "pipelines", "runs", "no-such-run", "steps", "a", "logs"))[0] == 404
    assert (await error_of(jp_fetch, "pipelines", "runs", "no-such-run", "cancel", method="POST"))[0] == 404
    assert (await error_of(jp_fetch, "pipelines", "export"))[0] == 400  # no path
    assert (await error_of(jp_fetch, "pipelines", "runs", path="../x.ipynb"))[0] == 400


@async_test
async def test_run_succeeds_with_steps_logs_then_cached(jp_fetch, jp_root_dir):
    shutil.copy(DEMO, jp_root_dir / "demo.ipynb")
    code, run = await post(jp_fetch, "pipelines", "runs", body={"path": "demo.ipynb"})
    assert code == 201, run
    check_schema(run, "PipelineRun")
    assert run["kind"] == "pipeline" and run["name"] == "iris-demo"
    run = await wait_run(jp_fetch, run["id"])
    check_schema(run, "PipelineRun")
    assert run["status"] == "Succeeded", (run["error"], run["steps"])
    assert [s["name"] for s in run["steps"]] == ["prepare", "train-logreg", "train-forest", "evaluate"]
    assert all(s["status"] == "Succeeded" and not s["cached"] for s in run["steps"]), run["steps"]
    assert all(s["duration_s"] is not None and s["duration_s"] >= 0 for s in run["steps"])
    assert 0.8 <= run["metrics"]["logreg_accuracy"] <= 1.0, run["metrics"]

    logs = await get_json(jp_fetch, "pipelines", "runs", run["id"], "steps", "prepare", "logs")
    check_schema(logs, "StepLogs")
    assert "train (105, 4)" in logs["text"], logs  # what the step printed
    code, err = await error_of(jp_fetch, "pipelines", "runs", run["id"], "steps", "nope", "logs")
    assert code == 404 and err["reason"] == "StepNotFound"

    listed = await get_json(jp_fetch, "pipelines", "runs", path="demo.ipynb")
    check_schema(listed, "PipelineRunList")
    assert [r["id"] for r in listed["runs"]] == [run["id"]]

    # nothing changed: every step from the cache, each with its reason
    code, second = await post(jp_fetch, "pipelines", "runs", body={"path": "demo.ipynb"})
    assert code == 201, second
    second = await wait_run(jp_fetch, second["id"])
    assert second["status"] == "Succeeded", second
    assert all(s["cached"] for s in second["steps"]), second["steps"]
    assert all(s["cache_reason"] for s in second["steps"]), second["steps"]
    listed = await get_json(jp_fetch, "pipelines", "runs", path="demo.ipynb")
    assert [r["id"] for r in listed["runs"]] == [second["id"], run["id"]]  # newest first
    write(jp_root_dir, "other.ipynb", notebook([(["step:a"], "x = 1")]))
    assert (await get_json(jp_fetch, "pipelines", "runs", path="other.ipynb"))["runs"] == []  # another notebook's


@async_test
async def test_cancel_a_running_pipeline(jp_fetch, jp_root_dir):
    slow = notebook(
        [
            (["imports"], "import time"),
            (["step:first"], "print('first starts', flush=True)\ntime.sleep(60)\nx = 1"),
            (["step:second"], "y = x + 1"),
        ]
    )
    write(jp_root_dir, "slow.ipynb", slow)
    code, run = await post(jp_fetch, "pipelines", "runs", body={"path": "slow.ipynb"})
    assert code == 201, run
    await wait_run(jp_fetch, run["id"], until=lambda r: any(s["status"] == "Running" for s in r["steps"]), timeout=60)
    code, cancelled = await post(jp_fetch, "pipelines", "runs", run["id"], "cancel", body={})
    assert code == 200, cancelled
    check_schema(cancelled, "PipelineRun")
    final = await wait_run(jp_fetch, run["id"], timeout=30)
    assert final["status"] == "Cancelled", final
    steps = {s["name"]: s["status"] for s in final["steps"]}
    assert steps["first"] in ("Cancelled", "Failed") and steps["second"] != "Succeeded", steps


@async_test
async def test_export_kfp_yaml(jp_fetch, jp_root_dir):
    pytest.importorskip("kfp")
    shutil.copy(DEMO, jp_root_dir / "demo.ipynb")
    response = await jp_fetch(API, "pipelines", "export", params={"path": "demo.ipynb"}, request_timeout=120)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert 'filename="demo.yaml"' in response.headers["Content-Disposition"]
    text = response.body.decode()
    docs = list(yaml.safe_load_all(text))
    assert docs[0]["pipelineInfo"]["name"] == "iris-demo"
    assert len(docs[0]["root"]["dag"]["tasks"]) == 4
    from kfp import components

    components.load_component_from_text(text)  # the SDK reads it back
    # a broken notebook: the same 400 naming the cell
    write(jp_root_dir, "broken.ipynb", notebook([(["step:a", "prev:zzz"], "x = 1")]))
    code, err = await error_of(jp_fetch, "pipelines", "export", path="broken.ipynb")
    assert code == 400 and err["cell"] == 0, err


@async_test
async def test_notebooks_with_spaces_and_unicode_in_subfolders_export_and_hidden_ones_are_refused(jp_fetch, jp_root_dir, jp_serverapp):
    pytest.importorskip("kfp")
    name = write(jp_root_dir, "模型/训练 流水线.ipynb", notebook([(["step:a"], "x = 1"), (["step:b"], "y = x + 1")]))
    compiled = await post(jp_fetch, "pipelines", "compile", body={"path": name})
    assert compiled[0] == 200 and list(compiled[1]["steps"]) == ["a", "b"]
    response = await jp_fetch(API, "pipelines", "export", params={"path": name}, request_timeout=120)
    disposition = response.headers["Content-Disposition"]
    assert response.code == 200 and 'filename="__ ___.yaml"' in disposition
    assert "filename*=UTF-8''%E8%AE%AD%E7%BB%83%20%E6%B5%81%E6%B0%B4%E7%BA%BF.yaml" in disposition
    # a hidden notebook is not there for the API, as for the contents API (allow_hidden off)
    hidden = write(jp_root_dir, ".secret/x.ipynb", notebook([(["step:a"], "x = 1")]))
    jp_serverapp.contents_manager.allow_hidden = False
    code, err = await error_of(jp_fetch, "pipelines", "export", path=hidden)
    assert code == 404 and err["reason"] == "NotebookNotFound"
    code, err = await post(jp_fetch, "pipelines", "compile", body={"path": hidden})
    assert code == 404


@async_test
async def test_run_with_parameters(jp_fetch, jp_root_dir):
    nb = notebook(
        [
            (["pipeline-parameters"], "greeting = 'hello'\ntimes = 1"),
            (["step:say"], "print(greeting * times, flush=True)\nprint('said', flush=True)"),
        ]
    )
    write(jp_root_dir, "params.ipynb", nb)
    tricky = "it's \"quoted\"; import os"
    code, run = await post(jp_fetch, "pipelines", "runs", body={"path": "params.ipynb", "parameters": {"greeting": tricky, "times": "2"}})
    assert code == 201, run
    run = await wait_run(jp_fetch, run["id"])
    assert run["status"] == "Succeeded", run
    logs = await get_json(jp_fetch, "pipelines", "runs", run["id"], "steps", "say", "logs")
    assert tricky * 2 in logs["text"], logs  # a string, never code; "2" from a form is an int
    tail = await get_json(jp_fetch, "pipelines", "runs", run["id"], "steps", "say", "logs", tail=1)
    assert tail["text"] == "said" != logs["text"]  # the end of the log only
    code, err = await post(jp_fetch, "pipelines", "runs", body={"path": "params.ipynb", "parameters": {"nope": 1}})
    assert code == 400 and "nope" in err["message"], err
    code, err = await post(jp_fetch, "pipelines", "runs", body={"path": "params.ipynb", "parameters": {"times": "many"}})
    assert code == 400 and "times" in err["message"], err
    assert (await get_json(jp_fetch, "pipelines", "runs", path="params.ipynb"))["total"] == 1


@async_test
async def test_export_without_kfp_says_what_to_install(jp_fetch, jp_root_dir, monkeypatch):
    import sys

    shutil.copy(DEMO, jp_root_dir / "demo.ipynb")
    monkeypatch.setitem(sys.modules, "kfp", None)  # `import kfp` fails, as on a server without it
    code, err = await error_of(jp_fetch, "pipelines", "export", path="demo.ipynb")
    assert code == 501 and err["reason"] == "MissingDependency", err
    assert "kfjupyter[pipelines]" in err["message"]
