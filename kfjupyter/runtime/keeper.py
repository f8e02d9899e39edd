"""The keeper: the parent of a detached supervisor, which knows how the supervisor ended.

``python -m kfjupyter.runtime.keeper MODULE JOB_DIR`` forks, and the child runs ``MODULE``
as ``python -m MODULE JOB_DIR`` would (the keeper has imported next to nothing, so the
fork costs no interpreter start). The keeper then only waits:

* it forwards SIGTERM and SIGINT (a cancel) to the supervisor;
* it is the *subreaper* of everything under the supervisor (Linux), so what a rank or a
  trial started is handed to it, not to init, when its parent dies;
* when the supervisor ends it stops whatever is left of the job: every process group the
  job registered and every process still under the keeper;
* if the supervisor ended without recording how the job ended (killed with SIGKILL, out
  of memory, a crash in native code), the keeper marks the job Failed with a typed
  :class:`~kfjupyter.status.SupervisorLost` reason that names the signal or exit code,
  and lets the job's engine tidy what it keeps (``on_supervisor_lost``: running trials,
  steps, pending runs). Nobody needs to read the job for that to happen.

If the keeper itself is killed, the engine's ``observe`` still sees both gone and says so.
"""

from __future__ import annotations

import os
import signal
import sys

#: Seconds given to what is left of a job to stop before it is killed.
GRACE_S = 3.0


def _run_supervisor(module: str, job_dir: str) -> None:
    """In the forked child: run ``module`` as ``python -m module job_dir`` would."""
    import runpy

    from .processes import run_as_program

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.argv = [module, job_dir]

    def run() -> None:
        loaded = sys.modules.get(module)
        if loaded is not None:  # a warm keeper (see .warm): the module is loaded, run its main
            loaded.main()
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)

    run_as_program(run)


def main(argv: list[str] | None = None) -> None:
    module, job_dir = (argv or sys.argv[1:])[:2]
    from .processes import become_subreaper

    become_subreaper()
    child: list[int] = []  # the supervisor's pid, once forked
    signals: list[int] = []  # a cancel: the signals to pass on (one may come before the fork)

    def forward(signum, _frame) -> None:
        signals.append(signum)
        if child:
            try:
                os.kill(child[0], signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)  # before the fork: no window where a cancel kills us alone
    signal.signal(signal.SIGINT, forward)
    pid = os.fork()
    if pid == 0:
        _run_supervisor(module, job_dir)
    child.append(pid)
    for signum in signals:  # a cancel that came while we forked
        os.kill(pid, signum)
    status = None
    while status is None:
        try:
            done, wait_status = os.waitpid(-1, 0)  # the supervisor, or an orphan handed to us
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if done == pid:
            status = wait_status
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    finish(job_dir, status, bool(signals))


def finish(job_dir: str, status: int | None, cancelled: bool) -> None:
    """The supervisor has ended (``status`` as ``os.waitpid`` gave it): stop what is left
    and, if the job is still active, record why it ended."""
    from pathlib import Path

    from .. import status as st
    from .processes import descendants, kill_job_processes, kill_tree

    folder = Path(job_dir)
    try:
        kill_job_processes(folder, grace=GRACE_S)
        kill_tree(descendants(os.getpid())[1:], grace=GRACE_S)
    finally:
        clean = status is not None and os.waitstatus_to_exitcode(status) == 0
        if not clean:
            record_lost(folder, st.SupervisorLost.from_wait_status(status) if status is not None else st.SupervisorLost(), cancelled)
        _reap()


def record_lost(job_dir, reason, cancelled: bool) -> None:
    """Mark the job ended by the loss of its supervisor (Cancelled if a cancel was under
    way), unless it has recorded its end already; let its engine tidy up."""
    import json

    from .. import status as st
    from ..backends import get_backend
    from ..store.workspace import get_workspace
    from .detached import record_lost as record

    job_id = json.loads((job_dir / "launch.json").read_text())["job_id"]
    ws = get_workspace()
    if cancelled:
        ws.end_job(job_id, st.CANCELLED, message="cancelled by the user")
        return
    job = ws.get_job(job_id)
    record(get_backend(job.kind, job.backend), job_id, job.backend_info or {"job_dir": str(job_dir)}, reason)


def _reap() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


if __name__ == "__main__":
    main()
