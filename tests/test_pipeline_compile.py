"""Tagged notebook → Pipeline: golden files, every graph error naming its cell, rendering.

Golden cases live in tests/golden/pipelines/<case>/: notebook.ipynb (written by
make_notebooks.py there; the ``demo`` case compiles notebooks/pipeline_demo.ipynb),
graph.json (Pipeline.to_dict() without the notebook path and the programs) and
steps/<step>.py (each step's generated program). Regenerate the expectations with
``KFJ_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_pipeline_compile.py``.
"""

from __future__ import annotations

import json
import os
import xml.dom.minidom
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import REPO
from kfjupyter.pipelines import Pipeline, PipelineError, from_notebook, render
from kfjupyter.pipelines.graph import PipelineWarning
from kfjupyter.pipelines.tags import CellTags, TagError, format_tags, parse_tags

GOLDEN = REPO / "tests" / "golden" / "pipelines"
UPDATE = os.environ.get("KFJ_UPDATE_GOLDEN") == "1"
CASES = {
    "kale_style": GOLDEN / "kale_style" / "notebook.ipynb",
    "branches": GOLDEN / "branches" / "notebook.ipynb",
    "demo": REPO / "notebooks" / "pipeline_demo.ipynb",
}


def graph_of(pipeline: Pipeline) -> dict:
    data = pipeline.to_dict()
    data.pop("notebook")
    for step in data["steps"].values():
        step.pop("program")
    return data


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    pipeline = from_notebook(CASES[case])
    folder = GOLDEN / case
    graph = json.dumps(graph_of(pipeline), indent=2, sort_keys=False) + "\n"
    programs = {f"{name}.py": step.program for name, step in pipeline.steps.items()}
    if UPDATE:
        (folder / "steps").mkdir(parents=True, exist_ok=True)
        (folder / "graph.json").write_text(graph, encoding="utf-8")
        for old in (folder / "steps").glob("*.py"):
            old.unlink()
        for name, text in programs.items():
            (folder / "steps" / name).write_text(text, encoding="utf-8")
    assert graph == (folder / "graph.json").read_text(encoding="utf-8")
    assert sorted(p.name for p in (folder / "steps").glob("*.py")) == sorted(programs)
    for name, text in programs.items():
        assert text == (folder / "steps" / name).read_text(encoding="utf-8"), name
    # the programs are valid Python and the pipeline round-trips through JSON
    for text in programs.values():
        compile(text, "<step>", "exec")
    assert Pipeline.from_dict(json.loads(json.dumps(pipeline.to_dict()))) == pipeline


