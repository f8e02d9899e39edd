"""The base of every detached local supervisor: one process per job that runs and watches it.

A local engine (:class:`~kfjupyter.runtime.detached.DetachedEngine`) writes
``JOB_DIR/launch.json`` and starts ``python -m MODULE JOB_DIR`` under a keeper
(:mod:`.keeper`) in a session of its own, so a kernel or server restart does not touch
it. ``MODULE`` ends with ``main = SomeSupervisor.main``; the subclass's :meth:`run` is
the job's loop: it starts the job's processes, records what happens, and returns once
the job's end is recorded.

The base gives every supervisor the same skeleton: the launch file, the store (loaded
late: SQLAlchemy takes a third of a second to import), SIGTERM/SIGINT as a cancel
request (:attr:`cancelled`), status updates that never overwrite an end, the process
groups it starts noted in the job's ``groups`` file, and a crash of the loop itself
recorded as the job's failure with everything it started stopped.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, ClassVar

from .. import status as st
from . import processes

LAUNCH = "launch.json"
#: The tracker of a job's runs (metrics index, MLflow copy): see :mod:`kfjupyter.tracking.follow`.
TRACKER = "kfjupyter.tracking.follow:start"


class Supervisor:
    """Base of the supervisors of every kind of local job (see the module docstring)."""

    #: how errors name this supervisor ("the kfjupyter tuning supervisor failed: …")
    what: ClassVar[str] = "the kfjupyter supervisor"

    def __init__(self, job_dir: Path):
        self.job_dir = Path(job_dir)
        self.launch: dict[str, Any] = json.loads((self.job_dir / LAUNCH).read_text())
        self.job_id: str = self.launch["job_id"]
        self.cancelled = False
        self._store = None
        self._message: str | None = None
        #: the run tracker's process: not one of the job's, it outlives the job's end by its last turn
        self.tracker_pid: int | None = None

    # -- plumbing -----------------------------------------------------------------
    @property
    def store(self):
        if self._store is None:
            from ..store.workspace import get_workspace

            self._store = get_workspace()
        return self._store

    def on_signal(self, _signum: int, _frame: Any) -> None:
        """SIGTERM / SIGINT: a cancel. The loop sees :attr:`cancelled` at its next turn."""
        self.cancelled = True

    def set_status(self, status: str, **fields: Any):
        """Record the job's status (an ended job is never changed)."""
        return self.store.update_job(self.job_id, only_if_active=True, status=status, **fields)

    def set_message(self, text: str) -> None:
        """The job's progress line ("3/10 trials done …"), written when it changes."""
        if text != self._message:
            self._message = text
            self.store.update_job(self.job_id, only_if_active=True, message=text)

    def register_group(self, pgid: int) -> None:
        """Note a process group this supervisor started (it is stopped with the job)."""
        processes.register_group(self.job_dir, pgid)

    # -- the job ----------------------------------------------------------------------
    def run(self) -> None:
        """The job's loop; returns once the job's end is recorded."""
        raise NotImplementedError

    def before_threads(self) -> None:
        """Start what must be forked from this process while it has one thread: called
        before anything of the supervisor starts a thread (its run's tracker, then
        :meth:`run`). A training supervisor starts its ranks here (see :mod:`.warm`)."""

    def job_children(self) -> list:
        """This process's descendants that belong to the job (all but the run tracker)."""
        import psutil

        return [p for p in psutil.Process().children(recursive=True) if p.pid != self.tracker_pid]

    def stop(self) -> None:
        """Stop everything the job started (after a crash of :meth:`run`)."""
        processes.kill_job_processes(self.job_dir)

    @classmethod
    def main(cls, argv: list[str] | None = None) -> None:
        """``python -m MODULE JOB_DIR``: run the supervisor of the job in ``JOB_DIR``. If the
        loop itself fails, the job is marked Failed (with the traceback) and what it
        started is stopped, so nothing outlives a crashed supervisor."""
        supervisor = cls(Path((argv or sys.argv[1:])[0]))
        signal.signal(signal.SIGTERM, supervisor.on_signal)
        signal.signal(signal.SIGINT, supervisor.on_signal)
        tracker = None
        try:
            supervisor.before_threads()
            tracker = supervisor.start_tracker()
            supervisor.tracker_pid = getattr(tracker, "pid", None)
            supervisor.run()
        except BaseException:
            text = traceback.format_exc()
            try:
                supervisor.set_status(st.FAILED, error=f"{cls.what} failed:\n{text}")
            finally:
                supervisor.stop()
            raise
        finally:
            if tracker is not None:
                try:
                    tracker.finish()
                except Exception:  # noqa: BLE001  (tracking never fails a job)
                    traceback.print_exc()

    def start_tracker(self):
        """The job's run tracker (:data:`TRACKER`, bound late: the runtime imports no
        capability), started beside the loop; None if it cannot start (said in the log)."""
        try:
            from ..backends import load

            return load(TRACKER)(self.job_id, self.job_dir, self.launch.get("kind", ""))
        except Exception:  # noqa: BLE001  (tracking never fails a job)
            traceback.print_exc()
            return None
