"""The server extension's REST API against real local jobs (pytest-jupyter's server)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time

import pytest
from traitlets import TraitError

from kfjupyter import status as st
from kfjupyter_server.app import KFJupyter
from kfjupyter_server.watcher import JOB_EVENT_SCHEMA_ID

from server_support import *  # noqa: F403
from server_support import (
    API,
    AUTH_WARNINGS_ARE_ERRORS,
    async_test,
    blocking,
    check_schema,
    error_of,
    get_json,
    train,
    wait_running,
)

pytestmark = AUTH_WARNINGS_ARE_ERRORS

SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(120)\n"


def extension(jp_serverapp):
    return jp_serverapp.extension_manager.extension_points["kfjupyter_server"].app


# -- jobs: list, get ------------------------------------------------------------------
@async_test
async def test_list_filters_and_paging(jp_fetch):
    empty = await get_json(jp_fetch, "jobs")
    assert empty == {"jobs": [], "total": 0, "limit": 50, "offset": 0}
    made = [await train("print('hi')", name=n, wait=True) for n in ("a", "b", "c")]
    assert [j.status for j in made] == [st.SUCCEEDED] * 3

    page = await get_json(jp_fetch, "jobs")
    check_schema(page, "JobList")
    assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0
    assert [j["id"] for j in page["jobs"]] == [j.id for j in reversed(made)]  # newest first
    assert page["jobs"][0] == json.loads(json.dumps(page["jobs"][0]))
    first = page["jobs"][0]
    assert first["kind"] == "train" and first["backend"] == "local" and first["status"] == st.SUCCEEDED
    assert first["created_at"].endswith("+00:00") and first["finished_at"].endswith("+00:00")

    paged = await get_json(jp_fetch, "jobs", limit=2, offset=1)
    assert [j["id"] for j in paged["jobs"]] == [made[1].id, made[0].id]
    assert (paged["total"], paged["limit"], paged["offset"]) == (3, 2, 1)
    assert (await get_json(jp_fetch, "jobs", limit=0)) == {"jobs": [], "total": 3, "limit": 0, "offset": 0}
    assert (await get_json(jp_fetch, "jobs", offset=5))["jobs"] == []

    assert (await get_json(jp_fetch, "jobs", status="Succeeded"))["total"] == 3
    assert (await get_json(jp_fetch, "jobs", status="Running"))["total"] == 0
    assert (await get_json(jp_fetch, "jobs", kind="train", status="Succeeded", limit=1))["total"] == 3
    assert (await get_json(jp_fetch, "jobs", kind="tune")) == {"jobs": [], "total": 0, "limit": 50, "offset": 0}

    for params in (
        {"status": "succeeded"},
        {"status": "Bogus"},
        {"limit": -1},
        {"limit": "ten"},
        {"limit": 1001},
        {"offset": -3},
        {"offset": "1.5"},
        {"kind": "Train!"},
    ):
        code, body = await error_of(jp_fetch, "jobs", **params)
        assert code == 400, params
        check_schema(body, "Error")
        assert body["reason"] == "BadRequest" and body["message"], params


@async_test
async def test_get_job_and_unknown_job(jp_fetch):
    job = await train("print('hi')", name="one", workers=2, wait=True)
    data = await get_json(jp_fetch, "jobs", job.id)
    check_schema(data, "Job")
    assert data["id"] == job.id and data["name"] == "one" and data["workers"] == 2
    assert data["status"] == st.SUCCEEDED and data["duration_s"] > 0
    assert data["cell"] == "print('hi')"
    assert set(data) == set(job.to_dict())

    for parts, method in [
        (("jobs", "nope-00000"), "GET"),
        (("jobs", "nope-00000", "cancel"), "POST"),
        (("jobs", "nope-00000", "logs"), "GET"),
        (("jobs", "nope-00000", "logs", "stream"), "GET"),
        (("jobs", "nope-00000", "metrics"), "GET"),
    ]:
        code, body = await error_of(jp_fetch, *parts, method=method)
        assert code == 404, parts
        check_schema(body, "Error")
        assert body["reason"] == "JobNotFound" and "nope-00000" in body["message"]


# -- cancel ------------------------------------------------------------------------------
@async_test
async def test_cancel(jp_fetch):
    done = await train("print('hi')", name="done", wait=True)
    job = await train(SLEEPER, name="sleeper", workers=2)
    try:
        await wait_running(job)
        assert (await get_json(jp_fetch, "jobs", job.id))["status"] == st.RUNNING
        response = await jp_fetch(API, "jobs", job.id, "cancel", method="POST", body=b"")
        assert response.code == 200
        data = json.loads(response.body)
        check_schema(data, "Job")
        assert data["id"] == job.id and data["status"] == st.CANCELLED and data["finished_at"]
        assert await blocking(lambda: job.status) == st.CANCELLED
        again = await jp_fetch(API, "jobs", job.id, "cancel", method="POST", body=b"")  # idempotent
        assert json.loads(again.body)["status"] == st.CANCELLED
    finally:
        await blocking(job.cancel)
    # a finished job is returned unchanged
    response = await jp_fetch(API, "jobs", done.id, "cancel", method="POST", body=b"")
    assert response.code == 200
    unchanged = json.loads(response.body)
    assert unchanged["status"] == st.SUCCEEDED and unchanged["message"] is None
    assert unchanged["finished_at"] == (await get_json(jp_fetch, "jobs", done.id))["finished_at"]


# -- logs and metrics -----------------------------------------------------------------------
REPORTER = """
import kfjupyter
for i in range(3):
    print(f"line {i}")
    kfjupyter.report(step=i, loss=1.0 / (i + 1))
