"""Serving: registered model versions as endpoints (local KServe model servers, or a
KServe InferenceService on Kubernetes). See :func:`deploy`."""

from .api import Endpoint, EndpointNotFoundError, PredictionError, deploy, get_endpoint, list_endpoints

__all__ = ["Endpoint", "EndpointNotFoundError", "PredictionError", "deploy", "get_endpoint", "list_endpoints"]
