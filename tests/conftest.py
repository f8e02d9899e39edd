"""Shared fixtures: every test gets its own workspace, and leaves no process behind."""

from __future__ import annotations

import contextlib

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from kfjupyter import status as st

REPO = Path(__file__).resolve().parent.parent


def processes_of(home: Path) -> list[psutil.Process]:
    """Supervisors and ranks working for jobs under ``home`` (also those forked from a
    warm parent, whose command line is the warm parent's: they hold a file under ``home``)."""
    from kfjupyter.runtime import warm

    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(home) in cmdline and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for parent in warm.pool().pids():
        try:
            for proc in psutil.Process(parent).children(recursive=True):
                if proc.status() != psutil.STATUS_ZOMBIE and any(str(home) in f.path for f in proc.open_files()):
                    found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """A fresh workspace (KFJUPYTER_HOME) per test; fails the test if a process outlives it."""
    home = tmp_path / "kfhome"
    monkeypatch.setenv("KFJUPYTER_HOME", str(home))
    monkeypatch.delenv("KFJUPYTER_DB_URL", raising=False)
    # defaults a user's environment (or a server test's c.KFJupyter settings) may set
    for name in ("KFJUPYTER_BACKEND", "KFJUPYTER_NAMESPACE", "KFJUPYTER_IMAGE", "KFJUPYTER_KFP_URL", "KFP_HOST",
                 "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    # Warm kernels are not kept ready after each run: every test has a workspace (and an
    # environment) of its own, so a kernel made ready for the next run of this process
    # would never be used, only cost a core. tests/test_warm_kernels.py turns them on;
    # a sweep plans its own kernels either way.
    monkeypatch.setenv("KFJUPYTER_WARM_KERNELS_SIZE", "0")
    yield home
    deadline = time.monotonic() + 10
    while processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = processes_of(home)
    for proc in leftovers:
        proc.kill()
    assert not leftovers, f"processes left running: {[_cmdline(p) for p in leftovers]}"


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return f"pid {proc.pid} (gone)"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A notebook folder as the working directory."""
    path = tmp_path / "notebook"
    path.mkdir()
    monkeypatch.chdir(path)
    monkeypatch.syspath_prepend(str(path))
    return path


@pytest.fixture
def shell(workdir):
    """A real IPython shell with the extension loaded, as a notebook has it."""
    from IPython.core.interactiveshell import InteractiveShell

    from kfjupyter.magics import load_ipython_extension

    ip = InteractiveShell.instance()
    ip.reset()
    # what %load_ext does the first time (later it would only say "already loaded")
    load_ipython_extension(ip)
    yield ip
    ip.reset()


def run_cell(ip, source: str):
    """Run a cell; return its result (with ``error_in_exec`` / ``error_before_exec``)."""
    return ip.run_cell(source, store_history=True)


@contextlib.contextmanager
def ctrl_c_after(seconds: float):
    """Ctrl-C (a KeyboardInterrupt in the main thread) after ``seconds``, as a user presses it."""
    import signal

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def wait_for(predicate, timeout: float = 60.0, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"condition not met within {timeout} s")


TERMINAL = st.TERMINAL
PYTHON = sys.executable
