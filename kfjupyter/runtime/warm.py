"""Warm parents: a job's processes start as forks of a process that has done the imports.

Starting a local job costs interpreters and imports: the keeper and the supervisor
(SQLAlchemy, the job's own modules), and every rank (``import torch``: one to two
seconds here). A **warm parent** is a Python process, started once by the process that
submits jobs (a kernel, the Jupyter server, the CLI: its *owner*), that has imported a
kind's modules (torch and the training supervisor, say) and then does one thing: fork.

* A job submitted while a warm parent for it is ready starts as a fork of it: the fork
  becomes the job's keeper (a session of its own, the job's environment, working
  directory and umask, its output in ``supervisor.log``: what
  :func:`~kfjupyter.runtime.processes.start_detached` gives a cold one) and runs the
  supervisor as ever. The warm parent itself is never handed to a job; every job gets a
  fresh fork, so nothing one job does can reach another.
* The supervisor forks each **rank** from itself before any thread of it starts
  (:meth:`~kfjupyter.runtime.supervisor.Supervisor.before_threads`), and only when this
  process has exactly one thread (``/proc/self/task``) and was started with the
  environment the rank would start with (:func:`can_fork`); else the rank is a fresh
  ``python kf_bootstrap.py`` as before. The rank's fork gets exactly what a cold rank
  gets (:func:`fork_program`): environment, working directory, ``sys.path``,
  ``sys.argv``, fresh random seeds, default signals, stdin/stdout/stderr and no other
  file descriptor, its own process group, death with its parent; and it ends as a cold
  rank ends (:func:`~kfjupyter.runtime.bootstrap.end`: threads joined, ``atexit`` run,
  the program's globals cleared, no teardown of torch), with its process groups kept
  until then, as a cold rank's are (:func:`~kfjupyter.runtime.bootstrap._keep_groups`:
  torch can deadlock destroying a gloo group from Python, and a warm rank, which has
  ``torch._dynamo`` imported before its group exists, is not spared by accident as a
  cold one is).
* What is imported at start-up depends on the environment (``OMP_NUM_THREADS`` sizes the
  BLAS and OpenMP pools as they load, ``PYTHON*`` shape the interpreter), so a warm
  parent is started with the environment of the processes it will fork, minus the
  variables a launcher sets per job (:data:`PER_JOB`), and serves only jobs whose
  environment equals it. Importing torch starts no thread when ``OMP_NUM_THREADS=1``
  (every multi-rank job's default); a parent that has threads after its imports says so
  and is not used (``/proc/self/task`` is checked before every fork).

**Import hints, and a spare.** A job's supervisor may write ``JOB_DIR/warm_hints.json``
(:data:`HINTS`: a JSON list of module names) naming what else its processes import (a
pipeline's supervisor: the modules of the notebook's ``imports`` cells that it loaded
from the installed packages and the standard library, when none of them started a
Python thread; see :mod:`kfjupyter.pipelines.local`). Those modules may start native
threads (numpy's BLAS pool does), so the warm parent never imports them itself: it forks
a **spare**, a keeper-to-be that imports them and then waits for one request; the next
job of the parent is handed to the spare (its pid is the job's keeper's) instead of to a
fresh fork, and it starts with the hinted modules loaded, as a supervisor that has
preloaded them would be. A spare is forked only once the job it follows has ended (at
most ``KFJUPYTER_WARM_AFTER_S`` seconds later: the job has the CPUs first), from the
hints of the newest job that wrote any (the first: the cold job that started the
parent). A spare whose hinted imports started a Python thread forks nothing: given its
job it becomes a fresh ``python -m kfjupyter.runtime.keeper`` (an ``exec``, with the
pid the owner was told), the job's cold start. A spare leaves when its warm parent
does (its request pipe's end of file).

The pool (:func:`pool`) is started lazily: the first job of a kind runs cold and starts a
warm parent beside it, for the next. It holds at most ``KFJUPYTER_WARM_SIZE`` parents
(default 2, one per distinct environment; the least recently used goes first), each
leaving after ``KFJUPYTER_WARM_IDLE_S`` seconds without a job (default 600). It is on
unless ``KFJUPYTER_WARM=0``; off, nothing is started. A warm parent never outlives its
owner: it reads its requests from a pipe whose other end only the owner holds, and leaves
at its end of file (the owner exited, however it died); on Linux it also gets SIGKILL
when the owner's thread that started it ends (``PR_SET_PDEATHSIG``). The jobs forked from
it are detached as cold ones are and outlive both.

Usage (the owner starts it): ``python -u -m kfjupyter.runtime.warm [--after PID] MODULE…``, with
``KFJUPYTER_WARM_HINTS=FILE`` in its environment when there are import hints to read
(not on its command line: a job's files are not named there).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

#: Variables a launcher sets per job or per rank and that nothing reads before the
#: program runs: a warm parent's environment is compared without them.
PER_JOB = frozenset({
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
    "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
    "KFJUPYTER_HOME", "KFJUPYTER_JOB_ID", "KFJUPYTER_BUNDLE", "KFJUPYTER_OUTPUT_DIR", "KFJUPYTER_METRICS_FILE",
    "KFJUPYTER_ERROR_FILE", "KFJUPYTER_STORE_FD", "KFJUPYTER_STEP", "KFJUPYTER_WARM", "KFJUPYTER_WARM_SIZE",
    "KFJUPYTER_WARM_IDLE_S", "KFJUPYTER_WARM_AFTER_S", "KFJUPYTER_WARM_HINTS",
    "PYTEST_CURRENT_TEST",  # pytest changes it in every phase of every test
})  # fmt: skip

#: A job's list of modules its processes import beyond a kind's own (see "Import hints").
HINTS = "warm_hints.json"

#: In a warm parent and its forks: the environment it started with (less :data:`PER_JOB`)
#: and the ``sys.path`` a program started as a script gets after its own folder.
_started_env: dict[str, str] | None = None
_base_path: list[str] = []


def enabled() -> bool:
    """Whether jobs start from warm parents: on Linux, unless ``KFJUPYTER_WARM=0``."""
    return sys.platform.startswith("linux") and os.environ.get("KFJUPYTER_WARM", "1").strip() != "0"


def startup_env(env: dict[str, str]) -> dict[str, str]:
    """What of ``env`` a process reads as it starts and imports: all but :data:`PER_JOB`."""
    return {k: v for k, v in env.items() if k not in PER_JOB}


def threads() -> int:
    """This process's threads, as the system counts them (Python's and native ones)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0  # unknown: never fork


