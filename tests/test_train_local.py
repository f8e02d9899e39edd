"""Distributed training on the local backend, from a real IPython shell."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest
import torch

import kfjupyter
from kfjupyter import status as st
from kfjupyter.errors import InvalidOptionError, PreflightError
from kfjupyter.runtime.processes import registered_groups

from conftest import processes_of, run_cell, wait_for

pytestmark = pytest.mark.timeout(180)

DDP_CELL = """%%kf_train --workers 2 --name ddp-proof --out job
import torch, torch.distributed as dist
dist.init_process_group()
rank = dist.get_rank()
model = torch.nn.parallel.DistributedDataParallel(make_model())
opt = torch.optim.SGD(model.parameters(), lr=0.1)
torch.manual_seed(100 + rank)                 # every rank sees different data
for step in range(epochs):
    x = torch.randn(16, 4)
    loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    kfjupyter.report(step=step, loss=loss.item())
torch.save(model.module.state_dict(), kfjupyter.output_dir() / f"rank{rank}.pt")
if rank == 0:
    torch.save(model.module.state_dict(), kfjupyter.output_dir() / "model.pt")
print("rank", rank, "done")
dist.destroy_process_group()
"""


def test_kf_train_ranks_really_train_together(shell):
    run_cell(shell, "import torch\nepochs = 5")
    run_cell(shell, "def make_model():\n    torch.manual_seed(0)\n    return torch.nn.Linear(4, 1)")
    result = run_cell(shell, DDP_CELL)
    assert result.success, result.error_in_exec
    job = shell.user_ns["job"]
    assert job.status == st.SUCCEEDED, job.error
    r0 = torch.load(job.outputs["rank0.pt"])
    r1 = torch.load(job.outputs["rank1.pt"])
    initial = torch.nn.Linear(4, 1)
    torch.manual_seed(0)
    initial = torch.nn.Linear(4, 1).state_dict()
    for key in r0:
        # gradients were averaged across ranks: different data, identical parameters
        assert torch.equal(r0[key], r1[key]), key
        assert not torch.equal(r0[key], initial[key]), f"{key} did not train"
    assert "model.pt" in job.outputs
    steps = [m["step"] for m in job.metrics(rank=0)]
    assert steps == [0, 1, 2, 3, 4]
    assert {m["rank"] for m in job.metrics()} == {0, 1}
    assert "rank 1 done" in job.logs(rank=1)
    # the program the ranks ran carries the notebook's definition, not a pickle of it
    assert "def make_model():" in job.program


def test_python_api_with_a_function(workdir):
    def work():
        import torch.distributed as dist

        dist.init_process_group()
        kfjupyter.report(step=0, world=dist.get_world_size())
        dist.destroy_process_group()

    work.__module__ = "__main__"
    job = kfjupyter.train(work, workers=2, name="fn").wait(raise_on_failure=False)
    assert job.status == st.SUCCEEDED, job.error
    assert [m["world"] for m in job.metrics()] == [2.0, 2.0]


LONG_CELL = """import time
print("started", flush=True)
for i in range(600):
    time.sleep(0.1)
"""


def test_cancel_stops_every_rank_within_5_seconds(workdir):
    job = kfjupyter.train(LONG_CELL, workers=2, name="long", user_ns={})
    wait_for(lambda: "started" in job.logs(rank=1), timeout=30)
    keeper = psutil.Process(job.record.backend_info["pid"])
    under = keeper.children(recursive=True)  # the supervisor, its ranks (fresh or forked from a warm parent)
    ranks = registered_groups(job.job_dir)  # each rank leads a process group of its own
    assert len(ranks) == 2 and set(ranks) <= {p.pid for p in under}
    started = time.monotonic()
    job.cancel()
    gone, alive = psutil.wait_procs(under + [keeper], timeout=max(0.1, 5 - (time.monotonic() - started)))
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert time.monotonic() - started < 5
    assert job.status == st.CANCELLED


def test_ctrl_c_while_waiting_cancels_the_job(shell):
    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    try:
        result = run_cell(shell, "%%kf_train --workers 2 --name interrupted --out job\n" + LONG_CELL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    job = shell.user_ns["job"]
    assert job.status == st.CANCELLED


CRASH_CELL = """import torch, torch.distributed as dist
dist.init_process_group()
if dist.get_rank() == 1:
    raise ValueError("rank one is broken")
