"""The workspace: one folder of job files and one store that every process shares."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .. import status as st
from ..config import database_url, workspace_home
from ..errors import JobNotFoundError
from .models import Base, JobRecord, PipelineStepRecord, as_utc, utcnow


@dataclass
class Workspace:
    home: Path
    engine: Engine

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(readonly=True), expire_on_commit=False)

    # -- files ---------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.home / "jobs" / job_id

    # -- records -------------------------------------------------------------
    def session(self) -> Session:
        """A session for work that writes."""
        return self._sessions()

    def reader(self) -> Session:
        """A session for reading only: on SQLite it never waits for a writer (WAL)."""
        return self._readers()

    def add_job(self, record: JobRecord) -> JobRecord:
        with self.session() as s, s.begin():
            s.add(record)
        return record

    def get_job(self, job_id: str) -> JobRecord:
        with self.reader() as s:
            record = s.get(JobRecord, job_id)
        if record is None:
            raise JobNotFoundError(f"no job {job_id!r} in the workspace at {self.home}")
        return record

    @staticmethod
    def _filtered(query, kind: str | None, status: str | None):
        if kind:
            query = query.where(JobRecord.kind == kind)
        if status:
            query = query.where(JobRecord.status == status)
        return query

    def count_jobs(self, kind: str | None = None, status: str | None = None) -> int:
        with self.reader() as s:
            return s.scalar(self._filtered(select(func.count()).select_from(JobRecord), kind, status))

    def list_jobs(
        self,
        kind: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        query = self._filtered(select(JobRecord), kind, status)
        query = query.order_by(JobRecord.created_at.desc()).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.reader() as s:
            return list(s.scalars(query))

    def update_job(self, job_id: str, only_if_active: bool = False, **fields: Any) -> JobRecord:
        """Change a job's fields; with ``only_if_active`` a finished job is left as it is.

        Moving to a terminal status stamps ``finished_at``, moving to Running stamps
        ``started_at``.
        """
        with self.session() as s, s.begin():
            record = s.get(JobRecord, job_id, with_for_update=True)
            if record is None:
                raise JobNotFoundError(f"no job {job_id!r} in the workspace at {self.home}")
            if only_if_active and record.status in st.TERMINAL:
                return record
            new_status = fields.get("status")
            if new_status == st.RUNNING and record.started_at is None:
                record.started_at = utcnow()
            if new_status in st.TERMINAL and record.finished_at is None:
                record.finished_at = utcnow()
            for key, value in fields.items():
                setattr(record, key, value)
        return record

    # -- pipeline steps --------------------------------------------------------
    def add_pipeline_steps(self, records: list[PipelineStepRecord]) -> None:
        with self.session() as s, s.begin():
            s.add_all(records)

    def list_pipeline_steps(self, run_id: str) -> list[PipelineStepRecord]:
        """The steps of one pipeline run, in the pipeline's order."""
        query = (
            select(PipelineStepRecord)
            .where(PipelineStepRecord.run_id == run_id)
            .order_by(PipelineStepRecord.position)
        )
        with self.reader() as s:
            return list(s.scalars(query))

    def update_pipeline_step(self, run_id: str, name: str, **fields: Any) -> PipelineStepRecord:
        """Change a step's fields; moving to Running stamps ``started_at``, to an end state
        ``finished_at`` (unless given)."""
        with self.session() as s, s.begin():
            record = s.get(PipelineStepRecord, (run_id, name), with_for_update=True)
            if record is None:
                raise JobNotFoundError(f"no step {name!r} in pipeline run {run_id!r}")
            new_status = fields.get("status")
            if new_status == st.RUNNING and record.started_at is None and "started_at" not in fields:
                record.started_at = utcnow()
            if new_status in STEP_TERMINAL and record.finished_at is None and "finished_at" not in fields:
                record.finished_at = utcnow()
            for key, value in fields.items():
                setattr(record, key, value)
        return record

    def last_pipeline_step(self, pipeline: str, step: str, exclude_run: str | None = None) -> PipelineStepRecord | None:
        """The latest step ``step`` of pipeline ``pipeline`` that ran or was cached (for
        saying why the cache did not answer: what changed since)."""
        query = (
            select(PipelineStepRecord)
            .where(
                PipelineStepRecord.pipeline == pipeline,
                PipelineStepRecord.name == step,
                PipelineStepRecord.status.in_(("Succeeded", "Cached")),
                PipelineStepRecord.fingerprint.is_not(None),
            )
            .order_by(PipelineStepRecord.finished_at.desc())
        )
        if exclude_run:
            query = query.where(PipelineStepRecord.run_id != exclude_run)
        with self.reader() as s:
            return s.scalars(query.limit(1)).first()

    def delete_pipeline_steps(self, run_id: str) -> None:
        with self.session() as s, s.begin():
            for record in s.scalars(select(PipelineStepRecord).where(PipelineStepRecord.run_id == run_id)):
                s.delete(record)


#: Step states that end a step (the run's states plus Skipped and Cached).
STEP_TERMINAL = frozenset(st.TERMINAL | {"Skipped", "Cached"})

_lock = threading.Lock()
_cache: dict[tuple[str, str], Workspace] = {}


def _sqlite_connect(dbapi_connection, _record) -> None:
    # Several processes (kernel, supervisor, CLI, server) write the same file: WAL, a
    # generous busy timeout, and transactions that take the write lock up front
    # (BEGIN IMMEDIATE), so a read-then-write never fails with a stale snapshot; sessions
    # from Workspace.reader() only read, and begin deferred.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection) -> None:
    if connection.get_execution_options().get("readonly"):
        connection.exec_driver_sql("BEGIN")  # deferred: a reader never queues behind a writer
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_workspace() -> Workspace:
    """The workspace of this process's environment (cached per home and database URL)."""
    home = workspace_home()
    url = database_url(home)
    with _lock:
        ws = _cache.get((str(home), url))
        if ws is None:
            engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_connect)
                event.listen(engine, "begin", _sqlite_begin)
            _create_tables(engine)
            ws = _cache[(str(home), url)] = Workspace(home, engine)
        return ws


#: Key of the PostgreSQL advisory lock that serialises the creation of the tables.
_SCHEMA_LOCK = 0x6B666A75  # "kfju"


def _create_tables(engine: Engine) -> None:
    """Create the missing tables. Processes opening a fresh PostgreSQL database at once
    (a supervisor, its steps, the server …) would race on CREATE TABLE, so there they
    take turns under an advisory lock held for the transaction (DDL is transactional)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
        Base.metadata.create_all(conn)


def as_aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return None if value is None else as_utc(value)
