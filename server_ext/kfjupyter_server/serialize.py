"""JSON the browser can parse: no NaN or Infinity, nothing that is not JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from kfjupyter.store.workspace import as_aware


def clean(value: Any) -> Any:
    """``value`` with non-finite floats as None and non-JSON objects as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(clean(value), allow_nan=False)


#: The record's times: SQLite hands them back without a time zone, though every one is UTC.
TIMES = ("created_at", "started_at", "finished_at")


def job_json(job) -> dict:
    """A :class:`kfjupyter.jobs.Job` as the API's ``Job`` object: ``Job.to_dict()``, times with their offset.

    A browser reads an ISO time without an offset as local time, so each time is
    written as UTC with ``+00:00``.
    """
    data = job.to_dict()
    for key in TIMES:
        value = getattr(job.record, key, None)
        if isinstance(value, datetime):
            data[key] = as_aware(value).isoformat()
    return clean(data)


#: Times inside a trial row: Optuna writes them in the machine's local time, without an offset.
TRIAL_TIMES = ("datetime_start", "datetime_complete")


def _local_iso(value: Any) -> Any:
    """An ISO time without an offset read as this machine's local time, written with its offset."""
    if not isinstance(value, str) or not value:
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (parsed if parsed.tzinfo is not None else parsed.astimezone()).isoformat()


def _trial(row: dict | None) -> dict | None:
    if row is None:
        return None
    row = dict(row)
    for key in TRIAL_TIMES:
        row[key] = _local_iso(row.get(key))
    return row


def study_json(data: dict) -> dict:
    """A ``Study.to_dict()`` as the API's ``Study`` object: every time with its offset.

    The study's ``created_at`` comes from the store (UTC); a local trial's times are
    Optuna's, in the local time of the machine that ran it (this one).
    """
    data = dict(data)
    created = data.get("created_at")
    if isinstance(created, str) and created:
        try:
            data["created_at"] = as_aware(datetime.fromisoformat(created)).isoformat()
        except ValueError:
            pass
    data["best"] = _trial(data.get("best"))
    data["trials"] = [_trial(t) for t in data.get("trials") or []]
    return clean(data)


#: Trial states, in the order a summary counts them.
TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL", "CANCELLED", "RUNNING", "WAITING")


def study_summary(data: dict) -> dict:
    """A study for a list: ``study_json`` without its trials and space, with a count of
    trials per state (every state present, zeros included)."""
    full = study_json(data)
    trials = full.pop("trials")
    full.pop("space", None)
    counts = {state: 0 for state in TRIAL_STATES}
    for trial in trials:
        counts[trial.get("state")] = counts.get(trial.get("state"), 0) + 1
    full["n_trials"] = len(trials)
    full["trial_counts"] = counts
    return full
