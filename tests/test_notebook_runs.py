"""Papermill runs: kfjupyter.run_notebook / `kfjupyter run`, single runs and sweeps.

Every run starts a real kernel (a few seconds each), so the grids are small.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import kfjupyter
from kfjupyter import jobs
from kfjupyter import status as st
from kfjupyter.errors import KFJupyterError
from kfjupyter.notebook_runs import NotebookRun, Sweep, get_run, parse_sweep_args, parse_value, run_notebook
from kfjupyter.store.workspace import as_aware

from conftest import wait_for

pytestmark = pytest.mark.timeout(240)

RUN_TIMEOUT = 150


def make_notebook(path: Path, parameters: str, *cells: str, kernel: str | None = "python3") -> Path:
    nb = new_notebook()
    if kernel:
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell("# a notebook"), params] + [new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def kernel_processes(job_id: str) -> list[psutil.Process]:
    """Processes working for a run: the kernel inherits KFJUPYTER_JOB_ID from its runner."""
    found = []
    for proc in psutil.process_iter(["environ"]):
        try:
            if (proc.info["environ"] or {}).get("KFJUPYTER_JOB_ID") == job_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def cli(*args: str, home: Path, cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "KFJUPYTER_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "kfjupyter.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- before anything starts ------------------------------------------------------------


def test_values_are_read_like_papermill():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("-7") == -7
    assert parse_value("0.5") == 0.5 and parse_value("1e-3") == 0.001
    assert parse_value("True") is True and parse_value("False") is False
    assert parse_value("None") is None and parse_value("null") == "null"  # as papermill: see the parity tests
    assert parse_value("1_000") == 1000 and isinstance(parse_value("1_000"), int)
    assert parse_value("adam") == "adam"
    assert parse_value("0.1.2") == "0.1.2"
    assert parse_value("it's \"x\"") == "it's \"x\""
    assert parse_sweep_args(["lr=0.1,0.01", "opt=adam,sgd", "deep=True,False"]) == {
        "lr": [0.1, 0.01],
        "opt": ["adam", "sgd"],
        "deep": [True, False],
    }
    for bad in (["lr"], ["=1,2"], ["lr="], ["lr=1,,2"], ["lr=1,"], ["1x=1,2"], ["lr=1", "lr=2"]):
        with pytest.raises(KFJupyterError):
            parse_sweep_args(bad)


def test_mistakes_are_refused_before_anything_starts(workspace, workdir, capsys):
    nb = make_notebook(workdir / "nb.ipynb", "a = 1\nb: float = 2.0", "print(a * b)")
    before = fingerprint(nb)
    cases = {
        "notebook not found": dict(path=workdir / "missing.ipynb"),
        "not in the 'parameters' cell": dict(parameters={"c": 1}),
        "empty sweep grid": dict(sweep={}),
        "has no values": dict(sweep={"a": []}),
        "must be a list": dict(sweep={"a": "1,2"}),
        "both as a parameter and as a sweep": dict(parameters={"a": 1}, sweep={"a": [1, 2]}),
        "cannot be passed to a notebook": dict(parameters={"a": object()}),
        "no Jupyter kernel named 'no-such-kernel'": dict(kernel="no-such-kernel"),
        "invalid run name": dict(name="Bad_Name"),
        "invalid max_parallel": dict(sweep={"a": [1, 2]}, max_parallel=0),
    }
    for message, kwargs in cases.items():
        path = kwargs.pop("path", nb)
        with pytest.raises(KFJupyterError, match=re.escape(message)):
            run_notebook(path, **kwargs)
    # a sweep over a name the notebook does not declare, and a notebook without parameters
    with pytest.raises(KFJupyterError, match=r"'zz' not in the 'parameters' cell .* \(it defines: a, b\)"):
        run_notebook(nb, sweep={"zz": [1, 2]})
    bare = workdir / "bare.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}}), bare)
    with pytest.raises(KFJupyterError, match="has no cell tagged 'parameters'"):
        run_notebook(bare, {"x": 2})
    # the command line says the same, and exits 1
    from kfjupyter.cli import main

    assert main(["run", str(nb), "--sweep", "a"]) == 1
    assert "invalid --sweep 'a': expected NAME=V1,V2" in capsys.readouterr().err
    assert main(["run", str(nb), "-p", "nope", "1"]) == 1
    assert "'nope' not in the 'parameters' cell" in capsys.readouterr().err
    # nothing was recorded or started, and the notebook is as it was
    assert jobs.count() == 0
    assert not (workspace / "jobs").exists() or not any((workspace / "jobs").iterdir())
    assert fingerprint(nb) == before


# -- a single run --------------------------------------------------------------------


def test_a_run_injects_parameters_keeps_its_output_and_reports_metrics(workspace, workdir):
    (workdir / "data.txt").write_text("data next to the notebook")
    nb = make_notebook(
        workdir / "Score Card.ipynb",
        "a = 1\nb = 2.0\nlabel = 'default'",
        "import os, kfjupyter\nprint('data:', open('data.txt').read())\nprint('job:', os.environ['KFJUPYTER_JOB_ID'])",
        "print('label:', label)\nkfjupyter.report(step=0, score=0.0)\nkfjupyter.report(step=1, score=a * b)\n"
        "(kfjupyter.output_dir() / 'note.txt').write_text(label)",
    )
    before = fingerprint(nb)
    label = "it's \"quoted\"; import os"  # a string, never code
    run = run_notebook(nb, {"a": 3, "b": 4.5, "label": label}, wait=True)
    assert isinstance(run, NotebookRun) and run.kind == "notebook"
    assert run.status == st.SUCCEEDED, run.error
    assert run.name == "score-card" and run.id.startswith("score-card-")

    # the input is untouched; the executed copy lives with the job
    assert fingerprint(nb) == before
    assert run.output_notebook == run.job_dir / "output.ipynb" and run.output_notebook.exists()
    out = run.read_output()
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "a = 3" in injected[0].source and "b = 4.5" in injected[0].source
    streams = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert f"label: {label}\n" in streams
    assert "data: data next to the notebook" in streams  # runs in the notebook's folder

    # the log: cell progress and the cells' output
    log = run.logs()
    assert "cell 1/4 … a = 1" in log
    assert "cell 2/4 [injected parameters]" in log
    assert "cell 4/4 … print('label:', label)" in log
    assert f"job: {run.id}" in log and f"label: {label}" in log
    assert run.progress() == (4, 4)
    # kfjupyter.output_dir() inside the notebook is the job's outputs folder
    assert run.outputs["note.txt"].read_text() == label

    # metrics recorded by kfjupyter.report inside the notebook
    assert [m["score"] for m in run.metrics()] == [0.0, 13.5]
    assert run.last_metrics() == {"score": 13.5}
    table = run.results()
    assert list(table.columns) == ["a", "b", "label", "score", "status", "job_id"]
    assert table.iloc[0].to_dict() == {"a": 3, "b": 4.5, "label": label, "score": 13.5, "status": "Succeeded", "job_id": run.id}

    # any process re-attaches: the same record, the same view
    again = get_run(run.id)
    assert isinstance(again, NotebookRun)
    data = again.to_dict()
    assert data["kind"] == "notebook" and data["status"] == st.SUCCEEDED
    assert data["parameters"] == {"a": 3, "b": 4.5, "label": label}
    assert data["spec"]["notebook"] == str(nb) and data["spec"]["sweep_id"] is None
    assert data["output_notebook"] == str(run.output_notebook)
    assert data["metrics"] == {"score": 13.5} and data["progress"] == {"cell": 4, "cells": 4}
    json.dumps(data)
    assert kernel_processes(run.id) == []


def test_a_failing_cell_fails_the_run_naming_the_cell(workspace, workdir):
    nb = make_notebook(
        workdir / "fails.ipynb",
        "n = 1",
        "import kfjupyter\nkfjupyter.report(progress=1.0)\nprint('before the failure')",
        "x = 10\nraise ValueError(f'bad n={n}')",
        "print('never runs')",
    )
    before = fingerprint(nb)
    with pytest.raises(jobs.JobFailedError, match=r"notebook job \S+ failed: cell 4/5"):
        kfjupyter.run_notebook(nb, {"n": 7}, wait=True)
    run = get_run(jobs.list(kind="notebook")[0].id)
    assert run.status == st.FAILED
    assert run.error.startswith("cell 4/5 (In [4]) raised ValueError: bad n=7")
    assert "raise ValueError(f'bad n={n}')" in run.error  # the cell's source
    assert "Traceback" in run.error or "ValueError" in run.error.splitlines()[-1]
    log = run.logs()
    assert "before the failure" in log and "cell 4/5 failed: ValueError: bad n=7" in log
    assert "never runs" not in log
    # the output notebook is kept, with the error in it
    out = run.read_output()
    errors = [o for c in out.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "ValueError" and errors[0]["evalue"] == "bad n=7"
    assert run.last_metrics() == {"progress": 1.0}
    assert fingerprint(nb) == before
    assert kernel_processes(run.id) == []


def test_a_kernel_that_dies_fails_the_run(workspace, workdir):
    nb = make_notebook(workdir / "dies.ipynb", "code = 3", "print('alive', flush=True)", "import os\nos._exit(code)")
    run = run_notebook(nb).wait(raise_on_failure=False)
    assert run.status == st.FAILED
    assert run.error == "the kernel died while running cell 3/3: import os"
    assert "alive" in run.logs() and run.output_notebook.exists()
    assert kernel_processes(run.id) == []


def test_cancel_stops_the_run_and_its_kernel(workspace, workdir):
    nb = make_notebook(workdir / "slow.ipynb", "t = 60", "import os, time\nprint('kernel pid', os.getpid(), flush=True)\ntime.sleep(t)")
    run = run_notebook(nb, {"t": 90})
    assert run.status in (st.PENDING, st.RUNNING)
    log = wait_for(lambda: re.search(r"kernel pid (\d+)", run.logs()), timeout=RUN_TIMEOUT)
    kernel = psutil.Process(int(log.group(1)))
    assert kernel_processes(run.id)
    run.cancel()
    assert run.status == st.CANCELLED
    assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE
    wait_for(lambda: kernel_processes(run.id) == [], timeout=10)
    assert run.output_notebook.exists()  # saved as far as it went


# -- sweeps ----------------------------------------------------------------------------

SWEEP_CELL = """import time, kfjupyter
time.sleep(0.5)
kfjupyter.report(step=0, score=-1.0)
kfjupyter.report(step=1, score=a * b + offset, size=float(a))
print('score', a * b + offset)
"""


def _intervals(records) -> list[tuple[datetime, datetime]]:
    return [(as_aware(r.started_at), as_aware(r.finished_at)) for r in records]


def max_overlap(intervals) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_a_2x2_sweep_runs_in_parallel_and_its_results_table_is_right(workspace, workdir):
    nb = make_notebook(workdir / "grid.ipynb", "a = 1\nb = 1\noffset = 0.0", SWEEP_CELL)
    before = fingerprint(nb)
    sweep = run_notebook(nb, {"offset": 0.5}, sweep={"a": [1, 2], "b": [10, 20]}, max_parallel=2, name="grid")
    assert isinstance(sweep, Sweep) and sweep.kind == "sweep"
    sweep.wait(timeout=RUN_TIMEOUT)
    assert sweep.status == st.SUCCEEDED, sweep.error

    runs = sweep.runs
    assert [r.parameters for r in runs] == sweep.grid == [
        {"a": 1, "b": 10, "offset": 0.5},
        {"a": 1, "b": 20, "offset": 0.5},
        {"a": 2, "b": 10, "offset": 0.5},
        {"a": 2, "b": 20, "offset": 0.5},
    ]
    assert all(r.kind == "notebook" and r.sweep_id == sweep.id for r in runs)
    # the runs ran side by side, never more than max_parallel at once
    records = [r.refresh() for r in runs]
    assert max_overlap(_intervals(records)) == 2

    table = sweep.results()
    assert list(table.columns) == ["a", "b", "offset", "score", "size", "status", "job_id"]
    assert len(table) == 4
    for row, run in zip(table.to_dict("records"), runs):
        assert row["score"] == row["a"] * row["b"] + row["offset"]  # the last value reported
        assert row["size"] == float(row["a"])
        assert row["status"] == "Succeeded" and row["job_id"] == run.id
        assert run.output_notebook.exists() and f"score {row['score']}" in run.logs()
    assert sorted(table["score"]) == [10.5, 20.5, 20.5, 40.5]
    # the job handle any client re-attaches with (the server's GET /jobs/{id}) carries the table
    again = kfjupyter.jobs.get(sweep.id)
    assert isinstance(again, Sweep)
    served = again.to_dict()["results"]
    assert served["columns"] == list(table.columns)
    assert [row[served["columns"].index("score")] for row in served["rows"]] == list(table["score"])

    text = sweep.results_text().splitlines()
    assert text[0].split() == ["a", "b", "offset", "score", "size", "status", "job_id"]
    assert [line.split() for line in text[1:]] == [
        ["1", "10", "0.5", "10.5", "1", "Succeeded", runs[0].id],
        ["1", "20", "0.5", "20.5", "1", "Succeeded", runs[1].id],
        ["2", "10", "0.5", "20.5", "2", "Succeeded", runs[2].id],
        ["2", "20", "0.5", "40.5", "2", "Succeeded", runs[3].id],
    ]

    # the record a sidebar reads
    data = get_run(sweep.id).to_dict()
    assert data["kind"] == "sweep" and data["status"] == st.SUCCEEDED
    assert data["sweep"] == {"a": [1, 2], "b": [10, 20]} and data["parameters"] == {"offset": 0.5}
    assert data["max_parallel"] == 2 and data["counts"] == {"Succeeded": 4}
    assert data["spec"]["runs"] == [r.id for r in runs]
    assert data["results"]["columns"] == list(table.columns)
    assert data["results"]["rows"][3] == [2, 20, 0.5, 40.5, 2.0, "Succeeded", runs[3].id]
    assert [r["metrics"]["score"] for r in data["runs"]] == [10.5, 20.5, 20.5, 40.5]
    json.dumps(data)
    assert "sweep finished: 4 Succeeded" in sweep.logs()
    assert len([m for m in sweep.metrics() if m.get("step") == 1]) == 4
    assert fingerprint(nb) == before


def test_a_pipeline_notebooks_metrics_cell_feeds_the_sweep_results(workspace, workdir):
    """A Kale-tagged notebook swept with papermill: the values its pipeline-metrics cell
    lists (numbers only) become the results table's columns; the input stays untouched."""
    nb = nbformat.read(str(make_notebook(workdir / "kale.ipynb", "a = 1")), as_version=4)
    nb.cells[1].metadata["tags"] = ["parameters", "pipeline-parameters"]
    nb.cells += [new_code_cell("double = a * 2\nlabel = 'text, not a metric'"), new_code_cell("double\nlabel")]
    nb.cells[2].metadata["tags"] = ["step:compute"]
    nb.cells[3].metadata["tags"] = ["pipeline-metrics"]
    nbformat.write(nb, str(workdir / "kale.ipynb"))
    before = fingerprint(workdir / "kale.ipynb")

    sweep = run_notebook(workdir / "kale.ipynb", sweep={"a": [1, 3]}, max_parallel=2, wait=True)
    assert sweep.status == st.SUCCEEDED, sweep.error
    table = sweep.results()
    assert list(table.columns) == ["a", "double", "status", "job_id"]
    assert list(table["double"]) == [2.0, 6.0]
    assert fingerprint(workdir / "kale.ipynb") == before
    added = nbformat.read(str(sweep.runs[0].output_notebook), as_version=4).cells[-1]
    assert added.metadata["tags"] == ["kfjupyter-pipeline-metrics"]