t = torch.ones(1)
dist.all_reduce(t)          # rank 0 would wait here for ever
"""


def test_a_crashing_rank_fails_the_job_promptly_with_its_traceback(workdir):
    started = time.monotonic()
    job = kfjupyter.train(CRASH_CELL, workers=2, name="crash", user_ns={}).wait(raise_on_failure=False, timeout=60)
    assert job.status == st.FAILED
    assert "rank 1 exited with code 1" in job.error
    assert "ValueError: rank one is broken" in job.error
    assert "Cell (the %%kf_train cell), line" in job.error  # the cell's own line numbers
    assert 'program.py", line' in job.record.error  # the raw traceback is kept
    assert time.monotonic() - started < 30


def test_a_lost_supervisor_marks_the_job_failed(workdir, workspace):
    """The keeper and the supervisor both killed: the next reader says so."""
    job = kfjupyter.train(LONG_CELL, workers=1, name="orphan", user_ns={})
    wait_for(lambda: "started" in job.logs(rank=0), timeout=30)
    keeper = psutil.Process(job.record.backend_info["pid"])
    for proc in [keeper] + keeper.children():
        proc.kill()  # the ranks die with their supervisor (PR_SET_PDEATHSIG)
    wait_for(lambda: job.status == st.FAILED, timeout=10)
    assert "supervisor ended unexpectedly" in job.error
    assert job.end_reason == st.SupervisorLost()
    wait_for(lambda: not processes_of(workspace), timeout=10)


class TestBadOptions:
    @pytest.mark.parametrize(
        "line, message",
        [
            ("--workers 0", "invalid workers 0"),
            ("--workers -2", "invalid workers -2"),
            ("--memory lots", "invalid memory 'lots'"),
            ("--memory 4GB", "invalid memory '4GB'"),
            ("--cpu fast", "invalid cpu 'fast'"),
            ("--name My_Job", "invalid job name 'My_Job'"),
            ("--name 7up", "it must start with a letter"),
            ("--name " + "a" * 60, "at most 57 characters"),
            ("--env NOEQUALS", "invalid --env 'NOEQUALS'"),
            ("--env MASTER_PORT=1", "MASTER_PORT is reserved"),
            ("--env PET_NNODES=3", "PET_NNODES is reserved"),
            ("--backend moon", "unknown backend 'moon'"),
            ("--gpus -1", "invalid gpus -1"),
            ("--frobnicate", "unrecognized arguments: --frobnicate"),
            ("--workers two", "invalid int value: 'two'"),
        ],
    )
    def test_bad_option_is_a_clear_usage_error_and_starts_nothing(self, shell, workspace, line, message, capsys):
        result = run_cell(shell, f"%%kf_train {line}\nprint('should not run')")
        assert not result.success
        err = result.error_in_exec or result.error_before_exec
        assert message in str(err)
        assert kfjupyter.jobs.list() == []
        assert not processes_of(workspace)

    def test_api_raises_invalid_option(self, workdir):
        with pytest.raises(InvalidOptionError, match="invalid workers 0"):
            kfjupyter.train("print(1)", workers=0, user_ns={})

    def test_gpus_the_machine_does_not_have(self, workdir):
        if subprocess.run(["sh", "-c", "command -v nvidia-smi"], capture_output=True).returncode == 0:
            pytest.skip("this machine has GPUs")
        with pytest.raises(InvalidOptionError, match="GPU"):
            kfjupyter.train("print(1)", gpus=1, user_ns={})
        assert kfjupyter.jobs.list() == []


class TestPreflightThroughTheMagic:
    """Each preflight error names its culprit, and nothing is recorded or started."""

    @pytest.mark.parametrize(
        "setup, cell, culprit",
        [
            ("", "print(undefined_thing)", "undefined_thing"),
            ("import threading\nlock = threading.Lock()", "print(lock)", "lock"),
            ("", "import no_such_local_module\n", "no_such_local_module"),
            ("big = b'x' * (600 * 2**20)", "print(len(big))", "big"),
        ],
    )
    def test_preflight_error(self, shell, workspace, setup, cell, culprit):
        run_cell(shell, setup)
        result = run_cell(shell, "%%kf_train --workers 2\n" + cell)
        assert isinstance(result.error_in_exec, PreflightError)
        assert result.error_in_exec.culprit == culprit
        assert f"'{culprit}'" in str(result.error_in_exec)
        assert kfjupyter.jobs.list() == []
        assert not list((workspace / "jobs").glob("*/*")) if (workspace / "jobs").exists() else True
        assert not processes_of(workspace)


def test_a_job_cancelled_while_being_submitted_is_stopped(workdir, monkeypatch):
    """Cancel can arrive between the record and the submission (e.g. from the sidebar)."""
    from kfjupyter.training.local import LocalTrainEngine

    real_submit = LocalTrainEngine.submit
    seen = {}

    def submit_after_a_cancel(self, job_id, spec, job_dir):
        job = kfjupyter.jobs.get(job_id)
        seen["logs"], seen["metrics"] = job.logs(), job.metrics()  # nothing yet, no error
        job.cancel()
        return real_submit(self, job_id, spec, job_dir)

    monkeypatch.setattr(LocalTrainEngine, "submit", submit_after_a_cancel)
    job = kfjupyter.train(LONG_CELL, workers=2, name="early-cancel", user_ns={})
    assert seen == {"logs": "", "metrics": []}
    assert job.status == st.CANCELLED
    wait_for(lambda: not psutil.pid_exists(job.record.backend_info["pid"])
             or psutil.Process(job.record.backend_info["pid"]).status() == psutil.STATUS_ZOMBIE, timeout=10)


def test_a_new_job_never_takes_an_existing_jobs_folder(workdir, workspace, monkeypatch):
    from kfjupyter.training.spec import TrainSpec

    taken = workspace / "jobs" / "same-00000"
    taken.mkdir(parents=True)
    (taken / "keep.txt").write_text("another job's file")
    ids = iter(["same-00000", "same-11111"])
    monkeypatch.setattr(TrainSpec, "new_job_id", lambda self: next(ids))
    job = kfjupyter.train("print('hi')", name="same", user_ns={}).wait(timeout=60)
    assert job.id == "same-11111" and job.status == st.SUCCEEDED
    assert (taken / "keep.txt").read_text() == "another job's file"
