"""Warm kernels: a notebook run starts on a kernel that is already running.

Starting a kernel (an interpreter, IPython, ipykernel, its sockets answering) is most of
what a small papermill run costs. So the process that submits runs (the *owner*: the
kernel or server that calls :func:`~kfjupyter.notebook_runs.run_notebook`, or a sweep's
supervisor) keeps a few kernels started ahead, and a run takes one instead of starting
its own. The design: **one kernel per run, never reused; a kernel that could differ from
the one a cold run would start is not used.**

* **The pool process.** The kernels are started, held and reaped by a small process of
  the owner's (``python -m kfjupyter.notebook_runs.kernels OWNER_PID``), with
  jupyter_client exactly as papermill starts one: the run's kernelspec, looked up with
  the run's environment, launched in the run's folder with the run's environment and
  umask, in a session of its own. A kernel counts as ready once it has answered a
  ``kernel_info`` request. The owner talks to the pool process over a pipe that only it
  holds (JSON lines).
* **Sets.** Kernels are kept per *set*: kernelspec name, working directory, and the
  environment the kernel starts with (a digest of it, less :data:`PER_RUN`, the few
  variables the runner sets per run). A run takes a kernel only from the set equal to
  what a cold start would give it; anything else (another kernelspec, folder,
  environment variable, umask; a folder replaced since; a kernelspec that is not Python)
  starts cold.
* **Lazily started, refilled, shrinking.** Nothing runs until the first run of a set:
  that run starts cold and the set's kernel starts after it ends (at most
  :data:`AFTER_S` seconds later, so it does not compete with it), and after each take
  the set is refilled the same way. A set holds ``KFJUPYTER_WARM_KERNELS_SIZE`` kernels
  (default 1); a sweep's supervisor plans its grid instead: ``max_parallel`` kernels
  started at once, refilled at once, none beyond the grid's last run. At most
  :data:`MAX_SETS` sets (the least recently used goes first); a set not used for
  ``KFJUPYTER_WARM_KERNELS_IDLE_S`` seconds (default 600) is shut down, and the pool
  process leaves once it holds nothing.
* **The hand-over.** A run's launch file names its kernel's connection file, and the
  kernel's process group is one of the job's from the run's start (so cancel and every
  end of the job stop it, as a cold kernel's). The run's supervisor checks the kernel is
  the one it would have started (same set; alive; its working directory the same
  folder) and connects to it with a kernel manager attached to the running process
  (:class:`PooledKernelManager`). Before the first cell it sets, in the kernel, the
  per-run variables a cold kernel would have had (``KFJUPYTER_JOB_ID``,
  ``KFJUPYTER_METRICS_FILE``, ``JPY_PARENT_PID`` …) with one silent execution (no
  history, no execution count, no output, no names); its replies, on the shell and the
  IOPub channel, are what papermill's wait for a new kernel checks. papermill then runs
  the notebook on it as on its own kernel, and the supervisor shuts it down after the
  run as papermill does (interrupt, shutdown request, then signals). From then on the
  kernel's own standard output and error (what ipykernel echoes of file-descriptor
  output, its crash messages) go to the job's ``supervisor.log``, as a cold kernel's do.
  If anything in the hand-over fails, the kernel is stopped and the run starts cold.
* **What differs from a cold kernel.** Its parent process is the pool process, not the
  run's supervisor, and it was started before the run; ``/proc/PID/environ`` (what tools
  like ``ps e`` show) is the environment it started with, though ``os.environ`` and every
  process it starts have the run's variables; what ipykernel says as it starts is in the
  pool's log (``kfjupyter-kernel-pool-PID.log`` in Jupyter's runtime folder, kept only if
  the pool had something to say itself). It is a process started as a cold kernel is
  (no fork): its interpreter, hash seed and random state are its own.
* **Never left behind.** The pool process reads a pipe only its owner holds (a fork of
  the owner closes its copy: :func:`os.register_at_fork`) and watches its parent: once
  the owner is gone, however it ended, it stops the kernels no run took and stays only
  until the taken ones have ended, each bound to its run's keeper (a taken kernel whose
  keeper is gone is stopped). Its kernels get the pool process's pid in
  ``JPY_PARENT_PID``, so ipykernel ends them should the pool process itself be killed.
* **Off switch.** ``KFJUPYTER_WARM_KERNELS=0``: nothing is started and every run starts
  its own kernel. On by default on POSIX systems.

Usage (the owner starts it): ``python -m kfjupyter.notebook_runs.kernels OWNER_PID LOG``.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..files import PRIVATE_UMASK
from ..runtime.processes import alive, create_time, kill_groups

SWITCH = "KFJUPYTER_WARM_KERNELS"
SIZE = "KFJUPYTER_WARM_KERNELS_SIZE"
IDLE = "KFJUPYTER_WARM_KERNELS_IDLE_S"
#: What every run's kernel gets on top of its supervisor's environment (the runner sets it).
RUN_ENV = {"PYTHONUNBUFFERED": "1"}
#: Variables set per run (by the runner, and jupyter_client's ``JPY_PARENT_PID``), or read
#: only by this pool: a pooled kernel's environment is compared without them, and they are
#: set in it when a run takes it. Nothing else is: what a kernel reads as it starts is
#: not known (ipykernel itself reads ``PYTEST_CURRENT_TEST``, for one).
PER_RUN = frozenset({"KFJUPYTER_JOB_ID", "KFJUPYTER_METRICS_FILE", "KFJUPYTER_OUTPUT_DIR", "KFJUPYTER_ERROR_FILE",
                     "JPY_PARENT_PID", SWITCH, SIZE, IDLE})  # fmt: skip
#: Sets of kernels a pool keeps at once.
MAX_SETS = 2
#: Seconds a refill waits for the run that took a set's kernel (or started cold) to end.
AFTER_S = 20.0
#: Seconds the owner waits for the pool process to answer before it does without.
REPLY_S = 5.0
#: Seconds a kernel may take to start in the pool before its start counts as failed.
READY_S = 60.0
#: Seconds a taken kernel waits for its run's keeper to be named before it is stopped.
UNBOUND_S = 60.0
#: Failed starts after which a set starts no more kernels.
MAX_FAILURES = 3
TICK_S = 0.5


def enabled() -> bool:
    return os.name == "posix" and os.environ.get(SWITCH, "1") != "0"


def start_env(env: dict[str, str]) -> dict[str, str]:
    """What of ``env`` a kernel reads as it starts: all but :data:`PER_RUN`."""
    return {k: v for k, v in env.items() if k not in PER_RUN}


def env_digest(env: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(start_env(env).items())).encode()).hexdigest()


def run_request(kernel: str, cwd: str, env: dict[str, str], log: Path) -> dict | None:
    """What a run asks the pool for: a kernel of kernelspec ``kernel`` started in ``cwd``
    with environment ``env`` (the run's supervisor's, less the per-run variables, plus
    :data:`RUN_ENV`); its output to ``log`` once taken. None: the pool is off."""
    if not enabled():
        return None
    env = start_env({**env, **RUN_ENV})
    return {"kernel": kernel, "cwd": str(cwd), "env": env, "digest": env_digest(env), "umask": PRIVATE_UMASK,
            "log": str(log)}  # fmt: skip


def _set_key(request: dict) -> str:
    return f"{request['kernel']}\0{request['cwd']}\0{request['digest']}\0{request['umask']}"


# -- the owner's side --------------------------------------------------------------------------
def _never_fails(method):
    """The pool never fails a run: what goes wrong in it is said once, and the run starts cold."""
    import functools

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if not self._warned:
                self._warned = True
                import warnings

                warnings.warn(f"kfjupyter's warm kernels: {type(exc).__name__}: {exc} (runs start their own kernels)",
                              RuntimeWarning, stacklevel=3)  # fmt: skip
            return None

    return call


class KernelPool:
    """The owner's handle on its pool process (started on first use; one per process)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self._pending = b""
        self._seq = 0
        #: a sweep's grid, per set: [runs not yet started, max_parallel]
        self.plans: dict[str, list[int]] = {}
        self._started = 0.0
        self._failures = 0  # pool processes that ended at once
        self._warned = False
        #: kernels kept ready per set for this process's later runs (None: ``KFJUPYTER_WARM_KERNELS_SIZE``,
        #: default 1); a one-shot owner (``kfjupyter run``) keeps none
        self.keep: int | None = None

    def size(self) -> int:
        return max(0, self.keep if self.keep is not None else int(os.environ.get(SIZE, "1")))

    # -- the pool process --------------------------------------------------------------
    def _daemon(self, start: bool) -> subprocess.Popen | None:
        if self.proc is not None and self.proc.poll() is not None:
            if self.proc.returncode != 0 and time.monotonic() - self._started < 10:
                self._failures += 1  # it could not even start: after a few, this process goes without
            self._drop()
        if self.proc is None and start and self._failures < MAX_FAILURES:
            self._started = time.monotonic()
            from jupyter_core.paths import jupyter_runtime_dir

            folder = Path(jupyter_runtime_dir())
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            log = folder / f"kfjupyter-kernel-pool-{os.getpid()}.log"
            with open(log, "ab") as err:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(os.getpid()), str(log)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, close_fds=True,
                    start_new_session=True,  # its taken kernels' runs outlive the owner: so may it, until they end
                    umask=PRIVATE_UMASK,  # what a run's supervisor, and so a cold kernel, has
                    env=dict(os.environ),
                )  # fmt: skip
            self._pending = b""
        return self.proc

    def _drop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            proc.poll()

    def _send(self, request: dict, start: bool = False) -> int | None:
        proc = self._daemon(start)
        if proc is None:
            return None
        self._seq += 1
        try:
            proc.stdin.write(json.dumps({**request, "id": self._seq}).encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._drop()
            return None
        return self._seq

    def _ask(self, request: dict, timeout: float) -> dict | None:
        seq = self._send(request)
        if seq is None:
            return None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                answer = json.loads(line)
                if answer.get("id") == seq:
                    return answer
                if answer.get("kernel"):  # the answer to a take we gave up on
                    self._send({"op": "release", "taken": answer["kernel"]["id"]})
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self._drop()
                return None
            self._pending += chunk

    # -- what runs ask ---------------------------------------------------------------------
    @_never_fails
    def take(self, request: dict | None) -> dict | None:
        """A ready kernel of ``request``'s set, taken for one run (None: the run starts cold)."""
        if request is None:
            return None
        key = _set_key(request)
        with self.lock:
            plan = self.plans.get(key)
            if self._daemon(start=False) is None:
                return None  # the first run: cold (:meth:`started` starts the pool)
            if plan is not None:  # a sweep: its kernels are on their way, wait for one
                plan[0] = max(0, plan[0] - 1)
                keep, wait = min(plan[1], plan[0]), READY_S
            else:
                keep, wait = self.size(), 0.0
            answer = self._ask({"op": "take", **request, "keep": keep, "wait": wait}, timeout=wait + REPLY_S)
            return answer.get("kernel") if answer else None

    @_never_fails
    def started(self, request: dict | None, kernel: dict | None, info: dict) -> None:
        """A run's keeper has started (``info``: its pid and start time) with ``kernel`` (a
        taken one, now owned by that keeper) or cold: refill the set, after the run unless
        it is part of a planned sweep."""
        if request is None:
            return
        key = _set_key(request)
        with self.lock:
            plan = self.plans.get(key)
            if kernel is None and plan is None and self.size() == 0:
                return
            keeper = [info.get("pid"), info.get("create_time")]
            self._send({"op": "started", **request, "taken": (kernel or {}).get("id"), "keeper": keeper,
                        "keep": min(plan[1], plan[0]) if plan is not None else self.size(),
                        "after": None if plan is not None else keeper}, start=True)  # fmt: skip

    @_never_fails
    def release(self, kernel: dict) -> None:
        """A taken kernel no run will use: stopped."""
        with self.lock:
            self._send({"op": "release", "taken": kernel["id"]})

    @_never_fails
    def plan(self, request: dict | None, runs: int, parallel: int) -> None:
        """A sweep of ``runs`` runs, ``parallel`` at a time, will take kernels of
        ``request``'s set: start them now, and keep as many ready as it will still take."""
        if request is None or runs <= 0:
            return
        with self.lock:
            self.plans[_set_key(request)] = [runs, parallel]
            self._send({"op": "prepare", **request, "keep": min(runs, parallel), "after": None}, start=True)

    def status(self) -> dict:
        """How many kernels are ``ready``, ``starting`` and ``taken``, and their pids
        (``ready_pids``, ``taken_pids``, ``pids``): zeros when no pool process runs."""
        with self.lock:
            answer = self._ask({"op": "status"}, REPLY_S) if self._daemon(start=False) else None
        return answer or {"ready": 0, "starting": 0, "taken": 0, "pids": [], "ready_pids": [], "taken_pids": []}

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until no kernel of the pool is still starting; whether none is."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.status()["starting"]:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """The pool process and its kernels (ready and taken)."""
        with self.lock:
            proc = self._daemon(start=False)
            return ([proc.pid] + list(self.status()["pids"])) if proc is not None else []

    def close(self, timeout: float = 10.0) -> None:
        """End the pool process as the owner's exit would (its taken kernels' runs go on)."""
        with self.lock:
            proc, self.plans = self.proc, {}
            self._drop()
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass

    def _after_fork(self) -> None:
        """In a fork of the owner: the pool is the parent's, and only its pipe keeps it."""
        self.lock = threading.RLock()
        proc, self.proc, self.plans = self.proc, None, {}
        if proc is not None:
            _forked_away.append(proc)  # the parent's child: never waited for here
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()  # (nothing is buffered: every request is flushed)
                except (OSError, ValueError):
                    pass


