"""REST handlers: parse the request, call :mod:`kfjupyter.jobs` (or, for tuning studies,
:mod:`kfjupyter.tuning.study`), serialise the answer.

Every verb is ``@web.authenticated`` + ``@authorized`` (resource ``kfjupyter``); POSTs
from cookie-authenticated browsers must carry the XSRF token (jupyter_server checks it).
Calls into kfjupyter that touch the store or a backend run in the default executor, so
the server's event loop never waits on SQLite, a process or the Kubernetes API.
Errors are JSON ``{"message", "reason"}``: kfjupyter's ``JobNotFoundError`` → 404,
``InvalidOptionError`` → 400, ``BackendError`` → 502; an id that is no tuning study →
404 ``StudyNotFound``, a trial number the study lacks → 404 ``TrialNotFound``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import urllib.parse
from http.client import responses
from typing import Any, Callable

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from kfjupyter import jobs
from kfjupyter import status as st
from kfjupyter.errors import BackendError, InvalidOptionError, JobNotFoundError, KFJupyterError
from kfjupyter.runtime.engine import UnknownChannelError
from kfjupyter.tuning import study as studies

from .serialize import dumps, job_json
from .watcher import STOPPED

AUTH_RESOURCE = "kfjupyter"

#: A job kind as the store spells it ("train", "tune", …): checked for shape only, so
#: kinds added by later capabilities need no change here.
KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,19}$")
MAX_PAGE = 1000
#: The largest integer any route takes (a signed 64-bit integer: what the store holds).
MAX_INT = 2**63 - 1
#: Lines a log stream reads ahead of a slow client before its reader thread waits.
LOG_BUFFER = 5000
#: Lines written to a log stream in one flush.
LOG_BATCH = 500
#: Seconds between two looks at a job's state while a stream waits for it.
STATE_POLL = 0.5

#: Put on a stream's queue when its client goes away.
GONE = object()


def api_error(code: int, message: str, reason: str | None = None) -> web.HTTPError:
    # "%s" keeps a '%' in the message from breaking tornado's log formatting
    return web.HTTPError(code, "%s", message, reason=reason or responses.get(code, "Error"))


def bad_request(message: str) -> web.HTTPError:
    return api_error(400, message, "BadRequest")


def parse_int(raw: str, name: str, minimum: int | None = 0, maximum: int | None = None) -> int:
    """``raw`` (a query or path parameter) as an integer from ``minimum`` to ``maximum``
    (at most :data:`MAX_INT`); a 400 naming ``name`` otherwise. Every integer a route
    takes is read here."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw[:100]!r}") from None
    top = MAX_INT if maximum is None else min(maximum, MAX_INT)
    if (minimum is not None and value < minimum) or value > top:
        raise bad_request(f"{name} must be between {minimum} and {top}, got {raw.strip()[:100]}")
    return value


