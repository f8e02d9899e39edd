"""Observing Kubernetes objects: a deletion as a job state, and watching for changes.

:func:`deletion` is the one rule every Kubernetes engine applies before its kind's own
mapping: an object carrying ``metadata.deletionTimestamp`` (held by finalizers: a
foreground delete's ``foregroundDeletion`` until the garbage collector removed the
dependants, a controller's own) is Cancelling; once it is gone (or replaced by another
object of the same name), Cancelled.

:class:`Changes` tells a follower when a job's objects changed, through WATCH requests
as the API expects them to be made: from the last ``resourceVersion`` seen (events and
``BOOKMARK``\\ s, ``allowWatchBookmarks``), each ending after ``timeoutSeconds`` and
resumed from where it was; a ``410 Gone`` (the version is too old) relists and watches
from the list's version. One request per watched collection every
:data:`WATCH_TIMEOUT_S` seconds in steady state, instead of a poll.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Callable

from .. import status as st

#: seconds a WATCH request lasts before it is resumed (client-go's informers: 5–10 min)
WATCH_TIMEOUT_S = 300
#: the longest pause after an error before watching again (doubling from 1 s)
MAX_RETRY_S = 30.0


def deletion(what: str, obj: dict | None, uid: str | None = None) -> st.Observation | None:
    """Cancelling while ``obj`` is being deleted, Cancelled once it is gone (``None``, or
    another uid than ``uid``); None while it lives (the kind's own mapping applies)."""
    if obj is None:
        return st.cancellation(what, gone=True)
    meta = obj.get("metadata") or {}
    if uid and meta.get("uid") != uid:
        return st.cancellation(what, gone=True, detail="another object of that name replaced it")
    if meta.get("deletionTimestamp"):
        finalizers = meta.get("finalizers") or []
        held = f"waiting for the finalizers {', '.join(finalizers)}" if finalizers else None
        return st.cancellation(what, gone=False, detail=held)
    return None


class Watch:
    """One collection (``field_selector`` / ``label_selector`` narrow it), watched in a
    daemon thread; :attr:`changed` is set on every event that is not a bookmark (and after
    a relist, which may have skipped some). ``list_call`` is a ``list_namespaced_*`` method
    of the ``kubernetes`` client with its positional arguments bound."""

    def __init__(self, list_call: Callable[..., Any], changed: threading.Event, *, field_selector: str | None = None,
                 label_selector: str | None = None, name: str = "watch"):  # fmt: skip
        self.list_call, self.changed = list_call, changed
        self.selectors = {k: v for k, v in (("field_selector", field_selector), ("label_selector", label_selector)) if v}
        self.resource_version: str | None = None
        self._closed = threading.Event()
        self._resp = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"kfjupyter-{name}")
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            _abort(resp)
        self._thread.join(5)

    def _relist(self) -> None:
        resp = self.list_call(_preload_content=False, **self.selectors)
        try:
            self.resource_version = json.loads(resp.data)["metadata"]["resourceVersion"]
        finally:
            resp.release_conn()
        self.changed.set()

    def _run(self) -> None:
        retry = 1.0
        while not self._closed.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._stream()
                retry = 1.0
            except Exception as exc:  # noqa: BLE001 - a watch that fails is retried; the follower still resyncs
                if self._closed.is_set():
                    return
                if getattr(exc, "status", None) == 410:
                    self.resource_version = None
                    continue
                if self._closed.wait(retry):
                    return
                retry = min(retry * 2, MAX_RETRY_S)

    def _stream(self) -> None:
        resp = self.list_call(
            watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_S, _request_timeout=(30, WATCH_TIMEOUT_S + 60), _preload_content=False,
            **self.selectors,
        )  # fmt: skip
        with self._lock:
            self._resp = resp
        if self._closed.is_set():
            _abort(resp)
            return
        buffer = b""
        try:
            for chunk in resp.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip() and self._event(json.loads(line)):
                        return
        finally:
            with self._lock:
                self._resp = None
            resp.release_conn()

    def _event(self, event: dict) -> bool:
        """Take one event; True when the watch must end (410 Gone: relist)."""
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            if obj.get("code") == 410:
                self.resource_version = None
                return True
            raise RuntimeError(f"watch error: {obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if event.get("type") != "BOOKMARK":
            self.changed.set()
        return False


class Changes:
    """What a follower of a job waits on: any of ``watches`` changed (see the engines'
    ``changes``). ``wait(timeout)``: True if something changed (and clears it)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.watches: list[Watch] = []

    def watch(self, list_call: Callable[..., Any], **selectors: Any) -> "Changes":
        self.watches.append(Watch(list_call, self.event, **selectors))
        return self

    def wait(self, timeout: float) -> bool:
        if self.event.wait(max(0.0, timeout)):
            self.event.clear()
            return True
        return False

    def pending(self) -> bool:
        return self.event.is_set()

    def close(self) -> None:
        for w in self.watches:
            w.close()

    def __enter__(self) -> "Changes":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _abort(resp) -> None:
    """End a streaming response now, also from another thread (a blocked read returns)."""
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        resp.close()
    except Exception:  # noqa: BLE001
        pass
