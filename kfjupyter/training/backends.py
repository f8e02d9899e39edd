"""The interface every training backend implements, and the registry of backends.

A backend turns (job id, TrainSpec, Bundle) into running ranks somewhere and answers
for them afterwards. It keeps no state of its own between calls: what it needs to find
the job again goes into ``backend_info`` (a JSON-serialisable dict returned by
:meth:`submit` and stored in the job record), so any process — a restarted kernel, the
CLI, the Jupyter server — can re-attach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

from ..capture.bundle import Bundle
from ..status import Observation
from .spec import TrainSpec


class TrainBackend(Protocol):
    name: str

    def submit(self, job_id: str, spec: TrainSpec, bundle: Bundle, job_dir: Path) -> dict:
        """Start the job; return ``backend_info``. Raise before creating anything if refused."""

    def observe(self, job_id: str, info: dict) -> Observation:
        """The job's current state as the backend sees it."""

    def logs(
        self, job_id: str, info: dict, rank: int = 0, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        """Lines (without newline) of one rank's log; with ``follow``, until the rank ends."""

    def metrics(self, job_id: str, info: dict) -> list[dict]:
        """Reported metrics: dicts with ``rank``, ``step``, ``time`` and the metric values."""

    def cancel(self, job_id: str, info: dict) -> None:
        """Stop every rank. Idempotent."""


def get_backend(name: str) -> TrainBackend:
    """The training engine called ``name`` (see :mod:`kfjupyter.backends`)."""
    from ..backends import get_backend as engine

    return engine("train", name)
