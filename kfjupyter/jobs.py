"""Jobs: the one way every kind of job is created, and one handle on any job.

``kfjupyter.jobs.create(spec)`` records, prepares and starts a job of any kind (a typed
spec: ``TrainSpec``, ``TuneSpec``, ``PipelineSpec``, ``NotebookSpec``, ``SweepSpec``,
``EndpointSpec``); a refusal leaves no record, no folder and no process.
``kfjupyter.jobs.get(id)`` re-attaches to any job in the workspace store (started from
another kernel, before a restart, from the CLI …); ``kfjupyter.jobs.list()`` lists them.

A :class:`Job` reads its status, its log and metric channels, its child tasks, and
:meth:`Job.follow` follows it (state changes and log lines; Ctrl-C cancels), the same
way whatever kind of job it is and wherever it runs.
"""

from __future__ import annotations

import builtins
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import status as st
from .backends import get_backend, handle_class, spec_class
from .errors import InvalidOptionError, KFJupyterError, PreflightError
from .files import DIR_MODE, files_under, make_private, private_dir
from .runtime.engine import Channels, Engine, JobSpec, UnknownChannelError
from .capture.provenance import environment
from .store.models import ChildRecord, JobRecord
from .store.runs import DEFAULT_EXPERIMENT, RunRecord
from .capture.tracebacks import readable
from .store.workspace import as_aware, get_workspace

#: What a job handle offers that a capability implements, bound late (the core imports
#: no capability): ``Job.register_model`` is the registry's ``register_model``.
REGISTER_MODEL = "kfjupyter.registry:register_model"
#: ``Job.rerun`` is tracking's ``rerun``.
RERUN = "kfjupyter.tracking:rerun"
#: Told when a job that does not run under a local supervisor is seen ending (tracking
#: ends its MLflow run: the pods of a Kubernetes job cannot know when it ends).
REMOTE_JOB_ENDED = "kfjupyter.tracking.pods:job_ended"


#: a follower of a watched job looks at it anyway this often (what a watch cannot see)
RESYNC_S = 60.0
#: the longest pause between two looks at a job on an API that cannot be watched
BACKOFF_CAP_S = 5.0


class ChangeFeed:
    """When a follower of a job should look at it again (observe it through its engine),
    as its engine's ``features.changes`` says: every ``poll`` (a local job); when the
    engine's watch saw a change, and every :data:`RESYNC_S` anyway (Kubernetes); at
    intervals doubling from ``poll`` to :data:`BACKOFF_CAP_S` while nothing changes (a
    remote API without watch: KFP). One feed per follower; ``close()`` ends its watch."""

    def __init__(self, job: "Job", poll: float):
        self.job, self.poll, self.interval = job, poll, poll
        self.next = 0.0  # the first look is due at once
        self.mode: str | None = None
        self._changes: Any = None

    def _watching(self) -> Any:
        if self.mode is None and self.job.record.backend_info:  # not before the engine has the job
            self.mode = self.job.engine.features.changes
            if self.mode == "watch":
                self._changes = self.job.engine.changes(self.job.id, self.job.record.backend_info)
        return self._changes

    def take(self) -> bool:
        """Whether to look now (what changed so far is taken: a look sees it)."""
        changes = self._watching()
        changed = changes is not None and changes.wait(0)
        return changed or time.monotonic() >= self.next

    def looked(self, changed: bool) -> None:
        """After a look: when the next one is due (``changed``: the look saw a change)."""
        if self.mode == "watch":
            interval = RESYNC_S
        elif self.mode == "backoff":
            self.interval = interval = self.poll if changed else min(self.interval * 2, BACKOFF_CAP_S)
        else:
            interval = self.poll
        self.next = time.monotonic() + interval

    def wait(self, timeout: float) -> None:
        """Sleep until the next look is due, a watched change, or ``timeout`` seconds."""
        left = max(0.0, min(timeout, self.next - time.monotonic()))
        changes = self._watching()
        if changes is not None:
            if changes.wait(left):
                self.next = 0.0
        else:
            time.sleep(left)

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()
            self._changes = None

    def __enter__(self) -> "ChangeFeed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: how many of the failing rank's last lines a job's failure error shows