def test_kale_notebook_semantics():
    p = from_notebook(CASES["kale_style"])
    assert p.name == "kale-style"  # kubeflow_notebook.pipeline_name
    assert list(p.steps) == ["load_data", "train", "report", "notify"]
    # block: and step: both start steps; untagged cells continue them; a skip cell is left
    # out and the untagged cell after it continues the step before it (Kale's rule);
    # markdown cells count in the cell indexes
    assert p.steps["load_data"].cells == [5, 6]
    assert p.steps["train"].cells == [8, 9, 11]
    assert all(10 not in s.cells for s in p.steps.values())
    assert "plt" not in "".join(s.program for s in p.steps.values())
    # the untagged cell after the imports joined them; the line magic runs, as in Kale's kernel
    assert "import random" in p.imports
    assert "get_ipython().run_line_magic('matplotlib', 'inline')" in p.steps["train"].program
    train = p.steps["train"]
    assert train.image == "python:3.11-slim" and p.steps["load_data"].image == "python:3.11"  # docker_image
    assert train.limits == {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"}
    assert p.steps["report"].cache is False and train.cache is True
    assert train.inputs == {"data": "load_data"} and train.parameters == ["epochs", "lr"]
    assert p.steps["report"].inputs == {"w": "train", "train_loss": "train"}
    assert {k: (v.type, v.default) for k, v in p.parameters.items()} == {
        "lr": ("float", 0.1),
        "epochs": ("int", 3),
        "name": ("str", 'it\'s "quoted"'),
        "layers": ("json", [8, 4]),
        "verbose": ("bool", True),
        "config": ("json", {"opt": "sgd", "momentum": 0.9}),
    }
    # the last step holding a metric reports it (report received it from train), as Kale does
    assert p.metrics == ["train_loss"] and p.steps["report"].metrics == ["train_loss"]
    assert "train_loss" in train.outputs and "train_loss" in p.steps["report"].outputs
    # imports and functions are in every program; parameter values in none
    for step in p.steps.values():
        assert "import math" in step.program and "def loss(w, data):" in step.program
        assert "0.1" not in step.program and "quoted" not in step.program


def test_explicit_prev_without_data_flow_keeps_its_edge():
    p = from_notebook(CASES["kale_style"])
    notify = p.steps["notify"]
    assert notify.inputs == {} and notify.prev == ["train"]
    from kfjupyter.pipelines.model import Edge

    assert Edge("train", "notify", (), True) in p.edges
    assert p.upstream("notify") == ["train"]


def test_nearest_ancestor_supplies_a_name():
    p = from_notebook(CASES["branches"])
    # b and c both assign model; d (prev:b) gets b's, e (prev:c) gets c's
    assert p.steps["d"].inputs == {"model": "b", "scale": "b"}  # scale rebound by b
    assert p.steps["e"].inputs == {"model": "c"}
    # f has no prev: its names come from the nearest earlier steps, as data edges
    assert p.steps["f"].inputs == {"result": "d", "other": "e"}
    assert p.upstream("f") == ["d", "e"]
    assert p.name == "notebook"  # no metadata, no name: the file's stem


def _nb(*cells: tuple[list[str], str]) -> dict:
    nb = new_notebook()
    nb.cells = [new_code_cell(src, metadata={"tags": tags}) for tags, src in cells]
    return nb


def test_a_step_that_changes_an_input_in_place_passes_the_changed_value_on():
    """``df['b'] = …`` or ``model.fit(…)`` changes a value without rebinding it: the later
    steps read it from the step that changed it (and run after it), as the notebook does."""
    frames = from_notebook(_nb(
        (["imports"], "import pandas as pd"),
        (["step:load"], "df = pd.DataFrame({'a': [1, 2, 3]})"),
        (["step:clean"], "df['b'] = df['a'] * 2"),
        (["step:train"], "total = df['b'].sum()"),
    ))  # fmt: skip
    assert frames.steps["clean"].inputs == {"df": "load"} and frames.steps["clean"].outputs == ["df"]
    assert frames.steps["train"].inputs == {"df": "clean"}
    models = from_notebook(_nb(
        (["imports"], "from sklearn.linear_model import LogisticRegression"),
        (["functions"], "def make():\n    return LogisticRegression()\ndef data():\n    return [[0.0], [1.0]], [0, 1]"),
        (["step:define"], "model = make()\nX, y = data()"),
        (["step:train"], "model.fit(X, y)"),
        (["step:evaluate"], "score = model.score(X, y)"),
    ))  # fmt: skip
    # X and y come from train too: a step passes on to its descendants what it received
    # (model.fit could have changed them), as in the notebook
    assert models.steps["evaluate"].inputs == {"model": "train", "X": "train", "y": "train"}
    assert models.upstream("evaluate") == ["train"]
    # explicit prev: tags that make train and evaluate parallel branches are kept: the
    # nearest *ancestor* supplies the name
    branches = from_notebook(_nb(
        (["step:define"], "model = dict(fitted=False)"),
        (["step:train", "prev:define"], "model.update(fitted=True)"),
        (["step:evaluate", "prev:define"], "n = model.get('fitted')"),
    ))  # fmt: skip
    assert branches.steps["evaluate"].inputs == {"model": "define"}


def test_steps_that_only_read_a_value_stay_parallel():
    p = from_notebook(_nb(
        (["step:prep"], "X = [1, 2, 3]"),
        (["step:left"], "a = sum(X)\nprint(len(X), X[0])"),
        (["step:right"], "b = max(X)"),
    ))  # fmt: skip
    assert p.steps["right"].inputs == {"X": "prep"} and p.upstream("right") == ["prep"]


def test_accepts_notebooknode_and_dict_and_a_name():
    node = nbformat.read(CASES["demo"], as_version=4)
    by_node = from_notebook(node, name="mine")
    by_dict = from_notebook(json.loads(CASES["demo"].read_text()))
    by_path = from_notebook(str(CASES["demo"]))
    assert by_node.name == "mine" and by_dict.name == by_path.name == "iris-demo"
    assert by_node.notebook is None and by_path.notebook == str(CASES["demo"])
    assert graph_of(by_dict) == graph_of(by_path)
    with pytest.raises(TypeError):
        from_notebook(42)


def test_demo_notebook_graph():
    p = from_notebook(CASES["demo"])
    assert render.layers(p) == [["prepare"], ["train-logreg", "train-forest"], ["evaluate"]]
    assert p.steps["evaluate"].metrics == ["logreg_accuracy", "forest_accuracy"]
    assert "parameters" not in json.dumps(p.steps["prepare"].limits)


# ---------------------------------------------------------------------------------------
# Errors: each one names the cell
# ---------------------------------------------------------------------------------------


def notebook(*cells) -> dict:
    """A markdown cell first (so cell indexes count it), then (source, tag, …) code cells."""
    nb = new_notebook(cells=[new_markdown_cell("# test")])
    for source, *tags in cells:
        cell = new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def compile_error(*cells) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        from_notebook(notebook(*cells))
    err = info.value
    assert str(err).startswith(f"cell {err.cell + 1}: "), str(err)
    return err


def test_cycle_names_the_cell():
    err = compile_error(
        ("x = 1", "step:a"),
        ("y = 1", "step:b", "prev:a", "prev:d"),
        ("z = 1", "step:c", "prev:b"),
        ("w = 1", "step:d", "prev:c"),
    )
    assert err.cell == 2 and "cycle: b → c → d → b" in str(err)


def test_self_prev_is_an_error():
    err = compile_error(("x = 1", "step:a", "prev:a"))
    assert err.cell == 1 and "itself" in str(err)


def test_unknown_prev_target_names_the_cell():
    err = compile_error(("x = 1", "step:a"), ("y = x", "step:b", "prev:prep"))
    assert err.cell == 2 and "prev:prep" in str(err) and "no step is named 'prep'" in str(err)


def test_name_no_ancestor_provides_names_the_cell_and_the_name():
    err = compile_error(("x = 1", "step:a"), ("y = x", "step:b"), ("print(y)",), ("z = missing + y",))
    assert err.cell == 4 and "'missing'" in str(err) and "step 'b'" in str(err)


def test_name_assigned_only_by_a_later_step():
    err = compile_error(("y = late", "step:a"), ("late = 1", "step:b"))
    assert err.cell == 1 and "'late'" in str(err) and "step 'b' assigns it, but runs later" in str(err)


def test_a_step_name_used_again_continues_that_step():
    """Kale's rule: a later cell tagged with a step name already used joins that step."""
    p = from_notebook(notebook(("x = 1", "step:a"), ("y = 2", "step:b"), ("z = x + 1", "step:a"), ("w = z + y", "step:c")))
    assert p.steps["a"].cells == [1, 3] and "z = x + 1" in p.steps["a"].program
    assert p.steps["c"].inputs == {"z": "a", "y": "b"}


def test_the_same_step_tag_on_consecutive_cells_is_one_step():
    p = from_notebook(notebook(("x = 1", "step:a"), ("y = x", "block:a"), ("z = y", "step:b")))
    assert p.steps["a"].cells == [1, 2] and p.steps["b"].inputs == {"y": "a"}


@pytest.mark.parametrize("tag", ["step:Train", "step:-x", "step:a b", "step:x-", "prev:Bad"])
def test_invalid_step_name_names_the_cell(tag):
    extra = ["step:ok"] if tag.startswith("prev:") else []
    err = compile_error(("x = 1", "step:first"), ("y = x", tag, *extra))
    assert err.cell == 2 and "invalid step name" in str(err)


@pytest.mark.parametrize(
    "source, problem",
    [
        ("lr = 0.1\nn = compute()", "line 2 `n = compute()` assigns something other than a literal"),
        ("lr = 0.1\nprint(lr)", "line 2 `print(lr)` is not a NAME = literal assignment"),
        ("a = b = 1", "line 1 `a = b = 1` is not a NAME = literal assignment"),
        ("x, y = 1, 2", "is not a NAME = literal assignment"),
        ("s = {1, 2}", "not JSON"),
        ("d = {1: 'a'}", "not JSON"),
        ("lr = 0.1 +", "syntax error"),
    ],
)
def test_bad_parameters_cell_names_the_cell(source, problem):
    err = compile_error(("x = 1", "step:a"), (source, "pipeline-parameters"))
    assert err.cell == 2 and problem in str(err)


def test_parameter_literals_and_their_types():
    p = from_notebook(notebook(("a = 1\nb: float = 2.5\nc = 'x'\nd = False\ne = (1, 'two')\nf = None", "pipeline-parameters"),
                               ("print(a, b, c, d, e, f)", "step:s")))
    assert {k: (v.type, v.default) for k, v in p.parameters.items()} == {
        "a": ("int", 1), "b": ("float", 2.5), "c": ("str", "x"), "d": ("bool", False),
        "e": ("json", [1, "two"]), "f": ("json", None),
    }
    assert p.steps["s"].parameters == ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize(
    "tags, message",
    [
        (["limit:cpu"], "malformed tag 'limit:cpu'"),
        (["step:b", "limit:cpu:x"], "not a Kubernetes quantity"),
        (["step:b", "limit:gpu:1"], "not a Kubernetes resource"),
        (["cache:maybe"], "malformed tag"),
        (["prev:a"], "needs a step:NAME tag"),
        (["step:b", "step:c"], "2 step tags"),
        (["stpe:b"], "unknown tag 'stpe:b'; did you mean 'step:b'?"),
        (["foo:bar"], "unknown tag 'foo:bar'"),
    ],
)
def test_malformed_tags_name_the_cell(tags, message):
    err = compile_error(("x = 1", "step:a"), ("y = x", *tags))
    assert err.cell == 2 and message in str(err)


def test_untagged_cells_before_any_tag_are_left_out_with_a_warning():
    """Kale's rule: they are not part of the pipeline; a step reading what one assigns
    is told so."""
    with pytest.warns(PipelineWarning, match="cell 2 .*not part of the pipeline"):
        p = from_notebook(notebook(("%load_ext kfjupyter\n!pip install nothing",), ("x = 1", "step:a")))
    assert p.steps["a"].cells == [2]
    with pytest.warns(PipelineWarning):
        err = compile_error(("x = 1",), ("y = x", "step:a"))
    assert err.cell == 2 and "cell 2 assigns it, but that cell is untagged" in str(err)


def test_a_notebook_without_pipeline_tags_says_so():
    with pytest.raises(PipelineError) as info:
        from_notebook(notebook(("x = 1",), ("y = x",)))
    err = info.value
    assert "this notebook has no pipeline tags" in str(err) and "step:NAME" in str(err)


def test_no_steps_is_an_error():
    with pytest.raises(PipelineError, match="no steps"):
        from_notebook(notebook(("import os", "imports")))


def test_syntax_error_names_the_cell():
    assert compile_error(("x = 1", "step:a"), ("y = (", "step:b")).cell == 2
    assert compile_error(("x = 1", "step:a"), ("%%time\ny = (",)).cell == 2


@pytest.mark.parametrize(
    "source, message",
    [
        ("print(missing_metric)", "pipeline metric 'missing_metric' is not assigned by any step"),
        ("acc + 1", "lists variable names"),
    ],
)
def test_bad_metrics_cell_names_the_cell(source, message):
    err = compile_error(("acc = 1", "step:a"), (source, "pipeline-metrics"))
    assert err.cell == 2 and message in str(err)


@pytest.mark.parametrize(
    "producer, name, why",
    [
        ("with open(__file__) as f:\n    first = f.readline()", "f", "with … as f"),
        ("squares = (i * i for i in range(3))", "squares", "generator"),
        ("def gen():\n    yield 1\nitems = gen()", "items", "generator"),
        ("fh = open(__file__)", "fh", "open file"),
        ("import json as js", "js", "module"),
    ],
)
def test_value_that_cannot_cross_is_a_compile_error_naming_cell_and_variable(producer, name, why):
    err = compile_error(("x = 1", "step:a"), ("y = x",), (producer, "step:b"), (f"print({name})", "step:c"))
    assert err.cell == 3, str(err)
    assert f"variable {name!r}" in str(err) and "step 'c'" in str(err) and why in str(err)


def test_a_with_resource_used_only_inside_its_step_is_fine():
    p = from_notebook(notebook(("with open(__file__) as f:\n    text = f.read()", "step:a"), ("print(len(text))", "step:b")))
    assert p.steps["b"].inputs == {"text": "a"}


# ---------------------------------------------------------------------------------------
# Tags and rendering
# ---------------------------------------------------------------------------------------


def test_tag_grammar():
    t = parse_tags(["block:train", "prev:a", "prev:b", "prev:a", "image:ghcr.io/x/y:1.0@sha256:ab", "limit:cpu:500m",
                    "limit:nvidia.com/gpu:1", "cache:False", "parameters", "annotation:x:y", "label:team:cv",
                    "secret:db-creds:password:DB_PASSWORD", "report:disabled"])
    assert t == CellTags("step", "train", ["a", "b"], "ghcr.io/x/y:1.0@sha256:ab",
                         {"cpu": "500m", "nvidia.com/gpu": "1"}, False, {"x": "y"}, {"team": "cv"},
                         {"DB_PASSWORD": {"name": "db-creds", "key": "password"}}, False)
    assert parse_tags(format_tags(t)) == t
    assert parse_tags([]).kind is None and parse_tags(["skip"]).kind == "skip"
    assert parse_tags(["pipeline-parameters", "parameters"]).kind == "pipeline-parameters"
    with pytest.raises(TagError):
        parse_tags(["image:"])


def test_svg_and_dot_rendering():
    p = from_notebook(CASES["kale_style"])
    svg = p._repr_svg_()
    doc = xml.dom.minidom.parseString(svg)
    steps = [g.getAttribute("data-step") for g in doc.getElementsByTagName("g") if g.getAttribute("data-step")]
    assert steps == list(p.steps)
    paths = [pth for pth in doc.getElementsByTagName("path") if pth.parentNode.getAttribute("class").startswith("kfj-edge")]
    assert len(paths) == len(p.edges)
    dashed = [pth for pth in paths if pth.getAttribute("stroke-dasharray")]
    assert len(dashed) == sum(e.explicit and not e.names for e in p.edges) == 1  # order only
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild]
    assert "data" in texts and "w, train_loss" in texts and "notify" in texts
    dot = render.to_dot(p)
    assert dot.startswith('digraph "kale-style" {')
    assert '"train" -> "notify" [style=dashed];' in dot
    assert '"train" -> "report" [label="w, train_loss"];' in dot
    assert '"load_data" -> "train" [label="data"];' in dot  # prev: and data: a data edge


