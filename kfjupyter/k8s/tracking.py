"""MLflow tracking from a Kubernetes job's pods, as the Kubernetes engines reach it.

The implementation is :mod:`kfjupyter.tracking.pods`, a layer above the engines: it is
loaded by its import path on first use (as the job core reaches capabilities).
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager, TypeVar

from ..backends import load

SUBMISSION = "kfjupyter.tracking.pods:submission"

T = TypeVar("T")


def submission(job_id: str, kind: str, build: Callable[[Any], T], check: Callable[[T], Any]) -> ContextManager[T]:
    """The job's manifests, built by ``build(tracking)`` with what its pods need to send its
    runs to MLflow and checked by ``check``; submit them inside the ``with`` (see
    :func:`kfjupyter.tracking.pods.submission`)."""
    return load(SUBMISSION)(job_id, kind, build, check)
