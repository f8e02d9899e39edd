"""Live views of a tuning study: an ipywidgets panel, or plain text in a terminal.

The same shape as :mod:`.job_view`: ``refresh()`` reads the study's trials and shows what
changed; the magic calls it while it waits, :func:`~.job_view.follow_in_background`
keeps it live for ``--no-wait`` studies. The panel has a header (status, progress,
best), a Cancel button, the trial table (params, objective, state, duration) and a plot
of the objective per trial with the best-so-far line.
"""

from __future__ import annotations

import html
import math

from .. import status as st
from ..jobs import failure_text
from ..tuning.study import Study
from .job_view import LiveDisplay, Summary, join_parts, took

TABLE_ROWS = 200
_STATE_COLOURS = {
    "COMPLETE": "#1f77b4",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "CANCELLED": "#7f7f7f",
    "RUNNING": "#2ca02c",
    "WAITING": "#bcbd22",
}


def best_so_far(trials: list[dict], direction: str) -> list[tuple[int, float]]:
    """(trial number, best objective up to it) for every COMPLETE trial, in number order."""
    out: list[tuple[int, float]] = []
    best = None
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] != "COMPLETE" or t["value"] is None or not math.isfinite(t["value"]):
            continue
        if best is None or (t["value"] < best if direction == "minimize" else t["value"] > best):
            best = t["value"]
        out.append((t["number"], best))
    return out


def _last_value(t: dict) -> float | None:
    if t["value"] is not None:
        return t["value"]
    inter = t.get("intermediate") or {}
    return list(inter.values())[-1] if inter else None


