"""One background watcher of the workspace store, fanned out to every push channel.

Every ``interval`` seconds the watcher lists the newest jobs (where new jobs show up),
every active job, and the jobs it saw active last time; it refreshes the active ones through
their backend (so a local job whose supervisor died, or a TrainJob that finished, is
seen even when no kernel asks), and compares each job with what it saw last time. A
job that is new, or whose record changed, is published:

- to every subscriber queue (the ``GET /events`` server-sent-event streams), and
- on jupyter_server's event bus under :data:`JOB_EVENT_SCHEMA_ID`.

The store is only read through :mod:`kfjupyter.jobs`, in the default executor, so a
slow store or Kubernetes API never blocks the server's event loop. When nobody
listens the watcher idles instead of polling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kfjupyter import jobs
from kfjupyter import status as st
from kfjupyter.errors import JobNotFoundError

from .serialize import job_json

JOB_EVENT_SCHEMA_ID = "https://kfjupyter.org/events/job/v1"

#: A subscriber further behind than this is a stuck client: it gets no more events.
MAX_QUEUED = 10_000

#: Put on a subscriber queue when the watcher stops, so its stream ends.
STOPPED = object()


class StreamEvent(dict):
    """A non-job item of the ``GET /events`` stream: its SSE event name is ``sse_event``
    (a job's JSON, a plain dict, goes out as ``event: job``)."""

    sse_event = "event"


class ModelEvent(StreamEvent):
    """The model registry changed (``event: model``; data: ``{"marker": …}``): a
    registration, an alias move, an archive or an edit, from any process."""

    sse_event = "model"


class JobWatcher:
    def __init__(self, interval: float = 1.0, limit: int = 50, event_logger: Any = None, log: logging.Logger | None = None):
        self.interval = interval
        self.limit = limit
        self.event_logger = event_logger
        self.log = log or logging.getLogger(__name__)
        self._subscribers: set[asyncio.Queue] = set()
        self._snapshot: dict[str, dict] | None = None
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._failures = 0
        #: the registry's last change marker (None: not read yet); the watcher reads it each turn
        self._model_marker: Any = None
        self._model_failures = 0

    # -- lifetime -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start watching (idempotent); must be called from the server's event loop."""
        if self.running:
            return
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kfjupyter-job-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for queue in list(self._subscribers):
            queue.put_nowait(STOPPED)
        self._subscribers.clear()

    async def wait_ready(self) -> None:
        """Wait until the first look at the store is done (the baseline changes are measured from)."""
        self.start()
        assert self._ready is not None
        await self._ready.wait()

    # -- subscribers ----------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue:
        """A queue that receives the JSON of every job that appears or changes."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(queue)
        self.start()
        if self._wake is not None:
            self._wake.set()  # leave an idle wait now
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    def _bus_listening(self) -> bool:
        logger = self.event_logger
        if logger is None:
            return False
        if getattr(logger, "handlers", None):
            return True
        try:
            return bool(
                logger._modified_listeners.get(JOB_EVENT_SCHEMA_ID)
                or logger._unmodified_listeners.get(JOB_EVENT_SCHEMA_ID)
            )
        except AttributeError:  # another jupyter_events: assume someone listens
            return True

    def _publish(self, job: dict) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() < MAX_QUEUED:
                queue.put_nowait(job)
        if self.event_logger is not None and self._bus_listening():
            try:
                self.event_logger.emit(schema_id=JOB_EVENT_SCHEMA_ID, data=job)
            except Exception:
                self.log.warning("kfjupyter: could not emit a job event on the event bus", exc_info=True)

    # -- the loop ---------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._ready is not None and self._wake is not None
        while True:
            if self._snapshot is not None and not self._subscribers and not self._bus_listening():
                # nobody listens: wait for a subscriber; checking for bus listeners costs nothing
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                changed = await loop.run_in_executor(None, self.scan)
                self._failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                self._failures += 1
                if self._failures in (1, 10) or self._failures % 100 == 0:
                    self.log.warning("kfjupyter: the job watcher could not read the store", exc_info=True)
                changed = []
            self._ready.set()
            for job in changed:
                self._publish(job)
            if self._subscribers:
                await self._look_at_models(loop)
            await asyncio.sleep(self.interval)

    async def _look_at_models(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            event = await loop.run_in_executor(None, self.scan_models)
            self._model_failures = 0
        except asyncio.CancelledError:
            raise
        except Exception:
            self._model_failures += 1
            if self._model_failures in (1, 10) or self._model_failures % 100 == 0:
                self.log.warning("kfjupyter: the job watcher could not read the model registry", exc_info=True)
            return
        if event is not None:
            for queue in list(self._subscribers):
                if queue.qsize() < MAX_QUEUED:
                    queue.put_nowait(event)

    def scan_models(self) -> "ModelEvent | None":
        """Read the registry's change marker (blocking); a :class:`ModelEvent` when it
        changed since the last read (the first read only records it)."""
        from kfjupyter import registry

        marker = registry.change_marker()
        previous, self._model_marker = self._model_marker, marker
        if previous is None or previous == marker:
            return None
        return ModelEvent(marker=marker)

    def scan(self) -> list[dict]:
        """Look at the store once (blocking); return the JSON of jobs new or changed since the last look.

        The first look only records what is there.
        """
        found: dict[str, jobs.Job] = {job.id: job for job in jobs.list(limit=self.limit)}
        for status in st.ACTIVE:  # active jobs, however old
            found.update((job.id, job) for job in jobs.list(status=status, limit=None) if job.id not in found)
        previous = self._snapshot or {}
        for job_id, seen in previous.items():  # seen active last time, finished since, and old
            if job_id not in found and seen["status"] not in st.TERMINAL:
                try:
                    found[job_id] = jobs.get(job_id)
                except JobNotFoundError:
                    pass
        snapshot: dict[str, dict] = {}
        changed: list[dict] = []
        for job in found.values():
            if job.record.status not in st.TERMINAL:
                try:
                    job.refresh()
                except Exception as exc:  # e.g. the Kubernetes API is unreachable: keep the stored record
                    self.log.debug("kfjupyter: could not refresh job %s: %s", job.id, exc)
            data = job_json(job)
            key = {k: v for k, v in data.items() if k != "duration_s"}
            snapshot[job.id] = key
            if self._snapshot is not None and previous.get(job.id) != key:
                changed.append(data)
        self._snapshot = snapshot
        changed.sort(key=lambda d: (d.get("created_at") or "", d["id"]))
        return changed
