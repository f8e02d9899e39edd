"""The base of engines whose jobs run under a detached local supervisor.

Such an engine writes ``JOB_DIR/launch.json`` and starts its supervisor module
(a :class:`~kfjupyter.runtime.supervisor.Supervisor` subclass) under a keeper
(:mod:`.keeper`) in a session of its own; ``backend_info`` is
``{"pid", "create_time", "job_dir"}`` of the keeper. The supervisor writes the job's
status to the store; this base answers for the job from any process:

* ``observe``: the stored status while the keeper lives; a keeper gone with the job
  still active is a lost supervisor (a typed :class:`~kfjupyter.status.SupervisorLost`,
  recorded once, then :meth:`DetachedEngine.tidy`);
* ``cancel``: SIGTERM (the keeper passes it on; the supervisor stops the job and
  records Cancelled), then, if that is not enough, every process of the job is killed;
* log channels are files under the job's folder (:meth:`DetachedEngine.log_path`),
  read, tailed and followed the same way for every kind; metric channels are
  JSON-lines files (:meth:`DetachedEngine.metric_paths`).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import ClassVar, Iterator

from .. import status as st
from ..errors import BackendError
from ..status import Observation, SupervisorLost
from .engine import Channel, Channels, EngineBase, Features, JobSpec
from .logs import follow_file, read_lines, read_records
from . import warm
from .processes import alive, descendants, forget_groups, kill_job_processes, kill_tree, reap_children
from .supervisor import LAUNCH

#: Lines of the supervisor's own log put in the error of a lost supervisor.
LOST_LOG_LINES = 30


def lost_error(job_dir: Path, reason: SupervisorLost, what: str = "the job's supervisor") -> str:
    """The error of a job whose supervisor was lost: the cause, and its log's last lines."""
    detail = "\n".join(read_lines(Path(job_dir) / "supervisor.log", LOST_LOG_LINES))
    return f"{reason.message(what)}\n{detail}".rstrip()


def _store():
    from ..store.workspace import get_workspace

    return get_workspace()


