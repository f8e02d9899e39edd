"""``kfjupyter.run_notebook``: a notebook executed with papermill as a tracked job, or a sweep.

A run is a job of kind ``notebook``; a sweep is a job of kind ``sweep`` whose runs are
``notebook`` jobs of their own (``spec["sweep_id"]`` points back). Both run locally in
detached processes (see :mod:`.local`), so they outlive the kernel that started them and
any process re-attaches with :func:`get_run` (or ``kfjupyter.jobs.get``).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

from .. import status as st
from ..errors import InvalidOptionError, KFJupyterError
from ..jobs import REFUSALS, Job, create, forget
from ..runtime.engine import MAX_NAME_LENGTH
from ..store.models import ChildRecord
from ..store.workspace import get_workspace
from ..validation import check_job_name
from . import params as P
from .spec import NotebookSpec, SweepSpec

#: Columns of a results table after the parameters and metrics.
STATUS_COLUMN, JOB_COLUMN = "status", "job_id"
_CELL_LINE = re.compile(r"^cell (\d+)/(\d+)")


# -- handles ---------------------------------------------------------------------------


def _table(runs: list["NotebookRun"]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of a results table: parameters, last metric values, status, job id."""
    param_cols: list[str] = []
    metric_cols: list[str] = []
    rows = []
    for run in runs:
        params = run.parameters
        metrics = run.last_metrics()
        for key in params:
            if key not in param_cols:
                param_cols.append(key)
        row = dict(params)
        for key, value in metrics.items():
            column = key if key not in params and key not in (STATUS_COLUMN, JOB_COLUMN) else f"{key} (metric)"
            if column not in metric_cols:
                metric_cols.append(column)
            row[column] = value
        row[STATUS_COLUMN] = run.refresh().status
        row[JOB_COLUMN] = run.id
        rows.append(row)
    metric_cols = [c for c in metric_cols if c not in param_cols]
    return param_cols + metric_cols + [STATUS_COLUMN, JOB_COLUMN], rows


