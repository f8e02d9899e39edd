"""The workspace: one folder of job files and one store that every process shares."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, delete, event, func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .. import status as st
from ..config import database_url, workspace_home
from ..errors import JobNotFoundError, KFJupyterError
from ..files import private_file
from .models import Base, ChildRecord, JobRecord, as_utc, utcnow
from .runs import RunRecord


class ChildNotFoundError(KFJupyterError, LookupError):
    """A job has no child task by that name."""


@dataclass
class Workspace:
    home: Path
    engine: Engine

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(readonly=True), expire_on_commit=False)
        self._tables: set[str] = set()
        self._tables_lock = threading.Lock()

    def ensure_tables(self, *tables: Table) -> None:
        """Create the capability tables ``tables`` if this workspace lacks them (once per
        process). A capability calls it before it first uses its own tables."""
        missing = [t for t in tables if t.name not in self._tables]
        if not missing:
            return
        with self._tables_lock:
            missing = [t for t in missing if t.name not in self._tables]
            if missing:
                _create_tables(self.engine, missing)
                self._tables.update(t.name for t in missing)

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
            _stamp(record, fields, st.TERMINAL)
        return record

    def end_job(self, job_id: str, status: str, **fields: Any) -> JobRecord | None:
        """End an active job with ``status``: the record, or None if it had ended already
        (so of several processes that see the same end, one acts on it)."""
        with self.session() as s, s.begin():
            record = s.get(JobRecord, job_id, with_for_update=True)
            if record is None:
                raise JobNotFoundError(f"no job {job_id!r} in the workspace at {self.home}")
            if record.status in st.TERMINAL:
                return None
            _stamp(record, {"status": status, **fields}, st.TERMINAL)
        return record

    def delete_job(self, job_id: str) -> None:
        """Delete a job's record and its children's (its folder is the caller's to remove)."""
        with self.session() as s, s.begin():
            record = s.get(JobRecord, job_id)
            if record is not None:
                s.delete(record)
            s.execute(delete(ChildRecord).where(ChildRecord.job_id == job_id))
            s.execute(delete(RunRecord).where(RunRecord.job_id == job_id))

    # -- child tasks -----------------------------------------------------------
    def list_children(self, job_id: str, kind: str | None = None) -> list[ChildRecord]:
        """The children of one job, in their order."""
        query = select(ChildRecord).where(ChildRecord.job_id == job_id)
        if kind:
            query = query.where(ChildRecord.kind == kind)
        with self.reader() as s:
            return list(s.scalars(query.order_by(ChildRecord.position, ChildRecord.name)))

    def get_child(self, job_id: str, name: str) -> ChildRecord:
        with self.reader() as s:
            record = s.get(ChildRecord, (job_id, name))
        if record is None:
            raise ChildNotFoundError(f"job {job_id!r} has no child task {name!r}")
        return record

    def update_child(self, job_id: str, name: str, attrs: dict[str, Any] | None = None, **fields: Any) -> ChildRecord:
        """Change a child's fields (``attrs``: keys to set in its ``attrs``, the others
        kept); moving to Running stamps ``started_at``, to an end state ``finished_at``
        (unless given)."""
        with self.session() as s, s.begin():
            record = s.get(ChildRecord, (job_id, name), with_for_update=True)
            if record is None:
                raise ChildNotFoundError(f"job {job_id!r} has no child task {name!r}")
            if attrs:
                fields["attrs"] = {**(record.attrs or {}), **attrs}
            _stamp(record, fields, st.CHILD_TERMINAL)
        return record

    def last_child(self, kind: str, job_name: str, name: str, statuses: tuple[str, ...],
                   exclude_job: str | None = None, notebook: str | None = None) -> list[ChildRecord]:  # fmt: skip
        """The children ``name`` of the jobs of ``kind`` named ``job_name`` started from
        ``notebook`` (None: from no notebook) that ended in one of ``statuses``, the latest
        first (a pipeline's step in earlier runs)."""
        same_notebook = JobRecord.notebook.is_(None) if notebook is None else JobRecord.notebook == notebook
        query = (
            select(ChildRecord)
            .join(JobRecord, JobRecord.id == ChildRecord.job_id)
            .where(JobRecord.kind == kind, JobRecord.name == job_name, same_notebook, ChildRecord.name == name,
                   ChildRecord.status.in_(statuses))
            .order_by(ChildRecord.finished_at.desc())
        )  # fmt: skip
        if exclude_job:
            query = query.where(ChildRecord.job_id != exclude_job)
        with self.reader() as s:
            return list(s.scalars(query.limit(20)))

    def end_children(self, job_id: str, status: str, error: str | None = None) -> None:
        """End every child of the job still Pending or Running with ``status`` (what nothing
        runs any more: its parent was cancelled and its objects are gone)."""
        with self.session() as s, s.begin():
            for record in s.scalars(select(ChildRecord).where(ChildRecord.job_id == job_id)):
                if record.status not in st.CHILD_TERMINAL:
                    _stamp(record, {"status": status, "error": record.error or error}, st.CHILD_TERMINAL)

    def sync_children(self, job_id: str, rows: list[dict[str, Any]]) -> None:
        """Make the job's children say what ``rows`` say (one dict of ChildRecord fields
        per child, keyed by ``name``): new ones are added, changed ones updated. For
        engines that learn their children's states from elsewhere (a study's journal,
        KFP, Katib)."""
        if not rows:
            return
        from sqlalchemy.exc import IntegrityError

        try:
            self._sync_children(job_id, rows)
        except IntegrityError:  # another process added the same new child meanwhile (PostgreSQL)
            self._sync_children(job_id, rows)

    def _sync_children(self, job_id: str, rows: list[dict[str, Any]]) -> None:
        names = [row["name"] for row in rows]
        with self.session() as s, s.begin():
            query = select(ChildRecord).where(ChildRecord.job_id == job_id, ChildRecord.name.in_(names))
            current = {c.name: c for c in s.scalars(query)}
            for row in rows:
                record = current.get(row["name"])
                if record is None:
                    s.add(ChildRecord(job_id=job_id, **row))
                    continue
                for key, value in row.items():
                    if not _same(getattr(record, key), value):
                        setattr(record, key, value)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, datetime) and isinstance(new, datetime):
        return as_utc(old) == as_utc(new)
    return old == new


