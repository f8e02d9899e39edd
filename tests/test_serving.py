"""Local endpoints: a real KServe ModelServer process per version, a real canary router."""

from __future__ import annotations

import http.client
import json
import socket
import stat
import subprocess
import textwrap

import numpy as np
import psutil
import pytest

pytest.importorskip("kserve")
sklearn = pytest.importorskip("sklearn")

import kfjupyter  # noqa: E402
from kfjupyter import status as st  # noqa: E402
from kfjupyter.errors import InvalidOptionError  # noqa: E402
from kfjupyter.registry.errors import ModelNotFoundError  # noqa: E402
from kfjupyter.serving import EndpointNotDeployedError, PredictionError, get_endpoint  # noqa: E402
from kfjupyter.serving.local import EndpointStartError  # noqa: E402

from conftest import PYTHON, processes_of  # noqa: E402


def Constant(value):
    """A 'model' that always answers the same class: tells versions apart (a class made
    in a function, so cloudpickle carries it by value, as it does a notebook's)."""

    class Constant:
        n_features_in_ = 4

        def predict(self, x):
            return np.full(len(x), value)

    return Constant()


@pytest.fixture
def iris(workspace):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    v1 = kfjupyter.register_model("iris", model, framework="sklearn")
    kfjupyter.registry.set_alias("iris", "production", v1.number)
    return X, y, model


def _post(url: str, path: str, payload, token: str | None = None, method: str = "POST") -> tuple[int, dict, dict]:
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    conn.request(method, path, body=json.dumps(payload) if method == "POST" else None, headers=headers)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}


def test_deploy_predict_v1_v2_and_undeploy(iris, workspace):
    X, _, model = iris
    ep = kfjupyter.deploy("iris@production", name="iris")
    try:
        assert ep.status == st.RUNNING and ep.url.startswith("http://127.0.0.1:")
        expected = model.predict(X[:5]).tolist()
        assert ep.predict(X[:5]) == expected
        assert ep.predict(X[:5].tolist(), protocol="v2") == expected
        # the raw protocols, as any HTTP client sees them: with the endpoint's token only
        assert ep.token and len(ep.token) == 64
        token_file = workspace / "jobs" / ep.id / "token"
        assert token_file.read_text() == ep.token and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        for path, method in (("/v1/models/iris:predict", "POST"), ("/metrics", "GET"), ("/v2/models/iris", "GET")):
            for token in (None, "0" * 64):
                code, body, headers = _post(ep.url, path, {"instances": X[:2].tolist()}, token=token, method=method)
                assert code == 401 and "token" in body["error"] and headers["www-authenticate"] == "Bearer", (path, token)
        code, body, _ = _post(ep.url, "/v1/models/iris:predict", {"instances": X[:2].tolist()}, token=ep.token)
        assert code == 200 and body["predictions"] == expected[:2]
        v2 = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": X[:2].ravel().tolist()}]}
        code, body, _ = _post(ep.url, "/v2/models/iris/infer", v2, token=ep.token)
        assert code == 200 and body["outputs"][0]["data"] == expected[:2] and body["model_name"] == "iris"
        # loopback only
        port = int(ep.url.rsplit(":", 1)[1])
        listening = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        # an endpoint is a job: jobs, logs
        assert [j.id for j in kfjupyter.jobs.list(kind="endpoint")] == [ep.id]
        assert "serving iris:1 (sklearn)" in ep.logs()
        # wrong payload shape: a clear error, the server keeps serving
        with pytest.raises(PredictionError, match="4 features, got 2") as err:
            ep.predict([[1.0, 2.0]])
        assert err.value.status == 400
        with pytest.raises(PredictionError, match="400"):
            ep.predict({"rows": [1, 2]})
        assert ep.predict(X[:1]) == expected[:1]
        # the same name twice is refused while the first one serves
        with pytest.raises(InvalidOptionError, match="already deployed"):
            kfjupyter.deploy("iris@production", name="iris")
    finally:
        ep.undeploy()
    assert ep.status == st.CANCELLED
    assert not processes_of(workspace)
    with pytest.raises(EndpointNotDeployedError, match="endpoint iris is not deployed: it is Cancelled"):
        ep.predict(X[:1])


def test_bad_input_is_refused_before_anything_starts(iris, workspace):
    with pytest.raises(ModelNotFoundError, match="nope"):
        kfjupyter.deploy("nope@production")
    with pytest.raises(ModelNotFoundError):
        kfjupyter.deploy("iris@staging")
    with pytest.raises(ModelNotFoundError):
        kfjupyter.deploy("iris:7")
    for pct in (-1, 101, 12.5, "10"):
        with pytest.raises(InvalidOptionError, match="canary_percent"):
            kfjupyter.deploy("iris@production", canary="iris:1", canary_percent=pct)
    with pytest.raises(InvalidOptionError, match="endpoint name"):
        kfjupyter.deploy("iris@production", name="Iris_Model")
    with pytest.raises(InvalidOptionError, match="unknown backend"):
        kfjupyter.deploy("iris@production", backend="mars")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InvalidOptionError, match=f"port {port} .* in use"):
            kfjupyter.deploy("iris@production", port=port)
    assert kfjupyter.jobs.count(kind="endpoint", status=st.RUNNING) == 0
    assert not processes_of(workspace)