def attachment(filename: str) -> str:
    """A Content-Disposition offering ``filename`` as a download (RFC 6266): an ASCII
    fallback, and the name itself percent-encoded as UTF-8 (RFC 5987), so any name (not
    Latin-1, holding CR/LF or quotes) makes a valid header."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"


class KFJupyterHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every kfjupyter route."""

    auth_resource = AUTH_RESOURCE

    @property
    def kfconfig(self):
        return self.settings["kfjupyter"]

    @property
    def watcher(self):
        return self.settings["kfjupyter_watcher"]

    # -- errors --------------------------------------------------------------------
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = responses.get(status_code, "Error")
        message = reason
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, web.HTTPError):
            if exc.log_message:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            reason = exc.reason or reason
        elif exc is not None:
            message, reason = "Unhandled error", "InternalError"
        self.finish(dumps({"message": message, "reason": reason}))

    #: kfjupyter's errors → (HTTP status, reason), the first matching class wins; a family
    #: of routes puts its own in front (``ERRORS = (…) + KFJupyterHandler.ERRORS``). A
    #: reason of None is the error's class name.
    ERRORS: tuple[tuple[type[BaseException], int, str | None], ...] = (
        (JobNotFoundError, 404, "JobNotFound"),
        (InvalidOptionError, 400, "InvalidOption"),
        (BackendError, 502, "BackendError"),
        (KFJupyterError, 500, None),
    )

    def http_error(self, exc: BaseException) -> web.HTTPError | None:
        """The API's answer to ``exc`` (per :attr:`ERRORS`), or None: not ours to answer."""
        for kind, code, reason in self.ERRORS:
            if isinstance(exc, kind):
                return api_error(code, str(exc), reason or type(exc).__name__)
        return None

    async def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking kfjupyter call in the executor; its errors become HTTP errors."""
        try:
            return await IOLoop.current().run_in_executor(None, functools.partial(fn, *args, **kwargs))
        except web.HTTPError:
            raise
        except Exception as exc:
            answer = self.http_error(exc)
            if answer is None:
                raise
            raise answer from exc

    # -- arguments -------------------------------------------------------------------
    def int_arg(self, name: str, default: int | None, minimum: int = 0, maximum: int | None = None) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw.strip() == "":
            return default
        return parse_int(raw, name, minimum, maximum)

    def json_body(self) -> Any:
        """The request's JSON body (None when it is empty); 400 when it is not JSON, or
        nested deeper than a parser goes. Every JSON body a route takes is read here."""
        raw = self.request.body or b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except RecursionError:
            raise bad_request("the body is not JSON that can be read: it is nested too deeply") from None
        except ValueError:
            raise bad_request("the body is not JSON") from None

    def json_object(self, example: str, required: bool = True) -> dict:
        """The request's body as a JSON object (``{}`` when empty and not ``required``)."""
        body = self.json_body()
        if body is None and not required:
            return {}
        if not isinstance(body, dict):
            raise bad_request(f"the body must be a JSON object like {example}")
        return body

    def channel_args(self, job: jobs.Job, metrics: bool = False) -> tuple[int | None, str | None]:
        """``rank`` and ``channel`` of a log or metrics request: a channel the job has, or a
        rank among its own channels (checked once the job has reached its backend)."""
        channel = (self.get_query_argument("channel", None) or "").strip() or None
        rank = self.int_arg("rank", None if metrics or channel else 0, minimum=-1)
        if submitted(job) and rank is not None and channel is None:
            known = job.channels()
            own = known.metrics if metrics else known.logs
            if not any(c.rank == rank for c in own):
                ranks = sorted(c.rank for c in own if c.rank is not None)
                shown = f"ranks {ranks[0]}..{ranks[-1]}" if ranks == list(range(ranks[0], ranks[-1] + 1)) and ranks else \
                    f"ranks {', '.join(map(str, ranks)) or 'none'}"
                raise bad_request(f"invalid rank {rank}: job {job.id} has {shown}")
        return rank, channel

    async def load_job(self, job_id: str) -> jobs.Job:
        return await self.call(load_job, job_id, self.log)


def load_job(job_id: str, log=None) -> jobs.Job:
    """The job, refreshed from its backend when active; an unreachable backend leaves the stored state."""
    job = jobs.get(job_id)
    refresh_quietly(job, log)
    return job


def refresh_quietly(job: jobs.Job, log=None) -> None:
    if job.record.status in st.TERMINAL:
        return
    try:
        job.refresh()
    except BackendError as exc:
        if log is not None:
            log.debug("kfjupyter: could not refresh job %s: %s", job.id, exc)


def submitted(job: jobs.Job) -> bool:
    """Whether the backend has the job yet (a job is recorded a moment before it is submitted)."""
    return bool(job.record.backend_info)


# -- jobs ------------------------------------------------------------------------------
class JobsHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        kind = self.get_query_argument("kind", None) or None
        status = self.get_query_argument("status", None) or None
        if kind is not None and not KIND_RE.match(kind):
            raise bad_request(f"invalid kind {kind!r}")
        if status is not None and status not in st.ALL:
            raise bad_request(f"unknown status {status!r}: use one of {', '.join(st.ALL)}")
        limit = self.int_arg("limit", 50, 0, MAX_PAGE)
        offset = self.int_arg("offset", 0, 0)

        def page() -> dict:
            found = jobs.list(kind=kind, status=status, limit=limit, offset=offset)
            for job in found:
                refresh_quietly(job, self.log)
            total = jobs.count(kind=kind, status=status)
            return {"jobs": [job_json(j) for j in found], "total": total, "limit": limit, "offset": offset}

        self.finish(dumps(await self.call(page)))


class JobHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = await self.load_job(job_id)
        self.finish(dumps(job_json(job)))


class CancelHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        job = await self.call(jobs.get, job_id)
        await self.call(job.cancel)
        self.finish(dumps(job_json(job)))


class LogsHandler(KFJupyterHandler):
    """One log channel of a job or of one of its child tasks, read once (``tail`` lines)."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        tail = self.int_arg("tail", 200)
        job = await self.call(jobs.get, job_id)
        rank, channel = await self.call(self.channel_args, job)
        lines: list[str] = []
        if submitted(job):
            text = await self.call(job.logs, rank=rank, tail=tail or None, channel=channel)
            lines = text.split("\n") if text else []
        answer = {"job_id": job.id, "rank": rank, "lines": lines}
        if channel is not None:
            answer["channel"] = channel
        self.finish(dumps(answer))


class MetricsHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = await self.call(jobs.get, job_id)
        rank, channel = await self.call(self.channel_args, job, True)
        rows = await self.call(job.metrics, rank, channel=channel) if submitted(job) else []
        self.finish(dumps({"job_id": job.id, "metrics": rows}))


def children_json(job: jobs.Job) -> dict:
    return {"job_id": job.id, "children": [c.to_dict() for c in job.children()]}


class ChildrenHandler(KFJupyterHandler):
    """A job's child tasks: pipeline steps, trials, sweep runs, an endpoint's servers."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = await self.load_job(job_id)
        self.finish(dumps(await self.call(children_json, job)))


class SettingsHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(dumps(self.kfconfig.to_dict()))


# -- tuning studies ---------------------------------------------------------------------
#: Lines of a trial's log sent unless ``tail`` says otherwise.
TRIAL_LOG_TAIL = 1000


def load_study(study_id: str) -> studies.Study:
    """The tuning study with that id (blocking); 404 when there is none or the job is no study."""
    try:
        return studies.Study(study_id)
    except (JobNotFoundError, InvalidOptionError):
        raise api_error(404, f"no tuning study {study_id!r} in this workspace", "StudyNotFound") from None


class StudiesHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        status = self.get_query_argument("status", None) or None
        if status is not None and status not in st.ALL:
            raise bad_request(f"unknown status {status!r}: use one of {', '.join(st.ALL)}")
        limit = self.int_arg("limit", 50, 0, MAX_PAGE)
        offset = self.int_arg("offset", 0, 0)

        def page() -> dict:
            found = studies.list_studies(status=status, limit=limit, offset=offset) if limit else []
            total = jobs.count(kind="tune", status=status)
            return {"studies": [s.summary() for s in found], "total": total, "limit": limit, "offset": offset}

        self.finish(dumps(await self.call(page)))


class StudyHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self, study_id: str) -> None:
        data = await self.call(lambda: load_study(study_id).to_dict())
        self.finish(dumps(data))


class StudyCancelHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def post(self, study_id: str) -> None:
        data = await self.call(lambda: load_study(study_id).cancel().to_dict())
        self.finish(dumps(data))


class StudyImportancesHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self, study_id: str) -> None:
        data = await self.call(lambda: load_study(study_id).param_importances())
        self.finish(dumps(data))


class StudyRetrainHandler(KFJupyterHandler):
    """POST: the study's cell again as a training job with the best params (its job back)."""

    @web.authenticated
    @authorized
    async def post(self, study_id: str) -> None:
        data = await self.call(lambda: load_study(study_id).retrain_best().to_dict())
        self.set_status(201)
        self.finish(dumps(data))


