"""Warm kernels (kfjupyter/notebook_runs/kernels.py): a run on a pooled kernel is the run
a cold kernel gives, one kernel serves one run, cancel stops it, and no kernel outlives the
process that owns the pool.

Every run starts or takes a real kernel, and papermill runs for real.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import kfjupyter
from kfjupyter import status as st
from kfjupyter.notebook_runs import kernels, run_notebook

from conftest import wait_for

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(os.name != "posix", reason="warm kernels: POSIX only")]  # fmt: skip

RUN_TIMEOUT = 150
WARM_LINE = "(a warm kernel, from the pool)"

#: what a run's kernel sees, printed as one JSON line by the notebook's second cell
PROBE = r"""
import json, os, signal, sys, threading
_umask = os.umask(0); os.umask(_umask)
_seen = {
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "path": sys.path,
    "argv": [sys.argv[0], sys.argv[1:2]],
    "executable": sys.executable,
    "umask": _umask,
    "names": sorted(n for n in globals() if not n.startswith("_")),
    "history": len(In),
    "signals": {s: str(signal.getsignal(getattr(signal, s))) for s in ("SIGINT", "SIGTERM", "SIGCHLD", "SIGPIPE", "SIGHUP")},
    "own_session": os.getsid(0) == os.getpid() == os.getpgid(0),
    "stdin": os.readlink("/proc/self/fd/0").split(":")[0] if os.path.exists("/proc/self/fd/0") else None,
    "lr": lr,
    "pid": os.getpid(),
}
import kfjupyter
kfjupyter.report(step=0, score=lr * 2)
print(json.dumps(_seen))
"""


def probe_notebook(path: Path, *more: str) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell("lr = 0.1\nt = 0", metadata={"tags": ["parameters"]}), new_code_cell(PROBE)]
    nb.cells += [new_code_cell(c) for c in more]
    nbformat.write(nb, str(path))
    return path


def warm(run) -> bool:
    return WARM_LINE in run.logs()


def seen(run) -> dict:
    probe = next(c for c in run.read_output().cells if "_seen = {" in c.source)
    text = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
    return json.loads(text.strip().splitlines()[-1])


def normalized(run, what: dict) -> dict:
    """What a run saw, less what is its own: its job id and folder, its kernel's pid."""
    text = json.dumps({k: v for k, v in what.items() if k != "pid"})
    text = text.replace(str(run.job_dir), "JOB_DIR").replace(run.id, "JOB_ID")
    out = json.loads(text)
    parent = out["env"].pop("JPY_PARENT_PID", None)
    out["env"]["JPY_PARENT_PID"] = "PID" if parent and parent.isdigit() else parent
    return out


def ready(timeout: float = 120) -> None:
    assert kernels.pool().wait_ready(timeout)


def pooled_kernels() -> list[int]:
    """The pool process and its kernels, of this process's pool."""
    return kernels.pool().pids()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    """Each test owns a pool of its own, as a fresh process has it; closing it leaves
    nothing of it running."""
    kernels.pool().close()
    for name, value in (("keep", None), ("_failures", 0), ("_warned", False)):
        monkeypatch.setattr(kernels.pool(), name, value)
    yield
    pids = pooled_kernels()
    kernels.pool().close()
    wait_for(lambda: all(gone(p) for p in pids), timeout=20)


@pytest.fixture(autouse=True)
def warm_kernels_as_users_have_them(monkeypatch):
    """The pool as a user has it (the suite's conftest keeps no kernels ready elsewhere)."""
    monkeypatch.delenv("KFJUPYTER_WARM_KERNELS_SIZE", raising=False)


def test_a_warm_kernel_run_sees_exactly_what_a_cold_run_sees(workdir):
    nb = probe_notebook(workdir / "probe.ipynb", "print('done', lr)", "import os\nos.system('echo written-to-fd-1')")
    cold = run_notebook(nb, {"lr": 0.5}).wait()  # the first of its set: cold, the pool fills after it
    assert not warm(cold)
    ready()
    hot = run_notebook(nb, {"lr": 0.5}).wait()
    assert warm(hot), hot.logs()
    a, b = seen(cold), seen(hot)
    assert a["cwd"] == b["cwd"] == str(workdir)
    assert b["env"]["KFJUPYTER_JOB_ID"] == hot.id and b["env"]["KFJUPYTER_OUTPUT_DIR"] == str(hot.job_dir / "outputs")
    assert normalized(cold, a) == normalized(hot, b)  # env, sys.path, argv, names, history, signals, umask …
    assert b["names"] == a["names"] and "_" not in b["names"] and b["history"] == a["history"]  # the hand-over left nothing
    assert b["umask"] == 0o077 and b["own_session"] and b["lr"] == 0.5
    # the output notebooks: the same but for timings and paths
    def cells(run):
        return [(c.source, c.execution_count, c.get("outputs")) for c in run.read_output().cells if "_seen = {" not in c.source]
    assert cells(cold) == cells(hot)
    meta = [run.read_output().metadata for run in (cold, hot)]
    assert meta[0]["kernelspec"] == meta[1]["kernelspec"] and meta[0]["language_info"] == meta[1]["language_info"]
    assert meta[0]["papermill"]["parameters"] == meta[1]["papermill"]["parameters"] == {"lr": 0.5}
    assert hot.last_metrics() == cold.last_metrics() == {"score": 1.0}
    # the kernel's own output (ipykernel echoes file-descriptor writes) lands where a cold kernel's does
    for run in (cold, hot):
        assert "written-to-fd-1" in (run.job_dir / "supervisor.log").read_text()


