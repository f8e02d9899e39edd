"""Hyperparameter tuning on the local backend: a real Optuna study run by trial workers."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import kfjupyter
from kfjupyter.jobs import JobFailedError
from kfjupyter import status as st
from kfjupyter.tuning import engine
from kfjupyter.tuning.study import list_studies

from conftest import ctrl_c_after, processes_of, run_cell, wait_for

pytestmark = pytest.mark.timeout(120)


def optuna_states(study) -> list[str]:
    """The trials' states as Optuna's own storage has them."""
    storage = engine.open_storage(study.job.job_dir)
    study_id = storage.get_study_id_from_name(study.id)
    return [t.state.name for t in storage.get_all_trials(study_id)]


TORCH_CELL = """%%kf_tune --objective val_loss --direction minimize --trials 8 --parallel 2 --algorithm tpe --seed 3 --name torch-study --out best
import torch
lr = kfjupyter.param("lr", low=1e-4, high=1.0, log=True)
hidden = kfjupyter.param("hidden", choices=[4, 16])
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
opt = torch.optim.SGD(model.parameters(), lr=lr)
x = torch.randn(64, 2)
y = x[:, :1] * 2 - x[:, 1:] + 0.5
for epoch in range(5):
    for _ in range(10):
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    kfjupyter.report(step=epoch, val_loss=(model(x) - y).pow(2).mean().item())
"""


def test_a_real_study_over_a_tiny_torch_model_finds_a_better_objective_than_its_first_trial(shell):
    result = run_cell(shell, TORCH_CELL)
    assert result.success, result.error_in_exec
    (study,) = list_studies()
    assert study.status == st.SUCCEEDED, study.error
    trials = sorted(study.trials, key=lambda t: t["number"])
    assert len(trials) == 8 and {t["state"] for t in trials} == {"COMPLETE"}
    first = trials[0]["value"]
    assert study.best_value < first
    assert shell.user_ns["best"] == study.best_params
    assert set(study.best_params) == {"lr", "hidden"} and study.best_params["hidden"] in (4, 16)
    # the objective is the best reported value; every epoch is an intermediate value
    assert all(len(t["intermediate"]) == 5 for t in trials)
    assert trials[0]["value"] == min(trials[0]["intermediate"].values())
    frame = study.trials_dataframe()
    assert list(frame["number"]) == list(range(8))
    assert {"params_lr", "params_hidden", "value", "state", "duration"} <= set(frame.columns)
    # long-lived workers: two processes ran the eight trials
    assert {t["worker"] for t in trials} <= {0, 1}


CURVE_CELL = """import time
quality = kfjupyter.param("quality", low=0.0, high=10.0)
for step in range(8):
    time.sleep(0.01)
    kfjupyter.report(step=step, loss=quality + 1.0 / (step + 1))
"""


def test_median_early_stopping_prunes_trials_worse_than_the_median(workdir):
    study = kfjupyter.tune(
        CURVE_CELL, "loss", trials=14, parallel=2, algorithm="random", early_stopping="median",
        seed=1, name="median", user_ns={},
    ).wait(raise_on_failure=False, timeout=90)  # fmt: skip
    assert study.status == st.SUCCEEDED, study.error
    states = [t["state"] for t in study.trials]
    assert "PRUNED" in states, states
    assert states.count("COMPLETE") >= 3
    pruned = [t for t in study.trials if t["state"] == "PRUNED"]
    # Katib's medianstop start_step=4: nothing is pruned before the fourth report
    assert all(len(t["intermediate"]) >= 4 for t in pruned)
    # …and pruning saves work: a trial pruned by an earlier report ran fewer than 8 steps
    # (with two trials in parallel one may still be pruned at its very last report)
    assert any(len(t["intermediate"]) < 8 for t in pruned)


SLOW_CELL = """import time
x = kfjupyter.param("x", low=0.0, high=1.0)
print("trial started", flush=True)
for step in range(600):
    time.sleep(0.1)
    kfjupyter.report(step=step, loss=x)
