"""The tuning supervisor: one detached process per study that runs and watches its workers.

Started like the training supervisor (its own session, so a kernel or server restart does
not touch it). It starts ``parallel`` long-lived trial workers
(:mod:`kfjupyter.tuning.worker`), each logging to ``logs/worker-<i>.log``, and writes the
job's status and progress to the workspace store:

* the budget is spent → Succeeded (Failed if no trial completed);
* more than ``max_failed`` trials failed → the running trials are stopped and the study
  is Failed, its error the last failure's traceback;
* a worker process dies (a crash in native code, ``os._exit``) → its trial is marked
  FAIL and a fresh worker takes its place;
* SIGTERM (cancel) → every worker is stopped (SIGTERM, SIGKILL after a grace period),
  every running trial is marked FAIL/cancelled, and the job is Cancelled.

No trial is left RUNNING and no process behind, whichever way it ends.

Usage: ``python -m kfjupyter.tuning.supervisor JOB_DIR`` (reads JOB_DIR/launch.json).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import status as st
from ..runtime.processes import kill_groups, registered_groups, start_in_group
from ..runtime.supervisor import Supervisor

#: Why the workers are being stopped; a worker records it on the trial it ends.
STOP_REASON = "stop_reason"
POLL_S = 0.05
CHECK_S = 0.25
GRACE_S = 3.0


def worker_log(job_dir: Path, index: int) -> Path:
    return job_dir / "logs" / f"worker-{index}.log"


def trial_dir(job_dir: Path, number: int) -> Path:
    """A trial's own folder (its outputs, metrics; a distributed trial's ranks' files)."""
    return job_dir / "trials" / str(number)


