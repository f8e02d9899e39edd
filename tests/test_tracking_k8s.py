"""MLflow tracking from Kubernetes jobs: the pods send their own runs.

Through the fake Kubernetes API (tests/fake_k8s.py: it validates what it is sent against
the upstream schemas and runs each pod's command as a local process with the pod's env, in
an "image" without the kfjupyter package) and the fake KFP (tests/fake_kfp.py, which runs
each step's command): the manifests carry what the pods need (and never a token), a URI no
pod can reach is refused before anything is sent, and, against a real ``mlflow server``,
``kfjupyter.report`` inside the pods lands in MLflow with its steps: a 2-node training, a
Katib trial, a pipeline's steps; a lost tracking server fails no pod.
"""

from __future__ import annotations

import json
import time
import warnings

import pytest
from fake_k8s import fake_k8s, fake_k8s_manual  # noqa: F401  (fixtures)
from fake_kfp import kfp_executor  # noqa: F401  (fixture)

import kfjupyter
from kfjupyter import status as st
from kfjupyter.errors import InvalidOptionError
from kfjupyter.runtime.processes import free_port
from kfjupyter.tracking import pods
from kfjupyter.tracking.pods import PodTrackingWarning

from mlflow_support import client, server  # noqa: F401  (fixtures)
from pipeline_notebooks import write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
NS = "team-a"
TRACKING_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", pods.CLUSTER_URI, pods.TOKEN_SECRET)


@pytest.fixture(autouse=True)
def no_tracking_config(monkeypatch):
    for name in TRACKING_VARS:
        monkeypatch.delenv(name, raising=False)


def env_of(container_env: list[dict]) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_env}


def trainer_env(fake, job_id: str) -> dict:
    return env_of(fake.get("trainjobs", NS, job_id)["spec"]["trainer"]["env"])


def runs_of(client, experiment: str, filter_string: str = "") -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string) if exp else []


def wait_for_runs(client, experiment, filter_string, count, timeout=60, ended=True):
    deadline = time.monotonic() + timeout
    while True:
        found = runs_of(client, experiment, filter_string)
        if (len(found) >= count and (not ended or all(r.info.status != "RUNNING" for r in found))) or \
                time.monotonic() > deadline:  # fmt: skip
            return found
        time.sleep(0.3)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("uri, problem", [
    ("http://127.0.0.1:5000", "this machine's loopback address (127.0.0.1)"),
    ("http://localhost:5000", "this machine's loopback address (localhost)"),
    ("http://[::1]:5000", "this machine's loopback address (::1)"),
    ("http://0.0.0.0:5000", "this machine's loopback address (0.0.0.0)"),
    ("/home/me/mlruns", "a store on this machine's disk"),
    ("file:///home/me/mlruns", "a store on this machine's disk"),
    ("sqlite:///mlflow.db", "a store on this machine's disk"),
])  # fmt: skip
def test_a_tracking_uri_no_pod_can_reach_is_refused_before_anything_is_sent(fake_k8s_manual, workdir, monkeypatch,
                                                                            uri, problem):  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    before = len(fake_k8s_manual.requests)
    with pytest.raises(InvalidOptionError) as refused:
        kfjupyter.train("kfjupyter.report(step=0, loss=1.0)", backend="kubernetes", user_ns={})
    text = str(refused.value)
    assert f"MLFLOW_TRACKING_URI={uri!r} is {problem}, which a Kubernetes pod cannot reach" in text
    assert pods.CLUSTER_URI in text and "'none'" in text and "nothing was submitted" in text
    assert len(fake_k8s_manual.requests) == before and kfjupyter.jobs.count() == 0
    # the same for a study: refused before its Experiment is sent
    with pytest.raises(InvalidOptionError, match="cannot reach"):
        kfjupyter.tune("kfjupyter.report(loss=kfjupyter.param('x', 0.0, 1.0))", "loss", backend="kubernetes", user_ns={})
    assert len(fake_k8s_manual.requests) == before and kfjupyter.jobs.count() == 0


