"""Papermill runs: a notebook executed with parameters as a tracked job, and sweeps.

    run = kfjupyter.run_notebook("train.ipynb", {"lr": 0.01})          -> NotebookRun
    sweep = kfjupyter.run_notebook("train.ipynb", sweep={"lr": [0.1, 0.01], "layers": [1, 2]})
    sweep.wait().results()                                             -> pandas DataFrame

On the command line: ``kfjupyter run NOTEBOOK -p NAME VALUE --sweep NAME=V1,V2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import NotebookRun, Sweep, get_run, results_table, results_text, run_notebook, start_from_notebook
    from .params import notebook_parameters, parse_sweep_args, parse_value

_FROM = {"NotebookRun": "api", "Sweep": "api", "get_run": "api", "results_text": "api", "run_notebook": "api",
         "parse_sweep_args": "params", "parse_value": "params",
         "results_table": "api", "start_from_notebook": "api", "notebook_parameters": "params"}  # fmt: skip


def __getattr__(name: str):
    """The API loads on first use: the kernel pool's process (:mod:`.kernels`) imports this
    package without the store."""
    if name in _FROM:
        import importlib

        value = getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NotebookRun", "Sweep", "get_run", "notebook_parameters", "parse_sweep_args", "parse_value", "results_table",
           "results_text", "run_notebook", "start_from_notebook"]
