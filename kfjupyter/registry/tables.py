"""SQLAlchemy tables of the embedded model registry, in the workspace database.

They live on the workspace store's ``Base``, in the workspace database; the registry
creates them on first use (``Workspace.ensure_tables``: the store itself knows no
capability's tables). The shapes follow Kubeflow Model
Registry: a RegisteredModel has ModelVersions, a version has ModelArtifacts, models and
versions are LIVE or ARCHIVED and carry custom properties. Two things Kubeflow's
registry lacks are added: aliases, and the history of every alias move.

Versions are numbered by a counter on the model's row (``latest_version``), bumped in
the same transaction that inserts the version, under the row's write lock; a unique
constraint on (model, number) backs it up.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..store.models import Base, utcnow

LIVE = "LIVE"
ARCHIVED = "ARCHIVED"
STATES = (LIVE, ARCHIVED)


class RegisteredModelRow(Base):
    __tablename__ = "registry_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=LIVE, index=True)
    #: the highest version number handed out (the counter that numbers versions)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    custom_properties: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ModelVersionRow(Base):
    __tablename__ = "registry_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "number", name="uq_registry_version_number"),
        UniqueConstraint("model_id", "name", name="uq_registry_version_name"),
        Index("ix_registry_versions_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registry_models.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    #: the version's name in Kubeflow's sense: its number as text unless a label was given
    name: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default=LIVE, index=True)
    framework: Mapped[str] = mapped_column(String(32), index=True)
    framework_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    author: Mapped[str | None] = mapped_column(String(255), nullable=True)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    custom_properties: Mapped[dict] = mapped_column(JSON, default=dict)
    #: where it came from: job id/kind/name, study, pipeline run, notebook, cell
    lineage: Mapped[dict] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelArtifactRow(Base):
    __tablename__ = "registry_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("registry_versions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    format: Mapped[str] = mapped_column(String(32))
    format_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the file a loader opens, relative to the artifact's folder
    main_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=LIVE)
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelMetricRow(Base):
    """One metric of a version: a row each, so metric ranges are indexed queries."""

    __tablename__ = "registry_metrics"
    __table_args__ = (Index("ix_registry_metrics_key_value", "key", "value"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("registry_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class AliasRow(Base):
    __tablename__ = "registry_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("registry_models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(63), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("registry_versions.id"), index=True)
    updated_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AliasEventRow(Base):
    """One alias move: set (from None), moved (from → to) or removed (to None)."""

    __tablename__ = "registry_alias_events"
    __table_args__ = (Index("ix_registry_alias_events_model_alias", "model_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registry_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(63))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    who: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


TABLES = [
    t.__table__
    for t in (RegisteredModelRow, ModelVersionRow, ModelArtifactRow, ModelMetricRow, AliasRow, AliasEventRow)
]
