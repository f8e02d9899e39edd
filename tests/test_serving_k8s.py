"""Kubernetes endpoints: KServe InferenceServices, checked by the product before sending
and by the fake API server (the vendored CRD + KServe's webhook rules, its own code)."""

from __future__ import annotations

import copy
import json

import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter.errors import InvalidOptionError
from kfjupyter.k8s.schema import ManifestError
from kfjupyter.serving.kubernetes import build_isvc, validate_isvc

from fake_k8s import ApiError, InferenceServiceValidator, fake_k8s, fake_k8s_manual  # noqa: F401

S3 = "s3://models/iris/1/"
S3_2 = "s3://models/iris/2/"


@pytest.fixture
def iris(workspace):
    pytest.importorskip("sklearn")
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0, 0, 0, 0], [1, 1, 1, 1]], [0, 1])
    v1 = kfjupyter.register_model("iris", model, framework="sklearn")
    kfjupyter.registry.set_alias("iris", "production", v1.number)
    kfjupyter.register_model("iris", model, framework="sklearn")
    kfjupyter.registry.set_alias("iris", "staging", 2)


def _spec(**over):
    spec = {"name": "iris", "version": {"ref": "iris:1", "format": "sklearn", "uri": S3}, "canary": None,
            "canary_percent": 0, "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "min_replicas": 1, "max_replicas": 3, "deployment_mode": "RawDeployment"}
    spec.update(over)
    return spec


def test_manifest_is_valid_for_both_validators():
    manifest = build_isvc("iris-1a2b", _spec(), "team-a", canary_percent=10)
    validate_isvc(manifest)
    stored, warnings = InferenceServiceValidator().admit(manifest, strict=True)
    assert warnings == []
    pred = stored["spec"]["predictor"]
    assert pred["model"] == {"modelFormat": {"name": "sklearn"}, "storageUri": S3,
                             "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}}
    assert (pred["minReplicas"], pred["maxReplicas"], pred["canaryTrafficPercent"]) == (1, 3, 10)
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda m: m["spec"]["predictor"].update(canaryTrafficPercent=150), "canaryTrafficPercent"),
        (lambda m: m["spec"]["predictor"].update(minReplicas=5, maxReplicas=2), "minReplicas"),
        (lambda m: m["metadata"]["annotations"].update({"serving.kserve.io/deploymentMode": "Fast"}), "deploymentMode|annotations"),
        (lambda m: m["metadata"].update(name="1iris"), "metadata.name"),
        (lambda m: m["spec"]["predictor"]["model"].update(storageUrl="s3://x"), "storageUrl"),
        (lambda m: m["spec"]["predictor"].update(minReplicas="one"), "minReplicas"),
        (lambda m: m["spec"]["predictor"].update(sklearn={"storageUri": S3}), "predictor"),
    ],
)
def test_invalid_manifests_are_refused_by_both(change, where):
    import re

    manifest = build_isvc("iris-1a2b", _spec(), "team-a")
    bad = copy.deepcopy(manifest)
    change(bad)
    with pytest.raises(ManifestError) as ours:
        validate_isvc(bad)
    assert re.search(where, str(ours.value))
    with pytest.raises(ApiError) as theirs:
        InferenceServiceValidator().admit(bad, strict=True)
    assert theirs.value.code in (400, 422)


