"""Papermill runs: a notebook executed with parameters as a tracked job, and sweeps.

    run = kfjupyter.run_notebook("train.ipynb", {"lr": 0.01})          -> NotebookRun
    sweep = kfjupyter.run_notebook("train.ipynb", sweep={"lr": [0.1, 0.01], "layers": [1, 2]})
    sweep.wait().results()                                             -> pandas DataFrame

On the command line: ``kfjupyter run NOTEBOOK -p NAME VALUE --sweep NAME=V1,V2``.
"""

from .api import NotebookRun, Sweep, get_run, results_text, run_notebook
from .params import parse_sweep_args, parse_value

__all__ = ["NotebookRun", "Sweep", "get_run", "parse_sweep_args", "parse_value", "results_text", "run_notebook"]