_pool = KernelPool()
_forked_away: list = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool._after_fork)  # noqa: SLF001


def pool() -> KernelPool:
    return _pool


# -- the run's side: a kernel manager attached to a pooled kernel ---------------------------------
def _manager_classes():
    """The classes of :class:`PooledKernelManager` (jupyter_client is loaded late)."""
    global PooledKernelManager, HandoverClient, AttachedProvisioner
    if "PooledKernelManager" in globals():
        return PooledKernelManager
    import asyncio
    from queue import Empty

    from jupyter_client import AsyncKernelClient, AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.provisioning import KernelProvisionerBase

    class AttachedProvisioner(KernelProvisionerBase):
        """A kernel process this one did not start: found by pid (and start time),
        signalled as a process group (it leads its own, as jupyter_client starts it)."""

        pid: int | None = None
        started: float | None = None

        @property
        def has_process(self) -> bool:
            return self.pid is not None

        async def poll(self) -> int | None:
            return None if alive(self.pid, self.started) else 0

        async def wait(self) -> int | None:
            while alive(self.pid, self.started):
                await asyncio.sleep(0.005)
            return 0

        async def send_signal(self, signum: int) -> None:
            if alive(self.pid, self.started):
                try:
                    os.killpg(self.pid, signum)
                except (ProcessLookupError, PermissionError):
                    pass

        async def kill(self, restart: bool = False) -> None:
            await self.send_signal(signal.SIGKILL)

        async def terminate(self, restart: bool = False) -> None:
            await self.send_signal(signal.SIGTERM)

        async def launch_kernel(self, cmd: list[str], **kwargs: Any):
            raise RuntimeError("a pooled kernel is started by its pool, never by its run")

        async def cleanup(self, restart: bool = False) -> None:
            pass

    class HandoverClient(AsyncKernelClient):
        """The client papermill gets: connected and handed over before papermill starts."""

        handed_over = False

        async def wait_for_ready(self, timeout: float | None = None) -> None:
            if not self.handed_over:
                await super().wait_for_ready(timeout=timeout)

        async def hand_over(self, code: str, timeout: float) -> None:
            """Run ``code`` silently (the per-run variables), and wait for what papermill's
            wait for a new kernel waits for: a ``kernel_info`` reply on the shell channel and
            the IOPub channel delivering (the kernel's ``idle`` after a request of ours)."""
            deadline = time.monotonic() + timeout
            self.iopub_channel  # noqa: B018  (connected first: its subscription has the most time to take)
            asked = {self.kernel_info(): "info", self.execute(code, silent=True, store_history=False,
                                                               allow_stdin=False): "code"}  # fmt: skip
            replies: dict[str, dict] = {}
            while len(replies) < 2:
                msg = await self._next(self.shell_channel, deadline)
                what = asked.get(msg["parent_header"].get("msg_id"))
                if what:
                    replies[what] = msg
            self._handle_kernel_info_reply(replies["info"])
            content = replies["code"]["content"]
            if content.get("status") != "ok":
                raise RuntimeError(f"the hand-over failed: {content.get('ename')}: {content.get('evalue')}")
            # IOPub is a subscription: until it is in place the kernel's messages pass us by,
            # so ask again (kernel_info: no side effect) until one of our idles comes through
            while True:
                try:
                    msg = await self._next(self.iopub_channel, min(deadline, time.monotonic() + 0.02))
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
                    asked[self.kernel_info()] = "info"
                    continue
                if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                        and msg["parent_header"].get("msg_id") in asked):  # fmt: skip
                    break
            for channel in (self.iopub_channel, self.shell_channel):  # what is left of ours: gone
                while True:
                    try:
                        await channel.get_msg(timeout=0)
                    except Empty:
                        break
            self.handed_over = True

        async def _next(self, channel, deadline: float) -> dict:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the pooled kernel did not answer")
                try:
                    return await channel.get_msg(timeout=min(left, 0.5))
                except Empty:
                    if not await self._async_is_alive():
                        raise RuntimeError("the pooled kernel died") from None

    class PooledKernelManager(AsyncKernelManager):
        """papermill's kernel manager for a pooled kernel (``km=``): it has the kernel
        already, hands out one client (connected and handed over), and shuts the kernel
        down as papermill's own kernel manager does."""

        def __init__(self, handle: dict, **kwargs: Any):
            super().__init__(kernel_name=handle["kernel"], **kwargs)
            self.handle = handle
            info = handle["spec"]
            self.pooled_spec = KernelSpec(argv=info["argv"], display_name=info["display_name"],
                                          language=info["language"], interrupt_mode=info["interrupt_mode"],
                                          metadata=info.get("metadata") or {}, resource_dir=info["resource_dir"])  # fmt: skip
            self.load_connection_file(handle["connection_file"])
            self.provisioner = AttachedProvisioner(kernel_id=handle["id"], kernel_spec=self.pooled_spec, parent=self)
            self.provisioner.pid, self.provisioner.started = handle["pid"], handle["create_time"]
            self.kernel_id = handle["id"]
            self._client: HandoverClient | None = None

        @property
        def kernel_spec(self):
            return self.pooled_spec

        def client(self, **kwargs: Any):
            if self._client is None:
                kw = {**self.get_connection_info(session=True), "connection_file": self.connection_file,
                      "parent": self, **kwargs}  # fmt: skip
                self._client = HandoverClient(**kw)
            return self._client

        async def stop(self, timeout: float = 5.0) -> None:
            """After the run: what papermill's shutdown of its kernel does (interrupt, a
            shutdown request, a wait, then SIGTERM and SIGKILL), polled finely."""
            try:
                if await self.is_alive():
                    await self.interrupt_kernel()
                    await self.request_shutdown()
                    await self.finish_shutdown(waittime=timeout, pollinterval=0.005)
            finally:
                await self.cleanup_resources()
                if self._client is not None:
                    self._client.stop_channels()
                try:
                    os.unlink(self.connection_file)
                except OSError:
                    pass

    globals().update(PooledKernelManager=PooledKernelManager, HandoverClient=HandoverClient,
                     AttachedProvisioner=AttachedProvisioner)  # fmt: skip
    return PooledKernelManager


