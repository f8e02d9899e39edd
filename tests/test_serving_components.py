"""Serving beyond a predictor, with real KServe model servers: a transformer and an explainer
from notebook code (captured as training cells are), request logging, per-version stats
and a drift summary."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

pytest.importorskip("kserve")
pytest.importorskip("sklearn")

import kfjupyter  # noqa: E402
from kfjupyter import status as st  # noqa: E402
from kfjupyter.errors import InvalidOptionError, PreflightError  # noqa: E402
from kfjupyter.serving import PredictionError  # noqa: E402

from conftest import processes_of, run_cell  # noqa: E402

pytestmark = pytest.mark.timeout(240)

#: notebook cells: an import, values, a helper and a transformer class using them
NOTEBOOK = '''
import numpy as np
NAMES = ["setosa", "versicolor", "virginica"]

def scale(x):
    x = np.asarray(x, dtype=float)
    if (x < 0).any():
        raise ValueError("negative measurements")
    if (x > 1000).any():
        raise RuntimeError("the feature store is down")
    return (x - MEAN) / STD

class Prep:
    def preprocess(self, x):
        return scale(x)

    def postprocess(self, y):
        return [NAMES[int(i)] for i in y]

def passthrough(x):
    return x

def explain(x, predict):
    base = predict(x)
    out = []
    for row, b in zip(x, base):
        out.append({"prediction": b, "weights": [float(v) * 2 for v in row]})
    return out
'''


def notebook(shell, **values):
    """A notebook (a real IPython shell) whose cells defined NOTEBOOK, with ``values``."""
    shell.user_ns.update(values)
    result = run_cell(shell, NOTEBOOK)
    assert result.success, result.error_in_exec
    return shell.user_ns


@pytest.fixture
def scaled_iris(workspace):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    mean, std = X.mean(axis=0), X.std(axis=0)
    model = LogisticRegression(max_iter=500).fit((X - mean) / std, y)
    v = kfjupyter.register_model("iris", model, framework="sklearn", training_sample=(X - mean) / std)
    kfjupyter.registry.set_alias("iris", "production", v.number)
    return X, y, model, mean, std


def test_transformer_scales_inputs_before_the_predictor_v1_v2_and_its_errors_name_it(scaled_iris, workspace, shell):
    X, _, model, mean, std = scaled_iris
    ns = notebook(shell, MEAN=mean, STD=std)
    ep = kfjupyter.deploy("iris@production", name="iris", transformer=ns["Prep"])
    try:
        # captured as a training cell is: the import, the helper, the class, the values
        program = (workspace / "jobs" / ep.id / "components/transformer/bundle/program.py").read_text()
        assert "import numpy as np" in program and "def scale(x):" in program and "class Prep:" in program
        values = json.loads((workspace / "jobs" / ep.id / "components/transformer/bundle/manifest.json").read_text())["values"]
        assert set(values) >= {"MEAN", "STD", "NAMES"}
        names = np.array(["setosa", "versicolor", "virginica"])
        expected = names[model.predict((X[:6] - mean) / std)].tolist()
        assert ep.predict(X[:6]) == expected  # V1: the transformer scaled, the predictor predicted, postprocess named
        assert ep.predict(X[:6], protocol="v2") == expected  # V2: the same through the Open Inference Protocol
        assert ep.url == ep.info["transformer"]["url"] != ep.info["servers"][0]["url"]
        # the predictor's input was what the transformer produced: without it, raw X is not scaled
        assert model.predict(X[:6]).tolist() != model.predict((X[:6] - mean) / std).tolist()
        # the endpoint still asks for its token at the front door
        from test_serving import _post

        code, body, _ = _post(ep.url, "/v1/models/iris:predict", {"instances": X[:1].tolist()})
        assert code == 401
        # an error of the transformer's code names the transformer, not the predictor
        with pytest.raises(PredictionError, match=r"transformer Prep \(preprocess\) refused the input: ValueError: negative") as err:
            ep.predict([[-1.0, 1.0, 1.0, 1.0]])
        assert err.value.status == 400
        with pytest.raises(PredictionError, match=r"transformer Prep \(preprocess\) failed: RuntimeError: the feature store") as err:
            ep.predict([[5000.0, 1.0, 1.0, 1.0]], protocol="v2")
        assert err.value.status == 500
        assert ep.predict(X[:2]) == expected[:2] and ep.status == st.RUNNING  # and it keeps serving
        assert "the transformer of 'iris'" in ep.logs(server=2)
        assert {c.name for c in ep.job.children()} == {"primary", "transformer"}
    finally:
        ep.undeploy()
    assert not processes_of(workspace)
    assert {c.status for c in ep.job.children()} == {st.CANCELLED}


def test_a_transformer_is_preflighted_before_anything_starts(scaled_iris, workspace, shell):
    class NoHooks:
        pass

    with pytest.raises(InvalidOptionError, match="transformer=NoHooks: .*preprocess"):
        kfjupyter.deploy("iris@production", transformer=NoHooks)
    ns = notebook(shell, MEAN=1.0, STD=1.0)
    ns["lock"] = __import__("threading").Lock()
    assert run_cell(shell, "def locked(x):\n    with lock:\n        return x\n").success
    with pytest.raises(PreflightError, match="lock"):
        kfjupyter.deploy("iris@production", transformer=ns["locked"])
    with pytest.raises(InvalidOptionError, match="explainer='lime'"):
        kfjupyter.deploy("iris@production", explainer="lime")
    with pytest.raises(InvalidOptionError, match="log must be one of"):
        kfjupyter.deploy("iris@production", log="everything")
    with pytest.raises(InvalidOptionError, match="log_sample"):
        kfjupyter.deploy("iris@production", log="all", log_sample=0)
    assert kfjupyter.jobs.list(kind="endpoint") == [] and not processes_of(workspace)


def test_explainers_answer_explain_from_notebook_code_and_with_shap(scaled_iris, workspace, shell):
    X, _, model, mean, std = scaled_iris
    ns = notebook(shell, MEAN=mean, STD=std)
    ep = kfjupyter.deploy("iris@production", name="iris", explainer=ns["explain"], transformer=ns["passthrough"])
    shap_ep = None
    try:
        rows = ((X[:2] - mean) / std).tolist()
        # the predictor's own refusal, behind the transformer, says it is the predictor's
        with pytest.raises(PredictionError, match="the predictor answered HTTP 400: .*4 features") as err:
            ep.predict([[1.0, 2.0]])
        assert err.value.status == 400
        out = ep.explain(rows)
        assert [o["prediction"] for o in out] == model.predict(rows).tolist()
        assert out[0]["weights"] == [v * 2 for v in rows[0]]
        plain = kfjupyter.deploy("iris@production", name="plain-iris")
        try:
            with pytest.raises(InvalidOptionError, match="has no explainer"):
                plain.explain(rows)
        finally:
            plain.undeploy()
        # a ready one: SHAP attributions over the version's training sample, through V1 :explain
        pytest.importorskip("shap")
        shap_ep = kfjupyter.deploy("iris@production", name="iris-shap", explainer="shap")
        (att,) = shap_ep.explain(rows[:1])
        values = np.asarray(att["values"])
        assert values.shape == (4, 3)  # 4 features × 3 classes of predict_proba
        proba = model.predict_proba(rows[:1])[0]
        assert np.allclose(values.sum(axis=0) + np.asarray(att["base_values"]), proba, atol=1e-6)  # SHAP's additivity
        assert shap_ep.predict(rows[:1]) == model.predict(rows[:1]).tolist()
    finally:
        ep.undeploy()
        if shap_ep is not None:
            shap_ep.undeploy()
    assert not processes_of(workspace)


def _slow_failing(delay: float):
    """A canary model that is slower and refuses some inputs (made in a function: carried by value)."""
    import time as _time

    class SlowFailing:
        n_features_in_ = 4

        def predict(self, x):
            _time.sleep(delay)
            x = np.asarray(x)
            if (x[:, 0] > 1.0).any():
                raise ValueError("out of range")
            return np.zeros(len(x), dtype=int)

    return SlowFailing()


def test_canary_stats_request_logging_and_drift(scaled_iris, workspace):
    X, _, model, mean, std = scaled_iris
    Z = (X - mean) / std
    kfjupyter.register_model("iris", _slow_failing(0.03), framework="custom")
    kfjupyter.registry.set_alias("iris", "staging", 2)
    ep = kfjupyter.deploy("iris@production", name="iris", canary="iris@staging", canary_percent=50, log="all")
    try:
        rng = np.random.default_rng(1)
        for i in range(60):
            row = Z[rng.integers(len(Z))]
            try:
                ep.predict([row.tolist()])
            except PredictionError:
                pass
        stats = ep.stats()
        primary, canary = stats["versions"]["iris:1"], stats["versions"]["iris:2"]
        assert primary["requests"] + canary["requests"] == 60 and primary["requests"] > 5 and canary["requests"] > 5
        assert primary["error_rate"] == 0 and canary["error_rate"] > 0  # Z[:, 0] > 1 for some flowers
        assert canary["p50_ms"] > primary["p50_ms"] + 20  # the canary's 30 ms show
        assert primary["p99_ms"] >= primary["p95_ms"] >= primary["p50_ms"] > 0
        assert (primary["traffic_percent"], canary["traffic_percent"]) == (50, 50)
        assert primary["requests_per_s"] == round(primary["requests"] / 60, 3)
        # logged requests are in the sink (the workspace, private)
        logged = ep.logged_requests()
        assert len(logged) == 60 and {r["version"] for r in logged} == {"iris:1", "iris:2"}
        first = logged[0]
        assert first["request"]["instances"][0] and "predictions" in first["response"] or first["status"] != 200
        for path in (workspace / "jobs" / ep.id / "servers").rglob("*.jsonl"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # drift: inputs like the training data → none; shifted inputs → flagged
        assert primary["drift"]["drifted"] == [] and primary["drift"]["samples"] == primary["requests"]
        shifted = Z[rng.choice(len(Z), 120)] + np.array([0.0, 0.0, 1.5, 0.0])  # petal length moved
        for i in range(0, 120, 4):
            try:
                ep.predict(shifted[i : i + 4].tolist())
            except PredictionError:
                pass
        drift = ep.stats()["versions"]["iris:1"]["drift"]
        assert drift["drifted"] == ["x2"], drift["features"]
        assert drift["features"]["x2"]["psi"] >= 0.2 and drift["features"]["x2"]["ks_pvalue"] < 0.05
        assert "PSI" in drift["method"]
    finally:
        ep.undeploy()
    assert not processes_of(workspace)


def test_logging_modes_and_sampling(scaled_iris, workspace):
    X = scaled_iris[0]
    ep = kfjupyter.deploy("iris@production", name="iris", log="response", log_sample=0.5)
    try:
        for _ in range(40):
            ep.predict(X[:1])
        logged = ep.logged_requests()
        assert 5 < len(logged) < 35 and all("request" not in r and "predictions" in r["response"] for r in logged)
        assert ep.stats()["versions"]["iris:1"]["requests"] == 40  # stats count every request
    finally:
        ep.undeploy()


def _batch_size_model():
    """Answers each row with the size of the batch it was predicted in (by value)."""

    class BatchSize:
        n_features_in_ = 4

        def predict(self, x):
            return np.full(len(x), len(x))

    return BatchSize()


def test_local_batching_groups_concurrent_requests(workspace):
    from concurrent.futures import ThreadPoolExecutor

    v = kfjupyter.register_model("sizes", _batch_size_model(), framework="custom")
    ep = kfjupyter.deploy(v.ref, name="sizes", max_batch_size=8, max_latency_ms=500)
    try:
        row = [[1.0, 2.0, 3.0, 4.0]]
        assert ep.predict(row) == [1]  # alone: sent on after max_latency_ms
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: ep.predict(row)[0], range(8)))
        assert max(answers) > 1 and sum(answers) >= 8  # requests were predicted together, each got its own row
        assert ep.predict(row * 3) == [3, 3, 3]
    finally:
        ep.undeploy()
