"""A deployment recorded in Kubeflow Model Registry: a Kubernetes endpoint (the fake
cluster) with the remote registry (the fake Model Registry, which checks every request and
answer against the vendored OpenAPI description) becomes an InferenceService entity in the
ServingEnvironment of its namespace; promote/rollback move its modelVersionId; undeploy
marks it UNDEPLOYED. The embedded registry records nothing remote, and local endpoints are
not recorded (a process on 127.0.0.1 is nobody else's deployment)."""

from __future__ import annotations

import json

import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter.registry.remote import decode_value

from fake_k8s import fake_k8s, fake_k8s_manual  # noqa: F401
from fake_model_registry import FakeModelRegistry
from registry_support import CONFIG

pytestmark = pytest.mark.timeout(120)

S3, S3_2 = "s3://models/iris/1/", "s3://models/iris/2/"


@pytest.fixture(params=["v1", "v1alpha3"])
def mr(request, workspace, monkeypatch):
    for name in CONFIG:
        monkeypatch.delenv(name, raising=False)
    with FakeModelRegistry(request.param) as fake:
        monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_URL", fake.url)
        yield fake


def _iris() -> None:
    pytest.importorskip("sklearn")
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0, 0, 0, 0], [1, 1, 1, 1]], [0, 1])
    kfjupyter.register_model("iris", model, framework="sklearn", aliases="production")
    kfjupyter.register_model("iris", model, framework="sklearn", aliases="staging")


def _refused(fake) -> list[dict]:
    return [r for r in fake.requests if r.get("status", 200) >= 400 and r["method"] != "GET"]


def _ids(fake) -> tuple[str, dict[int, str]]:
    (model,) = fake.store.models.values()
    versions = {int(decode_value(v["customProperties"]["kfjupyter.number"])): v["id"] for v in fake.store.versions.values()}
    return model["id"], versions


def _props(entity: dict) -> dict:
    return {k: decode_value(v) for k, v in (entity.get("customProperties") or {}).items()}


def test_a_kubernetes_deploy_is_an_inference_service_entity(mr, fake_k8s):
    _iris()
    model_id, versions = _ids(mr)
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3)
    assert ep.status == st.RUNNING

    (env,) = mr.store.environments.values()
    assert env["name"] == "team-a"  # the fake cluster's namespace
    (isvc,) = mr.store.inference_services.values()
    assert isvc["name"] == "iris" and isvc["servingEnvironmentId"] == env["id"]
    assert isvc["registeredModelId"] == model_id and isvc["modelVersionId"] == versions[1]
    assert isvc["desiredState"] == "DEPLOYED" and isvc["runtime"] == "kserve"
    assert _props(isvc)["kfjupyter.endpoint_id"] == ep.id and _props(isvc)["kfjupyter.version"] == "iris:1"
    record = ep.info["model_registry"]
    assert record == {"inference_service_id": isvc["id"], "serving_environment_id": env["id"],
                      "registered_model_id": model_id, "model_version_id": versions[1], "endpoint_id": ep.id}
    # what Kubeflow's UI reads back: the model and the version served
    base = f"/api/model_registry/{mr.api}/inference_services/{isvc['id']}"
    assert mr.handle("GET", base + "/model", b"", {}) [1]["id"] == model_id
    assert mr.handle("GET", base + "/version", b"", {})[1]["id"] == versions[1]

    ep.undeploy()
    assert ep.status == st.CANCELLED and fake_k8s.get("inferenceservices", "team-a", "iris") is None
    isvc = mr.store.inference_services[isvc["id"]]
    assert isvc["desiredState"] == "UNDEPLOYED"
    assert isvc["modelVersionId"] == versions[1] and isvc["registeredModelId"] == model_id  # kept on the PATCH
    assert _props(isvc)["kfjupyter.endpoint_id"] == ep.id
    assert _refused(mr) == []

    # deployed again under the same name: the same entity, DEPLOYED again, for the new endpoint
    again = kfjupyter.deploy("iris@staging", name="iris", backend="kubernetes", storage_uri=S3_2)
    (isvc,) = mr.store.inference_services.values()
    assert (isvc["desiredState"], isvc["modelVersionId"]) == ("DEPLOYED", versions[2])
    assert _props(isvc)["kfjupyter.endpoint_id"] == again.id
    ep.undeploy()  # the old endpoint, undeployed again, does not touch the new deployment
    assert mr.store.inference_services[isvc["id"]]["desiredState"] == "DEPLOYED"
    again.undeploy()
    assert mr.store.inference_services[isvc["id"]]["desiredState"] == "UNDEPLOYED"
    assert len(mr.store.environments) == 1 and _refused(mr) == []


