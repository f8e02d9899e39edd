"""Each model format saves and loads back for real: what loads predicts what was registered.

(Formats do not depend on where the registry lives; the round trip through every backend
is in test_registry.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

import kfjupyter
import kfjupyter.registry as registry
from kfjupyter.errors import InvalidOptionError

from conftest import run_cell
from registry_support import iris_model, write

pytestmark = pytest.mark.timeout(120)


def test_sklearn_pipeline_round_trips_with_its_library_version():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    _, x, y = iris_model()
    pipe = make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=2, random_state=0)).fit(x, y)
    v = kfjupyter.register_model("iris-pipe", pipe)
    import sklearn

    assert (v.framework, v.framework_version) == ("sklearn", sklearn.__version__)
    assert v.artifact.properties["class"] == "Pipeline"
    assert (kfjupyter.load_model("iris-pipe:1").predict(x) == pipe.predict(x)).all()


def test_a_torch_module_whose_class_lives_only_in_the_notebook_loads_back(shell):
    torch = pytest.importorskip("torch")
    result = run_cell(
        shell,
        """
import kfjupyter, torch
class Doubler(torch.nn.Module):          # defined in the notebook: no module to import it from
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
    def forward(self, x):
        return 2 * self.lin(x)
torch.manual_seed(0)
net = Doubler()
x = torch.randn(4, 3)
expected = net(x)
v = kfjupyter.register_model("doubler", net, metrics={"loss": 0.1})
del Doubler
""",
    )
    assert result.success, result.error_in_exec
    v = shell.user_ns["v"]
    assert (v.framework, v.artifact.properties["torch_kind"], v.artifact.main_file) == ("pytorch", "module", "model.pt")
    assert v.framework_version == torch.__version__.split("+")[0]
    assert v.lineage["cell"].lstrip().startswith("import kfjupyter, torch")  # the cell that registered it
    loaded = kfjupyter.load_model("doubler:1")
    assert type(loaded).__name__ == "Doubler" and "Doubler" not in shell.user_ns
    with torch.no_grad():
        assert torch.allclose(loaded(shell.user_ns["x"]), shell.user_ns["expected"])


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_torch_state_dict_and_a_torchscript_module_round_trip():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    x = torch.randn(5, 3)
    v = kfjupyter.register_model("weights", lin.state_dict())
    assert (v.framework, v.artifact.properties["torch_kind"]) == ("pytorch", "state_dict")
    restored = torch.nn.Linear(3, 1)
    restored.load_state_dict(kfjupyter.load_model("weights"))
    scripted = torch.jit.script(lin)
    v2 = kfjupyter.register_model("scripted", scripted)
    assert v2.artifact.properties["torch_kind"] == "torchscript"
    with torch.no_grad():
        assert torch.allclose(restored(x), lin(x))
        assert torch.allclose(kfjupyter.load_model("scripted")(x), lin(x))


def _onnx_linear(w: np.ndarray, b: np.ndarray):
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
    onnx.checker.check_model(model)
    return model


def test_an_onnx_model_round_trips_and_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(2,)).astype(np.float32)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    v = kfjupyter.register_model("linear", _onnx_linear(w, b))
    assert (v.framework, v.artifact.main_file, v.artifact.properties["opset"]) == ("onnx", "model.onnx", [17])
    session = kfjupyter.load_model("linear")
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-5)
    proto = kfjupyter.load_model("linear", runtime=False)
    assert type(proto).__name__ == "ModelProto" and proto.graph.name == "linear"
    # a .onnx file on disk is recognised as ONNX
    path = write(tmp_path / "exported.onnx", _onnx_linear(w, b).SerializeToString())
    v2 = kfjupyter.register_model("linear", path)
    assert v2.framework == "onnx" and v2.artifact.main_file == "exported.onnx"
    (y2,) = kfjupyter.load_model("linear:2").run(None, {"x": x})
    np.testing.assert_allclose(y2, y)


def test_xgboost_booster_and_sklearn_style_models_round_trip_as_their_own_class():
    xgb = pytest.importorskip("xgboost")
    _, x, y = iris_model()
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2, nthread=1).fit(x, y)
    v = kfjupyter.register_model("iris-xgb", clf, metrics={"accuracy": float((clf.predict(x) == y).mean())})
    assert (v.framework, v.artifact.properties["xgboost_class"], v.artifact.main_file) == ("xgboost", "XGBClassifier", "model.ubj")
    loaded = kfjupyter.load_model("iris-xgb")
    assert isinstance(loaded, xgb.XGBClassifier)
    np.testing.assert_allclose(loaded.predict_proba(x), clf.predict_proba(x), rtol=1e-6)
    booster = xgb.train({"max_depth": 2, "nthread": 1}, xgb.DMatrix(x, label=y), num_boost_round=3)
    kfjupyter.register_model("iris-booster", booster)
    again = kfjupyter.load_model("iris-booster")
    assert isinstance(again, xgb.Booster)
    np.testing.assert_allclose(again.predict(xgb.DMatrix(x)), booster.predict(xgb.DMatrix(x)), rtol=1e-6)


def test_custom_objects_are_pickled_by_value_and_custom_files_load_as_their_path(tmp_path):
    class Thresholder:  # a local class: plain pickle could not find it again
        def __init__(self, cut):
            self.cut = cut

        def predict(self, values):
            return [v > self.cut for v in values]

    v = kfjupyter.register_model("rule", Thresholder(0.5))
    assert (v.framework, v.artifact.main_file) == ("custom", "model.pkl")
    assert kfjupyter.load_model("rule").predict([0.2, 0.9]) == [False, True]

    folder = tmp_path / "tokenizer"
    write(folder / "vocab.txt", b"a\nb\n")
    write(folder / "config" / "settings.json", b"{}")
    v2 = kfjupyter.register_model("tok", folder)
    assert v2.framework == "custom" and v2.artifact.main_file is None
    path = kfjupyter.load_model("tok")
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == [
        "config/settings.json",
        "vocab.txt",
    ]
    assert registry.artifact_files("tok") == [{"path": "config/settings.json", "size": 2}, {"path": "vocab.txt", "size": 4}]


def test_a_file_saved_by_hand_loads_with_the_framework_named(tmp_path):
    import joblib

    clf, x, _ = iris_model()
    joblib.dump(clf, tmp_path / "clf.pkl")
    v = kfjupyter.register_model("by-hand", tmp_path / "clf.pkl", framework="sklearn")
    assert (v.framework, v.artifact.main_file) == ("sklearn", "clf.pkl")
    assert (kfjupyter.load_model("by-hand").predict(x) == clf.predict(x)).all()
    with pytest.raises(InvalidOptionError, match="unknown framework"):
        kfjupyter.register_model("by-hand", tmp_path / "clf.pkl", framework="tensorflow")


def test_extra_artifacts_ride_along_with_the_model(tmp_path):
    clf, _, _ = iris_model()
    v = kfjupyter.register_model("iris", clf, artifacts={"card": write(tmp_path / "README.md", b"# Iris\n")})
    assert [a.name for a in v.artifacts] == ["model", "card"]
    assert registry.artifact_file("iris:1", "README.md", artifact="card").read_bytes() == b"# Iris\n"
    assert registry.local_path("iris:1", artifact="card").is_dir()
