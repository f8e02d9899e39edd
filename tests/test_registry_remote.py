"""Kubeflow Model Registry as the registry: which API is spoken, what goes over the wire,
and the fake server itself (strict about the OpenAPI description, or these tests prove
nothing)."""

from __future__ import annotations

import json

import pytest

import kfjupyter
import kfjupyter.registry as registry
from kfjupyter.errors import InvalidOptionError
from kfjupyter.registry import ModelNotFoundError, RegistryBackendError, RegistryConflictError

from fake_model_registry import FakeModelRegistry, matches
from registry_support import CONFIG, iris_model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fake(request):
    api = getattr(request, "param", "v1")
    with FakeModelRegistry(api) as server:
        yield server


@pytest.fixture
def remote(fake, monkeypatch):
    for name in CONFIG:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_URL", fake.url)
    return registry.get_registry()


def bad_requests(fake) -> list[dict]:
    """Requests the fake refused as malformed (400), misrouted (405) or that broke it (500)."""
    return [r for r in fake.requests if r.get("status") in (400, 405, 500)]


@pytest.mark.parametrize("fake", ["v1", "v1alpha3"], indirect=True)
def test_the_api_version_is_probed_newest_first(remote, fake):
    clf, _, _ = iris_model()
    kfjupyter.register_model("iris", clf)
    assert remote.api == fake.api and remote.kind == "kubeflow"
    probes = [(r["path"], r["status"]) for r in fake.requests if r["query"].get("pageSize") == "1"]
    if fake.api == "v1":
        assert probes == [("/api/model_registry/v1/registered_models", 200)]
    else:  # a v0.3 server answers the v1 probe 404
        assert probes == [("/api/model_registry/v1/registered_models", 404), ("/api/model_registry/v1alpha3/registered_models", 200)]
    assert bad_requests(fake) == []


def test_a_configured_api_version_is_used_without_probing(fake, monkeypatch):
    monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_URL", fake.url)
    monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_API", "v1")
    kfjupyter.registry.list_models()
    assert all(r["query"].get("pageSize") != "1" for r in fake.requests)
    monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_API", "v1alpha3")  # not what this server speaks
    with pytest.raises(RegistryBackendError, match="HTTP 404"):
        kfjupyter.registry.list_models()
    monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_API", "v2")
    with pytest.raises(InvalidOptionError, match="v1, v1alpha3"):
        kfjupyter.registry.list_models()


