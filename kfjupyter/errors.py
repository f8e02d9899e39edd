"""Errors raised by kfjupyter's public API.

Every error a user can cause derives from :class:`KFJupyterError`, so a notebook can
catch them all at once, and each message names the thing that is wrong.
"""

from __future__ import annotations


class KFJupyterError(Exception):
    """Base class of every error kfjupyter raises on purpose."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the message is the whole story
        return [f"{type(self).__name__}: {self}"]


class InvalidOptionError(KFJupyterError, ValueError):
    """An option given to ``train`` (or a magic) is malformed; nothing was submitted."""


class PreflightError(KFJupyterError):
    """The captured program would not survive the trip to the ranks; nothing was submitted.

    ``culprit`` names the variable, module or file at fault.
    """

    def __init__(self, message: str, culprit: str | None = None):
        super().__init__(message)
        self.culprit = culprit


class JobNotFoundError(KFJupyterError, LookupError):
    """No job with that id exists in the workspace store."""


class BackendError(KFJupyterError):
    """The backend (local supervisor or Kubernetes API) refused or failed a request."""