kfjupyter.report(step=3, loss=float("nan"))
"""


@async_test
async def test_logs_and_metrics(jp_fetch):
    job = await train(REPORTER, name="rep", workers=2, wait=True)
    assert job.status == st.SUCCEEDED, job.error

    logs = await get_json(jp_fetch, "jobs", job.id, "logs")
    check_schema(logs, "Logs")
    assert logs == {"job_id": job.id, "rank": 0, "lines": ["line 0", "line 1", "line 2"]}
    assert (await get_json(jp_fetch, "jobs", job.id, "logs", rank=1, tail=2))["lines"] == ["line 1", "line 2"]
    assert (await get_json(jp_fetch, "jobs", job.id, "logs", tail=0))["lines"] == ["line 0", "line 1", "line 2"]
    for params in ({"rank": 2}, {"rank": -1}, {"rank": "one"}, {"tail": -1}):
        code, body = await error_of(jp_fetch, "jobs", job.id, "logs", **params)
        assert code == 400 and body["reason"] == "BadRequest", params

    metrics = await get_json(jp_fetch, "jobs", job.id, "metrics")
    check_schema(metrics, "Metrics")
    assert metrics["job_id"] == job.id
    rows = metrics["metrics"]
    assert len(rows) == 8 and {r["rank"] for r in rows} == {0, 1}
    rank1 = (await get_json(jp_fetch, "jobs", job.id, "metrics", rank=1))["metrics"]
    assert [r["step"] for r in rank1] == [0, 1, 2, 3] and all(r["rank"] == 1 for r in rank1)
    assert math.isclose(rank1[1]["loss"], 0.5) and rank1[3]["loss"] is None  # NaN is sent as null
    assert all(isinstance(r["time"], float) for r in rank1)
    code, body = await error_of(jp_fetch, "jobs", job.id, "metrics", rank=5)
    assert code == 400 and "ranks 0..1" in body["message"]


# -- log stream ---------------------------------------------------------------------------------
TICKER = """
import time
print("first", flush=True)
time.sleep(1.0)
for i in range(5):
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
"""


@async_test
async def test_log_stream_follows_until_the_end(jp_fetch, event_stream):
    job = await train(TICKER, name="ticker", workers=2)
    await wait_running(job)
    stream = event_stream("jobs", job.id, "logs", "stream", rank=1)
    await stream.until(lambda s: ("message", "first") in s.events)
    assert stream.code == 200 and stream.content_type.startswith("text/event-stream")
    assert job.status == st.RUNNING  # the first line came while the job ran
    response = await stream.finished()
    assert response.code == 200
    assert stream.events == [("message", "first")] + [("message", f"tick {i}") for i in range(5)] + [
        ("end", {"status": st.SUCCEEDED})
    ]

    # a finished job: the tail, then the end at once
    again = event_stream("jobs", job.id, "logs", "stream", tail=2)
    await again.finished(10)
    assert again.events == [("message", "tick 3"), ("message", "tick 4"), ("end", {"status": st.SUCCEEDED})]


@async_test
async def test_log_stream_of_a_cancelled_job_and_keepalive(jp_fetch, event_stream):
    job = await train(SLEEPER, name="sleeper")
    try:
        stream = event_stream("jobs", job.id, "logs", "stream")
        await stream.until(lambda s: s.events)
        assert stream.events == [("message", "started")]
        await stream.until(lambda s: "keepalive" in s.comments)  # keepalive_interval is 0.5 s in the tests
        await jp_fetch(API, "jobs", job.id, "cancel", method="POST", body=b"")
        await stream.finished(15)
        assert stream.events[-1] == ("end", {"status": st.CANCELLED})
    finally:
        await blocking(job.cancel)


@async_test
async def test_log_stream_bad_requests(jp_fetch):
    job = await train("print('hi')", name="one", wait=True)
    for params in ({"rank": 1}, {"rank": "x"}, {"tail": -5}):
        code, body = await error_of(jp_fetch, "jobs", job.id, "logs", "stream", **params)
        assert code == 400 and body["reason"] == "BadRequest", params


def log_readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kfjupyter-log-")]


@async_test
async def test_log_stream_stops_when_the_client_leaves(jp_fetch, jp_http_port, jp_base_url, jp_auth_header):
    job = await train(SLEEPER, name="sleeper")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
        writer.write(
            (
                f"GET {jp_base_url}{API}/jobs/{job.id}/logs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: {jp_auth_header['Authorization']}\r\n\r\n"
            ).encode()
        )
        received = b""
        while b'data: "started"' not in received:
            received += await asyncio.wait_for(reader.read(4096), 30)
        assert received.startswith(b"HTTP/1.1 200")
        assert len(log_readers()) == 1
        writer.close()  # the client leaves while the job still runs
        await writer.wait_closed()
        # the server is not stuck: it answers, and the reader stops once the job ends
        assert (await get_json(jp_fetch, "jobs", job.id))["status"] not in st.TERMINAL
        await jp_fetch(API, "jobs", job.id, "cancel", method="POST", body=b"")
        deadline = time.monotonic() + 10
        while log_readers():
            assert time.monotonic() < deadline, log_readers()
            await asyncio.sleep(0.1)
    finally:
        await blocking(job.cancel)


# -- push events ------------------------------------------------------------------------------
@async_test
async def test_events_stream_reports_new_and_changed_jobs(jp_fetch, event_stream):
    before = await train("print('before')", name="before", wait=True)
    stream = event_stream("events")
    await stream.until(lambda s: "connected" in s.comments)
    assert stream.code == 200 and stream.content_type.startswith("text/event-stream")

    job = await train(TICKER, name="ticker")

    def seen(status: str):
        return lambda s: [d for e, d in s.events if e == "job" and d["id"] == job.id and d["status"] == status]

    created = await stream.until(lambda s: [d for e, d in s.events if e == "job" and d["id"] == job.id])
    assert created[0]["status"] in (st.PENDING, st.RUNNING)
    check_schema(created[0], "Job")
    finished = await stream.until(seen(st.SUCCEEDED), timeout=30)
    assert finished[0]["finished_at"] and finished[0]["duration_s"] > 0
    # a job that existed before the stream opened is not replayed
    assert not [d for _, d in stream.events if d["id"] == before.id]
    await stream.until(lambda s: "keepalive" in s.comments)

    # one event per change: no repeats for a job that stays the same
    count = len(stream.events)
    await asyncio.sleep(1.0)
    assert len(stream.events) == count

    sleeper = await train(SLEEPER, name="sleeper")
    try:
        await stream.until(lambda s: [d for e, d in s.events if d["id"] == sleeper.id and d["status"] == st.RUNNING])
        await jp_fetch(API, "jobs", sleeper.id, "cancel", method="POST", body=b"")
        await stream.until(lambda s: [d for e, d in s.events if d["id"] == sleeper.id and d["status"] == st.CANCELLED])
    finally:
        await blocking(sleeper.cancel)


@async_test
async def test_events_on_the_event_bus_and_clean_stop(jp_fetch, jp_serverapp, event_stream):
    app = extension(jp_serverapp)
    assert JOB_EVENT_SCHEMA_ID in jp_serverapp.event_logger.schemas.schema_ids
    received: list[dict] = []

    async def listener(logger, schema_id, data):
        received.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=JOB_EVENT_SCHEMA_ID, listener=listener)
    await app._start_jupyter_server_extension(jp_serverapp)  # what the server does once its loop runs
    await asyncio.wait_for(app.watcher.wait_ready(), 10)
    job = await train("print('hi')", name="bus", wait=True)
    deadline = time.monotonic() + 15
    while not [d for d in received if d["id"] == job.id and d["status"] == st.SUCCEEDED]:
        assert time.monotonic() < deadline, received
        await asyncio.sleep(0.1)
    check_schema(received[-1], "Job")

    # stopping the extension ends the watcher and every open event stream
    stream = event_stream("events")
    await stream.until(lambda s: "connected" in s.comments)
    await app.stop_extension()
    assert not app.watcher.running
    response = await stream.finished(10)
    assert response.code == 200


# -- settings ------------------------------------------------------------------------------------
@async_test
async def test_settings_route(jp_fetch):
    data = await get_json(jp_fetch, "settings")
    check_schema(data, "Settings")
    assert data == {"default_backend": "local", "namespace": None, "image": None, "backends": ["local", "kubernetes"]}


def kernel_env(kernel_id: str, timeout: float = 60) -> dict:
    """The kfjupyter defaults in the environment of the kernel process ``kernel_id``."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            if any(f"kernel-{kernel_id}" in part for part in proc.info["cmdline"] or []):
                env = proc.environ()
                return {k: env.get(k) for k in ("KFJUPYTER_BACKEND", "KFJUPYTER_NAMESPACE", "KFJUPYTER_IMAGE")}
        time.sleep(0.2)
    raise AssertionError(f"no process of kernel {kernel_id}")


