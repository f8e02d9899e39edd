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
from .svgchart import PALETTE, Series, json_safe, line_chart_svg

TABLE_ROWS = 200
#: the MIME type of a study's view: the JupyterLab extension draws it as the sidebar does
STUDY_MIME = "application/vnd.kfjupyter.study+json"
#: trial states' colours in the plain-HTML table: mid-tones, readable on light and dark
_STATE_COLOURS = {
    "COMPLETE": "#3b82f6",
    "PRUNED": "#ea7a12",
    "FAIL": "#dc2626",
    "CANCELLED": "#8a8a8a",
    "RUNNING": "#16a34a",
    "WAITING": "#a3a31a",
}
#: trial states that count as done (the headline's "n/N trials done")
DONE_STATES = ("COMPLETE", "PRUNED", "FAIL", "CANCELLED")


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
    """A trial's objective, or (a pruned trial) the value it reported at its last step."""
    if t["value"] is not None:
        return t["value"]
    inter = t.get("intermediate") or {}
    steps = [(float(k), v) for k, v in inter.items() if v is not None]
    return max(steps)[1] if steps else None


def objective_svg(trials: list[dict], direction: str, objective: str, width: int = 460, height: int = 200) -> str:
    """Objective per trial (dots: complete filled, pruned hollow at their last value) and
    the best-so-far line, with axes (x: trial number), ticks and a legend; theme-neutral
    (see :mod:`.svgchart`)."""
    points = [(t["number"], v, t["state"]) for t in trials
              if t["state"] in ("COMPLETE", "PRUNED") and (v := _last_value(t)) is not None and math.isfinite(v)]  # fmt: skip
    if not points:
        return f"<i>no trial has reported {html.escape(objective)} yet</i>"
    line = best_so_far(trials, direction)
    series = []
    for state, label, colour, hollow in (("COMPLETE", "complete", PALETTE[0], False),
                                         ("PRUNED", "pruned (last value)", PALETTE[1], True)):  # fmt: skip
        mine = [(x, y) for x, y, s in points if s == state]
        if mine:
            titles = [f"trial {x}: {y:.6g} ({state})" for x, y in mine]
            series.append(Series(label, mine, colour, kind="dots", hollow=hollow, css=f"trial {state.lower()}", titles=titles))
    if line:
        steps, prev = [], None
        for x, y in line:  # a step line: flat until the next improvement
            if prev is not None:
                steps.append((x, prev))
            steps.append((x, y))
            prev = y
        last = max(p[0] for p in points)
        if last > steps[-1][0]:
            steps.append((last, prev))
        series.append(Series(f"best so far {line[-1][1]:.6g}", steps, PALETTE[2], css="best-so-far"))
        series[-1].kind = "line"
    svg = line_chart_svg(series, "trial", f"{objective} ({direction[:3]})", width, height, integer_x=True)
    return svg.replace('<polyline class="best-so-far" fill="none"', '<polyline class="best-so-far" fill="none" stroke-linejoin="miter"')


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def trials_table(trials: list[dict], names: list[str], limit: int = TABLE_ROWS) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", *names, "objective", "state", "duration"])
    rows = []
    for t in sorted(trials, key=lambda t: -t["number"])[:limit]:
        cells = [str(t["number"])] + [_fmt(t["params"].get(n, "")) for n in names]
        value = _last_value(t)
        cells += [_fmt(value) if value is not None else "", t["state"],
                  f"{t['duration_s']:.1f}s" if t.get("duration_s") is not None else ""]  # fmt: skip
        title = html.escape(t.get("error") or "", quote=True)
        colour = _STATE_COLOURS.get(t["state"], "inherit")
        rows.append(
            f'<tr title="{title}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells[:-2])
            + f'<td style="color:{colour}">{html.escape(cells[-2])}</td><td>{html.escape(cells[-1])}</td></tr>'
        )
    return (
        '<div style="max-height:18em;overflow:auto"><table class="kf-trials">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def progress_text(trials: list[dict], budget: int) -> str:
    """``5/8 trials done (4 complete, 1 pruned), 2 running``: said from the trials, so it
    agrees with their counts (done = complete + pruned + failed + cancelled)."""
    counts = {s: 0 for s in (*DONE_STATES, "RUNNING", "WAITING")}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    done = sum(counts[s] for s in DONE_STATES)
    parts = [f"{counts[s]} {'failed' if s == 'FAIL' else s.lower()}" for s in DONE_STATES if counts[s]]
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{done}/{budget} trials done{detail}, {counts['RUNNING']} running"


def headline(study: Study, trials: list[dict] | None = None) -> str:
    """Id, status, time, progress, backend; the progress said from ``trials`` when given
    (the record's message lags behind them)."""
    record = study.job.record
    progress = progress_text(trials, study.spec.trials) if trials else record.message
    return join_parts(study.id, record.status, took(study.job), progress, record.backend)


def study_payload(study: Study, data: dict | None = None) -> dict:
    """What the MIME renderer draws: the study as the REST API gives it (``to_dict``)."""
    return json_safe(data if data is not None else study.to_dict())


def study_html(study: Study, trials: list[dict]) -> str:
    """The plain-HTML view: headline, best trial, objective plot, trial table (theme-neutral)."""
    spec = study.spec
    best = study.best_trial if trials else None
    if best:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
        text = f"best {html.escape(spec.objective)} = <b>{_fmt(best['value'])}</b> (trial {best['number']}): {html.escape(params)}"
    else:
        text = "<i>no trial completed yet</i>"
    return (f"<div class='kf-study-view'><b>{html.escape(headline(study, trials))}</b><div>{text}</div>"
            f"{objective_svg(trials, spec.direction, spec.objective)}{trials_table(trials, list(spec.space))}</div>")  # fmt: skip


def study_bundle(study: Study) -> dict:
    """A study's display: the MIME renderer's JSON, with plain HTML and text beside it for
    where the extension is not installed."""
    data = study.to_dict()
    trials = data["trials"]
    return {
        STUDY_MIME: study_payload(study, data),
        "text/html": study_html(study, trials),
        "text/plain": repr(study_summary(study)),
    }


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
        # the charts: the extension's MIME renderer (ECharts, as the sidebar), plain SVG without it
        self.chart = w.Output()
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
        data = self.study.to_dict() if self.study.submitted else None
        trials = data["trials"] if data else []
        spec = self.study.spec
        self._set("header", self.header, f"<b>{html.escape(headline(self.study, trials))}</b>")
        best = self.study.best_trial
        if best:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
            text = f"best {html.escape(spec.objective)} = <b>{_fmt(best['value'])}</b> (trial {best['number']}): {html.escape(params)}"
        else:
            text = "<i>no trial completed yet</i>"
        self._set("best", self.best, text)
        fallback = objective_svg(trials, spec.direction, spec.objective)
        if data is not None:
            data["status"] = status
        payload = study_payload(self.study, data) if data is not None else None
        key = repr((payload, fallback))
        if self._last.get("chart") != key:
            self._last["chart"] = key
            bundle = {"text/html": fallback, **({STUDY_MIME: payload} if payload else {})}
            self.chart.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        self._set("table", self.table, trials_table(trials, list(spec.space)))
        if status in st.TERMINAL:
            self.cancel_button.disabled = True
            self.cancel_button.layout.display = "none"  # a finished study has nothing to cancel
            self.blocking_hint.value = ""
            if status == st.FAILED:
                self._set("error", self.error, f"<pre style='color:var(--jp-error-color1,red)'>{html.escape(self.job.error or '')}</pre>")
        self.update_summary(status)

    def summary(self) -> Summary:
        return study_summary(self.study)


def view_for(study: Study, blocking: bool = False):
    from .job_view import in_kernel

    return (WidgetStudyView if in_kernel() else TextStudyView)(study, blocking=blocking)
