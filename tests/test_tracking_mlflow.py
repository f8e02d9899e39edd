"""Runs copied to a real MLflow tracking server (``mlflow server``, SQLite backend, a free
loopback port), live while the job runs; a server that goes away mid-job loses nothing."""

from __future__ import annotations

import time

import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter import tracking

from conftest import wait_for
from mlflow_support import client, server, wait_ended  # noqa: F401  (fixtures)
from pipeline_notebooks import write_notebook

pytestmark = pytest.mark.slow


DDP = """
import torch.distributed as dist
dist.init_process_group()
rank = dist.get_rank()
for step in range(steps):
    kfjupyter.report(step=step, loss=lr * (steps - step) + rank)
if rank == 0:
    (kfjupyter.output_dir() / "model.txt").write_text("weights")
"""


def test_a_two_rank_training_lands_in_mlflow(workdir, client):
    job = kfjupyter.train(DDP, workers=2, name="ddp", user_ns={"steps": 5, "lr": 0.1}, experiment="mlf-train").wait()
    run = wait_ended(client, "mlf-train", job.id)
    assert run.info.status == "FINISHED" and run.info.run_name == "ddp"
    assert run.data.params["lr"] == "0.1" and run.data.params["steps"] == "5" and run.data.params["workers"] == "2"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == [
        (s, round(0.1 * (5 - s), 6)) for s in range(5)
    ]
    assert len(client.get_metric_history(run.info.run_id, "rank-1/loss")) == 5
    assert run.data.tags["kfjupyter.job_id"] == job.id and run.data.tags["kfjupyter.packages"].startswith("sha256:")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"outputs", "program"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "outputs")] == ["outputs/model.txt"]
    # the MLflow client's own search finds it; kfjupyter reads the experiment back
    exp = client.get_experiment_by_name("mlf-train")
    assert len(client.search_runs([exp.experiment_id], "params.lr = '0.1' and metrics.loss < 0.2")) == 1
    frame = kfjupyter.runs(experiment="mlf-train", source="mlflow")
    assert list(frame["tags.kfjupyter.job_id"]) == [job.id]


TUNE = """
x = kfjupyter.param("x", low=0.0, high=1.0)
for step in range(3):
    kfjupyter.report(step=step, score=(x - 0.3) ** 2 + step)
"""


def test_a_study_and_its_trials_land_in_mlflow(workdir, client):
    study = kfjupyter.tune(TUNE, "score", trials=3, parallel=1, algorithm="random", name="st", user_ns={},
                           experiment="mlf-tune", seed=1).wait()  # fmt: skip
    parent = wait_ended(client, "mlf-tune", study.job.id)
    exp = client.get_experiment_by_name("mlf-tune")
    trials = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(trials) == 3
    ours = {r.run_id: r for r in tracking.search_runs("mlf-tune", filter="attributes.kind = 'trial'")[0]}
    for trial in trials:
        mine = ours[trial.data.tags["kfjupyter.run_id"]]
        assert float(trial.data.params["x"]) == pytest.approx(mine.params["x"])
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "score")] == [0, 1, 2]
    assert parent.data.params["objective"] == "score" and parent.data.params["trials"] == "3"


def test_a_pipeline_run_and_its_steps_land_in_mlflow(workdir, client):
    nb = write_notebook(workdir / "pipe.ipynb", [
        (["imports"], "import kfjupyter"),
        (["pipeline-parameters"], "C = 2"),
        (["step:prep"], "data = list(range(C))\nkfjupyter.report(step=0, rows=len(data))"),
        (["step:fit"], "kfjupyter.report(step=0, score=sum(data) * 1.5)"),
    ])  # fmt: skip
    run = kfjupyter.run_pipeline(nb, {"C": 4}, experiment="mlf-pipe", cache=False, wait=True)
    parent = wait_ended(client, "mlf-pipe", run.id)
    assert parent.data.params["C"] == "4"
    step = wait_ended(client, "mlf-pipe", f"{run.id}.fit")
    assert step.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert step.data.metrics["score"] == 9.0 and step.info.status == "FINISHED"
    assert tracking.get_run(f"{run.id}.prep").metrics == {"rows": 4.0}


SLOW = """
import os, time
def gate(name):  # the test opens it (at most 120 s)
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(gates, name)) and time.monotonic() < deadline:
        time.sleep(0.05)
for step in range(steps):
    if step == 20:
        gate("server-stopped")
    if step == 120:
        gate("server-back")
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
    time.sleep(0.01)
"""


def test_a_server_lost_mid_job_loses_nothing(workdir, client, server):
    """Points reported while the tracking server is down (steps 20-119: the job waits at
    gates the test opens, so it is running whatever the machine's load) reach it later."""
    gates = workdir / "gates"
    gates.mkdir()
    job = kfjupyter.train(SLOW, workers=1, name="slow", user_ns={"steps": 150, "gates": str(gates)},
                          experiment="mlf-lost")  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the copy is live: points arrive while the job runs
        exp = client.get_experiment_by_name("mlf-lost")
        if exp and client.search_runs([exp.experiment_id]) and client.get_metric_history(
                client.search_runs([exp.experiment_id])[0].info.run_id, "loss"):  # fmt: skip
            break
        time.sleep(0.2)
    assert job.status == st.RUNNING
    server.stop()
    (gates / "server-stopped").touch()
    wait_for(lambda: len(job.metrics()) >= 120, timeout=60)  # reported, with the server down
    assert job.status == st.RUNNING  # the job goes on without its server
    server.start()
    (gates / "server-back").touch()
    job.wait()
    run = wait_ended(client, "mlf-lost", job.id, timeout=60)
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
    assert steps == list(range(150))
    log = job.logs()
    assert "unreachable" in log and "is back" in log