def test_svg_escapes_names():
    p = from_notebook(notebook(("x = 1", "step:a"), ("y = x", "step:b")), name='<evil & "name">')
    svg = render.to_svg(p)
    xml.dom.minidom.parseString(svg)
    assert "<evil" not in svg and "&lt;evil &amp;" in svg


def test_papermill_injected_parameters_continue_the_parameters_cell():
    p = from_notebook(notebook(("lr = 0.1\nepochs = 2", "pipeline-parameters", "parameters"),
                               ("# Parameters\nlr = 0.5\n", "injected-parameters"),
                               ("print(lr, epochs)", "step:train")))
    assert {k: v.default for k, v in p.parameters.items()} == {"lr": 0.5, "epochs": 2}


def test_prev_may_name_a_step_later_in_the_notebook():
    p = from_notebook(notebook(("y = x + 1", "step:b", "prev:a"), ("x = 1", "step:a"), ("z = y", "step:c")))
    assert list(p.steps) == ["a", "b", "c"]
    assert p.steps["b"].inputs == {"x": "a"} and p.steps["c"].inputs == {"y": "b"}
    from kfjupyter.pipelines.model import Edge

    assert p.edges == [Edge("a", "b", ("x",), True), Edge("b", "c", ("y",), False)]


def test_a_step_assigning_a_parameter_name_supplies_it_downstream():
    p = from_notebook(notebook(("lr = 0.1", "pipeline-parameters"), ("lr = lr * 2", "step:a"), ("print(lr)", "step:b")))
    assert p.steps["a"].parameters == ["lr"] and p.steps["b"].inputs == {"lr": "a"} and p.steps["b"].parameters == []


