"""The process that runs one notebook with papermill, detached from whoever started it.

Started by :class:`~kfjupyter.notebook_runs.local.LocalNotebookBackend` in a session of
its own (it survives kernel and server restarts). It executes ``JOB_DIR/input.ipynb`` (a
copy of the user's notebook taken at submission; the notebook itself is never written)
with papermill into ``JOB_DIR/output.ipynb``, saved after every cell, and writes:

* ``logs/rank-0.log``: ``cell 3/12 …`` as each cell starts, the cells' stdout/stderr,
  and the failing cell's error;
* ``metrics/rank-0.jsonl``: what ``kfjupyter.report`` records inside the notebook (the
  kernel gets KFJUPYTER_METRICS_FILE, KFJUPYTER_OUTPUT_DIR, KFJUPYTER_JOB_ID);
* the job's status in the workspace store: Running, then Succeeded, or Failed with the
  failing cell and its error.

The kernel is a warm one when the launch file names one (``pooled_kernel``: see
:mod:`.kernels`) and it is the kernel a cold start would give this run; otherwise, or if
its hand-over fails, papermill starts one as it always does. Either way the kernel is
shut down after the run as papermill shuts down its own, before the run's end is
recorded.

SIGTERM (cancel) interrupts papermill where it waits on the kernel, as Ctrl-C interrupts
papermill: papermill saves the output notebook with what the running cell printed so far,
then the kernel (and anything it started) is stopped and the runner exits; the canceller
marks the job Cancelled. If saving takes longer than :data:`CANCEL_SAVE_S`, the runner
stops everything without it.

Usage: ``python -m kfjupyter.notebook_runs.runner JOB_DIR`` (reads JOB_DIR/launch.json).
"""

from __future__ import annotations

import os
import re
import threading
import time
import traceback
from pathlib import Path

import psutil