@pytest.fixture
def configured(jp_server_config):
    jp_server_config["KFJupyter"].update(default_backend="kubernetes", namespace="team-a", image="ghcr.io/x/y:1")
    return jp_server_config


@async_test
async def test_settings_from_traitlets_config(configured, jp_fetch):
    data = await get_json(jp_fetch, "settings")
    assert data == {
        "default_backend": "kubernetes",
        "namespace": "team-a",
        "image": "ghcr.io/x/y:1",
        "backends": ["local", "kubernetes"],
    }
    # the server publishes them in its environment: its own calls and the kernels it
    # starts from now on (they inherit it) use them as their defaults
    from kfjupyter.config import default_backend, default_image

    assert (default_backend(), os.environ["KFJUPYTER_NAMESPACE"], default_image()) == ("kubernetes", "team-a", "ghcr.io/x/y:1")
    kernel = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(kernel.body)["id"]
    try:
        env = await blocking(kernel_env, kernel_id)
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    assert env == {"KFJUPYTER_BACKEND": "kubernetes", "KFJUPYTER_NAMESPACE": "team-a", "KFJUPYTER_IMAGE": "ghcr.io/x/y:1"}


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("KFJUPYTER_BACKEND", "kubernetes")
    monkeypatch.setenv("KFJUPYTER_NAMESPACE", "ns-1")
    monkeypatch.setenv("KFJUPYTER_IMAGE", "img:2")
    assert KFJupyter().to_dict() == {
        "default_backend": "kubernetes",
        "namespace": "ns-1",
        "image": "img:2",
        "backends": ["local", "kubernetes"],
    }
    for bad in ({"default_backend": "slurm"}, {"namespace": "Not_DNS"}, {"image": "a b"}, {"poll_interval": 0}):
        with pytest.raises(TraitError):
            KFJupyter(**bad)