def test_canary_promote_and_rollback_move_the_model_version(mr, fake_k8s):
    _iris()
    model_id, versions = _ids(mr)
    ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3,
                          canary="iris@staging", canary_storage_uri=S3_2, canary_percent=20)
    (isvc,) = mr.store.inference_services.values()
    assert isvc["modelVersionId"] == versions[1]  # the stable version; the canary beside it
    props = _props(isvc)
    assert (props["kfjupyter.canary_version_id"], props["kfjupyter.canary_version"], props["kfjupyter.canary_percent"]) == (
        versions[2], "iris:2", 20)

    ep.promote()
    isvc = mr.store.inference_services[isvc["id"]]
    assert isvc["modelVersionId"] == versions[2] and isvc["desiredState"] == "DEPLOYED"
    assert "kfjupyter.canary_version_id" not in isvc["customProperties"]
    assert ep.info["model_registry"]["model_version_id"] == versions[2]
    ep.rollback()
    isvc = mr.store.inference_services[isvc["id"]]
    assert isvc["modelVersionId"] == versions[1] and _props(isvc)["kfjupyter.version"] == "iris:1"
    assert ep.info["model_registry"]["model_version_id"] == versions[1]
    ep.undeploy()
    assert mr.store.inference_services[isvc["id"]]["desiredState"] == "UNDEPLOYED"
    assert _refused(mr) == []
    patches = [r for r in mr.requests if r["method"] == "PATCH" and "/inference_services/" in r["path"]]
    assert len(patches) == 3 and all("registeredModelId" not in r["body"] for r in patches)


def test_a_refusing_registry_warns_and_the_endpoint_still_serves(mr, fake_k8s):
    _iris()
    mr.store.environments["999"] = {"id": "999", "name": "team-a", "createTimeSinceEpoch": "1", "lastUpdateTimeSinceEpoch": "1"}
    model = next(iter(mr.store.models.values()))
    other = {"id": "998", "name": "iris", "servingEnvironmentId": "999", "registeredModelId": "997",
             "createTimeSinceEpoch": "1", "lastUpdateTimeSinceEpoch": "1"}
    mr.store.inference_services["998"] = other  # "iris" in team-a serves another model
    assert model["id"] != "997"
    with pytest.warns(UserWarning, match="did not record it: .*another model"):
        ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3)
    assert ep.status == st.RUNNING and "another model" in ep.info["model_registry"]["error"]
    ep.undeploy()  # nothing recorded, nothing to mark
    assert mr.store.inference_services["998"] == other and ep.status == st.CANCELLED


def test_the_fake_keeps_inference_services_to_the_spec(mr):
    base = f"/api/model_registry/{mr.api}"

    def call(method, path, body=None):
        return mr.handle(method, base + path, json.dumps(body).encode() if body is not None else b"", {})

    status, model = call("POST", "/registered_models", {"name": "iris"})
    _, version = call("POST", "/model_versions", {"name": "1", "registeredModelId": model["id"]})
    _, other = call("POST", "/registered_models", {"name": "other"})
    _, env = call("POST", "/serving_environments", {"name": "team-a"})
    assert call("POST", "/serving_environments", {"name": "team-a"})[0] == 409
    assert call("GET", "/serving_environment?name=team-a")[1]["id"] == env["id"]
    body = {"name": "iris", "servingEnvironmentId": env["id"], "registeredModelId": model["id"],
            "modelVersionId": version["id"], "desiredState": "DEPLOYED", "runtime": "kserve"}
    status, isvc = call("POST", "/inference_services", body)
    assert status in (200, 201) and isvc["desiredState"] == "DEPLOYED"  # v0.3 answers 200, as its spec says
    assert call("POST", "/inference_services", body)[0] == 409  # a name once per environment
    assert call("POST", "/inference_services", {**body, "name": "x", "desiredState": "GONE"})[0] == 400
    assert call("POST", "/inference_services", {**body, "name": "x", "registeredModelId": other["id"]})[0] == 400
    assert call("POST", "/inference_services", {**body, "name": "x", "servingEnvironmentId": "77"})[0] == 400
    assert call("POST", "/inference_services", {k: v for k, v in body.items() if k != "servingEnvironmentId"})[0] == 400
    assert call("PATCH", f"/inference_services/{isvc['id']}", {"name": "renamed"})[0] == 400  # not an update field
    found = call("GET", f"/inference_service?name=iris&parentResourceId={env['id']}")
    assert found[0] == 200 and found[1]["id"] == isvc["id"]
    _, listed = call("GET", f"/serving_environments/{env['id']}/inference_services")
    assert [i["id"] for i in listed["items"]] == [isvc["id"]]
    status, patched = call("PATCH", f"/inference_services/{isvc['id']}", {"desiredState": "UNDEPLOYED"})
    assert status == 200 and "modelVersionId" not in patched  # the strict PATCH: what is left out is cleared
    assert call("GET", f"/inference_services/{isvc['id']}/version")[1]["id"] == version["id"]  # the latest, then
    assert call("GET", f"/inference_services/{isvc['id']}/serves")[0] == 500  # not implemented, and says so


def test_an_embedded_registry_records_nothing_remote(workspace, fake_k8s, monkeypatch):
    for name in CONFIG:
        monkeypatch.delenv(name, raising=False)
    with FakeModelRegistry("v1") as bystander:  # running, but not the configured registry
        _iris()
        ep = kfjupyter.deploy("iris@production", name="iris", backend="kubernetes", storage_uri=S3)
        assert ep.status == st.RUNNING and "model_registry" not in ep.info
        ep.undeploy()
        assert bystander.requests == []
