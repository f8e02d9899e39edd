"""The server extension's tuning routes (``/studies``) against real local studies."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from kfjupyter import status as st
from kfjupyter.store.models import JobRecord
from kfjupyter.store.workspace import get_workspace
from kfjupyter.tuning.space import SearchSpace, as_param_spec
from kfjupyter.tuning.spec import TuneSpec
from kfjupyter.tuning.study import Study
from kfjupyter_server.watcher import JobWatcher

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
    tune,
)

pytestmark = AUTH_WARNINGS_ARE_ERRORS


def has_offset(iso: str | None) -> bool:
    return iso is not None and datetime.fromisoformat(iso).utcoffset() is not None


def tune_record(name: str, status: str = st.PENDING) -> str:
    """A study's job record that no backend has (yet): its id."""
    spec = TuneSpec(objective="loss", space=SearchSpace(x=as_param_spec("x", {"low": 0.0, "high": 1.0})), name=name)
    job_id = spec.new_job_id()
    get_workspace().add_job(
        JobRecord(id=job_id, name=name, kind="tune", backend="local", status=status, workers=1,
                  spec=spec.to_dict(), backend_info={})  # fmt: skip
    )
    return job_id


def test_the_watcher_sends_a_job_whose_message_changed():
    """A study's progress is its record's message: a new message alone is a change."""
    job_id = tune_record("progress", status=st.SUCCEEDED)
    watcher = JobWatcher(interval=0.1)
    assert watcher.scan() == []  # the baseline
    get_workspace().update_job(job_id, message="1/4 trials done, 2 running")
    (changed,) = watcher.scan()
    assert changed["id"] == job_id and changed["message"] == "1/4 trials done, 2 running"
    assert changed["status"] == st.SUCCEEDED
    assert watcher.scan() == []


def job_events(stream, study_id: str) -> list[dict]:
    return [d for e, d in stream.events if e == "job" and d["id"] == study_id]


@async_test
async def test_a_study_live_then_listed_read_and_its_trial_logs(jp_fetch, event_stream):
    assert await get_json(jp_fetch, "studies") == {"studies": [], "total": 0, "limit": 50, "offset": 0}
    other = await train("print('hi')", name="not-a-study", wait=True)  # jobs of other kinds are no study
    stream = event_stream("events")
    await stream.until(lambda s: "connected" in s.comments)

    # 6 trials, 2 at a time, each reporting 3 steps 0.2 s apart
    study = await tune("live", trials=6, parallel=2, steps=3, sleep=0.2, wait=False)
    running = await get_json(jp_fetch, "studies", study.id)
    check_schema(running, "Study")
    assert running["id"] == study.id and running["status"] in (st.PENDING, st.RUNNING)

    # the job events follow the study's progress, not only its status: each trial that
    # starts or ends changes the record's message, and the watcher sends the new record
    done = await stream.until(lambda s: [d for d in job_events(s, study.id) if d["status"] == st.SUCCEEDED], timeout=60)
    events = job_events(stream, study.id)
    assert all(e["kind"] == "tune" for e in events)
    progress = [e["message"] for e in events if e["status"] == st.RUNNING and e["message"]]
    assert len(set(progress)) >= 2, [(e["status"], e["message"], e["started_at"]) for e in events]
    assert done[0]["message"].startswith("6/6 trials done, 0 running; best loss=")

    data = await get_json(jp_fetch, "studies", study.id)
    check_schema(data, "Study")
    assert set(data) == set(await blocking(lambda: Study(study.id).to_dict()))
    assert data["status"] == st.SUCCEEDED and data["name"] == "live" and data["backend"] == "local"
    assert (data["objective"], data["direction"], data["algorithm"]) == ("loss", "minimize", "random")
    assert (data["trials_budget"], data["parallel"], data["workers_per_trial"]) == (6, 2, 1)
    assert data["space"]["x"]["type"] == "double"
    trials = sorted(data["trials"], key=lambda t: t["number"])
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4, 5]
    assert {t["state"] for t in trials} == {"COMPLETE"}
    for t in trials:
        assert 0.0 <= t["params"]["x"] <= 1.0
        assert list(t["intermediate"]) == ["0", "1", "2"]
        assert t["value"] == min(t["intermediate"].values())
        assert t["duration_s"] >= 0.3 and has_offset(t["datetime_start"]) and has_offset(t["datetime_complete"])
        assert t["worker"] in (0, 1)
    best = min(trials, key=lambda t: t["value"])
    assert data["best"]["number"] == best["number"] and data["best"]["value"] == best["value"]
    assert has_offset(data["created_at"]) and data["created_at"].endswith("+00:00")

    page = await get_json(jp_fetch, "studies")
    check_schema(page, "StudyList")
    assert (page["total"], page["limit"], page["offset"]) == (1, 50, 0)
    (summary,) = page["studies"]
    assert "trials" not in summary and "space" not in summary
    assert summary["id"] == study.id and summary["status"] == st.SUCCEEDED
    assert summary["n_trials"] == 6 and summary["trial_counts"]["COMPLETE"] == 6 and summary["trial_counts"]["RUNNING"] == 0
    assert summary["best"] == data["best"] and summary["message"] == data["message"]

    # a trial's log: what that trial printed, and only that
    log = await get_json(jp_fetch, "studies", study.id, "trials", str(best["number"]), "log")
    check_schema(log, "TrialLog")
    assert log["study_id"] == study.id and log["number"] == best["number"]
    assert f"trial with x {best['params']['x']}" in log["lines"]
    others = {f"trial with x {t['params']['x']}" for t in trials if t is not best}
    assert not others & set(log["lines"])
    tail = await get_json(jp_fetch, "studies", study.id, "trials", str(best["number"]), "log", tail=1)
    assert tail["lines"] == log["lines"][-1:]

    # unknown studies, jobs that are no study, missing trials, bad numbers
    for parts, method in [
        (("studies", "nope-00000"), "GET"),
        (("studies", "nope-00000", "cancel"), "POST"),
        (("studies", "nope-00000", "trials", "0", "log"), "GET"),
        (("studies", other.id), "GET"),
        (("studies", other.id, "cancel"), "POST"),
        (("studies", other.id, "trials", "0", "log"), "GET"),
    ]:
        code, body = await error_of(jp_fetch, *parts, method=method)
        assert code == 404, parts
        check_schema(body, "Error")
        assert body["reason"] == "StudyNotFound" and parts[1] in body["message"], parts
    code, body = await error_of(jp_fetch, "studies", study.id, "trials", "6", "log")
    assert code == 404 and body["reason"] == "TrialNotFound" and "no trial 6" in body["message"]
    for bad in ("x", "-1", "1.5"):
        code, body = await error_of(jp_fetch, "studies", study.id, "trials", bad, "log")
        assert code == 400 and body["reason"] == "BadRequest", bad
    for params in ({"status": "Bogus"}, {"limit": -1}, {"limit": 1001}, {"offset": "two"}):
        code, body = await error_of(jp_fetch, "studies", **params)
        assert code == 400 and body["reason"] == "BadRequest", params
    code, body = await error_of(jp_fetch, "studies", study.id, "trials", "0", "log", tail=-2)
    assert code == 400


