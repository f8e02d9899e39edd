"""Notebook runs and sweeps: ``kfjupyter.run_notebook`` against ``papermill.execute_notebook``.

A trivial parameterised notebook (a ``parameters`` cell and one cell that uses it) runs
in this one warm Python process:

  (a) ``papermill.execute_notebook`` once (a fresh kernel, as papermill starts one);
  (b) ``kfjupyter.run_notebook`` once, waited for (a job: record, supervisor, kernel);
  (c) a sweep of 8 runs, 2 in parallel, with ``kfjupyter.run_notebook(sweep=…)``;
  (d) the same 8 runs with papermill, one after the other.

Before the timed rounds one untimed run of each warms the process (imports) and
kfjupyter's warm pools: the warm parent of run supervisors (``kfjupyter/runtime/warm.py``,
on unless ``KFJUPYTER_WARM`` is set) and the warm kernels (``kfjupyter/notebook_runs/kernels.py``,
on unless ``KFJUPYTER_WARM_KERNELS=0``). Each timed measurement starts once both pools are
ready (a refill never runs beside papermill's turn). Ratios are kfjupyter ÷ papermill of
the medians over ``--repeat`` rounds.

Prints a table, then as its last line one JSON object:
``{"single_ratio": b / a, "sweep_ratio": c / d, "papermill_s", "kfjupyter_s", "papermill_sweep_s", "kfjupyter_sweep_s", …}``

    python bench/notebook_runs.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

SWEEP = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def write_notebook(path: Path) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(new_code_cell("lr = 0.01", metadata={"tags": ["parameters"]}))
    nb.cells.append(new_code_cell("print('lr is', lr)\nresult = lr * 2"))
    nbformat.write(nb, str(path))
    return path


def papermill_run(notebook: Path, out: Path, lr: float) -> float:
    import papermill

    started = time.monotonic()
    papermill.execute_notebook(str(notebook), str(out), parameters={"lr": lr}, kernel_name="python3",
                               progress_bar=False, log_output=False)  # fmt: skip
    return time.monotonic() - started


def kfjupyter_run(notebook: Path, **kw) -> float:
    import kfjupyter

    started = time.monotonic()
    job = kfjupyter.run_notebook(str(notebook), **kw)
    job.wait(poll=0.02, raise_on_failure=False)
    took = time.monotonic() - started
    if job.status != "Succeeded":
        raise SystemExit(f"kfjupyter run {job.id} {job.status}:\n{job.error}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.modules.setdefault("rfc3987_syntax", None)  # as kfjupyter's runner does: a 2 s import papermill never uses
    results: dict[str, list[float]] = {"pm": [], "kf": [], "pm_sweep": [], "kf_sweep": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("KFJUPYTER_HOME", str(folder / "kfhome"))
        os.environ.setdefault("KFJUPYTER_WARM", "1")
        from kfjupyter.notebook_runs import kernels
        from kfjupyter.runtime import warm

        def pools_ready() -> None:
            warm.pool().wait_ready(120)
            kernels.pool().wait_ready(120)

        notebook = write_notebook(folder / "trivial.ipynb")
        papermill_run(notebook, folder / "warm-up.ipynb", 0.5)  # imports, once
        kfjupyter_run(notebook, parameters={"lr": 0.5})  # imports, and the warm pools
        kfjupyter_run(notebook, sweep={"lr": SWEEP[:2]}, max_parallel=2)  # a sweep's imports
        for i in range(args.repeat):
            pools_ready()
            results["pm"].append(papermill_run(notebook, folder / f"pm-{i}.ipynb", 0.3))
            pools_ready()
            results["kf"].append(kfjupyter_run(notebook, parameters={"lr": 0.3}))
            pools_ready()
            started = time.monotonic()
            for k, lr in enumerate(SWEEP):
                papermill_run(notebook, folder / f"pm-{i}-{k}.ipynb", lr)
            results["pm_sweep"].append(time.monotonic() - started)
            pools_ready()
            results["kf_sweep"].append(kfjupyter_run(notebook, sweep={"lr": SWEEP}, max_parallel=2))
            print(f"round {i + 1}: single run: papermill {results['pm'][-1]:5.2f} s, kfjupyter {results['kf'][-1]:5.2f} s;"
                  f"  sweep of {len(SWEEP)}: papermill serially {results['pm_sweep'][-1]:5.2f} s, "
                  f"kfjupyter (2 in parallel) {results['kf_sweep'][-1]:5.2f} s", flush=True)
    median = {k: statistics.median(v) for k, v in results.items()}
    figures = {
        "single_ratio": round(median["kf"] / median["pm"], 3),
        "sweep_ratio": round(median["kf_sweep"] / median["pm_sweep"], 3),
        "papermill_s": round(median["pm"], 3),
        "kfjupyter_s": round(median["kf"], 3),
        "papermill_sweep_s": round(median["pm_sweep"], 3),
        "kfjupyter_sweep_s": round(median["kf_sweep"], 3),
        "spread": {k: [round(min(v), 3), round(max(v), 3)] for k, v in results.items()},
        "runs_in_sweep": len(SWEEP),
        "max_parallel": 2,
        "repeat": args.repeat,
        "warm": warm.enabled(),
        "warm_kernels": kernels.enabled(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"single run ratio {figures['single_ratio']} (target <= 0.5), sweep ratio {figures['sweep_ratio']} (target <= 0.5)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