def test_globals_read_by_a_called_function_of_the_functions_cells_are_inputs():
    functions = ("SCALE = 2\n\ndef helper(v):\n    return v * SCALE + offset\n\n"
                 "def predict(v):\n    return helper(v) + model\n\ndef unused():\n    return nowhere\n", "functions")
    p = from_notebook(notebook(functions, ("model = 1\noffset = 3", "step:a"), ("y = predict(4)", "step:b"),
                               ("offset = 0\nz = helper(1)", "step:c")))
    assert p.steps["b"].inputs == {"model": "a", "offset": "a"}  # predict → helper → offset
    assert p.steps["c"].inputs == {}  # c assigns offset itself
    err = compile_error(functions, ("x = 1", "step:a"), ("print(x)",), ("y = predict(x)",))
    assert err.cell == 4 and "step 'a' reads 'model' (through predict() of the functions cells)" in str(err)


def test_ipython_syntax_runs_in_the_step_as_in_kale_and_only_it_is_touched():
    """Kale runs a step's cells in an IPython kernel: magics and shell lines run. The step
    program holds IPython's own translation; ``%time x = …`` assigns x for the analysis."""
    p = from_notebook(notebook(("%load_ext autoreload\nx = 1\n!ls -l", "step:a"),
                               ("y = (x\n     % 2)\ntext = '''\n!important\n'''", "step:b"),
                               ("%time z = y + 1\n%timeit -n1 -r1 w = 2", "step:c"), ("print(z, w)", "step:d")))
    assert p.steps["a"].source == "%load_ext autoreload\nx = 1\n!ls -l"
    assert "get_ipython().run_line_magic('load_ext', 'autoreload')" in p.steps["a"].program
    assert "get_ipython().system('ls -l')" in p.steps["a"].program
    assert "y = (x\n     % 2)\ntext = '''\n!important\n'''" in p.steps["b"].program
    assert p.steps["c"].inputs == {"y": "b"} and p.steps["d"].inputs == {"z": "c", "w": "c"}