def test_cancelling_a_sweep_stops_its_runs_and_their_kernels(workspace, workdir):
    nb = make_notebook(workdir / "slow.ipynb", "t = 60", "import os, time\nprint('kernel pid', os.getpid(), flush=True)\ntime.sleep(t)")
    sweep = run_notebook(nb, sweep={"t": [61, 62, 63]}, max_parallel=2)
    runs = sweep.runs
    pids = [
        int(wait_for(lambda r=r: re.search(r"kernel pid (\d+)", r.logs()), timeout=RUN_TIMEOUT).group(1))
        for r in runs[:2]
    ]
    assert runs[2].status == st.PENDING  # max_parallel: the third waits
    sweep.cancel()
    assert sweep.status == st.CANCELLED
    assert [r.status for r in runs] == [st.CANCELLED] * 3
    assert not runs[2].record.backend_info  # never started
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for run in runs:
        wait_for(lambda run=run: kernel_processes(run.id) == [], timeout=10)


# -- the command line -------------------------------------------------------------------


def test_cli_sweep_prints_progress_and_the_results_table(workspace, workdir):
    cell = SWEEP_CELL + "if a == 3:\n    raise ValueError('no threes')\n"
    nb = make_notebook(workdir / "grid.ipynb", "a = 1\nb = 1\noffset = 0.0", cell)
    before = fingerprint(nb)
    done = cli("run", "grid.ipynb", "--sweep", "a=2,3", "-p", "b", "5", "-p", "offset", "0.25",
               "--max-parallel", "2", home=workspace, cwd=workdir)
    assert done.returncode == 1, done.stdout + done.stderr  # a run failed
    lines = done.stdout.splitlines()
    sweep_id = re.match(r"sweep (\S+): 2 run\(s\) of grid.ipynb, 2 at a time", lines[0]).group(1)
    assert f"[1/2] {sweep_id}-1 Succeeded  a=2 b=5 offset=0.25" in lines
    assert (
        f"[2/2] {sweep_id}-2 Failed  a=3 b=5 offset=0.25  cell 3/3 (In [3]) raised ValueError: no threes" in lines
    )
    head = lines.index(next(line for line in lines if line.startswith("a ")))
    assert lines[head].split() == ["a", "b", "offset", "score", "size", "status", "job_id"]
    assert lines[head + 1].split() == ["2", "5", "0.25", "10.25", "2", "Succeeded", f"{sweep_id}-1"]
    # a failed run's row still has the last values it reported
    assert lines[head + 2].split() == ["3", "5", "0.25", "15.25", "3", "Failed", f"{sweep_id}-2"]
    assert lines[-1] == f"sweep {sweep_id} Failed"
    # the DataFrame and the record of the same sweep agree
    sweep = get_run(sweep_id)
    assert sweep.results()["score"].tolist() == [10.25, 15.25]
    assert sweep.results()["status"].tolist() == ["Succeeded", "Failed"]
    assert sweep.error.splitlines() == [
        "1 of 2 run(s) failed:",
        f"{sweep_id}-2: cell 3/3 (In [3]) raised ValueError: no threes",
    ]
    assert sweep.to_dict()["counts"] == {"Succeeded": 1, "Failed": 1}
    assert fingerprint(nb) == before


