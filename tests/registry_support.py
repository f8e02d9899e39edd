"""Fixtures of the registry tests: the same registry behind each backend.

``registry`` runs a test four times: the embedded store on SQLite and on a real
PostgreSQL server, and Kubeflow Model Registry (the fake server, validating every request
against the OpenAPI description) through ``/api/model_registry/v1`` and ``v1alpha3``.
``local_registry`` is the embedded store only (SQLite and PostgreSQL).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

import kfjupyter.registry as registry
from kfjupyter import status as st
from kfjupyter.store import JobRecord, get_workspace

from fake_model_registry import FakeModelRegistry
from postgres_support import shared_server

BACKENDS = ["sqlite", "postgresql", "kubeflow-v1", "kubeflow-v1alpha3"]
LOCAL = ["sqlite", "postgresql"]
CONFIG = ("KFJUPYTER_DB_URL", "KFJUPYTER_MODEL_REGISTRY_URL", "KFJUPYTER_MODEL_REGISTRY_API", "KFJUPYTER_ARTIFACT_URI")


def open_backend(kind: str, request, monkeypatch):
    """Point this process's environment at ``kind``; the registry, with ``.fake`` for Kubeflow."""
    for name in CONFIG:
        monkeypatch.delenv(name, raising=False)
    fake = None
    if kind == "postgresql":
        monkeypatch.setenv("KFJUPYTER_DB_URL", shared_server().new_schema())
    elif kind.startswith("kubeflow-"):
        fake = FakeModelRegistry(kind.split("-", 1)[1]).start()
        request.addfinalizer(fake.stop)
        monkeypatch.setenv("KFJUPYTER_MODEL_REGISTRY_URL", fake.url)
    reg = registry.get_registry()
    reg.fake = fake
    reg.backend_name = kind
    if kind == "postgresql":
        request.addfinalizer(get_workspace().engine.dispose)  # don't hoard server connections
    return reg


@pytest.fixture(params=BACKENDS)
def backend(request, workspace, monkeypatch):
    return open_backend(request.param, request, monkeypatch)


@pytest.fixture(params=LOCAL)
def local_backend(request, workspace, monkeypatch):
    return open_backend(request.param, request, monkeypatch)


def finished_job(name: str = "trainer", outputs: dict[str, bytes] | None = None, metrics: list[dict] | None = None,
                 notebook: str = "Untitled.ipynb", cell: str = "model.fit(x, y)") -> "kfjupyter.jobs.Job":  # noqa: F821
    """A succeeded local training job in the workspace store, with output files and metrics,
    as a job that ran would leave it (without spending seconds running one)."""
    from kfjupyter.jobs import Job

    ws = get_workspace()
    job_id = f"{name}-{os.urandom(3).hex()}"
    job_dir = ws.job_dir(job_id)
    for rel, data in (outputs or {}).items():
        path = job_dir / "outputs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (job_dir / "metrics").mkdir(parents=True, exist_ok=True)
    with open(job_dir / "metrics" / "rank-0.jsonl", "w") as fh:
        for row in metrics or []:
            fh.write(json.dumps(row) + "\n")
    ws.add_job(
        JobRecord(
            id=job_id, name=name, kind="train", backend="local", status=st.SUCCEEDED, workers=1, spec={},
            backend_info={"job_dir": str(job_dir)}, notebook=notebook, cell=cell,
        )
    )
    return Job(job_id)


@functools.lru_cache(maxsize=1)
def iris_model():
    """A fitted scikit-learn classifier and its data (a tree: no BLAS threads to wait for)."""
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y), x, y


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path