"""


def _running(study, n: int) -> bool:
    return sum(t["state"] == "RUNNING" for t in study.trials) >= n


def test_cancel_ends_every_running_trial_and_leaves_no_process(workdir, workspace):
    study = kfjupyter.tune(SLOW_CELL, "loss", trials=6, parallel=2, name="cancel-me", user_ns={})
    wait_for(lambda: _running(study, 2), timeout=30)
    keeper = psutil.Process(study.job.record.backend_info["pid"])
    under = keeper.children(recursive=True)  # the supervisor and its trial workers
    assert len([p for p in under if "kfjupyter.tuning.worker" in p.cmdline()]) == 2
    started = time.monotonic()
    study.cancel()
    gone, alive = psutil.wait_procs(under + [keeper], timeout=max(0.1, 6 - (time.monotonic() - started)))
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert study.status == st.CANCELLED
    assert [t["state"] for t in study.trials] == ["CANCELLED", "CANCELLED"]
    assert all(t["error"] == "cancelled by the user" for t in study.trials)
    assert "RUNNING" not in optuna_states(study)
    assert not processes_of(workspace)


def test_ctrl_c_while_the_magic_waits_cancels_the_study(shell, workspace):
    with ctrl_c_after(4.0):
        result = run_cell(shell, "%%kf_tune --objective loss --trials 4 --parallel 2 --name interrupted\n" + SLOW_CELL)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    (job,) = kfjupyter.jobs.list(kind="tune")
    study = kfjupyter.Study(job)
    assert study.status == st.CANCELLED
    assert study.trials and "RUNNING" not in optuna_states(study)
    assert {t["state"] for t in study.trials} == {"CANCELLED"}
    wait_for(lambda: not processes_of(workspace), timeout=5)


FLAKY_CELL = """x = kfjupyter.param("x", low=0.0, high=1.0)
if x > 0.5:
    raise ValueError(f"x={x} is too large")
kfjupyter.report(loss=x)
"""


def test_failed_trials_are_recorded_with_their_traceback_and_the_study_goes_on(workdir):
    study = kfjupyter.tune(
        FLAKY_CELL, "loss", trials=10, parallel=2, algorithm="random", max_failed=10, seed=5,
        name="flaky", user_ns={}, wait=True,
    )  # fmt: skip
    assert study.status == st.SUCCEEDED, study.error
    failed = [t for t in study.trials if t["state"] == "FAIL"]
    complete = [t for t in study.trials if t["state"] == "COMPLETE"]
    assert failed and complete and len(study.trials) == 10
    for t in failed:
        assert t["params"]["x"] > 0.5
        assert "ValueError: x=" in t["error"] and 'program.py", line' in t["error"]
        assert "ValueError" in study.trial_log(t["number"])
    assert study.best_value == min(t["value"] for t in complete)


def test_more_failures_than_max_failed_fail_the_study_with_the_traceback(workdir, workspace):
    cell = 'x = kfjupyter.param("x", low=0.0, high=1.0)\nkfjupyter.report(loss=1 / 0)\n'
    with pytest.raises(JobFailedError, match="more than --max-failed 1"):
        kfjupyter.tune(cell, "loss", trials=20, max_failed=1, name="broken", user_ns={}, wait=True)
    study = kfjupyter.tune(cell, "loss", trials=20, max_failed=1, name="broken", user_ns={}).wait(raise_on_failure=False)
    assert study.status == st.FAILED
    assert "more than --max-failed 1" in study.error
    assert "ZeroDivisionError" in study.error
    assert 2 <= len(study.trials) < 20
    assert "RUNNING" not in optuna_states(study)
    wait_for(lambda: not processes_of(workspace), timeout=5)


def test_a_trial_that_never_reports_the_objective_fails_with_a_clear_message(workdir):
    cell = 'x = kfjupyter.param("x", low=0.0, high=1.0)\nif x > 2:\n    kfjupyter.report(loss=x)\n'
    study = kfjupyter.tune(cell, "loss", trials=2, max_failed=0, name="silent", user_ns={}).wait(raise_on_failure=False)
    assert study.status == st.FAILED
    assert "ended without reporting the objective 'loss'" in study.error


STEADY_CELL = """import time
x = kfjupyter.param("x", low=0.0, high=1.0)
time.sleep(0.4)
kfjupyter.report(loss=x)
"""


def test_resume_continues_a_study_after_its_processes_were_killed(shell, workspace):
    study = kfjupyter.tune(STEADY_CELL, "loss", trials=5, name="resumable", user_ns=shell.user_ns)
    job = study.job
    wait_for(lambda: sum(t["state"] == "COMPLETE" for t in study.trials) >= 2, timeout=30)
    os.killpg(job.record.backend_info["pid"], signal.SIGKILL)  # the machine goes down
    wait_for(lambda: study.status == st.FAILED, timeout=10)
    assert "RUNNING" not in optuna_states(study)
    before = {t["number"]: t["value"] for t in study.trials if t["state"] == "COMPLETE"}

    result = run_cell(shell, "%%kf_tune --objective loss --resume resumable --out best\n" + STEADY_CELL)
    assert result.success, result.error_in_exec
    study = kfjupyter.Study(job.id)
    assert study.status == st.SUCCEEDED, study.error
    assert sum(t["state"] == "COMPLETE" for t in study.trials) == 5  # the budget, counting the earlier ones
    assert {n: v for n, v in ((t["number"], t["value"]) for t in study.trials) if n in before} == before
    assert shell.user_ns["best"] == study.best_params
    assert kfjupyter.jobs.count(kind="tune") == 1


DISTRIBUTED_CELL = """import os
x = kfjupyter.param("x", low=-2.0, high=2.0)
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
print(f"rank {rank} of {world} x={x}", flush=True)
if rank == 0:
    kfjupyter.report(step=0, loss=(x - 1) ** 2 + world)
