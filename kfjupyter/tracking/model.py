"""Runs: every job (but an endpoint) and every trial and pipeline step is a run.

A :class:`Run` is read from the job store: the job's (or child's) record for status,
times, name and spec, and its :class:`~kfjupyter.store.runs.RunRecord` for what tracking
adds. Its params are derived, not copied: the options of its spec, the parameters of a
pipeline or notebook run, the tuned params of a trial, plus the recorded ones (the
scalars a cell read, ``kfjupyter.log_params``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, case, func, or_, select, true, type_coerce
from sqlalchemy.orm import aliased

from ..errors import KFJupyterError
from ..jobs import default_experiment
from ..store.models import ChildRecord, JobRecord, as_utc
from ..store.runs import RunRecord, run_id, split_run_id
from ..store.workspace import get_workspace
from .search import Clause, Key

#: Kinds of jobs that are not runs (an endpoint serves; it trains nothing).
NOT_RUNS = ("endpoint",)
#: Kinds of child tasks that are runs of their own (a sweep's runs are jobs: runs already).
CHILD_RUNS = ("trial", "step")
#: Fields of a spec that are not params (what the job is, where its files are, long lists).
NOT_PARAMS = {"kind", "name", "backend", "pipeline", "space", "grid", "runs", "env", "workdir", "cwd", "notebook",
              "sweep_id", "index", "resume", "namespace", "parameters", "sweep"}  # fmt: skip


class RunNotFoundError(KFJupyterError, LookupError):
    """No run by that id in the workspace."""


def spec_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The params a job's spec says: its scalar options (None left out) and the parameters
    of a pipeline or notebook run (a sweep's swept lists as text)."""
    out = {k: v for k, v in spec.items() if k not in NOT_PARAMS and isinstance(v, (bool, int, float, str))}
    out.update(spec.get("parameters") or {})
    for name, values in (spec.get("sweep") or {}).items():
        out[name] = ",".join(map(str, values))
    return out


@dataclass
class Run:
    """One run: a job, or a trial / step of one (``child``)."""

    run_id: str
    job_id: str
    child: str | None
    experiment: str
    name: str
    kind: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    parent_run: str | None = None
    source_run: str | None = None
    notebook: str | None = None
    cell: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    backend: str = "local"
    models: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((as_utc(self.finished_at) - as_utc(self.started_at)).total_seconds(), 3)
        return None

    def value(self, key: Key) -> Any:
        """The run's value of a search key (``metrics.loss``, ``params.lr`` …), or None."""
        if key.kind == "metrics":
            return self.metrics.get(key.name)
        if key.kind == "params":
            return self.params.get(key.name)
        if key.kind == "tags":
            return self.tags.get(key.name)
        value = getattr(self, key.name, None)
        return as_utc(value).isoformat() if isinstance(value, datetime) else value

    @property
    def job(self):
        """The job of this run (a trial's or step's: its study's or pipeline run's)."""
        from .. import jobs

        return jobs.get(self.job_id)

    def to_dict(self) -> dict[str, Any]:
        """The run as every client shows it (JSON-ready)."""
        def iso(value):
            return as_utc(value).isoformat() if value else None

        return {
            "run_id": self.run_id, "job_id": self.job_id, "child": self.child, "experiment": self.experiment,
            "name": self.name, "kind": self.kind, "status": self.status, "params": dict(self.params),
            "metrics": dict(self.metrics), "tags": dict(self.tags), "env": dict(self.env),
            "parent_run": self.parent_run, "source_run": self.source_run, "notebook": self.notebook,
            "cell": self.cell, "created_at": iso(self.created_at), "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at), "duration_s": self.duration_s, "backend": self.backend,
            "models": list(self.models),
        }  # fmt: skip


def _raw(column):
    """A time column as the database gives it (SQLite: ISO text), parsed by :func:`_when`
    with ``datetime.fromisoformat`` rather than SQLAlchemy's per-value regular expression."""
    return type_coerce(column, String)


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


