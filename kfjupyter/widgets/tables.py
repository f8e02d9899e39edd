"""Tables of jobs: HTML in a notebook, aligned text in a terminal (one :class:`~kfjupyter.table.Table`)."""

from __future__ import annotations

from ..jobs import Job
from ..table import Table

COLUMNS = ("id", "kind", "status", "backend", "workers", "duration", "created")


def job_row(job: Job) -> dict[str, str]:
    record = job.refresh()
    duration = job.duration()
    return {
        "id": job.id,
        "kind": record.kind,
        "status": record.status,
        "backend": record.backend,
        "workers": str(record.workers),
        "duration": f"{duration:.1f}s" if duration is not None else "",
        "created": record.created_at.strftime("%Y-%m-%d %H:%M:%S") if record.created_at else "",
    }


def jobs_table(jobs: list[Job], empty: str = "no jobs") -> Table:
    """The jobs as a table (``%kf_jobs``, ``%kf_pipeline list``, ``kfjupyter jobs list``)."""
    return Table(COLUMNS, [job_row(j) for j in jobs], empty=empty, css_class="kfjupyter-jobs")


def jobs_text(jobs: list[Job]) -> str:
    return repr(jobs_table(jobs, empty=""))
