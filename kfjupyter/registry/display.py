"""Registry entities shown in a notebook (HTML) and in a terminal (text)."""

from __future__ import annotations

import html

from ..table import Table as BaseTable
from ..table import fmt as _fmt
from .entities import AliasEvent, ModelVersion, Page, RegisteredModel


class Table(BaseTable):
    """A registry listing (see :class:`kfjupyter.table.Table`)."""

    css_class = "kfjupyter-models"


def _caption(page: Page, what: str) -> str:
    shown = f"{page.offset + 1}-{page.offset + len(page.items)}" if page.items else "0"
    total = f" of {page.total}" if page.total is not None else ""
    return f"{what} {shown}{total}"


def models_table(page: Page[RegisteredModel]) -> Table:
    rows = [
        {
            "name": m.name,
            "latest": m.latest_version,
            "versions": m.version_count,
            "aliases": {a: f"v{n}" for a, n in m.aliases.items()},
            "frameworks": m.frameworks,
            "state": m.state,
            "updated": m.updated_at,
        }
        for m in page.items
    ]
    return Table(["name", "latest", "versions", "aliases", "frameworks", "state", "updated"], rows, _caption(page, "models"))


def versions_table(versions: Page[ModelVersion] | list[ModelVersion]) -> Table:
    items = versions.items if isinstance(versions, Page) else list(versions)
    metric_names = sorted({k for v in items for k in v.metrics})[:6]
    rows = []
    for v in items:
        row = {
            "version": v.ref,
            "name": v.name if v.number is None or v.name != str(v.number) else "",
            "aliases": v.aliases,
            "framework": v.framework,
            "state": v.state,
            "job": v.lineage.get("job_id"),
            "created": v.created_at,
        }
        row.update({m: v.metrics.get(m) for m in metric_names})
        rows.append(row)
    columns = ["version", "name", "aliases", "framework", *metric_names, "state", "job", "created"]
    caption = _caption(versions, "versions") if isinstance(versions, Page) else ""
    return Table(columns, rows, caption)


def history_table(events: list[AliasEvent]) -> Table:
    rows = [
        {
            "when": e.at,
            "alias": e.alias,
            "from": f"v{e.from_version}" if e.from_version is not None else "–",
            "to": f"v{e.to_version}" if e.to_version is not None else "(removed)",
            "who": e.who,
            "reason": e.reason,
        }
        for e in events
    ]
    return Table(["when", "alias", "from", "to", "who", "reason"], rows, "alias history")


class VersionCard:
    """One version: what it is, its numbers, where it came from, its files."""

    def __init__(self, version: ModelVersion):
        self.version = version

    def _fields(self) -> list[tuple[str, str]]:
        v = self.version
        lineage = v.lineage
        cell = (lineage.get("cell") or "").strip()
        art = v.artifact
        return [
            ("version", f"{v.ref}" + (f" ({v.name})" if v.number is not None and v.name != str(v.number) else "")),
            ("state", v.state),
            ("aliases", ", ".join(v.aliases)),
            ("framework", f"{v.framework} {v.framework_version or ''}".strip()),
            ("metrics", _fmt(v.metrics)),
            ("params", _fmt(v.params)),
            ("description", v.description or ""),
            ("author", v.author or ""),
            ("created", _fmt(v.created_at)),
            ("job", " ".join(str(lineage[k]) for k in ("job_id", "job_kind", "job_status") if lineage.get(k))),
            ("notebook", lineage.get("notebook", "")),
            ("cell", cell[:400] + ("…" if len(cell) > 400 else "")),
            ("artifact", f"{art.uri} (sha256 {(art.sha256 or '')[:12]}, {art.size} bytes)" if art else ""),
            ("properties", _fmt(v.custom_properties)),
        ]

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td><pre style='margin:0'>{html.escape(val)}</pre></td></tr>"
            if k == "cell"
            else f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(val)}</td></tr>"
            for k, val in self._fields()
            if val
        )
        return f"<table class='kfjupyter-model-version'>{rows}</table>"

    def __repr__(self) -> str:
        fields = [(k, v) for k, v in self._fields() if v]
        width = max(len(k) for k, _ in fields)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)
