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

import time

from .. import status as st
from ..runtime.processes import reap_children
from ..runtime.supervisor import Supervisor
from .local import run_log
from .runner import Log

POLL_S = 0.1
#: seconds the first run waits for the warm parent of the runs' supervisors (then it starts cold)
WARM_WAIT_S = 10.0


class SweepSupervisor(Supervisor):
    what = "the sweep supervisor"

    def __init__(self, job_dir):
        super().__init__(job_dir)
        self.runs: list[str] = list(self.launch["runs"])
        self.max_parallel = int(self.launch["max_parallel"])
        self.log = Log(run_log(self.job_dir))
        self.started: dict[str, float] = {}
        self.reported: set[str] = set()
        self.shown: dict[str, str] = {}
        self.warming = False  # a warm parent for the runs is starting

    def label(self, run_id: str) -> str:
        index = self.runs.index(run_id)
        params = self.store.get_job(run_id).spec.get("parameters") or {}
        shown = " ".join(f"{k}={v!r}" for k, v in params.items())
        return f"run {index + 1}/{len(self.runs)} {run_id} ({shown})"

    def status_of(self, run_id: str):
        from ..jobs import Job

        record = self.store.get_job(run_id)
        if record.status in st.TERMINAL or not record.backend_info:
            return record
        return Job(run_id, record).refresh()

    def show(self, run_id: str, record) -> None:
        """The run's state on its child task of the sweep."""
        if self.shown.get(run_id) != record.status:
            self.shown[run_id] = record.status
            self.store.update_child(self.job_id, str(self.runs.index(run_id) + 1), status=record.status,
                                    error=record.error, message=record.message)  # fmt: skip

    def start_run(self, run_id: str) -> None:
        from ..jobs import start

        if self.warming:  # the runs' warm parent: worth its wait (its imports are a cold run's)
            from ..runtime import warm

            self.warming = False
            warm.pool().wait_ready(WARM_WAIT_S)
        record = start(run_id)
        self.started[run_id] = time.monotonic()
        self.log.line(f"{self.label(run_id)} started")
        self.show(run_id, record)

    def prepare_runs(self) -> None:
        """What the runs to come start from, started now rather than by the first run: the
        warm parent of their supervisors (when warm starts are on: :mod:`kfjupyter.runtime.warm`)
        and their warm kernels, ``max_parallel`` of them, kept ready until the last run has
        taken its own (:mod:`.kernels`)."""
        from ..backends import get_backend
        from ..runtime import warm
        from .kernels import pool

        pending = [self.store.get_job(run_id) for run_id in self.runs]
        pending = [r for r in pending if r.status == st.PENDING and not r.backend_info]
        engine = get_backend("notebook", pending[0].backend) if pending else None
        if not hasattr(engine, "kernel_request"):
            return
        if warm.enabled() and engine.warm_modules:
            warm_env = engine.warm_env(self.job_dir, engine.environment())
            if warm_env is not None:
                warm.pool().prepare(warm_env, engine.warm_modules)
                self.warming = True
        spec = pending[0].spec  # every run of a sweep has the same kernel and folder
        request = engine.kernel_request(spec.get("kernel") or "python3", spec.get("cwd"), self.job_dir,
                                        bool(spec.get("prepare_only")))  # fmt: skip
        pool().plan(request, runs=len(pending), parallel=self.max_parallel)

    def run(self) -> None:
        self.set_status(st.RUNNING)
        self.log.line(f"sweep of {len(self.runs)} run(s), at most {self.max_parallel} at a time")
        self.prepare_runs()
        ended: dict = {}  # the runs that have ended: their records change no more
        while True:
            reap_children()
            if self.cancelled:
                self.cancel_all()
                return
            records = {run_id: ended.get(run_id) or self.status_of(run_id) for run_id in self.runs}
            ended.update((run_id, r) for run_id, r in records.items() if r.status in st.TERMINAL)
            for run_id, record in records.items():
                self.show(run_id, record)
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
            self.set_status(st.FAILED, error="\n".join(lines))
        else:
            self.set_status(st.SUCCEEDED, message=summary)

    def cancel_all(self) -> None:
        from ..jobs import Job

        self.log.line("cancelling the sweep")
        for run_id in self.runs:
            record = self.store.get_job(run_id)
            if record.status not in st.TERMINAL:
                if record.backend_info:
                    try:
                        record = Job(run_id, record).cancel().record
                    except Exception as exc:  # keep going: the canceller tries again
                        self.log.line(f"{run_id}: could not be stopped: {exc}")
                else:
                    why = "the sweep was cancelled"
                    record = self.store.update_job(run_id, only_if_active=True, status=st.CANCELLED, message=why)
            self.show(run_id, record)
        self.set_status(st.CANCELLED, message="cancelled by the user")

    def stop(self) -> None:
        self.cancel_all()
        super().stop()


main = SweepSupervisor.main

if __name__ == "__main__":
    main()
