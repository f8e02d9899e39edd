"""Warm parents (kfjupyter/runtime/warm.py): a warm-started job is the job a cold one is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter.runtime import warm
from kfjupyter.runtime.processes import registered_groups

from conftest import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm parents fork: Linux only")

#: what a rank sees, written by the rank as its program starts
PROBE = """
import json, os, random, signal, sys, threading
import numpy, torch
import kfjupyter

def fd_kind(fd):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return target.split(":")[0] if target.startswith(("socket:", "pipe:", "anon_inode:")) else target

fds = sorted(os.listdir("/proc/self/fd"), key=int)
seen = {
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "path": sys.path,
    "argv": sys.argv,
    "orig_argv": sys.orig_argv[1:],
    "flags": [sys.flags.optimize, sys.flags.safe_path, sys.flags.dont_write_bytecode, sys.flags.hash_randomization],
    "stdout": [sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering, sys.stdout.write_through],
    "fds": [fd_kind(fd) for fd in fds[:-1]],  # the last one is listdir's own
    "threads": len(os.listdir("/proc/self/task")),
    "python_threads": threading.active_count(),
    "signals": [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE)],
    "torch_seed": torch.initial_seed(),
    "random": random.random(),
    "numpy_random": float(numpy.random.random()),
    "torch_threads": torch.get_num_threads(),
    "main": sys.modules["__main__"].__dict__.get("__file__"),
    "umask": os.umask(0o77),
    "pgid_is_own": os.getpgid(0) == os.getpid(),
}
out = kfjupyter.output_dir() / f"seen-{os.environ['RANK']}.json"
out.write_text(json.dumps(seen))
import torch.distributed as dist
dist.init_process_group("gloo")
t = torch.ones(1)
dist.all_reduce(t)
assert t.item() == dist.get_world_size()
"""


def run(source: str, workdir, **kw):
    job = kfjupyter.train(source, workers=2, name="warm", user_ns={}, history=[], workdir=str(workdir), **kw)
    job.wait(timeout=120, raise_on_failure=False)
    return job


@pytest.fixture
def warm_pool(workdir, monkeypatch):
    """The warm pool, on by default, and ready (a first job, cold, starts it)."""
    monkeypatch.delenv("KFJUPYTER_WARM", raising=False)
    assert warm.enabled()
    warm.pool().close()
    job = run("print('warm-up')", workdir)
    assert job.status == st.SUCCEEDED, job.error
    assert not job.record.backend_info.get("warm")
    assert warm.pool().wait_ready(120)
    yield warm.pool()


def seen(job) -> list[dict]:
    out = []
    for rank in range(2):
        data = json.loads((job.job_dir / "outputs" / f"seen-{rank}.json").read_text())
        text = json.dumps(data).replace(job.id, "JOB")  # the job's own id and folders
        data = json.loads(text)
        for name in ("MASTER_PORT", "KFJUPYTER_WARM"):
            data["env"].pop(name, None)
        if rank == 0:  # the rendezvous store rank 0 serves: its connections come and go as peers join
            data["fds"] = [kind for kind in data["fds"] if kind not in ("socket", "anon_inode")]
        out.append(data)
    return out


def test_a_warm_rank_sees_exactly_what_a_cold_rank_sees(warm_pool, workdir, monkeypatch):
    monkeypatch.setenv("KFJUPYTER_WARM", "0")
    cold = run(PROBE, workdir)
    assert cold.status == st.SUCCEEDED, cold.error
    assert not cold.record.backend_info.get("warm")
    monkeypatch.setenv("KFJUPYTER_WARM", "1")
    hot = run(PROBE, workdir)
    assert hot.status == st.SUCCEEDED, hot.error
    assert hot.record.backend_info.get("warm"), "the job did not start warm"
    assert "ranks forked from the warm supervisor" in (hot.job_dir / "supervisor.log").read_text()

    cold_seen, hot_seen = seen(cold), seen(hot)
    for rank in range(2):
        c, h = cold_seen[rank], hot_seen[rank]
        for key in ("random", "numpy_random", "torch_seed"):  # drawn from fresh entropy in both
            assert c.pop(key) != h.pop(key)
        assert h == c, f"rank {rank}: warm and cold differ"
    # the ranks' random states are their own, not a copy of their parent's
    ranks = [json.loads((hot.job_dir / "outputs" / f"seen-{r}.json").read_text()) for r in range(2)]
    for key in ("random", "numpy_random", "torch_seed"):
        assert ranks[0][key] != ranks[1][key]


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("import os\nif os.environ['RANK'] == '1':\n    os._exit(3)\nimport time; time.sleep(60)", "rank 1 exited with code 3"),
        ("import os\nif os.environ['RANK'] == '1':\n    raise ValueError('boom in rank 1')\nimport time; time.sleep(60)",
         "ValueError: boom in rank 1"),
        ("import os, signal\nif os.environ['RANK'] == '0':\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
         "import time; time.sleep(60)", "rank 0 killed by signal 11"),
    ],
    ids=["os._exit", "raise", "crash"],
)
def test_a_failing_warm_rank_fails_the_job_like_a_cold_one(warm_pool, workdir, cell, expected):
    started = time.monotonic()
    job = run(cell, workdir)
    assert job.record.backend_info.get("warm")
    assert job.status == st.FAILED
    assert expected in job.error
    assert time.monotonic() - started < 30  # the peer sleeping 60 s was stopped


def test_cancel_kills_warm_ranks(warm_pool, workdir):
    job = kfjupyter.train("import time\nprint('up', flush=True)\ntime.sleep(120)", workers=2, name="warm",
                          user_ns={}, history=[], workdir=str(workdir))  # fmt: skip
    assert job.record.backend_info.get("warm")
    wait_for(lambda: "up" in job.logs(rank=0) and "up" in job.logs(rank=1), timeout=30)
    groups = registered_groups(job.job_dir)
    assert len(groups) == 2
    started = time.monotonic()
    job.cancel()
    assert job.status == st.CANCELLED
    wait_for(lambda: not any(psutil.pid_exists(g) and psutil.Process(g).status() != psutil.STATUS_ZOMBIE
                             for g in groups), timeout=5)  # fmt: skip
    assert time.monotonic() - started < 8


#: DDP training whose model goes right after ``destroy_process_group()``, three ways: at the
#: rank's end (a global), at the end of ``main()`` (torchrun's usual script), or ``del``.
#: Each frees the group's last reference from Python just after the last backward pass,
#: where torch 2.13 can deadlock (``~ProcessGroupGloo`` joins, with the GIL, a gloo thread
#: that needs the GIL to drop the autograd context its last allreduce held). A warm rank
#: has ``torch._dynamo`` (and ``torch.distributed.nn``) imported before its group exists,
#: so it is not spared as a fresh one is, by ``torch.distributed.nn``'s ``group.WORLD``
#: defaults: the launcher keeps the groups (bootstrap ``_keep_groups``) and never tears the
#: program down in a live interpreter (bootstrap ``end``).
DDP_END = """
import sys
import torch, torch.distributed as dist

