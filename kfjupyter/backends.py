"""Which engine answers for a job: a registry keyed by (job kind, backend name).

Every capability (training, tuning, pipelines, serving) registers its engines here, so
a job handle, the CLI and the server can re-attach to any job from its record alone.
Engines are named by import path and loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InvalidOptionError

_REGISTRY: dict[tuple[str, str], str] = {
    ("train", "local"): "kfjupyter.training.local:LocalTrainBackend",
    ("train", "kubernetes"): "kfjupyter.training.kubernetes:KubernetesTrainBackend",
    ("tune", "local"): "kfjupyter.tuning.local:LocalTuneBackend",
    ("tune", "kubernetes"): "kfjupyter.tuning.kubernetes:KubernetesTuneBackend",
    ("pipeline", "local"): "kfjupyter.pipelines.local:LocalPipelineBackend",
    ("pipeline", "kubernetes"): "kfjupyter.pipelines.kubernetes:KFPPipelineBackend",
    ("notebook", "local"): "kfjupyter.notebook_runs.local:LocalNotebookBackend",
    ("sweep", "local"): "kfjupyter.notebook_runs.local:LocalSweepBackend",
    ("endpoint", "local"): "kfjupyter.serving.local:LocalEndpointBackend",
    ("endpoint", "kubernetes"): "kfjupyter.serving.kubernetes:KubernetesEndpointBackend",
}


def register_backend(kind: str, name: str, path: str) -> None:
    """Register ``"package.module:Class"`` as the engine of ``kind`` jobs on backend ``name``."""
    _REGISTRY[(kind, name)] = path


def backend_names(kind: str) -> list[str]:
    return [name for k, name in _REGISTRY if k == kind]


def get_backend(kind: str, name: str) -> Any:
    path = _REGISTRY.get((kind, name))
    if path is None:
        known = ", ".join(backend_names(kind)) or "none"
        raise InvalidOptionError(f"unknown backend {name!r} for {kind} jobs (known: {known})")
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)()