from .. import status as st
from ..runtime.processes import kill_job_processes, kill_tree
from ..runtime.ranks import rank_paths
from ..runtime.supervisor import Supervisor
from .kernels import RUN_ENV

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: the lines the runner writes to the job log itself (the rest is the cells' output)
OWN_LINE = re.compile(r"^(papermill: |kernel started; |warm kernel not used |cell \d+/\d+( \[injected parameters\])? (…|failed: )|done: |failed: |cancelled: )")
#: seconds a cancelled run may take to save its output notebook before it is stopped anyway
CANCEL_SAVE_S = 5.0


class Cancelled(BaseException):
    """Raised in the runner's main thread by SIGTERM: papermill's own cleanup saves the notebook."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class Log:
    """The job log: papermill writes the cells' output here, the hooks the progress lines."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8", buffering=1)
        self._at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self._fh.write(text)
            self._fh.flush()
            self._at_line_start = text.endswith("\n")
        return len(text)

    def line(self, text: str) -> None:
        """A line of our own, on a line of its own even after output without a newline."""
        self.write(("" if self._at_line_start else "\n") + text + "\n")

    def flush(self) -> None:
        self._fh.flush()


def first_line(source: str, width: int = 60) -> str:
    for line in source.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


class Progress:
    """nbclient hooks: ``cell k/N`` lines in the log as the notebook runs."""

    def __init__(self, log: Log, on_kernel=lambda: None, warm: bool = False):
        self.log = log
        self.on_kernel = on_kernel
        self.warm = warm
        self.total = 0
        self.done = 0
        self.current = None  # (k, cell_index, first line) of the running cell
        self.failed = None

    def on_notebook_start(self, notebook, **_):
        from .params import code_cell_count

        self.total = code_cell_count(notebook) + sum(
            1 for c in notebook.cells if "injected-parameters" in (c.get("metadata", {}).get("tags") or [])
        )
        self.on_kernel()
        warm = " (a warm kernel, from the pool)" if self.warm else ""
        self.log.line(f"kernel started; {self.total} code cell(s) to run{warm}")

    def on_cell_start(self, cell, cell_index, **_):
        if cell.cell_type != "code" or not cell.source.strip():
            return  # nbclient calls the hook for every cell, then skips these
        self.done += 1
        tags = cell.get("metadata", {}).get("tags") or []
        label = " [injected parameters]" if "injected-parameters" in tags else ""
        self.current = (self.done, cell_index, first_line(cell.source))
        self.log.line(f"cell {self.done}/{self.total}{label} … {self.current[2]}")

    def on_cell_error(self, cell, cell_index, execute_reply=None, **_):
        content = (execute_reply or {}).get("content", {})
        self.failed = {
            "k": self.done,
            "index": cell_index,
            "ename": content.get("ename", "Error"),
            "evalue": content.get("evalue", ""),
            "traceback": strip_ansi("\n".join(content.get("traceback") or [])),
        }
        self.log.line(f"cell {self.done}/{self.total} failed: {self.failed['ename']}: {self.failed['evalue']}")
        if self.failed["traceback"]:
            self.log.write(self.failed["traceback"].rstrip("\n") + "\n")


class Runner(Supervisor):
    what = "the notebook runner"

    def __init__(self, job_dir: Path):
        super().__init__(job_dir)
        self.paths = rank_paths(self.job_dir, 0)
        self.log = Log(self.paths["log"])
        self.executing = False  # papermill is running (a cancel interrupts it)
        self.pooled = None  # the warm kernel's manager, when the run has one
        self.record = None  # the job's record once it is Running

    def on_signal(self, *_args) -> None:
        # papermill is blocked in the kernel: interrupt it as Ctrl-C does (its `finally`
        # saves the output notebook, with the running cell's output so far), then `run`
        # stops the kernel (its own session: it would not die with us) and everything
        # under us, and goes (the canceller, or the keeper that passed the signal on,
        # records the cancel). A save that hangs is cut short by a timer.
        if self.cancelled:
            return
        self.cancelled = True
        timer = threading.Timer(CANCEL_SAVE_S, self.cancel_now)
        timer.daemon = True
        timer.start()
        if self.executing:
            raise Cancelled()
        self.cancel_now()

    def cancel_now(self) -> None:
        try:
            kill_tree(self.job_children(), grace=2.0)
            kill_job_processes(self.job_dir, grace=2.0)  # a warm kernel is not under us
        finally:
            try:
                self.log.line("cancelled: the notebook's kernel was stopped")
            finally:
                os._exit(143)

    def kernel_env(self) -> None:
        """The kernel inherits this process's environment: what bootstrap gives a rank."""
        for sub in ("metrics", "outputs", "errors"):
            (self.job_dir / sub).mkdir(parents=True, exist_ok=True)
        os.environ.update(
            KFJUPYTER_JOB_ID=self.job_id,
            KFJUPYTER_METRICS_FILE=str(self.paths["metrics"]),
            KFJUPYTER_OUTPUT_DIR=str(self.job_dir / "outputs"),
            **RUN_ENV,
        )
        os.environ.pop("KFJUPYTER_ERROR_FILE", None)

    def warm_kernel(self, launch: dict, cwd: str):
        """The warm kernel the launch file names, handed over, if it is the kernel a cold
        start would give this run (else it is stopped, and the log says why): its kernel
        manager, for papermill; None: papermill starts one."""
        handle = launch.get("pooled_kernel")
        if not handle:
            return None
        from . import kernels

        why: list[str] = []
        try:
            km = kernels.attach(handle, kernel=launch["kernel"], cwd=cwd, env=dict(os.environ),
                                timeout=float((launch.get("papermill") or {}).get("start_timeout") or 60), why=why)  # fmt: skip
        except Exception as exc:  # noqa: BLE001  (a warm kernel never fails a run: it starts its own)
            km = None
            why.append(f"{type(exc).__name__}: {exc}")
        if km is None:
            self.log.line(f"warm kernel not used ({'; '.join(why)}): starting one")
        return km

    def stop_warm_kernel(self) -> None:
        """Shut the warm kernel down as papermill shuts its own down."""
        km, self.pooled = self.pooled, None
        if km is not None:
            from . import kernels

            try:
                kernels.stop(km)
            except Exception:  # noqa: BLE001  (what is left is stopped with the job's groups)
                traceback.print_exc()

    def before_threads(self) -> None:
        """The run is Running: recorded before the run's tracker starts, so that the two
        processes do not open the store at once and queue on its write lock."""
        self.record = self.set_status(st.RUNNING)  # (an ended job, cancelled before it started, stays so)

    def run(self) -> None:
        if self.record is None:
            self.before_threads()
        if self.record.status in st.TERMINAL:  # cancelled before it started
            return
        self.kernel_env()
        launch = self.launch
        params = launch.get("parameters") or {}
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "none"
        self.log.line(f"papermill: {launch['notebook']} with kernel {launch['kernel']}; parameters: {shown}")
        started = time.monotonic()
        from .pm import PapermillExecutionError
        from .pm import papermill as pm

        options = {"start_timeout": 60, **(launch.get("papermill") or {})}
        cwd = launch.get("cwd") or None
        self.pooled = None if options.get("prepare_only") else self.warm_kernel(launch, cwd or os.getcwd())
        if self.pooled is not None:
            options["km"] = self.pooled
        progress = Progress(self.log, on_kernel=self.note_kernel, warm=self.pooled is not None)
        try:
            try:
                self.executing = True
                if self.cancelled:  # a cancel before papermill started
                    raise Cancelled()
                pm.execute_notebook(
                    str(self.job_dir / "input.ipynb"),
                    str(self.job_dir / "output.ipynb"),
                    parameters=params or None,
                    kernel_name=launch["kernel"],
                    progress_bar=False,
                    log_output=False,
                    stdout_file=self.log,
                    stderr_file=self.log,
                    cwd=cwd,
                    on_notebook_start=progress.on_notebook_start,
                    on_cell_start=progress.on_cell_start,
                    on_cell_error=progress.on_cell_error,
                    **options,
                )
            finally:  # papermill has shut its own kernel down by now, whatever happened
                self.executing = False
                self.stop_warm_kernel()
        except Cancelled:
            self.cancel_now()  # the output notebook is saved: stop the kernel, go
        except PapermillExecutionError as exc:
            self.finish_failed(self.cell_error(exc, progress))
            return
        except Exception as exc:
            if type(exc).__name__ == "DeadKernelError" and progress.current:
                k, _, line = progress.current  # the kernel process ended: no traceback to show
                self.finish_failed(f"the kernel died while running cell {k}/{progress.total}: {line}")
            else:
                text = strip_ansi(traceback.format_exc())
                self.log.write(text)
                self.finish_failed(f"the notebook could not be run:\n{text}".rstrip())
            return
        finally:
            self.stop_children()
        took = time.monotonic() - started
        self.log.line(f"done: {progress.done} cell(s) in {took:.1f} s; output notebook {self.job_dir / 'output.ipynb'}")
        self.set_status(st.SUCCEEDED)

    def cell_error(self, exc, progress: Progress) -> str:
        failed = progress.failed or {}
        ename, evalue = exc.ename or failed.get("ename"), exc.evalue or failed.get("evalue", "")
        where = f"cell {failed['k']}/{progress.total}" if failed else f"cell {exc.cell_index}"
        count = f" (In [{exc.exec_count}])" if exc.exec_count else ""
        tb = failed.get("traceback") or strip_ansi("\n".join(exc.traceback or []))
        head = f"{where}{count} raised {ename}: {evalue}"
        return f"{head}\n--- cell source ---\n{exc.source.rstrip()}\n--- traceback ---\n{tb.rstrip()}"

    def finish_failed(self, error: str) -> None:
        self.log.line("failed: " + error.splitlines()[0])
        self.set_status(st.FAILED, error=error)

    def note_kernel(self) -> None:
        """The kernel runs in a session of its own: its process group is the job's too."""
        own = os.getpgrp()
        for child in psutil.Process().children():
            try:
                if os.getpgid(child.pid) != own:
                    self.register_group(os.getpgid(child.pid))
            except ProcessLookupError:
                pass

    def stop_children(self) -> None:
        """papermill shuts its kernel down (and this runner a warm one); whatever is left
        under us, or in the job's process groups, goes too."""
        try:
            kill_tree(self.job_children(), grace=2.0)
        except psutil.Error:
            pass
        kill_job_processes(self.job_dir, grace=2.0)

    def stop(self) -> None:
        self.stop_children()
        super().stop()


main = Runner.main


if __name__ == "__main__":
    main()
