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
