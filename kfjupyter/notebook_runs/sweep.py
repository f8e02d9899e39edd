"""The sweep supervisor: starts a sweep's runs, ``max_parallel`` at a time, and watches them.

Started detached (its own session) like every local supervisor. Each run of the grid is
a ``notebook`` job recorded at submission (Pending, launch file and notebook copy in its
job folder); the supervisor starts its runner process, writes the run's ``backend_info``
and logs the sweep's progress to ``logs/rank-0.log``. The sweep ends when every run has:

* every run Succeeded → Succeeded;
* any run Failed → Failed, its error listing the failed runs and their errors (the other
  runs still run to the end: their rows of the results table are worth having);
* SIGTERM (cancel) → the running runs are cancelled (their kernels stopped), the ones not
  started are marked Cancelled, and so is the sweep.

A run cancelled on its own (``kfjupyter.jobs.get(run_id).cancel()``) is simply one row
less; it does not stop the sweep.

Usage: ``python -m kfjupyter.notebook_runs.sweep JOB_DIR`` (reads JOB_DIR/launch.json).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from .. import status as st
from ..runtime.processes import reap_children
from ..runtime.supervisor import LAUNCH, rank_paths, supervise
from .runner import Log

POLL_S = 0.2


class SweepSupervisor:
    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.launch = json.loads((job_dir / LAUNCH).read_text())
        self.job_id = self.launch["job_id"]
        self.runs: list[str] = list(self.launch["runs"])
        self.max_parallel = int(self.launch["max_parallel"])
        self.log = Log(rank_paths(job_dir, 0)["log"])
        self.cancelled = False
        self.started: dict[str, float] = {}
        self.reported: set[str] = set()
        from ..store.workspace import get_workspace
        from .local import LocalNotebookBackend

        self.store = get_workspace()
        self.engine = LocalNotebookBackend()

    def _on_sigterm(self, *_args) -> None:
        self.cancelled = True

    def label(self, run_id: str) -> str:
        index = self.runs.index(run_id)
        params = self.store.get_job(run_id).spec.get("parameters") or {}
        shown = " ".join(f"{k}={v!r}" for k, v in params.items())
        return f"run {index + 1}/{len(self.runs)} {run_id} ({shown})"

    def status_of(self, run_id: str):
        record = self.store.get_job(run_id)
        if record.status in st.TERMINAL or not record.backend_info:
            return record
        seen = self.engine.observe(run_id, record.backend_info)
        if seen.status != record.status:
            record = self.store.update_job(
                run_id, only_if_active=True, status=seen.status, error=seen.error, message=seen.message
            )
        return record

    def start_run(self, run_id: str) -> None:
        info = self.engine.start(self.store.job_dir(run_id))
        record = self.store.update_job(run_id, backend_info=info)
        self.started[run_id] = time.monotonic()
        self.log.line(f"{self.label(run_id)} started")
        if record.status == st.CANCELLED:  # cancelled on its own while being started
            self.engine.cancel(run_id, info)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigterm)
        self.store.update_job(self.job_id, only_if_active=True, status=st.RUNNING)
        self.log.line(f"sweep of {len(self.runs)} run(s), at most {self.max_parallel} at a time")
        while True:
            reap_children()
            if self.cancelled:
                self.cancel_all()
                return
            records = {run_id: self.status_of(run_id) for run_id in self.runs}
            for run_id, record in records.items():
                if record.status in st.TERMINAL and run_id not in self.reported:
                    self.reported.add(run_id)
                    took = time.monotonic() - self.started[run_id] if run_id in self.started else None
                    suffix = f" in {took:.1f} s" if took is not None else ""
                    first = (record.error or "").splitlines()[:1]
                    self.log.line(f"{self.label(run_id)} {record.status}{suffix}" + (f": {first[0]}" if first else ""))
            active = sum(1 for r in records.values() if r.status not in st.TERMINAL and r.backend_info)
            for run_id, record in records.items():
                if active >= self.max_parallel or self.cancelled:
                    break
                if record.status == st.PENDING and not record.backend_info:
                    self.start_run(run_id)
                    active += 1
            if all(r.status in st.TERMINAL for r in records.values()):
                self.finish(records)
                return
            time.sleep(POLL_S)

    def finish(self, records: dict) -> None:
        failed = [(i, r) for i, r in records.items() if r.status == st.FAILED]
        counts = {s: sum(1 for r in records.values() if r.status == s) for s in st.TERMINAL}
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n)
        self.log.line(f"sweep finished: {summary}")
        if failed:
            lines = [f"{len(failed)} of {len(records)} run(s) failed:"]
            for run_id, record in failed:
                lines.append(f"{run_id}: {((record.error or '').splitlines() or ['?'])[0]}")
            self.store.update_job(self.job_id, only_if_active=True, status=st.FAILED, error="\n".join(lines))
        else:
            self.store.update_job(self.job_id, only_if_active=True, status=st.SUCCEEDED, message=summary)

    def cancel_all(self) -> None:
        self.log.line("cancelling the sweep")
        for run_id in self.runs:
            record = self.store.get_job(run_id)
            if record.status in st.TERMINAL:
                continue
            if record.backend_info:
                try:
                    self.engine.cancel(run_id, record.backend_info)
                except Exception as exc:  # keep going: the canceller tries again
                    self.log.line(f"{run_id}: could not be stopped: {exc}")
            else:
                self.store.update_job(run_id, only_if_active=True, status=st.CANCELLED, message="the sweep was cancelled")
        self.store.update_job(self.job_id, only_if_active=True, status=st.CANCELLED, message="cancelled by the user")


def main(argv: list[str] | None = None) -> None:
    supervisor = SweepSupervisor(Path((argv or sys.argv[1:])[0]))
    supervise(supervisor.job_id, supervisor.run, supervisor.cancel_all, "the sweep supervisor")


if __name__ == "__main__":
    main()