def _handover_code(cold_env: dict[str, str]) -> str:
    """Python that gives the kernel's ``os.environ`` the per-run variables of ``cold_env``
    (the environment a cold kernel would start with), binding no name."""
    present = {k: v for k, v in cold_env.items() if k in PER_RUN}
    absent = sorted(k for k in PER_RUN if k not in cold_env)
    return f"(lambda e: (e.update({present!r}), [e.pop(k, None) for k in {absent!r}]))(__import__('os').environ)"


def _same_folder(pid: int, cwd: str) -> bool:
    try:
        if os.path.exists(f"/proc/{pid}/cwd"):
            return os.path.samestat(os.stat(f"/proc/{pid}/cwd"), os.stat(cwd))
        import psutil

        return os.path.samefile(psutil.Process(pid).cwd(), cwd)
    except (OSError, Exception):  # noqa: BLE001  (gone, or not ours to see: not the same)
        return False


def discard(handle: dict) -> None:
    """Stop a pooled kernel a run will not use."""
    if alive(handle.get("pid"), handle.get("create_time")):
        kill_groups([handle["pid"]], grace=2.0)
    try:
        os.unlink(handle["connection_file"])
    except OSError:
        pass


def attach(handle: dict, *, kernel: str, cwd: str, env: dict[str, str], timeout: float, why: list[str]):
    """In a run's supervisor: the :class:`PooledKernelManager` of the pooled kernel
    ``handle``, handed over, if it is the kernel a cold start would give a run of
    kernelspec ``kernel`` in ``cwd`` with environment ``env`` (this process's, as the
    kernel would inherit it); else None (the kernel is stopped, ``why`` says why)."""
    from jupyter_core.utils import run_sync

    umask = os.umask(0)
    os.umask(umask)
    cold_env = {**env, "JPY_PARENT_PID": str(os.getpid())}
    checks = {
        "another kernelspec": handle.get("kernel") == kernel,
        "another folder": handle.get("cwd") == cwd,
        "another environment": handle.get("digest") == env_digest(cold_env),
        "another umask": handle.get("umask") == umask,
        "it is gone": alive(handle.get("pid"), handle.get("create_time")),
    }
    failed = [reason for reason, ok in checks.items() if not ok]
    if not failed and not _same_folder(handle["pid"], cwd):
        failed.append("its folder was replaced")
    if failed:
        why.append(", ".join(failed))
        discard(handle)
        return None
    km = None
    try:
        km = _manager_classes()(handle)
        client = km.client()
        run_sync(client.hand_over)(_handover_code(cold_env), timeout)
        return km
    except Exception as exc:  # noqa: BLE001  (the run starts cold: say why)
        why.append(f"{type(exc).__name__}: {exc}")
        if km is not None and km._client is not None:  # noqa: SLF001
            km._client.stop_channels()  # noqa: SLF001
        discard(handle)
        return None