def test_a_kernel_serves_one_run_and_is_gone_after_it(workdir):
    nb = probe_notebook(workdir / "probe.ipynb")
    first = run_notebook(nb).wait()
    ready()
    pids = []
    for lr in (0.2, 0.3):
        run = run_notebook(nb, {"lr": lr}).wait()
        assert warm(run)
        pids.append(seen(run)["pid"])
        assert gone(pids[-1])  # shut down with its run, before its end was recorded
        ready()
    assert len({seen(first)["pid"], *pids}) == 3
    # a sweep plans its kernels: every run warm, each on a kernel of its own; its supervisor's
    # pool (and every kernel it started) ends with the sweep
    sweep = run_notebook(nb, sweep={"lr": [0.1, 0.2, 0.3]}, max_parallel=2)
    keeper = psutil.Process(sweep.record.backend_info["pid"])
    pool_process = wait_for(lambda: next((p for p in keeper.children(recursive=True)
                                          if "notebook_runs.kernels" in " ".join(p.cmdline())), None), timeout=60)  # fmt: skip
    started = set()
    while sweep.refresh().status not in st.TERMINAL:
        try:
            started |= {p.pid for p in pool_process.children()}
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.1)
    assert sweep.status == st.SUCCEEDED and started
    wait_for(lambda: gone(pool_process.pid) and all(gone(p) for p in started), timeout=20)
    runs = sweep.runs
    assert all(warm(r) for r in runs), [r.logs() for r in runs]
    kernel_pids = [seen(r)["pid"] for r in runs]
    assert len(set(kernel_pids)) == 3 and all(gone(p) for p in kernel_pids)
    assert list(sweep.results()["score"]) == [0.2, 0.4, 0.6]


def test_a_kernel_that_could_differ_is_not_used(workdir, monkeypatch, tmp_path):
    nb = probe_notebook(workdir / "probe.ipynb")
    run_notebook(nb).wait()
    ready()
    # a kernel that died after a run took it: the run checks, and starts its own
    request = kernels.run_request("python3", str(workdir), dict(os.environ), workdir / "taken.log")
    handle = kernels.pool().take(request)
    assert handle is not None
    os.killpg(handle["pid"], signal.SIGKILL)
    wait_for(lambda: gone(handle["pid"]), timeout=10)
    run_env = {**os.environ, **kernels.RUN_ENV}
    umask = os.umask(0o077)  # a run's supervisor's
    why: list[str] = []
    try:
        assert kernels.attach(handle, kernel="python3", cwd=str(workdir), env=run_env, timeout=10, why=why) is None
    finally:
        os.umask(umask)
    assert why == ["it is gone"]
    # one for another environment (or kernelspec, or folder) is stopped, not used
    kernels.pool().started(request, handle, {"pid": None, "create_time": None})  # refilled at once
    ready()
    handle = kernels.pool().take(request)
    why = []
    umask = os.umask(0o077)
    try:
        assert kernels.attach(handle, kernel="python3", cwd=str(workdir), env={**run_env, "X": "1"}, timeout=10,
                              why=why) is None  # fmt: skip
    finally:
        os.umask(umask)
    assert why == ["another environment"]
    wait_for(lambda: gone(handle["pid"]), timeout=10)
    kernels.pool().started(request, None, {"pid": None, "create_time": None})
    ready()
    # a run in another environment, or another folder, is a set of its own: started cold
    monkeypatch.setenv("KFJ_SOMETHING_NEW", "1")
    other = run_notebook(nb).wait()
    assert not warm(other) and seen(other)["env"]["KFJ_SOMETHING_NEW"] == "1"
    monkeypatch.delenv("KFJ_SOMETHING_NEW")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = run_notebook(nb, cwd=elsewhere).wait()
    assert not warm(moved) and seen(moved)["cwd"] == str(elsewhere)