ERROR_TAIL_LINES = 12


class JobFailedError(KFJupyterError):
    """A job ended Failed: raised by :meth:`Job.wait` (unless ``raise_on_failure=False``)
    and by the blocking magics, so the cell, papermill and ``nbconvert --execute`` fail.
    ``job_id``, ``status`` and ``rank`` (the failing rank, when known) say which; the
    message is short: the job, the failing rank and its last lines."""

    def __init__(self, message: str, job_id: str = "", status: str = st.FAILED, rank: int | None = None):
        super().__init__(message)
        self.job_id, self.status, self.rank = job_id, status, rank


class JobCancelledError(JobFailedError):
    """A job ended Cancelled (by the user, the sidebar, another process …)."""


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C while following a job (see :meth:`Job.follow`): the job was cancelled, unless
    told not to. IPython shows its one line, not a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


_RANK = re.compile(r"^rank (\d+) ")


def failed_rank(error: str | None) -> int | None:
    """The rank a job's error names first (``rank 1 exited with code 1 …``), or None."""
    match = _RANK.match(error or "")
    return int(match.group(1)) if match else None


def failure_text(kind: str, job_id: str, status: str, error: str | None, message: str | None = None,
                 tail: int = ERROR_TAIL_LINES) -> str:
    """The short story of a job that did not succeed: ``train job ID failed: rank 1 exited
    with code 1`` and the last ``tail`` lines of its error (where the full text is, when cut)."""
    what = "cancelled" if status == st.CANCELLED else status.lower()
    lines = (error or "").strip("\n").splitlines()
    head = f"{kind} job {job_id} {what}"
    if status == st.CANCELLED:
        return head + (f": {message}" if message and not message.lower().startswith("cancelled") else "")
    if not lines:
        return head + (f": {message}" if message else "")
    body = lines[1:]
    cut = len(body) > tail
    shown = [f"... {len(body) - tail} line(s) before (job.error, kfjupyter jobs show {job_id})"] if cut else []
    return "\n".join([f"{head}: {lines[0]}", *shown, *body[-tail:]]) if body else f"{head}: {lines[0]}"


def last_values(rows: Iterable[dict]) -> dict[str, Any]:
    """The last reported value of each metric of ``rows`` (as :meth:`Job.metrics` gives them,
    in the order they were reported); ``rank``, ``step``, ``time`` (and a sweep's ``run``)
    are not metrics."""
    last: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ("rank", "step", "time", "run") and value is not None:
                last[key] = value
    return last


@dataclass(frozen=True)
class JobEvent:
    """What :meth:`Job.follow` reports: a state change of the job (``"status"``) or of one
    of its child tasks (``"child"``, with the ``child``), a log line (``"line"``, with its
    ``channel``), or that time passed (``"tick"``, every ``poll``)."""

    kind: str
    status: str
    channel: str | None = None
    line: str | None = None
    child: ChildRecord | None = None