def test_the_cluster_uri_wins_none_turns_tracking_off_and_bad_settings_are_refused(fake_k8s_manual, workdir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # the notebook's own server
    monkeypatch.setenv(pods.CLUSTER_URI, "none")
    job = kfjupyter.train("pass", backend="kubernetes", user_ns={})
    assert not any(k.startswith(("MLFLOW_", "KFJUPYTER_MLFLOW")) for k in trainer_env(fake_k8s_manual, job.id))
    assert "kf_mlflow.py" not in fake_k8s_manual.get("configmaps", NS, f"{job.id}-bundle")["data"]
    before = len(fake_k8s_manual.requests), kfjupyter.jobs.count()
    for name, value, match in [
        (pods.CLUSTER_URI, "file:///mnt/mlruns", "a pod has no such folder"),
        (pods.TOKEN_SECRET, "Bad_Secret", "Secret name 'Bad_Secret'"),
        (pods.TOKEN_SECRET, "mlflow-auth/bad key", "key 'bad key'"),
    ]:
        with monkeypatch.context() as mp:
            mp.setenv(pods.CLUSTER_URI, "http://mlflow.mlflow.svc.cluster.local:5000")
            mp.setenv(name, value)
            with pytest.raises(InvalidOptionError, match=match):
                kfjupyter.train("pass", backend="kubernetes", user_ns={})
    assert (len(fake_k8s_manual.requests), kfjupyter.jobs.count()) == before


def test_the_trainjob_carries_what_its_pods_need_and_a_secret_reference_never_the_token(fake_k8s_manual, workdir,
                                                                                       monkeypatch):  # fmt: skip
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the run cannot be created up front
    monkeypatch.setenv(pods.CLUSTER_URI, closed)
    monkeypatch.setenv(pods.TOKEN_SECRET, "mlflow-auth")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret-mlflow-token")
    with pytest.warns(PodTrackingWarning) as said:
        job = kfjupyter.train("kfjupyter.report(step=0, loss=1.0)", workers=2, name="fit", backend="kubernetes",
                              user_ns={}, experiment="k8s-manifest")  # fmt: skip
    texts = [str(w.message) for w in said]
    assert any("loopback" in t and "sidecar" in t for t in texts), texts
    assert any("could not be created from here" in t and "its pods create it" in t for t in texts), texts
    env = trainer_env(fake_k8s_manual, job.id)  # the fake accepted it: it validates against the TrainJob CRD
    assert env["MLFLOW_TRACKING_URI"] == closed and env["KFJUPYTER_MLFLOW_TRACKER"] == "1"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "k8s-manifest" and env["KFJUPYTER_RUN_ID"] == job.id
    assert env["KFJUPYTER_RUN_NAME"] == "fit" and "MLFLOW_RUN_ID" not in env  # not created: the pods will
    assert env["MLFLOW_TRACKING_TOKEN"] == {"secretKeyRef": {"name": "mlflow-auth", "key": "token"}}
    configmap = fake_k8s_manual.get("configmaps", NS, f"{job.id}-bundle")
    assert "kf_mlflow.py" in configmap["data"] and "def main():" in configmap["data"]["kf_mlflow.py"]
    everything = json.dumps(fake_k8s_manual.requests) + json.dumps(configmap)
    assert "s3cret-mlflow-token" not in everything


def test_a_katib_trial_template_carries_what_its_pod_needs(fake_k8s_manual, workdir, monkeypatch):
    monkeypatch.setenv(pods.CLUSTER_URI, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(pods.TOKEN_SECRET, "mlflow-auth/api-token")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PodTrackingWarning)
        for workers in (1, 2):
            study = kfjupyter.tune("kfjupyter.report(loss=kfjupyter.param('x', 0.0, 1.0))", "loss", trials=2,
                                   workers_per_trial=workers, backend="kubernetes", user_ns={}, experiment="k8s-kt")  # fmt: skip
            trial_spec = fake_k8s_manual.get("experiments", NS, study.id)["spec"]["trialTemplate"]["trialSpec"]
            if workers == 1:
                env = env_of(trial_spec["spec"]["template"]["spec"]["containers"][0]["env"])
            else:
                env = env_of(trial_spec["spec"]["trainer"]["env"])
            assert env["KFJUPYTER_RUN_KIND"] == "trial" and env["KFJUPYTER_RUN_NAME"] == "${trialParameters.kfjupyterTrialName}"
            assert env["MLFLOW_TRACKING_TOKEN"] == {"secretKeyRef": {"name": "mlflow-auth", "key": "api-token"}}
            assert env["KFJUPYTER_PARAM_x"] == "${trialParameters.x}" and "MLFLOW_RUN_ID" not in env


# --------------------------------------------------------------------------- against a real MLflow server

DDP = """
import torch.distributed as dist
dist.init_process_group()
rank = dist.get_rank()
for step in range(steps):
    kfjupyter.report(step=step, loss=lr * (steps - step) + rank)
if rank == 0:
    (kfjupyter.output_dir() / "model.txt").write_text("weights")
dist.destroy_process_group()
"""


def test_a_two_node_trainjob_reports_from_its_pods_to_mlflow(fake_k8s, workdir, client, server, monkeypatch):
    monkeypatch.setenv(pods.CLUSTER_URI, server.uri)  # the fake's pods are local processes: loopback reaches it
    with pytest.warns(PodTrackingWarning, match="sidecar"):
        job = kfjupyter.train(DDP, workers=2, name="ddp-k8s", backend="kubernetes", user_ns={"steps": 5, "lr": 0.1},
                              experiment="k8s-train")  # fmt: skip
    env = trainer_env(fake_k8s, job.id)
    created = client.get_run(env["MLFLOW_RUN_ID"])  # created up front, before the TrainJob
    assert created.data.tags["kfjupyter.run_id"] == job.id and created.data.params["lr"] == "0.1"
    assert env["MLFLOW_EXPERIMENT_ID"] == created.info.experiment_id
    assert job.wait(timeout=120).status == st.SUCCEEDED, job.error
    run = wait_for_runs(client, "k8s-train", f"attributes.run_id = '{created.info.run_id}'", 1)[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "ddp-k8s"
    assert run.data.params["workers"] == "2" and run.data.params["steps"] == "5"
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    assert [(m.step, round(m.value, 6)) for m in history] == [(s, round(0.1 * (5 - s), 6)) for s in range(5)]
    assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "rank-1/loss"), key=lambda m: m.step)] \
        == list(range(5))  # fmt: skip
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"outputs", "program"} <= artifacts, artifacts
    assert len(runs_of(client, "k8s-train")) == 1  # one run: the pods logged into the one made up front
    # the MLflow client's own search finds it, by param and metric
    assert len(runs_of(client, "k8s-train", "params.lr = '0.1' and metrics.loss < 0.2")) == 1