def test_cancel_stops_a_warm_kernel(workdir):
    nb = probe_notebook(workdir / "slow.ipynb", "import time\nprint('sleeping', flush=True)\ntime.sleep(t)")
    run_notebook(nb, {"t": 0}).wait()
    ready()
    run = run_notebook(nb, {"t": 120})
    wait_for(lambda: "sleeping" in run.logs(), timeout=RUN_TIMEOUT)
    assert warm(run)
    pid = json.loads(next(line for line in run.logs().splitlines() if line.startswith("{")))["pid"]
    assert not gone(pid)
    run.cancel()
    assert run.status == st.CANCELLED
    wait_for(lambda: gone(pid), timeout=10)
    assert run.output_notebook.exists()  # saved as far as it went, as a cold run's is


def test_kfjupyter_run_in_a_process_keeps_no_kernel_and_leaves_the_pool_as_it_was(workdir, capsys):
    """``kfjupyter run`` keeps no kernel ready for a next run; called in a longer-lived
    process (a notebook, a test), that process's later runs are warm again."""
    from kfjupyter.cli import main

    nb = probe_notebook(workdir / "probe.ipynb")
    assert main(["run", str(nb), "-p", "lr", "0.2"]) == 0
    ready()
    assert kernels.pool().status()["ready"] == 0
    run_notebook(nb).wait()  # cold: the process's first own run; its set fills after it
    ready()
    assert warm(run_notebook(nb, {"lr": 0.3}).wait())


def test_the_off_switch_starts_nothing(workdir, monkeypatch):
    monkeypatch.setenv("KFJUPYTER_WARM_KERNELS", "0")
    nb = probe_notebook(workdir / "probe.ipynb")
    runs = [run_notebook(nb).wait() for _ in range(2)]
    assert not any(warm(r) for r in runs)
    assert pooled_kernels() == [] and kernels.pool().proc is None
    assert not kernels.enabled()


OWNER = """
import json, os, signal, sys, time
import kfjupyter
from kfjupyter.notebook_runs import kernels

nb, how = sys.argv[1], sys.argv[2]
kfjupyter.run_notebook(nb, {"t": 0}).wait()
assert kernels.pool().wait_ready(120)
status = kernels.pool().status()
run = kfjupyter.run_notebook(nb, {"t": 8})
deadline = time.monotonic() + 120
while "started" not in run.logs() and time.monotonic() < deadline:
    time.sleep(0.05)
after = kernels.pool().status()
print(json.dumps({"pool": kernels.pool().pids(), "ready": status["ready_pids"], "untaken": after["ready_pids"],
                  "taken": after["taken_pids"], "run": run.id, "warm": "(a warm kernel" in run.logs()}), flush=True)
if how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_no_kernel_outlives_its_owner_but_a_run_on_one_does(workspace, workdir, how):
    """The owner keeps two kernels ready; its run takes one and runs on after the owner
    has gone (exited, or killed outright); the kernel nobody took goes at once, and the
    pool process once the run's kernel has gone with its run."""
    nb = workdir / "wait.ipynb"
    body = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    body.cells = [new_code_cell("t = 0", metadata={"tags": ["parameters"]}),
                  new_code_cell("import time, os\ntime.sleep(t)\nprint('kernel', os.getpid())")]  # fmt: skip
    nbformat.write(body, str(nb))
    env = {**os.environ, "KFJUPYTER_HOME": str(workspace), "KFJUPYTER_WARM_KERNELS_SIZE": "2"}
    owner = subprocess.run([sys.executable, "-c", OWNER, str(nb), how], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT)  # fmt: skip
    assert owner.returncode == (-signal.SIGKILL if how == "kill" else 0), owner.stderr
    info = json.loads(owner.stdout.strip().splitlines()[-1])
    assert info["warm"]
    daemon, untaken, taken = info["pool"][0], info["untaken"], info["taken"]
    assert len(info["ready"]) == 2 and len(taken) == 1 and len(untaken) == 1 and set(info["ready"]) == {*taken, *untaken}
    wait_for(lambda: all(gone(p) for p in untaken), timeout=10)  # nobody will use it: gone with its owner
    assert not gone(taken[0]) and not gone(daemon)  # the run goes on, and what holds its kernel
    run = kfjupyter.jobs.get(info["run"])
    run.wait(timeout=RUN_TIMEOUT)
    assert run.status == st.SUCCEEDED and f"kernel {taken[0]}" in run.logs()
    wait_for(lambda: gone(taken[0]) and gone(daemon), timeout=20)


def test_a_warm_kernel_that_dies_fails_its_run_like_a_cold_one(workdir):
    nb = probe_notebook(workdir / "dies.ipynb", "print('alive', flush=True)", "import os\nos._exit(3)")
    cold = run_notebook(nb).wait(raise_on_failure=False)
    ready()
    hot = run_notebook(nb).wait(raise_on_failure=False)
    assert warm(hot)
    assert cold.status == hot.status == st.FAILED
    assert cold.error == hot.error and re.fullmatch(r"the kernel died while running cell (\d)/\1: import os", hot.error)
    assert "alive" in hot.logs()
