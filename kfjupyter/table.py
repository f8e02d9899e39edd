"""Rows shown as an HTML table in a notebook and as aligned text everywhere else.

Every listing a magic shows (jobs, models, versions, a pipeline's steps …) is a
:class:`Table`: front ends that render HTML use ``_repr_html_``; a terminal, a log or a
saved notebook's ``text/plain`` get its ``__repr__``, never ``<… object>``.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any, Sequence


def fmt(value: Any) -> str:
    """A value as a table cell shows it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


class Table:
    """Rows shown as an HTML table in a notebook and aligned text elsewhere; ``caption``
    is a line above them, ``empty`` what an empty table says."""

    css_class = "kfjupyter-table"

    def __init__(self, columns: Sequence[str], rows: list[dict[str, Any]], caption: str = "", empty: str = "",
                 css_class: str | None = None):  # fmt: skip
        self.columns = list(columns)
        self.rows = [{c: fmt(r.get(c)) for c in self.columns} for r in rows]
        self.caption = caption
        self.empty = empty
        if css_class:
            self.css_class = css_class

    def _repr_html_(self) -> str:
        if not self.rows and self.empty:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in self.columns) + "</tr>" for r in self.rows
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table class='{self.css_class}'>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        if not self.rows and self.empty:
            return self.empty
        rows = [dict(zip(self.columns, self.columns)), *self.rows]
        widths = {c: max(len(r[c]) for r in rows) for c in self.columns}
        lines = ["  ".join(r[c].ljust(widths[c]) for c in self.columns).rstrip() for r in rows]
        return "\n".join(([self.caption] if self.caption else []) + lines)