class TuneSupervisor(Supervisor):
    what = "the kfjupyter tuning supervisor"

    def __init__(self, job_dir):
        super().__init__(job_dir)
        self.study_name = self.launch["study_name"]
        self.workers: dict[int, subprocess.Popen] = {}
        self.restarts = 0
        self._log_start: dict[int, int] = {}
        self._storage = None
        self._synced: dict[int, tuple] = {}

    @property
    def storage(self):
        if self._storage is None:
            from .engine import open_storage

            self._storage = open_storage(self.job_dir)
        return self._storage

    # -- workers

    def start_worker(self, index: int) -> None:
        (self.job_dir / "logs").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.launch.get("env") or {})
        env["PYTHONUNBUFFERED"] = "1"
        env["KFJUPYTER_JOB_ID"] = self.job_id
        env["KFJUPYTER_BUNDLE"] = str(self.job_dir / "bundle")
        if self.launch.get("threads") and "OMP_NUM_THREADS" not in (self.launch.get("env") or {}):
            env["OMP_NUM_THREADS"] = str(self.launch["threads"])
        log = worker_log(self.job_dir, index)
        self._log_start[index] = log.stat().st_size if log.exists() else 0
        self.workers[index] = start_in_group(  # a trial's processes go with its worker
            [sys.executable, "-u", "-m", "kfjupyter.tuning.worker", str(self.job_dir), str(index)], log, self.job_dir,
            env=env, cwd=self.launch.get("workdir"),
        )  # fmt: skip

    def _groups_of(self, procs) -> list[int]:
        """The process groups of workers ``procs``: their own, and their trials' ranks'."""
        groups = []
        for proc in procs:
            groups += [proc.pid] + registered_groups(self.job_dir, owner=proc.pid)
        return groups

    def stop_workers(self, reason: str) -> None:
        """Stop every worker (its running trial is marked with ``reason``), what they
        started with them, then sweep."""
        (self.job_dir / STOP_REASON).write_text(reason)
        procs = list(self.workers.values())
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(POLL_S)
        kill_groups(self._groups_of(procs), grace=1.0, reap=procs)  # the stubborn ones, and what they left
        from .engine import end_running_trials

        end_running_trials(self.storage, self.study_name, reason)
        self.sync_children(force=True)

    def stop(self) -> None:
        self.stop_workers("the tuning supervisor failed")
        super().stop()

    def _let_workers_start(self, limit: float = 3.0) -> None:
        """Wait (briefly) for the workers' first output before importing the store and
        Optuna here: on a small machine the three imports at once delay the first trials."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not self.cancelled:
            if all(p.poll() is not None or worker_log(self.job_dir, i).stat().st_size > self._log_start.get(i, 0)
                   for i, p in self.workers.items()):  # fmt: skip
                return
            time.sleep(0.02)

    # -- the study

    def _trials(self):
        study_id = self.storage.get_study_id_from_name(self.study_name)
        return self.storage.get_all_trials(study_id, deepcopy=False)

    def _progress(self, trials) -> str:
        from optuna.trial import TrialState

        from .engine import counted

        spec = self.launch["spec"]
        done = [t for t in counted(trials) if t.state.is_finished()]
        running = sum(t.state == TrialState.RUNNING for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        text = f"{len(done)}/{spec['trials']} trials done, {running} running"
        if complete:
            pick = min if spec["direction"] == "minimize" else max
            best = pick(complete, key=lambda t: t.value)
            text += f"; best {spec['objective']}={best.value:.6g} (trial {best.number})"
        return text

    def sync_children(self, trials=None, force: bool = False) -> None:
        """The trials that changed since the last look, as the study's child tasks in the store."""
        from .engine import sync_trial_children

        trials = self._trials() if trials is None else trials
        changed = []
        for t in trials:
            seen = (t.state, t.value, t.datetime_complete, len(t.user_attrs))
            if force or self._synced.get(t.number) != seen:
                self._synced[t.number] = seen
                changed.append(t)
        if changed:
            sync_trial_children(self.job_id, self.storage, self.study_name, changed)

    def run(self) -> None:
        try:
            (self.job_dir / STOP_REASON).unlink()
        except FileNotFoundError:
            pass
        for index in range(self.launch["spec"]["parallel"]):
            self.start_worker(index)
        self._let_workers_start()
        self.set_status(st.RUNNING)
        from .engine import close_log_spans, end_running_trials, failed

        spec = self.launch["spec"]
        next_check = 0.0
        while True:
            if self.cancelled:
                self.stop_workers("cancelled by the user")
                self.set_message(self._progress(self._trials()))
                self.set_status(st.CANCELLED)
                return
            for index, proc in list(self.workers.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self.workers[index]
                if code != 0:  # crashed: its trial failed; a fresh worker goes on with the budget
                    how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                    close_log_spans(self.storage, self.study_name, {proc.pid}, worker_log(self.job_dir, index).stat().st_size)
                    end_running_trials(
                        self.storage, self.study_name, f"the trial's worker process {how}",
                        cancelled=False, only_pids={proc.pid},
                    )  # fmt: skip
                    kill_groups(self._groups_of([proc]), grace=1.0)  # what its trial left running
                    if self.restarts < spec["trials"]:
                        self.restarts += 1
                        self.start_worker(index)
            now = time.monotonic()
            if now >= next_check or not self.workers:
                next_check = now + CHECK_S
                trials = self._trials()
                fails = failed(trials)
                if len(fails) > spec["max_failed"]:
                    reason = f"stopped: the study failed ({len(fails)} trials failed, --max-failed {spec['max_failed']})"
                    self.stop_workers(reason)
                    self.set_message(self._progress(self._trials()))
                    self.set_status(st.FAILED, error=_failure_summary(fails, spec["max_failed"]))
                    return
                self.sync_children(trials)
                self.set_message(self._progress(trials))
                if not self.workers:
                    self._finish(trials)
                    return
            time.sleep(POLL_S)

    def _finish(self, trials) -> None:
        from optuna.trial import TrialState

        from .engine import end_running_trials, failed

        end_running_trials(self.storage, self.study_name, "its worker ended without finishing it", cancelled=False)
        trials = self._trials()
        self.sync_children(trials)
        if any(t.state == TrialState.COMPLETE for t in trials):
            self.set_status(st.SUCCEEDED)
            return
        fails = failed(trials)
        error = "no trial completed"
        if fails:
            error += f"; the last of {len(fails)} failed trial(s), trial {fails[-1].number}:\n{_error_of(fails[-1])}"
        self.set_status(st.FAILED, error=error)


def _error_of(trial) -> str:
    from .engine import ATTR_ERROR

    return str(trial.user_attrs.get(ATTR_ERROR) or "(no traceback recorded)")


def _failure_summary(fails, max_failed: int) -> str:
    last = fails[-1]
    return (
        f"{len(fails)} trials failed, more than --max-failed {max_failed}; "
        f"the last one, trial {last.number}:\n{_error_of(last)}"
    )


main = TuneSupervisor.main

if __name__ == "__main__":
    main()
