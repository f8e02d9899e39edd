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
    """The JSON objects of a JSON-lines file (``kfjupyter.report``'s metrics file); a last
    line still being written is left for the next read."""
    out: list[dict] = []
    for line in read_lines(path):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written right now
    return out


def follow_file(
    path: Path,
    done: Callable[[], bool],
    tail: int | None = None,
    poll: float = 0.1,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """Yield the lines of a growing file until ``done()`` is true and it is read to the end.

    ``tail``: start with the last ``tail`` complete lines (default: from the beginning).
    ``stop``: an event another thread sets to end the iteration at the next poll (a
    reader whose client went away).
    """
    offset = 0
    if tail:
        try:
            with open(path, "rb") as fh:  # one read: the tail and where following starts agree
                data, end = _tail_bytes(fh, tail)
        except FileNotFoundError:
            data, end = b"", 0
        complete = data.rfind(b"\n") + 1  # complete lines only; the rest is read below
        offset = end - (len(data) - complete)
        yield from data[:complete].decode(errors="replace").splitlines()[-tail:]
    pending = b""
    while True:
        if stop is not None and stop.is_set():
            return
        finished = done()
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
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
