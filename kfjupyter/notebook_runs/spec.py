"""What a notebook run and a sweep ask for (the specs of ``notebook`` and ``sweep`` jobs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..runtime.engine import JobSpec


@dataclass(frozen=True, kw_only=True)
class NotebookSpec(JobSpec):
    """One papermill run of ``notebook`` with ``parameters`` on kernel ``kernel``, in folder
    ``cwd``; a sweep's run names its sweep (``sweep_id``) and its place in the grid. The
    rest are papermill's own options: ``language`` of the parameters cell, ``report_mode``
    (inputs hidden), ``execution_timeout`` (seconds a cell may take), ``start_timeout``
    (seconds the kernel may take to start), ``prepare_only`` (parameters injected, nothing run)."""

    kind: ClassVar[str] = "notebook"

    name: str = "notebook"
    notebook: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    kernel: str = "python3"
    cwd: str | None = None
    sweep_id: str | None = None
    index: int | None = None
    language: str | None = None
    report_mode: bool = False
    execution_timeout: int | None = None
    start_timeout: int = 60
    prepare_only: bool = False

    @property
    def papermill_options(self) -> dict[str, Any]:
        """What the runner passes to ``papermill.execute_notebook`` besides the paths."""
        return {"language": self.language, "report_mode": self.report_mode, "execution_timeout": self.execution_timeout,
                "start_timeout": self.start_timeout, "prepare_only": self.prepare_only}  # fmt: skip


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
