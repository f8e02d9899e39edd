"""SQLAlchemy models of the workspace store's core: jobs and their child tasks.

Capabilities keep their own tables on the same :class:`Base` (the registry's models,
the pipeline step cache …) and create them on first use (``Workspace.ensure_tables``);
this module knows none of them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .. import status as st


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


class Base(DeclarativeBase):
    pass


class JobRecord(Base):
    """One long-running thing: a training job, a study, a pipeline run, a notebook run, a
    sweep, an endpoint. ``spec`` is its kind's typed spec as JSON; ``backend_info`` what
    its engine needs to find it again; ``end_reason`` why it ended when that is more than
    its status says (a lost supervisor: ``{"kind": "supervisor_lost", "signal": 9, …}``)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    kind: Mapped[str] = mapped_column(String(20), index=True, default="train")
    backend: Mapped[str] = mapped_column(String(20), default="local")
    status: Mapped[str] = mapped_column(String(20), index=True)
    workers: Mapped[int] = mapped_column(Integer, default=1)
    spec: Mapped[dict] = mapped_column(JSON, default=dict)
    backend_info: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    end_reason: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    notebook: Mapped[str | None] = mapped_column(Text, nullable=True)
    cell: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_dict(self) -> dict:
        """The record as JSON-ready values; times in UTC with their offset."""
        return {
            c.name: (as_utc(v).isoformat() if isinstance(v := getattr(self, c.name), datetime) else v)
            for c in self.__table__.columns
        }


class ChildRecord(Base):
    """One child task of a job: a pipeline step, a trial of a study, a run of a sweep, a
    server of an endpoint. Every kind has the same shape — parent, name, status, times,
    a log channel (``kind/name``) — and its own details in ``attrs``. A child that is a
    job of its own (a sweep's run) names it in ``job_ref``.

    Statuses are the job states plus Skipped, Cached and Pruned (:data:`~kfjupyter.status.CHILD_STATES`).
    """

    __tablename__ = "job_children"

    job_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), index=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_ref: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    attrs: Mapped[dict] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def channel(self) -> str:
        """The log channel of this child (see :func:`kfjupyter.runtime.engine.child_channel`)."""
        return f"{self.kind}/{self.name}"

    def duration(self) -> float | None:
        start = as_utc(self.started_at) if self.started_at else None
        end = as_utc(self.finished_at) if self.finished_at else None
        upto = end or (utcnow() if self.status == st.RUNNING else None)  # a running child: so far
        return round((upto - start).total_seconds(), 3) if start and upto else None

    def to_dict(self) -> dict:
        """The child as every client shows it (JSON-ready, times in UTC)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "position": self.position,
            "status": self.status,
            "message": self.message,
            "error": self.error,
            "job_ref": self.job_ref,
            "channel": self.channel,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration(),
            "attrs": dict(self.attrs or {}),
        }
