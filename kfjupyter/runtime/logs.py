"""Reading the files a local job writes: logs (read, tail, follow) and JSON-lines metrics.

Every local engine reads its channels through these, whatever the kind of job.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

#: Bytes read at a time from a log's end when only its tail is wanted.
_TAIL_CHUNK = 64 * 1024


def _tail_bytes(fh, lines: int) -> tuple[bytes, int]:
    """The last ``lines`` complete lines of an open binary file, and where they end."""
    end = fh.seek(0, os.SEEK_END)
    data = b""
    pos = end
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        fh.seek(pos)
        data = fh.read(step) + data
        if data.count(b"\n") > lines:
            break
    return data, end


def read_lines(path: Path, tail: int | None = None) -> list[str]:
    """The lines of a text file (without newlines); with ``tail``, its last ``tail`` lines
    only, read from the end (a long log is not read whole)."""
    try:
        with open(path, "rb") as fh:
            if tail:
                data, _ = _tail_bytes(fh, tail)
            else:
                data = fh.read()
    except FileNotFoundError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return lines[-tail:] if tail else lines


def read_records(path: Path) -> list[dict]:
    """The metric records of a JSON-lines file (``kfjupyter.report``'s metrics file; the
    params records of ``kfjupyter.log_params`` left out); a last line still being written
    is left for the next read."""
    out: list[dict] = []
    for line in read_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if isinstance(record, dict) and "params" not in record:
            out.append(record)
    return out


def read_span(path: Path, start: int, end: int | None = None) -> str:
    """The text of a file from byte ``start`` to ``end`` (default: its end)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            return fh.read(None if end is None else max(0, end - start)).decode(errors="replace")
    except FileNotFoundError:
        return ""


def follow_file(
    path: Path,
    done: Callable[[], bool],
    tail: int | None = None,
    poll: float = 0.1,
    stop: threading.Event | None = None,
    start: int = 0,
    end: Callable[[], int | None] | None = None,
) -> Iterator[str]:
    """Yield the lines of a growing file until ``done()`` is true and it is read to the end.

    ``tail``: start with the last ``tail`` complete lines (default: from the beginning).
    ``stop``: an event another thread sets to end the iteration at the next poll (a
    reader whose client went away). ``start``, ``end()``: follow only the part of the file
    from byte ``start`` to where ``end()`` says, once it says (one trial's part of its
    worker's log).
    """
    offset = start
    if tail and not start:
        try:
            with open(path, "rb") as fh:  # one read: the tail and where following starts agree
                data, size = _tail_bytes(fh, tail)
        except FileNotFoundError:
            data, size = b"", 0
        complete = data.rfind(b"\n") + 1  # complete lines only; the rest is read below
        offset = size - (len(data) - complete)
        yield from data[:complete].decode(errors="replace").splitlines()[-tail:]
    pending = b""
    while True:
        if stop is not None and stop.is_set():
            return
        finished = done()
        limit = end() if end is not None and finished else None
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read() if limit is None else fh.read(max(0, limit - offset))
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
        if finished:
            if pending:
                yield pending.decode(errors="replace")
            return
        if stop is not None:
            if stop.wait(poll):
                return
        else:
            time.sleep(poll)


def poll_follow(
    read: Callable[[], list[str]],
    done: Callable[[], bool],
    tail: int | None = None,
    poll: float = 1.0,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """Follow a log that can only be read whole (a remote engine's summary): every ``poll``
    seconds ``read()`` it and yield each line not seen before, until ``done()``."""
    seen: set[str] = set()
    first = True
    while True:
        finished = done()
        lines = read()
        fresh = [line for line in lines if line not in seen]
        seen.update(fresh)
        if first and tail:
            fresh = fresh[-tail:]
        first = False
        yield from fresh
        if finished or (stop is not None and stop.wait(poll)) or (stop is None and time.sleep(poll)):
            return
