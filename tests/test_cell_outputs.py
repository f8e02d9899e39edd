"""What the magics leave in a cell, in every front end: a failed job fails its cell (short
error, no traceback through kfjupyter); saved outputs hold a readable summary (text and
HTML); headless runs (papermill, ``nbconvert --execute``) exit non-zero on a failed job
and keep the rank logs in the cell's text; terminal IPython shows text, never
``<IPython.core.display… object>``.

Real things throughout: a real InteractiveShell, real 2-rank jobs, real papermill and
nbconvert on real notebooks. The programs are tiny (no torch collectives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import kfjupyter
from kfjupyter import jobs
from kfjupyter import status as st

from conftest import ctrl_c_after, run_cell

pytestmark = pytest.mark.timeout(240)

BIN = Path(sys.executable).parent

#: rank 1 raises; rank 0 reports a metric and ends (no collective: nothing waits)
FAILING = """import os, kfjupyter
rank = int(os.environ["RANK"])
print(f"hello from rank {rank}")
kfjupyter.report(step=0, loss=1.5)
if rank == 1:
    raise ValueError("rank one is broken")
"""
SUCCEEDING = """import os, kfjupyter
print(f"hello from rank {os.environ['RANK']}")
for step in range(3):
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
"""


def _rendered(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


# -- a failed job fails its cell -----------------------------------------------------------


def test_a_failed_kf_train_fails_the_cell_with_a_short_error(shell, capsys):
    result = run_cell(shell, "%%kf_train --workers 2 --name fails --out job\n" + FAILING)
    error = result.error_in_exec
    assert isinstance(error, jobs.JobFailedError), error
    job = shell.user_ns["job"]
    assert job.status == st.FAILED
    assert error.job_id == job.id and error.rank == 1
    text = str(error)
    assert text.startswith(f"train job {job.id} failed: rank 1 exited with code 1")
    assert "ValueError: rank one is broken" in text
    assert len(text.splitlines()) <= jobs.ERROR_TAIL_LINES + 2
    shown = _rendered(capsys)
    assert "JobFailedError: train job" in shown
    assert "magics.py" not in shown and "job_view.py" not in shown and "Traceback" not in shown.split("JobFailedError")[1].split("\n", 1)[0]
    # the terminal view printed the rank logs and the final summary, as text
    assert "[rank 1] hello from rank 1" in shown
    assert "<IPython.core.display" not in shown


def test_no_wait_returns_the_handle_and_wait_raises_with_an_opt_out(shell):
    result = run_cell(shell, "%%kf_train --workers 2 --name later --no-wait --out job\n" + FAILING)
    assert result.error_in_exec is None
    job = shell.user_ns["job"]
    with pytest.raises(jobs.JobFailedError, match=rf"train job {job.id} failed: rank 1"):
        job.wait(timeout=60)
    assert job.wait(raise_on_failure=False) is job and job.status == st.FAILED
    handle = kfjupyter.train(SUCCEEDING, workers=2, name="fine", user_ns={})
    assert handle.wait(timeout=60).status == st.SUCCEEDED  # nothing raised for a success


def test_a_cancelled_job_says_so_and_ctrl_c_shows_no_traceback(shell, capsys):
    with ctrl_c_after(3.0):
        result = run_cell(shell, "%%kf_train --workers 1 --name stopped --out job\nimport time\ntime.sleep(60)")
    job = shell.user_ns["job"]
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert job.status == st.CANCELLED
    shown = _rendered(capsys)
    assert f"KeyboardInterrupt: train job {job.id} cancelled" in shown
    assert "Traceback" not in shown and "jobs.py" not in shown
    with pytest.raises(jobs.JobCancelledError, match=rf"^train job {job.id} cancelled$"):
        job.raise_for_status()


# -- the widget view's output: widget + lasting summary -------------------------------------


def test_the_widget_view_keeps_a_summary_beside_the_widget(workdir, monkeypatch):
    """The bundle a notebook saves: the widget, and text/plain + text/html that say how
    the job ended; a failed job's view opens on the failing rank; Cancel is off while
    the cell blocks."""
    from kfjupyter.widgets.job_view import WidgetJobView

    monkeypatch.setenv("KFJUPYTER_CELL_LOGS", "0")
    job = kfjupyter.train(FAILING, workers=2, name="viewed", user_ns={})
    view = WidgetJobView(job, blocking=True)
    assert view.cancel_button.disabled and "interrupt" in view.cancel_button.tooltip
    job.wait(raise_on_failure=False)
    view.refresh()
    bundle = view._bundle()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith(f"train job {job.id} · Failed · ")
    assert "rank one is broken" in bundle["text/plain"] and "VBox" not in bundle["text/plain"]
    assert "rank one is broken" in bundle["text/html"] and "Failed" in bundle["text/html"]
    assert "metrics: loss=1.5 (step 0)" in bundle["text/plain"]
    assert view.tabs.selected_index == 1  # rank 1's log


def test_a_pending_study_headline_has_no_empty_parts(workdir):
    from kfjupyter.widgets.study_view import headline
    from kfjupyter.widgets.job_view import join_parts

    assert join_parts("s-1", "Pending", "0.2 s", "", "local") == "s-1 · Pending · 0.2 s · local"
    assert join_parts("s-1", "Pending", None, "local") == "s-1 · Pending · local"

    class Fake:
        id = "s-1"

        class job:
            class record:
                status, message, backend = "Pending", None, "local"

            @staticmethod
            def duration():
                return 0.2

    assert headline(Fake) == "s-1 · Pending · 0.2 s · local"


# -- headless: papermill and nbconvert --execute --------------------------------------------


def _notebook(path: Path, body: str, name: str) -> Path:
    nb = new_notebook(cells=[
        new_code_cell("%load_ext kfjupyter"),
        new_code_cell(f"%%kf_train --workers 2 --name {name} --out job\n{body}"),
        new_code_cell("print('after the job')"),
    ])  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("JPY_SESSION_NAME", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def _cell(path: Path, starts: str):
    """The cell of the saved notebook whose source starts so (papermill may insert cells)."""
    nb = nbformat.read(str(path), as_version=4)
    return next(c for c in nb.cells if c.source.startswith(starts))


def _train_outputs(path: Path) -> list[dict]:
    return _cell(path, "%%kf_train").outputs


def _summary(outputs: list[dict]) -> dict:
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "text/html" in o.data]
    assert len(shown) == 1, outputs
    return shown[0].data


def test_papermill_fails_on_a_failed_job_and_the_saved_notebook_says_why(workdir):
    source = _notebook(workdir / "fails.ipynb", FAILING, "pm-fails")
    out = workdir / "fails-out.ipynb"
    done = _run(str(BIN / "papermill"), str(source), str(out), "--log-output", "--no-progress-bar", cwd=workdir)
    assert done.returncode != 0, done.stderr[-3000:]
    assert "JobFailedError" in done.stderr and "rank one is broken" in done.stderr
    assert "[rank 1] hello from rank 1" in done.stderr  # --log-output shows the cell's rank logs
    outputs = _train_outputs(out)
    data = _summary(outputs)
    assert "Failed" in data["text/plain"] and "rank 1 exited with code 1" in data["text/plain"]
    assert "rank one is broken" in data["text/plain"] and "VBox" not in data["text/plain"]
    assert "Failed" in data["text/html"] and "rank one is broken" in data["text/html"]
    errors = [o for o in outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "JobFailedError"
    assert not any("magics.py" in line for line in errors[0].traceback)
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "[rank 0] hello from rank 0" in streams and "[rank 1] hello from rank 1" in streams
    assert _cell(out, "print('after").outputs == []  # Run All stopped at the failed job


@pytest.mark.slow
def test_nbconvert_execute_fails_on_a_failed_job_and_keeps_the_summary(workdir):
    source = _notebook(workdir / "fails.ipynb", FAILING, "nbc-fails")
    convert = (str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--output", "fails-out")
    done = _run(*convert, str(source), cwd=workdir)
    assert done.returncode != 0
    assert "JobFailedError" in done.stderr and "rank one is broken" in done.stderr
    # nbconvert saves a failed notebook with --allow-errors only (and exits 0 then)
    done = _run(*convert, "--allow-errors", str(source), cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = _train_outputs(workdir / "fails-out.ipynb")
    data = _summary(outputs)
    assert "Failed" in data["text/plain"] and "rank one is broken" in data["text/plain"]
    assert "rank one is broken" in data["text/html"]
    assert [o.ename for o in outputs if o.output_type == "error"] == ["JobFailedError"]


def test_a_succeeding_job_leaves_its_status_and_metrics_as_text(workdir):
    source = _notebook(workdir / "fine.ipynb", SUCCEEDING, "pm-fine")
    out = workdir / "fine-out.ipynb"
    done = _run(str(BIN / "papermill"), str(source), str(out), "--no-progress-bar", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    data = _summary(_train_outputs(out))
    assert " · Succeeded · " in data["text/plain"]
    assert "metrics: loss=0.333333 (step 2)" in data["text/plain"]
    assert "Succeeded" in data["text/html"] and "loss=0.333333" in data["text/html"]
    assert json.dumps(data).count("VBox(") == 0


# -- terminal IPython: every magic's output is text ------------------------------------------

TUNE_CELL = """%%kf_tune --objective loss --trials 2 --name term-study --out best
x = kfjupyter.param("x", low=0.0, high=1.0)
kfjupyter.report(loss=(x - 0.5) ** 2)
"""


def _no_object_lines(text: str) -> None:
    bad = [line for line in text.splitlines() if "<IPython.core.display" in line or " object at 0x" in line]
    assert not bad, bad


def test_every_magic_prints_text_in_a_terminal(shell, workdir, capsys):
    from pipeline_notebooks import write_notebook

    nb = write_notebook(workdir / "pipe.ipynb", [
        (["imports"], "import os"),
        (["step:first"], "numbers = [1, 2, 3]\nprint('first step ran')"),
        (["step:second"], "total = sum(numbers)"),
    ], name="term-pipe")  # fmt: skip
    cells = {
        "%%kf_train --workers 2 --name term-train --out job\n" + SUCCEEDING: ["train job term-train-", "Succeeded", "metrics: loss="],
        "%kf_jobs": ["id", "term-train-", "Succeeded"],
        "%kf_jobs {job}": ["train job term-train-", "Succeeded"],
        TUNE_CELL: ["study term-study-", "best loss="],
        "%kf_models": ["models 0"],
        f"%kf_pipeline compile {nb}": ["term-pipe: 2 step(s)", "first", "second"],
        f"%kf_pipeline run {nb} --out run": ["first", "Succeeded"],
        "%kf_pipeline list": ["pipeline", "Succeeded"],
        "%kf_pipeline show {run}": ["first", "second"],
        "%kf_pipeline logs {run} first": ["first step ran"],
    }
    for cell, expected in cells.items():
        names = {"job": getattr(shell.user_ns.get("job"), "id", ""), "run": getattr(shell.user_ns.get("run"), "id", "")}
        source = cell.format(**names) if cell.startswith("%kf_") else cell
        result = run_cell(shell, source)
        assert result.error_in_exec is None and result.error_before_exec is None, (cell, result.error_in_exec)
        shown = _rendered(capsys)
        _no_object_lines(shown)
        for text in expected:
            assert text in shown, (cell, text, shown)
        if "compile" in cell:
            assert "print('first step ran')" not in shown  # a Pipeline shows its steps, not their programs
    pipeline = kfjupyter.pipelines.from_notebook(nb)
    assert "def " not in repr(pipeline) and "numbers = [1, 2, 3]" not in repr(pipeline)
    assert "<svg" in pipeline._repr_html_() and "<table" in pipeline._repr_html_()
    # JupyterLab draws the DAG with the extension's renderer; the HTML stays beside it
    from kfjupyter.pipelines.render import PIPELINE_MIME

    bundle = pipeline._repr_mimebundle_()
    dag = bundle[PIPELINE_MIME]
    assert list(dag["pipeline"]["steps"]) == ["first", "second"] and dag["states"] == {} and dag["run"] is None
    assert [(e["source"], e["target"]) for e in dag["pipeline"]["edges"]] == [("first", "second")]
    assert "first step ran" not in json.dumps(dag) and "<svg" in bundle["text/html"]  # no programs in it
    run = shell.user_ns["run"]
    shown = run._repr_mimebundle_()
    assert shown[PIPELINE_MIME]["states"] == {"first": "Succeeded", "second": "Succeeded"}
    assert shown[PIPELINE_MIME]["run"] == {"id": run.id, "name": run.name, "status": "Succeeded"}
    assert "<table" in shown["text/html"]


@pytest.mark.slow
def test_kf_deploy_prints_text_in_a_terminal(shell, workspace, capsys):
    pytest.importorskip("kserve")
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    kfjupyter.register_model("tiny", model, framework="sklearn")
    result = run_cell(shell, "%kf_deploy tiny --name tiny-term --out ep")
    assert result.error_in_exec is None, result.error_in_exec
    try:
        shown = _rendered(capsys)
        _no_object_lines(shown)
        assert "tiny-term" in shown
    finally:
        assert run_cell(shell, "%kf_deploy --undeploy tiny-term").error_in_exec is None
    _no_object_lines(_rendered(capsys))