def stop(km, timeout: float = 5.0) -> None:
    """Shut a run's pooled kernel down (see :meth:`PooledKernelManager.stop`)."""
    from jupyter_core.utils import run_sync

    run_sync(km.stop)(timeout)


# -- the pool process ---------------------------------------------------------------------------------
class _Kernel:
    """A kernel of the pool process: its manager, its process, where its output goes."""

    def __init__(self, km, spec, sink: int):
        self.km = km
        self.proc = km.provisioner.process
        self.pid = self.proc.pid
        self.created = create_time(self.pid)
        self.id = km.kernel_id
        self.spec = spec
        self.sink = sink
        self.keeper: list | None = None
        self.taken_at: float | None = None
        self.killed_at: float | None = None

    def handle(self, kset: "_Set") -> dict:
        spec = self.spec
        return {"id": self.id, "connection_file": self.km.connection_file, "pid": self.pid, "create_time": self.created,
                "kernel": kset.kernel, "cwd": kset.cwd, "digest": kset.digest, "umask": kset.umask,
                "spec": {"argv": spec.argv, "display_name": spec.display_name, "language": spec.language,
                         "interrupt_mode": spec.interrupt_mode, "metadata": spec.metadata,
                         "resource_dir": spec.resource_dir}}  # fmt: skip

    def running(self) -> bool:
        return self.proc.poll() is None


