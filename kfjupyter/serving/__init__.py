"""Serving: registered model versions as endpoints (local KServe model servers, or a
KServe InferenceService on Kubernetes). See :func:`deploy`."""

from .api import (
    Endpoint,
    EndpointNotDeployedError,
    EndpointNotFoundError,
    PredictionError,
    deploy,
    get_endpoint,
    list_endpoints,
)

__all__ = [
    "Endpoint", "EndpointNotDeployedError", "EndpointNotFoundError", "PredictionError", "deploy", "get_endpoint",
    "list_endpoints",
]
