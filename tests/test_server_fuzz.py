"""Property-based fuzzing of the whole REST API from ``server_ext/openapi.yaml``.

schemathesis generates requests for every operation of the spec, valid ones (positive)
and ones the spec forbids (negative), and checks every answer against the spec: no 5xx,
a documented status code, the documented content type, headers and JSON schema. It runs
against a real ``jupyter server`` process with the extension, in this test's own
workspace and root folder, authenticated (the server's token) and unauthenticated (every
route must refuse with 403). Deterministic (``derandomize``, no example database) and
bounded (a fixed number of examples per operation). Requests the spec forbids must not
break the server either, but are not required to be refused: the API takes an empty query
parameter for an absent one (``status=``), as the sidebar sends it.

Seeded first through the Python API, so that generated requests reach real objects (the
spec's path parameters are widened to also take their ids): a finished training job, a
finished study, a finished pipeline run, a registered model (files with a non-Latin-1
name and one holding CR/LF) and a deployed endpoint. What cannot be fuzzed safely is
constrained, and only that:

* ``GET /events`` is an endless stream by design (it ends with the server): it is called
  unauthenticated only (a 403 at once); test_server_api.py reads it.
* ``POST /endpoints`` and ``POST /pipelines/runs`` start real model servers and pipeline
  runs: their bodies never name the seeded model or notebook (each example would start
  processes for seconds); the seed started one of each.
* ``POST /runs/{run_id}/rerun`` starts the run's job again (a training job, a study, a
  pipeline run: processes for seconds, and each new job one more run for every later
  example to find): its path never names a job of the workspace, so it answers with a
  404 or a 400 and starts nothing; the re-run route itself is tested in
  test_server_tracking.py. ``GET /runs/{run_id}`` is given the seeded jobs' run ids.
* ``GET /jobs/{id}/logs/stream`` follows a running job's log until it ends: the running
  endpoint's job id is not among the ids it is given (its finished jobs' streams end).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

import requests  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.feedback import NO_FEEDBACK  # noqa: E402

import kfjupyter  # noqa: E402
from kfjupyter import registry, serving  # noqa: E402
from kfjupyter.errors import JobNotFoundError  # noqa: E402
from kfjupyter.store.runs import split_run_id  # noqa: E402
from kfjupyter.store.workspace import get_workspace  # noqa: E402

from server_support import openapi, openapi_operations  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Examples per operation: authenticated positive / negative, unauthenticated.
POSITIVE, NEGATIVE, UNAUTHENTICATED = (int(n) for n in os.environ.get("KFJUPYTER_FUZZ_EXAMPLES", "40,20,5").split(","))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]  # fmt: skip
MODEL, ENDPOINT, NOTEBOOK = "fuzz-iris", "fuzz-ep", "fuzz.ipynb"
FILES = {"weights.txt": "w\n", "模型.txt": "unicode\n", "a\r\nb.txt": "crlf\n"}

NOTEBOOK_JSON = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {"tags": ["pipeline-parameters"]},
         "outputs": [], "source": "n = 2"},
        {"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {"tags": ["step:a"]}, "outputs": [],
         "source": "x = n * 2\nprint(x)"},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(root: Path, tmp: Path) -> dict:
    """Real objects for the generated requests to find: their ids by path parameter."""
    import numpy as np

    (root / NOTEBOOK).write_text(json.dumps(NOTEBOOK_JSON))
    folder = tmp / "artifact"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text)
    registry.register_model(MODEL, str(folder), framework="custom", metrics={"accuracy": 0.9})

    class Constant:
        def predict(self, x):
            return np.zeros(len(x))

    registry.register_model(MODEL, Constant(), framework="custom")
    registry.set_alias(MODEL, "production", 2)
    job = kfjupyter.train("kfjupyter.report(step=0, loss=1.0)\nprint('hi')", workers=1, name="fuzz-train", user_ns={})
    study = kfjupyter.tune("x = kfjupyter.param('x', low=0.0, high=1.0)\nkfjupyter.report(step=0, loss=x)", "loss",
                           trials=1, algorithm="random", seed=0, name="fuzz-study", user_ns={})  # fmt: skip
    run = kfjupyter.run_pipeline(str(root / NOTEBOOK), wait=True)
    job.wait(120)
    study.wait(120)
    endpoint = serving.deploy(f"{MODEL}@production", name=ENDPOINT)
    return {
        "job_id": [job.id, study.id, run.id],
        "study_id": [study.id, job.id],
        "run_id": [run.id, job.id, study.id],
        "number": [0],
        "model": [MODEL],
        "version": ["1", "2"],
        "alias": ["production", "staging"],
        "path": sorted(FILES),
        "endpoint": [ENDPOINT, endpoint.id],
        "step": ["a"],
    }


def widened(spec: dict, ids: dict) -> dict:
    """The spec with each path parameter also taking the seeded ids (what clients send)."""
    spec = copy.deepcopy(spec)

    def widen(param: dict) -> None:
        if param.get("in") == "path" and param["name"] in ids:
            param["schema"] = {"anyOf": [{"enum": ids[param["name"]]}, param["schema"]]}

    for param in spec["components"]["parameters"].values():
        widen(param)
    for item in spec["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if "$ref" not in param:
                    widen(param)
    spec["paths"]["/pipelines/export"]["get"]["parameters"] = [{
        "name": "path", "in": "query", "required": True,
        "schema": {"anyOf": [{"enum": [NOTEBOOK]}, {"type": "string"}]}}]  # fmt: skip
    compile_body = spec["paths"]["/pipelines/compile"]["post"]["requestBody"]["content"]["application/json"]
    compile_body["schema"] = {"type": "object", "required": ["path"], "additionalProperties": False,
                              "properties": {"path": {"anyOf": [{"enum": [NOTEBOOK]}, {"type": "string"}]}}}  # fmt: skip
    return spec


def safe(case, root: Path) -> bool:
    """False for the cases that would start real processes per example (see the module's doc)."""
    body = case.body if isinstance(case.body, dict) else {}
    if (case.method, case.path) == ("POST", "/endpoints"):
        return not (isinstance(body.get("model"), str) and body["model"].split("@")[0].split(":")[0] == MODEL)
    if (case.method, case.path) in (("POST", "/pipelines/runs"), ("POST", "/notebook-runs")):
        path = body.get("path")
        return not (isinstance(path, str) and "\x00" not in path and path.strip().lstrip("/") == NOTEBOOK)
    if (case.method, case.path) == ("POST", "/runs/{run_id}/rerun"):
        job_id, child = split_run_id(str((case.path_parameters or {}).get("run_id", "")))
        return child is not None or not _is_job(job_id)
    return True


def _is_job(job_id: str) -> bool:
    try:
        get_workspace().get_job(job_id)
    except JobNotFoundError:
        return False
    return True


@pytest.fixture
def server(workspace, tmp_path):
    """A real jupyter server with the extension (only it), on loopback, with a token."""
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "jupyter-config"
    config.mkdir()
    extensions = {"kfjupyter_server": True, "jupyterlab": False, "jupyter_lsp": False, "notebook": False,
                  "notebook_shim": False, "jupyter_server_terminals": False, "jupyterlab_kubeflow_kale": False}  # fmt: skip
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"jpserver_extensions": extensions, "allow_unauthenticated_access": False},
        "KFJupyter": {"poll_interval": 0.5, "keepalive_interval": 0.5}}))  # fmt: skip
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "KFJUPYTER_HOME": str(workspace)}  # fmt: skip
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/kfjupyter/api/v1/settings", headers={"Authorization": f"token {token}"},
                                timeout=2).status_code == 200:  # fmt: skip
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.2)
        yield {"base": f"{base}/kfjupyter/api/v1", "token": token, "root": root, "log": tmp_path / "server.log"}
    finally:
        for ep in serving.list_endpoints():
            ep.undeploy()
        for job in kfjupyter.jobs.list(limit=None):
            if not job.done:
                job.cancel()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def fuzz(operation, mode, examples: int, call, ok, failures: list, stats: Counter, root: Path) -> None:
    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)  # fmt: skip
    @given(operation.as_strategy(generation_mode=mode, feedback=NO_FEEDBACK))
    def run(case) -> None:
        if not safe(case, root):
            stats["skipped (would start processes)"] += 1
            return
        t0 = time.monotonic()
        response = call(case)
        stats[f"time {case.method} {case.path}"] += time.monotonic() - t0
        stats["requests"] += 1
        stats[f"{response.status_code // 100}xx"] += 1
        stats[f"{case.method} {case.path}"] += 1
        problem = ok(case, response)
        if problem:
            sent = {"path": case.path_parameters, "query": case.query, "body": case.body}
            failures.append(f"{case.method} {case.path} [{mode.value}] {problem}\n  sent {str(sent)[:400]}")

    try:
        run()
    except Unsatisfiable:  # nothing the spec forbids can be sent (an operation without parameters)
        stats["operations without negative cases"] += 1