def _stamp(record, fields: dict[str, Any], terminal) -> None:
    """Apply ``fields``; a move to Running stamps ``started_at``, to a state of ``terminal``
    ``finished_at`` (unless the fields give them)."""
    new_status = fields.get("status")
    if new_status == st.RUNNING and record.started_at is None and "started_at" not in fields:
        record.started_at = utcnow()
    if new_status in terminal and record.finished_at is None and "finished_at" not in fields:
        record.finished_at = utcnow()
    for key, value in fields.items():
        setattr(record, key, value)


_lock = threading.Lock()
_cache: dict[tuple[str, str], Workspace] = {}


def forget_workspaces() -> None:
    """In a forked child: drop the parent's workspaces without closing their connections
    (they are the parent's); the next ``get_workspace()`` opens its own."""
    with _lock:
        for ws in list(_cache.values()):
            ws.engine.dispose(close=False)
        _cache.clear()


try:  # JSON columns read back: orjson decodes several times faster (a search over thousands of runs)
    from orjson import JSONDecodeError as _OrjsonError
    from orjson import loads as _orjson_loads

    def _json_loads(text):
        try:
            return _orjson_loads(text)
        except _OrjsonError:  # what json.dumps writes and orjson refuses: NaN, Infinity (a diverged loss)
            return json.loads(text)
except ImportError:  # pragma: no cover
    from json import loads as _json_loads


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
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                private_file(Path(url[len("sqlite:///"):]))  # SQLite gives its -wal and -shm files its mode
            engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {},
                                   json_deserializer=_json_loads)  # fmt: skip
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_connect)
                event.listen(engine, "begin", _sqlite_begin)
            _create_tables(engine, CORE_TABLES)
            ws = _cache[(str(home), url)] = Workspace(home, engine)
            ws._tables.update(t.name for t in CORE_TABLES)
        return ws


#: Key of the PostgreSQL advisory lock that serialises the creation of the tables.
_SCHEMA_LOCK = 0x6B666A75  # "kfju"


#: The store's own tables; capabilities create theirs with ``Workspace.ensure_tables``.
CORE_TABLES = (JobRecord.__table__, ChildRecord.__table__, RunRecord.__table__)


def _create_tables(engine: Engine, tables) -> None:
    """Create the missing ``tables``, and the columns a newer kfjupyter added to existing
    ones (nullable columns only: the store's schema only ever grows). Processes opening a
    fresh PostgreSQL database at once (a supervisor, its steps, the server …) would race
    on CREATE TABLE, so there they take turns under an advisory lock held for the
    transaction (DDL is transactional)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
        Base.metadata.create_all(conn, tables=list(tables))
        inspector = inspect(conn)
        for table in tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable:
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')


def as_aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return None if value is None else as_utc(value)
