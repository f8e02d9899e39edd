"""The tracker of one job: a process forked from the job's supervisor, beside its loop.

It follows the metrics files of the job's runs (its own, its trials' or steps', a sweep's
runs'), keeps each run's last metrics and ``kfjupyter.log_params`` params in the store,
and, when a tracking URI is set, hands them to the MLflow sink (:mod:`.mlflow_sink`).
Reporting never waits for it: ``kfjupyter.report`` appends to a file as ever, and the
tracker reads the files in a process of its own. The files are the buffer: what the MLflow
server has not taken yet is read again from where it stopped, so a server that goes away
and comes back loses nothing.

A process, not a thread: a supervisor forks what it runs (pipeline steps with the
notebook's imports loaded, ranks from a warm parent), and a process with threads must not
fork; and the MLflow client's imports and network waits stay out of the job's loop.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .. import status as st
from ..runtime.detached import DetachedEngine
from ..store.runs import RunRecord, run_id
from ..store.workspace import get_workspace
from .mlflow_sender import read_new_records

#: seconds between two looks at the files
INTERVAL_S = 1.0


def tracking_uri() -> str | None:
    """The MLflow tracking server runs are copied to: ``MLFLOW_TRACKING_URI`` (a Jupyter
    server's ``c.KFJupyter.tracking_uri`` sets it for its kernels), else None."""
    return os.environ.get("MLFLOW_TRACKING_URI") or None


class JobTracker:
    """Follows the runs of job ``job_id`` (see the module docstring)."""

    def __init__(self, job_id: str, job_dir: Path, engine: DetachedEngine, say: Callable[[str], None] | None = None):
        self.job_id, self.job_dir, self.engine = job_id, Path(job_dir), engine
        self.say = say or (lambda text: None)
        self.offsets: dict[Path, int] = {}
        self.last: dict[str, dict[int, dict[str, Any]]] = {}  # run id → rank → metric → last value
        self._stop_w = self._done_r = -1
        self.pid: int | None = None  # the tracker's process, once started
        uri = tracking_uri()
        self.sink = None
        if uri:
            from .mlflow_sink import MlflowSink

            self.sink = MlflowSink(uri, job_id, self.job_dir, engine, self.say)

    # -- the files of each run
    def run_files(self) -> dict[str, list[tuple[int, Path]]]:
        """Run id → its metrics files (rank, path)."""
        kids = {c.name: c for c in get_workspace().list_children(self.job_id)}
        out: dict[str, list[tuple[int, Path]]] = {self.job_id: []}  # the job's run, even before it reports
        for child, files in self.engine.run_metric_files(self.job_id, self.job_dir).items():
            kid = kids.get(child) if child is not None else None
            if child is not None and kid is None:
                continue  # a folder of a child the store does not know (yet)
            rid = kid.job_ref if kid is not None and kid.job_ref else run_id(self.job_id, child)
            out[rid] = files
        return out

    def scan(self) -> None:
        """Read what was appended since the last look; record the runs' last metrics and
        logged params."""
        for rid, files in self.run_files().items():
            params: dict[str, Any] = {}
            changed = False
            for rank, path in files:
                records, self.offsets[path] = read_new_records(path, self.offsets.get(path, 0))
                for record in records:
                    changed = True
                    if "params" in record:
                        params.update(record["params"] or {})
                        continue
                    last = self.last.setdefault(rid, {}).setdefault(rank, {})
                    last.update({k: v for k, v in record.items() if k not in ("time", "step") and v is not None})
            if changed:
                self._record(rid, params)

    def _record(self, rid: str, params: dict[str, Any]) -> None:
        merged: dict[str, Any] = {}
        for rank in sorted(self.last.get(rid, {}), reverse=True):  # the lowest rank's value wins
            merged.update(self.last[rid][rank])
        ws = get_workspace()
        with ws.session() as s, s.begin():
            record = s.get(RunRecord, rid, with_for_update=True)
            if record is None:
                record = s.merge(_child_run_record(s, rid))
            record.metrics = {**(record.metrics or {}), **merged}
            if params:
                record.params = {**(record.params or {}), **params}

    # -- the process
    def start(self) -> "JobTracker":
        """Fork the tracker's process (the caller has one thread: see the module docstring).

        Two pipes tie it to the supervisor: the supervisor writes on one (or dies, which
        closes it) to start the last turn, the tracker writes its result on the other.
        A supervisor that stops every process under it spares this one (:attr:`pid`)."""
        stop_r, stop_w = os.pipe()
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(stop_r)
            os.close(done_w)
            self.pid, self._stop_w, self._done_r = pid, stop_w, done_r
            return self
        code = 1
        try:
            os.close(stop_w)
            os.close(done_r)
            from ..store.workspace import forget_workspaces

            forget_workspaces()  # its own store connections
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the job's cancel, not ours
            parent = os.getppid()
            while os.getppid() == parent:  # a supervisor killed outright: a last turn, then go
                self._turn()
                if select.select([stop_r], [], [], INTERVAL_S)[0]:
                    break
            code = 0 if self._flush(self._timeout()) else 3
            os.write(done_w, b"ok" if code == 0 else b"partial")
        except BaseException:  # noqa: BLE001  (tracking never fails a job: it says why)
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def _turn(self) -> None:
        try:
            self.scan()
            if self.sink is not None:
                self.sink.send(self.run_files())
        except Exception as exc:  # noqa: BLE001  (tracking never fails a job)
            self.say(f"tracking: {exc!r}")

    @staticmethod
    def _timeout() -> float:
        return float(os.environ.get("KFJUPYTER_TRACKING_FLUSH_S", "30"))

    def _flush(self, timeout: float) -> bool:
        self._turn()
        if self.sink is None:
            return True
        return self.sink.finish(self.run_files(), timeout)

    def finish(self, timeout: float | None = None) -> bool:
        """After the job's end: the last records, and (with MLflow) everything sent, the
        runs ended and their artifacts uploaded, trying for ``timeout`` seconds
        (``KFJUPYTER_TRACKING_FLUSH_S``, default 30). Whether everything got there.
        Called in the supervisor, it stops the tracker's process and waits for its flush."""
        if timeout is None:
            timeout = self._timeout()
        if self._done_r < 0:  # not started: the work is done here (kfjupyter.tracking.sync)
            return self._flush(timeout)
        try:  # a byte, not just the close: a process forked from the supervisor may hold this end too
            os.write(self._stop_w, b"stop")
        finally:
            os.close(self._stop_w)
        said = b""
        deadline = time.monotonic() + timeout + 30
        try:
            while time.monotonic() < deadline:
                if select.select([self._done_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    chunk = os.read(self._done_r, 64)
                    if not chunk:
                        break  # the tracker's process has ended
                    said += chunk
            else:
                self.say("tracking: the tracker did not finish in time; kfjupyter.tracking.sync(JOB) sends the rest")
        finally:
            os.close(self._done_r)
            self._done_r = -1
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:  # reaped by whoever stopped the job's processes
                pass
        return said == b"ok"


def _child_run_record(session, rid: str) -> RunRecord:
    """The run record of a child task first seen reporting: its job's experiment."""
    job_id, _, child = rid.partition(".")
    parent = session.get(RunRecord, job_id)
    experiment = parent.experiment if parent is not None else "Default"
    return RunRecord(id=rid, job_id=job_id, child=child or None, experiment=experiment, params={}, tags={}, env={},
                     metrics={})  # fmt: skip


def job_log_writer(engine: DetachedEngine, job_id: str, job_dir: Path) -> Callable[[str], None]:
    """Where the tracker says what happens: the job's first log channel (what ``job.logs()``
    shows) and the supervisor's own log."""
    path = None
    try:
        logs = engine.channels(job_id, {"job_dir": str(job_dir)}).logs
        path = engine.log_path(job_id, job_dir, logs[0].name) if logs else None
    except Exception:  # noqa: BLE001
        path = None

    def say(text: str) -> None:
        line = f"[kfjupyter tracking {time.strftime('%H:%M:%S')}] {text}\n"
        sys.stderr.write(line)
        sys.stderr.flush()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError:
                pass

    return say


def start(job_id: str, job_dir: Path, kind: str) -> JobTracker | None:
    """A job's supervisor calls this before its loop: the job's tracker, started (None for
    a kind that has no runs: an endpoint)."""
    from ..backends import get_backend

    if kind == "endpoint":
        return None
    engine = get_backend(kind, "local")
    return JobTracker(job_id, job_dir, engine, job_log_writer(engine, job_id, Path(job_dir))).start()


def sync(job_id: str, timeout: float = 30.0) -> bool:
    """Send to MLflow what a job's tracker could not send before the job's supervisor ended
    (its server was away): the same code, run once; of a Kubernetes job, end its MLflow run
    (:func:`kfjupyter.tracking.pods.end_run`). Whether everything got there."""
    from .. import jobs

    job = jobs.get(job_id)
    if job.record.status not in st.TERMINAL:
        return True  # its own tracker (a Kubernetes job's: its pods) is on it
    if job.record.backend != "local":  # its pods sent their runs: what is left is the job's end
        from .pods import end_run

        return end_run(job_id, job.record.status, timeout)
    engine = job.engine
    tracker = JobTracker(job_id, job.job_dir, engine, job_log_writer(engine, job_id, job.job_dir))
    return tracker.finish(timeout)
