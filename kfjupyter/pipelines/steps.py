"""A pipeline run's steps: its child tasks in the store (kind ``step``).

Each step is a :class:`~kfjupyter.store.models.ChildRecord` of the run: status, times and
error as every child task has them, and in ``attrs`` what the step cache says of it:

``cached``        the result was taken from the cache (or the resumed run)
``cache_reason``  why it was (not) taken from the cache
``cache_key``     what the step cache keys on (a hash of ``fingerprint``)
``fingerprint``   ``{"program": sha256 of the step's program, "inputs": {name: content
                  hash}, "parameters": {name: value}, …}``
``outputs``       the content hashes of the values it passed on (``{name: hash}``)
``source_run``    the run whose results a cached step reused
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import status as st

if TYPE_CHECKING:  # the store is loaded on first use: a run's supervisor starts its first steps before
    from ..store.models import ChildRecord
    from ..store.workspace import Workspace

STEP = "step"
#: The fields of a step kept in its ``attrs``.
ATTRS = ("cached", "cache_reason", "cache_key", "fingerprint", "outputs", "source_run")
#: States of a step whose result the next steps can use.
DONE = frozenset({st.SUCCEEDED, st.CACHED})


def _store():
    from ..store.workspace import get_workspace

    return get_workspace()


def new_steps(names: list[str]) -> list[ChildRecord]:
    """The Pending step records of a new run."""
    from ..store.models import ChildRecord

    return [
        ChildRecord(name=name, kind=STEP, position=i, status=st.PENDING, attrs={"cached": False, "outputs": {}})
        for i, name in enumerate(names)
    ]


def list_steps(run_id: str, ws: Workspace | None = None) -> list[ChildRecord]:
    ws = ws or _store()
    adopt_legacy_steps(ws)
    return ws.list_children(run_id, STEP)


#: Where kfjupyter up to 0.1 kept the steps of pipeline runs (a table of its own).
LEGACY_TABLE = "pipeline_steps"
_adopted: set[int] = set()


def adopt_legacy_steps(ws: Workspace) -> None:
    """Once per workspace and process: the steps of runs recorded by an earlier kfjupyter
    (table ``pipeline_steps``) become child tasks, so no run loses its steps; the old
    table is then renamed ``pipeline_steps_v1`` (kept, never read again)."""
    if id(ws.engine) in _adopted:
        return
    from sqlalchemy import MetaData, Table, inspect, select, text
    from sqlalchemy.exc import DBAPIError

    from ..store.models import ChildRecord

    if LEGACY_TABLE not in inspect(ws.engine).get_table_names():
        _adopted.add(id(ws.engine))
        return
    try:
        with ws.session() as s, s.begin():  # writers take turns: a second process finds it adopted
            if not inspect(s.connection()).has_table(LEGACY_TABLE):
                return
            old = Table(LEGACY_TABLE, MetaData(), autoload_with=s.connection())
            have = {(c.job_id, c.name) for c in s.scalars(select(ChildRecord).where(ChildRecord.kind == STEP))}
            for row in s.execute(select(old)).mappings():
                if (row["run_id"], row["name"]) in have:
                    continue
                s.add(ChildRecord(
                    job_id=row["run_id"], name=row["name"], kind=STEP, position=row["position"] or 0,
                    status=row["status"], error=row["error"], started_at=row["started_at"],
                    finished_at=row["finished_at"], attrs={k: row[k] for k in ATTRS if k in row},
                ))  # fmt: skip
            s.execute(text(f'ALTER TABLE "{LEGACY_TABLE}" RENAME TO "{LEGACY_TABLE}_v1"'))
    except DBAPIError:
        if LEGACY_TABLE in inspect(ws.engine).get_table_names():
            raise  # not another process's adoption: a real failure
    _adopted.add(id(ws.engine))


def update_step(ws: Workspace, run_id: str, name: str, **fields: Any) -> ChildRecord:
    """Change a step: its record's fields, and the cache's (:data:`ATTRS`) in its attrs."""
    attrs = {k: fields.pop(k) for k in list(fields) if k in ATTRS}
    return ws.update_child(run_id, name, attrs=attrs, **fields)


def attr(record: ChildRecord, key: str, default: Any = None) -> Any:
    return (record.attrs or {}).get(key, default)


def last_step(ws: Workspace, pipeline: str, notebook: str | None, step: str,
              exclude_run: str | None = None) -> ChildRecord | None:  # fmt: skip
    """The latest step ``step`` of pipeline ``pipeline`` run from ``notebook`` (a pipeline
    is its name and its notebook: two notebooks with one Kale ``pipeline_name`` have
    histories of their own) that ran, was cached or failed (for saying why the cache did
    not answer: its last run failed, or what changed since)."""
    adopt_legacy_steps(ws)
    statuses = (*sorted(DONE), st.FAILED)
    for record in ws.last_child("pipeline", pipeline[:63], step, statuses, exclude_job=exclude_run, notebook=notebook):
        if attr(record, "fingerprint") is not None:
            return record
    return None


def step_dict(record: ChildRecord) -> dict[str, Any]:
    """A step as a run's ``steps`` list shows it (JSON-ready, times in UTC)."""
    data = record.to_dict()
    return {
        "name": record.name,
        "status": record.status,
        "cached": bool(attr(record, "cached", False)),
        "cache_reason": attr(record, "cache_reason") or "",
        "started_at": data["started_at"],
        "finished_at": data["finished_at"],
        "duration_s": data["duration_s"],
        "error": record.error,
        "source_run": attr(record, "source_run"),
        "channel": record.channel,
    }


def sweep_steps(run_id: str, reason: str) -> None:
    """No step stays Pending or Running once nothing runs it (the supervisor normally
    does this itself)."""
    ws = _store()
    for record in list_steps(run_id, ws):
        if record.status == st.RUNNING:
            update_step(ws, run_id, record.name, status=st.CANCELLED, error=reason)
        elif record.status == st.PENDING:
            update_step(ws, run_id, record.name, status=st.SKIPPED, cache_reason=f"not run: {reason}")