_JOB_COLUMNS = (JobRecord.id, JobRecord.name, JobRecord.kind, JobRecord.status, JobRecord.spec, JobRecord.notebook,
                _raw(JobRecord.created_at), _raw(JobRecord.started_at), _raw(JobRecord.finished_at),
                JobRecord.backend)  # fmt: skip
_RUN_COLUMNS = (RunRecord.experiment, RunRecord.params, RunRecord.tags, RunRecord.metrics,
                RunRecord.source_run)  # fmt: skip


def _job_run(row) -> Run:
    (jid, name, kind, status, spec, notebook, created, started, finished, backend,
     experiment, params, tags, metrics, source) = row  # fmt: skip
    spec = spec or {}
    return Run(
        run_id=jid, job_id=jid, child=None, experiment=experiment or default_experiment(notebook), name=name,
        kind=kind, status=status, params={**spec_params(spec), **(params or {})}, metrics=dict(metrics or {}),
        tags=dict(tags or {}), parent_run=spec.get("sweep_id"), source_run=source,
        notebook=notebook, created_at=_when(created), started_at=_when(started), finished_at=_when(finished),
        backend=backend,
    )  # fmt: skip


def _child_run(row) -> Run:
    (name, ckind, status, attrs, started, finished, jid, jname, notebook, created, backend,
     experiment, parent_params, params, tags, metrics) = row  # fmt: skip
    attrs = attrs or {}
    own = dict(attrs.get("params") or {}) if ckind == "trial" else {}
    return Run(
        run_id=run_id(jid, name), job_id=jid, child=name, experiment=experiment or default_experiment(notebook),
        name=f"{jname}/{name}" if ckind != "trial" else f"{jname} trial {name}", kind=ckind, status=status,
        params={**(parent_params or {}), **own, **(params or {})}, metrics=dict(metrics or {}),
        tags=dict(tags or {}), parent_run=jid, notebook=notebook, created_at=_when(started or created),
        started_at=_when(started), finished_at=_when(finished), backend=backend,
    )  # fmt: skip


#: Comparators whose numeric clauses the database can rule runs out by.
_SQL_COMPARATORS = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "=": "__eq__"}
#: JSON types whose values compare as numbers (the grammar takes a boolean as 0 or 1).
_SQL_NUMERIC = ("integer", "real", "true", "false")


def _json_path(*keys: str) -> str | None:
    """SQLite's JSON path of nested keys (None for a key it cannot quote: a quote, a
    backslash, a NUL, which ends SQLite's path)."""
    if any(c in k for k in keys for c in '"\\\x00'):
        return None
    return "$." + ".".join(f'"{k}"' for k in keys)


def _may_match(clause: Clause, column, path: str):
    """SQL: whether the value at ``path`` of the JSON ``column`` may match ``clause``
    (None: a clause the database does not decide)."""
    kind = func.json_type(column, path)
    if clause.op in _SQL_COMPARATORS and isinstance(clause.value, float):
        compared = getattr(func.json_extract(column, path), _SQL_COMPARATORS[clause.op])(clause.value)
        return or_(and_(kind.in_(_SQL_NUMERIC), compared), kind == "text")  # text: the grammar's own rules decide
    if clause.op == "IS NOT NULL":
        return and_(kind.is_not(None), kind != "null")
    return None


