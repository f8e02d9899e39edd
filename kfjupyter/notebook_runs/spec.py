"""What a notebook run and a sweep ask for (the specs of ``notebook`` and ``sweep`` jobs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..runtime.engine import JobSpec


@dataclass(frozen=True, kw_only=True)
class NotebookSpec(JobSpec):
    """One papermill run of ``notebook`` with ``parameters`` on kernel ``kernel``, in folder
    ``cwd``; a sweep's run names its sweep (``sweep_id``) and its place in the grid."""

    kind: ClassVar[str] = "notebook"

    name: str = "notebook"
    notebook: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    kernel: str = "python3"
    cwd: str | None = None
    sweep_id: str | None = None
    index: int | None = None


@dataclass(frozen=True, kw_only=True)
class SweepSpec(JobSpec):
    """A grid of runs of one notebook: ``parameters`` fixed for all, ``sweep`` the values
    swept, ``grid`` the parameter set of each run, ``runs`` their job ids, at most
    ``max_parallel`` at once."""

    kind: ClassVar[str] = "sweep"

    name: str = "sweep"
    notebook: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list] = field(default_factory=dict)
    grid: list[dict[str, Any]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    max_parallel: int = 1
    kernel: str = "python3"
    cwd: str | None = None

    @property
    def workers(self) -> int:
        return self.max_parallel
