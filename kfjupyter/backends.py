"""The registry of job kinds: which engine answers for a job, which handle shows it.

Every capability (training, tuning, pipelines, notebook runs, serving) registers its
engines here by (job kind, backend name), and the handle class of its jobs, so a job
handle, the CLI and the server can re-attach to any job from its record alone. This is
the only list of backend names: specs check their ``backend`` against it.

Engines and handles are named by import path and loaded on first use, so the core
(which this module is part of) imports no capability.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InvalidOptionError

_ENGINES: dict[tuple[str, str], str] = {
    ("train", "local"): "kfjupyter.training.local:LocalTrainEngine",
    ("train", "kubernetes"): "kfjupyter.training.kubernetes:KubernetesTrainBackend",
    ("tune", "local"): "kfjupyter.tuning.local:LocalTuneEngine",
    ("tune", "kubernetes"): "kfjupyter.tuning.kubernetes:KubernetesTuneBackend",
    ("pipeline", "local"): "kfjupyter.pipelines.local:LocalPipelineEngine",
    ("pipeline", "kubernetes"): "kfjupyter.pipelines.kubernetes:KFPPipelineBackend",
    ("notebook", "local"): "kfjupyter.notebook_runs.local:LocalNotebookEngine",
    ("sweep", "local"): "kfjupyter.notebook_runs.local:LocalSweepEngine",
    ("endpoint", "local"): "kfjupyter.serving.local:LocalEndpointBackend",
    ("endpoint", "kubernetes"): "kfjupyter.serving.kubernetes:KubernetesEndpointBackend",
    ("batch", "local"): "kfjupyter.serving.batch:LocalBatchEngine",
    ("batch", "kubernetes"): "kfjupyter.serving.batch_kubernetes:KubernetesBatchEngine",
}

#: Other names of backends, accepted wherever a backend is named (``backend="k8s"``).
ALIASES = {"k8s": "kubernetes"}

#: The handle class of each kind's jobs (default: :class:`kfjupyter.jobs.Job`).
_HANDLES: dict[str, str] = {
    "pipeline": "kfjupyter.pipelines.api:PipelineRun",
    "notebook": "kfjupyter.notebook_runs.api:NotebookRun",
    "sweep": "kfjupyter.notebook_runs.api:Sweep",
    "batch": "kfjupyter.serving.batch:BatchJob",
}


#: The spec class of each kind (a :class:`~kfjupyter.runtime.engine.JobSpec` subclass).
_SPECS: dict[str, str] = {
    "train": "kfjupyter.training.spec:TrainSpec",
    "tune": "kfjupyter.tuning.spec:TuneSpec",
    "pipeline": "kfjupyter.pipelines.spec:PipelineSpec",
    "notebook": "kfjupyter.notebook_runs.spec:NotebookSpec",
    "sweep": "kfjupyter.notebook_runs.spec:SweepSpec",
    "endpoint": "kfjupyter.serving.spec:EndpointSpec",
    "batch": "kfjupyter.serving.batch:BatchSpec",
}


def load(path: str) -> Any:
    """The object ``"package.module:name"`` names (imported on first use)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def register_backend(kind: str, name: str, path: str) -> None:
    """Register ``"package.module:Class"`` as the engine of ``kind`` jobs on backend ``name``."""
    _ENGINES[(kind, name)] = path


def kinds() -> list[str]:
    return list(dict.fromkeys(k for k, _ in _ENGINES))


def backend_names(kind: str | None = None) -> list[str]:
    """The backends ``kind`` jobs run on (every backend of any kind, without ``kind``)."""
    return list(dict.fromkeys(name for k, name in _ENGINES if kind is None or k == kind))


def check_backend(kind: str, name: Any) -> str:
    """``name`` (its canonical form: ``"k8s"`` is ``"kubernetes"``) if ``kind`` jobs can run
    on it; else a clear error naming the choices."""
    name = ALIASES.get(name, name) if isinstance(name, str) else name
    known = backend_names(kind)
    if name not in known:
        choices = ", ".join(known) or "none"
        raise InvalidOptionError(f"unknown backend {name!r} for {kind or 'these'} jobs: choose one of {choices}")
    return name


def get_backend(kind: str, name: str) -> Any:
    """The engine of ``kind`` jobs on backend ``name`` (a fresh instance)."""
    name = check_backend(kind, name)
    return load(_ENGINES[(kind, name)])()


def spec_class(kind: str) -> Any:
    """The spec class of ``kind`` jobs."""
    if kind not in _SPECS:
        raise InvalidOptionError(f"unknown job kind {kind!r} (known: {', '.join(_SPECS)})")
    return load(_SPECS[kind])


def handle_class(kind: str) -> type | None:
    """The handle class of ``kind`` jobs, or None for a plain ``Job``."""
    path = _HANDLES.get(kind)
    return load(path) if path else None