def _dataframe(runs: list["NotebookRun"]):
    import pandas as pd

    columns, rows = _table(runs)
    return pd.DataFrame(rows, columns=columns)


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def results_text(table) -> str:
    """A results DataFrame as an aligned text table (as ``kfjupyter run`` prints it)."""
    columns = [str(c) for c in table.columns]
    rows = [columns] + [[_cell_text(v) for v in values] for values in table.itertuples(index=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


class NotebookRun(Job):
    """One papermill run of a notebook (job kind ``notebook``)."""

    @property
    def notebook(self) -> str:
        """The notebook that was run (it is never modified; the run used a copy)."""
        return self._record.spec.get("notebook", "")

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self._record.spec.get("parameters") or {})

    @property
    def kernel(self) -> str:
        return self._record.spec.get("kernel", "")

    @property
    def sweep_id(self) -> str | None:
        return self._record.spec.get("sweep_id")

    @property
    def output_notebook(self) -> Path:
        """The executed notebook (``job_dir/output.ipynb``), saved after every cell."""
        return self.job_dir / "output.ipynb"

    def read_output(self):
        """The executed notebook as an nbformat node."""
        import nbformat

        return nbformat.read(str(self.output_notebook), as_version=4)

    def progress(self) -> tuple[int, int] | None:
        """(cell, cells) of the cell running or last run, from the job log; None before."""
        path = self.job_dir / "logs" / "rank-0.log"
        if not path.exists():
            return None
        for line in reversed(path.read_text(errors="replace").splitlines()):
            match = _CELL_LINE.match(line)
            if match:
                return int(match.group(1)), int(match.group(2))
        return None

    def results(self):
        """A one-row DataFrame: the parameters, the last value of each metric, status, job id."""
        self.refresh()
        return _dataframe([self])

    def to_dict(self) -> dict:
        data = super().to_dict()
        cell = self.progress()
        data.update(
            notebook=self.notebook,
            parameters=self.parameters,
            kernel=self.kernel,
            sweep_id=self.sweep_id,
            index=self._record.spec.get("index"),
            output_notebook=str(self.output_notebook) if self.output_notebook.exists() else None,
            metrics=self.last_metrics(),
            progress={"cell": cell[0], "cells": cell[1]} if cell else None,
        )
        return data

    def __repr__(self) -> str:
        return f"<NotebookRun {self.id} {self._record.status} {Path(self.notebook).name} {self.parameters}>"


class Sweep(Job):
    """A grid of papermill runs of one notebook (job kind ``sweep``)."""

    @property
    def notebook(self) -> str:
        return self._record.spec.get("notebook", "")

    @property
    def grid(self) -> list[dict[str, Any]]:
        """The parameter set of each run, in order."""
        return [dict(p) for p in self._record.spec.get("grid") or []]

    @property
    def max_parallel(self) -> int:
        return int(self._record.spec.get("max_parallel") or 1)

    @property
    def runs(self) -> list[NotebookRun]:
        return [NotebookRun(run_id) for run_id in self._record.spec.get("runs") or []]

    @property
    def output_notebooks(self) -> list[Path]:
        return [run.output_notebook for run in self.runs]

    def results(self):
        """One row per parameter set: the parameters, the last value of each metric the run
        reported, its status and its job id (the run's ``job_id``)."""
        self.refresh()
        return _dataframe(self.runs)

    def results_text(self) -> str:
        return results_text(self.results())

    def _repr_html_(self) -> str:
        import html

        head = html.escape(f"sweep {self.id}: {self.status}, {len(self.grid)} run(s) of {Path(self.notebook).name}")
        return f"<p>{head}</p>" + self.results().to_html(index=False, na_rep="")

    def to_dict(self) -> dict:
        data = super().to_dict()
        runs = self.runs
        columns, rows = _table(runs)
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.record.status] = counts.get(run.record.status, 0) + 1
        spec = self._record.spec
        data.update(
            notebook=self.notebook,
            parameters=dict(spec.get("parameters") or {}),
            sweep=dict(spec.get("sweep") or {}),
            max_parallel=self.max_parallel,
            counts=counts,
            runs=[
                {
                    "id": run.id,
                    "status": run.record.status,
                    "parameters": run.parameters,
                    "metrics": run.last_metrics(),
                    "output_notebook": str(run.output_notebook) if run.output_notebook.exists() else None,
                    "error": run.record.error,
                }
                for run in runs
            ],
            results={"columns": columns, "rows": [[_json_value(row.get(c)) for c in columns] for row in rows]},
        )
        return data

    def __repr__(self) -> str:
        return f"<Sweep {self.id} {self._record.status} {len(self.grid)} run(s) of {Path(self.notebook).name}>"


def get_run(job_id: str) -> NotebookRun | Sweep:
    """Re-attach to a notebook run or a sweep by id."""
    record = get_workspace().get_job(job_id)
    if record.kind == "notebook":
        return NotebookRun(job_id, record)
    if record.kind == "sweep":
        return Sweep(job_id, record)
    raise KFJupyterError(f"job {job_id} is a {record.kind} job, not a notebook run or sweep")


# -- submission --------------------------------------------------------------------------