"""


def test_workers_per_trial_runs_every_trial_as_a_distributed_job(workdir):
    study = kfjupyter.tune(
        DISTRIBUTED_CELL, "loss", trials=2, workers_per_trial=2, name="ddp-trials", user_ns={}, wait=True
    )
    assert study.status == st.SUCCEEDED, study.error
    for t in study.trials:
        assert t["state"] == "COMPLETE"
        assert t["value"] == pytest.approx((t["params"]["x"] - 1) ** 2 + 2)
        log = study.trial_log(t["number"])
        assert f"rank 1 of 2 x={t['params']['x']!r}" in log


QUICK_CELL = """x = kfjupyter.param("x", low=-2.0, high=2.0, step=0.5)
n = kfjupyter.param("n", low=1, high=3)
kind = kfjupyter.param("kind", choices=["a", "b"])
for step in range(3):
    kfjupyter.report(step=step, loss=(x - 1) ** 2 + n + (kind == "b") + 1 / (step + 1))
"""


@pytest.mark.parametrize(
    "algorithm, early_stopping",
    [("random", None), ("grid", None), ("tpe", "hyperband"), ("multivariate-tpe", None), ("cmaes", None), ("sobol", "median")],
)
def test_every_algorithm_runs_a_study(workdir, algorithm, early_stopping):
    study = kfjupyter.tune(
        QUICK_CELL, "loss", trials=5, parallel=2, algorithm=algorithm, early_stopping=early_stopping,
        seed=0, name=algorithm, user_ns={}, wait=True,
    )  # fmt: skip
    assert study.status == st.SUCCEEDED, study.error
    assert len(study.trials) == 5
    assert {t["state"] for t in study.trials} <= {"COMPLETE", "PRUNED"}
    for t in study.trials:
        assert t["params"]["x"] in (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0) and t["params"]["kind"] in "ab"
    if algorithm == "grid":  # distinct points of the grid
        assert len({tuple(sorted(t["params"].items())) for t in study.trials}) == 5