def test_the_whole_api_fuzzed_from_its_openapi_spec_answers_no_5xx_and_keeps_to_the_spec(server, tmp_path, workspace):
    started = time.monotonic()
    ids = seed(server["root"], tmp_path)
    seeded = time.monotonic() - started
    schema = schemathesis.openapi.from_dict(widened(openapi(), ids))
    operations = [result.ok() for result in schema.get_all_operations()]
    auth = {"Authorization": f"token {server['token']}"}
    failures: list[str] = []
    stats: Counter = Counter()

    def call_with(headers):
        session = requests.Session()  # one per identity: a token's answer sets a login cookie

        def call(case):
            return case.call(base_url=server["base"], session=session, headers=headers, timeout=60)

        return call

    def conforms(case, response):
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except BaseExceptionGroup as exc:  # schemathesis's FailureGroup: what does not conform
            what = "; ".join(f"{type(e).__name__}: {' '.join(str(e).split())[:300]}" for e in exc.exceptions)
            return f"-> {response.status_code} {response.text[:200]!r}: {what}"
        return None

    def refused(case, response):
        if response.status_code != 403:
            return f"unauthenticated -> {response.status_code} {response.text[:200]}"
        return conforms(case, response)

    covered = set()
    for operation in operations:
        key = (operation.method.upper(), operation.path)
        if key != ("GET", "/events"):
            for mode, examples in ((GenerationMode.POSITIVE, POSITIVE), (GenerationMode.NEGATIVE, NEGATIVE)):
                fuzz(operation, mode, examples, call_with(auth), conforms, failures, stats, server["root"])
        fuzz(operation, GenerationMode.POSITIVE, UNAUTHENTICATED, call_with({}), refused, failures, stats, server["root"])
        covered.add(key)
    elapsed = time.monotonic() - started
    figures = {
        "requests": stats["requests"], "operations": len(operations), "operations_covered": len(covered),
        "server_errors": stats["5xx"], "by_class": {k: v for k, v in stats.items() if k.endswith("xx")},
        "skipped": stats["skipped (would start processes)"], "seed_s": round(seeded, 1), "total_s": round(elapsed, 1),
    }  # fmt: skip
    print("\nREST fuzz:", json.dumps(figures))
    slowest = sorted(((v, k[5:]) for k, v in stats.items() if k.startswith("time ")), reverse=True)[:8]
    print("slowest operations (s in all):", ", ".join(f"{k} {v:.1f}" for v, k in slowest))
    (tmp_path / "fuzz-figures.json").write_text(json.dumps(figures))
    tracebacks = [line for line in server["log"].read_text(errors="replace").splitlines() if "Traceback" in line]
    kinds = Counter(f.split(" -> ")[0] + " -> " + f.split(" -> ")[1].split(" ")[0] for f in failures)
    assert not failures, (f"{len(failures)} of {stats['requests']} responses broke the spec ({dict(kinds)}):\n"
                          + "\n".join(failures[:15]))  # fmt: skip
    assert stats["5xx"] == 0 and not tracebacks
    assert len(covered) == len(operations) == len(openapi_operations())