@async_test
async def test_cancel_a_running_study_and_list_filters(jp_fetch):
    first = await tune("quick")  # one trial, done
    study = await tune("sleepy", trials=4, parallel=2, steps=1, sleep=60, wait=False)

    async def trial_running() -> dict:
        while True:
            data = await get_json(jp_fetch, "studies", study.id)
            # (a study's first trials may start while it is still Pending)
            if data["status"] == st.RUNNING and any(t["state"] == "RUNNING" for t in data["trials"]):
                return data
            assert data["status"] in (st.PENDING, st.RUNNING), data
            await asyncio.sleep(0.1)

    running = await asyncio.wait_for(trial_running(), 30)
    assert running["status"] == st.RUNNING and running["best"] is None
    page = await get_json(jp_fetch, "studies", status=st.RUNNING)
    assert [s["id"] for s in page["studies"]] == [study.id] and page["total"] == 1
    assert page["studies"][0]["trial_counts"]["RUNNING"] >= 1

    response = await jp_fetch(API, "studies", study.id, "cancel", method="POST", body=b"")
    assert response.code == 200
    data = json.loads(response.body)
    check_schema(data, "Study")
    assert data["status"] == st.CANCELLED
    assert data["trials"] and not [t for t in data["trials"] if t["state"] in ("RUNNING", "WAITING")]
    cancelled = [t for t in data["trials"] if t["state"] == "CANCELLED"]
    assert cancelled and all(t["error"] for t in cancelled)
    assert await blocking(lambda: Study(study.id).status) == st.CANCELLED

    # a finished study is returned unchanged
    response = await jp_fetch(API, "studies", first.id, "cancel", method="POST", body=b"")
    again = json.loads(response.body)
    assert again["status"] == st.SUCCEEDED and again["trials"][0]["state"] == "COMPLETE"

    # newest first, paged, filtered
    page = await get_json(jp_fetch, "studies")
    assert [s["id"] for s in page["studies"]] == [study.id, first.id] and page["total"] == 2
    paged = await get_json(jp_fetch, "studies", limit=1, offset=1)
    assert [s["id"] for s in paged["studies"]] == [first.id] and (paged["total"], paged["limit"], paged["offset"]) == (2, 1, 1)
    assert await get_json(jp_fetch, "studies", limit=0) == {"studies": [], "total": 2, "limit": 0, "offset": 0}
    only = await get_json(jp_fetch, "studies", status=st.CANCELLED)
    assert [s["id"] for s in only["studies"]] == [study.id] and only["total"] == 1
    assert (await get_json(jp_fetch, "studies", status=st.RUNNING))["total"] == 0


@async_test
async def test_a_study_not_yet_submitted_has_no_trials(jp_fetch):
    """A study is recorded a moment before its backend has it: it reads as empty, not as an error."""
    job_id = tune_record("early")
    data = await get_json(jp_fetch, "studies", job_id)
    check_schema(data, "Study")
    assert data["status"] == st.PENDING and data["trials"] == [] and data["best"] is None
    (summary,) = (await get_json(jp_fetch, "studies"))["studies"]
    check_schema(summary, "StudySummary")
    assert summary["n_trials"] == 0 and summary["best"] is None
    code, body = await error_of(jp_fetch, "studies", job_id, "trials", "0", "log")
    assert code == 404 and body["reason"] == "TrialNotFound"
