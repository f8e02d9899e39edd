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
from ..jobs import Job

TAIL_LINES = 200
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def _metric_series(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(r for r in rows if r.get("rank", 0) == 0):
        x = row.get("step") if row.get("step") is not None else i
        for key, value in row.items():
            if key not in ("rank", "step", "time") and isinstance(value, (int, float)):
                series.setdefault(key, []).append((float(x), float(value)))
    return series


def metrics_svg(rows: list[dict], width: int = 420, height: int = 120) -> str:
    """A small line chart of rank 0's metrics, one line per metric, each on its own scale."""
    series = _metric_series(rows)
    if not series:
        return "<i>no metrics reported yet (kfjupyter.report(step=…, loss=…))</i>"
    parts = [f'<svg width="{width}" height="{height + 18}" style="font:11px sans-serif">']
    for n, (name, points) in enumerate(sorted(series.items())):
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        sx = (width - 10) / ((x1 - x0) or 1)
        sy = (height - 10) / ((y1 - y0) or 1)
        coords = " ".join(f"{5 + (x - x0) * sx:.1f},{height - 5 - (y - y0) * sy:.1f}" for x, y in points)
        colour = _COLOURS[n % len(_COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        parts.append(
            f'<text x="{5 + n * 140}" y="{height + 14}" fill="{colour}">'
            f"{html.escape(name)} {ys[-1]:.4g} (step {xs[-1]:g})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _headline(job: Job) -> str:
    duration = job.duration()
    took = f"{duration:.1f} s" if duration is not None else ""
    return f"{job.id} · {job.record.status} · {took} · {job.workers} worker(s) · {job.record.backend}"


class TextJobView:
    """For terminals and plain IPython: prints status changes and new log lines."""

    def __init__(self, job: Job, blocking: bool = False):
        self.job = job
        self._status = None
        self._seen: dict[str, int] = {}

    def _ipython_display_(self) -> None:
        pass  # it prints as it goes

    def refresh(self) -> None:
        status = self.job.status
        for channel in self.job.channels().logs:
            lines = self.job.logs(channel=channel.name).splitlines()
            for line in lines[self._seen.get(channel.name, 0) :]:
                print(f"[{channel.label}] {line}")
            self._seen[channel.name] = len(lines)
        if status != self._status:
            self._status = status
            print(_headline(self.job))
            if status == st.FAILED and self.job.error:
                print(self.job.error)


class WidgetJobView:
    """The notebook panel: status, elapsed time, a log tab per channel (rank, worker …),
    metrics chart, Cancel."""

    def __init__(self, job: Job, blocking: bool = False):
        import ipywidgets as w

        self.job = job
        self.header = w.HTML()
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning")
        self.cancel_button.on_click(lambda _b: self._cancel())
        # While a cell blocks on the job the kernel reads no widget messages, so a button
        # click would wait for the cell: interrupting the kernel is what cancels then.
        self.blocking_hint = w.HTML(
            "<i>interrupt the kernel (■) to cancel</i>" if blocking else "",
        )
        self.logs: dict[str, object] = {}  # channel name → its tab's HTML
        self.tabs = w.Tab()
        self.chart = w.HTML()
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
        self._set("chart", self.chart, metrics_svg(self.job.metrics(channel=metrics[0].name) if metrics else []))
        if status in st.TERMINAL:
            self.cancel_button.disabled = True
            self.blocking_hint.value = ""
            if status == st.FAILED:
                self._set("error", self.error, f"<pre style='color:var(--jp-error-color1,red)'>{html.escape(self.job.error or '')}</pre>")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


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
