"""The live view of a pipeline run: its steps table, updated in place in a notebook
(HTML, with the text form beside it), printed when a step changes state in a terminal."""

from __future__ import annotations

from ..pipelines.api import PipelineRun, RunSteps
from .job_view import in_kernel


class StepsView:
    """A pipeline run's steps (``refresh()`` shows what changed), as :func:`~.job_view.show` takes it."""

    def __init__(self, run: PipelineRun, blocking: bool = False):
        self.run = self.job = run
        self.terminal = not in_kernel()
        self._handle = None
        self._shown = None

    def _state(self) -> tuple:
        return (self.run.record.status, tuple((s["name"], s["status"]) for s in self.run.steps))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._shown = self._state()
        if self.terminal:
            display(RunSteps(self.run))
        else:
            self._handle = display(RunSteps(self.run), display_id=True)

    def refresh(self) -> None:
        from IPython.display import display

        state = self._state()
        if self.terminal:  # a table per change of state, not per poll
            if state != self._shown:
                display(RunSteps(self.run))
        elif self._handle is not None:
            self._handle.update(RunSteps(self.run))
        self._shown = state


def view_for(run: PipelineRun, blocking: bool = False) -> StepsView:
    return StepsView(run, blocking=blocking)