def can_fork(env: dict[str, str]) -> bool:
    """Whether a process with environment ``env`` may be forked from this one: it is a
    warm parent's fork started with ``env``'s start-up environment, and has one thread."""
    return _started_env is not None and startup_env(env) == _started_env and threads() == 1


def fork_program(script: Path, env: dict[str, str], *, cwd: str | None, log: Path, keep_fds: tuple[int, ...] = ()):
    """Run ``script`` in a fork of this process as ``python -u script`` would run it with
    environment ``env`` in ``cwd`` (see the module docstring): its own process group,
    output to ``log``. Returns a ``Popen``-like :class:`~.processes.ForkedProcess`."""
    from .processes import fork_child

    return fork_child(lambda: _program_child(Path(script), env, cwd, log, keep_fds), finalize=True, group=True)


def _program_child(script: Path, env: dict[str, str], cwd: str | None, log: Path, keep_fds: tuple[int, ...]) -> int:
    import random
    import runpy

    from .processes import child_io, default_signals, own_group

    default_signals()
    own_group()
    child_io(log, keep_fds)
    os.environ.clear()
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    sys.argv = [str(script)]
    sys.orig_argv = [sys.executable, "-u", str(script)]
    sys.path[:] = [str(script.parent), *_base_path]
    # a fresh process seeds these from the system's entropy; a fork would share its parent's
    random.seed()
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    runpy.run_path(str(script), run_name="__main__")
    return 0


# -- the warm parent process ---------------------------------------------------------------------
def _serve(argv: list[str]) -> None:
    global _started_env, _base_path
    _base_path = list(sys.path[1:])
    after_s = float(os.environ.get("KFJUPYTER_WARM_AFTER_S", "20"))
    if argv[:1] == ["--after"]:  # a cold job is starting: let it have the CPUs first
        _wait_for(int(argv[1]), after_s)
        argv = argv[2:]
    # where to read import hints from, the newest first
    hints = [Path(p) for p in [os.environ.pop("KFJUPYTER_WARM_HINTS", "")] if p]
    modules = argv
    _started_env = startup_env(dict(os.environ))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the jobs it forks are reaped by the system
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    idle = float(os.environ.get("KFJUPYTER_WARM_IDLE_S", "600"))
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    failed = []
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as exc:  # noqa: BLE001  (its jobs will fail with the real error)
            failed.append(f"{module}: {type(exc).__name__}: {exc}")
    count = threads()
    if count != 1:
        reply.write(json.dumps({"ready": False, "why": f"{count} threads after importing {', '.join(modules)}"}) + "\n")
        return
    reply.write(json.dumps({"ready": True, "failed": failed}) + "\n")
    pending = b""
    spare: tuple[int, int] | None = None  # (pid, request pipe) of the spare, once forked
    last_job, last_at = None, 0.0  # the keeper forked last, and when
    active = time.monotonic()
    while True:
        if spare is None and hints and threads() == 1:
            if last_job is None or not _alive(last_job) or time.monotonic() - last_at > after_s:
                names = _read_hints(hints)
                spare = _fork_spare(names, reply.fileno()) if names else None
                if not names:
                    hints = []  # nothing to import: no spare until a job writes hints
        wait = idle - (time.monotonic() - active)
        if hints and spare is None:
            wait = min(wait, 0.2)  # soon: whether the job before the spare has ended
        readable, _, _ = select.select([0], [], [], max(0.0, wait))
        if not readable:
            if time.monotonic() - active >= idle:
                return  # idle too long: the pool shrinks (a spare leaves with it)
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return  # the owner is gone
        active = time.monotonic()
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = None
            if spare is not None:
                pid = _hand_to_spare(spare, line)
                spare = None
            if pid is None and threads() == 1:
                pid = _fork_keeper(request)
            if pid:
                last_job, last_at = pid, time.monotonic()
                hints = [Path(request["job_dir"]) / HINTS, *hints[:1]]  # its hints, once it has written them
            reply.write(json.dumps({"pid": pid}) + "\n")