def sql_prefilter(clauses: list[Clause], dialect: str, metrics, params=None, spec=None) -> list:
    """SQL conditions that drop the runs a filter's clauses rule out and keep every run
    they may match: numeric comparisons (and IS NOT NULL) of a metric (the ``metrics``
    column) and, for jobs, of a param (the ``params`` column, which wins, else the
    ``spec``'s parameters or options, as :func:`spec_params` reads them). What the database
    cannot decide (a text value, a NaN that makes a column's JSON invalid, a swept list) it
    keeps; :func:`~.search.matches` still judges every run kept. SQLite only
    (``json_extract``); elsewhere nothing is pushed down."""
    if dialect != "sqlite":
        return []
    out = []
    for clause in clauses:
        path = _json_path(clause.key.name)
        if path is None:
            continue
        decided = None
        if clause.key.kind == "metrics":
            decided, valid = _may_match(clause, metrics, path), func.json_valid(metrics) == 1
        elif clause.key.kind == "params" and params is not None:
            own = _may_match(clause, params, path)
            if own is not None:
                inherited = or_(_may_match(clause, spec, _json_path("parameters", clause.key.name)),
                                _may_match(clause, spec, path),
                                func.json_type(spec, _json_path("sweep", clause.key.name)).is_not(None))  # fmt: skip
                decided = case((func.json_type(params, path).is_not(None), own), else_=inherited)
                valid = and_(func.json_valid(params) == 1, func.json_valid(spec) == 1)
        if decided is not None:
            out.append(case((valid, decided), else_=true()))
    return out


def load_runs(experiment: str | None = None, kinds: tuple[str, ...] | None = None, children: bool = True,
              ids: list[str] | None = None, kind: str | None = None, clauses: list[Clause] = ()) -> list[Run]:  # fmt: skip
    """The runs of the workspace (of ``experiment``; of the job ``kinds``; ``ids`` only; of
    the job or child ``kind``), newest first, in two queries (jobs, then child tasks).
    ``clauses`` (of a filter) let the database leave out runs they rule out
    (:func:`sql_prefilter`); the runs returned still have to be matched against them."""
    ws = get_workspace()
    dialect = ws.engine.dialect.name
    job_ids = child_ids = None
    if ids is not None:
        parsed = [split_run_id(i) for i in ids]
        job_ids = [j for j, c in parsed if c is None]
        child_ids = [(j, c) for j, c in parsed if c is not None]
    out: list[Run] = []
    with ws.reader() as s:
        query = (select(*_JOB_COLUMNS, *_RUN_COLUMNS).outerjoin(RunRecord, RunRecord.id == JobRecord.id)
                 .where(JobRecord.kind.not_in(NOT_RUNS)))  # fmt: skip
        if kinds:
            query = query.where(JobRecord.kind.in_(kinds))
        if kind is not None:
            query = query.where(JobRecord.kind == kind)
        query = query.where(*sql_prefilter(list(clauses), dialect, RunRecord.metrics, RunRecord.params, JobRecord.spec))
        if job_ids is not None:
            query = query.where(JobRecord.id.in_(job_ids))
        if experiment is not None:
            query = query.where(or_(RunRecord.experiment == experiment, RunRecord.id.is_(None)))
        if job_ids is None or job_ids:
            out += [_job_run(row) for row in s.execute(query.order_by(JobRecord.created_at.desc()))]
        if children and (child_ids is None or child_ids):
            parent, own = aliased(RunRecord), aliased(RunRecord)
            query = (
                select(ChildRecord.name, ChildRecord.kind, ChildRecord.status, ChildRecord.attrs,
                       _raw(ChildRecord.started_at), _raw(ChildRecord.finished_at), JobRecord.id, JobRecord.name,
                       JobRecord.notebook, _raw(JobRecord.created_at), JobRecord.backend, parent.experiment,
                       parent.params, own.params, own.tags, own.metrics)
                .join(JobRecord, JobRecord.id == ChildRecord.job_id)
                .outerjoin(parent, parent.id == ChildRecord.job_id)
                .outerjoin(own, and_(own.job_id == ChildRecord.job_id, own.child == ChildRecord.name))
                .where(ChildRecord.kind.in_(CHILD_RUNS), *sql_prefilter(list(clauses), dialect, own.metrics))
            )  # fmt: skip
            if kind is not None:
                query = query.where(ChildRecord.kind == kind)
            if experiment is not None:
                query = query.where(or_(parent.experiment == experiment, parent.id.is_(None)))
            if child_ids is not None:
                query = query.where(or_(*(and_(ChildRecord.job_id == j, ChildRecord.name == c) for j, c in child_ids)))
            out += [_child_run(row) for row in s.execute(query.order_by(JobRecord.created_at.desc(), ChildRecord.position))]
    if experiment is not None:
        out = [r for r in out if r.experiment == experiment]
    return out


