"""Live views of a job in a notebook: an ipywidgets panel, or plain text in a terminal.

Both have the same shape: ``refresh()`` reads the job's current status, log tails and
metrics and shows what changed; the magic calls it while it waits, or a background
task calls it for ``--no-wait`` jobs.
"""

from __future__ import annotations

import asyncio
import html
import threading
import time

from .. import status as st
from ..errors import KFJupyterError
from ..jobs import Job, last_values

TAIL_LINES = 200
#: the MIME type of a job's chart: the JupyterLab extension draws it as the job's tab does
JOB_MIME = "application/vnd.kfjupyter.job+json"
#: at most this many metrics get a plain-SVG chart each
SVG_METRICS = 4


def _metric_series(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(r for r in rows if r.get("rank", 0) == 0):
        x = row.get("step") if row.get("step") is not None else i
        for key, value in row.items():
            if key not in ("rank", "step", "time", "job_id") and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, []).append((float(x), float(value)))
    return series


def metrics_svg(rows: list[dict], width: int = 420, height: int = 160) -> str:
    """Rank 0's metrics as plain SVG (a chart per metric, with axes, ticks and a legend):
    the fallback where the extension's MIME renderer does not draw the job's chart."""
    from .svgchart import PALETTE, Series, line_chart_svg

    series = _metric_series(rows)
    if not series:
        return "<i>no metrics reported yet (kfjupyter.report(step=…, loss=…))</i>"
    names = sorted(series, key=lambda n: (n != "loss", n))
    charts = []
    for n, name in enumerate(names[:SVG_METRICS]):
        points = series[name]
        label = f"{name} {points[-1][1]:.4g} (step {points[-1][0]:g})"
        charts.append(line_chart_svg([Series(label, points, PALETTE[n % len(PALETTE)])], "step", name, width, height))
    more = names[SVG_METRICS:]
    tail = f"<div>also reported: {html.escape(', '.join(more))}</div>" if more else ""
    return f"<div class='kf-job-metrics' style='display:flex;flex-wrap:wrap;gap:8px'>{''.join(charts)}</div>{tail}"


def job_chart_payload(job: Job, rows: list[dict], channels) -> dict:
    """What the MIME renderer draws: the job and its metric rows, named by its channels."""
    from .svgchart import json_safe

    record = job.record
    return json_safe({
        "id": job.id, "name": record.name, "kind": record.kind, "status": record.status,
        "metrics": rows, "channels": [{"name": c.name, "label": c.label, "rank": c.rank, "child": c.child} for c in channels],
    })  # fmt: skip


#: lines of each log channel a cell's text output shows (terminal, headless runs)
CELL_LOG_LINES = 200


def join_parts(*parts: str | None) -> str:
    """``a · b · c`` of the parts that say something (no ``Pending · · local``)."""
    return " · ".join(p for p in parts if p)


def took(job: Job) -> str:
    duration = job.duration()
    return f"{duration:.1f} s" if duration is not None else ""


def _headline(job: Job) -> str:
    return join_parts(job.id, job.record.status, took(job), f"{job.workers} worker(s)", job.record.backend)


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def metrics_line(values: dict) -> str:
    """``loss=0.0123, acc=0.9``: the last value of each metric."""
    return ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())


class Summary:
    """What lasts of a job in a saved notebook: a headline, a few lines (last metrics, the
    error's tail), as text and as HTML. A live view's display holds it beside the widget, so
    GitHub, nbviewer, an HTML export and papermill's output notebook read it."""

    def __init__(self, headline: str, lines: list[str] | None = None, error: str = "", status: str = ""):
        self.headline, self.lines, self.error, self.status = headline, list(lines or []), error, status

    def __repr__(self) -> str:
        return "\n".join([self.headline, *self.lines, *([self.error] if self.error else [])])

    def _repr_html_(self) -> str:
        colour = {st.FAILED: "var(--jp-error-color1,#c62828)", st.SUCCEEDED: "var(--jp-success-color1,#2e7d32)"}
        style = f" style='color:{colour[self.status]}'" if self.status in colour else ""
        lines = "".join(f"<div>{html.escape(line)}</div>" for line in self.lines)
        error = f"<pre style='color:var(--jp-error-color1,#c62828);margin:0'>{html.escape(self.error)}</pre>" if self.error else ""
        return f"<div class='kf-job-summary'><b{style}>{html.escape(self.headline)}</b>{lines}{error}</div>"


