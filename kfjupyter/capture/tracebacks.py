"""A rank's traceback as the notebook's author reads it.

A job runs its cell as ``program.py`` (:meth:`kfjupyter.capture.program.Program.source`:
a header, the imports and definitions captured from the notebook, then the cell below
the ``# --- the cell ---`` line), launched by kfjupyter's bootstrap through ``runpy``.
Its raw traceback therefore starts with the launcher's own frames and numbers lines of
``program.py``. :func:`readable` drops the launcher's frames and names each frame of the
program by where its code came from: the cell, with the cell's own line numbers (as
IPython's ``Cell In[3], line 7``), or a definition captured from the notebook.
The raw text stays in the job's record and its rank's log.
"""

from __future__ import annotations

import re

#: The line of ``program.py`` above the cell's first line.
CELL_MARKER = "# --- the cell ---"

#: A frame's first line: ``  File "PATH", line N, in NAME``.
_FRAME = re.compile(r'^(?P<indent>\s*)File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<name>.+))?$')

#: Frames of the launcher: kfjupyter's bootstrap and runpy (how it runs program.py).
_LAUNCHER = re.compile(r"(^|/)kf_bootstrap\.py$|/kfjupyter/runtime/(bootstrap|warm)\.py$|(^|/)runpy\.py$|^<frozen runpy>$")


def cell_start(program: str) -> int | None:
    """The line number in ``program`` of the cell's first line, or None without a marker."""
    for number, line in enumerate(program.splitlines(), start=1):
        if line.strip() == CELL_MARKER:
            return number + 1
    return None


def _frames(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of each frame: its ``File`` line and the indented lines
    below it (the source line and its carets)."""
    spans = []
    i = 0
    while i < len(lines):
        match = _FRAME.match(lines[i])
        if not match:
            i += 1
            continue
        indent = len(match.group("indent"))
        j = i + 1
        while j < len(lines) and not _FRAME.match(lines[j]) and len(lines[j]) - len(lines[j].lstrip()) > indent:
            j += 1
        spans.append((i, j))
        i = j
    return spans


def readable(error: str, program: str | None, where: str = "the cell") -> str:
    """``error`` (a failure text holding a Python traceback) with the launcher's frames
    left out and the frames of ``program.py`` (whose text is ``program``) named by cell
    line or captured definition. ``where`` names the cell (``"nb.ipynb, the %%kf_train
    cell"``). Text that holds no such frame comes back as it is."""
    if not error or 'File "' not in error:
        return error
    start = cell_start(program) if program else None
    lines = error.splitlines()
    out: list[str] = []
    last = 0
    for begin, end in _frames(lines):
        out += lines[last:begin]
        last = end
        match = _FRAME.match(lines[begin])
        assert match is not None
        path, number, name = match.group("file"), int(match.group("line")), match.group("name") or "?"
        indent = match.group("indent")
        if _LAUNCHER.search(path):
            continue  # kfjupyter's launcher: not the user's code
        if path.endswith("/bundle/program.py") or path == "program.py":  # the job's (not a pipeline step's)
            if start is not None and number >= start:
                out.append(f"{indent}Cell ({where}), line {number - start + 1}, in {name}")
            else:
                out.append(f"{indent}Captured from the notebook (program.py, line {number}), in {name}")
            out += lines[begin + 1:end]
            continue
        out += lines[begin:end]
    out += lines[last:]
    return "\n".join(out)