def test_cli_experiment_files_a_sweeps_runs_under_it(workspace, workdir):
    from kfjupyter import tracking

    make_notebook(workdir / "grid.ipynb", "a = 1\nb = 1\noffset = 0.0", SWEEP_CELL)
    refused = cli("run", "grid.ipynb", "--experiment", " ", home=workspace, cwd=workdir)
    assert refused.returncode == 1 and "invalid experiment name" in refused.stderr, refused.stdout + refused.stderr
    done = cli("run", "grid.ipynb", "--sweep", "a=2,3", "--experiment", "grid-search", "--max-parallel", "2",
               home=workspace, cwd=workdir)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    sweep_id = re.match(r"sweep (\S+):", done.stdout).group(1)
    frame = tracking.runs(experiment="grid-search", kind="notebook", order_by="params.a")
    assert list(frame["run_id"]) == [f"{sweep_id}-1", f"{sweep_id}-2"]
    assert list(frame["params.a"]) == [2, 3] and set(frame["parent_run"]) == {sweep_id}
    assert list(frame["metrics.score"]) == [2.0, 3.0]
    assert tracking.get_run(sweep_id).experiment == "grid-search"
    assert tracking.runs(experiment="grid").empty  # not the notebook's name


def test_cli_no_wait_returns_and_the_run_goes_on(workspace, workdir):
    make_notebook(workdir / "nb.ipynb", "a = 1\nb = 1.0\nflag = False",
                  "import kfjupyter, time\ntime.sleep(1)\nkfjupyter.report(score=a * b if flag else -1.0)")
    done = cli("run", "nb.ipynb", "-p", "a", "2", "-p", "b", "2.5", "-p", "flag", "True", "--no-wait",
               home=workspace, cwd=workdir)
    returned = datetime.now(timezone.utc)
    assert done.returncode == 0, done.stderr
    run_id = re.match(r"run (\S+): nb.ipynb", done.stdout).group(1)
    assert f"kfjupyter jobs logs -f {run_id}" in done.stdout
    run = get_run(run_id).wait(raise_on_failure=False, timeout=RUN_TIMEOUT)  # the CLI process is gone; the run is not
    assert run.status == st.SUCCEEDED, run.error
    assert as_aware(run.record.finished_at) > returned
    assert run.parameters == {"a": 2, "b": 2.5, "flag": True}
    assert run.last_metrics() == {"score": 5.0}
    # and `kfjupyter run` follows a run's log when it waits: a failing one exits 1
    failed = cli("run", "nb.ipynb", "-p", "a", "oops", "-p", "flag", "True", home=workspace, cwd=workdir)
    assert failed.returncode == 1
    assert "cell 3/3 … import kfjupyter, time" in failed.stdout
    assert re.search(r"\S+ Failed in [\d.]+ s", failed.stdout)
    assert "raised TypeError" in failed.stderr