# -- the watcher on its own ------------------------------------------------------------------------
def test_watcher_reports_each_change_once_and_follows_old_active_jobs():
    import kfjupyter
    from kfjupyter_server.watcher import JobWatcher

    watcher = JobWatcher(limit=1)  # only the newest job's page: older active jobs are followed anyway
    old = kfjupyter.train("print('old')", name="old", user_ns={}).wait(60)
    assert watcher.scan() == []  # the first look only records what is there
    sleeper = kfjupyter.train(SLEEPER, name="sleeper", user_ns={})
    try:
        assert [d["id"] for d in watcher.scan()] == [sleeper.id]
        newer = kfjupyter.train("print('new')", name="newer", user_ns={}).wait(60, raise_on_failure=False)
        assert newer.id in [d["id"] for d in watcher.scan()]
        sleeper.cancel()
        changed = watcher.scan()
        assert [(d["id"], d["status"]) for d in changed] == [(sleeper.id, st.CANCELLED)]
        assert watcher.scan() == []
        assert old.id not in watcher._snapshot  # finished and off the page: forgotten
    finally:
        sleeper.cancel()


# -- errors and jobs not yet submitted ---------------------------------------------------------
@async_test
async def test_backend_failures_and_unexpected_errors(jp_fetch, monkeypatch):
    from kfjupyter.errors import BackendError
    from kfjupyter.jobs import Job

    job = await train("print('hi')", name="one", wait=True)

    def refuse(self):
        raise BackendError("the Kubernetes API at https://cluster refused: 100% busy")

    def crash(self, rank=None):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(Job, "cancel", refuse)
    monkeypatch.setattr(Job, "metrics", crash)
    code, body = await error_of(jp_fetch, "jobs", job.id, "cancel", method="POST")
    assert code == 502 and body == {"message": "the Kubernetes API at https://cluster refused: 100% busy", "reason": "BackendError"}
    code, body = await error_of(jp_fetch, "jobs", job.id, "metrics")
    assert code == 500 and body == {"message": "Unhandled error", "reason": "InternalError"}


