"""The same `%%kf_train` cell, unchanged, on the Kubernetes backend (the fake cluster)."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cell
from fake_k8s import fake_k8s  # noqa: F401  (fixture)

import kfjupyter
from kfjupyter import status as st

pytestmark = pytest.mark.timeout(120)

CELL = """%%kf_train --workers 2 --backend kubernetes --name on-cluster --cpu 1 --memory 1Gi --env MODE=test --out job
import os, torch, torch.distributed as dist
import shapes
dist.init_process_group()
t = torch.tensor([float(dist.get_rank() + 1)]) * scale
dist.all_reduce(t)
print("sum", t.item(), "mode", os.environ["MODE"], "area", shapes.area(3))
kfjupyter.report(step=0, total=t.item())
"""


def test_kf_train_cell_runs_as_a_trainjob(shell, workdir, fake_k8s):  # noqa: F811
    (workdir / "shapes.py").write_text("def area(r):\n    return r * r\n")
    run_cell(shell, "scale = 10.0")
    result = run_cell(shell, CELL)
    assert result.success, result.error_in_exec
    job = shell.user_ns["job"]
    assert job.status == st.SUCCEEDED, job.error
    assert "sum 30.0 mode test area 9" in job.logs(rank=0)
    assert [m["total"] for m in job.metrics(rank=1)] == [30.0]
    # the record is the same kind of record as a local job's, found again by id
    again = kfjupyter.jobs.get(job.id)
    assert again.record.backend == "kubernetes" and again.status == st.SUCCEEDED
    created = [r for r in fake_k8s.requests if r["method"] == "POST" and r["path"].endswith("/trainjobs")]
    assert len(created) == 1


def test_a_reserved_env_var_is_refused_before_any_request(shell, fake_k8s):  # noqa: F811
    result = run_cell(shell, "%%kf_train --workers 2 --backend kubernetes --env PET_MASTER_PORT=1\nprint(1)")
    assert "PET_MASTER_PORT is reserved" in str(result.error_in_exec)
    assert fake_k8s.requests == []
    assert kfjupyter.jobs.list() == []
