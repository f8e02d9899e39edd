"""The run record: what tracking adds to a job or a child task (an experiment's run).

A run *is* a job (training, a study, a pipeline run, a notebook run, a sweep) or a child
task (a trial, a pipeline step): its status, times, spec, log and metric files stay in
:class:`~kfjupyter.store.models.JobRecord` / ``ChildRecord`` and the job's folder. This
record holds only what they do not: the experiment, the params that no spec says (the
scalars a cell read, ``kfjupyter.log_params``), tags, the environment it ran in, the run
it was re-run from, the last value of each metric (an index, so a search over thousands of
runs reads no file) and the state of its MLflow copy.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, utcnow

#: The experiment of a run started from no notebook (MLflow's default experiment's name).
DEFAULT_EXPERIMENT = "Default"


def run_id(job_id: str, child: str | None = None) -> str:
    """The id of the run of job ``job_id`` (or of its child task ``child``): ``JOB`` or
    ``JOB.CHILD`` (job ids and child names hold no dot)."""
    return job_id if not child else f"{job_id}.{child}"


def split_run_id(value: str) -> tuple[str, str | None]:
    """``JOB`` → (JOB, None); ``JOB.CHILD`` → (JOB, CHILD)."""
    job_id, _, child = value.partition(".")
    return job_id, child or None


class RunRecord(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(63), index=True)
    child: Mapped[str | None] = mapped_column(String(100), nullable=True)
    experiment: Mapped[str] = mapped_column(String(200), index=True, default=DEFAULT_EXPERIMENT)
    #: the run this one was re-run from (``job.rerun``)
    source_run: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    tags: Mapped[dict] = mapped_column(JSON, default=dict)
    env: Mapped[dict] = mapped_column(JSON, default=dict)
    #: the last reported value of each metric (kept up to date while the job runs)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    #: its MLflow copy: run id, experiment id, what was sent
    mlflow: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
