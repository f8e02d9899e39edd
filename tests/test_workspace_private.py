"""On a shared host the workspace is private: its folders 0700, its files 0600 (or
stricter), whoever wrote them (this process, a supervisor, a rank, the registry)."""

from __future__ import annotations

import os
import stat

import pytest

import kfjupyter
from kfjupyter.store import get_workspace

pytestmark = pytest.mark.timeout(180)

RANK = """
import kfjupyter
print("rank says hello", flush=True)
(kfjupyter.output_dir() / "model.txt").write_text("weights")
(kfjupyter.output_dir() / "sub").mkdir()
(kfjupyter.output_dir() / "sub" / "extra.txt").write_text("more")
kfjupyter.report(step=0, loss=1.0)
"""


def open_to_others(home) -> list[str]:
    """Everything under ``home`` (itself too) that group or others may use."""
    found = []
    for folder, dirs, names in os.walk(home):
        for path in [folder] + [os.path.join(folder, n) for n in dirs + names]:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                found.append(f"{oct(mode)} {os.path.relpath(path, home)}")
    return sorted(set(found))


def test_a_job_its_logs_bundle_outputs_and_registered_model_are_private(workspace):
    os.umask(0o022)  # a usual umask: what kfjupyter makes must not depend on it
    secret_value = list(range(5))
    job = kfjupyter.train(RANK + "print(secret_value)", workers=1, name="private", user_ns={"secret_value": secret_value})
    job.wait(120, raise_on_failure=False)
    assert job.status == "Succeeded", job.error
    job.register_model("private-model")
    assert "rank says hello" in job.logs()
    job_dir = get_workspace().job_dir(job.id)
    assert (job_dir / "bundle").is_dir() and any((job_dir / "bundle").iterdir())
    assert (job_dir / "outputs" / "sub" / "extra.txt").exists()
    assert stat.S_IMODE(workspace.stat().st_mode) == 0o700
    assert stat.S_IMODE((workspace / "kfjupyter.db").stat().st_mode) == 0o600
    assert open_to_others(workspace) == []


def test_a_workspace_made_by_an_earlier_version_is_made_private_when_opened(tmp_path, monkeypatch):
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    monkeypatch.setenv("KFJUPYTER_HOME", str(home))
    assert kfjupyter.jobs.list() == []
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
