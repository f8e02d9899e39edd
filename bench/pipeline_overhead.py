"""Overhead of the local pipeline runner against running the notebook top to bottom.

A 6-step pipeline notebook (``prep`` → two independent branches of two steps each →
``join``; every step sleeps ``--work`` seconds and does a little numpy work, and reports
how long its work took) runs

  (a) top to bottom with papermill (one kernel, the cells in order),
  (b) with the local runner in a fresh workspace (nothing cached; the branches in parallel),
  (c) with the local runner again (every step from the cache).

Wall times are measured from the call to its end (for the runner: ``run_pipeline`` — which
compiles the notebook, records the run and starts the supervisor — to ``wait(poll=0.05)``
returning; ``wait``'s default poll, 0.2 s, would add half of that on average). Each
round's workspace is new (nothing cached) and is created before the clock starts (a
user's workspace exists already: creating its tables is no part of a run).

Before the rounds, one run of (b) in a workspace of its own is the process's first: the
**cold** figure (imports in this process, a supervisor started as a fresh interpreter).
It starts the warm parents, which are waited for, so the rounds are **warm**
(``KFJUPYTER_WARM=0``: every round is cold too).

The per-step overhead of (b) is its wall time minus the work on its critical path (prep,
the longer branch, join: 4 steps, as reported by the steps themselves), divided by those
4 steps; it covers submission, the supervisor, a Python process per step, loading and
saving the values that cross steps, and the scheduling.

Prints a table, then as its last line one JSON object:
``{"papermill_s", "runner_s", "cached_s", "per_step_overhead_s", "cold_per_step_overhead_s", …}``

    python bench/pipeline_overhead.py [--work 1.0] [--repeat 1]

Steps are forks of the runner's supervisor by default; ``KFJUPYTER_PIPELINE_FORK=0``
measures a fresh ``python stepruntime.py`` per step instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

CELLS = [
    (["imports"], "import time\nimport numpy as np\nimport kfjupyter"),
    (["pipeline-parameters"], "size = 300\nseed = 0\nwork = WORK"),
    (["step:prep"], """started = time.perf_counter()
rng = np.random.default_rng(seed)
data = rng.normal(size=(size, size))
time.sleep(work)
kfjupyter.report(work_s=time.perf_counter() - started)"""),
    (["step:left-1", "prev:prep"], """started = time.perf_counter()
left = data @ data.T
time.sleep(work)
kfjupyter.report(work_s=time.perf_counter() - started)"""),
    (["step:left-2"], """started = time.perf_counter()
left_norm = float(np.linalg.norm(left))
time.sleep(work)
kfjupyter.report(work_s=time.perf_counter() - started)"""),
    (["step:right-1", "prev:prep"], """started = time.perf_counter()
right = np.sort(data, axis=0)
time.sleep(work)
kfjupyter.report(work_s=time.perf_counter() - started)"""),
    (["step:right-2"], """started = time.perf_counter()
right_mean = float(right.mean())
time.sleep(work)
kfjupyter.report(work_s=time.perf_counter() - started)"""),
    (["step:join"], """started = time.perf_counter()
score = left_norm + right_mean
time.sleep(work)
kfjupyter.report(work_s=time.perf_counter() - started)
print("score", score)"""),
    (["pipeline-metrics"], "score"),
]


def write_notebook(path: Path, work: float) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kubeflow_notebook"] = {"pipeline_name": "bench-overhead"}
    for tags, source in CELLS:
        nb.cells.append(new_code_cell(source.replace("WORK", repr(work)), metadata={"tags": tags}))
    nbformat.write(nb, str(path))
    return path


def run_papermill(notebook: Path, out: Path) -> float:
    import papermill

    start = time.monotonic()
    papermill.execute_notebook(str(notebook), str(out), kernel_name="python3", progress_bar=False, log_output=False)
    return time.monotonic() - start


def run_runner(notebook: Path) -> tuple[float, object]:
    from kfjupyter.pipelines import run_pipeline

    from kfjupyter.store.workspace import get_workspace

    get_workspace()  # the workspace exists before the run (see the module docstring)
    start = time.monotonic()
    run = run_pipeline(notebook).wait(poll=0.05)
    took = time.monotonic() - start
    if run.status != "Succeeded":
        raise SystemExit(f"pipeline run {run.id} {run.status}:\n{run.error}")
    return took, run


def critical_work(run) -> tuple[float, dict[str, float]]:
    work = {step: values["work_s"] for step, values in run.step_metrics().items()}
    left = work["left-1"] + work["left-2"]
    right = work["right-1"] + work["right-2"]
    return work["prep"] + max(left, right) + work["join"], work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=float, default=1.0, help="seconds of work per step (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (a), (b), (c); medians are reported")
    args = parser.parse_args()
    results: dict[str, list[float]] = {"papermill": [], "runner": [], "cached": [], "overhead": [], "process": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "nb"
        folder.mkdir()
        notebook = write_notebook(folder / "bench_pipeline.ipynb", args.work)
        os.environ["KFJUPYTER_HOME"] = str(Path(tmp) / "kfhome-cold")
        cold_s, cold = run_runner(notebook)
        cold_overhead = (cold_s - critical_work(cold)[0]) / 4
        print(f"cold: (b) runner {cold_s:6.2f} s ({cold_overhead:.3f} s overhead per step)", flush=True)
        from kfjupyter.runtime import warm

        warm.pool().wait_ready(120)  # the rounds start warm (a no-op with KFJUPYTER_WARM=0)
        for i in range(args.repeat):
            os.environ["KFJUPYTER_HOME"] = str(Path(tmp) / f"kfhome-{i}")  # a fresh workspace: no cache
            papermill_s = run_papermill(notebook, folder / f"out-{i}.ipynb")
            runner_s, run = run_runner(notebook)
            cached_s, cached = run_runner(notebook)
            assert all(s["status"] == "Cached" for s in cached.steps), cached.steps
            critical, work = critical_work(run)
            overhead = (runner_s - critical) / 4
            # the part of it spent in each step's own process (start, imports, values in and out)
            process = statistics.mean(s["duration_s"] - work[s["name"]] for s in run.steps)
            for key, value in (("papermill", papermill_s), ("runner", runner_s), ("cached", cached_s),
                               ("overhead", overhead), ("process", process)):
                results[key].append(value)
            print(f"round {i + 1}: (a) papermill {papermill_s:6.2f} s   (b) runner {runner_s:6.2f} s "
                  f"(critical-path work {critical:.2f} s, {overhead:.3f} s overhead per step; "
                  f"{process:.3f} s of it in the step process)   (c) cached {cached_s:5.2f} s", flush=True)
    median = {k: statistics.median(v) for k, v in results.items()}
    figures = {
        "papermill_s": round(median["papermill"], 3),
        "runner_s": round(median["runner"], 3),
        "cached_s": round(median["cached"], 3),
        "per_step_overhead_s": round(median["overhead"], 3),
        "step_process_overhead_s": round(median["process"], 3),
        "cold_runner_s": round(cold_s, 3),
        "cold_per_step_overhead_s": round(cold_overhead, 3),
        "work_per_step_s": args.work,
        "steps": 6,
        "critical_path_steps": 4,
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
    }
    print(f"(b) {'faster' if figures['runner_s'] < figures['papermill_s'] else 'NOT faster'} than (a); "
          f"per-step overhead {figures['per_step_overhead_s']} s (target <= 0.5 s); "
          f"cached run {figures['cached_s']} s (target <= 1 s)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
