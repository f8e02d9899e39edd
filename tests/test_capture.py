"""Code capture: what a cell needs from the notebook, and the preflight that guards it."""

from __future__ import annotations

import threading

import pytest

from kfjupyter.capture.analysis import free_names
from kfjupyter.capture.program import capture, write_bundle
from kfjupyter.errors import PreflightError


class TestFreeNames:
    def test_names_read_before_bound_are_free(self):
        assert free_names("y = x + 1\nprint(y)") == ["x", "print"]

    def test_loop_targets_and_assignments_in_the_body_are_not_free(self):
        src = "for step in range(epochs):\n    loss = f(step)\n    print(loss)\n"
        assert free_names(src) == ["range", "epochs", "f", "print"]

    def test_reading_a_name_before_rebinding_it_is_free(self):
        assert free_names("x = x + 1") == ["x"]

    def test_globals_read_inside_functions_lambdas_and_comprehensions(self):
        src = "def g():\n    return model, other\nmodel = 1\nh = lambda a: a * scale\nys = [lr * i for i in r]"
        assert set(free_names(src)) == {"other", "scale", "lr", "r"}

    def test_imports_bind_names(self):
        assert free_names("import torch.nn as nn\nfrom os import path\nnn, path, torch") == ["torch"]


def test_functions_from_the_notebook_travel_as_source_with_what_they_use(shell):
    shell.run_cell("import math\nimport json as j\nSCALE = 3", store_history=True)
    shell.run_cell(
        "class Base:\n    k = 1\nclass Net(Base):\n    pass\n"
        "def helper(x):\n    return math.sqrt(x) * SCALE + Net.k",
        store_history=True,
    )
    program = capture("print(helper(2), j.dumps(1))", shell.user_ns, history=shell.user_ns["In"])
    assert program.imports == ["import math", "import json as j"]
    # post-order: a class's base comes before it, a function after what it uses
    assert [d.split("(")[0].split(":")[0] for d in program.definitions] == ["class Base", "class Net", "def helper"]
    assert list(program.values) == ["SCALE"]


def test_values_are_serialised_and_unpicklable_ones_are_named():
    with pytest.raises(PreflightError) as err:
        capture("print(lock, n)", {"lock": threading.Lock(), "n": 1})
    assert err.value.culprit == "lock"
    assert "'lock'" in str(err.value) and "cannot be serialised" in str(err.value)


def test_a_generator_cannot_cross():
    with pytest.raises(PreflightError, match="'gen'"):
        capture("print(next(gen))", {"gen": (i for i in range(3))})


def test_an_unresolvable_name_is_named():
    with pytest.raises(PreflightError) as err:
        capture("model = make_model()\nprint(epochs)", {"epochs": 2})
    assert err.value.culprit == "make_model"
    assert "'make_model'" in str(err.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(PreflightError) as err:
        capture("print(a, b)", {})
    assert "'a'" in str(err.value) and "'b'" in str(err.value)


def test_a_missing_local_module_is_named(workdir):
    with pytest.raises(PreflightError) as err:
        capture("import mylib_that_is_gone\nmylib_that_is_gone.run()", {})
    assert err.value.culprit == "mylib_that_is_gone"
    assert "cannot be found" in str(err.value)


def test_local_modules_are_snapshotted_with_their_own_imports(workdir):
    (workdir / "mylib.py").write_text("import helpers\ndef run():\n    return helpers.VALUE\n")
    (workdir / "helpers.py").write_text("VALUE = 42\n")
    program = capture("import mylib\nprint(mylib.run())", {})
    assert set(program.modules) == {"mylib.py", "helpers.py"}
    bundle = write_bundle(program, workdir / "bundle")
    assert set(bundle.manifest["modules"]) == {"mylib.py", "helpers.py"}
    assert (bundle.root / "modules" / "helpers.py").read_text() == "VALUE = 42\n"


def test_installed_packages_are_not_snapshotted(workdir):
    program = capture("import json, numpy\nprint(json, numpy)", {})
    assert program.modules == {}


def test_payload_over_the_limit_names_the_largest_value(workdir):
    program = capture("print(len(big), small)", {"big": b"x" * 300_000, "small": 1})
    with pytest.raises(PreflightError) as err:
        write_bundle(program, workdir / "bundle", max_bytes=100_000)
    assert err.value.culprit == "big" and "over the limit" in str(err.value)
    assert not (workdir / "bundle").exists()


def test_magics_inside_the_cell_are_refused():
    with pytest.raises(PreflightError, match="line 2"):
        capture("x = 1\nget_ipython().run_line_magic('time', 'x')", {})
