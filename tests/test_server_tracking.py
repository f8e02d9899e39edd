"""The tracking routes: experiments, runs (MLflow's search syntax), compare, a run, re-run."""

from __future__ import annotations

import json

from server_support import *  # noqa: F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, blocking, check_schema, error_of, get_json

import kfjupyter

pytestmark = AUTH_WARNINGS_ARE_ERRORS

CELL = "for s in range(2):\n    kfjupyter.report(step=s, loss=lr * (2 - s))\n"


async def fit(lr: float):
    job = await blocking(kfjupyter.train, CELL, workers=1, name="fit", user_ns={"lr": lr}, experiment="rest")
    return await blocking(job.wait, 60)


@async_test
async def test_runs_listed_filtered_compared_and_rerun(jp_fetch, jp_http_port, jp_base_url, jp_auth_header):
    a, b = await fit(0.1), await fit(0.3)
    experiments = await get_json(jp_fetch, "experiments")
    check_schema(experiments, "ExperimentList")
    assert experiments["experiments"] == [{"name": "rest", "runs": 2, "last_run_at": experiments["experiments"][0]["last_run_at"]}]

    page = await get_json(jp_fetch, "runs", experiment="rest", filter="metrics.loss < 0.25", order_by="params.lr DESC")
    check_schema(page, "TrackedRunList")
    assert [r["run_id"] for r in page["runs"]] == [a.id] and page["total"] == 1

    from tornado.httpclient import AsyncHTTPClient

    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}{API}/runs/compare?ids={a.id}&ids={b.id}"
    response = await AsyncHTTPClient().fetch(url, headers=jp_auth_header)
    comparison = json.loads(response.body)
    check_schema(comparison, "RunComparison")
    assert comparison["params"] == [{"name": "lr", "values": [0.1, 0.3]}]
    assert {c["run_id"] for c in comparison["curves"]["loss"]} == {a.id, b.id}

    run = await get_json(jp_fetch, "runs", a.id)
    check_schema(run, "TrackedRun")
    assert run["params"]["lr"] == 0.1 and run["experiment"] == "rest"

    response = await jp_fetch(API, "runs", a.id, "rerun", method="POST", body=json.dumps({"params": {"lr": 0.05}}))
    assert response.code == 201
    new = json.loads(response.body)
    await blocking(kfjupyter.jobs.get(new["id"]).wait, 60)
    assert (await get_json(jp_fetch, "runs", new["id"]))["source_run"] == a.id

    assert (await error_of(jp_fetch, "runs", filter="metricz.x < 1"))[0] == 400
    assert (await error_of(jp_fetch, "runs", "nope-123"))[1]["reason"] == "RunNotFound"
    code, body = await error_of(jp_fetch, "runs", a.id, "rerun", method="POST")
    assert code == 201 or code == 400, body  # an empty body re-runs as it was
    assert (await error_of(jp_fetch, "runs", "compare", ids=a.id))[0] == 400