class _Set:
    """The kernels of one kernelspec, folder and environment."""

    def __init__(self, request: dict):
        self.kernel = request["kernel"]
        self.cwd = request["cwd"]
        self.env = dict(request["env"])
        self.digest = request["digest"]
        self.umask = request["umask"]
        self.target = 0
        self.ready: list[_Kernel] = []
        self.starting: set = set()
        self.used = time.monotonic()
        self.failures = 0
        self.dropped = False
        self.broken = ""


class _Daemon:
    def __init__(self, owner: int, log: str):
        import asyncio

        self.owner = owner
        self.log = log
        self.sets: dict[str, _Set] = {}
        self.taken: dict[str, _Kernel] = {}
        self.ending: dict[str, _Kernel] = {}  # stopped, not yet gone
        self.requests: asyncio.Queue = asyncio.Queue()
        self.changed = asyncio.Event()
        self.launching = asyncio.Lock()
        self.closing = False
        self.idle = float(os.environ.get(IDLE, "600"))
        self.active = time.monotonic()
        self.tasks: set = set()
        self.said = False  # its log is kept if it had something to say

    def say(self, text: str) -> None:
        self.said = True
        os.write(2, f"{time.strftime('%H:%M:%S')} kernel pool: {text}\n".encode())

    def reply(self, answer: dict) -> None:
        os.write(self.out, (json.dumps(answer) + "\n").encode())

    # -- requests ------------------------------------------------------------------------
    def on_stdin(self) -> None:
        try:
            chunk = os.read(0, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.loop.remove_reader(0)
            self.requests.put_nowait(None)
            return
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.requests.put_nowait(json.loads(line))

    async def serve(self) -> None:
        while True:
            request = await self.requests.get()
            if request is None:
                self.close()
                continue
            self.active = time.monotonic()
            try:
                await self.handle(request)
            except Exception:  # noqa: BLE001  (a bad request answers "no kernel"; the pool goes on)
                import traceback

                self.say(traceback.format_exc())
                if request.get("op") in ("take", "status"):
                    self.reply({"id": request.get("id"), "kernel": None, "ready": 0, "starting": 0, "taken": 0,
                                "pids": [], "ready_pids": [], "taken_pids": []})  # fmt: skip

    async def handle(self, request: dict) -> None:
        op = request["op"]
        if op == "take":
            kset = self.kernel_set(request)
            kset.target = int(request.get("keep", kset.target))
            kernel = None if self.closing else await self.pop(kset, float(request.get("wait") or 0))
            if kernel is not None:
                kernel.taken_at = time.monotonic()
                self.taken[kernel.id] = kernel
                kernel.sink = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self.reply({"id": request["id"], "kernel": kernel.handle(kset) if kernel else None})
        elif op == "started":
            kset = self.kernel_set(request)
            kset.target = int(request.get("keep", kset.target))
            kernel = self.taken.get(request.get("taken") or "")
            if kernel is not None:
                kernel.keeper = request.get("keeper")
            self.fill(kset, after=request.get("after"))
        elif op == "prepare":
            kset = self.kernel_set(request)
            kset.target = max(kset.target, int(request.get("keep", 1)))
            self.fill(kset, after=request.get("after"))
        elif op == "release":
            kernel = self.taken.get(request.get("taken") or "")
            if kernel is not None:
                self.kill(kernel)
        elif op == "status":
            ready = [k.pid for s in self.sets.values() for k in s.ready if k.running()]
            taken = [k.pid for k in self.taken.values() if k.running()]
            self.reply({"id": request["id"], "ready": len(ready), "taken": len(taken), "ready_pids": ready,
                        "taken_pids": taken, "pids": ready + taken,
                        "starting": sum(len(s.starting) for s in self.sets.values())})  # fmt: skip

    def kernel_set(self, request: dict) -> _Set:
        key = _set_key(request)
        kset = self.sets.pop(key, None)
        if kset is None:
            kset = _Set(request)
            while len(self.sets) >= MAX_SETS:  # the least recently used goes
                self.drop(self.sets.pop(min(self.sets, key=lambda k: self.sets[k].used)))
        kset.used = time.monotonic()
        self.sets[key] = kset
        return kset

    async def pop(self, kset: _Set, wait: float) -> _Kernel | None:
        import asyncio

        deadline = time.monotonic() + wait
        while True:
            while kset.ready:
                kernel = kset.ready.pop(0)
                if kernel.running():
                    return kernel
                self.forget(kernel)
            left = deadline - time.monotonic()
            if not kset.starting or left <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                pass

    # -- kernels ----------------------------------------------------------------------------
    def fill(self, kset: _Set, after: list | None = None) -> None:
        import asyncio

        while not self.closing and not kset.broken and len(kset.ready) + len(kset.starting) < kset.target:
            task = asyncio.ensure_future(self.start(kset, after))
            kset.starting.add(task)
            task.add_done_callback(lambda t, s=kset: (s.starting.discard(t), self.changed.set()))

    async def start(self, kset: _Set, after: list | None) -> None:
        import asyncio

        from jupyter_client import AsyncKernelManager

        try:
            deadline = time.monotonic() + AFTER_S
            while after and alive(*after) and time.monotonic() < deadline and not (kset.dropped or self.closing):
                await asyncio.sleep(0.1)
            if kset.dropped or self.closing:
                return
            async with self.launching:  # one at a time: the lookup reads this process's environment
                saved = dict(os.environ)
                os.environ.clear()
                os.environ.update(kset.env)
                try:
                    km = AsyncKernelManager(kernel_name=kset.kernel)  # looked up as the run would
                    spec = km.kernel_spec
                    refusal = _not_poolable(spec)
                    if refusal:
                        kset.broken = refusal
                        self.say(f"{kset.kernel}: not pooled: {refusal}")
                        return
                    await km.start_kernel(cwd=kset.cwd, env=dict(kset.env), stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT)  # fmt: skip
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
            kernel = _Kernel(km, spec, sink=2)
            self.relay(kernel)
            await self.answers(km)
            if kset.dropped or self.closing:
                await self.stop(kernel)
                return
            kset.ready.append(kernel)
            kset.failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (the run starts cold; after a few, so does every one)
            kset.failures += 1
            self.say(f"{kset.kernel} in {kset.cwd}: a kernel did not start: {type(exc).__name__}: {exc}")
            if kset.failures >= MAX_FAILURES:
                kset.broken = f"{kset.failures} kernels did not start"

    async def answers(self, km) -> None:
        """Wait until the kernel answers a ``kernel_info`` request (the IOPub channel is the
        run's to check, as it connects: see :meth:`HandoverClient.hand_over`)."""
        from queue import Empty

        client = km.client()
        client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        try:
            deadline = time.monotonic() + READY_S
            asked = {client.kernel_info()}
            while True:
                try:
                    msg = await client.shell_channel.get_msg(timeout=1.0)
                except Empty:
                    if not await km.is_alive():
                        raise RuntimeError("the kernel died as it started") from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the kernel did not answer in {READY_S:.0f} s") from None
                    asked.add(client.kernel_info())  # as jupyter_client does: ask again
                    continue
                if msg["msg_type"] == "kernel_info_reply" and msg["parent_header"].get("msg_id") in asked:
                    return
        finally:
            client.stop_channels()

    def relay(self, kernel: _Kernel) -> None:
        """The kernel's standard output and error, to where its run's cold kernel's would go."""
        fd = kernel.proc.stdout.fileno()
        os.set_blocking(fd, False)

        def copy() -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(fd)
                return
            try:
                os.write(kernel.sink, data)
            except OSError:
                pass

        self.loop.add_reader(fd, copy)

    async def stop(self, kernel: _Kernel) -> None:
        """Shut an untaken kernel down (it ran no run's code)."""
        import asyncio

        try:
            await asyncio.wait_for(kernel.km.shutdown_kernel(now=False), timeout=5.0)
        except Exception:  # noqa: BLE001
            self.kill(kernel)
        self.forget(kernel)

    def kill(self, kernel: _Kernel) -> None:
        """SIGTERM its process group; SIGKILL if it was sent SIGTERM before and is still there
        (the next ticks see to it)."""
        sig = signal.SIGKILL if kernel.killed_at is not None else signal.SIGTERM
        kernel.killed_at = kernel.killed_at or time.monotonic()
        if kernel.running():
            try:
                os.killpg(kernel.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def forget(self, kernel: _Kernel) -> None:
        """A kernel that has ended: reaped, its files and sockets gone."""
        import asyncio

        kernel.proc.poll()
        if kernel.proc.returncode is None:
            self.ending[kernel.id] = kernel  # not yet: the next ticks look again (and SIGKILL it)
            return
        self.taken.pop(kernel.id, None)
        self.ending.pop(kernel.id, None)
        try:
            self.loop.remove_reader(kernel.proc.stdout.fileno())
            kernel.proc.stdout.close()
        except (OSError, ValueError):
            pass
        if kernel.sink != 2:
            os.close(kernel.sink)
            kernel.sink = 2
        task = asyncio.ensure_future(kernel.km.cleanup_resources())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def drop(self, kset: _Set) -> None:
        import asyncio

        kset.dropped = True
        kset.target = 0
        ready, kset.ready = kset.ready, []
        for kernel in ready:
            task = asyncio.ensure_future(self.stop(kernel))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        """The owner has gone: stop what no run took; the taken kernels go with their runs."""
        if not self.closing:
            self.closing = True
            for kset in list(self.sets.values()):
                self.drop(kset)
            self.sets.clear()
            for kernel in list(self.taken.values()):
                if kernel.keeper is None:  # its run's keeper never got it: nobody will
                    self.kill(kernel)
            self.changed.set()

    def tick(self) -> None:
        now = time.monotonic()
        if os.getppid() != self.owner:
            self.close()
        for kernel in list(self.taken.values()):
            if not kernel.running():
                self.forget(kernel)
            elif kernel.killed_at is not None:
                self.kill(kernel)  # still there: SIGKILL
            elif kernel.keeper is not None and not alive(*kernel.keeper):
                self.say(f"kernel {kernel.pid}: its run's keeper is gone: stopped")
                self.kill(kernel)
            elif kernel.keeper is None and now - kernel.taken_at > UNBOUND_S:
                self.say(f"kernel {kernel.pid}: taken but never given to a run: stopped")
                self.kill(kernel)
        for kernel in list(self.ending.values()):
            if kernel.running() and (kernel.killed_at is None or now - kernel.killed_at > 2.0):
                self.kill(kernel)
            self.forget(kernel)
        for key, kset in list(self.sets.items()):
            for kernel in list(kset.ready):
                if not kernel.running():  # died waiting: another one
                    kset.ready.remove(kernel)
                    self.forget(kernel)
                    kset.failures += 1
                    if kset.failures >= MAX_FAILURES:
                        kset.broken = "its kernels keep dying"
                    self.fill(kset)
            if now - kset.used > self.idle:
                self.drop(self.sets.pop(key))

    def done(self) -> bool:
        if self.taken or self.ending or self.tasks or any(s.starting for s in self.sets.values()):
            return False
        empty = not any(s.ready for s in self.sets.values())
        return self.closing or (empty and time.monotonic() - self.active > self.idle)

    async def main(self) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.out = os.dup(1)
        os.dup2(2, 1)  # nothing but answers on the owner's pipe
        self.buffer = b""
        os.set_blocking(0, False)
        self.loop.add_reader(0, self.on_stdin)
        self.loop.add_signal_handler(signal.SIGTERM, self.terminate)
        server = asyncio.ensure_future(self.serve())
        while not self.done():
            await asyncio.sleep(TICK_S)
            try:
                self.tick()
            except Exception:  # noqa: BLE001  (the pool holds taken kernels: it must not end here)
                import traceback

                self.say(traceback.format_exc())
        server.cancel()
        self.tidy()

    def tidy(self) -> None:
        if not self.said:  # a log with nothing of its own to say goes
            try:
                os.unlink(self.log)
            except OSError:
                pass

    def terminate(self) -> None:
        """SIGTERM (whoever stops everything under the owner, a job's keeper): every kernel
        goes now (the taken ones would end with this process anyway), then this process."""
        every = [k for s in self.sets.values() for k in s.ready] + [*self.taken.values(), *self.ending.values()]
        for kernel in every:
            if kernel.running():
                try:
                    os.killpg(kernel.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.tidy()
        os._exit(0)


def _not_poolable(spec) -> str:
    """Why kernels of kernelspec ``spec`` are not pooled ("": they are)."""
    if not (spec.language or "").lower().startswith("python"):
        return f"its language is {spec.language!r} (the hand-over is Python)"
    for value in (spec.env or {}).values():
        if any("${" + name + "}" in str(value) for name in PER_RUN):
            return "its environment refers to a per-run variable"
    return ""


def _serve(argv: list[str]) -> None:
    import asyncio

    # (no signal is ignored here: kernels inherit what is ignored, and a cold one has none;
    # the pool runs in a session of its own, out of reach of the owner's terminal)
    asyncio.run(_Daemon(int(argv[0]), argv[1]).main())


if __name__ == "__main__":
    from kfjupyter.notebook_runs import kernels  # the module the owner imports, not this __main__ copy

    kernels._serve(sys.argv[1:])  # noqa: SLF001