def test_no_registry_at_the_url_is_a_clear_error(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(RegistryBackendError, match="unreachable"):
        registry.list_models()


def test_a_bearer_token_is_sent_and_never_shown(monkeypatch, tmp_path):
    with FakeModelRegistry("v1", token="s3cret-token") as fake:
        monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_URL", fake.url)
        with pytest.raises(RegistryBackendError, match="refused the credentials") as refused:
            registry.list_models()
        assert "s3cret" not in str(refused.value)
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n")
        monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_TOKEN_FILE", str(token_file))
        clf, _, _ = iris_model()
        v = kfjupyter.register_model("iris", clf)
        assert v.number == 1 and "s3cret" not in repr(registry.get_registry())


def test_a_version_is_stored_as_kubeflow_entities_with_custom_properties(remote, fake, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "work/iris.ipynb")  # what Jupyter tells a kernel
    clf, _, _ = iris_model()
    v = kfjupyter.register_model(
        "iris", clf, metrics={"accuracy": 0.9}, params={"depth": 3, "criterion": "gini"},
        description="tree", custom_properties={"team": "flowers"}, aliases="staging",
    )
    (model,) = fake.store.models.values()
    (version,) = fake.store.versions.values()
    (artifact,) = fake.store.artifacts.values()
    assert model["name"] == "iris" and model["state"] == "LIVE"
    assert model["customProperties"]["kfjupyter.alias.staging"] == {"metadataType": "MetadataIntValue", "int_value": "1"}
    assert version["name"] == "1" and version["registeredModelId"] == model["id"] and version["state"] == "LIVE"
    assert version["externalId"] == f"kfjupyter:{model['id']}:1" and version["description"] == "tree"
    props = version["customProperties"]
    assert props["metric.accuracy"] == {"metadataType": "MetadataDoubleValue", "double_value": 0.9}
    assert props["param.depth"] == {"metadataType": "MetadataIntValue", "int_value": "3"}
    assert props["param.criterion"] == {"metadataType": "MetadataStringValue", "string_value": "gini"}
    assert props["team"] == {"metadataType": "MetadataStringValue", "string_value": "flowers"}
    assert props["kfjupyter.number"]["int_value"] == "1" and props["kfjupyter.framework"]["string_value"] == "sklearn"
    assert props["kfjupyter.lineage"]["metadataType"] == "MetadataStructValue"
    assert v.lineage == {"notebook": "work/iris.ipynb"}
    assert artifact["artifactType"] == "model-artifact" and fake.store.parents[artifact["id"]] == version["id"]
    assert artifact["modelFormatName"] == "sklearn" and artifact["uri"] == v.artifact.uri
    assert artifact["customProperties"]["kfjupyter.sha256"]["string_value"] == v.artifact.sha256
    assert bad_requests(fake) == []


def test_the_artifact_records_the_job_as_its_model_source(remote, fake):
    from registry_support import finished_job

    job = finished_job(outputs={"model.bin": b"weights"}, metrics=[{"loss": 0.2}])
    job.register_model("net", framework="custom")
    (artifact,) = fake.store.artifacts.values()
    assert (artifact["modelSourceKind"], artifact["modelSourceClass"], artifact["modelSourceId"], artifact["modelSourceName"]) == (
        "kfjupyter", "train", job.id, "trainer",
    )
    assert registry.get_version("net:1").metrics == {"loss": 0.2}


def test_versions_made_outside_kfjupyter_are_listed_and_loadable_by_name(remote, fake, tmp_path):
    clf, x, _ = iris_model()
    kfjupyter.register_model("iris", clf)  # version 1, and a stored artifact to point at
    uri = registry.get_version("iris:1").artifact.uri
    model_id = next(iter(fake.store.models))
    # what the Kubeflow UI or its own Python client would create: a name, no kfjupyter number
    status, made = fake.handle(
        "POST", f"/api/model_registry/v1/registered_models/{model_id}/versions",
        json.dumps({"name": "v2-from-ui", "registeredModelId": model_id}).encode(), {},
    )
    assert status == 201
    status, _ = fake.handle(
        "POST", f"/api/model_registry/v1/model_versions/{made['id']}/artifacts",
        json.dumps({"artifactType": "model-artifact", "name": "model", "uri": uri, "modelFormatName": "sklearn"}).encode(), {},
    )
    assert status == 201
    outside = registry.get_version("iris:v2-from-ui")
    assert (outside.number, outside.name, outside.framework) == (None, "v2-from-ui", "sklearn")
    assert (kfjupyter.load_model("iris:v2-from-ui", verify=False).predict(x) == clf.predict(x)).all()
    assert sorted(str(v.number) for v in registry.list_versions("iris")) == ["1", "None"]
    with pytest.raises(RegistryConflictError, match="no kfjupyter number"):
        registry.set_alias("iris", "production", "v2-from-ui")
    assert kfjupyter.register_model("iris", clf).number == 2  # numbering carries on


@pytest.mark.parametrize("fake", ["v1", "v1alpha3"], indirect=True)
def test_the_fake_refuses_what_the_spec_does_not_allow(fake):
    base = f"/api/model_registry/{fake.api}"

    def call(method, path, body=None):
        return fake.handle(method, base + path, json.dumps(body).encode() if body is not None else b"", {})

    assert call("POST", "/registered_models", {"name": "iris"})[0] == 201
    assert call("POST", "/registered_models", {"name": "iris"})[0] == 409
    status, error = call("POST", "/registered_models", {"name": "x", "colour": "red"})
    assert status == 400 and "unknown field" in error["message"]
    status, error = call("POST", "/registered_models", {"name": "y", "customProperties": {"a": {"metadataType": "MetadataDoubleValue", "double_value": "high"}}})
    assert status == 400
    assert call("POST", "/registered_models", {"name": "z", "state": "DELETED"})[0] == 400
    assert call("POST", "/model_versions", {"name": "1"})[0] == 400  # registeredModelId is required
    assert call("GET", "/registered_models?pageSize=2&colour=red")[0] == 400
    assert call("GET", "/registered_models?orderBy=NAME")[0] == 400
    # ids are numbers: v1 says so in the path parameter's pattern, v1alpha3 just finds nothing
    assert call("GET", "/registered_models/abc")[0] == (400 if fake.api == "v1" else 404)
    assert call("GET", "/registered_models/99")[0] == 404
    assert call("DELETE", "/registered_models/1")[0] == 405
    assert fake.handle("GET", "/api/model_registry/v2/registered_models", b"", {})[0] == 404
    # and a fake whose answer drifted from the spec says so rather than pass it on
    fake.store.models["1"]["state"] = "GONE"
    status, error = call("GET", "/registered_models/1")
    assert status == 500 and "fake bug" in error["message"]


def test_the_fake_pages_and_filters_like_the_registry(fake):
    base = "/api/model_registry/v1"
    for i in range(5):
        fake.handle("POST", base + "/registered_models", json.dumps({
            "name": f"m{i}", "customProperties": {"score": {"metadataType": "MetadataDoubleValue", "double_value": i / 10}},
        }).encode(), {})
    _, page = fake.handle("GET", base + "/registered_models?pageSize=2&sortOrder=DESC", b"", {})
    assert [m["name"] for m in page["items"]] == ["m4", "m3"] and page["nextPageToken"]
    _, page2 = fake.handle("GET", base + f"/registered_models?pageSize=2&sortOrder=DESC&nextPageToken={page['nextPageToken']}", b"", {})
    assert [m["name"] for m in page2["items"]] == ["m2", "m1"]
    entity = {"name": "My-Model", "state": "LIVE", "customProperties": {
        "score": {"metadataType": "MetadataDoubleValue", "double_value": 0.96},
        "mlflow.source": {"metadataType": "MetadataStringValue", "string_value": "notebook"},
        "n": {"metadataType": "MetadataIntValue", "int_value": "7"}}}
    for query, expected in [
        ("name = 'My-Model'", True),
        ("name LIKE 'My%'", True),
        ("name LIKE 'my%'", False),
        ("name ILIKE 'my%'", True),
        ("score > 0.95 AND state = 'LIVE'", True),
        ("score.double_value >= 0.97", False),
        ("`mlflow.source` = \"notebook\"", True),
        ("(name = 'a' OR name = 'My-Model') AND n.int_value IN (6, 7)", True),
        ("missing = 1", False),
        ("state <> 'LIVE'", False),
    ]:
        assert matches(query, entity) is expected, query


def test_unknown_models_and_refs_are_reported_the_same_way_as_locally(remote, fake):
    with pytest.raises(ModelNotFoundError, match="no registered model 'nope'"):
        registry.get_version("nope")
    with pytest.raises(ModelNotFoundError):
        registry.alias_history("nope")
    assert bad_requests(fake) == []