@async_test
async def test_a_job_recorded_but_not_yet_submitted(jp_fetch, event_stream):
    from kfjupyter.store.models import JobRecord
    from kfjupyter.store.workspace import get_workspace

    ws = get_workspace()
    ws.add_job(JobRecord(id="early-00001", name="early", kind="train", backend="local", status=st.PENDING, workers=2, spec={}, backend_info={}))
    assert (await get_json(jp_fetch, "jobs", "early-00001"))["status"] == st.PENDING
    assert (await get_json(jp_fetch, "jobs", "early-00001", "logs", rank=1))["lines"] == []
    assert (await get_json(jp_fetch, "jobs", "early-00001", "metrics"))["metrics"] == []
    stream = event_stream("jobs", "early-00001", "logs", "stream")
    await stream.until(lambda s: "connected" in s.comments)
    await asyncio.sleep(0.3)
    assert not stream.done and stream.events == []  # it waits for the job to reach its backend
    ws.update_job("early-00001", status=st.FAILED, error="submission failed")
    await stream.finished(10)
    assert stream.events == [("end", {"status": st.FAILED})]


@async_test
async def test_watcher_idles_while_nobody_listens():
    from kfjupyter_server.watcher import JobWatcher

    watcher = JobWatcher(interval=0.05)
    scans = 0
    real_scan = watcher.scan

    def counting_scan():
        nonlocal scans
        scans += 1
        return real_scan()

    watcher.scan = counting_scan
    await watcher.wait_ready()  # the baseline look
    await asyncio.sleep(0.5)
    assert scans == 1
    queue = watcher.subscribe()
    await asyncio.sleep(0.5)
    assert scans > 3
    watcher.unsubscribe(queue)
    await watcher.stop()
    assert not watcher.running