class DetachedEngine(EngineBase):
    """Base of the local engines of training, tuning, pipelines, notebook runs and sweeps."""

    name: ClassVar[str] = "local"
    #: the supervisor's module, run as ``python -m MODULE JOB_DIR``
    supervisor: ClassVar[str] = ""
    #: how a lost supervisor is named in the job's error
    what: ClassVar[str] = "the job's supervisor"
    features: ClassVar[Features] = Features(supervised=True, metrics=True)
    #: seconds a cancel waits for the supervisor to stop the job before killing it all
    cancel_timeout: ClassVar[float] = 5.0

    # -- submitting -----------------------------------------------------------------
    def launch(self, job_id: str, spec: JobSpec, job_dir: Path) -> dict:
        """What the supervisor reads from ``launch.json`` (besides ``job_id`` and ``kind``).
        Raise :class:`~kfjupyter.errors.InvalidOptionError` to refuse the job."""
        return {}

    def submit(self, job_id: str, spec: JobSpec, job_dir: Path) -> dict:
        launch = {"job_id": job_id, "kind": self.kind, **self.launch(job_id, spec, job_dir)}
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / LAUNCH).write_text(json.dumps(launch, indent=1))
        forget_groups(job_dir)  # a resumed job's earlier processes are not this run's
        return self.answer_without_supervisor(job_dir) or self.start(job_dir)

    def answer_without_supervisor(self, job_dir: Path) -> dict | None:
        """The job settled here and now, without a supervisor (every pipeline step cached):
        its ``backend_info``; None: it needs one."""
        return None

    def environment(self) -> dict[str, str]:
        """The supervisor's environment: this process's, with the workspace it uses."""
        return {**os.environ, "KFJUPYTER_HOME": str(_store().home)}

    #: modules a warm parent of this kind has imported (see :mod:`.warm`); empty: none
    warm_modules: ClassVar[tuple[str, ...]] = ()

    def warm_env(self, job_dir: Path, env: dict[str, str]) -> dict[str, str] | None:
        """The environment of the processes a warm parent of this job would fork (the
        supervisor's is ``env``); None: the job starts cold."""
        return env if self.warm_modules else None

    def warm_modules_for(self, job_dir: Path) -> tuple[str, ...]:
        """What the warm parent of this job imports (:attr:`warm_modules`; a kind may add
        what depends on the job, e.g. the model's library)."""
        return self.warm_modules

    def start(self, job_dir: Path) -> dict:
        """Start the supervisor of the job whose ``launch.json`` is in ``job_dir``: a fork
        of a warm parent when one is ready (:mod:`.warm`), else a fresh process."""
        env = self.environment()
        warm_env = self.warm_env(job_dir, env)
        return warm.start_detached(self.supervisor, job_dir, env, warm_env=warm_env,
                                   modules=self.warm_modules_for(job_dir) if warm_env is not None else ())  # fmt: skip

    # -- state --------------------------------------------------------------------------
    def observe(self, job_id: str, info: dict) -> Observation:
        reap_children()
        ws = _store()
        record = ws.get_job(job_id)
        if record.status in st.TERMINAL or alive(info.get("pid"), info.get("create_time")):
            return _observation(record)
        record = ws.get_job(job_id)  # it may have ended while we looked
        if record.status in st.TERMINAL:
            return _observation(record)
        record_lost(self, job_id, info, SupervisorLost())  # the keeper is gone too: nobody saw how it ended
        return _observation(ws.get_job(job_id))

    def on_supervisor_lost(self, job_id: str, info: dict, reason: SupervisorLost) -> None:
        self.tidy(job_id, info, reason.message(self.what))

    def tidy(self, job_id: str, info: dict, reason: str) -> None:
        """Leave nothing of the job marked active once nothing runs it (its running
        children …); ``reason`` says why. The supervisor does this itself when it can."""

    def cancel(self, job_id: str, info: dict) -> None:
        pid, created = info.get("pid"), info.get("create_time")
        job_dir = Path(info["job_dir"])
        if alive(pid, created):
            os.kill(pid, signal.SIGTERM)  # the keeper passes it on to the supervisor
            deadline = time.monotonic() + self.cancel_timeout
            while time.monotonic() < deadline and alive(pid, created):
                time.sleep(0.05)
            if alive(pid, created):  # unresponsive: everything of the job goes
                procs = descendants(pid, created)
                kill_job_processes(job_dir, grace=1.0)
                kill_tree(procs, grace=1.0)
        _store().update_job(job_id, only_if_active=True, status=st.CANCELLED, message="cancelled by the user")
        self.tidy(job_id, info, "cancelled by the user")
        if pid and alive(pid, created):
            raise BackendError(f"job {job_id}: its supervisor (pid {pid}) could not be stopped")

    # -- channels -----------------------------------------------------------------------
    def channels(self, job_id: str, info: dict) -> Channels:
        raise NotImplementedError

    def log_path(self, job_id: str, job_dir: Path, channel: str) -> Path | None:
        """The file of log channel ``channel`` (the job's or a child's); None: no such channel."""
        raise NotImplementedError

    def metric_paths(self, job_id: str, job_dir: Path) -> list[tuple[Channel, Path]]:
        """The JSON-lines file of each metric channel."""
        return []

    def run_metric_files(self, job_id: str, job_dir: Path) -> dict[str | None, list[tuple[int, Path]]]:
        """The metrics files of each run of the job, as its tracker reads them: the job's own
        (key None) and each child's that reports (key: the child's name), with the rank
        that writes each. Default: the metric channels, by the child they belong to."""
        out: dict[str | None, list[tuple[int, Path]]] = {}
        for chan, path in self.metric_paths(job_id, job_dir):
            out.setdefault(chan.child, []).append((chan.rank or 0, path))
        return out

    def channel_done(self, job_id: str, info: dict, channel: str) -> bool:
        """Whether nothing more will be written to ``channel``: the job (or, for a child's
        channel, the child) has ended."""
        if "/" in channel:
            from ..store.workspace import ChildNotFoundError

            try:
                if _store().get_child(job_id, channel.split("/", 1)[1]).status in st.CHILD_TERMINAL:
                    return True
            except ChildNotFoundError:
                pass
        return self.observe(job_id, info).status in st.TERMINAL

    def read_log(
        self,
        job_id: str,
        info: dict,
        channel: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        path = self.log_path(job_id, Path(info["job_dir"]), channel)
        if path is None:
            raise self.unknown_channel(job_id, channel, self.channels(job_id, info))
        if not follow:
            return iter(read_lines(path, tail))
        return follow_file(path, lambda: self.channel_done(job_id, info, channel), tail, stop=stop)

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        out: list[dict] = []
        for chan, path in self.metric_paths(job_id, Path(info["job_dir"])):
            if channel is None or chan.name == channel:
                out += [{"rank": chan.rank, **record} for record in read_records(path)]
        return out


def record_lost(engine: "DetachedEngine", job_id: str, info: dict, reason: SupervisorLost) -> bool:
    """Mark the job Failed by the loss of its supervisor (``reason``), unless it has ended
    already; first stop what it left and let its engine tidy (its trials, steps, runs), so
    that nothing of a Failed job reads active. Whether this call ended it: the keeper and
    a reader may both see the loss, the tidying is idempotent, one of them records it."""
    ws = _store()
    if ws.get_job(job_id).status in st.TERMINAL:
        return False
    job_dir = Path(info["job_dir"])
    kill_job_processes(job_dir, grace=1.0)
    engine.on_supervisor_lost(job_id, info, reason)
    error = lost_error(job_dir, reason, engine.what)
    return ws.end_job(job_id, st.FAILED, error=error, end_reason=reason.to_dict()) is not None


def _observation(record) -> Observation:
    return Observation(record.status, record.error, record.message, SupervisorLost.from_dict(record.end_reason))
