"""The step runtime, run for real in subprocesses: parameters as data, values crossing
steps in every format, failures naming the step and the variable."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO
from kfjupyter.pipelines import from_notebook, stepruntime
from kfjupyter.pipelines.stepruntime import content_hash

RUNTIME = Path(stepruntime.__file__)


def run_step(tmp_path: Path, program: str, *args: str, step: str = "s", runtime: Path = RUNTIME,
             python_flags: tuple[str, ...] = (), env: dict | None = None) -> subprocess.CompletedProcess:
    prog = tmp_path / f"{step}.py"
    prog.write_text(textwrap.dedent(program), encoding="utf-8")
    environment = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, *python_flags, str(runtime), "--program", str(prog), "--step", step, *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment,
    )


def meta(path: Path) -> dict:
    return json.loads((path / "meta.json").read_text())


# ---------------------------------------------------------------------------------------
# Parameters are data
# ---------------------------------------------------------------------------------------

EVIL = "x'); import os; os.system('echo pwned > PWNED') #\"\"\" \\n {lr} %s"


def test_a_parameter_with_quotes_and_code_is_just_a_string(tmp_path):
    out = tmp_path / "out"
    r = run_step(
        tmp_path,
        "assert type(msg) is str\ncopy = msg\n",
        "--param", "msg", "str", EVIL, "--output", "copy", str(out),
    )
    assert r.returncode == 0, r.stderr
    assert meta(out)["format"] == "json"
    assert json.loads((out / "data.json").read_text()) == EVIL
    assert not (tmp_path / "PWNED").exists() and "pwned" not in r.stdout


def test_a_parameter_from_the_notebook_never_enters_the_program(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["pipeline-parameters"]}, "source": f"msg = {EVIL!r}\nn = 3", "outputs": [], "execution_count": None},
            {"cell_type": "code", "metadata": {"tags": ["step:echo"]}, "source": "echoed = msg * n", "outputs": [], "execution_count": None},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    p = from_notebook(nb)
    step = p.steps["echo"]
    assert p.parameters["msg"].default == EVIL and step.parameters == ["msg", "n"]
    assert "pwned" not in step.program and "import os" not in step.program
    out = tmp_path / "echoed"
    r = run_step(tmp_path, step.program, "--param", "msg", "str", EVIL, "--param", "n", "int", "2",
                 "--output", "echoed", str(out), step="echo")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "data.json").read_text()) == EVIL * 2
    assert not (tmp_path / "PWNED").exists()


def test_the_parser_is_built_once_and_each_command_line_is_its_own():
    """A supervisor builds the parser before it forks its steps; parsing one command line
    leaves nothing behind for the next (the ``append`` lists start empty each time)."""
    first = stepruntime._parser().parse_args(["--program", "a.py", "--input", "x", "/v/x", "--metric", "m"])
    second = stepruntime._parser().parse_args(["--program", "b.py"])
    assert stepruntime._parser() is stepruntime._parser()
    assert first.input == [["x", "/v/x"]] and first.metric == ["m"]
    assert (second.program, second.input, second.output, second.param, second.metric) == ("b.py", [], [], [], [])


def test_parameter_types(tmp_path):
    out = tmp_path / "out"
    r = run_step(
        tmp_path,
        "got = [i, f, b, b2, j, s]\nassert type(i) is int and type(f) is float and b is True and b2 is False\n",
        "--param", "i", "int", "-3", "--param", "f", "float", "2.5", "--param", "b", "bool", "TRUE",
        "--param", "b2", "bool", "false", "--param", "j", "json", '{"a": [1, null]}', "--param", "s", "str", "",
        "--output", "got", str(out),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "data.json").read_text()) == [-3, 2.5, True, False, {"a": [1, None]}, ""]
    bad = run_step(tmp_path, "pass", "--param", "b", "bool", "yes")
    assert bad.returncode == 1 and "step s: parameter b (bool): not a bool" in bad.stderr


# ---------------------------------------------------------------------------------------
# Values crossing steps, every format, producer and consumer in their own processes
# ---------------------------------------------------------------------------------------

PRODUCER = """
import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