def default_name(path: Path, max_length: int = MAX_NAME_LENGTH) -> str:
    """A job name from the notebook's file name (``My Notebook.ipynb`` → ``my-notebook``)."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", path.stem.lower())).strip("-")
    if not slug or not slug[0].isalpha():
        slug = ("nb-" + slug).rstrip("-")
    return slug[:max_length].rstrip("-")


def _check_parallel(max_parallel: Any) -> int | None:
    if max_parallel is None:
        return None
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise InvalidOptionError(f"invalid max_parallel {max_parallel!r}: expected an integer >= 1")
    return max_parallel


#: The tag of the cell a run's copy gains to report the ``pipeline-metrics`` values.
METRICS_CELL_TAG = "kfjupyter-pipeline-metrics"


def with_pipeline_metrics(data: bytes) -> bytes:
    """The notebook, plus a last cell that reports (``kfjupyter.report``) the numeric values
    its ``pipeline-metrics`` cell lists (Kale's tag), so a run's and a sweep's results show
    them; the notebook as it is when it has no such cell."""
    from ..pipelines.graph import PipelineError, metric_names
    from ..pipelines.tags import TagError, parse_tags

    nb = json.loads(data)
    names: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            if parse_tags((cell.get("metadata") or {}).get("tags") or []).kind != "pipeline-metrics":
                continue
            source = cell.get("source")
            names += [n for n in metric_names("".join(source) if isinstance(source, list) else source or "") if n not in names]
        except (TagError, PipelineError):
            continue  # not a pipeline notebook after all: nothing to report
    if not names:
        return data
    cell_id = {"id": "kfjupyter-pipeline-metrics"} if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5) else {}
    nb["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            **cell_id,
            "metadata": {"tags": [METRICS_CELL_TAG]},
            "outputs": [],
            "source": (
                "# added by kfjupyter to this run's copy: report the pipeline-metrics values\n"
                "import numbers as _kf_numbers, kfjupyter as _kf\n"
                f"_kf.report(**{{_n: float(_v) for _n, _v in ((_n, globals().get(_n)) for _n in {names!r}) "
                "if isinstance(_v, _kf_numbers.Real) and not isinstance(_v, bool)})"
            ),
        }
    )
    return json.dumps(nb, indent=1).encode()


def run_copy(data: bytes) -> bytes:
    """What a run executes of the notebook ``data``: its parameters cell tagged for papermill
    (:func:`params.with_parameters_tag`), its pipeline metrics reported."""
    return with_pipeline_metrics(P.with_parameters_tag(data))


def _copy_notebook(data: bytes):
    """The ``prepare`` of a run or a sweep: ``data`` (the notebook's bytes) as the
    ``input.ipynb`` of its folder (what papermill reads)."""

    def prepare(job_id: str, job_dir: Path) -> None:
        (job_dir / "input.ipynb").write_bytes(data)

    return prepare


def run_notebook(
    path: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    sweep: dict[str, list] | None = None,
    name: str | None = None,
    kernel: str | None = None,
    max_parallel: int | None = None,
    wait: bool = False,
    cwd: str | os.PathLike | None = None,
    language: str | None = None,
    report_mode: bool = False,
    execution_timeout: int | None = None,
    start_timeout: int = 60,
    prepare_only: bool = False,
    experiment: str | None = None,
) -> NotebookRun | Sweep:
    """Execute the notebook at ``path`` with papermill as a tracked job.

    ``parameters`` are injected after the notebook's cell tagged ``parameters`` (in a Kale
    notebook without one, its ``pipeline-parameters`` cell; a name that cell does not
    assign is refused). With ``sweep={"lr": [0.1, 0.01], "layers":
    [1, 2]}`` every combination runs (``parameters`` fixed for all), ``max_parallel`` at a
    time (default: the number of CPUs), and a :class:`Sweep` is returned; otherwise a
    :class:`NotebookRun`. ``kernel`` defaults to the notebook's kernelspec, else
    ``python3`` (``python`` is ``python3``, as for papermill). The kernel runs in ``cwd``
    (default: the notebook's folder, as in JupyterLab). The notebook itself is never
    written: the run executes a copy and keeps the executed notebook as
    ``run.output_notebook``. With ``wait`` it returns when done, and raises
    :class:`~kfjupyter.jobs.JobFailedError` if the run failed.

    papermill's options: ``language`` (of the injected parameters; default the notebook's,
    else its kernel's), ``report_mode`` (inputs hidden in the output notebook),
    ``execution_timeout`` (seconds each cell may take), ``start_timeout`` (seconds the
    kernel may take to start), ``prepare_only`` (the output notebook gets the parameters,
    nothing is executed).

    Every option is checked before anything is recorded or started: a refusal
    (:class:`~kfjupyter.errors.InvalidOptionError`) leaves nothing behind; a run that
    cannot be started is left Failed, saying why.
    """
    nb_path = Path(path).expanduser().resolve()
    data = nb_path.read_bytes() if nb_path.is_file() else b""
    nb = P.load_notebook(nb_path, data)  # the same bytes are what the run executes
    fixed = P.check_parameters(parameters, nb, nb_path)
    max_parallel = _check_parallel(max_parallel)
    grid = None
    swept = None
    if sweep is not None:
        swept = P.check_sweep(sweep, fixed)
        for pname, values in swept.items():
            for value in values:
                P.check_parameters({pname: value}, nb, nb_path, what="sweep parameter")
        grid = P.grid(fixed, swept)
    kernel_name = P.notebook_kernel(nb, kernel)
    options = dict(
        language=P.notebook_language(nb, language, kernel_name), report_mode=bool(report_mode),
        execution_timeout=_check_seconds(execution_timeout, "execution_timeout", optional=True),
        start_timeout=_check_seconds(start_timeout, "start_timeout"), prepare_only=bool(prepare_only),
    )  # fmt: skip
    # a sweep's runs are SWEEP_ID-<n>, and every id is at most 63 characters
    longest = MAX_NAME_LENGTH - (1 + len(str(len(grid))) if grid is not None else 0)
    name = check_job_name(name if name is not None else default_name(nb_path, longest), "run name", longest)
    folder = _check_cwd(cwd) if cwd is not None else str(nb_path.parent)
    if grid is None:
        return _submit_run(name, nb_path, data, fixed, kernel_name, folder, wait, options, experiment=experiment)
    return _submit_sweep(name, nb_path, data, fixed, swept, grid, kernel_name, folder, max_parallel, wait, options,
                         experiment=experiment)  # fmt: skip


def _check_seconds(value: Any, what: str, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(f"invalid {what} {value!r}: expected a whole number of seconds >= 1")
    return value


def _check_cwd(cwd: str | os.PathLike) -> str:
    folder = Path(cwd).expanduser().resolve()
    if not folder.is_dir():
        raise InvalidOptionError(f"invalid cwd {str(cwd)!r}: no such folder")
    return str(folder)


def _submit_run(name, nb_path, data, fixed, kernel, cwd, wait, options, experiment=None) -> NotebookRun:
    spec = NotebookSpec(name=name, notebook=str(nb_path), parameters=fixed, kernel=kernel, cwd=cwd, **options)
    run = create(spec, prepare=_copy_notebook(run_copy(data)), notebook=str(nb_path), experiment=experiment)
    if wait:
        run.wait()
    return run


def _submit_sweep(name, nb_path, data, fixed, swept, grid, kernel, cwd, max_parallel, wait, options,
                  experiment=None) -> Sweep:  # fmt: skip
    sweep_id = f"{name}-{secrets.token_hex(3)[:5]}"
    run_ids = [f"{sweep_id}-{i + 1}" for i in range(len(grid))]
    parallel = max_parallel or max(1, min(len(grid), os.cpu_count() or 1))
    prepare_run = _copy_notebook(run_copy(data))  # the same copy for every run
    spec = SweepSpec(
        name=name, notebook=str(nb_path), parameters=fixed, sweep=swept, grid=grid, runs=run_ids,
        max_parallel=parallel, kernel=kernel, cwd=cwd,
    )  # fmt: skip
    children = [
        ChildRecord(name=str(i + 1), kind="run", position=i, status=st.PENDING, job_ref=run_id,
                    attrs={"parameters": params})  # fmt: skip
        for i, (run_id, params) in enumerate(zip(run_ids, grid))
    ]
    created: list[str] = []
    try:
        for i, (run_id, params) in enumerate(zip(run_ids, grid)):
            run = NotebookSpec(name=name, notebook=str(nb_path), parameters=params, kernel=kernel, cwd=cwd,
                               sweep_id=sweep_id, index=i, **options)  # fmt: skip
            create(run, prepare=prepare_run, start=False, job_id=run_id, notebook=str(nb_path), experiment=experiment)
            created.append(run_id)
        handle = create(spec, prepare=_copy_notebook(data), children=children, job_id=sweep_id, notebook=str(nb_path),
                        experiment=experiment)  # fmt: skip
    except REFUSALS:
        for run_id in created:
            forget(run_id)
        raise
    except BaseException:
        for run_id in created:
            get_workspace().update_job(run_id, only_if_active=True, status=st.CANCELLED,
                                       message="the sweep could not be started")  # fmt: skip
        raise
    if wait:
        handle.wait()
    return handle


# -- from JupyterLab ("Run with parameters…") -------------------------------------------


def start_from_notebook(
    path: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    sweep: dict[str, list] | None = None,
    max_parallel: int | None = None,
) -> NotebookRun | Sweep:
    """:func:`run_notebook` as the notebook toolbar's "Run with parameters…" starts it: each
    value (fixed or swept) also checked against the type of the notebook's default for it
    (:func:`params.check_value_types`), so ``lr="abc"`` is refused, naming the value, before
    anything starts. A ``sweep`` of one value per name is the same as ``parameters``."""
    declared = P.notebook_parameters(path)
    if parameters is not None and isinstance(parameters, dict):
        P.check_value_types(parameters, declared)
    if sweep is not None and isinstance(sweep, dict):
        for pname, values in sweep.items():
            if isinstance(values, list):
                for value in values:
                    P.check_value_types({pname: value}, declared, what="sweep parameter")
    return run_notebook(path, parameters, sweep=sweep or None, max_parallel=max_parallel)


def results_table(job_id: str) -> dict[str, Any]:
    """The results of a notebook run or a sweep as JSON: ``{"job_id", "kind", "status",
    "columns", "rows" (lists, in column order; NaN as None), "runs": [{"id", "status",
    "parameters", "output_notebook" (absolute path, None until written), "error"}]}`` —
    the table of :meth:`Sweep.results` (one row for a run)."""
    handle = get_run(job_id)
    handle.refresh()
    runs = handle.runs if isinstance(handle, Sweep) else [handle]
    columns, rows = _table(runs)
    return {
        "job_id": handle.id,
        "kind": handle.record.kind,
        "status": handle.status,
        "columns": columns,
        "rows": [[_json_value(row.get(c)) for c in columns] for row in rows],
        "runs": [
            {
                "id": run.id,
                "status": run.record.status,
                "parameters": run.parameters,
                "output_notebook": str(run.output_notebook) if run.output_notebook.exists() else None,
                "error": run.record.error,
            }
            for run in runs
        ],
    }


def output_in_folder(job_id: str, root: str | os.PathLike, allow_hidden: bool = False) -> Path:
    """A path under ``root`` (a server's root folder) at which JupyterLab can open the
    executed notebook of run ``job_id``: the output itself when it lies under ``root``
    (and, unless ``allow_hidden``, in no hidden folder), else a copy written next to the
    notebook that was run, ``<stem>-<run id>-output.ipynb`` (refreshed on each call).
    Refused when the run has no output yet or its notebook is not under ``root``."""
    from ..files import path_under

    handle = get_run(job_id)
    if not isinstance(handle, NotebookRun):
        raise InvalidOptionError(f"job {job_id} is a sweep: open the output of one of its runs")
    source = handle.output_notebook
    if not source.is_file():
        raise InvalidOptionError(f"run {job_id} has no output notebook yet ({handle.status})")
    top = Path(root).expanduser().resolve()
    try:
        relative = source.resolve().relative_to(top)
        if allow_hidden or not any(part.startswith(".") for part in relative.parts):
            return source.resolve()
    except ValueError:
        pass
    notebook = Path(handle.notebook)
    try:
        folder = notebook.parent.resolve().relative_to(top)
    except ValueError:
        raise InvalidOptionError(
            f"run {job_id}'s notebook {notebook} is not under the server's root {top}: its output is {source}"
        ) from None
    target = path_under(top, str(folder / f"{notebook.stem}-{handle.id}-output.ipynb"), "output notebook")
    target.write_bytes(source.read_bytes())
    return target
