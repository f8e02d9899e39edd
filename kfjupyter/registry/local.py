"""The embedded registry: tables in the workspace database (SQLite or PostgreSQL).

Numbering is atomic: a new version takes ``latest_version + 1`` from its model's row
while holding that row's write lock (``BEGIN IMMEDIATE`` on SQLite takes the database's
write lock up front; PostgreSQL's ``SELECT … FOR UPDATE`` the row's), and the bump and
the insert commit together, so concurrent kernels get 1, 2, 3 … with no gap or
duplicate. The first registration of a model may race another's insert of the same name:
the loser's unique-constraint error is retried, and it then finds the row.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from ..store.models import utcnow
from ..store.workspace import Workspace, as_aware
from .artifacts import ArtifactStore
from .base import MetricRanges, Registry, VersionSpec, current_user
from .entities import (
    ARCHIVED,
    LIVE,
    AliasEvent,
    ModelArtifact,
    ModelVersion,
    Page,
    Ref,
    RegisteredModel,
    check_alias,
    check_model_name,
    parse_ref,
)
from .errors import InvalidOptionError, ModelNotFoundError, RegistryConflictError
from .tables import (
    TABLES,
    AliasEventRow,
    AliasRow,
    ModelArtifactRow,
    ModelMetricRow,
    ModelVersionRow,
    RegisteredModelRow,
)

RM, MV, MA, MM, AL, AE = RegisteredModelRow, ModelVersionRow, ModelArtifactRow, ModelMetricRow, AliasRow, AliasEventRow


#: retries of a transaction that lost a race (unique violation, serialization failure, lock timeout)
RETRIES = 20


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _check_state(state: str | None) -> str | None:
    if state is not None and state not in (LIVE, ARCHIVED):
        raise InvalidOptionError(f"state {state!r}: LIVE or ARCHIVED")
    return state


class LocalRegistry(Registry):
    kind = "local"

    def __init__(self, workspace: Workspace, store: ArtifactStore):
        super().__init__(store)
        self.ws = workspace
        engine = workspace.engine
        # case-insensitive substring match: SQLite's LIKE already ignores ASCII case (and
        # is twice as fast as SQLAlchemy's lower(…) LIKE lower(…)); PostgreSQL has ILIKE
        if engine.dialect.name == "sqlite":
            self._contains = lambda column, text: column.like(_like(text), escape="\\")
        else:
            self._contains = lambda column, text: column.ilike(_like(text), escape="\\")
        workspace.ensure_tables(*TABLES)  # the registry's own tables, on first use

    def __repr__(self) -> str:
        return f"<LocalRegistry {self.ws.engine.url.render_as_string(hide_password=True)} artifacts={self.store.root_uri}>"

    # -- transactions ----------------------------------------------------------------------
    def _write(self, fn, *args, **kwargs):
        """Run ``fn(session, …)`` in one write transaction, retrying lost races."""
        for attempt in range(RETRIES):
            try:
                with self.ws.session() as s, s.begin():
                    return fn(s, *args, **kwargs)
            except (IntegrityError, DBAPIError) as exc:
                if isinstance(exc, IntegrityError) or _transient(exc):
                    if attempt < RETRIES - 1:
                        time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                        continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- lookups -------------------------------------------------------------------------------
    def _model_row(self, s: Session, name: str, lock: bool = False) -> RegisteredModelRow:
        check_model_name(name)
        query = select(RM).where(RM.name == name)
        if lock:
            query = query.with_for_update()
        row = s.scalar(query)
        if row is None:
            raise ModelNotFoundError(f"no registered model {name!r}")
        return row

    def _version_row(self, s: Session, ref: Ref, lock_model: bool = False) -> tuple[RegisteredModelRow, ModelVersionRow]:
        model = self._model_row(s, ref.model, lock=lock_model)
        if ref.alias:
            row = s.scalar(
                select(MV).join(AL, AL.version_id == MV.id).where(AL.model_id == model.id, AL.alias == ref.alias)
            )
            if row is None:
                raise ModelNotFoundError(f"model {ref.model!r} has no alias {ref.alias!r}")
        elif ref.number is not None:
            row = s.scalar(select(MV).where(MV.model_id == model.id, MV.number == ref.number))
            if row is None:
                raise ModelNotFoundError(f"model {ref.model!r} has no version {ref.number}")
        elif ref.label:
            row = s.scalar(select(MV).where(MV.model_id == model.id, MV.name == ref.label))
            if row is None:
                raise ModelNotFoundError(f"model {ref.model!r} has no version named {ref.label!r}")
        else:
            row = s.scalar(
                select(MV).where(MV.model_id == model.id, MV.state == LIVE).order_by(MV.number.desc()).limit(1)
            )
            if row is None:
                raise ModelNotFoundError(f"model {ref.model!r} has no LIVE version")
        return model, row

    # -- entities ------------------------------------------------------------------------------
    def _versions(self, s: Session, rows: list[ModelVersionRow], names: dict[int, str] | None = None) -> list[ModelVersion]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        if names is None:
            model_ids = {r.model_id for r in rows}
            names = dict(s.execute(select(RM.id, RM.name).where(RM.id.in_(model_ids))).all())
        metrics: dict[int, dict] = defaultdict(dict)
        for vid, key, value in s.execute(select(MM.version_id, MM.key, MM.value).where(MM.version_id.in_(ids))):
            metrics[vid][key] = value
        aliases: dict[int, list[str]] = defaultdict(list)
        for vid, alias in s.execute(select(AL.version_id, AL.alias).where(AL.version_id.in_(ids)).order_by(AL.alias)):
            aliases[vid].append(alias)
        artifacts: dict[int, list[ModelArtifact]] = defaultdict(list)
        for a in s.scalars(select(MA).where(MA.version_id.in_(ids)).order_by(MA.id)):
            artifacts[a.version_id].append(
                ModelArtifact(
                    id=str(a.id), name=a.name, uri=a.uri, sha256=a.sha256, size=a.size, format=a.format,
                    format_version=a.format_version, main_file=a.main_file, state=a.state,
                    properties=dict(a.properties or {}), created_at=as_aware(a.created_at),
                )
            )
        return [
            ModelVersion(
                id=str(r.id), model=names[r.model_id], number=r.number, name=r.name, state=r.state,
                framework=r.framework, framework_version=r.framework_version, description=r.description,
                author=r.author, metrics=metrics[r.id], params=dict(r.params or {}),
                custom_properties=dict(r.custom_properties or {}), lineage=dict(r.lineage or {}),
                aliases=aliases[r.id], artifacts=artifacts[r.id], created_at=as_aware(r.created_at),
                updated_at=as_aware(r.updated_at),
            )
            for r in rows
        ]

    def _models(self, s: Session, rows: list[RegisteredModelRow]) -> list[RegisteredModel]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        aliases: dict[int, dict] = defaultdict(dict)
        for mid, alias, number in s.execute(
            select(AL.model_id, AL.alias, MV.number).join(MV, MV.id == AL.version_id).where(AL.model_id.in_(ids))
        ):
            aliases[mid][alias] = number
        counts: dict[int, int] = defaultdict(int)
        frameworks: dict[int, set] = defaultdict(set)
        for mid, fw, n in s.execute(
            select(MV.model_id, MV.framework, func.count()).where(MV.model_id.in_(ids)).group_by(MV.model_id, MV.framework)
        ):
            counts[mid] += n
            frameworks[mid].add(fw)
        return [
            RegisteredModel(
                id=str(r.id), name=r.name, state=r.state, description=r.description, owner=r.owner,
                latest_version=r.latest_version or None, version_count=counts[r.id],
                aliases=dict(sorted(aliases[r.id].items())), frameworks=sorted(frameworks[r.id]),
                custom_properties=dict(r.custom_properties or {}), created_at=as_aware(r.created_at),
                updated_at=as_aware(r.updated_at),
            )
            for r in rows
        ]

    # -- registering ---------------------------------------------------------------------------
    def _create_version(self, spec: VersionSpec, who: str | None) -> ModelVersion:
        return self._write(self._create_version_tx, spec, who)

    def _create_version_tx(self, s: Session, spec: VersionSpec, who: str | None) -> ModelVersion:
        model = s.scalar(select(RM).where(RM.name == spec.model).with_for_update())
        if model is None:
            model = RM(name=spec.model, owner=spec.author, state=LIVE, latest_version=0, custom_properties={})
            s.add(model)
            s.flush()  # a concurrent first registration makes this fail; _write retries
        elif model.state == ARCHIVED:
            raise RegistryConflictError(f"model {spec.model!r} is archived: restore it before registering versions")
        if spec.label is not None and s.scalar(select(MV.id).where(MV.model_id == model.id, MV.name == spec.label)):
            raise RegistryConflictError(f"model {spec.model!r} already has a version named {spec.label!r}")
        number = (model.latest_version or 0) + 1
        now = utcnow()
        model.latest_version = number
        model.updated_at = now
        row = MV(
            model_id=model.id, number=number, name=spec.label or str(number), state=LIVE, framework=spec.framework,
            framework_version=spec.framework_version, description=spec.description, author=spec.author,
            params=_jsonable(spec.params), custom_properties=_jsonable(spec.custom_properties),
            lineage=spec.lineage, job_id=spec.lineage.get("job_id"), created_at=now, updated_at=now,
        )
        s.add(row)
        s.flush()
        s.add_all(MM(version_id=row.id, key=k, value=v) for k, v in spec.metrics.items())
        s.add_all(
            MA(
                version_id=row.id, name=a.name, uri=a.uri, sha256=a.sha256, size=a.size, format=a.format,
                format_version=a.format_version, main_file=a.main_file, state=LIVE, properties=_jsonable(a.properties),
                created_at=now,
            )
            for a in spec.artifacts
        )
        for alias in spec.aliases:
            self._move_alias(s, model, alias, row, who, "set at registration")
        s.flush()
        return self._versions(s, [row], {model.id: model.name})[0]

    # -- reading -------------------------------------------------------------------------------
    def change_marker(self) -> list:
        """Counts and maxima of the registry's tables in one query: a registration, an
        alias move, an archive or an edit changes one of them."""
        query = select(
            select(func.count(RM.id)).scalar_subquery(),
            select(func.max(RM.updated_at)).scalar_subquery(),
            select(func.count(MV.id)).scalar_subquery(),
            select(func.max(MV.id)).scalar_subquery(),
            select(func.max(MV.updated_at)).scalar_subquery(),
            select(func.max(AE.id)).scalar_subquery(),
        )
        with self.ws.reader() as s:
            row = s.execute(query).one()
        return [v.isoformat() if hasattr(v, "isoformat") else v for v in row]

    def get_model(self, name: str) -> RegisteredModel:
        with self.ws.reader() as s:
            return self._models(s, [self._model_row(s, name)])[0]

    def get_version(self, ref: str, version: int | str | None = None, alias: str | None = None) -> ModelVersion:
        parsed = parse_ref(ref, version, alias)
        with self.ws.reader() as s:
            model, row = self._version_row(s, parsed)
            return self._versions(s, [row], {model.id: model.name})[0]

    def list_models(
        self,
        query: str | None = None,
        *,
        state: str | None = None,
        framework: str | None = None,
        alias: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
        order_by: str = "updated",
        descending: bool = True,
    ) -> Page[RegisteredModel]:
        conditions = []
        if query:
            conditions.append(or_(self._contains(RM.name, query), self._contains(RM.description, query)))
        if _check_state(state):
            conditions.append(RM.state == state)
        if framework:
            conditions.append(RM.id.in_(select(MV.model_id).where(MV.framework == framework)))
        if alias:
            conditions.append(RM.id.in_(select(AL.model_id).where(AL.alias == alias)))
        columns = {"updated": RM.updated_at, "created": RM.created_at, "name": RM.name}
        if order_by not in columns:
            raise InvalidOptionError(f"order_by={order_by!r}: one of {', '.join(columns)}")
        column = columns[order_by]
        order = [column.desc() if descending else column.asc(), RM.id.desc() if descending else RM.id.asc()]
        with self.ws.reader() as s:
            total = s.scalar(select(func.count()).select_from(RM).where(*conditions))
            q = select(RM).where(*conditions).order_by(*order).offset(offset)
            if limit is not None:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            return Page(self._models(s, rows), total, offset, limit)

    def search_versions(
        self,
        query: str | None = None,
        *,
        model: str | None = None,
        framework: str | None = None,
        alias: str | None = None,
        state: str | None = None,
        metrics: MetricRanges | None = None,
        job_id: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
        order_by: str = "created",
        descending: bool = True,
    ) -> Page[ModelVersion]:
        conditions: list[Any] = []
        if model:
            conditions.append(RM.name == check_model_name(model))
        if query:
            conditions.append(
                or_(self._contains(RM.name, query), self._contains(MV.name, query), self._contains(MV.description, query))
            )
        if framework:
            conditions.append(MV.framework == framework)
        if _check_state(state):
            conditions.append(MV.state == state)
        if job_id:
            conditions.append(MV.job_id == job_id)
        if alias:
            conditions.append(MV.id.in_(select(AL.version_id).where(AL.alias == check_alias(alias))))
        for key, (low, high) in (metrics or {}).items():
            clause = [MM.key == key]
            if low is not None:
                clause.append(MM.value >= float(low))
            if high is not None:
                clause.append(MM.value <= float(high))
            conditions.append(MV.id.in_(select(MM.version_id).where(and_(*clause))))
        base = select(MV).join(RM, RM.id == MV.model_id).where(*conditions)
        direction = (lambda c: c.desc()) if descending else (lambda c: c.asc())
        if order_by.startswith("metric:"):
            key = order_by.split(":", 1)[1]
            metric = select(MM.version_id, MM.value).where(MM.key == key).subquery()
            base = base.outerjoin(metric, metric.c.version_id == MV.id)
            order = [metric.c.value.is_(None), direction(metric.c.value), direction(MV.id)]
        elif order_by == "created":
            order = [direction(MV.created_at), direction(MV.id)]
        elif order_by == "number":
            order = [RM.name.asc(), direction(MV.number)]
        elif order_by == "name":
            order = [direction(RM.name), direction(MV.number)]
        else:
            raise InvalidOptionError(f"order_by={order_by!r}: created, number, name or metric:NAME")
        with self.ws.reader() as s:
            total = s.scalar(select(func.count()).select_from(MV).join(RM, RM.id == MV.model_id).where(*conditions))
            q = base.order_by(*order).offset(offset)
            if limit is not None:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            return Page(self._versions(s, rows), total, offset, limit)

    # -- aliases ---------------------------------------------------------------------------------
    def _move_alias(
        self, s: Session, model: RegisteredModelRow, alias: str, target: ModelVersionRow | None, who, reason
    ) -> None:
        current = s.get(AL, (model.id, alias))
        old_number = s.scalar(select(MV.number).where(MV.id == current.version_id)) if current else None
        if target is None:
            if current is None:
                raise ModelNotFoundError(f"model {model.name!r} has no alias {alias!r}")
            s.delete(current)
        else:
            if target.state != LIVE:
                raise RegistryConflictError(
                    f"version {target.number} of {model.name!r} is {target.state}: restore it before pointing an alias at it"
                )
            if current is not None and current.version_id == target.id:
                return  # already there: nothing moved, nothing to record
            if current is None:
                s.add(AL(model_id=model.id, alias=alias, version_id=target.id, updated_by=who, updated_at=utcnow()))
            else:
                current.version_id, current.updated_by, current.updated_at = target.id, who, utcnow()
        s.add(
            AE(
                model_id=model.id, alias=alias, from_version=old_number,
                to_version=target.number if target is not None else None, who=who, reason=reason, at=utcnow(),
            )
        )
        model.updated_at = utcnow()

    def set_alias(
        self, model: str, alias: str, version: int | str, who: str | None = None, reason: str | None = None
    ) -> ModelVersion:
        check_alias(alias)
        ref = parse_ref(version) if isinstance(version, str) and ("@" in version or ":" in version) else parse_ref(model, version)
        if ref.model != model:
            raise InvalidOptionError(f"alias {alias!r} of {model!r} cannot point at a version of {ref.model!r}")

        def tx(s: Session) -> ModelVersion:
            row_model, row = self._version_row(s, ref, lock_model=True)
            self._move_alias(s, row_model, alias, row, who or current_user(), reason)
            s.flush()
            return self._versions(s, [row], {row_model.id: row_model.name})[0]

        return self._write(tx)

    def delete_alias(self, model: str, alias: str, who: str | None = None, reason: str | None = None) -> None:
        check_alias(alias)

        def tx(s: Session) -> None:
            self._move_alias(s, self._model_row(s, model, lock=True), alias, None, who or current_user(), reason)

        self._write(tx)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasEvent]:
        with self.ws.reader() as s:
            row = self._model_row(s, model)
            q = select(AE).where(AE.model_id == row.id)
            if alias:
                q = q.where(AE.alias == check_alias(alias))
            return [
                AliasEvent(model, e.alias, e.from_version, e.to_version, e.who, as_aware(e.at), e.reason)
                for e in s.scalars(q.order_by(AE.id))
            ]

    # -- state and updates -------------------------------------------------------------------------
    def set_version_state(
        self, ref: str, state: str, version: int | str | None = None, force: bool = False, who: str | None = None
    ) -> ModelVersion:
        _check_state(state)
        parsed = parse_ref(ref, version)

        def tx(s: Session) -> ModelVersion:
            model, row = self._version_row(s, parsed, lock_model=True)
            if state == ARCHIVED and row.state != ARCHIVED:
                pointing = list(s.scalars(select(AL.alias).where(AL.version_id == row.id).order_by(AL.alias)))
                if pointing and not force:
                    raise RegistryConflictError(
                        f"version {row.number} of {model.name!r} is where alias(es) {', '.join(pointing)} point: "
                        "move them first, or archive with force=True to remove them"
                    )
                for alias in pointing:
                    self._move_alias(s, model, alias, None, who or current_user(), f"version {row.number} archived")
            row.state = state
            row.updated_at = model.updated_at = utcnow()
            s.flush()
            return self._versions(s, [row], {model.id: model.name})[0]

        return self._write(tx)

    def set_model_state(self, name: str, state: str) -> RegisteredModel:
        _check_state(state)

        def tx(s: Session) -> RegisteredModel:
            row = self._model_row(s, name, lock=True)
            row.state = state
            row.updated_at = utcnow()
            s.flush()
            return self._models(s, [row])[0]

        return self._write(tx)

    def update_version(
        self,
        ref: str,
        version: int | str | None = None,
        *,
        description: str | None = None,
        custom_properties: dict | None = None,
    ) -> ModelVersion:
        parsed = parse_ref(ref, version)

        def tx(s: Session) -> ModelVersion:
            model, row = self._version_row(s, parsed, lock_model=True)
            if description is not None:
                row.description = description
            if custom_properties is not None:
                row.custom_properties = {**(row.custom_properties or {}), **_jsonable(custom_properties)}
            row.updated_at = utcnow()
            s.flush()
            return self._versions(s, [row], {model.id: model.name})[0]

        return self._write(tx)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        custom_properties: dict | None = None,
    ) -> RegisteredModel:
        def tx(s: Session) -> RegisteredModel:
            row = self._model_row(s, name, lock=True)
            if description is not None:
                row.description = description
            if owner is not None:
                row.owner = owner
            if custom_properties is not None:
                row.custom_properties = {**(row.custom_properties or {}), **_jsonable(custom_properties)}
            row.updated_at = utcnow()
            s.flush()
            return self._models(s, [row])[0]

        return self._write(tx)


def _transient(exc: DBAPIError) -> bool:
    """A lost race worth retrying: serialization failure, deadlock, lock timeout, busy SQLite."""
    code = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
    if code in ("40001", "40P01", "55P03", "23505"):
        return True
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def _jsonable(value: Any) -> Any:
    """Plain JSON: numbers, strings, booleans, None, lists and dicts (anything else as text)."""
    import math

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        try:
            return _jsonable(value.item())
        except Exception:
            pass
    return str(value)

