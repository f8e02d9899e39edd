"""Job handles: one view of a job whoever started it and wherever it runs.

``kfjupyter.jobs.get(id)`` re-attaches to any job in the workspace store (started from
another kernel, before a restart, from the CLI …); ``kfjupyter.jobs.list()`` lists them.
"""

from __future__ import annotations

import builtins
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from . import status as st
from .errors import InvalidOptionError, KFJupyterError, PreflightError
from .store.models import JobRecord
from .store.workspace import as_aware, get_workspace
from .backends import get_backend
from .training.backends import TrainBackend


class JobFailedError(KFJupyterError):
    """Raised by :meth:`Job.wait` with ``raise_on_failure`` when the job did not succeed."""


class Job:
    """A handle on one job. Cheap to create; every property reads the current state."""

    def __init__(self, job_id: str, record: JobRecord | None = None):
        self.id = job_id
        self._record: JobRecord = record if record is not None else get_workspace().get_job(job_id)
        self._backend: TrainBackend | None = None

    def _submitted_info(self) -> dict | None:
        """What the backend needs to find the job, or None while it is being submitted."""
        if not self._record.backend_info:
            self.refresh()
        return self._record.backend_info or None

    # -- state -------------------------------------------------------------------
    @property
    def backend(self) -> TrainBackend:
        if self._backend is None:
            self._backend = get_backend(self._record.kind, self._record.backend)
        return self._backend

    def refresh(self) -> JobRecord:
        """Read the record, asking the backend when the job is still active."""
        ws = get_workspace()
        record = ws.get_job(self.id)
        if record.status not in st.TERMINAL and record.backend_info:
            seen = self.backend.observe(self.id, record.backend_info)
            if seen.status != record.status:
                record = ws.update_job(
                    self.id, only_if_active=True, status=seen.status, error=seen.error, message=seen.message
                )
        self._record = record
        return record

    @property
    def status(self) -> str:
        return self.refresh().status

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def kind(self) -> str:
        return self._record.kind

    @property
    def workers(self) -> int:
        return self._record.workers

    @property
    def error(self) -> str | None:
        return self.refresh().error

    @property
    def record(self) -> JobRecord:
        return self._record

    def duration(self) -> float | None:
        """Seconds from start to finish (or to now while running)."""
        record = self._record
        start = as_aware(record.started_at or record.created_at)
        end = as_aware(record.finished_at) or datetime.now(timezone.utc)
        return (end - start).total_seconds() if start else None

    @property
    def done(self) -> bool:
        return self.status in st.TERMINAL

    # -- files ---------------------------------------------------------------------
    @property
    def job_dir(self) -> Path:
        return get_workspace().job_dir(self.id)

    @property
    def output_dir(self) -> Path:
        return self.job_dir / "outputs"

    @property
    def outputs(self) -> dict[str, Path]:
        """Files the job saved to ``kfjupyter.output_dir()``: relative name → path."""
        root = self.output_dir
        if not root.exists():
            return {}
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    @property
    def program(self) -> str:
        """The program the ranks run (imports, captured definitions, the cell)."""
        return (self.job_dir / "bundle" / "program.py").read_text()

    # -- logs and metrics ------------------------------------------------------------
    def logs(self, rank: int = 0, follow: bool = False, tail: int | None = None) -> str | Iterator[str]:
        """One rank's log: the text, or with ``follow`` an iterator of lines until the job ends."""
        info = self._submitted_info()
        if info is None:  # not submitted yet: nothing logged
            return iter(()) if follow else ""
        lines = self.backend.logs(self.id, info, rank=rank, follow=follow, tail=tail)
        return lines if follow else "\n".join(lines)

    def metrics(self, rank: int | None = None) -> list[dict]:
        """Metrics passed to ``kfjupyter.report``: dicts with rank, step, time and values."""
        info = self._submitted_info()
        rows = self.backend.metrics(self.id, info) if info is not None else []
        return [r for r in rows if rank is None or r.get("rank") == rank]

    # -- control ---------------------------------------------------------------------
    def wait(
        self,
        timeout: float | None = None,
        poll: float = 0.2,
        cancel_on_interrupt: bool = True,
        raise_on_failure: bool = False,
    ) -> "Job":
        """Block until the job ends. Ctrl-C cancels it (unless ``cancel_on_interrupt=False``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while self.status not in st.TERMINAL:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} still {self._record.status} after {timeout} s")
                time.sleep(poll)
        except KeyboardInterrupt:
            if cancel_on_interrupt:
                self.cancel()
            raise
        if raise_on_failure and self._record.status != st.SUCCEEDED:
            raise JobFailedError(f"job {self.id} {self._record.status}:\n{self._record.error or ''}")
        return self

    def cancel(self) -> "Job":
        """Stop every rank and mark the job Cancelled. Does nothing to a finished job."""
        if self.refresh().status not in st.TERMINAL:
            if self._record.backend_info:
                self.backend.cancel(self.id, self._record.backend_info)
            else:  # still being submitted: the submitter sees this and stops what it started
                get_workspace().update_job(
                    self.id, only_if_active=True, status=st.CANCELLED, message="cancelled by the user"
                )
        self.refresh()
        return self

    # -- the model registry ----------------------------------------------------------------
    def register_model(self, name: str, path_or_object=None, **options):
        """Register this job's model as a new version of ``name``: its saved outputs (or
        ``path_or_object``), its last reported metrics and its lineage (see
        :func:`kfjupyter.register_model` for ``options``)."""
        from .registry import register_model

        return register_model(name, path_or_object, job=self, **options)

    def to_dict(self) -> dict:
        data = self._record.to_dict()
        data["duration_s"] = self.duration()
        return data

    def __repr__(self) -> str:
        return f"<Job {self.id} {self._record.kind} {self._record.status} backend={self._record.backend}>"


#: Job kinds whose handle says more than :class:`Job` (their steps, their runs' results …),
#: by import path, loaded on first use.
_HANDLES: dict[str, str] = {
    "pipeline": "kfjupyter.pipelines.api:PipelineRun",
    "notebook": "kfjupyter.notebook_runs.api:NotebookRun",
    "sweep": "kfjupyter.notebook_runs.api:Sweep",
}


def get(job_id: str) -> Job:
    """Re-attach to a job of the workspace by id: the handle of its kind (a
    ``PipelineRun``, a ``Sweep`` …), else a plain :class:`Job`."""
    record = get_workspace().get_job(job_id)
    path = _HANDLES.get(record.kind)
    if path is None:
        return Job(job_id, record)
    import importlib

    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)(job_id, record)


def count(kind: str | None = None, status: str | None = None) -> int:
    """How many jobs of the workspace match the filters."""
    return get_workspace().count_jobs(kind=kind, status=status)


def list(kind: str | None = None, status: str | None = None, limit: int | None = 50, offset: int = 0) -> builtins.list[Job]:  # noqa: A001
    """Jobs of the workspace, newest first."""
    records = get_workspace().list_jobs(kind=kind, status=status, limit=limit, offset=offset)
    return [Job(r.id, r) for r in records]


# -- submission: the one way every capability starts a job it has recorded ------------------
def forget(job_id: str) -> None:
    """Delete a job's record and folder: what a refused submission leaves behind."""
    ws = get_workspace()
    with ws.session() as s, s.begin():
        record = s.get(JobRecord, job_id)
        if record is not None:
            s.delete(record)
    shutil.rmtree(ws.job_dir(job_id), ignore_errors=True)


def start_job(
    job_id: str,
    start: Callable[[], dict],
    cancel: Callable[[dict], None],
    *,
    on_refusal: Callable[[KFJupyterError], None] | None = None,
    failed: str = "submission failed",
) -> JobRecord:
    """Start the recorded (Pending) job ``job_id``: ``start()`` returns its ``backend_info``.

    A refusal (:class:`InvalidOptionError`, :class:`PreflightError`) calls
    ``on_refusal(error)`` (default: :func:`forget` the job, so nothing is left behind); any
    other error marks the job Failed. Either way the error is re-raised.
    A job cancelled while it was being started is stopped at once with ``cancel(info)``.
    """
    ws = get_workspace()
    try:
        info = start()
    except (InvalidOptionError, PreflightError) as exc:
        (on_refusal or (lambda _: forget(job_id)))(exc)
        raise
    except KFJupyterError as exc:
        ws.update_job(job_id, status=st.FAILED, error=str(exc))
        raise
    except BaseException as exc:
        ws.update_job(job_id, status=st.FAILED, error=f"{failed}: {exc!r}")
        raise
    record = ws.update_job(job_id, backend_info=info)
    if record.status == st.CANCELLED:  # cancelled while it was being started
        cancel(info)
    return record
