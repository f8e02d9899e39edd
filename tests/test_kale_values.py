"""Values between steps: a Kale notebook run as a pipeline computes what running it top to
bottom computes ("the next step sees what the notebook would have seen").

Each notebook is run twice: its code cells top to bottom in one namespace (the oracle, as
Run All would), and as a pipeline on the local backend (real step processes). The
pipeline metrics equal the notebook's values of the same names.
"""

from __future__ import annotations

import warnings

import nbformat
import pytest

from kfjupyter import status as st
from kfjupyter.pipelines import run_pipeline

from pipeline_notebooks import write_notebook

pytestmark = [pytest.mark.timeout(180)]


def top_to_bottom(path, names: list[str]) -> dict:
    """Run All in a real kernel (nbclient): the values of ``names`` at the end."""
    import json

    import nbclient
    from nbformat.v4 import new_code_cell

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell(f"import json as _j; print(_j.dumps({{n: float(globals()[n]) for n in {names!r}}}))"))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    out = nb.cells[-1].outputs
    return json.loads("".join(o.get("text", "") for o in out if o.get("name") == "stdout"))


def assert_same_as_the_notebook(path, metrics: list[str]) -> dict:
    expected = top_to_bottom(path, metrics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = run_pipeline(path, wait=True)
    assert run.status == st.SUCCEEDED, run.error
    got = run.pipeline_metrics()
    assert got == {m: pytest.approx(float(expected[m])) for m in metrics}
    return got


def test_a_change_through_an_alias_reaches_the_next_step(workdir):
    """``for d in [df1, df2]: d["b"] = …`` changes df1: the step after sees it."""
    nb = write_notebook(workdir / "alias.ipynb", [
        (["imports"], "import pandas as pd"),
        (["step:load"], "df1 = pd.DataFrame({'a': [1, 2, 3]})\ndf2 = pd.DataFrame({'a': [10, 20]})"),
        (["step:enrich", "prev:load"], "for d in [df1, df2]:\n    d['b'] = d['a'] * 2"),
        (["step:use", "prev:enrich"], "total = float(df1['b'].sum())"),
        (["pipeline-metrics"], "print(total)"),
    ])
    assert assert_same_as_the_notebook(nb, ["total"]) == {"total": 12.0}


def test_a_change_through_an_alias_without_prev_tags_reaches_the_next_step(workdir):
    nb = write_notebook(workdir / "alias2.ipynb", [
        (["step:load"], "rows = [1, 2, 3]\nconfig = {'scale': 1}"),
        (["step:tweak"], "c = config\nc['scale'] = 5\nfor r in [rows]:\n    r.append(4)"),
        (["step:use"], "total = sum(rows) * config['scale']"),
        (["pipeline-metrics"], "print(total)"),
    ])
    assert assert_same_as_the_notebook(nb, ["total"]) == {"total": 50.0}


def test_a_change_made_by_a_called_function_reaches_a_descendant(workdir):
    """A function of the functions cells changes its argument: Kale's nearest ancestor that
    names the value supplies it, so the descendant sees the change."""
    nb = write_notebook(workdir / "fn.ipynb", [
        (["functions"], "def normalise(values):\n    top = max(values)\n    for i, v in enumerate(values):\n        values[i] = v / top"),
        (["step:load"], "values = [1.0, 2.0, 4.0]"),
        (["step:prep", "prev:load"], "normalise(values)"),
        (["step:use", "prev:prep"], "total = sum(values)"),
        (["pipeline-metrics"], "print(total)"),
    ])
    assert assert_same_as_the_notebook(nb, ["total"]) == {"total": 1.75}


def test_untagged_cells_after_a_skip_cell_still_change_the_step(workdir):
    nb = write_notebook(workdir / "skip.ipynb", [
        (["step:load"], "data = [1, 2, 3]"),
        (["skip"], "print('a look at the data', data)"),
        ([], "data = [d * 10 for d in data]"),
        (["step:use", "prev:load"], "total = sum(data)"),
        (["pipeline-metrics"], "print(total)"),
    ])
    assert assert_same_as_the_notebook(nb, ["total"]) == {"total": 60.0}


def test_a_step_name_used_again_and_a_metric_that_is_a_parameter(workdir):
    nb = write_notebook(workdir / "merge.ipynb", [
        (["pipeline-parameters"], "lr = 0.5"),
        (["step:a"], "x = 1"),
        (["step:b", "prev:a"], "y = x + 1"),
        (["step:a"], "x = x + 100"),
        (["step:c", "prev:b"], "z = x + y"),
        (["pipeline-metrics"], "print(z)\nprint(lr)"),
    ])
    # x is 101 when b runs in the pipeline (the whole step a runs first); in the notebook,
    # b saw x = 1: Kale's merge rule, where the top-to-bottom run differs on purpose
    run = run_pipeline(nb, wait=True)
    assert run.status == st.SUCCEEDED, run.error
    assert run.pipeline_metrics() == {"z": 203.0, "lr": 0.5}


def test_magics_in_a_step_run_and_what_they_assign_passes_on(workdir):
    nb = write_notebook(workdir / "magic.ipynb", [
        (["step:a"], "%time x = sum(range(10))\n!echo from-the-shell"),
        (["step:b", "prev:a"], "%%capture captured\nprint('hidden')\ny = x * 2"),
        (["step:c", "prev:b"], "total = y + len(captured.stdout)"),
        (["pipeline-metrics"], "print(total)"),
    ])
    got = assert_same_as_the_notebook(nb, ["total"])
    assert got == {"total": 97.0}


def test_a_notebook_in_the_style_of_kales_examples_computes_what_run_all_computes(workdir):
    """load → preprocess (continuation cells, skip cells between them) → five model branches
    → results, with Kale's tags and metadata."""
    nb = write_notebook(workdir / "kale_example.ipynb", [
        (None, "# Iris, five ways"),
        (["imports"], "import numpy as np\nfrom sklearn.datasets import load_iris\nfrom sklearn.model_selection import train_test_split"),
        ([], "from sklearn.linear_model import LogisticRegression\nfrom sklearn.tree import DecisionTreeClassifier\n"
             "from sklearn.neighbors import KNeighborsClassifier\nfrom sklearn.naive_bayes import GaussianNB\nfrom sklearn.svm import SVC"),
        (["pipeline-parameters"], "TEST_SIZE = 0.3\nSEED = 7"),
        (["functions"], "def accuracy(model, X, y):\n    return float((model.predict(X) == y).mean())"),
        (["step:load_data"], "iris = load_iris()\nX, y = iris.data, iris.target"),
        (["skip"], "print(X[:5])"),
        (None, "Preprocessing."),
        (["step:preprocess", "prev:load_data"], "X = (X - X.mean(axis=0)) / X.std(axis=0)"),
        (["skip"], "import matplotlib\nprint(X.shape)"),
        ([], "X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST_SIZE, random_state=SEED)"),
        ([], "for part in [X_train, X_test]:\n    part[:, 0] = part[:, 0] * 0.5"),
        (["step:logreg", "prev:preprocess"], "lr_acc = accuracy(LogisticRegression(max_iter=500).fit(X_train, y_train), X_test, y_test)"),
        (["step:tree", "prev:preprocess"], "tree_acc = accuracy(DecisionTreeClassifier(random_state=SEED).fit(X_train, y_train), X_test, y_test)"),
        (["step:knn", "prev:preprocess"], "knn_acc = accuracy(KNeighborsClassifier().fit(X_train, y_train), X_test, y_test)"),
        (["step:bayes", "prev:preprocess"], "nb_acc = accuracy(GaussianNB().fit(X_train, y_train), X_test, y_test)"),
        (["step:svm", "prev:preprocess"], "svm_acc = accuracy(SVC().fit(X_train, y_train), X_test, y_test)"),
        (["step:results", "prev:logreg", "prev:tree", "prev:knn", "prev:bayes", "prev:svm"],
         "best_acc = max(lr_acc, tree_acc, knn_acc, nb_acc, svm_acc)\nscaled_sum = float(X_train[:, 0].sum())"),
        (["pipeline-metrics"], "print(best_acc)\nprint(lr_acc)\nprint(svm_acc)\nprint(scaled_sum)"),
    ], name="iris-five-ways")
    assert_same_as_the_notebook(nb, ["best_acc", "lr_acc", "svm_acc", "scaled_sum"])


def test_a_composed_notebook_runs_the_referenced_notebooks_steps_in_place(workdir):
    """``notebook:features`` runs features.ipynb's steps where the cell stands, as Run All of
    the root with that notebook's cells pasted in would."""
    write_notebook(workdir / "features.ipynb", [
        (["imports"], "import math"),
        (["step:featurize"], "feat = [math.sqrt(v) for v in raw]"),
        (["step:normalise", "prev:featurize"], "norm = [f / max(feat) for f in feat]"),
    ])
    nb = write_notebook(workdir / "composed.ipynb", [
        (["step:load"], "raw = [1.0, 4.0, 16.0]"),
        (["notebook:features"], "# features"),
        (["step:report"], "total = sum(norm)"),
        (["pipeline-metrics"], "print(total)"),
    ])
    data = nbformat.read(nb, as_version=4)
    data.cells[1].metadata["notebook_path"] = "features.ipynb"
    nbformat.write(data, nb)
    run = run_pipeline(nb, wait=True)
    assert run.status == st.SUCCEEDED, run.error
    assert list(run.pipeline.steps) == ["load", "features_featurize", "features_normalise", "report"]
    assert run.pipeline_metrics() == {"total": pytest.approx(0.25 + 0.5 + 1.0)}