def main():
    dist.init_process_group("gloo")
    group = dist.group.WORLD
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(20):
        x = torch.randn(64, 64)
        loss = (model(x) - x[:, :1]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist.destroy_process_group()
    SHAPE
    return group

group = main()
# the program holds `group` (and getrefcount its argument): a third reference is the launcher's
print("group kept:", sys.getrefcount(group) > 2, flush=True)
"""
SHAPES = {
    "global": "global kept_model\n    kept_model = model",
    "main": "pass",
    "del": "del model, opt, loss",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_warm_ddp_run_ends_however_its_model_goes(warm_pool, workdir, shape):
    source = DDP_END.replace("SHAPE", SHAPES[shape])
    for _ in range(6):  # before the fix, one warm run in three to six hung in rank 0 or 1
        job = run(source, workdir)
        assert job.record.backend_info.get("warm")
        assert job.status == st.SUCCEEDED, (job.status, job.error, job.logs(rank=0)[-2000:])
        for rank in range(2):
            assert "group kept: True" in job.logs(rank=rank)


#: What a rank leaves for its end: a non-daemon thread still running, an atexit function,
#: a global whose __del__ notes it, a file written but never closed. An interpreter's end
#: joins the threads, runs the atexit functions, then clears the program's globals.
ENDING = """
import atexit, os, threading, time
import kfjupyter
out = kfjupyter.output_dir()
rank = os.environ["RANK"]

def note(what, path=out / f"order-{rank}.txt"):
    with open(path, "a") as fh:
        fh.write(what + "\\n")

class Last:
    def __init__(self, note):
        self.note = note  # its __del__ runs when the module's names are gone already
    def __del__(self):
        self.note("del")

def later():
    time.sleep(0.5)
    note("thread")

last = Last(note)
atexit.register(note, "atexit")
threading.Thread(target=later).start()
unclosed = open(out / f"unclosed-{rank}.txt", "w")
unclosed.write("written, never closed")
"""


def test_a_warm_rank_ends_as_a_cold_one(warm_pool, workdir, monkeypatch):
    monkeypatch.setenv("KFJUPYTER_WARM", "0")
    cold = run(ENDING, workdir)
    monkeypatch.delenv("KFJUPYTER_WARM")
    hot = run(ENDING, workdir)
    assert not cold.record.backend_info.get("warm") and hot.record.backend_info.get("warm")
    for job in (cold, hot):
        assert job.status == st.SUCCEEDED, job.error
        for rank in range(2):
            out = job.job_dir / "outputs"
            assert (out / f"order-{rank}.txt").read_text().split() == ["thread", "atexit", "del"], (job, rank)
            assert (out / f"unclosed-{rank}.txt").read_text() == "written, never closed", (job, rank)


def test_a_warm_parent_serves_jobs_without_anyone_waiting_for_it(workdir, monkeypatch):
    """A submit looks at the pool without waiting (a warm parent that is still importing
    is passed over): once the parent has said it is ready, the next job is warm."""
    monkeypatch.delenv("KFJUPYTER_WARM", raising=False)
    warm.pool().close()
    assert run("print('cold')", workdir).status == st.SUCCEEDED
    wait_for(lambda: any(p.is_ready() for p in list(warm.pool().parents.values())), timeout=120)
    job = run("print('warm')", workdir)
    assert job.status == st.SUCCEEDED and job.record.backend_info.get("warm")


OWNER = """
import json, sys, time
import kfjupyter
from kfjupyter.runtime import warm
kfjupyter.train("print('cold')", workers=2, name="cold", user_ns={}, history=[]).wait(timeout=120)
assert warm.pool().wait_ready(120)
job = kfjupyter.train("import time\\ntime.sleep(4)\\nprint('outlived', flush=True)", workers=2, name="hot",
                      user_ns={}, history=[])
print(json.dumps({"pool": warm.pool().pids(), "job": job.id, "warm": job.record.backend_info.get("warm")}), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["SIGKILL", "exit"])
def test_the_pool_does_not_outlive_its_owner_but_its_jobs_do(workdir, monkeypatch, how):
    monkeypatch.delenv("KFJUPYTER_WARM", raising=False)  # on by default
    source = OWNER if how == "SIGKILL" else OWNER.replace("time.sleep(600)", "sys.exit(0)")
    owner = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE, text=True, cwd=workdir)
    try:
        line = json.loads(owner.stdout.readline())
        assert line["warm"] and line["pool"]
        parents = [psutil.Process(pid) for pid in line["pool"]]
        if how == "SIGKILL":
            owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        _, alive = psutil.wait_procs(parents, timeout=5)
        assert not alive, "the warm parents outlived their owner"
        job = kfjupyter.jobs.get(line["job"])
        job.wait(timeout=60)
        assert job.status == st.SUCCEEDED and "outlived" in job.logs(rank=0)
    finally:
        owner.kill()
        owner.wait()