LOST = """
for step in range(3):
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
print("trained", flush=True)
"""


def test_a_lost_tracking_server_fails_no_pod(fake_k8s, workdir, monkeypatch):
    monkeypatch.setenv(pods.CLUSTER_URI, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PodTrackingWarning)
        job = kfjupyter.train(LOST, name="lost", backend="kubernetes", user_ns={}, env={"KFJUPYTER_TRACKING_FLUSH_S": "1"})
    assert job.wait(timeout=120).status == st.SUCCEEDED, job.error
    log = job.logs()
    assert "trained" in log and "unreachable" in log and "the job goes on" in log and "not sent in 1 s" in log
    assert [m["loss"] for m in job.metrics()] == [1.0, 0.5, 1.0 / 3]  # what Kubernetes' own channel reads


TRIAL = """
x = kfjupyter.param("x", low=0.0, high=1.0)
for step in range(3):
    kfjupyter.report(step=step, score=(x - 0.3) ** 2 + step)
"""


def test_katib_trials_report_from_their_pods_as_nested_runs(fake_k8s, workdir, client, server, monkeypatch):
    monkeypatch.setenv(pods.CLUSTER_URI, server.uri)
    with pytest.warns(PodTrackingWarning, match="sidecar"):
        study = kfjupyter.tune(TRIAL, "score", trials=2, parallel=1, backend="kubernetes", name="kt", user_ns={},
                               experiment="k8s-tune")  # fmt: skip
    parent = runs_of(client, "k8s-tune", f"tags.`kfjupyter.run_id` = '{study.id}'")
    assert len(parent) == 1 and parent[0].data.params["objective"] == "score"
    for x in ("0.25", "0.5"):
        trial = fake_k8s.run_trial(NS, study.id, {"x": x})
        assert [c["type"] for c in trial["status"]["conditions"]][-1] == "Succeeded"
    assert study.status == st.SUCCEEDED
    nested = wait_for_runs(client, "k8s-tune", f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'", 2)
    assert sorted(r.data.params["x"] for r in nested) == ["0.25", "0.5"]
    for run in nested:
        assert run.info.status == "FINISHED" and run.data.tags["kfjupyter.kind"] == "trial"
        assert run.info.run_name.startswith(study.id)  # the Trial's name
        assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "score"), key=lambda m: m.step)] \
            == [0, 1, 2]  # fmt: skip
    # the study's own run is ended from here once the study is seen ending
    ended = wait_for_runs(client, "k8s-tune", f"attributes.run_id = '{parent[0].info.run_id}'", 1)
    assert ended[0].info.status == "FINISHED"


