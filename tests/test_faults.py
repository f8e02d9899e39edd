"""Supervision faults, each reproduced for real: a lost supervisor, processes user code
starts, a workspace that cannot be written for a while, the rendezvous store's socket.

(The contract suite, tests/test_engine_contract.py, checks the SIGKILLed supervisor of
every supervised engine; here the training job's case is followed to its processes.)
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter.runtime.processes import registered_groups
from kfjupyter.runtime.ranks import rank_paths
from kfjupyter.store.workspace import get_workspace

from conftest import wait_for

pytestmark = pytest.mark.timeout(180)

#: A cell whose rank starts a process of its own (user code's child), notes its pid, and waits.
SPAWNER = """
import os, subprocess, sys, time
rank = int(os.environ["RANK"])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # kfjupyter-fault-grandchild"])
open(f"{marker}/child-{rank}", "w").write(str(child.pid))
print("spawned", child.pid, flush=True)
time.sleep(300)
"""


def _grandchildren(folder: Path, count: int) -> list[psutil.Process]:
    wait_for(lambda: len(list(folder.glob("child-*"))) == count, timeout=60)
    return [psutil.Process(int(p.read_text())) for p in sorted(folder.glob("child-*"))]


def _gone(procs: list[psutil.Process], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def marker(tmp_path):
    folder = tmp_path / "marker"
    folder.mkdir()
    return folder


def test_a_sigkilled_supervisor_fails_the_job_unread_naming_the_signal_and_its_processes_go(workdir, marker):
    job = kfjupyter.train(SPAWNER, workers=2, name="orphaned", user_ns={"marker": str(marker)})
    children = _grandchildren(marker, 2)
    keeper = psutil.Process(job.record.backend_info["pid"])
    (supervisor,) = keeper.children()
    supervisor.send_signal(signal.SIGKILL)
    ws = get_workspace()
    record = wait_for(lambda: (r := ws.get_job(job.id)).status in st.TERMINAL and r, timeout=20)  # no reader
    assert record.status == st.FAILED
    assert record.error.startswith("the job's training supervisor ended unexpectedly: killed by signal 9 (SIGKILL)")
    assert record.end_reason == st.SupervisorLost(signal=9).to_dict()
    assert _gone(children), "what the ranks started goes with the job"


def test_a_killed_rank_takes_what_it_started_with_it(workdir, marker):
    job = kfjupyter.train(SPAWNER, workers=2, name="rank-killed", user_ns={"marker": str(marker)})
    children = _grandchildren(marker, 2)
    # each rank leads a process group of its own, noted in rank order (a rank forked from a
    # warm parent has that parent's command line and /proc environ: neither names it)
    rank1 = psutil.Process(registered_groups(job.job_dir)[1])
    rank1.send_signal(signal.SIGKILL)  # the out-of-memory killer, say
    job.wait(raise_on_failure=False, timeout=30)
    assert job.status == st.FAILED and "rank 1 killed by signal 9" in job.error
    assert _gone(children), "rank 1's own child, orphaned when rank 1 died, and rank 0's"


TRIAL_SPAWNER = """
import subprocess, sys, time
x = kfjupyter.param("x", low=0.0, high=1.0)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # kfjupyter-fault-grandchild"])
open(f"{marker}/child-{child.pid}", "w").write(str(child.pid))
time.sleep(300)
kfjupyter.report(step=0, loss=x)
"""


def test_a_cancelled_study_stops_what_its_trials_started(workdir, marker):
    study = kfjupyter.tune(TRIAL_SPAWNER, "loss", trials=4, parallel=2, name="spawny", user_ns={"marker": str(marker)})
    children = _grandchildren(marker, 2)
    study.cancel()
    assert study.status == st.CANCELLED
    assert _gone(children)


REPORTER = """
import os, time
from pathlib import Path
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.05)
for step in range(60):
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
    time.sleep(0.1)
