"""The search space is read from the cell before any trial starts; bad input is a clear error."""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter.errors import InvalidOptionError
from kfjupyter.runtime import bootstrap
from kfjupyter.tuning.space import ParamSpec, analyse_source, build_space, parse_param_option
from kfjupyter.widgets.study_view import TextStudyView, best_so_far, objective_svg, trials_table

from conftest import run_cell

GOOD = """import kfjupyter as kf
from kfjupyter import param as p
lr     = kfjupyter.param("lr", low=1e-4, high=1e-1, log=True)
layers = kf.param("layers", low=1, high=4, step=1)
opt    = p("optimizer", choices=["sgd", "adam"])
drop   = kfjupyter.param("dropout", 0.0, 0.5, step=0.1)
for epoch in range(3):
    kfjupyter.report(step=epoch, val_loss=lr * layers)
"""


def test_the_space_is_read_from_literal_param_calls_without_running_the_cell():
    space, facts = build_space([GOOD], {})
    assert list(space) == ["lr", "layers", "optimizer", "dropout"]
    assert space["lr"] == ParamSpec("lr", "double", 1e-4, 1e-1, None, True)
    assert space["layers"] == ParamSpec("layers", "int", 1, 4, 1, False)
    assert space["optimizer"].type == "categorical" and space["optimizer"].choices == ("sgd", "adam")
    assert space["dropout"].grid() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert facts.reported == {"val_loss"}


def test_param_options_declare_and_override():
    assert parse_param_option("lr=1e-4:1e-1:log") == ParamSpec.declare("lr", 1e-4, 1e-1, log=True)
    assert parse_param_option("layers=1:8:2") == ParamSpec("layers", "int", 1, 8, 2, False)
    assert parse_param_option("batch=32,64").type == "discrete"
    space, _ = build_space([GOOD], {"layers": parse_param_option("layers=2:3")})
    assert space["layers"].low == 2 and space["layers"].high == 3


def test_outside_a_study_param_returns_the_default_so_the_cell_runs_as_it_is():
    assert kfjupyter.param("lr", low=1e-4, high=1e-2, log=True) == pytest.approx(1e-3)
    assert kfjupyter.param("layers", low=1, high=4) == 2
    assert kfjupyter.param("opt", choices=["sgd", "adam"]) == "sgd"
    assert kfjupyter.param("x", low=0.0, high=1.0, default=0.3) == 0.3


def test_a_trial_process_reads_its_values_as_katib_passes_them(monkeypatch):
    space, _ = build_space([GOOD], {})
    monkeypatch.setenv("KFJUPYTER_TUNE_SPACE", space.env_json())
    for name, raw in {"lr": "0.003", "layers": "3", "optimizer": "adam", "dropout": "0.2"}.items():
        monkeypatch.setenv(f"KFJUPYTER_PARAM_{name}", raw)
    assert bootstrap.param("lr") == 0.003 and bootstrap.param("layers") == 3
    assert bootstrap.param("optimizer") == "adam" and bootstrap.param("dropout") == 0.2
    with pytest.raises(KeyError, match="not in this tuning job's search space"):
        bootstrap.param("momentum", low=0.0, high=1.0)