def test_pipeline_steps_on_kfp_report_from_their_pods_as_nested_runs(kfp_executor, workdir, client, server,
                                                                     monkeypatch):  # fmt: skip
    monkeypatch.setenv(pods.CLUSTER_URI, server.uri)
    nb = write_notebook(workdir / "kpipe.ipynb", [
        (["imports"], "import kfjupyter"),
        (["pipeline-parameters"], "C = 2"),
        (["step:prep"], "data = list(range(C))\nfor i, v in enumerate(data):\n    kfjupyter.report(step=i, rows=i + 1)"),
        (["step:fit"], "kfjupyter.report(step=0, score=sum(data) * 1.5)"),
    ])  # fmt: skip
    with pytest.warns(PodTrackingWarning, match="sidecar"):
        run = kfjupyter.run_pipeline(nb, {"C": 4}, experiment="k8s-pipe", backend="kubernetes", cache=False)
    parent = runs_of(client, "k8s-pipe", f"tags.`kfjupyter.run_id` = '{run.id}'")
    assert len(parent) == 1 and parent[0].data.params["C"] == "4"
    assert run.wait(timeout=120, poll=0.1).status == st.SUCCEEDED, run.error
    steps = wait_for_runs(client, "k8s-pipe", f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'", 2)
    by_name = {r.info.run_name: r for r in steps}
    assert set(by_name) == {"prep", "fit"}
    assert by_name["fit"].data.metrics["score"] == 9.0 and by_name["fit"].data.tags["kfjupyter.run_id"] == f"{run.id}.fit"
    assert by_name["prep"].data.params["C"] == "4" and by_name["prep"].info.status == "FINISHED"
    history = sorted(client.get_metric_history(by_name["prep"].info.run_id, "rows"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]
    assert "program" in {a.path for a in client.list_artifacts(by_name["fit"].info.run_id)}
    ended = wait_for_runs(client, "k8s-pipe", f"attributes.run_id = '{parent[0].info.run_id}'", 1)
    assert ended[0].info.status == "FINISHED"


def test_a_run_created_up_front_is_ended_failed_when_the_submission_then_fails(fake_k8s_manual, workdir, client,
                                                                               server, monkeypatch):  # fmt: skip
    from kfjupyter.capture.program import capture_cell, write_bundle
    from kfjupyter.errors import BackendError
    from kfjupyter.k8s.client import connect
    from kfjupyter.training.kubernetes import trainjob_manifest
    from kfjupyter.training.spec import TrainSpec
    from kubernetes import client as k8s

    taken = trainjob_manifest("dup-x1y2z", NS, TrainSpec(name="dup"), [], None)
    taken["spec"]["suspend"] = True
    k8s.CustomObjectsApi(connect().api_client).create_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", taken)
    monkeypatch.setenv(pods.CLUSTER_URI, server.uri)
    program = capture_cell("kfjupyter.report(loss=1.0)", {}, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PodTrackingWarning)
        with pytest.raises(BackendError, match="already exists"):
            kfjupyter.jobs.create(TrainSpec(name="dup", backend="kubernetes"), job_id="dup-x1y2z", experiment="k8s-fail",
                                  prepare=lambda job_id, job_dir: write_bundle(program, job_dir / "bundle"))  # fmt: skip
    [run] = runs_of(client, "k8s-fail", "tags.`kfjupyter.run_id` = 'dup-x1y2z'")
    assert run.info.status == "FAILED"
    assert kfjupyter.jobs.get("dup-x1y2z").status == st.FAILED
