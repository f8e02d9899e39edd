"""JSON the browser can parse: no NaN or Infinity, nothing that is not JSON."""

from __future__ import annotations

import json
import math
from typing import Any


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


def job_json(job) -> dict:
    """A job handle (a :class:`kfjupyter.jobs.Job`, an ``Endpoint`` …) as the API's JSON:
    its ``to_dict()``, made browser-safe."""
    return clean(job.to_dict())
