"""Experiment tracking: every job is a run; compare runs; re-run one; an MLflow copy.

    kfjupyter.runs(experiment=…, filter="metrics.val_loss < 0.2", order_by=[…]) -> DataFrame
    kfjupyter.compare(run_a, run_b, …)   -> Comparison (params that differ, final metrics, curves)
    job.rerun(lr=0.05)                   -> Job (the same program, some params changed)
    tracking.get_run(id) / experiments()

Every job but an endpoint is a run of an experiment (``experiment=`` / ``--experiment``;
default: the notebook's name), and so is every trial of a study and every step of a
pipeline run. With ``MLFLOW_TRACKING_URI`` set, each job's supervisor also copies its
runs to that MLflow tracking server while it runs (:mod:`.mlflow_sink`); a Kubernetes
job's pods send their own (:mod:`.pods`), through the same sender (:mod:`.mlflow_sender`).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from .compare import Comparison, compare
from .model import Run, RunNotFoundError, experiments, get_run, history, load_runs
from .rerun import rerun
from .search import SearchSyntaxError, compile_filter, parse_filter, parse_order_by, sort_runs

__all__ = [
    "Comparison", "Run", "RunNotFoundError", "SearchSyntaxError", "compare", "experiments", "get_run", "history",
    "rerun", "runs", "search_runs", "version_run",
]  # fmt: skip


@contextmanager
def bulk() -> Iterator[None]:
    """While thousands of small acyclic objects are built (rows → runs → a frame), the
    cyclic garbage collector would run again and again for nothing (a third of a search's
    time): it is paused meanwhile; reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def search_runs(experiment: str | None = None, filter: str | None = None, order_by: str | Iterable[str] | None = None,
                kind: str | None = None, limit: int | None = None, offset: int = 0) -> tuple[list[Run], int]:  # noqa: A002  # fmt: skip
    """The runs that match, as :class:`Run` objects, and how many match in all."""
    match = compile_filter(filter, lambda run, key: run.value(key))  # a syntax error before any query
    order = parse_order_by(order_by)
    with bulk():
        found = [r for r in load_runs(experiment, kind=kind, clauses=parse_filter(filter)) if match(r)]
        if order:
            found = sort_runs(found, order, lambda run, key: run.value(key))
    total = len(found)
    return found[offset: None if limit is None else offset + limit], total


#: The attributes of every run that :func:`runs` gives as columns (then params.*, metrics.*, tags.*).
FRAME_ATTRIBUTES = ("run_id", "experiment", "name", "kind", "status", "job_id", "created_at", "started_at",
                    "finished_at", "source_run", "parent_run")  # fmt: skip


def runs(experiment: str | None = None, filter: str | None = None, order_by: str | Iterable[str] | None = None,  # noqa: A002
         kind: str | None = None, limit: int | None = None, source: str = "kfjupyter") -> Any:  # fmt: skip
    """The runs of ``experiment`` (all: None) that match ``filter`` (MLflow's search syntax),
    sorted by ``order_by``, as a pandas DataFrame: ``run_id``, ``experiment``, ``name``,
    ``kind``, ``status``, times, ``params.*``, ``metrics.*`` (the last values), ``tags.*``,
    ``source_run``, ``parent_run``, ``models``. ``source="mlflow"``: the runs of that
    experiment on the MLflow tracking server instead (MLflow's own DataFrame)."""
    import pandas as pd

    if source == "mlflow":
        from .mlflow_sink import search_mlflow

        return search_mlflow(experiment, filter, order_by, limit)
    if source != "kfjupyter":
        raise SearchSyntaxError(f"invalid source {source!r}: 'kfjupyter' or 'mlflow'")
    with bulk():
        found, _ = search_runs(experiment, filter, order_by, kind, limit)
        columns = {a: [getattr(r, a) for r in found] for a in FRAME_ATTRIBUTES}  # column by column: fast for pandas
        for kind_ in ("params", "metrics", "tags"):
            names = dict.fromkeys(k for r in found for k in getattr(r, kind_))
            for name in names:
                columns[f"{kind_}.{name}"] = [getattr(r, kind_).get(name) for r in found]
        return pd.DataFrame(columns)


def version_run(version: Any) -> dict | None:
    """The tracking run of the job that produced ``version`` (its lineage's ``job_id``):
    ``{"run_id", "experiment", "name", "params"}``, or None when it has none (registered
    from a kernel without a job, or the run is gone)."""
    job_id = (version.lineage or {}).get("job_id")
    if not isinstance(job_id, str) or not job_id:
        return None
    quoted = job_id.replace("\\", "\\\\").replace("'", "\\'")
    found, _ = search_runs(filter=f"attributes.job_id = '{quoted}'")
    top = [r for r in found if r.child is None] or found
    if not top:
        return None
    run = top[0]
    return {"run_id": run.run_id, "experiment": run.experiment, "name": run.name, "params": dict(run.params or {})}
