"""The local engines of notebook runs (kind ``notebook``) and sweeps (kind ``sweep``).

A run is one detached :mod:`~kfjupyter.notebook_runs.runner` process executing the
notebook with papermill; a sweep is one detached :mod:`~kfjupyter.notebook_runs.sweep`
supervisor starting its runs (each a ``notebook`` job of its own) up to ``max_parallel``
at a time. Both keep the training backend's bookkeeping (``backend_info`` =
``{"pid", "create_time", "job_dir"}``), so any process re-attaches to them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from .. import status as st
from ..errors import BackendError
from ..runtime.processes import alive, kill_tree, start_detached
from ..runtime.supervisor import LAUNCH
from ..status import Observation
from ..store.workspace import get_workspace
from ..training.local import LocalTrainBackend

RUNNER = "kfjupyter.notebook_runs.runner"
SWEEPER = "kfjupyter.notebook_runs.sweep"


def _env() -> dict[str, str]:
    return {**os.environ, "KFJUPYTER_HOME": str(get_workspace().home)}


def _descendants(pid: int | None, create_time: float | None) -> list[psutil.Process]:
    if not alive(pid, create_time):
        return []
    try:
        proc = psutil.Process(pid)
        return [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


class LocalNotebookBackend(LocalTrainBackend):
    """One papermill run: logs and metrics in the files a training rank 0 would use."""

    name = "local"

    def prepare(self, job_dir: Path, launch: dict) -> None:
        """Write what the runner reads (done at submission, also for a sweep's later runs)."""
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / LAUNCH).write_text(json.dumps(launch, indent=1))

    def start(self, job_dir: Path) -> dict:
        return start_detached(RUNNER, job_dir, _env())

    def cancel(self, job_id: str, info: dict, timeout: float = 8.0) -> None:
        # the kernel lives in a session of its own: take note of it before the runner goes
        procs = _descendants(info.get("pid"), info.get("create_time"))
        try:
            super().cancel(job_id, info, timeout=timeout)
        finally:
            left = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if left:
                kill_tree(left, grace=1.0)


class LocalSweepBackend(LocalTrainBackend):
    """A grid of runs under one supervisor; its log is the supervisor's progress."""

    name = "local"

    def start(self, job_dir: Path) -> dict:
        return start_detached(SWEEPER, job_dir, _env())

    @staticmethod
    def run_ids(job_id: str) -> list[str]:
        return list(get_workspace().get_job(job_id).spec.get("runs") or [])

    def observe(self, job_id: str, info: dict) -> Observation:
        seen = super().observe(job_id, info)
        if seen.status == st.FAILED and "supervisor process ended unexpectedly" in (seen.error or ""):
            self._end_pending(job_id, "the sweep's supervisor ended before starting this run")
        return seen

    def _end_pending(self, job_id: str, reason: str) -> None:
        ws = get_workspace()
        for run_id in self.run_ids(job_id):
            record = ws.get_job(run_id)
            if record.status == st.PENDING and not record.backend_info:
                ws.update_job(run_id, only_if_active=True, status=st.CANCELLED, message=reason)

    def metrics(self, job_id: str, info: dict) -> list[dict]:
        """Every run's reported metrics; ``rank`` is the run's index in the grid, ``run`` its id."""
        runs = LocalNotebookBackend()
        rows = []
        for index, run_id in enumerate(self.run_ids(job_id)):
            for row in runs.metrics(run_id, {}):
                rows.append({**row, "rank": index, "run": run_id})
        return rows

    def cancel(self, job_id: str, info: dict, timeout: float = 20.0) -> None:
        """Stop the supervisor first (so it starts nothing more), then every run it started."""
        from ..jobs import Job

        error = None
        try:
            super().cancel(job_id, info, timeout=timeout)
        except BackendError as exc:
            error = exc
        for run_id in self.run_ids(job_id):
            Job(run_id).cancel()
        if error is not None:
            raise error


__all__ = ["LocalNotebookBackend", "LocalSweepBackend"]