@async_test
async def test_log_stream_reports_a_failure_midway(jp_fetch, event_stream, monkeypatch):
    from kfjupyter.errors import BackendError
    from kfjupyter.jobs import Job

    job = await train("print('hi')", name="one", wait=True)

    def broken_logs(self, rank=0, follow=False, tail=None, **_channel):
        yield "a line"
        raise BackendError("lost the pod's log")

    monkeypatch.setattr(Job, "logs", broken_logs)
    stream = event_stream("jobs", job.id, "logs", "stream")
    response = await stream.finished(10)
    assert response.code == 200
    assert stream.events == [("message", "a line"), ("error", {"message": "lost the pod's log", "reason": "BackendError"})]


@async_test
async def test_any_channel_of_any_job_streams_and_a_childs_ends_with_the_child(jp_fetch, event_stream, tmp_path):
    from pipeline_notebooks import write_notebook

    nb = write_notebook(
        tmp_path / "two.ipynb",
        [(["step:quick"], "print('quick done', flush=True)\nx = 1"),
         (["step:slow"], "import time\nprint('slow started', flush=True)\ntime.sleep(2)\nprint('slow done', x, flush=True)")],
        name="two",
    )  # fmt: skip
    run = await blocking(kfjupyter.run_pipeline, nb, cache=False)
    job = await get_json(jp_fetch, "jobs", run.id)
    check_schema(job, "Job")
    assert [c["name"] for c in job["channels"]["logs"]] == ["run"]
    children = await get_json(jp_fetch, "jobs", run.id, "children")
    check_schema(children, "ChildList")
    assert [(c["name"], c["channel"]) for c in children["children"]] == [("quick", "step/quick"), ("slow", "step/slow")]
    # the first step's channel ends with the step, while the run goes on
    quick = event_stream("jobs", run.id, "logs", "stream", channel="step/quick")
    await quick.finished(30)
    assert ("message", "quick done") in quick.events
    assert quick.events[-1][0] == "end" and quick.events[-1][1]["child"] == "quick"
    assert quick.events[-1][1]["child_status"] == st.SUCCEEDED
    slow = event_stream("jobs", run.id, "logs", "stream", channel="step/slow")
    await slow.finished(30)
    assert [e for e in slow.events if e[0] == "message"] == [("message", "slow started"), ("message", "slow done 1")]
    once = event_stream("jobs", run.id, "logs", "stream", channel="step/slow", tail=1, follow="false")
    await once.finished(10)
    assert once.events == [("message", "slow done 1"), ("end", {"status": st.SUCCEEDED, "child": "slow", "child_status": st.SUCCEEDED})]
    lines = await get_json(jp_fetch, "jobs", run.id, "logs", channel="step/quick")
    assert lines["lines"] == ["quick done"] and lines["channel"] == "step/quick"
    code, body = await error_of(jp_fetch, "jobs", run.id, "logs", "stream", channel="step/nope")
    assert code == 400 and "no log channel 'step/nope'" in body["message"]


@async_test
async def test_a_sweeps_metric_ranks_are_its_runs(jp_fetch, tmp_path):
    from test_notebook_runs import make_notebook

    nb = make_notebook(tmp_path / "nb.ipynb", "a = 1", "import kfjupyter\nkfjupyter.report(score=a * 10.0)")
    sweep = await blocking(kfjupyter.run_notebook, nb, sweep={"a": [1, 2, 3]}, max_parallel=3, wait=True)
    assert sweep.status == st.SUCCEEDED, sweep.error
    job = await get_json(jp_fetch, "jobs", sweep.id)
    assert [(c["name"], c["rank"]) for c in job["channels"]["metrics"]] == [("run/1", 0), ("run/2", 1), ("run/3", 2)]
    # ranks 0..2 though the sweep's `workers` column holds its parallelism, not its runs
    rows = (await get_json(jp_fetch, "jobs", sweep.id, "metrics", rank=2))["metrics"]
    assert [(r["rank"], r["score"]) for r in rows] == [(2, 30.0)]
    run2 = (await get_json(jp_fetch, "jobs", sweep.id, "metrics", channel="run/2"))["metrics"]
    assert [(r["rank"], r["score"]) for r in run2] == [(1, 20.0)]
    code, body = await error_of(jp_fetch, "jobs", sweep.id, "metrics", rank=3)
    assert code == 400 and "ranks 0..2" in body["message"]
