"""The registry from a notebook: ``kfjupyter.register_model``/``load_model``, ``%kf_models``,
and a real training job registered with ``job.register_model``."""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter import status as st

from conftest import run_cell

pytestmark = pytest.mark.timeout(180)

SETUP = """
import kfjupyter
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
x, y = load_iris(return_X_y=True)
clf = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, y)
for accuracy in (0.81, 0.97):
    v = kfjupyter.register_model("iris", clf, metrics={"accuracy": accuracy}, params={"max_depth": 2})
kfjupyter.register_model("wine", clf, metrics={"accuracy": 0.9})
"""


def test_the_public_api_is_on_the_package_without_importing_the_registry_up_front():
    import subprocess
    import sys

    code = (
        "import sys, kfjupyter; assert 'kfjupyter.registry.local' not in sys.modules;"
        "assert callable(kfjupyter.register_model) and callable(kfjupyter.load_model);"
        "assert kfjupyter.registry.set_alias and 'register_model' in kfjupyter.__all__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kf_models_lists_searches_and_shows_versions_with_their_lineage(shell, capsys):
    assert run_cell(shell, SETUP).success
    capsys.readouterr()
    assert run_cell(shell, "%kf_models").success
    out = capsys.readouterr().out
    assert "models 1-2 of 2" in out and "iris" in out and "wine" in out

    assert run_cell(shell, "%kf_models search --metric accuracy>=0.9 --order-by metric:accuracy -o found").success
    found = shell.user_ns["found"]
    assert [v.ref for v in found] == ["iris:2", "wine:1"]
    out = capsys.readouterr().out
    assert "iris:2" in out and "wine:1" in out and "iris:1" not in out and "accuracy" in out

    assert run_cell(shell, "%kf_models show iris:2").success
    out = capsys.readouterr().out
    assert "iris:2" in out and "accuracy=0.97" in out and "max_depth=2" in out
    assert "kfjupyter.register_model" in out  # the cell that registered it

    assert run_cell(shell, "%kf_models show iris").success
    out = capsys.readouterr().out
    assert "iris:2" in out and "iris:1" in out and "wine" not in out


def test_kf_models_moves_aliases_and_shows_their_history(shell, capsys):
    assert run_cell(shell, SETUP).success
    assert run_cell(shell, "%kf_models alias iris production 1").success
    assert run_cell(shell, "%kf_models alias iris production 2 --reason 'better accuracy'").success
    assert kfjupyter.registry.get_version("iris@production").number == 2
    capsys.readouterr()
    assert run_cell(shell, "%kf_models history iris -o moves").success
    out = capsys.readouterr().out
    assert "production" in out and "better accuracy" in out and "v1" in out and "v2" in out
    assert [(e.from_version, e.to_version) for e in shell.user_ns["moves"]] == [(None, 1), (1, 2)]
    assert run_cell(shell, "%kf_models alias iris production --delete").success
    assert kfjupyter.registry.get_model("iris").aliases == {}
    assert run_cell(shell, "%kf_models list --alias production -o none").success
    assert shell.user_ns["none"].total == 0


@pytest.mark.parametrize(
    "line, message",
    [
        ("%kf_models show nope", "no registered model 'nope'"),
        ("%kf_models alias iris production 9", "has no version 9"),
        ("%kf_models alias iris production", "VERSION"),
        ("%kf_models search --metric 'accuracy>>1'", "metric filter"),
        ("%kf_models frobnicate", "invalid %kf_models arguments"),
    ],
)
def test_kf_models_mistakes_are_usage_errors_that_say_what_is_wrong(shell, capsys, line, message):
    assert run_cell(shell, SETUP).success
    result = run_cell(shell, line)
    assert not result.success
    captured = capsys.readouterr()
    assert message in captured.out + captured.err + str(result.error_in_exec)


TRAIN_CELL = """%%kf_train --workers 1 --name iris-trainer --out job
import torch
torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.5)
x = torch.tensor(features, dtype=torch.float32)
y = torch.tensor(labels)
for step in range(20):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
accuracy = (model(x).argmax(1) == y).float().mean().item()
kfjupyter.report(step=step, loss=loss.item(), accuracy=accuracy)
torch.save(model.state_dict(), kfjupyter.output_dir() / "model.pt")
"""


@pytest.mark.slow
def test_a_real_training_job_registers_its_model_metrics_and_cell_in_one_call(shell):
    torch = pytest.importorskip("torch")
    assert run_cell(shell, "import kfjupyter\nfrom sklearn.datasets import load_iris\nfeatures, labels = load_iris(return_X_y=True)").success
    result = run_cell(shell, TRAIN_CELL)
    assert result.success, result.error_in_exec
    job = shell.user_ns["job"]
    assert job.status == st.SUCCEEDED, job.error
    result = run_cell(shell, 'v = job.register_model("iris-torch", aliases="staging")')
    assert result.success, result.error_in_exec
    v = shell.user_ns["v"]
    assert (v.number, v.framework, v.artifact.main_file, v.aliases) == (1, "pytorch", "model.pt", ["staging"])
    assert set(v.metrics) == {"loss", "accuracy"} and v.metrics["accuracy"] > 0.6
    assert v.lineage["job_id"] == job.id and "kfjupyter.output_dir()" in v.lineage["cell"]
    weights = kfjupyter.load_model("iris-torch@staging")
    model = torch.nn.Linear(4, 3)
    model.load_state_dict(weights)
    x = torch.tensor(shell.user_ns["features"], dtype=torch.float32)
    y = torch.tensor(shell.user_ns["labels"])
    assert (model(x).argmax(1) == y).float().mean().item() == pytest.approx(v.metrics["accuracy"])
