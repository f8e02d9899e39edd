"""The local engines of notebook runs (kind ``notebook``) and sweeps (kind ``sweep``).

A run is one detached :mod:`~kfjupyter.notebook_runs.runner` supervisor executing the
notebook with papermill; its channels are ``notebook`` (the run's log: cell progress and
the cells' output) and the metric channel ``notebook`` (what the notebook reported). A
sweep is one detached :mod:`~kfjupyter.notebook_runs.sweep` supervisor starting its runs
(each a ``notebook`` job of its own, and a child task ``run`` of the sweep) up to
``max_parallel`` at a time; its channels are ``sweep`` (its progress), and per run
``run/N`` (that run's log and metrics).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterator

from .. import status as st
from ..runtime.detached import DetachedEngine
from ..runtime.engine import Channel, Channels, Features, SupervisorLost
from ..runtime.processes import register_group
from ..runtime.ranks import rank_paths
from ..runtime.supervisor import LAUNCH
from ..store.workspace import get_workspace
from . import kernels

RUNNER = "kfjupyter.notebook_runs.runner"
SWEEPER = "kfjupyter.notebook_runs.sweep"
NOTEBOOK_CHANNEL = Channel("notebook", "notebook", rank=0)
SWEEP_CHANNEL = Channel("sweep", "sweep", rank=0)
RUN = "run"
#: What a warm parent of runs and sweeps imports (see :mod:`kfjupyter.runtime.warm`).
WARM_MODULES = ("kfjupyter.notebook_runs.runner", "kfjupyter.notebook_runs.sweep", "kfjupyter.notebook_runs.pm",
                "nbformat", "jupyter_client", "nbclient", "kfjupyter.store.workspace", "kfjupyter.tracking.follow")  # fmt: skip


def run_log(job_dir: Path) -> Path:
    """The log of a run (and of a sweep: its progress)."""
    return rank_paths(job_dir, 0)["log"]


class LocalNotebookEngine(DetachedEngine):
    """One papermill run."""

    kind = "notebook"
    supervisor = RUNNER
    what = "the notebook runner"
    features = Features(supervised=True, metrics=True)
    cancel_timeout = 8.0
    #: a warm parent has the runner, papermill (less what loads numpy: see :mod:`.pm`), the
    #: kernel client and the store loaded; the same one serves sweeps' supervisors
    warm_modules = WARM_MODULES

    def launch(self, job_id: str, spec, job_dir: Path) -> dict:
        launch = {"notebook": spec.notebook, "parameters": spec.parameters, "kernel": spec.kernel, "cwd": spec.cwd,
                  "sweep_id": spec.sweep_id, "index": spec.index, "papermill": spec.papermill_options}  # fmt: skip
        kernel = kernels.pool().take(self.kernel_request(spec.kernel, spec.cwd, job_dir, spec.prepare_only))
        if kernel is not None:
            launch["pooled_kernel"] = kernel
        return launch

    def kernel_request(self, kernel: str, cwd: str | None, job_dir: Path, prepare_only: bool = False) -> dict | None:
        """What this run asks of the warm kernels (None: nothing, it runs no kernel or the pool is off)."""
        if prepare_only:
            return None
        return kernels.run_request(kernel, cwd or os.getcwd(), self.environment(), job_dir / "supervisor.log")

    def start(self, job_dir: Path) -> dict:
        """Start the run's supervisor; a warm kernel it takes is one of the job's process
        groups from now on (whoever ends the job stops it) and belongs to its keeper."""
        launch = json.loads((job_dir / LAUNCH).read_text())
        kernel = launch.get("pooled_kernel")
        if kernel is not None:
            register_group(job_dir, kernel["pid"])
        try:
            info = super().start(job_dir)
        except BaseException:
            if kernel is not None:
                kernels.pool().release(kernel)
            raise
        prepare_only = bool((launch.get("papermill") or {}).get("prepare_only"))
        kernels.pool().started(self.kernel_request(launch["kernel"], launch.get("cwd"), job_dir, prepare_only), kernel,
                               info)  # fmt: skip
        return info

    def channels(self, job_id: str, info: dict) -> Channels:
        return Channels(logs=(NOTEBOOK_CHANNEL,), metrics=(NOTEBOOK_CHANNEL,))

    def log_path(self, job_id: str, job_dir: Path, channel: str) -> Path | None:
        return run_log(job_dir) if channel == NOTEBOOK_CHANNEL.name else None

    def metric_paths(self, job_id: str, job_dir: Path) -> list[tuple[Channel, Path]]:
        return [(NOTEBOOK_CHANNEL, rank_paths(job_dir, 0)["metrics"])]


def _runs(job_id: str) -> list[str]:
    return list(get_workspace().get_job(job_id).spec.get("runs") or [])


def run_channel(index: int) -> Channel:
    """The channel (log and metrics) of a sweep's run ``index`` (0-based): ``run/index+1``."""
    return Channel(f"{RUN}/{index + 1}", f"run {index + 1}", rank=index, child=str(index + 1))