def test_deploy_promote_rollback_undeploy_on_the_fake_cluster(iris, fake_k8s):
    ep = kfjupyter.deploy(
        "iris@production", name="iris", backend="kubernetes", storage_uri=S3, canary="iris@staging",
        canary_storage_uri=S3_2, canary_percent=20, resources={"requests": {"cpu": "500m"}},
        min_replicas=1, max_replicas=2, deployment_mode="Serverless",
    )
    assert ep.status == st.RUNNING and ep.url == "http://iris.team-a.example.com"
    assert ep.versions == {"iris:1": 80, "iris:2": 20}
    isvc = fake_k8s.get("inferenceservices", "team-a", "iris")
    pred = isvc["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 20 and pred["model"]["storageUri"] == S3_2
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    traffic = {t["revisionName"]: t["percent"] for t in isvc["status"]["components"]["predictor"]["traffic"]}
    assert traffic == {"iris-predictor-00002": 20, "iris-predictor-00001": 80}
    creates = [r for r in fake_k8s.requests if r["method"] == "POST" and "inferenceservices" in r["path"]]
    assert len(creates) == 1 and creates[0]["query"].get("fieldValidation") == "Strict"
    assert [j.kind for j in kfjupyter.jobs.list()] == ["endpoint"]

    ep.promote()
    pred = fake_k8s.get("inferenceservices", "team-a", "iris")["spec"]["predictor"]
    assert "canaryTrafficPercent" not in pred and pred["model"]["storageUri"] == S3_2
    assert ep.versions == {"iris:2": 100}
    ep.rollback()
    pred = fake_k8s.get("inferenceservices", "team-a", "iris")["spec"]["predictor"]
    assert pred["model"]["storageUri"] == S3 and ep.versions == {"iris:1": 100}
    ep.undeploy()
    assert fake_k8s.get("inferenceservices", "team-a", "iris") is None
    assert ep.status == st.CANCELLED


def test_status_is_followed(iris, fake_k8s_manual):
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, wait=False)
    assert ep.status == st.PENDING and ep.url is None
    fake_k8s_manual.set_isvc_status("team-a", "iris", ready=True, url="http://iris.team-a.example.com")
    assert ep.status == st.RUNNING and ep.url == "http://iris.team-a.example.com"
    fake_k8s_manual.set_isvc_status("team-a", "iris", ready=False, reason="PredictorFailed", message="image pull")
    assert ep.status == st.FAILED and "image pull" in ep.job.error
    ep.undeploy()
    assert fake_k8s_manual.get("inferenceservices", "team-a", "iris") is None


def test_refused_before_sending(iris, fake_k8s_manual):
    with pytest.raises(InvalidOptionError, match="cannot read"):
        kfjupyter.deploy("iris@production", backend="kubernetes")  # a local file:// artifact
    with pytest.raises(InvalidOptionError, match="minReplicas"):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, min_replicas=3, max_replicas=1)
    with pytest.raises(InvalidOptionError, match="Serverless"):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, deployment_mode="Fast")
    with pytest.raises(InvalidOptionError, match="canary_percent"):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, canary="iris@staging", canary_percent=101)
    with pytest.raises(InvalidOptionError, match="cpu"):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, resources={"requests": {"cpu": "lots"}})
    kfjupyter.register_model("fn", lambda x: x, framework="custom")
    with pytest.raises(InvalidOptionError, match="locally"):
        kfjupyter.deploy("fn", backend="kubernetes", storage_uri=S3)
    assert not [r for r in fake_k8s_manual.requests if r["method"] == "POST"]
    assert kfjupyter.jobs.count(kind="endpoint") == 0


def test_kf_deploy_magic(iris, fake_k8s, shell):
    from conftest import run_cell

    res = run_cell(shell, f"%kf_deploy iris@production --name iris --backend kubernetes --storage-uri {S3} --out ep")
    assert res.error_in_exec is None, res.error_in_exec
    ep = shell.user_ns["ep"]
    assert ep.status == st.RUNNING and fake_k8s.get("inferenceservices", "team-a", "iris")
    res = run_cell(shell, "%kf_deploy iris@production --canary-percent lots")
    assert res.error_in_exec is not None and "UsageError" in type(res.error_in_exec).__name__
    res = run_cell(shell, "%kf_deploy --undeploy iris")
    assert res.error_in_exec is None
    assert ep.status == st.CANCELLED and fake_k8s.get("inferenceservices", "team-a", "iris") is None


def _predictor_pods(fake, revision: str | None = None) -> list[str]:
    selector = "serving.kserve.io/inferenceservice=iris,component=predictor"
    if revision:
        selector += f",serving.knative.dev/revision={revision}"
    return [p["metadata"]["name"] for p in fake.list("pods", "team-a", selector)]


