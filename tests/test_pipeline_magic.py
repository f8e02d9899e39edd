"""``%kf_pipeline`` in a real IPython shell and ``kfjupyter pipelines …`` on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from IPython.utils.capture import capture_output

from kfjupyter import status as st
from kfjupyter.pipelines import get_run, list_runs

from conftest import run_cell, wait_for
from pipeline_notebooks import failing_notebook, write_notebook

pytestmark = pytest.mark.timeout(120)


def small_notebook(path):
    return write_notebook(
        path,
        [
            (["imports"], "import kfjupyter"),
            (["pipeline-parameters"], "n = 3\ngreeting = 'hi'"),
            (["step:numbers"], "numbers = list(range(n))"),
            (["step:square", "prev:numbers"], "squares = [x * x for x in numbers]"),
            (["step:cube", "prev:numbers"], "cubes = [x ** 3 for x in numbers]"),
            (["step:total"], "total = sum(squares) + sum(cubes)\nprint(greeting, total)\nkfjupyter.report(total=total)"),
            (["pipeline-metrics"], "total"),
        ],
        name="small",
    )


def _rich(cap, mime):
    return [o.data[mime] for o in cap.outputs if mime in o.data]


def test_compile_shows_the_dag_and_the_steps(shell, workdir):
    nb = small_notebook(workdir / "small.ipynb")
    with capture_output() as cap:
        result = run_cell(shell, f"%kf_pipeline compile {nb} --out p")
    assert result.success, result.error_in_exec
    svg = _rich(cap, "image/svg+xml")
    assert svg and "<svg" in svg[0] and "square" in svg[0]
    table = _rich(cap, "text/html")[0]
    for name in ("numbers", "square", "cube", "total", "n=3 (int)"):
        assert name in table
    assert list(shell.user_ns["p"].steps) == ["numbers", "square", "cube", "total"]


def test_run_waits_shows_steps_and_takes_the_kernel_notebook_by_default(shell, workdir, monkeypatch):
    nb = small_notebook(workdir / "small.ipynb")
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    with capture_output() as cap:
        result = run_cell(shell, "%kf_pipeline run -p n 4 -p greeting 'hello there' --out run")
    assert result.success, result.error_in_exec
    run = shell.user_ns["run"]
    assert run.status == st.SUCCEEDED, run.error
    assert run.parameters == {"n": 4, "greeting": "hello there"}
    assert run.pipeline_metrics() == {"total": 50.0}
    assert "hello there 50" in run.step_logs("total")
    html = _rich(cap, "text/html")[-1]
    assert "Succeeded" in html and "not cached: first run" in html

    # again: every step from the cache, and the table says so
    with capture_output() as cap:
        result = run_cell(shell, "%kf_pipeline run -p n 4 -p greeting 'hello there' --out again")
    assert result.success
    assert _rich(cap, "text/html")[-1].count("cached: same code, inputs and parameters as run " + run.id) == 4


def test_bad_parameters_are_usage_errors_and_start_nothing(shell, workdir, monkeypatch):
    nb = small_notebook(workdir / "small.ipynb")
    result = run_cell(shell, f"%kf_pipeline run {nb} -p n three")
    assert "not a valid int" in str(result.error_in_exec)
    result = run_cell(shell, f"%kf_pipeline run {nb} -p m 3")
    assert "unknown pipeline parameter 'm'" in str(result.error_in_exec)
    result = run_cell(shell, f"%kf_pipeline run {nb} --resume nothing-here")
    assert "no pipeline run" in str(result.error_in_exec)
    broken = write_notebook(workdir / "broken.ipynb", [(["step:a"], "x = y + 1")])
    result = run_cell(shell, f"%kf_pipeline run {broken}")
    assert "cell 1:" in str(result.error_in_exec) and "'y'" in str(result.error_in_exec)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    result = run_cell(shell, "%kf_pipeline compile")
    assert "name the notebook" in str(result.error_in_exec)
    assert list_runs() == []


def test_debug_loads_the_failed_steps_inputs_into_the_kernel(shell, workdir, capsys):
    nb = failing_notebook(workdir / "flaky.ipynb")
    result = run_cell(shell, f"%kf_pipeline run {nb} --out run")
    assert type(result.error_in_exec).__name__ == "JobFailedError"  # the failed run fails its cell
    run = shell.user_ns["run"]
    assert run.status == st.FAILED
    capsys.readouterr()
    result = run_cell(shell, f"%kf_pipeline debug {run.id} fragile")
    assert result.success, result.error_in_exec
    assert shell.user_ns["numbers"] == [1, 2, 3] and shell.user_ns["scale"] == 2
    printed = capsys.readouterr().out
    assert "raise RuntimeError('no marker file')" in printed and "loaded numbers, scale" in printed
    # the user reproduces the failure with the step's code, right there
    result = run_cell(shell, "import os\nif not os.path.exists('ok.marker'):\n    raise RuntimeError('no marker file')")
    assert isinstance(result.error_in_exec, RuntimeError)

    (workdir / "ok.marker").write_text("")
    result = run_cell(shell, f"%kf_pipeline run {nb} --resume {run.id} --out resumed")
    resumed = shell.user_ns["resumed"]
    assert resumed.status == st.SUCCEEDED, resumed.error
    assert [s["status"] for s in resumed.steps] == ["Cached", "Succeeded", "Succeeded", "Cached"]


def cli(*args, cwd, check=True):
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "kfjupyter.cli", "pipelines", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def main_out(capsys, *args) -> str:
    from kfjupyter.cli import main

    capsys.readouterr()
    assert main(["pipelines", *args]) == 0
    return capsys.readouterr().out


def test_cli_run_show_logs_list_debug(workdir, capsys):
    nb = small_notebook(workdir / "small.ipynb")
    out = cli("run", str(nb), "-p", "n", "2", "-p", "greeting", "'; rm -rf / #", cwd=workdir).stdout
    assert "total: Succeeded  (not cached: first run)" in out
    run = list_runs()[0]
    assert run.status == st.SUCCEEDED
    assert run.parameters["greeting"] == "'; rm -rf / #"

    # the other commands in this process (the same code path after argument parsing)
    shown = main_out(capsys, "show", run.id)
    assert "not cached: first run" in shown and "total=2" in shown
    data = json.loads(main_out(capsys, "show", run.id, "--json"))
    assert [s["name"] for s in data["steps"]] == ["numbers", "square", "cube", "total"]
    assert "'; rm -rf / # 2" in main_out(capsys, "logs", run.id, "total")
    assert run.id in main_out(capsys, "list")

    debugged = main_out(capsys, "debug", run.id, "total")  # stdin is not a terminal here
    assert "inputs and parameters cubes, greeting, squares" in debugged
    assert "no shell was opened" in debugged and "print(greeting, total)" in debugged

    # the step cache: its size, then emptied (the runs keep their own results)
    assert "4 result(s)" in main_out(capsys, "cache")
    assert "removed 0 cached" in main_out(capsys, "cache", "--clear", "--older-than", "1")
    cleared = main_out(capsys, "cache", "--clear")
    assert "removed 4 cached step result(s)" in cleared and "0 result(s), 0.0 MiB" in cleared
    assert "total=2" in main_out(capsys, "show", run.id)

    bad = cli("run", str(nb), "-p", "n", "two", cwd=workdir, check=False)
    assert bad.returncode == 1 and "not a valid int" in bad.stderr
    assert len(list_runs()) == 1


def test_cli_failing_run_exits_1_resume_and_cancel(workdir, capsys):
    nb = failing_notebook(workdir / "flaky.ipynb")
    failed = cli("run", str(nb), cwd=workdir, check=False)
    assert failed.returncode == 1
    assert "step fragile failed" in failed.stderr and "RuntimeError: no marker file" in failed.stderr
    first = list_runs()[0]
    (workdir / "ok.marker").write_text("")
    out = cli("run", str(nb), "--resume", first.id, cwd=workdir).stdout
    assert f"start: Cached  (cached: succeeded in run {first.id}, which this run resumes)" in out

    slow = write_notebook(
        workdir / "slow.ipynb",
        [(["imports"], "import time"), (["step:wait"], "time.sleep(120)\ndone = True")],
    )
    run_id = cli("run", str(slow), "--no-wait", cwd=workdir).stdout.strip()
    run = get_run(run_id)
    wait_for(lambda: run.steps[0]["status"] == "Running", timeout=30)
    assert f"{run_id} Cancelled" in main_out(capsys, "cancel", run_id)
    assert run.steps[0]["status"] == "Cancelled"
