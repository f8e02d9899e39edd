"""A real MLflow tracking server for tests: ``mlflow server`` on a free loopback port with a
SQLite store and served artifacts, and how to find kfjupyter's runs on it.

Import the fixtures into a test module: ``from mlflow_support import client, server``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kfjupyter.runtime.processes import free_port

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and served artifacts."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        self.proc = subprocess.Popen(
            [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=open(self.folder / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=1)
                return
            except OSError:
                assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-2000:]
                time.sleep(0.3)
        raise TimeoutError("mlflow server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    return MlflowClient(tracking_uri=server.uri)


def mlflow_run(client, experiment: str, run_id: str):
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`kfjupyter.run_id` = '{run_id}'") if exp else []
    return found[0] if len(found) == 1 else None


def wait_ended(client, experiment, run_id, timeout=60):
    """The MLflow run of kfjupyter's run ``run_id`` once it has ended (the job's supervisor
    sends the last records and the end after the job's own end)."""
    deadline = time.monotonic() + timeout
    while True:
        run = mlflow_run(client, experiment, run_id)
        if (run is not None and run.info.status != "RUNNING") or time.monotonic() > deadline:
            assert run is not None, f"no MLflow run of {run_id} in {experiment}"
            return run
        time.sleep(0.3)