class LocalSweepEngine(DetachedEngine):
    """A grid of runs under one supervisor."""

    kind = "sweep"
    supervisor = SWEEPER
    what = "the sweep's supervisor"
    features = Features(supervised=True, metrics=True, children=True)
    cancel_timeout = 20.0
    warm_modules = WARM_MODULES

    def launch(self, job_id: str, spec, job_dir: Path) -> dict:
        return {"runs": spec.runs, "max_parallel": spec.max_parallel}

    def channels(self, job_id: str, info: dict) -> Channels:
        return Channels(logs=(SWEEP_CHANNEL,), metrics=tuple(run_channel(i) for i in range(len(_runs(job_id)))))

    def log_path(self, job_id: str, job_dir: Path, channel: str) -> Path | None:
        return run_log(job_dir) if channel == SWEEP_CHANNEL.name else None

    def _run_of(self, job_id: str, channel: str) -> str | None:
        kind, _, number = channel.partition("/")
        runs = _runs(job_id)
        if kind == RUN and number.isdigit() and 1 <= int(number) <= len(runs):
            return runs[int(number) - 1]
        return None

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop: threading.Event | None = None) -> Iterator[str]:  # fmt: skip
        """``sweep``: the sweep's progress; ``run/N``: the log of its N-th run."""
        run_id = self._run_of(job_id, channel)
        if run_id is None:
            return super().read_log(job_id, info, channel, tail=tail, follow=follow, stop=stop)
        from ..jobs import Job

        run = Job(run_id)
        out = run.logs(follow=follow, tail=tail, stop=stop)
        return out if follow else iter(out.split("\n") if out else [])

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        """Every run's reported metrics; ``rank`` is the run's index in the grid, ``run`` its id."""
        runs = LocalNotebookEngine()
        rows = []
        for index, run_id in enumerate(_runs(job_id)):
            if channel in (None, run_channel(index).name):
                record = get_workspace().get_job(run_id)
                if record.backend_info:
                    rows += [{**row, "rank": index, "run": run_id} for row in runs.read_metrics(run_id, record.backend_info)]
        return rows

    def backfill_children(self, job_id: str, info: dict) -> None:
        """A sweep from before child tasks: its runs, as its spec lists them."""
        ws = get_workspace()
        spec = ws.get_job(job_id).spec
        rows = []
        for index, (run_id, params) in enumerate(zip(spec.get("runs") or [], spec.get("grid") or [])):
            run = ws.get_job(run_id)
            rows.append({"name": str(index + 1), "kind": RUN, "position": index, "status": run.status, "job_ref": run_id,
                         "error": run.error, "started_at": run.started_at, "finished_at": run.finished_at,
                         "attrs": {"parameters": params}})  # fmt: skip
        ws.sync_children(job_id, rows)

    def on_supervisor_lost(self, job_id: str, info: dict, reason: SupervisorLost) -> None:
        """The runs it started are stopped with it (its keeper stops everything under its
        supervisor: they end Cancelled); those it had not started never will."""
        ws = get_workspace()
        for index, run_id in enumerate(_runs(job_id)):
            record = ws.get_job(run_id)
            if record.status == st.PENDING and not record.backend_info:
                why = "the sweep's supervisor ended before starting this run"
                ws.update_job(run_id, only_if_active=True, status=st.CANCELLED, message=why)
                ws.update_child(job_id, str(index + 1), status=st.CANCELLED, message=why)

    def cancel(self, job_id: str, info: dict) -> None:
        """Stop the supervisor first (so it starts nothing more), then every run it started."""
        from ..errors import BackendError
        from ..jobs import Job

        error = None
        try:
            super().cancel(job_id, info)
        except BackendError as exc:
            error = exc
        ws = get_workspace()
        for index, run_id in enumerate(_runs(job_id)):
            run = Job(run_id).cancel()
            ws.update_child(job_id, str(index + 1), status=run.record.status, error=run.record.error)
        if error is not None:
            raise error