class TrialLogHandler(KFJupyterHandler):
    @web.authenticated
    @authorized
    async def get(self, study_id: str, number: str) -> None:
        trial = parse_int(number, "the trial number")
        tail = self.int_arg("tail", TRIAL_LOG_TAIL)

        def read() -> dict:
            study = load_study(study_id)
            try:
                text = study.trial_log(trial)
            except KeyError:
                raise api_error(404, f"study {study_id} has no trial {trial}", "TrialNotFound") from None
            lines = text.split("\n") if text else []
            if lines and lines[-1] == "":
                lines.pop()
            return {"study_id": study.id, "number": trial, "lines": lines[-tail:] if tail else lines}

        self.finish(dumps(await self.call(read)))


def _child_of(job: jobs.Job, channel: str):
    """The child task whose log channel ``channel`` is, or None (a channel of the job's own)."""
    if not job.engine.features.children:
        return None
    return next((c for c in job.children() if c.channel == channel), None)


def _check_channel(job: jobs.Job, channel: str) -> None:
    """400 when the job has no log channel ``channel`` (its own, or a child task's): its
    engine says so, reading the channel's last line."""
    try:
        job.logs(channel=channel, tail=1)
    except UnknownChannelError as exc:
        raise bad_request(str(exc)) from None


# -- server-sent events ------------------------------------------------------------------
def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {dumps(data)}\n\n"


