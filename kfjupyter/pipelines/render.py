"""Drawing a pipeline's DAG: an SVG string (no dependencies) and Graphviz DOT text.

The SVG uses a layered layout: a step's layer is the length of the longest path to it
from a step without upstream steps; layers run top to bottom, steps within a layer are
ordered by the mean position of their upstream steps (then notebook order). Edges carry
the names of the variables they pass; an order-only edge (a ``prev:`` tag, no data) is dashed.
"""

from __future__ import annotations

from html import escape

from .model import Pipeline

#: The MIME type of a pipeline (or a run of one) in a notebook's output: the extension
#: draws its DAG as the Pipeline panel does; the HTML beside it is what other front ends show.
PIPELINE_MIME = "application/vnd.kfjupyter.pipeline+json"

BOX_H = 34
GAP_X = 56
GAP_Y = 72
MARGIN = 20
CHAR_W = 7.4  # width of one character at font-size 13px, monospace-ish estimate
LABEL_MAX = 34


def mime_payload(pipeline: dict, states: dict[str, str] | None = None, run: dict | None = None) -> dict:
    """What :data:`PIPELINE_MIME` carries: the DAG (steps with their cells, edges with the
    names they pass; not the programs), each step's state in a run, and the run."""
    steps = {name: {"name": name, "cells": list(step.get("cells") or [])} for name, step in pipeline["steps"].items()}
    return {"pipeline": {"name": pipeline["name"], "notebook": pipeline.get("notebook"), "steps": steps,
                         "edges": pipeline["edges"]},
            "states": dict(states or {}), "run": run}  # fmt: skip


def layers(pipeline: Pipeline) -> list[list[str]]:
    """Steps grouped by layer, each layer ordered as drawn."""
    order = list(pipeline.steps)
    depth: dict[str, int] = {}
    for name in order:  # steps are in a topological order
        ups = pipeline.upstream(name)
        depth[name] = 1 + max(depth[u] for u in ups) if ups else 0
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in order:
        grouped[depth[name]].append(name)
    position: dict[str, float] = {}
    for layer in grouped:
        def key(name: str) -> tuple[float, int]:
            ups = pipeline.upstream(name)
            mean = sum(position[u] for u in ups) / len(ups) if ups else 0.0
            return (mean, order.index(name))

        layer.sort(key=key)
        for i, name in enumerate(layer):
            position[name] = float(i)
    return grouped


def _label(names: tuple[str, ...]) -> str:
    text = ", ".join(names)
    return text if len(text) <= LABEL_MAX else text[: LABEL_MAX - 1] + "…"


def _box_width(name: str) -> float:
    return max(96.0, len(name) * CHAR_W + 28)


def _bezier(x1: float, y1: float, x2: float, y2: float, mid: float, t: float) -> tuple[float, float]:
    u = 1 - t
    bx = u**3 * x1 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x2
    by = u**3 * y1 + 3 * u * u * t * mid + 3 * u * t * t * mid + t**3 * y2
    return bx, by


Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(
    text: str, curve: tuple[float, float, float, float, float], taken: list[Rect]
) -> tuple[float, float, str]:
    """Where an edge's label goes: beside its curve, clear of boxes and other labels."""
    x1, y1, x2, y2, _ = curve
    width, height = len(text) * 6.4 + 4, 14.0
    first_side = "end" if x2 < x1 - 1 else "start"
    sides = [first_side, "start" if first_side == "end" else "end"]
    # along the curve: the middle first, then towards the ends
    ts = [0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8, 0.12, 0.88]
    fallback = None
    for t in ts:
        px, py = _bezier(*curve, t)
        for side in sides:
            lx = px + 6 if side == "start" else px - 6
            rect = (lx, py - 10, lx + width, py + 4) if side == "start" else (lx - width, py - 10, lx, py + 4)
            if fallback is None:
                fallback = (lx, py + 4, side, rect)
            if not any(_overlaps(rect, r) for r in taken):
                taken.append(rect)
                return lx, py + 4 - (height - 14), side
    assert fallback is not None
    taken.append(fallback[3])
    return fallback[0], fallback[1], fallback[2]


#: The drawing's colours from JupyterLab's theme variables where the SVG is part of the page
#: (the HTML output), so labels, halos and boxes follow a dark theme; the fallbacks (and the
#: presentation attributes, where a sanitizer drops the style) are the light colours.
_THEME_STYLE = (
    "<style>"
    ".kfj-pipeline-dag .kfj-edge path{stroke:var(--jp-ui-font-color2,#5b6b7f)}"
    ".kfj-pipeline-dag .kfj-arrow{fill:var(--jp-ui-font-color2,#5b6b7f)}"
    ".kfj-pipeline-dag .kfj-label{fill:var(--jp-ui-font-color1,#3d4852);stroke:var(--jp-layout-color0,#ffffff)}"
    ".kfj-pipeline-dag .kfj-step rect{fill:var(--jp-layout-color2,#eef3fb);stroke:var(--jp-brand-color1,#4a6fa5)}"
    ".kfj-pipeline-dag .kfj-step text{fill:var(--jp-ui-font-color0,#1f2933)}"
    "</style>"
)