def test_off_starts_nothing(workdir, monkeypatch):
    warm.pool().close()
    monkeypatch.setenv("KFJUPYTER_WARM", "0")
    for _ in range(2):
        job = run("print('cold')", workdir)
        assert job.status == st.SUCCEEDED and not job.record.backend_info.get("warm")
    assert warm.pool().pids() == []


def test_a_warm_parent_that_ends_idle_is_replaced(workdir, monkeypatch):
    monkeypatch.setenv("KFJUPYTER_WARM", "1")
    monkeypatch.setenv("KFJUPYTER_WARM_IDLE_S", "1")
    warm.pool().close()
    assert run("print(1)", workdir).status == st.SUCCEEDED
    assert warm.pool().wait_ready(120)
    pids = warm.pool().pids()
    assert pids
    psutil.wait_procs([psutil.Process(p) for p in pids], timeout=10)  # it shrinks when idle
    assert warm.pool().pids() == []
    job = run("print(2)", workdir)  # cold again, and a new warm parent for the next
    assert job.status == st.SUCCEEDED and not job.record.backend_info.get("warm")
    warm.pool().close()


def test_the_pool_is_on_unless_turned_off(monkeypatch):
    """On by default (README, "Warm starts"): only KFJUPYTER_WARM=0 turns it off."""
    from kfjupyter.runtime import warm

    for value in (None, "", "1", "yes"):
        if value is None:
            monkeypatch.delenv("KFJUPYTER_WARM", raising=False)
        else:
            monkeypatch.setenv("KFJUPYTER_WARM", value)
        assert warm.enabled() == sys.platform.startswith("linux")
    monkeypatch.setenv("KFJUPYTER_WARM", "0")
    assert not warm.enabled()