# -- Kale notebooks (issue 18) ----------------------------------------------------------


def test_a_kale_pipeline_parameters_cell_is_the_parameters_cell_of_a_papermill_run(workspace, workdir):
    """`kfjupyter run NB -p CANDIES 10` on a Kale notebook (no cell tagged `parameters`): the
    `pipeline-parameters` cell takes the parameters, papermill injects after it."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nb.cells = [new_code_cell("import kfjupyter"), new_code_cell("CANDIES = 5\nname = 'kale'"),
                new_code_cell("total = CANDIES * 2\nprint('total', total, name)\nkfjupyter.report(total=total)")]
    nb.cells[0].metadata["tags"] = ["imports"]
    nb.cells[1].metadata["tags"] = ["pipeline-parameters"]
    nb.cells[2].metadata["tags"] = ["step:count"]
    nbformat.write(nb, str(workdir / "kale.ipynb"))
    before = fingerprint(workdir / "kale.ipynb")
    done = cli("run", "kale.ipynb", "-p", "CANDIES", "10", home=workspace, cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    run = get_run(re.search(r"run ([\w-]+)", done.stdout).group(1))
    assert run.status == st.SUCCEEDED and run.parameters == {"CANDIES": 10}
    out = nbformat.read(str(run.output_notebook), as_version=4)
    injected = [i for i, c in enumerate(out.cells) if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected == [2] and "CANDIES = 10" in out.cells[2].source  # right after the pipeline-parameters cell
    assert "total 20 kale" in "".join(o.get("text", "") for o in out.cells[3].outputs)
    assert run.metrics()[-1]["total"] == 20
    assert fingerprint(workdir / "kale.ipynb") == before
    # the same cell declares the names: another one is refused, naming the cell's names
    with pytest.raises(KFJupyterError, match=r"'SWEETS' not in the 'pipeline-parameters' cell of .*kale.ipynb \(it defines: CANDIES, name\)"):
        run_notebook(workdir / "kale.ipynb", {"SWEETS": 1})


# -- papermill parity: papermill itself is the oracle ----------------------------------------
# The same notebook, the same options, run by `papermill` and by `kfjupyter run`: the output
# notebooks must hold the same cells, injected parameters and outputs.

PAPERMILL = str(Path(sys.executable).parent / "papermill")


def papermill(*args: str, cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([PAPERMILL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})  # fmt: skip


def run_of(done: subprocess.CompletedProcess) -> NotebookRun:
    match = re.search(r"^run (\S+): ", done.stdout, re.M)
    assert match, (done.stdout, done.stderr)
    return get_run(match.group(1))


def comparable(path: Path) -> dict:
    """What must agree between two output notebooks: every cell's type, source, tags,
    hidden input and outputs, and the parameters papermill recorded (no times, ids, paths)."""
    nb = nbformat.read(str(path), as_version=4)
    cells = []
    for cell in nb.cells:
        outputs = [{k: v for k, v in o.items() if k not in ("execution_count", "metadata")} for o in cell.get("outputs", [])]
        cells.append((cell.cell_type, cell.source, tuple(cell.metadata.get("tags", [])),
                      cell.metadata.get("jupyter"), json.dumps(outputs, sort_keys=True)))  # fmt: skip
    return {"cells": cells, "parameters": nb.metadata.get("papermill", {}).get("parameters")}


def both(workdir: Path, workspace: Path, notebook: str, *options: str) -> tuple[dict, dict, NotebookRun]:
    oracle = papermill(notebook, "pm-out.ipynb", "--no-progress-bar", *options, cwd=workdir)
    assert oracle.returncode == 0, oracle.stderr[-3000:]
    ours = cli("run", notebook, *options, home=workspace, cwd=workdir)
    assert ours.returncode == 0, ours.stdout[-3000:] + ours.stderr[-3000:]
    run = run_of(ours)
    return comparable(workdir / "pm-out.ipynb"), comparable(run.output_notebook), run


VALUES = ["True", "true", "False", "false", "None", "none", "null", "~", "1_000", "-7", " 7", "0x10", "1e3", ".5",
          "inf", "nan", "0.1.2", "adam", "it's \"x\"", ""]  # fmt: skip


def test_p_values_are_read_exactly_as_papermill_reads_them():
    from papermill.cli import _resolve_type

    for text in VALUES:
        ours, theirs = parse_value(text), _resolve_type(text)
        assert type(ours) is type(theirs) and (ours == theirs or ours != ours), (text, ours, theirs)


def test_every_parameter_option_injects_what_papermill_injects(workspace, workdir):
    names = [f"v{i}" for i in range(len(VALUES))]
    params = "\n".join(f"{n} = 0" for n in names) + "\nh = 0\ni = 0\nj = 0\nk = 0\nr = 0"
    make_notebook(workdir / "values.ipynb", params, "print(repr((" + ", ".join(names) + ", h, i, j, k, r)))")
    (workdir / "params.yaml").write_text("h: [1, 2]\ni: 2024-01-02\nj: from-file\n")
    import base64

    options = [x for n, v in zip(names, VALUES) for x in ("-p", n, v)]
    options += ["-f", "params.yaml", "-y", "j: from-yaml\nk: {a: 1}", "-r", "r", "raw 1_000",
                "-b", base64.b64encode(b"k: 3").decode()]  # fmt: skip
    theirs, ours, run = both(workdir, workspace, "values.ipynb", *options)
    assert ours == theirs
    injected = next(c for c in ours["cells"] if "injected-parameters" in c[2])[1]
    assert "v8 = 1000\n" in injected and 'v1 = "true"\n' in injected and 'i = "2024-01-02"\n' in injected


def test_kernel_python_and_a_notebook_without_language_run_as_with_papermill(workspace, workdir):
    """`-k python` is jupyter_client's alias of python3; a notebook without kernelspec and
    language_info runs with `--language` (and, unlike papermill, without: its kernel's)."""
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell("print(x * 2)")])
    nbformat.write(nb, str(workdir / "bare.ipynb"))
    theirs, ours, run = both(workdir, workspace, "bare.ipynb", "-k", "python", "-l", "python", "-p", "x", "21")
    assert ours == theirs and run.kernel == "python"
    assert {"name": "stdout", "output_type": "stream", "text": "42\n"} in json.loads(ours["cells"][-1][-1])
    # without -l papermill stops ("No language found in notebook"); kfjupyter uses the kernel's language
    refused = papermill("bare.ipynb", "pm-out.ipynb", "-k", "python", "-p", "x", "1", cwd=workdir)
    assert refused.returncode != 0 and "No language found" in refused.stderr
    plain = run_notebook(workdir / "bare.ipynb", {"x": 4}, wait=True)
    assert plain.status == st.SUCCEEDED and plain.record.spec["language"] == "python"
    with pytest.raises(KFJupyterError, match="invalid language"):
        run_notebook(workdir / "bare.ipynb", language=" ")


