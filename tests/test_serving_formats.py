"""Every registry format served by a real model server, V1 and V2 (deployed at once)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("kserve")

import kfjupyter  # noqa: E402

from conftest import processes_of  # noqa: E402

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)


def _onnx_linear(w, b):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, w.shape[1]])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_every_format_v1_and_v2(workspace):
    torch = pytest.importorskip("torch")
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("onnxruntime")
    import kserve
    from kserve.utils.utils import get_predict_input, get_predict_response

    torch.manual_seed(0)
    y = np.array([0, 2, 1])
    expected: dict[str, list] = {}
    deploys: dict[str, dict] = {}

    # xgboost (scikit-learn style)
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=2, nthread=1).fit(np.vstack([X] * 4), np.tile(y, 4))
    kfjupyter.register_model("xgb", clf)
    expected["xgb"] = clf.predict(X).tolist()
    deploys["xgb"] = {}

    # onnx
    w, b = np.arange(8, dtype=np.float32).reshape(4, 2) / 10, np.array([1.0, -1.0], dtype=np.float32)
    kfjupyter.register_model("lin", _onnx_linear(w, b))
    expected["lin"] = (X @ w + b).tolist()
    deploys["lin"] = {}

    # pytorch: a state dict plus the notebook's class
    class Net(torch.nn.Module):
        def __init__(self, hidden=3):
            super().__init__()
            self.fc = torch.nn.Linear(4, hidden)

        def forward(self, x):
            return self.fc(x).sum(dim=1, keepdim=True)

    net = Net(hidden=3)
    kfjupyter.register_model("net", net.state_dict(), framework="pytorch")
    with torch.no_grad():
        expected["net"] = net(torch.as_tensor(X)).numpy().tolist()
    deploys["net"] = {"model_class": Net, "model_kwargs": {"hidden": 3}}

    # pytorch: TorchScript
    scripted = torch.jit.script(Net(hidden=2))
    kfjupyter.register_model("ts", scripted)
    with torch.no_grad():
        expected["ts"] = scripted(torch.as_tensor(X)).numpy().tolist()
    deploys["ts"] = {}

    # custom: a function, with pre- and post-processing
    kfjupyter.register_model("fn", lambda x: np.asarray(x).sum(axis=1), framework="custom")
    expected["fn"] = ((X * 2).sum(axis=1) + 1).tolist()
    deploys["fn"] = {"preprocess": lambda x: np.asarray(x) * 2, "postprocess": lambda out: out + 1}

    # custom: a kserve.Model subclass
    class Doubler(kserve.Model):
        def __init__(self):
            super().__init__("doubler")
            self.ready = True

        def predict(self, payload, headers=None):
            return get_predict_response(payload, np.asarray(get_predict_input(payload)) * 2, self.name)

    kfjupyter.register_model("dbl", Doubler(), framework="custom")
    expected["dbl"] = (X * 2).tolist()
    deploys["dbl"] = {}

    with ThreadPoolExecutor(len(deploys)) as pool:
        futures = {name: pool.submit(kfjupyter.deploy, name, name=name, **opts) for name, opts in deploys.items()}
        endpoints = {}
        errors = []
        for name, fut in futures.items():
            try:
                endpoints[name] = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported below, after cleanup
                errors.append(f"{name}: {exc}")
    try:
        assert not errors, errors
        for name, ep in endpoints.items():
            v1 = np.asarray(ep.predict(X.tolist()), dtype=float)
            np.testing.assert_allclose(v1, np.asarray(expected[name], dtype=float), rtol=1e-4, err_msg=name)
            v2 = np.asarray(ep.predict(X, protocol="v2"), dtype=float)
            np.testing.assert_allclose(v2.ravel(), np.asarray(expected[name], dtype=float).ravel(), rtol=1e-4, err_msg=name)
    finally:
        for ep in endpoints.values():
            ep.undeploy()
    assert not processes_of(workspace)