def to_svg(pipeline: Pipeline) -> str:
    """The DAG as a standalone SVG document (a string)."""
    grouped = layers(pipeline)
    widths = {name: _box_width(name) for name in pipeline.steps}
    row_w = [sum(widths[n] for n in layer) + GAP_X * (len(layer) - 1) for layer in grouped]
    total_w = max(row_w, default=120.0) + 2 * MARGIN
    boxes: dict[str, tuple[float, float, float]] = {}  # name → (x, y, width)
    for row, layer in enumerate(grouped):
        x = (total_w - row_w[row]) / 2
        y = MARGIN + row * (BOX_H + GAP_Y)
        for name in layer:
            boxes[name] = (x, y, widths[name])
            x += widths[name] + GAP_X
    total_h = MARGIN * 2 + len(grouped) * BOX_H + max(len(grouped) - 1, 0) * GAP_Y
    out = [
        "<svg>",  # the opening tag, once the labels' extent is known
        'font-family="ui-monospace, SFMono-Regular, Menlo, monospace" font-size="13">',
        f"<title>pipeline {escape(pipeline.name)}</title>",
        _THEME_STYLE,
        "<defs><marker id=\"kfj-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" "
        "markerHeight=\"7\" orient=\"auto-start-reverse\"><path class=\"kfj-arrow\" d=\"M 0 0 L 10 5 L 0 10 z\" "
        "fill=\"#5b6b7f\"/></marker></defs>",
    ]
    taken: list[Rect] = [(x - 2, y - 2, x + w + 2, y + BOX_H + 2) for x, y, w in boxes.values()]
    for edge in pipeline.edges:
        sx, sy, sw = boxes[edge.source]
        tx, ty, tw = boxes[edge.target]
        x1, y1 = sx + sw / 2, sy + BOX_H
        x2, y2 = tx + tw / 2, ty
        mid = (y1 + y2) / 2
        order_only = edge.explicit and not edge.names
        dash = ' stroke-dasharray="5 4"' if order_only else ""
        kind = "order" if order_only else "data"
        out.append(
            f'<g class="kfj-edge kfj-edge-{kind}" data-source="{escape(edge.source)}" '
            f'data-target="{escape(edge.target)}">'
            f'<path d="M {x1:.1f} {y1:.1f} C {x1:.1f} {mid:.1f}, {x2:.1f} {mid:.1f}, {x2:.1f} {y2:.1f}" '
            f'fill="none" stroke="#5b6b7f" stroke-width="1.4"{dash} marker-end="url(#kfj-arrow)"/>'
        )
        if edge.names:
            label = _label(edge.names)
            lx, ly, anchor = _place_label(label, (x1, y1, x2, y2, mid), taken)
            out.append(
                f'<text class="kfj-label" x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" font-size="11" fill="#3d4852" '
                f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{escape(label)}</text>'
            )
        out.append("</g>")
    for name, (x, y, w) in boxes.items():
        step = pipeline.steps[name]
        tip = f"{name}: cells {', '.join(map(str, step.cells))}"
        out.append(
            f'<g class="kfj-step" data-step="{escape(name)}"><title>{escape(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{BOX_H}" rx="7" '
            'fill="#eef3fb" stroke="#4a6fa5" stroke-width="1.5"/>'
            f'<text x="{x + w / 2:.1f}" y="{y + BOX_H / 2 + 4.5:.1f}" text-anchor="middle" '
            f'fill="#1f2933">{escape(name)}</text></g>'
        )
    left = min([0.0] + [r[0] - 4 for r in taken])
    right = max([total_w] + [r[2] + 4 for r in taken])
    width = right - left
    out[0] = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="kfj-pipeline-dag" width="{width:.0f}" '
        f'height="{total_h:.0f}" viewBox="{left:.0f} 0 {width:.0f} {total_h:.0f}" '
        + out[1]
    )
    del out[1]
    out.append("</svg>")
    return "\n".join(out)


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(pipeline: Pipeline) -> str:
    """The DAG as Graphviz DOT text (``dot -Tsvg`` draws it)."""
    lines = [
        f"digraph {_dot_id(pipeline.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", color="#4a6fa5", fontname="monospace"];',
        '  edge [color="#5b6b7f", fontname="monospace", fontsize=10];',
    ]
    for name in pipeline.steps:
        lines.append(f"  {_dot_id(name)};")
    for edge in pipeline.edges:
        attrs = []
        if edge.names:
            attrs.append(f"label={_dot_id(', '.join(edge.names))}")
        if edge.explicit and not edge.names:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_dot_id(edge.source)} -> {_dot_id(edge.target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


STEP_TABLE_COLUMNS = ("step", "cells", "after", "inputs", "outputs", "parameters", "notes")


def steps_table(pipeline: Pipeline):
    """The pipeline's steps as a :class:`~kfjupyter.table.Table`: cells (counted from 1),
    upstream steps, the values flowing in and out, parameters read, image/limits/cache."""
    from ..table import Table

    rows = []
    for step in pipeline.steps.values():
        notes = [f"image {step.image}"] if step.image else []
        notes += [f"{k}={v}" for k, v in step.limits.items()]
        if not step.cache:
            notes.append("cache:false")
        rows.append({
            "step": step.name,
            "cells": ", ".join(str(c + 1) for c in step.cells),
            "after": ", ".join(pipeline.upstream(step.name)) or "-",
            "inputs": ", ".join(f"{n} ← {s}" for n, s in step.inputs.items()) or "-",
            "outputs": ", ".join(step.outputs) or "-",
            "parameters": ", ".join(step.parameters) or "-",
            "notes": "; ".join(notes),
        })  # fmt: skip
    params = ", ".join(f"{p.name}={p.default!r} ({p.type})" for p in pipeline.parameters.values()) or "none"
    caption = f"{pipeline.name}: {len(pipeline.steps)} step(s); parameters {params}"
    return Table(STEP_TABLE_COLUMNS, rows, caption=caption, css_class="kfjupyter-pipeline-steps")
