"""Job states, the same words for every kind of job and every backend."""

from __future__ import annotations

from dataclasses import dataclass

PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELLED = "Cancelled"

TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
ALL = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)


@dataclass(frozen=True)
class Observation:
    """What a backend saw of a job when asked: its state, and why it failed, if it did."""

    status: str
    error: str | None = None
    message: str | None = None