print("done", flush=True)
"""


def test_a_workspace_that_cannot_be_written_for_five_seconds_loses_no_metric_and_fails_no_job(workdir, tmp_path):
    go = tmp_path / "go"
    job = kfjupyter.train(REPORTER, workers=1, name="unwritable", user_ns={"go": str(go)})
    wait_for(lambda: "ready" in job.logs(), timeout=60)
    metrics = rank_paths(job.job_dir, 0)["metrics"].parent
    aside = metrics.with_name("metrics-aside")
    metrics.rename(aside)
    metrics.write_text("not a folder")  # every write of a report fails now
    go.touch()
    time.sleep(5)
    metrics.unlink()
    aside.rename(metrics)
    job.wait(raise_on_failure=False, timeout=60)
    assert job.status == st.SUCCEEDED, job.error
    assert [r["step"] for r in job.metrics()] == list(range(60)), "every report, in order, none twice"
    log = job.logs()
    assert log.count("kfjupyter: cannot write metrics") == 1 and "metrics written to" in log and "done" in log


RENDEZVOUS = """
import os, time
import torch, torch.distributed as dist
print("store port", os.environ["MASTER_PORT"], flush=True)
dist.init_process_group()
t = torch.ones(1)
dist.all_reduce(t)
print("reduced", t.item(), flush=True)
time.sleep(3)
dist.destroy_process_group()
"""


def test_local_ranks_listen_on_loopback_only(workdir):
    job = kfjupyter.train(RENDEZVOUS, workers=2, name="loopback", user_ns={})
    wait_for(lambda: "reduced 2.0" in job.logs(rank=1), timeout=90)
    keeper = psutil.Process(job.record.backend_info["pid"])
    listening = []
    for proc in [keeper] + keeper.children(recursive=True):
        connections = getattr(proc, "net_connections", None) or proc.connections
        listening += [(proc.pid, c.laddr) for c in connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    job.wait(raise_on_failure=False, timeout=60)
    assert job.status == st.SUCCEEDED, job.error
    port = int(next(line for line in job.logs(rank=0).splitlines() if line.startswith("store port")).split()[-1])
    assert port in [addr.port for _, addr in listening], ("the rendezvous store listens", port, listening)
    assert all(addr.ip in ("127.0.0.1", "::1") for _, addr in listening), listening


def test_a_reused_process_group_id_is_never_signalled(tmp_path):
    """A job's groups file outlives its processes (a pod restart, pids that wrap): a group
    id now held by another process is not the job's and is left alone."""
    import subprocess
    import sys

    from kfjupyter.runtime.processes import own_group, register_group, registered_groups

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=own_group)
    try:
        register_group(tmp_path, other.pid)
        assert registered_groups(tmp_path) == [other.pid]  # noted with its leader's start time: ours
        (tmp_path / "groups").write_text(f"{other.pid} 1 12345.000\n")  # the same id, noted long ago
        assert registered_groups(tmp_path) == []
    finally:
        other.kill()
        other.wait()


CRASHING_TRIAL = """
import os
x = kfjupyter.param("x", low=0.0, high=1.0)
if os.environ["KFJUPYTER_TRIAL_NUMBER"] == "0":
    print("trial zero says goodbye", flush=True)
    os._exit(3)
print("a later trial", flush=True)
kfjupyter.report(step=0, loss=x)
"""


def test_a_trial_whose_worker_died_keeps_its_own_log_only(workdir):
    study = kfjupyter.tune(CRASHING_TRIAL, "loss", trials=2, name="crashy", user_ns={}).wait(timeout=90)
    states = {t["number"]: t["state"] for t in study.trials}
    assert states == {0: "FAIL", 1: "COMPLETE"}, study.trials
    first = study.trial_log(0)
    assert "trial zero says goodbye" in first and "a later trial" not in first  # its fresh worker writes after
    assert "a later trial" in study.trial_log(1)
