"""A workspace written by the kfjupyter before the job core opens without losing anything."""

from __future__ import annotations

import sqlite3

import kfjupyter
from kfjupyter import status as st
from kfjupyter.store import workspace as wsmod

#: The two tables as kfjupyter 0.1 (before the job core) created them.
OLD_SCHEMA = """
CREATE TABLE jobs (id VARCHAR(63) NOT NULL PRIMARY KEY, name VARCHAR(63) NOT NULL, kind VARCHAR(20) NOT NULL,
    backend VARCHAR(20) NOT NULL, status VARCHAR(20) NOT NULL, workers INTEGER NOT NULL, spec JSON NOT NULL,
    backend_info JSON NOT NULL, error TEXT, message TEXT, notebook TEXT, cell TEXT, created_at DATETIME NOT NULL,
    started_at DATETIME, finished_at DATETIME);
CREATE TABLE pipeline_steps (run_id VARCHAR(63) NOT NULL, name VARCHAR(63) NOT NULL, pipeline VARCHAR(63) NOT NULL,
    position INTEGER NOT NULL, status VARCHAR(20) NOT NULL, cached BOOLEAN NOT NULL, cache_reason TEXT,
    cache_key VARCHAR(64), fingerprint JSON, outputs JSON NOT NULL, source_run VARCHAR(63), error TEXT,
    started_at DATETIME, finished_at DATETIME, PRIMARY KEY (run_id, name));
"""


def test_an_old_workspace_gains_the_new_columns_and_keeps_its_pipeline_steps(workspace):
    workspace.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(workspace / "kfjupyter.db")
    db.executescript(OLD_SCHEMA)
    spec = '{"pipeline": {"name": "demo", "steps": {"prep": {}, "train": {}}}, "parameters": {}}'
    db.execute("INSERT INTO jobs VALUES ('demo-1a2b3', 'demo', 'pipeline', 'local', 'Succeeded', 1, ?, '{}', NULL, "
               "'2 succeeded', NULL, NULL, '2026-11-30 10:00:00', '2026-11-30 10:00:01', '2026-11-30 10:00:09')", (spec,))
    for i, name in enumerate(("prep", "train")):
        db.execute("INSERT INTO pipeline_steps VALUES ('demo-1a2b3', ?, 'demo', ?, 'Succeeded', 0, 'not cached: first run',"
                   " 'k', ?, '{}', NULL, NULL, '2026-11-30 10:00:01', '2026-11-30 10:00:05')", (name, i, '{"program": "p"}'))
    db.commit()
    db.close()
    wsmod._cache.clear()

    run = kfjupyter.pipelines.get_run("demo-1a2b3")
    assert run.status == st.SUCCEEDED and run.end_reason is None  # the jobs table gained end_reason
    assert [(s["name"], s["status"], s["cache_reason"]) for s in run.steps] == [
        ("prep", "Succeeded", "not cached: first run"), ("train", "Succeeded", "not cached: first run")]  # fmt: skip
    assert [c.channel for c in run.children()] == ["step/prep", "step/train"]
    tables = {r[0] for r in sqlite3.connect(workspace / "kfjupyter.db").execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "pipeline_steps_v1" in tables and "pipeline_steps" not in tables  # adopted once, kept


def test_a_study_and_a_sweep_from_before_child_tasks_get_theirs_on_first_read(workspace, workdir):
    from test_notebook_runs import make_notebook

    from kfjupyter.store.models import ChildRecord
    from kfjupyter.store.workspace import get_workspace

    study = kfjupyter.tune("x = kfjupyter.param('x', low=0.0, high=1.0)\nkfjupyter.report(step=0, loss=x)", "loss",
                           trials=2, user_ns={}).wait(timeout=90)  # fmt: skip
    sweep = kfjupyter.run_notebook(make_notebook(workdir / "nb.ipynb", "a = 1", "b = a"), sweep={"a": [1, 2]}, wait=True)
    ws = get_workspace()
    with ws.session() as s, s.begin():  # as an earlier kfjupyter left them: no child rows
        s.query(ChildRecord).delete()
    assert [(c.name, c.status) for c in kfjupyter.jobs.get(study.id).children()] == [("0", "Succeeded"), ("1", "Succeeded")]
    runs = kfjupyter.jobs.get(sweep.id).children()
    assert [(c.name, c.job_ref, c.status) for c in runs] == [("1", f"{sweep.id}-1", "Succeeded"), ("2", f"{sweep.id}-2", "Succeeded")]
    assert "trial/1" in {c.channel for c in kfjupyter.jobs.get(study.id).children()}