class EventStreamHandler(KFJupyterHandler):
    """A ``text/event-stream`` response that notices its client leaving."""

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self._gone = asyncio.Event()
        self._queue: asyncio.Queue | None = None

    @property
    def keepalive(self) -> float:
        return self.kfconfig.keepalive_interval

    def on_connection_close(self) -> None:
        self._gone.set()
        if self._queue is not None:
            self._queue.put_nowait(GONE)
        super().on_connection_close()

    def start_stream(self) -> None:
        self.set_status(200)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")  # no buffering in nginx-like proxies

    async def send(self, text: str) -> bool:
        """Write and flush; False when the client is gone."""
        if self._gone.is_set():
            return False
        try:
            self.write(text)
            await self.flush()
        except StreamClosedError:
            self._gone.set()
            return False
        return True

    async def pause(self, seconds: float) -> bool:
        """Sleep; False when the client left meanwhile."""
        try:
            await asyncio.wait_for(self._gone.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return True
        return False

    def end(self) -> None:
        if not self._gone.is_set() and not self._finished:
            self.finish(set_content_type="text/event-stream; charset=utf-8")


class LogStreamHandler(EventStreamHandler):
    """One log channel of any job or child task (``channel``, else the job's ``rank``): the
    last ``tail`` lines, then (``follow``, the default) new lines as they come until its
    producer ends, then an ``end`` event with the job's state."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        tail = self.int_arg("tail", 200)
        follow = self.get_query_argument("follow", "true").strip().lower()
        if follow not in ("true", "false", "1", "0"):
            raise bad_request(f"follow must be true or false, got {follow!r}")
        job = await self.call(jobs.get, job_id)
        rank, channel = await self.call(self.channel_args, job)
        if channel is not None and submitted(job):
            await self.call(_check_channel, job, channel)
        self.start_stream()
        if not await self.send(": connected\n\n"):
            return
        try:
            # a job is recorded a moment before its backend has it: wait for that
            job = await self._wait(job_id, lambda j: submitted(j) or j.record.status in st.TERMINAL)
            if job is None:
                return
            live = follow in ("true", "1")
            if submitted(job) and not await self._follow(job, rank, channel, tail, live):
                self.end()  # the client left, or reading failed (an error event says why)
                return
            child = await self.call(_child_of, job, channel) if channel and submitted(job) else None
            if not live or child is not None:
                # read once; or a child task's channel, which ends with the child (a step, a
                # trial, a replaced server) while the job goes on: end now, with both states
                job = await self.load_job(job_id)
                end = {"status": job.record.status} | ({"child": child.name, "child_status": child.status} if child else {})
                await self.send(sse(end, "end"))
                self.end()
                return
            # the log is drained: wait for the job's final state
            job = await self._wait(job_id, lambda j: j.record.status in st.TERMINAL)
            if job is None:
                return
            await self.send(sse({"status": job.record.status}, "end"))
        except web.HTTPError as exc:  # the job vanished, or its backend failed, mid-stream
            message = exc.log_message % exc.args if exc.args else exc.log_message
            await self.send(sse({"message": message, "reason": exc.reason}, "error"))
        self.end()

    async def _wait(self, job_id: str, ready: Callable[[jobs.Job], bool]) -> jobs.Job | None:
        """Look at the job every STATE_POLL s until ``ready(job)``; None if the client left."""
        quiet = 0.0
        while True:
            job = await self.load_job(job_id)
            if ready(job):
                return job
            if not await self.pause(STATE_POLL):
                return None
            quiet += STATE_POLL
            if quiet >= self.keepalive:
                quiet = 0.0
                if not await self.send(": keepalive\n\n"):
                    return None

    async def _follow(self, job: jobs.Job, rank: int | None, channel: str | None, tail: int, live: bool) -> bool:
        """Stream lines until the backend's follow iterator ends (``live``; else the tail
        read once); False if the client left or it failed.

        ``Job.logs(follow=True)`` blocks, so a reader thread runs it and hands lines to
        the event loop. A slow client holds the reader back (LOG_BUFFER lines ahead at
        most). When the client leaves, the reader is told to stop (``stop``): it ends at
        once, or at its next line for an engine that cannot be interrupted.
        """
        loop = asyncio.get_running_loop()
        queue = self._queue = asyncio.Queue()
        stop = threading.Event()
        credits = threading.Semaphore(LOG_BUFFER)

        def put(item: tuple) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: the server is gone
                stop.set()

        def lines():
            if live:
                return job.logs(rank=rank, channel=channel, follow=True, tail=tail or None, stop=stop)
            text = job.logs(rank=rank, channel=channel, tail=tail or None)
            return text.split("\n") if text else []

        def read() -> None:
            try:
                for line in lines():
                    while not credits.acquire(timeout=0.5):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    put(("line", line))
            except Exception as exc:
                if not stop.is_set():
                    put(("error", exc))
            finally:
                put(("done", None))

        reader = threading.Thread(target=read, name=f"kfjupyter-log-{job.id}-{channel or rank}", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=self.keepalive)
                except asyncio.TimeoutError:
                    if not await self.send(": keepalive\n\n"):
                        return False
                    continue
                chunks: list[str] = []
                while True:
                    if item is GONE:
                        return False
                    what, value = item
                    if what == "line":
                        credits.release()
                        chunks.append(sse(value))
                    elif what == "error":
                        await self.send("".join(chunks))
                        message, reason = str(value), type(value).__name__
                        if not isinstance(value, KFJupyterError):
                            message = "Unhandled error while reading the log"
                        self.log.warning("kfjupyter: log stream of %s (%s) failed", job.id, channel or rank, exc_info=value)
                        await self.send(sse({"message": message, "reason": reason}, "error"))
                        return False
                    else:  # done
                        return await self.send("".join(chunks))
                    if len(chunks) >= LOG_BATCH or queue.empty():
                        break
                    item = queue.get_nowait()
                if not await self.send("".join(chunks)):
                    return False
        finally:
            stop.set()
            self._queue = None


class EventsHandler(EventStreamHandler):
    """Every job that appears or changes, as ``event: job`` with the Job's JSON."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        watcher = self.watcher
        queue = self._queue = watcher.subscribe()
        try:
            await watcher.wait_ready()
            self.start_stream()
            if not await self.send(": connected\n\n"):
                return
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=self.keepalive)
                except asyncio.TimeoutError:
                    text = ": keepalive\n\n"
                else:
                    chunks = []
                    while item is not None:
                        if item is GONE:
                            return
                        if item is STOPPED:
                            self.end()
                            return
                        chunks.append(sse(item, getattr(item, "sse_event", "job")))  # watcher.StreamEvent
                        item = None if queue.empty() else queue.get_nowait()
                    text = "".join(chunks)
                if not await self.send(text):
                    return
        finally:
            watcher.unsubscribe(queue)
            self._queue = None