# -- import hints: a spare with the job's modules loaded ------------------------------------------------
#: a supervisor module for the spare tests: says what its process has loaded, and whose fork it is
FAKE_SUPERVISOR = """
import json, os, sys, threading
def main():
    out = {"ppid": os.getppid(), "hinted": "hinted_mod" in sys.modules, "thready": "thready_mod" in sys.modules,
           "threads": threading.active_count()}
    with open(os.path.join(sys.argv[1], "seen.json"), "w") as fh:
        json.dump(out, fh)
if __name__ == "__main__":
    main()
"""


def _spare_job(tmp_path, hinted: list[str], modules: dict[str, str]) -> tuple[dict, int, "warm.WarmParent"]:
    """A warm parent told to import ``hinted`` (modules written to a folder of their own),
    and the job it serves: what the job's supervisor saw, and the keeper's pid."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "fake_supervisor.py").write_text(FAKE_SUPERVISOR)
    for name, source in modules.items():
        (lib / f"{name}.py").write_text(source)
    hints = tmp_path / warm.HINTS
    hints.write_text(json.dumps(hinted))
    env = {**os.environ, "PYTHONPATH": str(lib)}
    parent = warm.WarmParent(warm.startup_env(env), ("json",), hints=hints)
    assert parent.is_ready(60), parent.why
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    pid = parent.fork("fake_supervisor", job_dir, env)
    assert pid
    wait_for(lambda: (job_dir / "seen.json").exists(), timeout=60)
    return json.loads((job_dir / "seen.json").read_text()), pid, parent


def test_a_hinted_module_is_loaded_in_the_spare_the_next_job_starts_from(tmp_path):
    marker = tmp_path / "imported-by"
    seen, pid, parent = _spare_job(tmp_path, ["hinted_mod", "no_such_hinted_module"], {
        "hinted_mod": f"import os\nopen({str(marker)!r}, 'a').write(str(os.getpid()) + '\\n')\n",
    })
    try:
        # the job's keeper is the spare that imported the hint, before the job came
        assert marker.read_text().split() == [str(pid)]
        assert seen == {"ppid": pid, "hinted": True, "thready": False, "threads": 1}
        assert parent.proc.poll() is None and parent.is_ready()  # the warm parent itself imported nothing
    finally:
        parent.close()


def test_a_hinted_module_that_starts_a_thread_leaves_the_job_a_cold_start(tmp_path):
    seen, pid, parent = _spare_job(tmp_path, ["thready_mod"], {
        "thready_mod": "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
    })
    try:
        # the spare did not fork with a thread: it became a fresh keeper (the same pid), the job a cold one
        assert seen == {"ppid": pid, "hinted": False, "thready": False, "threads": 1}
        assert parent.is_ready()  # and the pool is still usable
        job_dir = tmp_path / "job2"
        job_dir.mkdir()
        assert parent.fork("fake_supervisor", job_dir, {**os.environ, "PYTHONPATH": str(tmp_path / "lib")})
        wait_for(lambda: (job_dir / "seen.json").exists(), timeout=60)
    finally:
        parent.close()
