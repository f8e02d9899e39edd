"""Kubernetes behaviour that a real API server shows and the product must follow.

First the fake API server itself (tests/fake_k8s.py), checked against what kube-apiserver
and its garbage collector do: deletion with finalizers and ``propagationPolicy``, WATCH
with ``resourceVersion``, bookmarks, ``timeoutSeconds`` and 410 Gone, request counting.
Then the product on it: a cancel reads Cancelling while the deletion runs and Cancelled
once the object is gone, for every kind; a canary deploy with ``wait=False`` returns at
once; a deploy that times out says what it left; and a follower of a job costs the API
server (almost) nothing in steady state: it watches, or backs off where it cannot.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from fake_k8s import fake_k8s, fake_k8s_manual  # noqa: F401
from fake_kfp import kfp_executor, kfp_server  # noqa: F401
from kubernetes.client.exceptions import ApiException

import kfjupyter
from kfjupyter import status as st
from kfjupyter.k8s.client import connect, merge_patch

pytestmark = pytest.mark.timeout(120)
NS = "team-a"
CM = f"/api/v1/namespaces/{NS}/configmaps"


def _configmap(core, name: str, owner: dict | None = None, block: bool = True, finalizers: list | None = None) -> dict:
    meta: dict = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block}]  # fmt: skip
    if finalizers:
        meta["finalizers"] = finalizers
    resp = core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}, _preload_content=False)
    return json.loads(resp.data)


def _delete(core, name: str, policy: str | None = None) -> dict:
    resp = core.delete_namespaced_config_map(name, NS, propagation_policy=policy, _preload_content=False)
    return json.loads(resp.data)


def _watch(core, **query) -> list[dict]:
    resp = core.list_namespaced_config_map(NS, watch=True, _preload_content=False, **query)
    return [json.loads(line) for line in resp.data.decode().splitlines() if line]


# -- the fake API server ----------------------------------------------------------------------------
def test_a_foreground_delete_keeps_the_owner_until_the_garbage_collector_removed_its_dependants(fake_k8s_manual):
    fake, core = fake_k8s_manual, connect().core
    owner = _configmap(core, "owner")
    _configmap(core, "blocking", owner)
    _configmap(core, "free", owner, block=False)
    with fake.gc_paused():
        answer = _delete(core, "owner", "Foreground")
        # not deleted yet: the answer is the object, marked, with the foregroundDeletion finalizer
        assert answer["kind"] == "ConfigMap" and answer["metadata"]["deletionTimestamp"]
        assert answer["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert {c["metadata"]["name"] for c in fake.list("configmaps", NS)} == {"owner", "blocking", "free"}
        assert _delete(core, "owner", "Foreground")["metadata"]["deletionTimestamp"]  # deleting again: the same
        assert fake.gc_tick()  # the dependants go …
        assert [c["metadata"]["name"] for c in fake.list("configmaps", NS)] == ["owner"]
        assert fake.gc_tick()  # … then, none blocking, the finalizer and the owner
        assert fake.list("configmaps", NS) == [] and not fake.gc_tick()
    events = [(e["type"], e["object"]["metadata"]["name"]) for e in _watch(core, resource_version=owner["metadata"]["resourceVersion"], timeout_seconds=1)]
    assert events[-1] == ("DELETED", "owner") and ("MODIFIED", "owner") in events


def test_finalizers_hold_a_deleted_object_until_a_client_removes_them(fake_k8s_manual):
    fake, core = fake_k8s_manual, connect().core
    held = _configmap(core, "held", finalizers=["example.com/hold"])
    answer = _delete(core, "held")  # Background, but a finalizer holds it
    assert answer["metadata"]["deletionTimestamp"] and answer["metadata"]["finalizers"] == ["example.com/hold"]
    time.sleep(0.1)  # the garbage collector runs: it does not own that finalizer
    assert fake.get("configmaps", NS, "held")["metadata"]["finalizers"] == ["example.com/hold"]
    with pytest.raises(ApiException) as refused:  # none can be added to an object being deleted
        merge_patch(core.patch_namespaced_config_map, "held", NS, {"metadata": {"finalizers": ["example.com/hold", "x.io/more"]}})
    assert refused.value.status == 422 and "no new finalizers" in refused.value.body
    stale = {**held, "metadata": {**held["metadata"], "finalizers": []}}
    with pytest.raises(ApiException) as conflict:  # a PUT of an old resourceVersion
        core.replace_namespaced_config_map("held", NS, stale)
    assert conflict.value.status == 409
    current = fake.get("configmaps", NS, "held")
    current["metadata"]["finalizers"] = []
    core.replace_namespaced_config_map("held", NS, current)
    assert fake.get("configmaps", NS, "held") is None


def test_an_orphan_delete_leaves_the_dependants_without_their_owner(fake_k8s_manual):
    fake, core = fake_k8s_manual, connect().core
    owner = _configmap(core, "owner")
    _configmap(core, "child", owner)
    with fake.gc_paused():
        assert _delete(core, "owner", "Orphan")["metadata"]["finalizers"] == ["orphan"]
        assert fake.gc_tick()
    wait = time.monotonic() + 5
    while fake.get("configmaps", NS, "owner") and time.monotonic() < wait:
        time.sleep(0.02)
    assert fake.get("configmaps", NS, "owner") is None
    assert "ownerReferences" not in fake.get("configmaps", NS, "child")["metadata"] or \
        fake.get("configmaps", NS, "child")["metadata"]["ownerReferences"] == []


def test_a_background_delete_removes_at_once_and_collects_the_dependants_on_the_next_pass(fake_k8s_manual):
    fake, core = fake_k8s_manual, connect().core
    owner = _configmap(core, "owner")
    _configmap(core, "child", owner)
    with fake.gc_paused():
        assert _delete(core, "owner")["kind"] == "Status"
        assert [c["metadata"]["name"] for c in fake.list("configmaps", NS)] == ["child"]
        assert fake.gc_tick() and fake.list("configmaps", NS) == []


def test_watch_resumes_from_a_resource_version_sends_bookmarks_ends_on_time_and_says_410_when_too_old(tmp_path, monkeypatch):
    from fake_k8s import _running

    fake = _running(tmp_path, monkeypatch, run_pods=False, bookmark_interval=0.3)
    try:
        core = connect().core
        first = _configmap(core, "a")
        _configmap(core, "b")
        started = time.monotonic()
        events = _watch(core, resource_version=first["metadata"]["resourceVersion"], allow_watch_bookmarks=True, timeout_seconds=1)
        assert 0.9 < time.monotonic() - started < 3  # timeoutSeconds ends the stream
        kinds = [e["type"] for e in events]
        assert kinds[0] == "ADDED" and events[0]["object"]["metadata"]["name"] == "b"  # only what came after
        assert "BOOKMARK" in kinds and set(events[kinds.index("BOOKMARK")]["object"]) == {"kind", "apiVersion", "metadata"}
        assert events[kinds.index("BOOKMARK")]["object"]["metadata"]["resourceVersion"] == str(fake.rv)
        assert [e["type"] for e in _watch(core, timeout_seconds=1)] == ["ADDED", "ADDED"]  # no version: the state first
        assert "BOOKMARK" not in [e["type"] for e in _watch(core, resource_version=str(fake.rv), timeout_seconds=1)]
        fake.compact()
        (gone,) = _watch(core, resource_version=first["metadata"]["resourceVersion"], timeout_seconds=5)
        assert gone["type"] == "ERROR" and gone["object"]["code"] == 410 and gone["object"]["reason"] == "Expired"
        with pytest.raises(ApiException) as ahead:
            _watch(core, resource_version=str(fake.rv + 100), timeout_seconds=1)
        assert ahead.value.status == 504
    finally:
        fake.stop()


def test_the_fake_counts_requests_by_verb_and_object(fake_k8s_manual):
    fake, core = fake_k8s_manual, connect().core
    _configmap(core, "x")
    core.read_namespaced_config_map("x", NS)
    core.list_namespaced_config_map(NS, field_selector="metadata.name=x")
    core.list_namespaced_config_map(NS)
    assert fake.count("create", CM) == 1 and fake.count("get", f"{CM}/x") == 1
    assert fake.count("list", f"{CM}/x") == 1 and fake.count("list", CM) == 1 and fake.count() == 4
    assert fake.counts[("get", f"{CM}/x")] == 1


# -- a cancel is Cancelling, then Cancelled ---------------------------------------------------------
TUNE_CELL = """x = kfjupyter.param("x", low=-3.0, high=3.0)
kfjupyter.report(step=0, loss=x * x)
"""
TRAIN_CELL = "print('hello')\n"
EXP = "/apis/kubeflow.org/v1beta1/namespaces/team-a/experiments"
TJ = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/team-a/inferenceservices"


def test_cancel_of_a_katib_study_reads_cancelling_while_the_foreground_delete_runs_then_cancelled(fake_k8s_manual, workdir):
    fake = fake_k8s_manual
    study = kfjupyter.tune(TUNE_CELL, "loss", trials=4, backend="kubernetes", name="stop-me", user_ns={})
    fake.add_trial(NS, study.id, {"x": "1.0"}, "Running")
    fake.update_experiment(NS, study.id)
    assert study.status == st.RUNNING
    with fake.gc_paused():
        study.cancel()
        exp = fake.get("experiments", NS, study.id)
        assert exp["metadata"]["deletionTimestamp"] and exp["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert study.status == st.CANCELLING and "being deleted" in study.job.record.message
        assert not study.job.done
        fake.gc_tick()  # the Trials go (blockOwnerDeletion) …
        assert fake.list("trials", NS) == [] and study.status == st.CANCELLING
        fake.gc_tick()  # … then the Experiment
    assert fake.get("experiments", NS, study.id) is None
    assert study.status == st.CANCELLED
    assert fake.get("configmaps", NS, f"{study.id}-bundle") is None
    assert all(k.status == st.CANCELLED for k in study.job.children())


def test_cancel_of_a_trainjob_held_by_a_finalizer_reads_cancelling_until_it_is_gone(fake_k8s_manual, workdir):
    fake, custom = fake_k8s_manual, connect().custom
    job = kfjupyter.train(TRAIN_CELL, workers=1, backend="kubernetes", name="held", user_ns={})
    hold = {"metadata": {"finalizers": ["kueue.x-k8s.io/resource-in-use"]}}  # a controller's finalizer
    merge_patch(custom.patch_namespaced_custom_object, "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", job.id, hold)
    job.cancel()
    assert job.status == st.CANCELLING and fake.get("trainjobs", NS, job.id)["metadata"]["deletionTimestamp"]
    assert "kueue.x-k8s.io/resource-in-use" in job.record.message
    merge_patch(custom.patch_namespaced_custom_object, "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", job.id,
                {"metadata": {"finalizers": None}})  # fmt: skip
    assert job.status == st.CANCELLED and fake.get("trainjobs", NS, job.id) is None


@pytest.fixture
def iris(workspace):
    pytest.importorskip("sklearn")
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0, 0, 0, 0], [1, 1, 1, 1]], [0, 1])
    kfjupyter.registry.set_alias("iris", "production", kfjupyter.register_model("iris", model, framework="sklearn").number)
    kfjupyter.registry.set_alias("iris", "staging", kfjupyter.register_model("iris", model, framework="sklearn").number)


S3, S3_2 = "s3://models/iris/1/", "s3://models/iris/2/"


def test_undeploy_of_an_inference_service_held_by_kserves_finalizer_reads_cancelling_then_cancelled(iris, fake_k8s_manual):
    fake, custom = fake_k8s_manual, connect().custom
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, wait=False)
    hold = {"metadata": {"finalizers": ["inferenceservice.finalizers"]}}  # KServe's controller adds it
    merge_patch(custom.patch_namespaced_custom_object, "serving.kserve.io", "v1beta1", NS, "inferenceservices", "iris", hold)
    fake.set_isvc_status(NS, "iris", ready=True)
    assert ep.status == st.RUNNING
    ep.undeploy()
    assert ep.status == st.CANCELLING and fake.get("inferenceservices", NS, "iris")["metadata"]["deletionTimestamp"]
    merge_patch(custom.patch_namespaced_custom_object, "serving.kserve.io", "v1beta1", NS, "inferenceservices", "iris",
                {"metadata": {"finalizers": None}})  # fmt: skip
    assert ep.status == st.CANCELLED and fake.get("inferenceservices", NS, "iris") is None


def test_cancel_of_a_kfp_run_reads_cancelling_while_kfp_terminates_it_then_cancelled(kfp_server, tmp_path):
    from test_pipeline_kfp import hand_made

    from kfjupyter.pipelines.kubernetes import KFPPipelineBackend

    backend = KFPPipelineBackend()
    info = backend.submit_pipeline("hand-c1c2c", hand_made(), None, tmp_path / "job")
    backend.cancel("hand-c1c2c", info)
    assert backend.observe("hand-c1c2c", info).status == st.CANCELLING  # KFP's CANCELING
    assert backend.observe("hand-c1c2c", info).status == st.CANCELLED  # CANCELED


def test_cancelling_is_a_job_state_everywhere_the_states_are_listed():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    assert st.CANCELLING in st.ALL and st.CANCELLING not in st.TERMINAL and st.CANCELLING in st.ACTIVE
    spec = yaml.safe_load((root / "server_ext/openapi.yaml").read_text())
    enums = [s["enum"] for s in _schemas(spec) if "Cancelled" in (s.get("enum") or [])]
    assert enums and all("Cancelling" in e for e in enums)
    event = yaml.safe_load((root / "server_ext/kfjupyter_server/events/job.yaml").read_text())
    assert "Cancelling" in next(s["enum"] for s in _schemas(event) if "Cancelled" in (s.get("enum") or []))
    assert "'Cancelling'" in (root / "labextension/src/types.ts").read_text()


def _schemas(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _schemas(v)
    elif isinstance(node, list):
        for v in node:
            yield from _schemas(v)


# -- deploy: no blocking with wait=False, nothing unsaid on a timeout --------------------------------
def test_a_canary_deploy_with_wait_false_returns_at_once_and_the_canary_follows_when_the_primary_is_ready(iris, fake_k8s_manual):
    fake = fake_k8s_manual
    started = time.monotonic()
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, canary="iris@staging",
                          canary_storage_uri=S3_2, canary_percent=20, wait=False)  # fmt: skip
    assert time.monotonic() - started < 5, "deploy(wait=False) blocked"
    isvc = fake.get("inferenceservices", NS, "iris")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == S3 and "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert ep.status == st.PENDING
    fake.set_isvc_status(NS, "iris", ready=True)  # the primary is rolled out …
    assert ep.status == st.PENDING  # … and whoever looks at the endpoint patches the canary in
    pred = fake.get("inferenceservices", NS, "iris")["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 20 and pred["model"]["storageUri"] == S3_2
    fake.set_isvc_status(NS, "iris", ready=True)  # KServe rolled out the canary's revision
    assert ep.status == st.RUNNING and ep.job.engine.rolled_out(ep.info)
    patches = [r for r in fake.requests if r["verb"] == "patch"]
    assert len(patches) == 1  # once
    ep.status  # noqa: B018
    assert len([r for r in fake.requests if r["verb"] == "patch"]) == 1


def test_a_deploy_that_times_out_removes_the_inference_service_it_created_and_says_so(iris, fake_k8s_manual):
    fake = fake_k8s_manual
    fake_ready = threading.Timer(0.3, lambda: fake.set_isvc_status(NS, "iris", ready=False, reason="RevisionMissing",
                                                                     message="Revision iris-predictor-00001 is pending"))  # fmt: skip
    fake_ready.start()
    with pytest.raises(TimeoutError) as raised:
        kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, wait=True, timeout=2)
    text = str(raised.value)
    assert "InferenceService team-a/iris" in text and "removed" in text and "Revision iris-predictor-00001 is pending" in text
    assert fake.get("inferenceservices", NS, "iris") is None
    (record,) = kfjupyter.jobs.list(kind="endpoint")
    assert record.status in (st.CANCELLED, st.CANCELLING) and "not ready" in (record.record.message or "")


# -- followers watch (or back off): the API server's load ----------------------------------------------
STEADY_S = 3.0


def _rate_while(fake_count, follower, window: float = STEADY_S, settle: float = 1.0) -> tuple[float, threading.Thread]:
    """Requests per second while ``follower`` (started in a thread) waits in steady state."""
    thread = threading.Thread(target=follower, daemon=True)
    thread.start()
    time.sleep(settle)  # the first looks, the watches opened
    since = time.monotonic()
    time.sleep(window)
    rate = fake_count(since) / window
    return rate, thread


def test_a_follower_of_a_kubernetes_job_watches_and_costs_under_half_a_request_per_second(iris, fake_k8s_manual, workdir):
    fake = fake_k8s_manual
    figures = {}
    # a TrainJob, running
    job = kfjupyter.train(TRAIN_CELL, workers=1, backend="kubernetes", name="steady", user_ns={})
    fake.add_pod(NS, job.id, 0, "Running")
    assert job.status == st.RUNNING
    figures["TrainJob"], waiter = _rate_while(lambda since: fake.count(since=since), lambda: job.wait(timeout=60))
    fake.set_condition(NS, job.id, "Complete", "True", "AllJobsCompleted", "done")
    took = time.monotonic()
    waiter.join(10)
    assert not waiter.is_alive() and job.record.status == st.SUCCEEDED and time.monotonic() - took < 3
    # a Katib Experiment, running
    study = kfjupyter.tune(TUNE_CELL, "loss", trials=1, backend="kubernetes", name="steady", user_ns={})
    fake.add_trial(NS, study.id, {"x": "1.0"}, "Running")
    fake.update_experiment(NS, study.id)
    assert study.status == st.RUNNING
    figures["Experiment"], waiter = _rate_while(lambda since: fake.count(since=since), lambda: study.job.wait(timeout=60))
    fake.set_trial(NS, fake.list("trials", NS)[0]["metadata"]["name"], "Succeeded", {"loss": ("1", "1", "1")})
    fake.update_experiment(NS, study.id)
    took = time.monotonic()
    waiter.join(10)
    assert not waiter.is_alive() and study.job.record.status == st.SUCCEEDED and time.monotonic() - took < 3
    # an InferenceService, not Ready yet
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, wait=False)
    figures["InferenceService"], waiter = _rate_while(lambda since: fake.count(since=since), lambda: ep.wait_ready(timeout=60))
    fake.set_isvc_status(NS, "iris", ready=True)
    took = time.monotonic()
    waiter.join(10)
    assert not waiter.is_alive() and ep.record.status == st.RUNNING and time.monotonic() - took < 3
    print("\nrequests per second per watched object, steady state: "
          + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))  # fmt: skip
    assert all(v <= 0.5 for v in figures.values()), figures


def test_the_watch_resumes_from_its_last_version_and_relists_after_410(fake_k8s_manual, workdir, monkeypatch):
    from kfjupyter.k8s import observe

    monkeypatch.setattr(observe, "WATCH_TIMEOUT_S", 1)  # the server ends each watch after a second
    fake = fake_k8s_manual
    study = kfjupyter.tune(TUNE_CELL, "loss", trials=1, backend="kubernetes", name="resume", user_ns={})
    fake.add_trial(NS, study.id, {"x": "1.0"}, "Running")
    fake.update_experiment(NS, study.id)
    waiter = threading.Thread(target=lambda: study.job.wait(timeout=60), daemon=True)
    waiter.start()
    time.sleep(2.5)  # a watch or two ended and resumed from its resourceVersion
    resumed = [r for r in fake.requests if r["verb"] == "watch" and r["object"] == f"{EXP}/{study.id}"]
    assert len(resumed) >= 2 and all(r["query"].get("allowWatchBookmarks") in ("true", "True") for r in resumed)
    assert all(r["query"].get("resourceVersion") for r in resumed)
    fake.add_trial(NS, study.id, {"x": "2.0"}, "Created")  # something else moves on …
    fake.compact()  # … and the history is compacted: the next resume gets 410 Gone
    lists_before = fake.count("list", f"{EXP}/{study.id}")
    time.sleep(1.5)
    assert fake.count("list", f"{EXP}/{study.id}") > lists_before  # relisted after the 410
    fake.set_trial(NS, fake.list("trials", NS)[0]["metadata"]["name"], "Succeeded", {"loss": ("1", "1", "1")})
    fake.update_experiment(NS, study.id)
    fake.set_trial(NS, fake.list("trials", NS)[1]["metadata"]["name"], "Succeeded", {"loss": ("4", "4", "4")})
    fake.update_experiment(NS, study.id)
    waiter.join(10)
    assert not waiter.is_alive() and study.job.record.status == st.SUCCEEDED


def test_a_follower_of_a_kfp_run_backs_off(kfp_executor, workdir):
    from pipeline_notebooks import write_notebook

    nb = write_notebook(workdir / "long.ipynb", [(["imports"], "import time"), (["step:prepare"], "time.sleep(120)\nn = 1"),
                                                 (["step:double"], "total = n * 2")], name="long-pipe")  # fmt: skip
    run = kfjupyter.run_pipeline(nb, backend="kubernetes")
    run_path = f"/apis/v2beta1/runs/{run.record.backend_info['run_id']}"
    reads = lambda since: len([r for r in kfp_executor.requests if r["path"] == run_path and r["method"] == "GET"  # noqa: E731
                               and r["time"] >= since])  # fmt: skip
    rate, waiter = _rate_while(reads, lambda: run.wait(raise_on_failure=False, timeout=60), window=5.0, settle=3.5)
    print(f"\nKFP run reads per second while followed, steady state: {rate:.2f}")
    assert rate <= 0.5
    run.cancel()
    waiter.join(20)
    assert not waiter.is_alive() and run.record.status == st.CANCELLED