def job_summary(job: Job) -> Summary:
    """The lasting summary of ``job``: kind, id, status, duration, workers, backend; the last
    reported metrics (rank 0's, step included); the error's tail (failing rank, last lines)."""
    from ..jobs import failure_text

    record = job.refresh()
    lines = []
    rows = job.metrics(rank=0) or job.metrics() if record.backend_info else []
    if rows:
        step = rows[-1].get("step")
        lines.append("metrics: " + metrics_line(last_values(rows)) + (f" (step {step})" if step is not None else ""))
    error = ""
    if record.status in (st.FAILED, st.CANCELLED):
        error = failure_text(record.kind, job.id, record.status, record.error, record.message)
    headline = f"{record.kind} job " + join_parts(job.id, record.status, took(job), f"{job.workers} worker(s)", record.backend)
    return Summary(headline, lines, error, record.status)


class LogPrinter:
    """Prints the new lines of a job's log channels (``[rank 0] …``), at most
    :data:`CELL_LOG_LINES` of each: the cell's text output in a terminal or a headless run
    (papermill ``--log-output`` shows it), bounded; the rest is named, not printed."""

    def __init__(self, job: Job, limit: int = CELL_LOG_LINES):
        self.job, self.limit = job, limit
        self._seen: dict[str, int] = {}

    def refresh(self) -> None:
        for channel in self.job.channels().logs:
            seen = self._seen.get(channel.name, 0)
            if seen > self.limit:
                continue
            lines = self.job.logs(channel=channel.name).splitlines()
            for line in lines[seen : self.limit]:
                print(f"[{channel.label}] {line}")
            if len(lines) > self.limit:
                where = f"job.logs(channel={channel.name!r})"
                print(f"[{channel.label}] … more lines not shown here: {where}, or the sidebar")
                self._seen[channel.name] = self.limit + 1
            else:
                self._seen[channel.name] = len(lines)


class TextJobView:
    """For terminals and plain IPython: prints status changes and new log lines."""

    def __init__(self, job: Job, blocking: bool = False):
        self.job = job
        self._status = None
        self.printer = LogPrinter(job)

    def _ipython_display_(self) -> None:
        pass  # it prints as it goes

    def refresh(self) -> None:
        status = self.job.status
        self.printer.refresh()
        if status != self._status:
            self._status = status
            if status in st.TERMINAL:
                print(repr(job_summary(self.job)))
            else:
                print(_headline(self.job))


def headless() -> bool:
    """Whether this kernel runs without a Jupyter server (papermill, ``nbconvert --execute``,
    nbclient): nobody watches its widgets, the saved notebook is the record. A server's
    kernels know their notebook (``JPY_SESSION_NAME``). ``KFJUPYTER_CELL_LOGS=1`` / ``0``
    says it outright (rank logs in the cell's output, or not)."""
    import os

    forced = os.environ.get("KFJUPYTER_CELL_LOGS")
    if forced is not None:
        return forced.strip().lower() not in ("", "0", "false", "no")
    return "JPY_SESSION_NAME" not in os.environ


class LiveDisplay:
    """The display of a widget view: the widget (for front ends with ipywidgets) and, in
    the same output, its lasting summary as ``text/plain`` and ``text/html`` (for saved
    notebooks and front ends without widgets), updated in place when the status changes.
    Subclasses set ``widget`` and implement ``summary()``."""

    widget = None
    _handle = None
    _shown_status = None

    def summary(self) -> Summary:
        raise NotImplementedError

    def _bundle(self) -> dict:
        summary = self.summary()
        data = dict(self.widget._repr_mimebundle_() or {})
        data.update({"text/plain": repr(summary), "text/html": summary._repr_html_()})
        return data

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._shown_status = self.job.record.status
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def update_summary(self, status: str) -> None:
        """Rewrite the summary in the output when the status changed since it was shown."""
        if self._handle is not None and status != self._shown_status:
            self._shown_status = status
            self._handle.update(self._bundle(), raw=True)