def test_cache_text_ignores_cell_numbers_and_the_header():
    from kfjupyter.pipelines.codegen import cache_text

    cells = [("import math", "imports"), ("x = math.pi", "step:a"), ("y = x * 2", "step:b")]
    before = from_notebook(notebook(*cells))
    moved = notebook(*cells)
    moved.cells.insert(2, new_markdown_cell("a note"))
    after = from_notebook(moved, name="renamed")
    changed = from_notebook(notebook(cells[0], ("x = math.e", "step:a"), cells[2]))
    for step in ("a", "b"):
        assert before.steps[step].program != after.steps[step].program
        assert cache_text(before.steps[step].program) == cache_text(after.steps[step].program)
    assert cache_text(before.steps["a"].program) != cache_text(changed.steps["a"].program)
    assert "x = math.pi" in cache_text(before.steps["a"].program) and "# ---- step a ----" in cache_text(before.steps["a"].program)


def test_the_panels_tag_examples_agree_with_the_grammar():
    """labextension/test/tag-examples.json is checked by the panel's jest units too: the
    tag editor and this grammar accept and refuse the same cells."""
    examples = json.loads((REPO / "labextension" / "test" / "tag-examples.json").read_text())
    for tags in examples["valid"]:
        parse_tags(tags)
    for tags in examples["invalid"]:
        with pytest.raises(TagError):
            parse_tags(tags)
