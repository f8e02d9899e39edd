"""The ranks of one distributed run, launched on this machine as ``torchrun`` launches them.

Each rank is ``python kf_bootstrap.py`` with the environment ``torchrun`` gives it (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT …), its output in its own log file, in a
process group of its own (stopping a rank stops whatever it started, also after it
exited), and dying with the launcher.

The rendezvous store: ``torch.distributed``'s TCPStore server binds every interface
whatever address it is given. So the launcher binds the store's socket itself, on
127.0.0.1 only, and hands the listening socket to rank 0, which serves the store on it
(``KFJUPYTER_STORE_FD``, see :mod:`.bootstrap`); every rank joins it as a client
(``TORCHELASTIC_USE_AGENT_STORE``, torchrun's own switch for an agent-owned store).
Nothing of a local job listens beyond loopback.

Used by the training supervisor (a job's ranks) and by a tuning worker (the ranks of a
distributed trial).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from .logs import read_lines
from . import warm
from .processes import kill_groups, register_group, start_in_group

#: Lines of a failed rank's log put in the error when it wrote no traceback.
ERROR_TAIL_LINES = 40


def rank_paths(folder: Path, rank: int) -> dict[str, Path]:
    return {
        "log": folder / "logs" / f"rank-{rank}.log",
        "metrics": folder / "metrics" / f"rank-{rank}.jsonl",
        "error": folder / "errors" / f"rank-{rank}.txt",
    }


def store_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (a free port) for the rendezvous store."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def base_env(environ, *, workers: int, env: dict[str, str] | None, threads: int | None) -> dict[str, str]:
    """A rank's environment before what the launcher sets per rank: the launcher's own
    (``environ``), one thread per rank as torchrun gives (unless ``threads`` or the job's
    ``env`` say otherwise), the job's ``env``, unbuffered output."""
    out = dict(environ)
    if workers > 1 and "OMP_NUM_THREADS" not in (env or {}):
        out["OMP_NUM_THREADS"] = str(threads or 1)
    out.update(env or {})
    out["PYTHONUNBUFFERED"] = "1"
    return out


class RankGroup:
    """``workers`` ranks running the bundle in ``bundle``, their files under ``folder``.

    ``env``: the job's own environment variables; ``threads``: OMP_NUM_THREADS per rank
    (default 1 when there are several ranks, as torchrun); ``gpus`` per rank
    (CUDA_VISIBLE_DEVICES); ``groups_dir``: the job folder whose ``groups`` file notes
    each rank's process group.
    """

    def __init__(
        self,
        folder: Path,
        *,
        run_id: str,
        job_id: str,
        workers: int,
        bundle: Path,
        groups_dir: Path,
        env: dict[str, str] | None = None,
        gpus: int = 0,
        threads: int | None = None,
        workdir: str | None = None,
    ):
        self.folder = Path(folder)
        self.run_id = run_id
        self.job_id = job_id
        self.workers = workers
        self.bundle = Path(bundle)
        self.groups_dir = Path(groups_dir)
        self.env = dict(env or {})
        self.gpus = gpus
        self.threads = threads
        self.workdir = workdir
        self.ranks: list[subprocess.Popen] = []
        #: whether the ranks were forked from this (warm) process rather than started fresh
        self.forked = False

    def rank_env(self, rank: int, port: int) -> dict[str, str]:
        env = base_env(os.environ, workers=self.workers, env=self.env, threads=self.threads)
        paths = rank_paths(self.folder, rank)
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(self.workers),
            LOCAL_WORLD_SIZE=str(self.workers),
            GROUP_RANK="0",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            TORCHELASTIC_RUN_ID=self.run_id,
            TORCHELASTIC_USE_AGENT_STORE="True",
            TORCHELASTIC_RESTART_COUNT="0",  # as torchrun sets them (torch < 2.4 reads them with the agent store)
            TORCHELASTIC_MAX_RESTARTS="0",
            KFJUPYTER_JOB_ID=self.job_id,
            KFJUPYTER_BUNDLE=str(self.bundle),
            KFJUPYTER_OUTPUT_DIR=str(self.folder / "outputs"),
            KFJUPYTER_METRICS_FILE=str(paths["metrics"]),
            KFJUPYTER_ERROR_FILE=str(paths["error"]),
        )
        env.pop("KFJUPYTER_STORE_FD", None)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(rank * self.gpus + i) for i in range(self.gpus))
        return env

    def start(self) -> None:
        for sub in ("logs", "metrics", "errors", "outputs"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        bootstrap = self.bundle / "kf_bootstrap.py"
        sock = store_socket()
        try:
            port = sock.getsockname()[1]
            for rank in range(self.workers):
                env = self.rank_env(rank, port)
                fds: tuple[int, ...] = ()
                if rank == 0:  # rank 0 serves the rendezvous store on the launcher's socket
                    env["KFJUPYTER_STORE_FD"] = str(sock.fileno())
                    fds = (sock.fileno(),)
                log = rank_paths(self.folder, rank)["log"]
                if not self.gpus and warm.can_fork(env):  # this process has torch loaded, and no thread
                    proc = warm.fork_program(bootstrap, env, cwd=self.workdir, log=log, keep_fds=fds)
                    register_group(self.groups_dir, proc.pid)
                    self.forked = True
                else:
                    proc = start_in_group([sys.executable, "-u", str(bootstrap)], log, self.groups_dir, env=env,
                                          cwd=self.workdir, pass_fds=fds)  # fmt: skip
                self.ranks.append(proc)
        finally:
            sock.close()  # rank 0 holds it now

    def poll(self) -> list[int | None]:
        return [rank.poll() for rank in self.ranks]

    def outcome(self) -> tuple[str, Any]:
        """("running", None), ("succeeded", None) or ("failed", (rank, exit code)) of the first failure."""
        codes = self.poll()
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            return "failed", self.first_failure(failed)
        if all(c == 0 for c in codes):
            return "succeeded", None
        return "running", None

    def stop(self, grace: float = 3.0) -> None:
        """Stop every rank and whatever it started (its process group)."""
        kill_groups([rank.pid for rank in self.ranks], grace=grace, reap=self.ranks)
        for rank in self.ranks:
            rank.poll()

    def failure_text(self, rank: int, code: int) -> str:
        paths = rank_paths(self.folder, rank)
        if paths["error"].exists():
            detail = paths["error"].read_text(errors="replace")
        else:
            detail = "\n".join(read_lines(paths["log"], ERROR_TAIL_LINES))
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"rank {rank} {how}\n{detail}".rstrip()

    def _error_time(self, rank: int) -> float:
        error = rank_paths(self.folder, rank)["error"]
        return error.stat().st_mtime_ns if error.exists() else float("inf")

    def first_failure(self, exited: list[tuple[int, int]]) -> tuple[int, int]:
        """The failure that caused the others: the earliest traceback written.

        Later failures are peers losing their link, and a peer can exit first: the rank
        that raised writes its traceback, then tears torch down slowly while its closed
        sockets already fail the others. So a rank that wrote a traceback but has not
        exited yet still counts; it is given a moment to finish exiting.
        """
        candidates = {i for i, _ in exited} | {
            i for i, rank in enumerate(self.ranks) if rank.returncode is None and rank_paths(self.folder, i)["error"].exists()
        }
        first = min(sorted(candidates), key=self._error_time)
        code = dict(exited).get(first)
        if code is None:
            try:
                code = self.ranks[first].wait(timeout=5)
            except subprocess.TimeoutExpired:
                return min(exited, key=lambda ic: self._error_time(ic[0]))
        return first, code