class Job:
    """A handle on one job. Cheap to create; every property reads the current state."""

    def __init__(self, job_id: str, record: JobRecord | None = None):
        self.id = job_id
        self._record: JobRecord = record if record is not None else get_workspace().get_job(job_id)
        self._engine: Engine | None = None

    def _submitted_info(self) -> dict | None:
        """What the engine needs to find the job, or None while it is being submitted."""
        if not self._record.backend_info:
            self.refresh()
        return self._record.backend_info or None

    # -- state -------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The engine of this job's kind and backend (:mod:`kfjupyter.runtime.engine`)."""
        if self._engine is None:
            self._engine = get_backend(self._record.kind, self._record.backend)
        return self._engine

    #: the former name of :attr:`engine`
    backend = engine

    def refresh(self) -> JobRecord:
        """Read the record, asking the engine when the job is still active."""
        ws = get_workspace()
        record = ws.get_job(self.id)
        if record.status not in st.TERMINAL and record.backend_info:
            seen = self.engine.observe(self.id, record.backend_info)
            if seen.status != record.status:
                fields: dict[str, Any] = dict(status=seen.status, error=seen.error, message=seen.message)
                if seen.reason is not None:
                    fields["end_reason"] = seen.reason.to_dict()
                record = ws.update_job(self.id, only_if_active=True, **fields)
                if record.status in st.TERMINAL and record.backend != "local":
                    from .backends import load

                    load(REMOTE_JOB_ENDED)(record)
        self._record = record
        return record

    @property
    def status(self) -> str:
        return self.refresh().status

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def kind(self) -> str:
        return self._record.kind

    @property
    def workers(self) -> int:
        return self._record.workers

    @property
    def error(self) -> str | None:
        """The job's error as its author reads it (see :meth:`readable_error`); the raw
        text is ``record.error``."""
        self.refresh()
        return self.readable_error()

    @property
    def end_reason(self) -> st.SupervisorLost | None:
        """Why the job ended when its status alone does not say (a lost supervisor)."""
        return st.SupervisorLost.from_dict(self._record.end_reason)

    @property
    def record(self) -> JobRecord:
        return self._record

    def duration(self) -> float | None:
        """Seconds from start to finish (or to now while running)."""
        record = self._record
        start = as_aware(record.started_at or record.created_at)
        end = as_aware(record.finished_at) or datetime.now(timezone.utc)
        return (end - start).total_seconds() if start else None

    @property
    def done(self) -> bool:
        return self.status in st.TERMINAL

    def changes(self, poll: float = 0.5) -> ChangeFeed:
        """When to look at the job again (see :class:`ChangeFeed`): a follower's clock."""
        return ChangeFeed(self, poll)

    # -- files ---------------------------------------------------------------------
    @property
    def job_dir(self) -> Path:
        return get_workspace().job_dir(self.id)

    @property
    def output_dir(self) -> Path:
        return self.job_dir / "outputs"

    @property
    def outputs(self) -> dict[str, Path]:
        """Files the job saved to ``kfjupyter.output_dir()``: relative name → path. A link
        among them is refused (:class:`kfjupyter.files.LinkRefusedError` names it): what a
        job links into its outputs is never listed, registered or served."""
        root = self.output_dir
        return {p.relative_to(root).as_posix(): p for p in files_under(self.job_dir, "outputs", "job output")}

    @property
    def program(self) -> str:
        """The program the ranks run (imports, captured definitions, the cell)."""
        return (self.job_dir / "bundle" / "program.py").read_text()

    # -- channels, logs and metrics ------------------------------------------------------
    def channels(self) -> Channels:
        """The job's own log and metric channels (its children's are on its children)."""
        info = self._submitted_info()
        return self.engine.channels(self.id, info) if info is not None else Channels()

    def log_channel(self, rank: int | None = None, channel: str | None = None) -> str:
        """The name of the log channel ``channel`` names, or of the job's channel ``rank``."""
        if channel is not None:
            return channel
        chosen = self.channels().log(0 if rank is None else rank)
        if chosen is None:
            known = ", ".join(f"{c.rank} ({c.label})" for c in self.channels().logs if c.rank is not None) or "none"
            raise UnknownChannelError(f"job {self.id} has no log of rank {rank}; its ranks: {known}")
        return chosen.name

    def logs(
        self,
        rank: int | None = None,
        follow: bool = False,
        tail: int | None = None,
        *,
        channel: str | None = None,
        stop: threading.Event | None = None,
    ) -> str | Iterator[str]:
        """A log of the job: the text, or with ``follow`` an iterator of lines until its
        producer ends. ``channel`` names it (``rank-1``, ``step/prep``, ``trial/3`` …; see
        :meth:`channels` and :meth:`children`); else ``rank`` picks one of the job's own
        (default 0: ranks of a training job, workers of a study, servers of an endpoint …).
        ``stop``: an event that ends a follow at once (a reader whose client left)."""
        info = self._submitted_info()
        if info is None:  # not submitted yet: nothing logged
            return iter(()) if follow else ""
        name = self.log_channel(rank, channel)
        lines = self.engine.read_log(self.id, info, name, tail=tail, follow=follow, stop=stop)
        return lines if follow else "\n".join(lines)

    def metrics(self, rank: int | None = None, *, channel: str | None = None) -> list[dict]:
        """Metrics passed to ``kfjupyter.report``: dicts with rank, step, time and values
        (of one metric channel, or of the one of ``rank``, or all)."""
        info = self._submitted_info()
        if info is None:
            return []
        rows = self.engine.read_metrics(self.id, info, channel)
        return [r for r in rows if rank is None or r.get("rank") == rank]

    def last_metrics(self, rank: int | None = None, *, channel: str | None = None) -> dict[str, Any]:
        """The last value of each metric passed to ``kfjupyter.report`` (see :meth:`metrics`)."""
        return last_values(self.metrics(rank, channel=channel))

    # -- child tasks -------------------------------------------------------------------
    def children(self, kind: str | None = None) -> list[ChildRecord]:
        """The job's child tasks (pipeline steps, trials, sweep runs, servers), in order."""
        if self._record.status not in st.TERMINAL:
            self.refresh()  # a remote engine brings its children up to date as it observes
        kids = get_workspace().list_children(self.id, kind)
        if not kids and self._record.backend_info and self.engine.features.children:
            self.engine.backfill_children(self.id, self._record.backend_info)  # a job from before children
            kids = get_workspace().list_children(self.id, kind)
        return kids

    def child(self, name: str) -> ChildRecord:
        return get_workspace().get_child(self.id, name)

    # -- following and waiting ------------------------------------------------------------
    def follow(
        self,
        on_event: Callable[[JobEvent], Any] | None = None,
        *,
        channels: Iterable[str] = (),
        children: bool = False,
        tail: int | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
        cancel_on_interrupt: bool = True,
    ) -> "Job":
        """Follow the job until it ends, calling ``on_event`` with every state change (of the
        job, and with ``children`` of its child tasks), every line of the log ``channels``
        (from their last ``tail`` lines) and a tick every ``poll`` seconds. Returns the job
        once it has ended and its logs are read.

        Ctrl-C (KeyboardInterrupt, in the wait or in ``on_event``) cancels the job, unless
        ``cancel_on_interrupt=False``, and is raised again. ``timeout``: TimeoutError if
        the job is still active after that many seconds (it goes on running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        stop = threading.Event()
        lines: queue.Queue = queue.Queue()
        names = builtins.list(channels)
        open_channels = len(names)
        for name in names:
            threading.Thread(target=self._pump, args=(name, tail, stop, lines), daemon=True,
                             name=f"kfjupyter-follow-{self.id}-{name}").start()  # fmt: skip
        emit = on_event or (lambda _event: None)
        last = None
        seen: dict[str, str] = {}
        feed = self.changes(poll)
        try:
            while True:
                if feed.take():
                    status = self.status
                    feed.looked(status != last)
                else:  # nothing new from the backend: the record (another process may have changed it)
                    self._record = get_workspace().get_job(self.id)
                    status = self._record.status
                if status != last:
                    emit(JobEvent("status", status))
                    last = status
                if children:
                    for kid in get_workspace().list_children(self.id):
                        if seen.get(kid.name) != kid.status:
                            seen[kid.name] = kid.status
                            emit(JobEvent("child", status, child=kid))
                if status in st.TERMINAL and open_channels == 0:
                    return self
                until = time.monotonic() + poll
                while True:
                    try:
                        what, name, line = lines.get(timeout=max(0.0, until - time.monotonic()))
                    except queue.Empty:
                        break
                    if what == "line":
                        emit(JobEvent("line", status, name, line))
                    elif what == "error":
                        open_channels -= 1
                        raise line
                    else:
                        open_channels -= 1
                emit(JobEvent("tick", status))
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} still {status} after {timeout} s")
        except KeyboardInterrupt:
            if cancel_on_interrupt:
                self.cancel()
                raise JobInterrupted(f"{self.kind} job {self.id} cancelled") from None
            raise
        finally:
            stop.set()
            feed.close()

    def _pump(self, channel: str, tail: int | None, stop: threading.Event, out: queue.Queue) -> None:
        """Put the lines of a followed channel on ``out`` (a :meth:`follow` reader thread)."""
        try:
            while not stop.is_set() and self._submitted_info() is None:
                if self._record.status in st.TERMINAL or stop.wait(0.1):
                    return
            for line in self.logs(channel=channel, follow=True, tail=tail, stop=stop):
                out.put(("line", channel, line))
        except Exception as exc:  # noqa: BLE001  (the follower raises it)
            out.put(("error", channel, exc))
            return
        finally:
            out.put(("end", channel, None))

    def wait(
        self,
        timeout: float | None = None,
        poll: float = 0.2,
        cancel_on_interrupt: bool = True,
        raise_on_failure: bool = True,
        on_event: Callable[[JobEvent], Any] | None = None,
    ) -> "Job":
        """Block until the job ends and return it; if it ended Failed or Cancelled, raise
        :class:`JobFailedError` / :class:`JobCancelledError` (its job, failing rank and last
        lines), unless ``raise_on_failure=False``. Ctrl-C cancels the job (unless
        ``cancel_on_interrupt=False``). ``on_event``: called as :meth:`follow` calls it."""
        self.follow(on_event, poll=poll, timeout=timeout, cancel_on_interrupt=cancel_on_interrupt)
        if raise_on_failure:
            self.raise_for_status()
        return self

    def readable_error(self) -> str | None:
        """The error of the record read last, as its author reads it: a rank's traceback
        without kfjupyter's launcher frames, its frames named by cell line
        (:mod:`kfjupyter.capture.tracebacks`). The raw text is ``record.error`` (and the
        rank's log)."""
        raw = self._record.error
        if not raw or 'File "' not in raw:
            return raw
        try:
            program = (self.job_dir / "bundle" / "program.py").read_text(errors="replace")
        except OSError:  # a job of no program of its own (a pipeline run: its steps say theirs)
            return raw
        return readable(raw, program, where=self._cell_label())

    def _cell_label(self) -> str:
        notebook = Path(self._record.notebook).name if self._record.notebook else ""
        magic = {"train": "%%kf_train", "tune": "%%kf_tune"}.get(self._record.kind)
        cell = f"the {magic} cell" if magic else "the cell"
        return f"{notebook}, {cell}" if notebook else cell

    @property
    def failed_rank(self) -> int | None:
        """The rank (the job's own channel) whose failure failed the job, when it says."""
        return failed_rank(self._record.error) if self._record.status == st.FAILED else None

    def raise_for_status(self) -> "Job":
        """Raise :class:`JobFailedError` (or :class:`JobCancelledError`) if the job ended that
        way; return the job otherwise (also while it runs)."""
        record = self._record
        if record.status in (st.FAILED, st.CANCELLED):
            cls = JobCancelledError if record.status == st.CANCELLED else JobFailedError
            text = failure_text(record.kind, self.id, record.status, self.readable_error(), record.message)
            raise cls(text, job_id=self.id, status=record.status, rank=self.failed_rank)
        return self

    def cancel(self) -> "Job":
        """Stop everything the job runs and mark it Cancelled (Cancelling while its backend
        still deletes or stops what ran). Does nothing to a finished job."""
        if self.refresh().status not in st.TERMINAL and self._record.status != st.CANCELLING:
            if not self._record.backend_info:  # still being submitted: its submitter stops it …
                record = get_workspace().update_job(
                    self.id, only_if_active=True, status=st.CANCELLED, message="cancelled by the user"
                )
                if record.backend_info:  # … unless it had just handed it to its engine
                    self.engine.cancel(self.id, record.backend_info)
            else:
                self.engine.cancel(self.id, self._record.backend_info)
        self.refresh()
        return self

    # -- the model registry ----------------------------------------------------------------
    def register_model(self, name: str, path_or_object=None, **options):
        """Register this job's model as a new version of ``name``: its saved outputs (or
        ``path_or_object``), its last reported metrics and its lineage (see
        :func:`kfjupyter.register_model` for ``options``)."""
        from .backends import load

        return load(REGISTER_MODEL)(name, path_or_object, job=self, **options)

    # -- tracking ------------------------------------------------------------------------
    def rerun(self, wait: bool = False, **params: Any) -> "Job":
        """Start the same program again with some params changed (``lr=0.05``; the scalars
        its cell read, or its options): the new job's run links to this one."""
        from .backends import load

        return load(RERUN)(self, wait=wait, **params)

    def to_dict(self) -> dict:
        """The job as every client shows it: its record, its duration and its channels."""
        data = self._record.to_dict()
        data["error"] = self.readable_error()
        data["failed_rank"] = self.failed_rank
        data["duration_s"] = self.duration()
        data["channels"] = self.channels().to_dict() if self._record.backend_info else Channels().to_dict()
        return data

    def __repr__(self) -> str:
        return f"<Job {self.id} {self._record.kind} {self._record.status} backend={self._record.backend}>"


def get(job_id: str) -> Job:
    """Re-attach to a job of the workspace by id: the handle of its kind (a
    ``PipelineRun``, a ``Sweep`` …), else a plain :class:`Job`."""
    record = get_workspace().get_job(job_id)
    cls = handle_class(record.kind) or Job
    return cls(job_id, record)


def count(kind: str | None = None, status: str | None = None) -> int:
    """How many jobs of the workspace match the filters."""
    return get_workspace().count_jobs(kind=kind, status=status)


def list(kind: str | None = None, status: str | None = None, limit: int | None = 50, offset: int = 0) -> builtins.list[Job]:  # noqa: A001
    """Jobs of the workspace, newest first."""
    records = get_workspace().list_jobs(kind=kind, status=status, limit=limit, offset=offset)
    return [Job(r.id, r) for r in records]


# -- creating a job: the one way every capability makes one --------------------------------------
#: Errors that mean "refused": nothing was started, so nothing is kept.
REFUSALS = (InvalidOptionError, PreflightError)


def forget(job_id: str) -> None:
    """Delete a job's record, its children and its folder: what a refused job leaves behind."""
    ws = get_workspace()
    ws.delete_job(job_id)
    shutil.rmtree(ws.job_dir(job_id), ignore_errors=True)


def create(
    spec: JobSpec,
    *,
    prepare: Callable[[str, Path], None] | None = None,
    children: Iterable[ChildRecord] = (),
    start: bool = True,
    notebook: str | None = None,
    cell: str | None = None,
    job_id: str | None = None,
    experiment: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    source_run: str | None = None,
) -> Job:
    """Create a job of ``spec``'s kind: record it, prepare its folder, start it on its engine.

    ``prepare(job_id, job_dir)`` writes what the engine needs into the job's new folder (a
    captured program's bundle, a notebook's copy …); ``children`` are its child tasks
    (their ``job_id`` is set here). Any error of ``prepare`` leaves nothing (no record, no
    folder); so does a refusal of the engine (:class:`InvalidOptionError`,
    :class:`PreflightError`: it started nothing); any other error of the engine's submit
    marks the job Failed, with the error, and is raised. ``start=False`` records the job
    Pending for someone else to :func:`start` (a sweep's runs). ``notebook`` defaults to
    the kernel's notebook (``JPY_SESSION_NAME``).

    The job is also a run of ``experiment`` (default: the notebook's name) with ``params``
    beyond its spec's (the scalars its cell read), ``tags`` and ``source_run`` (the run it
    is a re-run of): see :mod:`kfjupyter.tracking`.
    """
    engine = get_backend(spec.kind, spec.backend)
    ws = get_workspace()
    job_id, job_dir = _new_folder(ws, spec, job_id)
    try:
        if prepare is not None:
            prepare(job_id, job_dir)
        record = JobRecord(
            id=job_id, name=spec.name, kind=spec.kind, backend=spec.backend, status=st.PENDING,
            workers=spec.workers, spec=spec.to_dict(), backend_info={},
            notebook=notebook if notebook is not None else os.environ.get("JPY_SESSION_NAME"), cell=cell,
        )  # fmt: skip
        kids = builtins.list(children)
        for kid in kids:
            kid.job_id = job_id
        run = new_run(job_id, record.notebook, experiment, params, tags, source_run)
        with ws.session() as s, s.begin():  # the job, its run and its children, or nothing
            s.add(record)
            s.add(run)
            s.add_all(kids)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    if start:
        _start(job_id, spec, job_dir, engine)
    return get(job_id)


def default_experiment(notebook: str | None) -> str:
    """A run's experiment when none is given: its notebook's name, else ``Default``."""
    return Path(notebook).stem if notebook else DEFAULT_EXPERIMENT


def new_run(job_id: str, notebook: str | None, experiment: str | None = None, params: dict | None = None,
            tags: dict | None = None, source_run: str | None = None) -> RunRecord:  # fmt: skip
    """The run record of a new job (its environment captured now)."""
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip() or len(experiment) > 200):
        raise InvalidOptionError(f"invalid experiment name {experiment!r}: 1 to 200 characters")
    return RunRecord(
        id=job_id, job_id=job_id, experiment=(experiment or "").strip() or default_experiment(notebook),
        params=dict(params or {}), tags={str(k): str(v) for k, v in (tags or {}).items()},
        env=environment(notebook), metrics={}, source_run=source_run,
    )  # fmt: skip


