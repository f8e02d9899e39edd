"""SQLAlchemy models of the workspace store."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class JobRecord(Base):
    """One long-running thing (training job today; tuning, pipelines … later)."""

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


class PipelineStepRecord(Base):
    """One step of one pipeline run: its state, and why it was (not) taken from the cache.

    ``fingerprint`` is what the step cache keys on: ``{"program": sha256 of the step's
    program, "inputs": {name: content hash}, "parameters": {name: value}}``;
    ``outputs`` the content hashes of the values it passed on (``{name: hash}``);
    ``source_run`` the run whose results a cached step reused.
    """

    __tablename__ = "pipeline_steps"

    run_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(63), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), index=True)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    cache_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    fingerprint: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    outputs: Mapped[dict] = mapped_column(JSON, default=dict)
    source_run: Mapped[str | None] = mapped_column(String(63), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_dict(self) -> dict:
        """The step as the run's ``steps`` list shows it (JSON-ready, times in UTC)."""
        start = as_utc(self.started_at) if self.started_at else None
        end = as_utc(self.finished_at) if self.finished_at else None
        upto = end or (utcnow() if self.status == "Running" else None)  # a running step: so far
        return {
            "name": self.name,
            "status": self.status,
            "cached": bool(self.cached),
            "cache_reason": self.cache_reason or "",
            "started_at": start.isoformat() if start else None,
            "finished_at": end.isoformat() if end else None,
            "duration_s": round((upto - start).total_seconds(), 3) if start and upto else None,
            "error": self.error,
            "source_run": self.source_run,
        }