def test_logs_are_the_predictor_pods_model_server_log(iris, fake_k8s):
    import threading

    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, canary="iris@staging",
                          canary_storage_uri=S3_2, canary_percent=20)
    (primary,) = _predictor_pods(fake_k8s, "iris-predictor-00001")
    (canary,) = _predictor_pods(fake_k8s, "iris-predictor-00002")
    fake_k8s.write_log("team-a", primary, "INFO:kserve:Registering model: iris", "INFO:uvicorn: 200 POST /v1/models/iris:predict")
    fake_k8s.write_log("team-a", canary, "INFO:kserve:Registering model: iris (canary)")
    assert ep.logs() == "INFO:kserve:Registering model: iris\nINFO:uvicorn: 200 POST /v1/models/iris:predict"
    assert ep.logs(tail=1) == "INFO:uvicorn: 200 POST /v1/models/iris:predict"
    assert ep.logs(server=1) == "INFO:kserve:Registering model: iris (canary)"
    reads = [r for r in fake_k8s.requests if r["path"].endswith("/log")]
    assert {r["query"]["container"] for r in reads} == {"kserve-container"}  # not queue-proxy
    with pytest.raises(InvalidOptionError, match="server 0"):
        ep.logs(server=-1)

    # follow: lines as the server prints them, until the pod goes
    seen, done = [], threading.Event()

    def follow():
        for line in ep.logs(server=1, follow=True):
            seen.append(line)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    fake_k8s.write_log("team-a", canary, "INFO:uvicorn: 200 POST /v2/models/iris/infer")
    import time

    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == ["INFO:kserve:Registering model: iris (canary)", "INFO:uvicorn: 200 POST /v2/models/iris/infer"]
    assert not done.is_set()
    ep.promote()  # the canary's spec becomes a new revision taking all the traffic: the old pods go
    assert done.wait(10) and len(seen) == 2
    with pytest.raises(InvalidOptionError, match="no canary"):
        ep.logs(server=1)
    (pod,) = _predictor_pods(fake_k8s)
    assert pod.startswith("iris-predictor-00003-") and ep.logs() == ""
    ep.undeploy()
    assert _predictor_pods(fake_k8s) == [] and ep.logs() == ""  # collected with their InferenceService


def test_logs_of_a_raw_deployment(iris, fake_k8s):
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, deployment_mode="RawDeployment")
    (pod,) = _predictor_pods(fake_k8s)
    fake_k8s.write_log("team-a", pod, "INFO:kserve:Registering model: iris")
    assert ep.logs() == "INFO:kserve:Registering model: iris"
    ep.undeploy()


def test_a_refused_undeploy_leaves_the_endpoint_serving(iris, fake_k8s, monkeypatch):
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    from kfjupyter.errors import BackendError

    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3)

    def forbidden(*args, **kwargs):
        raise ApiException(status=403, reason="Forbidden")

    with monkeypatch.context() as m:
        m.setattr(CustomObjectsApi, "delete_namespaced_custom_object", forbidden)
        with pytest.raises(BackendError, match="Forbidden"):
            ep.undeploy()
    assert ep.status == st.RUNNING and ep.record.finished_at is None and "undeploy failed" in ep.record.message
    assert fake_k8s.get("inferenceservices", "team-a", "iris") is not None
    ep.undeploy()
    assert ep.status == st.CANCELLED and fake_k8s.get("inferenceservices", "team-a", "iris") is None


# -- transformer, explainer, logger, batcher ------------------------------------------------------
PREP = '''
import numpy as np
SCALE = 10.0

def scale(x):
    return np.asarray(x, dtype=float) / SCALE

class Prep:
    def preprocess(self, x):
        return scale(x)

def explain(x, predict):
    return [{"prediction": p} for p in predict(x)]
'''


def _components(shell):
    from conftest import run_cell

    assert run_cell(shell, PREP).success
    return shell.user_ns


def test_manifest_with_every_component_is_valid_for_both_validators(tmp_path):
    spec = _spec(transformer={"kind": "code", "label": "Prep", "bundle": "components/transformer/bundle"},
                 explainer={"kind": "code", "label": "explain", "bundle": "components/explainer/bundle"},
                 log="all", log_sink="http://message-dumper.team-a.svc.cluster.local", max_batch_size=32, max_latency_ms=50,
                 image="registry.example/team/serve:1")  # fmt: skip
    items = [{"key": "transformer.bundle.program.py", "path": "transformer/bundle/program.py"},
             {"key": "transformer.server.json", "path": "transformer/server.json"},
             {"key": "explainer.bundle.program.py", "path": "explainer/bundle/program.py"},
             {"key": "explainer.server.json", "path": "explainer/server.json"}]  # fmt: skip
    manifest = validate_isvc(build_isvc("iris-1a2b", spec, "team-a", items=items))
    stored, warnings = InferenceServiceValidator().admit(manifest, strict=True)
    assert warnings == []
    pred = stored["spec"]["predictor"]
    assert pred["logger"] == {"mode": "all", "url": "http://message-dumper.team-a.svc.cluster.local"}
    assert pred["batcher"] == {"maxBatchSize": 32, "maxLatency": 50}
    for role in ("transformer", "explainer"):
        (container,) = stored["spec"][role]["containers"]
        assert container["image"] == "registry.example/team/serve:1"
        assert container["command"] == ["python", "-m", "kfjupyter.serving.server", f"/opt/kfjupyter/components/{role}"]
        (volume,) = stored["spec"][role]["volumes"]
        assert volume["configMap"]["name"] == "iris-1a2b-bundle"
        assert {i["path"] for i in volume["configMap"]["items"]} == {f"{role}/bundle/program.py", f"{role}/server.json"}
    # what either validator refuses: a logger without an http(s) sink, a batch size that is no integer
    for change, where in ((lambda m: m["spec"]["predictor"]["logger"].update(url="kafka://x"), "logger"),
                          (lambda m: m["spec"]["predictor"]["batcher"].update(maxBatchSize="32"), "maxBatchSize"),
                          (lambda m: m["spec"]["predictor"]["logger"].update(mode="some"), "mode")):  # fmt: skip
        bad = copy.deepcopy(manifest)
        change(bad)
        if where != "logger":
            with pytest.raises(ApiError, match=where):
                InferenceServiceValidator().admit(bad, strict=True)
        with pytest.raises(ManifestError, match=where):
            validate_isvc(bad)