def test_unsupported_format_is_refused(iris, monkeypatch):
    from kfjupyter.registry import get_registry

    reg = get_registry()
    real = reg.get_version

    def tensorflow(ref, **kw):
        mv = real("iris:1")
        mv.framework = "tensorflow"
        mv.artifacts[0].format = "tensorflow"
        return mv

    monkeypatch.setattr(type(reg), "get_version", lambda self, ref, **kw: tensorflow(ref))
    with pytest.raises(InvalidOptionError, match="format 'tensorflow': serving supports sklearn"):
        kfjupyter.deploy("iris@production")


def test_failed_start_leaves_no_process(workspace):
    kfjupyter.register_model("cfg", {"not": "a model"}, framework="custom")
    with pytest.raises(EndpointStartError, match="must be callable or have predict"):
        kfjupyter.deploy("cfg", name="cfg")
    assert not processes_of(workspace)
    (job,) = kfjupyter.jobs.list(kind="endpoint")
    assert job.status == st.FAILED and "callable" in job.error


def test_a_deploy_its_engine_refuses_leaves_no_record_no_folder_no_process(iris, workspace):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(InvalidOptionError, match=f"port {port} on 127.0.0.1 is in use"):
            kfjupyter.deploy("iris@production", name="iris", port=port)
    assert kfjupyter.jobs.count(kind="endpoint") == 0
    assert not list((workspace / "jobs").glob("iris-*")) if (workspace / "jobs").exists() else True
    assert not processes_of(workspace)


def test_a_state_dict_needs_its_class(workspace):
    torch = pytest.importorskip("torch")
    kfjupyter.register_model("net", torch.nn.Linear(4, 2).state_dict(), framework="pytorch")
    with pytest.raises(InvalidOptionError, match="model_class="):
        kfjupyter.deploy("net", name="net")
    assert kfjupyter.jobs.count(kind="endpoint") == 0


def test_canary_split_promote_rollback(iris, workspace):
    X, _, _ = iris
    kfjupyter.register_model("iris", Constant(7), framework="custom")  # iris:2
    kfjupyter.registry.set_alias("iris", "staging", 2)
    ep = kfjupyter.deploy("iris@production", name="iris", canary="iris@staging", canary_percent=10)
    try:
        assert ep.versions == {"iris:1": 90, "iris:2": 10}
        host, port = ep.url.split("//")[1].split(":")
        # the router asks for the endpoint's token too, and forwards nothing without it
        for token in (None, "0" * 64):
            for path in ("/v1/models/iris:predict", "/kfjupyter/router"):
                code, body, _ = _post(ep.url, path, {"instances": X[:1].tolist()}, token=token)
                assert code == 401 and "token" in body["error"], (path, token)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        body = json.dumps({"instances": X[:1].tolist()})
        seen = {"iris:1": 0, "iris:2": 0}
        for _ in range(1000):
            conn.request("POST", "/v1/models/iris:predict", body=body,
                         headers={"content-type": "application/json", "authorization": f"Bearer {ep.token}"})
            resp = conn.getresponse()
            answer = json.loads(resp.read())["predictions"][0]
            version = resp.getheader("x-kfjupyter-version")
            seen[version] += 1
            assert (answer == 7) == (version == "iris:2")
        conn.close()
        # binomial(1000, 0.1): sd ≈ 9.5; ±4 sd
        assert 62 <= seen["iris:2"] <= 138, seen
        before = ep.record.backend_info
        ep.promote()
        assert ep.versions == {"iris:2": 100} and ep.spec["previous"]["ref"] == "iris:1"
        # a status read holding the record from before the promote (the lab's poller, say)
        # finds iris:1's server stopped, but that is the promote, not a failure
        assert ep.job.backend.observe(ep.id, before).status == st.RUNNING
        assert {ep.predict(X[:1])[0] for _ in range(20)} == {7}
        assert ep.last_version == "iris:2"
        assert len(ep.info["servers"]) == 1
        ep.rollback()  # undo the promote: iris:1 comes back
        assert ep.versions == {"iris:1": 100}
        assert {tuple(ep.predict(X[:1])) for _ in range(20)} != {(7,)} and ep.last_version == "iris:1"
        with pytest.raises(InvalidOptionError, match="no canary to promote"):
            ep.promote()
    finally:
        ep.undeploy()
    assert not processes_of(workspace)


def test_rollback_drops_the_canary(iris, workspace):
    X, _, _ = iris
    kfjupyter.register_model("iris", Constant(7), framework="custom")
    ep = kfjupyter.deploy("iris:1", name="iris", canary="iris:2", canary_percent=100)
    try:
        assert ep.predict(X[:1]) == [7] and ep.last_version == "iris:2"
        ep.rollback()
        assert ep.versions == {"iris:1": 100}
        assert ep.predict(X[:1]) != [7] and ep.last_version == "iris:1"
        assert len(ep.info["servers"]) == 1
        with pytest.raises(InvalidOptionError, match="no canary and no previous"):
            ep.rollback()
    finally:
        ep.undeploy()
    assert not processes_of(workspace)


def test_endpoint_survives_the_kernel(iris, workspace):
    """A 'kernel' deploys and exits; the next one finds the endpoint serving."""
    X, _, model = iris
    code = textwrap.dedent(
        """
        import kfjupyter
        ep = kfjupyter.deploy("iris@production", name="iris")
        print(ep.id)
        """
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ep = get_endpoint("iris")
    try:
        assert ep.id == out.stdout.strip().splitlines()[-1]
        assert ep.status == st.RUNNING
        assert ep.predict(X[:3]) == model.predict(X[:3]).tolist()
    finally:
        ep.undeploy()
    assert not processes_of(workspace)
