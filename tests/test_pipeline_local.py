"""The local pipeline runner: parallel steps, the step cache and its reasons, resume,
debug, cancel, and refusals that leave nothing behind (real processes, real notebooks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter.errors import KFJupyterError
from kfjupyter.pipelines import debug, get_run, run_pipeline
from kfjupyter.store.workspace import get_workspace

from conftest import REPO, processes_of, wait_for
from pipeline_notebooks import failing_notebook, write_notebook

pytestmark = pytest.mark.timeout(120)

DEMO = REPO / "notebooks" / "pipeline_demo.ipynb"


def steps(run) -> dict[str, dict]:
    return {s["name"]: s for s in run.to_dict()["steps"]}


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_demo_notebook_runs_in_parallel_then_from_the_cache_then_reruns_what_a_parameter_changes(workdir):
    run = run_pipeline(DEMO).wait(raise_on_failure=False, timeout=90, poll=0.05)
    assert run.status == st.SUCCEEDED, run.error
    first = steps(run)
    assert list(first) == ["prepare", "train-logreg", "train-forest", "evaluate"]
    assert all(s["status"] == "Succeeded" and s["cache_reason"] == "not cached: first run" for s in first.values())
    a, b = first["train-logreg"], first["train-forest"]
    # the two models trained at the same time: each started before the other finished
    assert t(a["started_at"]) < t(b["finished_at"]) and t(b["started_at"]) < t(a["finished_at"])
    assert t(first["evaluate"]["started_at"]) >= max(t(a["finished_at"]), t(b["finished_at"]))
    metrics = run.to_dict()["metrics"]
    assert set(metrics) == {"logreg_accuracy", "forest_accuracy"} and all(0.8 < v <= 1 for v in metrics.values())
    assert "logreg" in run.step_logs("evaluate") and "train (105, 4)" in run.step_logs("prepare")
    assert run.value("evaluate", "logreg_accuracy") == metrics["logreg_accuracy"]

    # same notebook, same parameters: nothing runs, every step says why
    start = time.monotonic()
    again = run_pipeline(DEMO).wait(raise_on_failure=False, timeout=30, poll=0.02)
    took = time.monotonic() - start
    assert again.status == st.SUCCEEDED, again.error
    for step in steps(again).values():
        assert step["status"] == "Cached" and step["cached"], step
        assert step["cache_reason"] == f"cached: same code, inputs and parameters as run {run.id}"
        assert step["source_run"] == run.id
    assert again.to_dict()["metrics"] == metrics  # the cached steps' metrics come along
    assert took < 10, took
    # settled without a supervisor process: every result was in the cache
    assert again.record.backend_info["supervisor"] is False
    assert "every step's result is in the cache" in again.logs()
    assert "cached: same code" in again.step_logs("prepare") and "train (105, 4)" in again.step_logs("prepare")

    # one parameter changed: exactly the step that reads it reruns, and what it feeds
    third = run_pipeline(DEMO, {"n_estimators": "3"}).wait(raise_on_failure=False, timeout=90, poll=0.05)
    assert third.status == st.SUCCEEDED, third.error
    rows = steps(third)
    assert {n: s["status"] for n, s in rows.items()} == {
        "prepare": "Cached", "train-logreg": "Cached", "train-forest": "Succeeded", "evaluate": "Succeeded",
    }
    assert rows["train-forest"]["cache_reason"] == "not cached: parameter n_estimators changed"
    assert rows["evaluate"]["cache_reason"] == "not cached: input forest changed"
    assert third.parameters["n_estimators"] == 3


def _make_failing(workdir: Path) -> Path:
    return failing_notebook(workdir / "flaky.ipynb")


def test_a_failing_step_fails_the_run_and_resume_reruns_from_it(workdir):
    nb = _make_failing(workdir)
    run = run_pipeline(nb, {"scale": 5}, max_parallel=2).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert run.status == st.FAILED
    rows = steps(run)
    assert {n: s["status"] for n, s in rows.items()} == {
        "start": "Succeeded", "fragile": "Failed", "after": "Skipped", "other": "Succeeded",
    }
    # the error names the step and carries its traceback
    assert run.error.startswith("step fragile failed")
    assert "RuntimeError: no marker file" in run.error and "Traceback" in run.error
    assert rows["fragile"]["error"] == run.error
    assert rows["after"]["cache_reason"] == "not run: step fragile failed"
    assert "RuntimeError: no marker file" in run.step_logs("fragile")

    # debug: the failed step's inputs and parameters, in a namespace, and its code shown
    namespace: dict = {}
    assert debug(run.id, "fragile", namespace=namespace) == ["numbers", "scale"]
    assert namespace == {"numbers": [1, 2, 3], "scale": 5}

    (workdir / "ok.marker").write_text("fixed")
    resumed = run_pipeline(nb, resume=run.id).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert resumed.status == st.SUCCEEDED, resumed.error
    rows = steps(resumed)
    assert {n: s["status"] for n, s in rows.items()} == {
        "start": "Cached", "fragile": "Succeeded", "after": "Succeeded", "other": "Cached",
    }
    assert rows["start"]["cache_reason"] == f"cached: succeeded in run {run.id}, which this run resumes"
    assert rows["fragile"]["cache_reason"] == f"not cached: failed in run {run.id}"
    # the resumed run keeps the parameter values of the run it resumes
    assert resumed.parameters == {"scale": 5}
    assert resumed.to_dict()["metrics"] == {"total": 30.0, "count": 3.0}
    assert resumed.to_dict()["spec"]["resume"] == run.id


def test_cache_reasons_for_every_step(workdir):
    source = "marker = 'v1'\nvalues = [i * factor for i in range(4)]"
    nb = write_notebook(
        workdir / "reasons.ipynb",
        [
            (["imports"], "import kfjupyter"),
            (["pipeline-parameters"], "factor = 2\nlabel = 'x'"),
            (["step:make"], source),
            (["step:fresh", "cache:false"], "stamp = len(values)"),
            (["step:use"], "result = sum(values)\nkfjupyter.report(result=result)\nprint(label)"),
        ],
    )
    first = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert first.status == st.SUCCEEDED, first.error
    assert first.step_metrics()["use"]["result"] == 12.0

    second = run_pipeline(nb).wait(timeout=60, poll=0.02)
    reasons = {n: s["cache_reason"] for n, s in steps(second).items()}
    assert reasons["make"] == reasons["use"] == f"cached: same code, inputs and parameters as run {first.id}"
    assert reasons["fresh"] == "not cached: cache:false tag"

    no_cache = run_pipeline(nb, cache=False).wait(timeout=60, poll=0.02)
    assert {s["cache_reason"] for n, s in steps(no_cache).items() if n != "fresh"} == {"not cached: --no-cache"}
    assert all(s["status"] == "Succeeded" for s in steps(no_cache).values())

    # code changed in one step; what it hands on changed too
    write_notebook(
        nb,
        [
            (["imports"], "import kfjupyter"),
            (["pipeline-parameters"], "factor = 2\nlabel = 'x'"),
            (["step:make"], source.replace("i * factor", "i * factor + 1")),
            (["step:fresh", "cache:false"], "stamp = len(values)"),
            (["step:use"], "result = sum(values)\nkfjupyter.report(result=result)\nprint(label)"),
        ],
    )
    changed = run_pipeline(nb).wait(timeout=60, poll=0.02)
    reasons = {n: s["cache_reason"] for n, s in steps(changed).items()}
    assert reasons == {
        "make": "not cached: code changed",
        "fresh": "not cached: cache:false tag",
        "use": "not cached: input values changed",
    }
    assert changed.step_metrics()["use"]["result"] == 16.0

    # a parameter read by the last step only
    relabel = run_pipeline(nb, {"label": "y"}).wait(timeout=60, poll=0.02)
    states = {n: (s["status"], s["cache_reason"]) for n, s in steps(relabel).items()}
    assert states["make"][0] == "Cached"
    assert states["use"] == ("Succeeded", "not cached: parameter label changed")


def test_renumbered_cells_keep_the_cache_but_a_new_consumer_of_a_value_does_not(workdir):
    cells = [
        (["step:make"], "values = [1, 2, 3]\nextra = 10"),
        (["step:use"], "total = sum(values)"),
    ]
    nb = write_notebook(workdir / "renumber.ipynb", cells)
    first = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert first.status == st.SUCCEEDED, first.error
    # a markdown cell on top renumbers every cell: the generated comments change, not the code
    write_notebook(nb, [(None, "# A title")] + cells)
    moved = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert [s["status"] for s in moved.steps] == ["Cached", "Cached"]
    # a later step now needs `extra` too: make's cached result lacks it, so make runs again
    write_notebook(nb, [(None, "# A title")] + cells[:1] + [(["step:use"], "total = sum(values) + extra")])
    grown = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert grown.status == st.SUCCEEDED, grown.error
    assert {s["name"]: s["cache_reason"] for s in grown.steps} == {
        "make": "not cached: hands on different values (now extra, values)", "use": "not cached: code changed",
    }


def test_imports_that_start_threads_turn_forking_off(workdir):
    (workdir / "threaded_mod.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(20,), daemon=True).start()\nVALUE = 7\n"
    )
    nb = write_notebook(
        workdir / "threads.ipynb",
        [(["imports"], "import threaded_mod"), (["step:one"], "x = threaded_mod.VALUE"), (["step:two"], "y = x + 1")],
    )
    run = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert run.status == st.SUCCEEDED, run.error
    assert "the imports cells started threads (1): every step runs as a fresh python process" in run.logs()
    assert json.loads((run.job_dir / "warm_hints.json").read_text()) == []  # nothing for a warm parent to import


def test_the_next_warm_run_starts_with_the_installed_modules_the_run_before_imported(workdir):
    """The supervisor names what it preloaded from the installed packages and the standard
    library (not the notebook's own modules) to the warm parents; the next run's supervisor
    is a spare that has them loaded: its steps find them imported though nothing imported them."""
    from kfjupyter.runtime import warm

    warm.pool().close()  # a warm parent started by this test's first run, with its hints
    (workdir / "own_helpers.py").write_text("VALUE = 3\n")
    first = write_notebook(
        workdir / "first.ipynb",
        [(["imports"], "import colorsys\nimport own_helpers"), (["step:one"], "x = colorsys.rgb_to_hsv(1, 0, 0)[0]")],
    )
    run = run_pipeline(first).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert run.status == st.SUCCEEDED, run.error
    assert not run.record.backend_info.get("warm")
    assert json.loads((run.job_dir / warm.HINTS).read_text()) == ["colorsys"]
    assert warm.pool().wait_ready(120)
    second = write_notebook(
        workdir / "second.ipynb",
        [(["imports"], "import sys"), (["step:look"], "print('loaded:', 'colorsys' in sys.modules, 'own_helpers' in sys.modules)")],
    )
    try:
        again = run_pipeline(second).wait(raise_on_failure=False, timeout=60, poll=0.02)
        assert again.status == st.SUCCEEDED, again.error
        assert again.record.backend_info.get("warm")
        assert "loaded: True False" in again.step_logs("look")
    finally:
        warm.pool().close()


def test_independent_branches_respect_max_parallel_with_plain_step_processes(workdir, monkeypatch):
    monkeypatch.setenv("KFJUPYTER_PIPELINE_FORK", "0")  # python stepruntime.py per step
    nb = write_notebook(
        workdir / "branches.ipynb",
        [
            (["imports"], "import time"),
            (["step:root"], "seed = 1"),
            (["step:left", "prev:root"], "time.sleep(0.6)\nleft = seed"),
            (["step:right", "prev:root"], "time.sleep(0.6)\nright = seed"),
        ],
    )
    run = run_pipeline(nb, max_parallel=1).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert run.status == st.SUCCEEDED, run.error
    rows = steps(run)
    left, right = rows["left"], rows["right"]
    assert t(right["started_at"]) >= t(left["finished_at"]) or t(left["started_at"]) >= t(right["finished_at"])
    assert "forked" not in (run.job_dir / "run.log").read_text()


def test_steps_are_forked_with_the_imports_loaded_and_a_missing_module_fails_its_step(workdir):
    nb = write_notebook(
        workdir / "imports.ipynb",
        [
            (["imports"], "import json\nfrom xml.dom import minidom\nimport no_such_module_here"),
            (["step:one"], "x = json.dumps([1])"),
        ],
    )
    run = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert run.status == st.FAILED
    log = (run.job_dir / "run.log").read_text()
    assert "forked from this process with json, xml.dom loaded" in log
    assert "could not preload no_such_module_here (ModuleNotFoundError)" in log
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in run.error


def test_cancel_stops_every_step(workdir, workspace):
    nb = write_notebook(
        workdir / "slow.ipynb",
        [
            (["imports"], "import time"),
            (["step:begin"], "n = 1"),
            (["step:slow-a", "prev:begin"], "time.sleep(120)\na = n"),
            (["step:slow-b", "prev:begin"], "time.sleep(120)\nb = n"),
            (["step:end"], "c = a + b"),
        ],
    )
    run = run_pipeline(nb)
    wait_for(lambda: sum(s["status"] == "Running" for s in run.steps) == 2, timeout=30)
    running = [s for s in run.steps if s["status"] == "Running"]
    assert all(s["duration_s"] is not None and s["finished_at"] is None for s in running)  # so far
    assert run.record.message == "1/4 steps done"
    pids = [p.pid for p in processes_of(workspace)]
    assert len(pids) >= 3  # the supervisor and two steps
    start = time.monotonic()
    run.cancel()
    assert time.monotonic() - start < 10
    assert run.status == st.CANCELLED
    rows = steps(run)
    assert rows["slow-a"]["status"] == rows["slow-b"]["status"] == "Cancelled"
    assert rows["end"]["status"] == "Skipped"
    assert rows["begin"]["status"] == "Succeeded"
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids), timeout=10)


def test_bad_input_is_refused_before_anything_starts(workdir, workspace):
    nb = _make_failing(workdir)
    cases = [
        (dict(parameters={"nope": 1}), "unknown pipeline parameter 'nope'"),
        (dict(parameters={"scale": "two"}), "'scale' is of type int"),
        (dict(parameters={"scale": 1.5}), "is not a valid int"),
        (dict(resume="no-such-run"), "there is no pipeline run with that id"),
        (dict(max_parallel=0), "invalid max_parallel"),
        (dict(backend="moon"), "unknown backend"),
    ]
    for kwargs, message in cases:
        with pytest.raises(KFJupyterError, match=message):
            run_pipeline(nb, **kwargs)
    assert get_workspace().count_jobs() == 0
    assert not (workspace / "jobs").exists() or not any((workspace / "jobs").iterdir())

    # resume of a run of another pipeline
    other = write_notebook(workdir / "other.ipynb", [(["step:only"], "x = 1")], name="other")
    done = run_pipeline(other).wait(timeout=60, poll=0.02)
    with pytest.raises(KFJupyterError, match="it is a run of pipeline 'other', not of 'flaky'"):
        run_pipeline(nb, resume=done.id)
    assert get_workspace().count_jobs() == 1
    assert [p.name for p in (workspace / "jobs").iterdir()] == [done.id]


def test_a_parameter_with_quotes_and_code_is_data(workdir):
    nb = write_notebook(
        workdir / "quotes.ipynb",
        [
            (["pipeline-parameters"], "text = 'plain'"),
            (["step:echo"], "echoed = text\nprint(repr(text))"),
        ],
    )
    nasty = "'; import os; os._exit(3) #\"\n__import__('sys').exit(4)"
    run = run_pipeline(nb, {"text": nasty}).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert run.status == st.SUCCEEDED, run.error
    assert repr(nasty) in run.step_logs("echo")


def test_the_run_outlives_its_handle_and_is_found_again(workdir):
    nb = _make_failing(workdir)
    (workdir / "ok.marker").write_text("")
    # started by a process that is gone before the run ends (a kernel restart, say)
    starter = subprocess.run(
        [sys.executable, "-c", f"from kfjupyter.pipelines import run_pipeline; print(run_pipeline({str(nb)!r}).id)"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    run = get_run(starter.stdout.strip())
    again = get_run(run.id).wait(timeout=60, poll=0.02)
    assert again.status == st.SUCCEEDED
    data = again.to_dict()
    assert set(data) >= {"id", "status", "steps", "metrics", "pipeline", "parameters"}
    assert set(data["steps"][0]) >= {"name", "status", "cached", "cache_reason", "started_at", "finished_at", "duration_s", "error"}
    assert data["pipeline"]["name"] == "flaky" and "pipeline" not in data["spec"]
    assert data["notebook"] == str(nb.resolve()) and data["message"] == "4 succeeded"
    assert kfjupyter.jobs.get(run.id).kind == "pipeline"
    assert [r.id for r in kfjupyter.pipelines.list_runs(notebook=str(nb))] == [run.id]
    json.dumps(data)  # JSON-ready
    assert os.path.exists(again.job_dir / "steps" / "fragile" / "log")
    with pytest.raises(KFJupyterError, match="no step 'missing'"):
        again.step_logs("missing")


def test_step_states_cache_and_resume_on_postgresql(workdir, monkeypatch):
    """The team store: the same run, cache and resume with the workspace on PostgreSQL."""
    from postgres_support import shared_server

    monkeypatch.setenv("KFJUPYTER_DB_URL", shared_server().new_schema())
    nb = _make_failing(workdir)
    run = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert run.status == st.FAILED and run.error.startswith("step fragile failed")
    (workdir / "ok.marker").write_text("")
    resumed = run_pipeline(nb, resume=run.id).wait(timeout=60, poll=0.02)
    assert [s["status"] for s in resumed.steps] == ["Cached", "Succeeded", "Succeeded", "Cached"]
    again = run_pipeline(nb).wait(timeout=60, poll=0.02)
    assert {s["cache_reason"] for s in again.steps} == {
        f"cached: same code, inputs and parameters as run {x}" for x in (run.id, resumed.id)
    }
    assert get_workspace().engine.dialect.name == "postgresql"


def test_a_step_log_is_followed_until_the_step_ends(workdir):
    nb = write_notebook(
        workdir / "talk.ipynb",
        [
            (["imports"], "import time"),
            (["step:talk"], "for i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.3)\nn = 3"),
            (["step:after"], "m = n + 1\ntime.sleep(1)"),
        ],
    )
    run = run_pipeline(nb)
    lines = list(run.step_logs("talk", follow=True))
    assert lines == ["line 0", "line 1", "line 2"]
    # the step has ended; the run goes on with the next one
    assert run.step("talk")["status"] == "Succeeded"
    assert run.wait(timeout=60, poll=0.02).status == st.SUCCEEDED


def test_a_dataframe_changed_in_place_by_one_step_reaches_the_next_changed(workdir):
    nb = write_notebook(
        workdir / "frames.ipynb",
        [
            (["imports"], "import pandas as pd"),
            (["step:load"], "df = pd.DataFrame({'a': [1, 2, 3]})"),
            (["step:clean"], "df['b'] = df['a'] * 2"),
            (["step:train"], "total = float(df['b'].sum())"),
            (["pipeline-metrics"], "total"),
        ],
    )
    run = run_pipeline(nb, wait=True)
    assert run.status == st.SUCCEEDED, run.error
    assert run.pipeline_metrics() == {"total": 12.0}
    assert list(run.value("clean", "df").columns) == ["a", "b"]


def test_an_unchanged_set_has_the_same_content_hash_in_every_run(workdir):
    """Sets of strings pickle in hash order: steps run with a fixed hash seed, so a rerun
    step that hands on the same set leaves the steps after it cached."""
    nb = write_notebook(
        workdir / "sets.ipynb",
        [
            (["step:make", "cache:false"], "s = {'apple%d' % i for i in range(50)}"),
            (["step:count"], "k = len(s)"),
        ],
    )
    run_pipeline(nb, wait=True)
    again = run_pipeline(nb, wait=True)
    assert again.step("make")["cache_reason"] == "not cached: cache:false tag"
    assert again.step("count")["cached"], again.step("count")["cache_reason"]


def test_editing_a_local_module_a_step_imports_reruns_that_step(workdir):
    (workdir / "helpers.py").write_text("def scale(x):\n    return x * 2\n")
    nb = write_notebook(
        workdir / "mods.ipynb",
        [
            (["imports"], "from helpers import scale"),
            (["step:make"], "x = 3"),
            (["step:use"], "y = scale(x)"),
            (["pipeline-metrics"], "y"),
        ],
    )
    assert run_pipeline(nb, wait=True).pipeline_metrics() == {"y": 6.0}
    (workdir / "helpers.py").write_text("def scale(x):\n    return x * 10\n")
    again = run_pipeline(nb, wait=True)
    assert again.pipeline_metrics() == {"y": 30.0}
    assert [s["cache_reason"] for s in again.steps] == ["not cached: local module helpers changed"] * 2


# -- cache reasons that say what happened (issue 18) ------------------------------------


def test_a_step_whose_last_run_failed_says_so_not_first_run(workdir):
    nb = _make_failing(workdir)
    first = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert first.step("fragile")["status"] == st.FAILED
    again = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert again.step("fragile")["cache_reason"] == f"not cached: its last run failed (run {first.id})"
    assert again.step("start")["cached"]
    (workdir / "ok.marker").write_text("fixed")
    fixed = run_pipeline(nb).wait(raise_on_failure=False, timeout=60, poll=0.02)
    assert fixed.status == st.SUCCEEDED, fixed.error
    assert fixed.step("fragile")["cache_reason"] == f"not cached: its last run failed (run {again.id})"
    assert fixed.step("after")["cache_reason"] == "not cached: first run"  # skipped twice: it never ran


def test_two_notebooks_sharing_a_kale_pipeline_name_have_separate_cache_histories(workdir):
    def notebook(folder: str, code: str) -> Path:
        (workdir / folder).mkdir(exist_ok=True)
        return write_notebook(workdir / folder / "nb.ipynb", [(["step:make"], code), (["step:use"], "y = x + 1")],
                              name="shared")

    a, b = notebook("a", "x = 1"), notebook("b", "x = 2")
    assert run_pipeline(a, wait=True).status == st.SUCCEEDED
    first_b = run_pipeline(b, wait=True)
    assert [s["cache_reason"] for s in first_b.steps] == ["not cached: first run"] * 2
    notebook("b", "x = 3")
    second_b = run_pipeline(b, wait=True)
    assert second_b.step("make")["cache_reason"] == "not cached: code changed"
    assert second_b.step("use")["cache_reason"] == "not cached: input x changed"
    again_a = run_pipeline(a, wait=True)
    assert all(s["cached"] for s in again_a.steps), again_a.steps
