"""The labextension's unit tests (jest, labextension/test/) and its type check, run from
pytest so that scripts/test.sh covers them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


def jlpm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    if not (REPO / "node_modules" / ".bin" / "jest").exists():
        pytest.fail("node_modules is missing: run scripts/setup-frontend.sh")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["CI"] = "true"
    return subprocess.run(["jlpm", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_jest_units():
    done = jlpm("jest", "--ci")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "Tests:" in output and " passed" in output, output[-2000:]


def test_typescript_compiles():
    done = jlpm("typecheck")
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
