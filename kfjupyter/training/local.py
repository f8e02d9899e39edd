"""The local backend: ranks as processes on this machine, under a detached supervisor."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator


from .. import status as st
from ..capture.bundle import Bundle
from ..errors import BackendError, InvalidOptionError
from ..runtime import supervisor as sup
from ..runtime.processes import alive, kill_group, reap_children, start_detached
from ..status import Observation
from ..store.workspace import get_workspace
from .spec import TrainSpec


def local_gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _threads(cpu: str | None) -> int | None:
    if cpu is None:
        return None
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(value))


def read_lines(path: Path, tail: int | None = None) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return lines[-tail:] if tail else lines


def read_records(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file (``kfjupyter.report``'s metrics file); a last
    line still being written is left for the next read."""
    out: list[dict] = []
    for line in read_lines(path):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written right now
    return out


def follow_file(path: Path, done, tail: int | None = None, poll: float = 0.1) -> Iterator[str]:
    """Yield the lines of a growing file until ``done()`` is true and it is read to the end."""
    offset = 0
    if tail and path.exists():
        data = path.read_bytes()  # one read: the tail and where following starts agree
        offset = data.rfind(b"\n") + 1  # complete lines only; the rest is read below
        yield from data[:offset].decode(errors="replace").splitlines()[-tail:]
    pending = b""
    while True:
        finished = done()
        if path.exists():
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if finished:
            if pending:
                yield pending.decode(errors="replace")
            return
        time.sleep(poll)


class LocalTrainBackend:
    name = "local"

    def submit(self, job_id: str, spec: TrainSpec, bundle: Bundle, job_dir: Path) -> dict:
        if spec.gpus:
            have = local_gpu_count()
            if have < spec.gpus * spec.workers:
                raise InvalidOptionError(
                    f"{spec.workers} workers × {spec.gpus} GPUs asked for, this machine has {have} GPU(s)"
                )
        launch = {
            "job_id": job_id,
            "workers": spec.workers,
            "env": spec.env,
            "gpus": spec.gpus,
            "threads": _threads(spec.cpu),
            "workdir": bundle.manifest.get("workdir"),
        }
        (job_dir / sup.LAUNCH).write_text(json.dumps(launch, indent=1))
        env = {**os.environ, "KFJUPYTER_HOME": str(get_workspace().home)}
        return start_detached("kfjupyter.runtime.supervisor", job_dir, env)

    def observe(self, job_id: str, info: dict) -> Observation:
        reap_children()
        record = get_workspace().get_job(job_id)
        if record.status in st.TERMINAL or alive(info.get("pid"), info.get("create_time")):
            return Observation(record.status, record.error, record.message)
        record = get_workspace().get_job(job_id)  # it may have finished while we looked
        if record.status in st.TERMINAL:
            return Observation(record.status, record.error, record.message)
        log = get_workspace().job_dir(job_id) / "supervisor.log"
        detail = "\n".join(read_lines(log, 30))
        return Observation(st.FAILED, "the job's supervisor process ended unexpectedly\n" + detail)

    def _rank_file(self, job_id: str, rank: int, kind: str) -> Path:
        return sup.rank_paths(get_workspace().job_dir(job_id), rank)[kind]

    def logs(self, job_id: str, info: dict, rank: int = 0, follow: bool = False, tail: int | None = None):
        path = self._rank_file(job_id, rank, "log")
        if not follow:
            return iter(read_lines(path, tail))
        return follow_file(path, lambda: self.observe(job_id, info).status in st.TERMINAL, tail)

    def metrics(self, job_id: str, info: dict) -> list[dict]:
        out: list[dict] = []
        for path in sorted((get_workspace().job_dir(job_id) / "metrics").glob("rank-*.jsonl")):
            rank = int(path.stem.split("-")[1])
            out += [{"rank": rank, **record} for record in read_records(path)]
        return out

    def cancel(self, job_id: str, info: dict, timeout: float = 5.0) -> None:
        pid, created = info.get("pid"), info.get("create_time")
        ws = get_workspace()
        if alive(pid, created):
            os.kill(pid, 15)
            deadline = time.monotonic() + timeout - 1.0
            while time.monotonic() < deadline and alive(pid, created):
                time.sleep(0.05)
            if alive(pid, created):  # unresponsive: take the whole session down
                kill_group(pid)
        ws.update_job(job_id, only_if_active=True, status=st.CANCELLED, message="cancelled by the user")
        if pid and not alive(pid, created):
            return
        raise BackendError(f"job {job_id}: the supervisor (pid {pid}) could not be stopped")

