"""The local supervisor: one detached process per job that runs and watches its ranks.

Started by the local backend in a session of its own (``start_new_session``), so a
kernel or server restart does not touch it. It launches the ranks the way ``torchrun``
does (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT … in the environment),
sends each rank's output to its own log file, and writes the job's status to the
workspace store:

* every rank exits 0 → Succeeded;
* a rank fails → the others are stopped at once and the job is Failed, its error the
  failing rank's traceback (no hang waiting on a dead peer);
* SIGTERM (cancel) → every rank is stopped (SIGTERM, then SIGKILL after a grace
  period) and the job is Cancelled.

Usage: ``python -m kfjupyter.runtime.supervisor JOB_DIR`` (reads JOB_DIR/launch.json).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path


from .. import status as st
from .processes import die_with_parent, free_port, kill_with_children

LAUNCH = "launch.json"
POLL_S = 0.05


def rank_paths(job_dir: Path, rank: int) -> dict[str, Path]:
    return {
        "log": job_dir / "logs" / f"rank-{rank}.log",
        "metrics": job_dir / "metrics" / f"rank-{rank}.jsonl",
        "error": job_dir / "errors" / f"rank-{rank}.txt",
    }


def rank_env(launch: dict, rank: int, port: int, job_dir: Path) -> dict[str, str]:
    workers = launch["workers"]
    env = dict(os.environ)
    # like torchrun: one thread per rank unless asked otherwise
    if workers > 1 and "OMP_NUM_THREADS" not in launch["env"]:
        env["OMP_NUM_THREADS"] = str(launch.get("threads") or 1)
    env.update(launch["env"])
    paths = rank_paths(job_dir, rank)
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(workers),
        LOCAL_WORLD_SIZE=str(workers),
        GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TORCHELASTIC_RUN_ID=launch["job_id"],
        PYTHONUNBUFFERED="1",
        KFJUPYTER_JOB_ID=launch["job_id"],
        KFJUPYTER_BUNDLE=str(job_dir / "bundle"),
        KFJUPYTER_OUTPUT_DIR=str(job_dir / "outputs"),
        KFJUPYTER_METRICS_FILE=str(paths["metrics"]),
        KFJUPYTER_ERROR_FILE=str(paths["error"]),
    )
    gpus = launch.get("gpus") or 0
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(rank * gpus + i) for i in range(gpus))
    return env


class Supervisor:
    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.launch = json.loads((job_dir / LAUNCH).read_text())
        self.job_id = self.launch["job_id"]
        self._store = None
        self.cancelled = False
        self.ranks: list[subprocess.Popen] = []

    @property
    def store(self):
        # imported after the ranks start: SQLAlchemy takes a third of a second to load
        if self._store is None:
            from ..store.workspace import get_workspace

            self._store = get_workspace()
        return self._store

    def _on_sigterm(self, *_args) -> None:
        self.cancelled = True

    def start_ranks(self) -> None:
        port = free_port()
        for sub in ("logs", "metrics", "errors", "outputs"):
            (self.job_dir / sub).mkdir(parents=True, exist_ok=True)
        bootstrap = self.job_dir / "bundle" / "kf_bootstrap.py"
        for rank in range(self.launch["workers"]):
            log = open(rank_paths(self.job_dir, rank)["log"], "ab", buffering=0)
            self.ranks.append(
                subprocess.Popen(
                    [sys.executable, "-u", str(bootstrap)],
                    cwd=self.launch.get("workdir") or None,
                    env=rank_env(self.launch, rank, port, self.job_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
            )
            log.close()

    def stop_ranks(self) -> None:
        kill_with_children(rank.pid for rank in self.ranks)
        for rank in self.ranks:
            rank.poll()

    def failure_text(self, rank: int, code: int) -> str:
        paths = rank_paths(self.job_dir, rank)
        if paths["error"].exists():
            detail = paths["error"].read_text(errors="replace")
        else:
            lines = paths["log"].read_text(errors="replace").splitlines() if paths["log"].exists() else []
            detail = "\n".join(lines[-40:])
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"rank {rank} {how}\n{detail}".rstrip()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigterm)
        self.start_ranks()
        self.store.update_job(self.job_id, only_if_active=True, status=st.RUNNING)
        while True:
            if self.cancelled:
                self.stop_ranks()
                self.store.update_job(
                    self.job_id, only_if_active=True, status=st.CANCELLED, message="cancelled by the user"
                )
                return
            codes = [rank.poll() for rank in self.ranks]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                first = self.first_failure(failed)
                self.stop_ranks()
                self.store.update_job(
                    self.job_id, only_if_active=True, status=st.FAILED, error=self.failure_text(*first)
                )
                return
            if all(c == 0 for c in codes):
                self.store.update_job(self.job_id, only_if_active=True, status=st.SUCCEEDED)
                return
            time.sleep(POLL_S)

    def _error_time(self, rank: int) -> float:
        error = rank_paths(self.job_dir, rank)["error"]
        return error.stat().st_mtime_ns if error.exists() else float("inf")

    def first_failure(self, exited: list[tuple[int, int]]) -> tuple[int, int]:
        """The failure that caused the others: the earliest traceback written.

        Later failures are peers losing their link, and a peer can exit first: the rank
        that raised writes its traceback, then tears torch down slowly while its closed
        sockets already fail the others. So a rank that wrote a traceback but has not
        exited yet still counts; it is given a moment to finish exiting.
        """
        candidates = {i for i, _ in exited} | {
            i for i, rank in enumerate(self.ranks) if rank.returncode is None and rank_paths(self.job_dir, i)["error"].exists()
        }
        first = min(sorted(candidates), key=self._error_time)
        code = dict(exited).get(first)
        if code is None:
            try:
                code = self.ranks[first].wait(timeout=5)
            except subprocess.TimeoutExpired:
                return min(exited, key=lambda ic: self._error_time(ic[0]))
        return first, code


def supervise(job_id: str, run, stop, what: str) -> None:
    """Run a detached job's supervision loop ``run()``; if the loop itself fails, the job
    is marked Failed (``what`` failed, with the traceback) and ``stop()`` stops what it
    started, so nothing outlives a crashed supervisor. Every supervisor's ``main`` uses it."""
    try:
        run()
    except BaseException:
        from ..store.workspace import get_workspace

        text = traceback.format_exc()
        try:
            get_workspace().update_job(job_id, only_if_active=True, status=st.FAILED, error=f"{what} failed:\n{text}")
        finally:
            stop()
        raise


def main(argv: list[str] | None = None) -> None:
    supervisor = Supervisor(Path((argv or sys.argv[1:])[0]))
    supervise(supervisor.job_id, supervisor.run, supervisor.stop_ranks, "the kfjupyter supervisor")


if __name__ == "__main__":
    main()