def test_cwd_report_mode_timeouts_log_output_and_prepare_only_as_papermill(workspace, workdir):
    data = workdir / "data"
    data.mkdir()
    (data / "input.txt").write_text("from the data folder")
    make_notebook(workdir / "opts.ipynb", "n = 1", "import os\nprint(open('input.txt').read(), n)")
    options = ["--cwd", "data", "--report-mode", "--start-timeout", "30", "--execution-timeout", "30", "-p", "n", "5"]
    theirs, ours, run = both(workdir, workspace, "opts.ipynb", *options)
    assert ours == theirs
    assert any(c[3] == {"source_hidden": True} for c in ours["cells"])  # report mode hides inputs
    assert run.record.spec["cwd"] == str(data)
    # --log-output (the default) prints what the cells print; --no-log-output the progress only
    quiet = cli("run", "opts.ipynb", *options, "--no-log-output", home=workspace, cwd=workdir)
    assert quiet.returncode == 0 and "cell 2/3" in quiet.stdout and "from the data folder" not in quiet.stdout
    loud = cli("run", "opts.ipynb", *options, "--log-output", home=workspace, cwd=workdir)
    assert "from the data folder 5" in loud.stdout
    # --prepare-only: parameters injected, nothing executed
    theirs, ours, _ = both(workdir, workspace, "opts.ipynb", "--prepare-only", "-p", "n", "9")
    assert ours == theirs and all(c[4] == "[]" for c in ours["cells"])
    # --execution-timeout: a cell over it fails the run, as it fails papermill
    make_notebook(workdir / "slow.ipynb", "t = 5", "import time\ntime.sleep(t)")
    assert papermill("slow.ipynb", "pm-out.ipynb", "--execution-timeout", "1", cwd=workdir).returncode != 0
    timed = cli("run", "slow.ipynb", "--execution-timeout", "1", home=workspace, cwd=workdir)
    assert timed.returncode == 1 and "Timeout" in timed.stderr + timed.stdout