def _new_folder(ws, spec: JobSpec, job_id: str | None) -> tuple[str, Path]:
    """A job id whose folder did not exist (made here): no job takes over another's."""
    for _ in range(20):
        candidate = job_id or spec.new_job_id()
        folder = ws.job_dir(candidate)
        private_dir(folder.parent)
        try:
            folder.mkdir(mode=DIR_MODE)
            return candidate, folder
        except FileExistsError:
            if job_id:
                raise InvalidOptionError(f"a job {job_id!r} exists already in the workspace at {ws.home}") from None
    raise InvalidOptionError(f"no free job id for {spec.name!r}: the workspace at {ws.home} holds too many of that name")


def start(job_id: str) -> JobRecord:
    """Start a job recorded with ``create(…, start=False)``."""
    ws = get_workspace()
    record = ws.get_job(job_id)
    spec = spec_class(record.kind).from_dict(record.spec)
    engine = get_backend(record.kind, record.backend)
    return _start(job_id, spec, ws.job_dir(job_id), engine, forget_refused=False)


def resubmit(job_id: str, spec: JobSpec, prepare: Callable[[str, Path], None] | None = None, **fields: Any) -> Job:
    """Start an ended job again with ``spec`` (a resumed study): its record and folder are
    kept. An error of ``prepare`` leaves the job as it was; a refusal of its engine marks
    it Failed (nothing is forgotten)."""
    ws = get_workspace()
    if prepare is not None:
        prepare(job_id, ws.job_dir(job_id))
    ws.update_job(job_id, status=st.PENDING, error=None, end_reason=None, finished_at=None, backend_info={},
                  spec=spec.to_dict(), workers=spec.workers, **fields)  # fmt: skip
    _start(job_id, spec, ws.job_dir(job_id), get_backend(spec.kind, spec.backend), forget_refused=False)
    return get(job_id)


def _start(job_id: str, spec: Any, job_dir: Path, engine: Engine, forget_refused: bool = True) -> JobRecord:
    ws = get_workspace()
    try:
        try:
            info = engine.submit(job_id, spec, job_dir)
        finally:  # what this process wrote there (the bundle, launch.json …): its processes write privately
            make_private(job_dir)
    except REFUSALS as exc:
        if forget_refused:
            forget(job_id)
        else:
            ws.update_job(job_id, status=st.FAILED, error=str(exc))
        raise
    except KFJupyterError as exc:
        ws.update_job(job_id, status=st.FAILED, error=str(exc))
        raise
    except BaseException as exc:
        ws.update_job(job_id, status=st.FAILED, error=f"submission failed: {exc!r}")
        raise
    record = ws.update_job(job_id, backend_info=info)
    if record.status == st.CANCELLED:  # cancelled while it was being started
        engine.cancel(job_id, info)
    return record