CELL = 'x = kfjupyter.param("x", low=0.0, high=1.0)\nkfjupyter.report(loss=x)\n'
BAD = {
    "empty range": ('%%kf_tune --objective loss\nx = kfjupyter.param("x", low=1.0, high=1.0)\nkfjupyter.report(loss=x)',
                    "empty range: low and high are both 1.0"),
    "inverted range": ('%%kf_tune --objective loss\nx = kfjupyter.param("x", low=2, high=1)\nkfjupyter.report(loss=x)',
                       "inverted range: low 2 is greater than high 1"),
    "unknown algorithm": ("%%kf_tune --objective loss --algorithm bayes\n" + CELL, "unknown algorithm 'bayes'"),
    "objective never reported": ("%%kf_tune --objective val_acc\n" + CELL,
                                 "the objective 'val_acc' is never reported: kfjupyter.report is given loss"),
    "no report at all": ('%%kf_tune --objective loss\nx = kfjupyter.param("x", low=0.0, high=1.0)',
                         "the cell never calls kfjupyter.report"),
    "grid on a continuous parameter": ("%%kf_tune --objective loss --algorithm grid\n" + CELL,
                                       "the grid algorithm cannot search the continuous parameter 'x'"),
    "a non-literal range": ('%%kf_tune --objective loss\nhi = 2.0\nx = kfjupyter.param("x", low=0.0, high=hi)\nkfjupyter.report(loss=x)',
                            "its arguments are not all literals"),
    "an empty space": ("%%kf_tune --objective loss\nkfjupyter.report(loss=1.0)", "the search space is empty"),
    "a log range from zero": ('%%kf_tune --objective loss\nx = kfjupyter.param("x", low=0.0, high=1.0, log=True)\nkfjupyter.report(loss=x)',
                              "a log range needs low > 0"),
    "choices and a range": ('%%kf_tune --objective loss\nx = kfjupyter.param("x", low=0, high=1, choices=[1, 2])\nkfjupyter.report(loss=x)',
                            "give either choices or a range"),
    "a malformed --param": ("%%kf_tune --objective loss --param x=1:\n" + CELL, "invalid --param 'x=1:'"),
    "two declarations that disagree": ('%%kf_tune --objective loss\na = kfjupyter.param("x", low=0.0, high=1.0)\n'
                                       'b = kfjupyter.param("x", low=0.0, high=2.0)\nkfjupyter.report(loss=a)',
                                       "declared twice with different ranges"),
    "an unknown direction": ("%%kf_tune --objective loss --direction down\n" + CELL, "invalid direction 'down'"),
    "zero trials": ("%%kf_tune --objective loss --trials 0\n" + CELL, "invalid trials 0"),
    "unknown early stopping": ("%%kf_tune --objective loss --early-stopping asha\n" + CELL, "unknown early stopping 'asha'"),
    "a study name too long for Katib": ("%%kf_tune --objective loss --name " + "a" * 35 + "\n" + CELL, "at most 34 characters"),
    "resuming a study that does not exist": ("%%kf_tune --objective loss --resume nope\n" + CELL,
                                             "no tuning study with that id or name"),
}


@pytest.mark.parametrize("cell, message", BAD.values(), ids=BAD.keys())
def test_bad_input_is_a_clear_error_before_any_trial_starts(shell, workspace, cell, message):
    result = run_cell(shell, cell)
    assert result.error_in_exec is not None
    assert message in str(result.error_in_exec)
    assert kfjupyter.jobs.count() == 0
    assert not (workspace / "jobs").exists() or not any((workspace / "jobs").iterdir())


def test_the_python_api_raises_the_same_errors(workdir):
    with pytest.raises(InvalidOptionError, match="inverted range"):
        kfjupyter.tune(CELL, "loss", params={"x": {"low": 3, "high": 1}}, user_ns={})
    with pytest.raises(InvalidOptionError, match="unknown algorithm"):
        kfjupyter.tune(CELL, "loss", algorithm="hyperopt", user_ns={})


def test_static_analysis_sees_reports_through_helpers_and_accepts_splats():
    facts = analyse_source(["def log(**m):\n    kfjupyter.report(**m)\n", CELL])
    assert facts.reported is None  # **m: anything may be reported


ROWS = [
    {"number": 0, "state": "COMPLETE", "value": 3.0, "params": {"x": 0.1}, "intermediate": {}, "duration_s": 1.0},
    {"number": 1, "state": "PRUNED", "value": None, "params": {"x": 0.9}, "intermediate": {0: 9.0, 1: 8.0}, "duration_s": 0.5},
    {"number": 2, "state": "COMPLETE", "value": 1.0, "params": {"x": 0.4}, "intermediate": {}, "duration_s": 1.2},
    {"number": 3, "state": "COMPLETE", "value": 2.0, "params": {"x": 0.5}, "intermediate": {}, "duration_s": 1.1},
    {"number": 4, "state": "FAIL", "value": None, "params": {"x": 0.7}, "intermediate": {}, "duration_s": 0.1,
     "error": "ValueError: boom"},
]


def test_the_plot_shows_the_objective_per_trial_and_the_best_so_far_line():
    assert best_so_far(ROWS, "minimize") == [(0, 3.0), (2, 1.0), (3, 1.0)]
    assert best_so_far(ROWS, "maximize") == [(0, 3.0), (2, 3.0), (3, 3.0)]
    svg = objective_svg(ROWS, "minimize", "loss")
    assert 'class="best-so-far"' in svg
    assert svg.count('class="trial complete"') == 3 and svg.count('class="trial pruned"') == 1
    assert "best so far 1" in svg
    table = trials_table(ROWS, ["x"])
    assert table.count("<tr title") == 5 and "ValueError: boom" in table


def test_the_text_view_prints_each_trial_once_and_the_best(workdir, capsys):
    study = kfjupyter.tune(CELL, "loss", trials=3, algorithm="random", name="text-view", user_ns={}, wait=True)
    view = TextStudyView(study)
    view.refresh()
    view.refresh()
    out = capsys.readouterr().out
    assert out.count("[trial 0] COMPLETE loss=") == 1 and "[trial 2]" in out
    assert f"best loss={study.best_value:.6g}" in out