class WidgetJobView(LiveDisplay):
    """The notebook panel: status, elapsed time, a log tab per channel (rank, worker …),
    metrics chart, Cancel; and its lasting summary (:class:`LiveDisplay`). In a headless
    run the rank logs go to the cell's text output too (:class:`LogPrinter`)."""

    def __init__(self, job: Job, blocking: bool = False):
        import ipywidgets as w

        self.job = job
        self.header = w.HTML()
        # While a cell blocks on the job the kernel reads no widget messages, so a button
        # click could only act once the job has ended: Cancel is off, and interrupting the
        # kernel is what cancels then.
        self.cancel_button = w.Button(
            description="Cancel", icon="stop", button_style="warning", disabled=blocking,
            tooltip="the kernel is busy waiting on this job: interrupt it (■) to cancel" if blocking else "cancel the job",
        )  # fmt: skip
        self.cancel_button.on_click(lambda _b: self._cancel())
        self.blocking_hint = w.HTML(
            "<i>interrupt the kernel (■) to cancel</i>" if blocking else "",
        )
        self.printer = LogPrinter(job) if headless() else None
        self._opened_failure = False
        self.logs: dict[str, object] = {}  # channel name → its tab's HTML
        self.tabs = w.Tab()
        # the metrics chart: the extension's MIME renderer (ECharts, as the job's tab), plain SVG without it
        self.chart = w.Output()
        self.error = w.HTML()
        self.widget = w.VBox(
            [w.HBox([self.header, self.cancel_button, self.blocking_hint]), self.tabs, self.chart, self.error]
        )
        self._last: dict[str, str] = {}

    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        self.job.cancel()
        self.refresh()

    def _set(self, key: str, widget, value: str) -> None:
        if self._last.get(key) != value:  # only send what changed
            self._last[key] = value
            widget.value = value

    def refresh(self) -> None:
        status = self.job.status
        self._set("header", self.header, f"<b>{html.escape(_headline(self.job))}</b>")
        channels = self.job.channels().logs
        if [c.name for c in channels] != list(self.logs):  # known once submitted; an endpoint's change
            import ipywidgets as w

            self.logs = {c.name: w.HTML() for c in channels}
            self.tabs.children = list(self.logs.values())
            for i, channel in enumerate(channels):
                self.tabs.set_title(i, channel.label)
        for name, view in self.logs.items():
            text = self.job.logs(channel=name, tail=TAIL_LINES)
            self._set(
                f"log:{name}",
                view,
                '<pre style="max-height:16em;overflow:auto;display:flex;flex-direction:column-reverse;'
                f'margin:0"><div>{html.escape(text)}</div></pre>',
            )
        metrics = self.job.channels().metrics
        rows = self.job.metrics() if metrics else []
        fallback = metrics_svg(rows)
        payload = job_chart_payload(self.job, rows, metrics) if rows else None
        key = repr((payload, fallback))
        if self._last.get("chart") != key:  # only send what changed
            self._last["chart"] = key
            bundle = {"text/html": fallback, **({JOB_MIME: payload} if payload else {})}
            self.chart.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        if self.printer is not None:
            self.printer.refresh()
        if status in st.TERMINAL:
            self.cancel_button.disabled = True
            self.cancel_button.layout.display = "none"  # a finished job has nothing to cancel
            self.blocking_hint.value = ""
            if status == st.FAILED:
                self._set("error", self.error, f"<pre style='color:var(--jp-error-color1,red)'>{html.escape(self.job.error or '')}</pre>")
                self._open_failing_rank(channels)
        self.update_summary(status)

    def _open_failing_rank(self, channels) -> None:
        """A failed job's view opens on the log of the rank that failed it (once)."""
        rank = self.job.failed_rank
        if self._opened_failure or rank is None:
            return
        self._opened_failure = True
        for i, channel in enumerate(channels):
            if channel.rank == rank:
                self.tabs.selected_index = i

    def summary(self) -> Summary:
        return job_summary(self.job)


def in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def view_for(job: Job, blocking: bool = False):
    return (WidgetJobView if in_kernel() else TextJobView)(job, blocking=blocking)


def _refresh_until_done(view) -> bool:
    """Refresh ``view``; False once its job has ended or can no longer be read."""
    try:
        view.refresh()
    except KFJupyterError:  # the job is gone (another workspace, deleted record)
        return False
    return view.job.record.status not in st.TERMINAL


def show(job: Job, view, wait: bool, poll: float = 0.5) -> Job:
    """Display ``view`` (a live view of ``job``: it has ``refresh()``); with ``wait``, follow
    the job until it ends, then raise :class:`~kfjupyter.jobs.JobFailedError` /
    ``JobCancelledError`` if it did not succeed (so the cell fails, and papermill or
    ``nbconvert --execute`` with it); Ctrl-C cancels the job and raises a one-line
    ``KeyboardInterrupt``. Without ``wait`` the view is refreshed in the background."""
    from IPython.display import display

    display(view)
    if not wait:
        follow_in_background(view)
        return job
    try:
        job.follow(lambda _event: view.refresh(), poll=poll)
    finally:
        view.refresh()
    return job.raise_for_status()


def follow_in_background(view, interval: float = 1.0):
    """Keep a widget view live until its job ends, without blocking the kernel.

    A text view (terminal IPython) is not followed: printing into the prompt after the
    cell returned would garble what the user types. It says how to follow instead.
    """
    if isinstance(view, TextJobView):
        view.refresh()
        print(f"job {view.job.id} runs on; follow it with %kf_jobs {view.job.id} --wait")
        return None

    async def pump() -> None:
        while _refresh_until_done(view):
            await asyncio.sleep(interval)

    try:
        task = asyncio.get_running_loop().create_task(pump())
    except RuntimeError:  # a widget view without a running loop: a thread does it
        def loop() -> None:
            while _refresh_until_done(view):
                time.sleep(interval)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


_tasks: set = set()