arr = np.arange(12, dtype=np.float32).reshape(3, 4)
frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
series = pd.Series([0.5, 1.5], name="s")
tensor = torch.arange(6.0).reshape(2, 3)

class Net(torch.nn.Module):  # defined in the step: travels by value
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("scale", torch.tensor(2.0))
    def forward(self, x):
        return self.lin(x) * self.scale

torch.manual_seed(0)
net = Net()
net_out = net(tensor).detach()
clf = LogisticRegression().fit(arr[:, :2].repeat(4, axis=0), [0, 1, 0] * 4)
config = {"lr": 0.1, "layers": [8, 4], "name": "n", "ok": True, "none": None}
square = lambda v: v * v

class Point:  # a local class instance: cloudpickle
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2

point = Point(3, 4)
pair = (1, "two")  # a tuple is not JSON: cloudpickle keeps it a tuple
objects = np.array([{"k": 1}, None], dtype=object)  # object arrays: cloudpickle
factor = 3
def scaled(v):  # a function of the step, with a global it reads: cloudpickle, by value
    return v * factor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
# joblib cannot pickle the lambda inside: the sklearn format falls back to cloudpickle
doubled = make_pipeline(FunctionTransformer(lambda v: v * 2), LogisticRegression()).fit(arr[:, :2].repeat(4, axis=0), [0, 1, 0] * 4)
"""

CONSUMER = """
import numpy as np
import pandas as pd
import torch
assert type(arr) is np.ndarray and arr.dtype == np.float32 and arr.tolist() == np.arange(12).reshape(3, 4).tolist()
pd.testing.assert_frame_equal(frame, pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
pd.testing.assert_series_equal(series, pd.Series([0.5, 1.5], name="s"))
assert torch.equal(tensor, torch.arange(6.0).reshape(2, 3))
assert isinstance(net, torch.nn.Module) and type(net).__name__ == "Net"
assert torch.allclose(net(tensor), net_out) and float(net.scale) == 2.0
assert clf.predict(arr[:, :2]).tolist() == clf.predict(arr[:, :2]).tolist() and hasattr(clf, "coef_")
assert config == {"lr": 0.1, "layers": [8, 4], "name": "n", "ok": True, "none": None}
assert square(7) == 49
assert point.norm2() == 25 and type(point).__name__ == "Point"
assert pair == (1, "two") and type(pair) is tuple
assert objects[0] == {"k": 1} and objects[1] is None
assert scaled(2) == 6
assert doubled.steps[0][1].func(np.array([1.5]))[0] == 3.0 and len(doubled.predict(arr[:, :2])) == 3
print("all values arrived")
"""

FORMATS = {
    "arr": "numpy", "frame": "pandas", "series": "pandas", "tensor": "torch_tensor",
    "net": "torch_module", "net_out": "torch_tensor", "clf": "sklearn", "config": "json",
    "square": "cloudpickle", "point": "cloudpickle", "pair": "cloudpickle", "objects": "cloudpickle",
    "scaled": "cloudpickle", "doubled": "cloudpickle",
}


def test_every_format_round_trips_between_processes(tmp_path):
    values = tmp_path / "values"
    outs = [a for name in FORMATS for a in ("--output", name, str(values / name))]
    r = run_step(tmp_path, PRODUCER, *outs, step="produce")
    assert r.returncode == 0, r.stderr
    assert {name: meta(values / name)["format"] for name in FORMATS} == FORMATS
    assert meta(values / "clf") == {"name": "clf", "format": "sklearn",
                                    "type": "sklearn.linear_model._logistic.LogisticRegression"}
    assert (values / "arr" / "data.npy").is_file() and (values / "clf" / "data.joblib").is_file()
    ins = [a for name in FORMATS for a in ("--input", name, str(values / name))]
    r = run_step(tmp_path, CONSUMER, *ins, step="consume")
    assert r.returncode == 0, r.stderr
    assert "all values arrived" in r.stdout


def test_content_hash_follows_the_data(tmp_path):
    prog = "a = [1, 2, 3]\nb = [1, 2, 3]\nc = [1, 2, 4]\nd = np.array([1, 2, 3])\nimport numpy as np\n"
    prog = "import numpy as np\n" + prog
    args = [x for n in "abcd" for x in ("--output", n, str(tmp_path / n))]
    assert run_step(tmp_path, prog, *args).returncode == 0
    h = {n: content_hash(tmp_path / n) for n in "abcd"}
    assert h["a"] == h["b"] and h["a"] != h["c"] and h["a"] != h["d"] and len(h["a"]) == 64


# ---------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program, name, type_",
    [
        ("gen = (i for i in range(3))", "gen", "generator"),
        ("fh = open(__file__)", "fh", "_io.TextIOWrapper"),
        ("import threading\nlock = threading.Lock()", "lock", "_thread.lock"),
    ],
)
def test_an_unserialisable_output_fails_naming_step_and_variable(tmp_path, program, name, type_):
    error_file = tmp_path / "error.txt"
    r = run_step(tmp_path, program, "--output", name, str(tmp_path / "v" / name), step="producer",
                 env={"KFJUPYTER_ERROR_FILE": str(error_file)})
    assert r.returncode == 1
    expected = f"step producer: variable {name} ({type_}) cannot be passed to the next step: "
    assert expected in r.stderr and ("cannot pickle" in r.stderr or "open file" in r.stderr)
    assert expected in error_file.read_text()
    assert not (tmp_path / "v" / name).exists()


def test_a_failing_program_writes_its_traceback(tmp_path):
    error_file = tmp_path / "error.txt"
    r = run_step(tmp_path, "x = 1\nraise ValueError('bad value ' + str(x))\n", "--output", "x", str(tmp_path / "x"),
                 env={"KFJUPYTER_ERROR_FILE": str(error_file)})
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "ValueError: bad value 1" in r.stderr
    assert "ValueError: bad value 1" in error_file.read_text()
    assert "runpy" not in r.stderr and "stepruntime.py" not in r.stderr  # the program's frames only
    assert not (tmp_path / "x").exists()


def test_a_failure_says_which_notebook_cell_failed(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# t"},
            {"cell_type": "code", "metadata": {"tags": ["functions"]}, "source": "def half(v):\n    return v / 0", "outputs": [], "execution_count": None},
            {"cell_type": "code", "metadata": {"tags": ["step:a"]}, "source": "x = 1", "outputs": [], "execution_count": None},
            {"cell_type": "code", "metadata": {}, "source": "y = 2\nz = half(x)", "outputs": [], "execution_count": None},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    step = from_notebook(nb).steps["a"]
    r = run_step(tmp_path, step.program, step="a")
    assert r.returncode == 1 and "ZeroDivisionError" in r.stderr
    # the step's cell that called, then the functions cell where it raised (counted from 1,
    # markdown cells too, as JupyterLab counts them)
    assert r.stderr.splitlines()[-1] == "(in cell 4 line 2 → cell 2 line 2)"


def test_a_missing_output_and_a_missing_input_name_the_step(tmp_path):
    r = run_step(tmp_path, "y = 1", "--output", "x", str(tmp_path / "x"), step="prep")
    assert r.returncode == 1 and "step prep: variable x was not assigned" in r.stderr
    r = run_step(tmp_path, "y = 1", "--input", "x", str(tmp_path / "nowhere"), step="train")
    assert r.returncode == 1 and "step train: input x cannot be loaded" in r.stderr


def test_metrics_and_report_inside_a_step(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    r = run_step(tmp_path, "import kfjupyter\nkfjupyter.report(step=1, loss=0.5)\nacc = 0.75\ndisplay('shown')\n",
                 "--metric", "acc", env={"KFJUPYTER_METRICS_FILE": str(metrics)})
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(x["step"], x.get("loss"), x.get("acc")) for x in records] == [(1, 0.5, None), (None, None, 0.75)]
    assert "shown" in r.stdout
    bad = run_step(tmp_path, "acc = 'high'", "--metric", "acc")
    assert bad.returncode == 1 and "step s: metric acc (str) is not a number" in bad.stderr


def test_the_runtime_folder_does_not_shadow_the_programs_imports(tmp_path):
    r = run_step(tmp_path, "import sys, os\nimport kfjupyter.pipelines.graph\n"
                 "here = os.path.dirname(kfjupyter.pipelines.graph.__file__)\n"
                 "assert here not in [os.path.abspath(p) for p in sys.path if p], sys.path\n")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("with_bootstrap", [True, False])
def test_without_the_kfjupyter_package_report_still_works(tmp_path, with_bootstrap):
    """As in a bare KFP image: only the runtime file (and bootstrap.py next to it)."""
    folder = tmp_path / "component"
    folder.mkdir()
    shutil.copy(RUNTIME, folder / "stepruntime.py")
    if with_bootstrap:
        shutil.copy(REPO / "kfjupyter" / "runtime" / "bootstrap.py", folder / "bootstrap.py")
    metrics = tmp_path / "metrics.jsonl"
    out = tmp_path / "out"
    r = run_step(
        tmp_path,
        "import kfjupyter\nkfjupyter.report(loss=0.25)\nnote = kfjupyter.__doc__ or ''\nacc = 1\n",
        "--metric", "acc", "--output", "note", str(out),
        runtime=folder / "stepruntime.py", python_flags=("-S", "-I"),  # no site-packages: no kfjupyter
        env={"KFJUPYTER_METRICS_FILE": str(metrics)},
    )
    assert r.returncode == 0, r.stderr
    note = json.loads((out / "data.json").read_text())
    assert ("stand-in" in note) is with_bootstrap
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [x.get("loss") for x in records] == [0.25, None] and records[1]["acc"] == 1.0


# ---------------------------------------------------------------------------------------
# ML values cloudpickle cannot carry, and what a value that no format can save says
# ---------------------------------------------------------------------------------------


def test_xgboost_values_cross_steps(tmp_path):
    pytest.importorskip("xgboost")
    values = tmp_path / "values"
    names = {"dtrain": "xgboost_dmatrix", "booster": "xgboost_booster", "clf": "sklearn"}
    r = run_step(tmp_path, """
        import numpy as np
        import xgboost as xgb
        X = np.random.default_rng(0).normal(size=(40, 3))
        y = (X[:, 0] > 0).astype(int)
        dtrain = xgb.DMatrix(X, label=y, weight=np.full(40, 0.5), feature_names=["a", "b", "c"])
        booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, dtrain, num_boost_round=3)
        expected = booster.predict(dtrain).tolist()
        clf = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X, y)
        clf_expected = clf.predict_proba(X).tolist()
        """, *[a for n in [*names, "expected", "clf_expected"] for a in ("--output", n, str(values / n))], step="train")
    assert r.returncode == 0, r.stderr
    assert {n: meta(values / n)["format"] for n in names} == names
    assert (values / "dtrain" / "data.buffer").is_file() and (values / "booster" / "data.json").is_file()
    r = run_step(tmp_path, """
        import numpy as np
        import xgboost as xgb
        assert type(dtrain) is xgb.DMatrix and dtrain.num_row() == 40 and dtrain.feature_names == ["a", "b", "c"]
        assert dtrain.get_weight().tolist() == [0.5] * 40 and set(dtrain.get_label().tolist()) == {0.0, 1.0}
        assert type(booster) is xgb.Booster and np.allclose(booster.predict(dtrain), expected)
        assert type(clf) is xgb.XGBClassifier and clf.get_params()["max_depth"] == 2  # hyperparameters kept
        assert np.allclose(clf.predict_proba(dtrain.get_data().toarray()), clf_expected)
        print("xgboost values arrived")
        """, *[a for n in [*names, "expected", "clf_expected"] for a in ("--input", n, str(values / n))], step="evaluate")
    assert r.returncode == 0, r.stderr
    assert "xgboost values arrived" in r.stdout


KERAS_ENV = {"KERAS_BACKEND": "torch"}  # torch is a test dependency; tensorflow is not


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="keras is not installed")
def test_a_keras_model_crosses_steps_with_a_layer_the_step_defines(tmp_path):
    values = tmp_path / "values"
    r = run_step(tmp_path, """
        import keras
        import numpy as np

        class Doubling(keras.layers.Layer):  # defined in the step: no module holds it
            def call(self, x):
                return x * 2

        plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        plain.compile(optimizer="adam", loss="mse")
        plain.fit(np.ones((8, 3)), np.ones((8, 2)), epochs=1, verbose=0)
        custom = keras.Sequential([keras.Input((3,)), Doubling(), keras.layers.Dense(1)])
        x = np.arange(6.0).reshape(2, 3)
        expected = [plain.predict(x, verbose=0).tolist(), custom.predict(x, verbose=0).tolist()]
        """, *[a for n in ("plain", "custom", "expected") for a in ("--output", n, str(values / n))],
        step="fit", env=KERAS_ENV)
    assert r.returncode == 0, r.stderr
    assert meta(values / "plain") == {"name": "plain", "format": "keras", "library": "keras",
                                      "type": "keras.src.models.sequential.Sequential"}
    assert meta(values / "custom")["format"] == "keras" and (values / "custom" / "custom.pkl").is_file()
    r = run_step(tmp_path, """
        import numpy as np
        x = np.arange(6.0).reshape(2, 3)
        assert np.allclose(plain.predict(x, verbose=0), expected[0]) and plain.optimizer is not None
        assert np.allclose(custom.predict(x, verbose=0), expected[1])
        assert type(custom.layers[0]).__name__ == "Doubling"
        print("keras models arrived")
        """, *[a for n in ("plain", "custom", "expected") for a in ("--input", n, str(values / n))],
        step="predict", env=KERAS_ENV)
    assert r.returncode == 0, r.stderr
    assert "keras models arrived" in r.stdout


def _notebook(*cells):
    return {
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# t"}]
        + [{"cell_type": "code", "metadata": {"tags": tags}, "source": source, "outputs": [], "execution_count": None}
           for tags, source in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }


@pytest.mark.parametrize("kind", ["lock", "quantile_dmatrix"])
def test_a_value_no_format_can_save_names_its_cell_and_the_remedy(tmp_path, kind):
    if kind == "lock":
        imports, make, type_ = "import threading", "made = threading.Lock()", "_thread.lock"
    else:
        pytest.importorskip("xgboost")
        imports = "import numpy as np\nimport xgboost as xgb"
        make = "made = xgb.QuantileDMatrix(np.ones((4, 2)), label=np.ones(4))"
        type_ = "xgboost.core.QuantileDMatrix"
    nb = _notebook((["imports"], imports), (["step:make"], "n = 1"), ([], f"m = 2\n{make}"),
                   (["step:use"], "print(made)"))
    step = from_notebook(nb).steps["make"]
    assert step.outputs == ["made"]
    error_file = tmp_path / "error.txt"
    r = run_step(tmp_path, step.program, "--output", "made", str(tmp_path / "made"), step="make",
                 env={"KFJUPYTER_ERROR_FILE": str(error_file)})
    assert r.returncode == 1
    message = error_file.read_text()
    assert message.startswith(f"step make: variable made ({type_}) cannot be passed to the next step: ")
    # the notebook's 4th cell (JupyterLab's "Cell 4/5"), its 2nd line
    assert "made was last assigned in cell 4 (line 2)." in message
    assert message.rstrip().endswith(
        "To pass it on, save it to a file in the step and pass the path, or recreate it in the next step, "
        "or tag the cell that makes it with the step that uses it.")
    assert not (tmp_path / "made").exists()


def test_the_last_assignment_of_a_name_is_found_at_module_level():
    lines = textwrap.dedent("""\
        # ---- step a: cell 2 ----
        x = 1
        def f():
            x = 5
        # ---- step a: cell 3 ----
        for x in range(2):
            pass
        y = [x for x in range(3)]
        import os.path as x
        """).splitlines()
    assert stepruntime._last_assignment(lines, "x") == 9  # the import, not the comprehension
    assert stepruntime._cell_at(lines, 9) == (3, 4)
    assert stepruntime._last_assignment(lines, "f") == 3
    assert stepruntime._last_assignment(lines, "nowhere") is None


# ---------------------------------------------------------------------------------------
# IPython magics and shell lines inside a step
# ---------------------------------------------------------------------------------------

MAGICS = """
get_ipython().run_line_magic('time', 'x = 1')
get_ipython().system('echo hi from the shell')
get_ipython().run_cell_magic('capture', 'out', 'print(1)')
captured = out.stdout
lines = get_ipython().getoutput('echo a; echo b')
listed = list(lines)
"""


def test_magics_and_shell_lines_run_in_the_steps_namespace(tmp_path):
    values = tmp_path / "values"
    r = run_step(tmp_path, MAGICS, *[a for n in ("x", "captured", "listed") for a in ("--output", n, str(values / n))])
    assert r.returncode == 0, r.stderr
    assert "hi from the shell" in r.stdout and "Wall time" in r.stdout
    got = {n: json.loads((values / n / "data.json").read_text()) for n in ("x", "captured", "listed")}
    assert got == {"x": 1, "captured": "1\n", "listed": ["a", "b"]}


def test_matplotlib_inline_runs_headless(tmp_path):
    pytest.importorskip("matplotlib")
    r = run_step(tmp_path, """
        get_ipython().run_line_magic('matplotlib', 'inline')
        import matplotlib.pyplot as plt
        plt.plot([1, 2, 3])
        plt.show()
        done = True
        """, "--output", "done", str(tmp_path / "done"))
    assert r.returncode == 0, r.stderr


def test_a_step_without_magics_never_imports_ipython(tmp_path):
    r = run_step(tmp_path, """
        import sys
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("IPython", "traitlets"))
        offered = "get_" + "ipython" in globals()  # (the name itself would ask for it)
        """, "--output", "loaded", str(tmp_path / "loaded"), "--output", "offered", str(tmp_path / "offered"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "loaded" / "data.json").read_text()) == []
    assert json.loads((tmp_path / "offered" / "data.json").read_text()) is False


def test_a_magic_without_ipython_names_its_cell(tmp_path):
    """As in an image without IPython: only the runtime file, no site-packages."""
    folder = tmp_path / "component"
    folder.mkdir()
    shutil.copy(RUNTIME, folder / "stepruntime.py")
    program = "# ---- step s: cell 4 ----\nn = 1\nget_ipython().system('echo hi')\n"
    r = run_step(tmp_path, program, runtime=folder / "stepruntime.py", python_flags=("-S", "-I"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(
        "step s: cell 5 line 2 (get_ipython().system('echo hi')) runs an IPython magic or !shell line, "
        "but IPython cannot be imported where the step runs")
    assert "install ipython in the step's image" in r.stderr


# ---------------------------------------------------------------------------------------
# An input passed on unchanged is not written again
# ---------------------------------------------------------------------------------------

PASSED_ON = {"arr": "numpy", "frame": "pandas", "tensor": "torch_tensor", "clf": "sklearn",
             "config": "json", "point": "cloudpickle"}


def test_an_unchanged_input_passed_on_is_linked_a_changed_one_written(tmp_path):
    first, same, again, changed = tmp_path / "first", tmp_path / "same", tmp_path / "again", tmp_path / "changed"
    r = run_step(tmp_path, PRODUCER + "arr = np.arange(300_000, dtype=np.float64)\n",
                 *[a for n in PASSED_ON for a in ("--output", n, str(first / n))], step="produce")
    assert r.returncode == 0, r.stderr

    def keep(src, dst):
        r = run_step(tmp_path, "import numpy, pandas, torch, sklearn\n",
                     *[a for n in PASSED_ON for a in ("--input", n, str(src / n), "--output", n, str(dst / n))],
                     step="keep")
        assert r.returncode == 0, r.stderr
        return {n for n, fmt in PASSED_ON.items()
                if meta(dst / n)["format"] == fmt and os.path.samefile(src / n / f"data.{stepruntime._EXT[fmt]}",
                                                                       dst / n / f"data.{stepruntime._EXT[fmt]}")}

    # a DataFrame with a str column and a fitted estimator pickle to other bytes once unpickled
    # (the pickles' memo differs): written again on their first pass, linked from then on
    assert keep(first, same) == set(PASSED_ON) - {"frame", "clf"}
    assert keep(same, again) == set(PASSED_ON)
    passed = [a for n in PASSED_ON for a in ("--input", n, str(first / n))]
    r = run_step(tmp_path, """
        import numpy, pandas, torch, sklearn
        arr[-1] = -1.0        # the last bytes differ
        frame["c"] = 1
        tensor[0, 0] = 9.0
        clf.coef_[0, 0] += 1
        config["layers"].append(2)  # longer
        point.y = 0
        """, *passed, *[a for n in PASSED_ON for a in ("--output", n, str(changed / n))], step="change")
    assert r.returncode == 0, r.stderr
    for n, fmt in PASSED_ON.items():
        assert not os.path.samefile(first / n / f"data.{stepruntime._EXT[fmt]}",
                                    changed / n / f"data.{stepruntime._EXT[fmt]}"), n
    r = run_step(tmp_path, """
        import numpy as np
        assert arr[-1] == -1.0 and arr[0] == 0.0 and len(arr) == 300_000
        assert list(frame.columns) == ["a", "b", "c"]
        assert float(tensor[0, 0]) == 9.0 and float(tensor[0, 1]) == 1.0
        assert config["layers"] == [8, 4, 2] and point.norm2() == 9
        print("changes arrived")
        """, *[a for n in PASSED_ON for a in ("--input", n, str(changed / n))], step="check")
    assert r.returncode == 0, r.stderr
    assert "changes arrived" in r.stdout


def test_a_value_shorter_than_the_input_it_replaces(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    stepruntime.save_value(list(range(100)), old, name="v")
    stepruntime.save_value(list(range(10)), new, name="v", previous=old)
    assert stepruntime.load_value(new) == list(range(10))
    stepruntime.save_value(list(range(100)), new, name="v", previous=new)  # its own directory: written
    assert stepruntime.load_value(new) == list(range(100))


def test_a_notebooks_magics_run_in_its_compiled_step(tmp_path):
    nb = _notebook((["imports"], "import os"), (["step:a"], "%time z = len(os.sep) + 1\n!echo shell says hi"),
                   (["step:b"], "print(z)"))
    step = from_notebook(nb).steps["a"]
    assert step.outputs == ["z"] and "get_ipython()" in step.program
    r = run_step(tmp_path, step.program, "--output", "z", str(tmp_path / "z"), step="a")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "z" / "data.json").read_text()) == 2
    assert "shell says hi" in r.stdout