def objective_svg(trials: list[dict], direction: str, objective: str, width: int = 460, height: int = 160) -> str:
    """Objective per trial (dots coloured by state; pruned trials at their last value) and
    the best-so-far line."""
    points = [(t["number"], v, t["state"]) for t in trials if (v := _last_value(t)) is not None and math.isfinite(v)]
    if not points:
        return f"<i>no trial has reported {html.escape(objective)} yet</i>"
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 28
    sx = (width - pad - 8) / ((x1 - x0) or 1)
    sy = (height - 16) / ((y1 - y0) or 1)

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + (x - x0) * sx, height - 8 - (y - y0) * sy

    parts = [f'<svg width="{width}" height="{height + 20}" style="font:11px sans-serif">']
    parts.append(f'<text x="0" y="12" fill="#555">{y1:.4g}</text><text x="0" y="{height}" fill="#555">{y0:.4g}</text>')
    line = best_so_far(trials, direction)
    if line:
        coords, prev = [], None
        for x, y in line:  # a step line: flat until the next improvement
            if prev is not None:
                coords.append("{:.1f},{:.1f}".format(*xy(x, prev)))
            coords.append("{:.1f},{:.1f}".format(*xy(x, y)))
            prev = y
        coords.append("{:.1f},{:.1f}".format(*xy(x1, prev)))
        parts.append(f'<polyline class="best-so-far" fill="none" stroke="#2ca02c" stroke-width="1.5" points="{" ".join(coords)}"/>')
    for x, y, state in points:
        cx, cy = xy(x, y)
        colour = _STATE_COLOURS.get(state, "#333")
        parts.append(
            f'<circle class="trial {state.lower()}" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}">'
            f"<title>trial {x}: {y:.6g} ({state})</title></circle>"
        )
    best = line[-1][1] if line else None
    legend = f"{html.escape(objective)} per trial ({direction})" + (f" · best so far {best:.6g}" if best is not None else "")
    parts.append(f'<text x="{pad}" y="{height + 16}" fill="#333">{legend}</text></svg>')
    return "".join(parts)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def trials_table(trials: list[dict], names: list[str], limit: int = TABLE_ROWS) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", *names, "objective", "state", "duration"])
    rows = []
    for t in sorted(trials, key=lambda t: -t["number"])[:limit]:
        cells = [str(t["number"])] + [_fmt(t["params"].get(n, "")) for n in names]
        value = t["value"] if t["value"] is not None else _last_value(t)
        cells += [_fmt(value) if value is not None else "", t["state"],
                  f"{t['duration_s']:.1f}s" if t.get("duration_s") is not None else ""]  # fmt: skip
        title = html.escape(t.get("error") or "", quote=True)
        colour = _STATE_COLOURS.get(t["state"], "#333")
        rows.append(
            f'<tr title="{title}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells[:-2])
            + f'<td style="color:{colour}">{html.escape(cells[-2])}</td><td>{html.escape(cells[-1])}</td></tr>'
        )
    return (
        '<div style="max-height:18em;overflow:auto"><table class="kf-trials">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def headline(study: Study) -> str:
    record = study.job.record
    return join_parts(study.id, record.status, took(study.job), record.message, record.backend)


def study_summary(study: Study) -> Summary:
    """The lasting summary of a study: its headline, trial counts, the best trial, the
    error's tail (see :class:`~.job_view.Summary`)."""
    record = study.job.refresh()
    trials = study.trials if record.backend_info else []
    lines = [f"trials: {_counts(trials)}"] if trials else []
    best = study.best_trial if trials else None
    if best:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
        lines.append(f"best {study.objective}={_fmt(best['value'])} (trial {best['number']}): {params}")
    error = ""
    if record.status in (st.FAILED, st.CANCELLED):
        error = failure_text("tune", study.id, record.status, record.error, record.message)
    return Summary(f"study {headline(study)}", lines, error, record.status)


def _counts(trials: list[dict]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    return ", ".join(f"{n} {s.lower()}" for s, n in counts.items())


class TextStudyView:
    """For terminals and plain IPython: prints each trial as it ends, and status changes."""

    def __init__(self, study: Study, blocking: bool = False):
        self.study = study
        self.job = study.job
        self._status = None
        self._seen: set[int] = set()

    def _ipython_display_(self) -> None:
        pass  # it prints as it goes

    def refresh(self) -> None:
        status = self.job.status
        trials = self.study.trials
        for t in sorted(trials, key=lambda t: t["number"]):
            if t["number"] in self._seen or t["state"] in ("RUNNING", "WAITING"):
                continue
            self._seen.add(t["number"])
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items())
            value = f" {self.study.objective}={_fmt(t['value'])}" if t["value"] is not None else ""
            print(f"[trial {t['number']}] {t['state']}{value} ({params})")
        if status != self._status:
            self._status = status
            print(repr(study_summary(self.study)) if status in st.TERMINAL else headline(self.study))


class WidgetStudyView(LiveDisplay):
    """The notebook panel: header, Cancel, trial table, objective plot with best so far;
    and its lasting summary (:class:`~.job_view.LiveDisplay`)."""

    def __init__(self, study: Study, blocking: bool = False):
        import ipywidgets as w

        self.study = study
        self.job = study.job
        self.header = w.HTML()
        # a blocked kernel reads no clicks (see WidgetJobView): interrupting it cancels
        self.cancel_button = w.Button(
            description="Cancel", icon="stop", button_style="warning", disabled=blocking,
            tooltip="the kernel is busy waiting on this study: interrupt it (■) to cancel" if blocking else "cancel the study",
        )  # fmt: skip
        self.cancel_button.on_click(lambda _b: self._cancel())
        self.blocking_hint = w.HTML("<i>interrupt the kernel (■) to cancel</i>" if blocking else "")
        self.best = w.HTML()
        self.chart = w.HTML()
        self.table = w.HTML()
        self.error = w.HTML()
        self.widget = w.VBox(
            [w.HBox([self.header, self.cancel_button, self.blocking_hint]), self.best, self.chart, self.table, self.error]
        )
        self._last: dict[str, str] = {}

    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        self.study.cancel()
        self.refresh()

    def _set(self, key: str, widget, value: str) -> None:
        if self._last.get(key) != value:
            self._last[key] = value
            widget.value = value

    def refresh(self) -> None:
        status = self.job.status
        trials = self.study.trials
        spec = self.study.spec
        self._set("header", self.header, f"<b>{html.escape(headline(self.study))}</b> {html.escape(_counts(trials))}")
        best = self.study.best_trial
        if best:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
            text = f"best {html.escape(spec.objective)} = <b>{_fmt(best['value'])}</b> (trial {best['number']}): {html.escape(params)}"
        else:
            text = "<i>no trial completed yet</i>"
        self._set("best", self.best, text)
        self._set("chart", self.chart, objective_svg(trials, spec.direction, spec.objective))
        self._set("table", self.table, trials_table(trials, list(spec.space)))
        if status in st.TERMINAL:
            self.cancel_button.disabled = True
            self.blocking_hint.value = ""
            if status == st.FAILED:
                self._set("error", self.error, f"<pre style='color:var(--jp-error-color1,red)'>{html.escape(self.job.error or '')}</pre>")
        self.update_summary(status)

    def summary(self) -> Summary:
        return study_summary(self.study)


def view_for(study: Study, blocking: bool = False):
    from .job_view import in_kernel

    return (WidgetStudyView if in_kernel() else TextStudyView)(study, blocking=blocking)