def test_cancelling_a_run_keeps_the_interrupted_cells_output_as_papermill_does(workspace, workdir):
    import signal

    make_notebook(workdir / "long.ipynb", "t = 60", "import time\nprint('before the wait', flush=True)\ntime.sleep(t)")
    oracle = subprocess.Popen([PAPERMILL, "long.ipynb", "pm-out.ipynb", "--log-output", "--no-progress-bar"],
                              cwd=workdir, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in oracle.stderr:
        if "before the wait" in line:
            break
    oracle.send_signal(signal.SIGINT)
    oracle.wait(timeout=30)
    theirs = nbformat.read(str(workdir / "pm-out.ipynb"), as_version=4).cells[-1].outputs
    run = run_notebook(workdir / "long.ipynb")
    wait_for(lambda: "before the wait" in run.logs(), timeout=RUN_TIMEOUT)
    run.cancel()
    assert run.status == st.CANCELLED
    ours = run.read_output().cells[-1].outputs
    assert [o.get("text") for o in ours if o.output_type == "stream"] == \
        [o.get("text") for o in theirs if o.output_type == "stream"] == ["before the wait\n"]  # fmt: skip
    wait_for(lambda: kernel_processes(run.id) == [], timeout=10)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signal_to_a_blocking_kfjupyter_run_stops_the_notebook(workspace, workdir, signame):
    """papermill dies of SIGTERM/SIGHUP, and its notebook with it; `kfjupyter run` cancels its job."""
    import signal

    make_notebook(workdir / "long.ipynb", "t = 60", "import time\nprint('waiting', flush=True)\ntime.sleep(t)")
    env = {**os.environ, "KFJUPYTER_HOME": str(workspace)}
    proc = subprocess.Popen([sys.executable, "-m", "kfjupyter.cli", "run", "long.ipynb"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in proc.stdout:
        if "waiting" in line:
            break
    run = jobs.list(kind="notebook")[0]
    proc.send_signal(getattr(signal, signame))
    assert proc.wait(timeout=30) == 130
    assert run.status == st.CANCELLED
    wait_for(lambda: kernel_processes(run.id) == [], timeout=10)
