"""Job states, the same words for every kind of job and every backend, and why a job ended."""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass
from typing import Any

PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELLED = "Cancelled"
#: cancelled, and what ran is still being stopped (a Kubernetes object being deleted, a KFP
#: run being terminated); Cancelled once it is gone
CANCELLING = "Cancelling"

TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE = (PENDING, RUNNING, CANCELLING)
ALL = (PENDING, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED)

# a child task (pipeline step, trial, sweep run, server) can also end these ways
SKIPPED = "Skipped"  # not run: what it needed failed, or its parent was cancelled first
CACHED = "Cached"  # not run: its result was taken from the cache
PRUNED = "Pruned"  # stopped early by the study's pruner
CHILD_STATES = ALL + (SKIPPED, CACHED, PRUNED)
CHILD_TERMINAL = frozenset(TERMINAL | {SKIPPED, CACHED, PRUNED})


@dataclass(frozen=True)
class SupervisorLost:
    """Why a job failed when its supervisor process ended without saying how the job ended.

    ``signal`` (it was killed by that signal) or ``exit_code`` (it exited with that code)
    when the process that waited on it (its keeper) saw it end; neither when nobody did
    (the keeper ended too).
    """

    signal: int | None = None
    exit_code: int | None = None

    KIND = "supervisor_lost"

    @property
    def cause(self) -> str:
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by signal {self.signal} ({name})"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return "gone, and nobody saw how it ended (its keeper process ended too)"

    def message(self, what: str = "the job's supervisor") -> str:
        return f"{what} ended unexpectedly: {self.cause}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "signal": self.signal, "exit_code": self.exit_code}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SupervisorLost | None":
        if not data or data.get("kind") != cls.KIND:
            return None
        return cls(signal=data.get("signal"), exit_code=data.get("exit_code"))

    @classmethod
    def from_wait_status(cls, status: int) -> "SupervisorLost":
        """From a status of ``os.waitpid``."""
        code = os.waitstatus_to_exitcode(status)
        return cls(signal=-code) if code < 0 else cls(exit_code=code)


@dataclass(frozen=True)
class Observation:
    """What a backend saw of a job when asked: its state, why it failed if it did, and
    ``reason`` when the cause is a lost supervisor (typed, not a text to match)."""

    status: str
    error: str | None = None
    message: str | None = None
    reason: SupervisorLost | None = None


def cancellation(what: str, *, gone: bool, detail: str | None = None) -> Observation:
    """The one rule for a job whose backend object is being deleted or stopped: Cancelling
    while that is under way (``gone=False``: a ``deletionTimestamp``, KFP's CANCELING),
    Cancelled once it is gone (``gone=True``), for every kind of job on every backend."""
    if gone:
        return Observation(CANCELLED, message=f"{what} is gone (cancelled or deleted)" + (f": {detail}" if detail else ""))
    return Observation(CANCELLING, message=f"{what} is being deleted" + (f": {detail}" if detail else ""))