def get_run(ref: Any) -> Run:
    """A run by id (``JOB`` or ``JOB.CHILD``), or of a :class:`~kfjupyter.jobs.Job`, a
    :class:`Run` or a model version (the run that made it)."""
    rid = as_run_id(ref)
    found = load_runs(ids=[rid])
    if not found:
        raise RunNotFoundError(f"no run {rid!r} in the workspace at {get_workspace().home}")
    run = found[0]
    run.models = models_of([run.job_id]).get(run.job_id, [])
    with get_workspace().reader() as s:  # what a listing leaves out: the environment, the cell
        record = s.get(RunRecord, rid)
        run.env = dict(record.env or {}) if record is not None else {}
        run.cell = s.scalar(select(JobRecord.cell).where(JobRecord.id == run.job_id)) if run.child is None else None
    return run


def as_run_id(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    if isinstance(ref, Run):
        return ref.run_id
    if isinstance(getattr(ref, "id", None), str) and hasattr(ref, "record"):  # a Job
        return ref.id
    lineage = getattr(ref, "lineage", None)  # a model version: the run that made it
    if isinstance(lineage, dict) and lineage.get("job_id"):
        return str(lineage["job_id"])
    raise TypeError(f"not a run: {ref!r} (give a run id, a Job or a Run)")


def models_of(job_ids: list[str]) -> dict[str, list[str]]:
    """The model versions each job registered (``name/version``): lineage from run to model."""
    from ..registry.tables import ModelVersionRow, RegisteredModelRow

    ws = get_workspace()
    ws.ensure_tables(RegisteredModelRow.__table__, ModelVersionRow.__table__)
    out: dict[str, list[str]] = {}
    if not job_ids:
        return out
    with ws.reader() as s:
        query = (select(ModelVersionRow.job_id, RegisteredModelRow.name, ModelVersionRow.number)
                 .join(RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id)
                 .where(ModelVersionRow.job_id.in_(job_ids)).order_by(ModelVersionRow.created_at))  # fmt: skip
        for jid, name, number in s.execute(query):
            out.setdefault(jid, []).append(f"{name}/{number}")
    return out


def history(run: Run) -> list[dict]:
    """Every metric row of the run, in the order reported (``rank``, ``step``, ``time``,
    values), read from its job's files: the curves of :func:`kfjupyter.compare`."""
    from ..runtime.detached import DetachedEngine
    from ..runtime.logs import read_records

    job = run.job
    engine = job.engine
    if isinstance(engine, DetachedEngine) and job.record.backend_info:
        files = engine.run_metric_files(job.id, Path(job.record.backend_info["job_dir"])).get(run.child, [])
        return [{"rank": rank, **r} for rank, path in files for r in read_records(path)]
    return job.metrics() if run.child is None else []


def experiments() -> list[dict[str, Any]]:
    """The experiments of the workspace, with how many runs each has and the latest's time."""
    counts: dict[str, dict[str, Any]] = {}
    for run in load_runs(children=False):
        entry = counts.setdefault(run.experiment, {"name": run.experiment, "runs": 0, "last_run_at": None})
        entry["runs"] += 1
        when = as_utc(run.created_at).isoformat() if run.created_at else None
        if when and (entry["last_run_at"] is None or when > entry["last_run_at"]):
            entry["last_run_at"] = when
    return sorted(counts.values(), key=lambda e: e["last_run_at"] or "", reverse=True)
