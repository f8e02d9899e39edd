"""Serving: registered model versions as endpoints (local KServe model servers, or a
KServe InferenceService on Kubernetes). See :func:`deploy`.

The names are loaded on first use: a batch worker (``kfjupyter.serving.batch_worker``)
imports this package without the store and the endpoint machinery."""

from __future__ import annotations

from typing import Any

__all__ = [
    "Endpoint", "EndpointNotDeployedError", "EndpointNotFoundError", "PredictionError", "deploy", "get_endpoint",
    "list_endpoints",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
