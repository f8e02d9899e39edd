"""Process helpers of the local runtime: detached starts, process groups, stopping whole trees.

Every process a local job starts for user code (a rank, a trial worker, a pipeline step,
a notebook's kernel) runs in a process group of its own, so stopping it stops whatever
it started too (``kill_group``), even after it exited and its children were handed to
another parent. The groups of a job are written to its ``groups`` file
(:func:`register_group`), so whoever ends the job (its supervisor, its keeper, a
canceller) can stop every one of them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

import psutil

from ..files import PRIVATE_UMASK

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

#: The file (in a job's folder) listing the process groups the job started.
GROUPS = "groups"


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except OSError:  # not Linux
        return False


def die_with_parent() -> None:
    """In a child (preexec_fn): get SIGKILL when the parent dies, so no rank outlives it."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def become_subreaper() -> bool:
    """Make this process the parent of every orphan among its descendants (Linux), so it
    can find and stop what they leave behind. False where the platform has no such thing."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def own_group() -> None:
    """In a child (preexec_fn): a process group of its own, and death with its parent."""
    os.setpgid(0, 0)
    die_with_parent()


def cpu_threads(cpu: str | None) -> int | None:
    """Threads per process for a ``--cpu`` quantity (``2``, ``500m``); None: not set."""
    if cpu is None:
        return None
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(value))


def run_as_program(main, finalize: bool = False) -> None:
    """In a forked child: run ``main()`` as the program of this process would run (its
    return value, a ``SystemExit`` or an uncaught error, printed, is the exit code; see
    :func:`exit_code` for ``finalize``), then leave at once with that code, never
    returning into the parent's code."""
    code = 1
    try:
        code = exit_code(main, finalize)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def exit_code(main, finalize: bool = False) -> int:
    """Run ``main()`` and return the exit code a program running it would end with (its
    return value, a ``SystemExit``'s code, 1 for an uncaught error, printed). With
    ``finalize``, then what an interpreter does at its end: wait for the threads it
    started and run its ``atexit`` functions."""
    code = 1
    try:
        code = main() or 0
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:  # sys.exit("message"): printed, code 1, as python does
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    if finalize:
        import atexit
        import threading

        try:
            threading._shutdown()  # noqa: SLF001  (what Py_Finalize calls: join non-daemon threads)
        finally:
            atexit._run_exitfuncs()  # noqa: SLF001
    return code


class ForkedProcess:
    """A child forked from this process, with the parts of ``Popen`` the runtime uses
    (``pid``, ``returncode``, ``poll``, ``wait``)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by whoever killed it (psutil.wait_procs)
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        return self.returncode


def fork_child(child, *, finalize: bool = False, group: bool = False) -> ForkedProcess:
    """Run ``child()`` in a fork of this process, as a program of its own (see
    :func:`exit_code`; it never returns into this process's code). With ``group``, the
    child leads a process group of its own, made here too, so that the group exists
    before anyone signals it (``child`` makes it as well: :func:`own_group`)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        if group:
            try:
                os.setpgid(pid, pid)
            except (PermissionError, ProcessLookupError):
                pass  # it has set it itself already, or is gone
        return ForkedProcess(pid)
    run_as_program(child, finalize)


def child_io(log: Path | None, keep_fds: tuple[int, ...] | None = None) -> None:
    """In a forked child: stdin from /dev/null, stdout and stderr appended to ``log``
    (None: kept), ``sys.std*`` new text streams on them; with ``keep_fds``, no other file
    descriptor open but those (what a freshly started program has: only for a fork whose
    parent holds no open file object it could still use)."""
    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if keep_fds is not None:
        low = 3
        for fd in sorted(fd for fd in keep_fds if fd > 2) + [os.sysconf("SC_OPEN_MAX")]:
            os.closerange(low, fd)
            low = fd + 1
    import io

    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = _STD_STREAMS
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=in_enc, errors=in_err)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=out_enc, errors=out_err,
                                  write_through=True)  # fmt: skip
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=err_enc, errors=err_err,
                                  write_through=True)  # fmt: skip
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _std_streams() -> list[tuple[str, str]]:
    """The encoding and error handler of stdin, stdout and stderr as this interpreter
    chose them at its start (from the locale and ``PYTHONIOENCODING``)."""
    out = []
    for stream, errors in ((sys.__stdin__, "surrogateescape"), (sys.__stdout__, "surrogateescape"),
                           (sys.__stderr__, "backslashreplace")):  # fmt: skip
        out.append((getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or errors))
    return out


#: what :func:`child_io` gives a fork's standard streams: this interpreter's own choice
_STD_STREAMS = _std_streams()