def test_deploy_with_transformer_explainer_logger_and_batcher_on_the_fake_cluster(iris, fake_k8s, shell):
    ns = _components(shell)
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3, transformer=ns["Prep"],
                          explainer=ns["explain"], log="request", log_sink="http://sink.team-a.svc", max_batch_size=8,
                          max_latency_ms=20, image="registry.example/team/serve:1")  # fmt: skip
    assert ep.status == st.RUNNING
    isvc = fake_k8s.get("inferenceservices", "team-a", "iris")
    assert isvc["spec"]["predictor"]["logger"] == {"mode": "request", "url": "http://sink.team-a.svc"}
    assert isvc["spec"]["predictor"]["batcher"] == {"maxBatchSize": 8, "maxLatency": 20}
    # the captured code travels as a training job's does: in a ConfigMap the service owns
    cm = fake_k8s.get("configmaps", "team-a", f"{ep.id}-bundle")
    assert "def scale(x):" in cm["data"]["transformer.bundle.program.py"] and "class Prep:" in cm["data"]["transformer.bundle.program.py"]
    config = json.loads(cm["data"]["transformer.server.json"])
    assert config["predictor_url"] == "http://iris-predictor.team-a" and config["explainer_url"] == "http://iris-explainer.team-a"
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    # the fake API serves the components' status; the endpoint's children show it
    comps = isvc["status"]["components"]
    assert comps["transformer"]["url"] == "http://iris-transformer.team-a.example.com" and "explainer" in comps
    kids = {k.name: k for k in ep.job.children()}
    assert set(kids) == {"primary", "transformer", "explainer"} and {k.status for k in kids.values()} == {st.RUNNING}
    assert kids["transformer"].attrs["url"] == "http://iris-transformer.team-a.example.com"
    fake_k8s.set_component_status("team-a", "iris", "transformer", ready=False, reason="RevisionFailed",
                                  message="ImagePullBackOff")
    assert ep.status == st.FAILED and "the transformer is not ready (RevisionFailed: ImagePullBackOff)" in ep.job.error
    assert ep.job.child("transformer").status == st.FAILED
    with pytest.raises(InvalidOptionError, match="KServe's logger"):
        ep.stats()
    ep.undeploy()
    assert fake_k8s.get("inferenceservices", "team-a", "iris") is None and fake_k8s.get("configmaps", "team-a", f"{ep.id}-bundle") is None


def test_components_are_refused_before_sending(iris, fake_k8s_manual, shell):
    ns = _components(shell)
    with pytest.raises(InvalidOptionError, match="image="):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, transformer=ns["Prep"])
    with pytest.raises(InvalidOptionError, match="log_sink="):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, log="all")
    with pytest.raises(InvalidOptionError, match="log_sample applies to local"):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, log="all", log_sink="http://s", log_sample=0.5)
    with pytest.raises(InvalidOptionError, match="max_batch_size"):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, max_batch_size=0)
    with pytest.raises(InvalidOptionError, match="shap.*local"):
        kfjupyter.deploy("iris@production", backend="kubernetes", storage_uri=S3, explainer="shap")
    assert not [r for r in fake_k8s_manual.requests if r["method"] == "POST"]
    assert kfjupyter.jobs.count(kind="endpoint") == 0