def _alive(pid: int) -> bool:
    from .processes import alive

    return alive(pid)


def _read_hints(paths: list[Path]) -> list[str]:
    """The module names of the first hints file of ``paths`` that can be read."""
    for path in paths:
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(names, list):
            return [n for n in names if isinstance(n, str) and n]
    return []


def _fork_spare(names: list[str], reply_fd: int) -> tuple[int, int] | None:
    """Fork a spare that imports ``names`` and waits for one request (see the module
    docstring): its pid and the end of its request pipe."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(read_end)
        return pid, write_end
    from .processes import run_as_program

    os.close(write_end)
    run_as_program(lambda: _spare(names, read_end, reply_fd))


def _spare(names: list[str], fd: int, reply_fd: int) -> int:
    import importlib

    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1):  # the owner's pipes are the warm parent's, not the spare's
        os.dup2(null, std)
    os.close(null)
    os.close(reply_fd)
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001,S110  (the job imports it again, and fails with the real error)
            pass
    fresh = threading.active_count() != 1  # forking now could deadlock: start the job cold
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            return 0  # the warm parent is gone, and no job came
        data += chunk
    os.close(fd)
    _become_keeper(json.loads(data.split(b"\n", 1)[0]), fresh=fresh)
    return 0


def _hand_to_spare(spare: tuple[int, int], line: bytes) -> int | None:
    """Give the request ``line`` to the spare: its pid (None: it is gone)."""
    pid, fd = spare
    try:
        ok = _alive(pid) and os.write(fd, line + b"\n") == len(line) + 1
    except OSError:
        ok = False
    finally:
        os.close(fd)
    return pid if ok else None


def _wait_for(pid: int, most: float) -> None:
    from .processes import alive

    deadline = time.monotonic() + most
    while time.monotonic() < deadline and alive(pid):  # (a zombie has ended)
        if select.select([0], [], [], 0.1)[0]:  # the owner wrote, or left: stop waiting
            return


def _fork_keeper(request: dict) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    from .processes import run_as_program

    run_as_program(lambda: _become_keeper(request))


def _become_keeper(request: dict, fresh: bool = False) -> None:
    """In a fork of the warm parent: be the job's keeper, as a cold one would be (with
    ``fresh``, by ``exec``-ing a cold one)."""
    from . import keeper as keeper_module
    from .processes import KEEPER, PRIVATE_UMASK, child_io, default_signals

    default_signals()
    os.setsid()  # a session of its own: it outlives the owner, as a cold keeper does
    os.umask(PRIVATE_UMASK)
    job_dir = Path(request["job_dir"])
    child_io(job_dir / "supervisor.log", keep_fds=())
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if fresh:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", KEEPER, request["module"], str(job_dir)])
    sys.path[0] = request["cwd"]
    sys.argv = [keeper_module.__file__, request["module"], str(job_dir)]
    keeper_module.main([request["module"], str(job_dir)])


# -- the owner's side ---------------------------------------------------------------------------------
class WarmParent:
    """One warm parent process, as its owner sees it."""

    def __init__(self, env: dict[str, str], modules: tuple[str, ...], after: int | None = None,
                 hints: Path | None = None):  # fmt: skip
        from .processes import die_with_parent

        self.env = env
        self.modules = modules
        self.ready: bool | None = None  # None: still importing
        self.why = ""
        self.used = time.monotonic()
        self._pending = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", __name__, *(["--after", str(after)] if after else []), *modules],
            env={**env, **{k: v for k, v in os.environ.items() if k.startswith("KFJUPYTER_WARM_")},
                 **({"KFJUPYTER_WARM_HINTS": str(hints)} if hints else {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True,
            preexec_fn=die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )  # fmt: skip

    def _line(self, timeout: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = max(0.0, deadline - time.monotonic())  # 0: only what has come already
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.ready = False
                self.why = self.why or "it ended"
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def is_ready(self, timeout: float = 0.0) -> bool:
        if self.ready is None:
            answer = self._line(timeout)
            if answer is not None:
                self.ready = bool(answer.get("ready"))
                self.why = answer.get("why", "")
        return bool(self.ready) and self.proc.poll() is None

    def fork(self, module: str, job_dir: Path, env: dict[str, str]) -> int | None:
        """A fork of it running ``module``'s supervisor for ``job_dir``: its pid (None: no fork)."""
        request = {"module": module, "job_dir": str(job_dir), "env": env, "cwd": os.getcwd()}
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.ready = False
            return None
        answer = self._line(10.0)
        self.used = time.monotonic()
        return answer.get("pid") if answer else None

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # it leaves at end of file
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pool:
    """The warm parents of this process (the owner), one per start-up environment."""

    def __init__(self):
        self.lock = threading.Lock()
        self.parents: dict[tuple, WarmParent] = {}

    def size(self) -> int:
        return max(1, int(os.environ.get("KFJUPYTER_WARM_SIZE", "2")))

    @staticmethod
    def key(env: dict[str, str], modules: Iterable[str]) -> tuple:
        return (tuple(sorted(startup_env(env).items())), tuple(modules))

    def parent(self, env: dict[str, str], modules: Iterable[str]) -> WarmParent | None:
        """The ready warm parent for ``env``, if there is one."""
        key = self.key(env, modules)
        with self.lock:
            current = self.parents.get(key)
            if current is not None and (current.proc.poll() is not None or current.ready is False):
                self.parents.pop(key).close()
                current = None
            return current if current is not None and current.is_ready() else None

    def prepare(self, env: dict[str, str], modules: Iterable[str], after: int | None = None,
                hints: Path | None = None) -> None:  # fmt: skip
        """Start the warm parent for ``env`` unless there is one (it imports once the
        process ``after`` has ended, at most ``KFJUPYTER_WARM_AFTER_S`` seconds later;
        ``hints``: the import hints file of that job, see the module docstring)."""
        key = self.key(env, modules)
        with self.lock:
            if key in self.parents:
                return
            while len(self.parents) >= self.size():
                oldest = min(self.parents, key=lambda k: self.parents[k].used)
                self.parents.pop(oldest).close()
            self.parents[key] = WarmParent(startup_env(env), key[1], after, hints)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until every warm parent started has done its imports; whether all are ready."""
        deadline = time.monotonic() + timeout
        with self.lock:
            parents = list(self.parents.values())
        return all(p.is_ready(max(0.0, deadline - time.monotonic())) for p in parents)

    def pids(self) -> list[int]:
        with self.lock:
            return [p.proc.pid for p in self.parents.values() if p.proc.poll() is None]

    def close(self) -> None:
        with self.lock:
            parents, self.parents = list(self.parents.values()), {}
        for parent in parents:
            parent.close()


_pool = Pool()


def pool() -> Pool:
    return _pool


def start_detached(module: str, job_dir: Path, env: dict[str, str], *, warm_env: dict[str, str] | None,
                   modules: tuple[str, ...]) -> dict:  # fmt: skip
    """Start ``module``'s supervisor for ``job_dir`` as :func:`~.processes.start_detached`
    does, as a fork of the warm parent for ``warm_env`` when one is ready (``"warm":
    True`` in what it returns); else cold, starting that warm parent for the next job."""
    from .processes import create_time
    from .processes import start_detached as start_cold

    if warm_env is None or not enabled():
        return start_cold(module, job_dir, env)
    parent = _pool.parent(warm_env, modules)
    pid = parent.fork(module, job_dir, env) if parent is not None else None
    if pid:
        return {"pid": pid, "create_time": create_time(pid), "job_dir": str(job_dir), "warm": True}
    info = start_cold(module, job_dir, env)
    _pool.prepare(warm_env, modules, after=info["pid"], hints=Path(job_dir) / HINTS)
    return info


if __name__ == "__main__":
    from kfjupyter.runtime import warm  # the module its forks import, not this __main__ copy

    warm._serve(sys.argv[1:])  # noqa: SLF001
    # Idle, or its owner gone: leave at once. It holds nothing to write out, and an
    # interpreter's teardown of torch and the rest takes seconds (more on a busy machine).
    sys.stdout.flush()
    os._exit(0)
