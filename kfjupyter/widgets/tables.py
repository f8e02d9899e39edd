"""Tables of jobs, as HTML for notebooks and as text for the terminal."""

from __future__ import annotations

import html

from ..jobs import Job

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


def jobs_table(jobs: list[Job]) -> str:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(row[c])}</td>" for c in COLUMNS) + "</tr>"
        for row in map(job_row, jobs)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def jobs_text(jobs: list[Job]) -> str:
    rows = [dict(zip(COLUMNS, COLUMNS))] + [job_row(j) for j in jobs]
    widths = {c: max(len(r[c]) for r in rows) for c in COLUMNS}
    return "\n".join("  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows)
