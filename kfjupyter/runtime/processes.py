"""Small process helpers shared by the local supervisor and its clients."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child (preexec_fn): get SIGKILL when the parent dies, so no rank outlives it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the supervisor's cleanup still applies
        pass


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


def kill_with_children(pids, grace: float = 3.0) -> None:
    """Stop each process of ``pids`` and everything it started (see :func:`kill_tree`)."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs += [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    kill_tree(procs, grace)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


#: detached processes started by this process, polled so they don't linger as zombies
_children: list[subprocess.Popen] = []


def start_detached(module: str, job_dir: Path, env: dict[str, str]) -> dict:
    """Run ``python -m module job_dir`` in a session of its own (it outlives this process).

    Its output goes to ``job_dir/supervisor.log``. Returns what finds it again:
    ``{"pid", "create_time", "job_dir"}``.
    """
    with open(job_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(job_dir)],
            start_new_session=True,  # survives kernel and server restarts
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            env=env,
        )
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:  # it died already; whoever observes it will say why
        created = None
    _children.append(proc)
    return {"pid": proc.pid, "create_time": created, "job_dir": str(job_dir)}


def reap_children() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)
