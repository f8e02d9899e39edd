"""Fixtures and helpers of the server-extension tests (tests/test_server_*.py).

pytest-jupyter's fixtures are imported here, not registered as a plugin, so they (and
their autouse event loop) only touch the modules that import them. Its async-test hook
is not registered either: :func:`async_test` runs a coroutine test on the fixture's loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from jsonschema import Draft202012Validator
from jupyter_core.utils import ensure_event_loop
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tornado.httpclient import AsyncHTTPClient

from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures: jp_fetch, jp_serverapp …)

import kfjupyter
from kfjupyter import status as st

REPO = Path(__file__).resolve().parent.parent
OPENAPI_FILE = REPO / "server_ext" / "openapi.yaml"
API = "kfjupyter/api/v1"
#: filterwarnings mark for every server test: an undecorated verb fails the test
AUTH_WARNINGS_ARE_ERRORS = pytest.mark.filterwarnings("error::jupyter_server.utils.JupyterServerAuthWarning")


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {
            "jpserver_extensions": {"kfjupyter_server": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
            "reraise_server_extension_failures": True,
        },
        "KFJupyter": {"poll_interval": 0.2, "keepalive_interval": 0.5},
    }


def async_test(fn: Callable) -> Callable:
    """Run ``async def test_…`` on pytest-jupyter's event loop (the loop the server uses)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        ensure_event_loop(prefer_selector_loop=True).run_until_complete(fn(*args, **kwargs))

    return run


async def blocking(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (train, wait …) off the event loop, so the server keeps serving."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


async def train(source: str, name: str = "x", workers: int = 1, wait: bool = False) -> kfjupyter.Job:
    job = await blocking(kfjupyter.train, source, workers=workers, name=name, user_ns={})
    if wait:
        await blocking(job.wait, 60)
    return job


#: A tiny tuning program: one parameter, a report per step, a line printed per trial.
TUNE_CELL = """import time
x = kfjupyter.param("x", low=0.0, high=1.0)
print("trial with x", x, flush=True)
for step in range(STEPS):
    time.sleep(SLEEP)
    kfjupyter.report(step=step, loss=(x - 0.3) ** 2 + 0.1 / (step + 1))
"""


async def tune(
    name: str = "study", trials: int = 1, parallel: int = 1, steps: int = 1, sleep: float = 0.0, wait: bool = True
) -> "kfjupyter.Study":
    """A real local study of TUNE_CELL (random search over x); waited for unless ``wait=False``."""
    source = f"STEPS = {steps}\nSLEEP = {sleep}\n" + TUNE_CELL
    study = await blocking(
        kfjupyter.tune, source, "loss", trials=trials, parallel=parallel, algorithm="random", seed=0, name=name, user_ns={}
    )
    if wait:
        await blocking(study.wait, 60)
    return study


async def wait_running(job: kfjupyter.Job, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while await blocking(lambda: job.status) != st.RUNNING:
        assert time.monotonic() < deadline, f"job {job.id} never ran: {job.record.status} {job.record.error}"
        await asyncio.sleep(0.1)


async def get_json(jp_fetch, *parts: str, **params: Any) -> Any:
    response = await jp_fetch(API, *parts, params={k: str(v) for k, v in params.items()})
    assert response.code == 200
    return json.loads(response.body)


async def error_of(jp_fetch, *parts: str, method: str = "GET", **params: Any) -> tuple[int, dict]:
    kwargs = {"body": b""} if method == "POST" else {}
    response = await jp_fetch(
        API, *parts, method=method, params={k: str(v) for k, v in params.items()}, raise_error=False, **kwargs
    )
    assert response.headers["Content-Type"].startswith("application/json")
    return response.code, json.loads(response.body)


# -- the OpenAPI file ----------------------------------------------------------------
def openapi() -> dict:
    return yaml.safe_load(OPENAPI_FILE.read_text())


def openapi_operations() -> list[tuple[str, str]]:
    """(path, VERB) of every operation the spec describes."""
    verbs = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sorted((path, verb.upper()) for path, item in openapi()["paths"].items() for verb in item if verb in verbs)


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    spec = openapi()
    return Registry().with_resource("urn:kfjupyter-openapi", Resource.from_contents(spec, default_specification=DRAFT202012))


def check_schema(instance: Any, name: str) -> None:
    """Validate ``instance`` against ``#/components/schemas/<name>`` of the OpenAPI file."""
    validator = Draft202012Validator({"$ref": f"urn:kfjupyter-openapi#/components/schemas/{name}"}, registry=_registry())
    errors = sorted(validator.iter_errors(instance), key=str)
    assert not errors, f"{name} does not match the OpenAPI schema: {[e.message for e in errors]}"


# -- server-sent events ---------------------------------------------------------------
class EventStream:
    """A streaming GET of a text/event-stream route, parsed as it arrives."""

    def __init__(self, url: str, headers: dict[str, str]):
        self.url = url
        self.headers = headers
        self.events: list[tuple[str, Any]] = []  # (event name, parsed data)
        self.comments: list[str] = []
        self.code: int | None = None
        self.content_type: str | None = None
        self._buffer = ""
        self._changed = asyncio.Event()
        self._client = AsyncHTTPClient(force_instance=True)
        self.response: asyncio.Future | None = None

    def start(self) -> "EventStream":
        self.response = asyncio.ensure_future(
            self._client.fetch(
                self.url,
                headers=self.headers,
                streaming_callback=self._feed,
                header_callback=self._header,
                request_timeout=60,
                raise_error=False,
            )
        )
        self.response.add_done_callback(lambda _: self._changed.set())
        # A stream still open when its server stops ends in "HTTP 599: Connection closed".
        # Mark that error as seen: left unseen, the future logs it when collected, and
        # that can happen inside an ast.parse of a later test (CPython 3.11's parser is
        # not re-entrant there: "AST constructor recursion depth mismatch").
        self.response.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self

    def _header(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self.code = int(line.split()[1])
        elif line.lower().startswith("content-type:"):
            self.content_type = line.split(":", 1)[1].strip()

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk.decode()
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            event, data = "message", []
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
            if data:
                self.events.append((event, json.loads("\n".join(data))))
        self._changed.set()

    @property
    def done(self) -> bool:
        return self.response is not None and self.response.done()

    async def until(self, predicate: Callable[["EventStream"], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            left = deadline - time.monotonic()
            assert left > 0, f"stream {self.url}: condition not met in {timeout} s; events {self.events}"
            assert not self.done or predicate(self), f"stream ended early: {self.response.result().code}; {self.events}"
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    async def finished(self, timeout: float = 30):
        return await asyncio.wait_for(asyncio.shield(self.response), timeout)

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def event_stream(jp_fetch, jp_http_port, jp_base_url, jp_auth_header):
    """Open an SSE route of the extension: ``await event_stream("events")``-style factory."""
    streams: list[EventStream] = []

    def open_stream(*parts: str, headers: dict | None = None, **params: Any) -> EventStream:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}{API}/{'/'.join(parts)}" + (f"?{query}" if query else "")
        stream = EventStream(url, dict(jp_auth_header) if headers is None else headers).start()
        streams.append(stream)
        return stream

    yield open_stream
    for stream in streams:
        stream.close()
