"""The quickstart notebook runs end to end (what `bash scripts/quickstart.sh` executes)."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from conftest import REPO

pytestmark = pytest.mark.timeout(300)


def test_quickstart_notebook_is_generated_from_its_script(tmp_path):
    """notebooks/quickstart.ipynb is what scripts/make_quickstart.py writes (no drift)."""
    committed = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    import runpy

    cells = runpy.run_path(str(REPO / "scripts" / "make_quickstart.py"))["CELLS"]
    assert [c.source for c in committed.cells] == [c.source for c in cells]


def test_quickstart_runs_end_to_end(workspace):
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_notebook.py"), str(REPO / "notebooks" / "quickstart.ipynb")],
        capture_output=True, text=True, timeout=280,
        env={**__import__("os").environ, "KFJUPYTER_HOME": str(workspace)},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Succeeded" in run.stdout and "on 2 ranks" in run.stdout
    assert "loaded quickstart-regressor@production from the registry" in run.stdout
    assert "endpoint http://127.0.0.1:" in run.stdout
    assert "best parameters:" in run.stdout
    assert "Succeeded {'logreg_accuracy'" in run.stdout  # the pipeline section's local run
    assert "cached: " in run.stdout
    assert f"workspace (jobs, logs, outputs): {workspace}" in run.stdout