def default_signals() -> None:
    """In a forked child: the signal dispositions a freshly started Python program has."""
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int | None, create_time: float | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, if given, was started at ``create_time``."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.01:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def kill_tree(procs: list[psutil.Process], grace: float = 3.0) -> None:
    """SIGTERM every process, then SIGKILL those still there after ``grace`` seconds."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(procs, timeout=grace)
    for proc in still:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(still, timeout=grace)


def descendants(pid: int | None, create_time: float | None = None) -> list[psutil.Process]:
    """``pid`` and every process under it (empty if it is gone)."""
    if not alive(pid, create_time):
        return []
    try:
        proc = psutil.Process(pid)
        return [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


# -- process groups ---------------------------------------------------------------------------
def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    return members


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_groups(pgids: Iterable[int], grace: float = 3.0, reap: Iterable[subprocess.Popen] = ()) -> None:
    """Stop process groups whole: SIGTERM, then SIGKILL whatever is left after ``grace`` s.

    ``reap``: child processes of this one among them (polled, so a zombie leader does
    not look alive).
    """
    reap = list(reap)
    own = os.getpgrp()
    targets = [g for g in dict.fromkeys(pgids) if g and g > 1 and g != own]
    targets = [g for g in targets if _signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while targets and time.monotonic() < deadline:
        for child in reap:
            child.poll()
        targets = [g for g in targets if group_members(g)]
        if targets:
            time.sleep(0.05)
    for g in targets:
        _signal_group(g, signal.SIGKILL)
    for child in reap:
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def register_group(job_dir: Path, pgid: int, owner: int | None = None) -> None:
    """Note process group ``pgid`` (its leader started at its creation time, by process
    ``owner``) in the job's ``groups`` file."""
    with open(Path(job_dir) / GROUPS, "a", encoding="ascii") as fh:
        fh.write(f"{pgid} {owner or os.getpid()} {create_time(pgid) or 0:.3f}\n")


def _ours(pgid: int, started: float) -> bool:
    """Whether process group ``pgid`` is still the one noted: a group's id is its leader's
    pid, which the system never gives another process while the group has members; so a
    live process with that pid started at another time means our group is gone and the
    number was reused."""
    if not started:
        return True
    born = create_time(pgid)
    return born is None or abs(born - started) < 0.01


def registered_groups(job_dir: Path, owner: int | None = None) -> list[int]:
    """The process groups of the job still alive and still its own (only those started by
    ``owner``, if given)."""
    try:
        text = (Path(job_dir) / GROUPS).read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and (owner is None or parts[1] == str(owner)):
            started = float(parts[2]) if len(parts) > 2 else 0.0
            if _ours(int(parts[0]), started):
                out.append(int(parts[0]))
    return out


def start_in_group(argv: list[str], log: Path, job_dir: Path, *, env: dict[str, str], cwd: str | None = None,
                   pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:  # fmt: skip
    """Start one of a job's processes (a rank, a trial worker, a pipeline step): its output
    appended to ``log``, in a process group of its own noted in ``job_dir``'s groups, dying
    with this process."""
    with open(log, "ab", buffering=0) as out:
        proc = subprocess.Popen(
            argv, cwd=cwd or None, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            pass_fds=pass_fds, preexec_fn=own_group,
        )  # fmt: skip
    register_group(job_dir, proc.pid)
    return proc


def forget_groups(job_dir: Path) -> None:
    """A job starting (again): the groups of an earlier run of it are not its own any more."""
    try:
        (Path(job_dir) / GROUPS).unlink()
    except FileNotFoundError:
        pass


def kill_job_processes(job_dir: Path, grace: float = 3.0) -> None:
    """Stop every process group the job registered (what its processes left behind)."""
    kill_groups(registered_groups(job_dir), grace=grace)


# -- detached supervisors ------------------------------------------------------------------------
#: detached processes started by this process, polled so they don't linger as zombies
_children: list[subprocess.Popen] = []

#: The keeper module: parent of every detached supervisor (see :mod:`.keeper`).
KEEPER = "kfjupyter.runtime.keeper"


def start_detached(module: str, job_dir: Path, env: dict[str, str]) -> dict:
    """Run ``python -m module job_dir`` under a keeper, in a session of its own (it outlives
    this process; the keeper records how it ended, see :mod:`.keeper`).

    Their output goes to ``job_dir/supervisor.log``. Returns what finds them again:
    ``{"pid", "create_time", "job_dir"}`` (of the keeper).
    """
    with open(job_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", KEEPER, module, str(job_dir)],
            start_new_session=True,  # survives kernel and server restarts
            umask=PRIVATE_UMASK,  # it, and everything under it, writes files only this user reads
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            env=env,
        )
    _children.append(proc)
    # None: it died already; whoever observes it will say why
    return {"pid": proc.pid, "create_time": create_time(proc.pid), "job_dir": str(job_dir)}


def reap_children() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)
