"""Jobs outlive their starter: a real kernel restart, and the CLI re-attaching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from conftest import wait_for

pytestmark = pytest.mark.timeout(240)

CELL = """%%kf_train --workers 2 --name survivor --no-wait --out job
import time, torch.distributed as dist
dist.init_process_group()
print("rank", dist.get_rank(), "up", flush=True)
for i in range(steps):
    time.sleep(0.5)
    kfjupyter.report(step=i, value=float(i))
print("finished", flush=True)
dist.destroy_process_group()
"""


def execute(client, code: str, timeout: float = 120, messages: list | None = None) -> str:
    """Run ``code`` in the kernel; return its stdout; fail on an error."""
    msg_id = client.execute(code)
    out = []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if messages is not None:
            messages.append(msg)
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


LIVE_CELL = """%%kf_train --workers 2 --name widget
import time
for step in range(4):
    print("tick", step, flush=True)
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
    time.sleep(0.4)
"""


def test_the_notebook_shows_a_live_widget(workspace, workdir):
    env = {**os.environ, "KFJUPYTER_HOME": str(workspace)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(workdir), env=env)
    try:
        execute(kc, "%load_ext kfjupyter")
        messages: list = []
        execute(kc, LIVE_CELL, messages=messages)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert any("application/vnd.jupyter.widget-view+json" in m["content"]["data"] for m in shown)
    states = [m["content"]["data"].get("state", {}) for m in messages if m["msg_type"] == "comm_msg"]
    updates = [s.get("value", "") for s in states]
    # the metrics chart is an Output widget: the extension's MIME bundle, plain SVG beside it
    charts = [o["data"] for s in states for o in s.get("outputs", ())]
    headlines = [u for u in updates if "widget-" in u and "worker(s)" in u]
    # the status went live: Running while the cell waited, Succeeded at the end
    assert any("Running" in h for h in headlines) and "Succeeded" in headlines[-1]
    assert any("tick 3" in u for u in updates)  # a rank's log tail
    assert any("<polyline" in c["text/html"] and "loss 0.25" in c["text/html"] for c in charts)  # the fallback
    live = [c["application/vnd.kfjupyter.job+json"] for c in charts if "application/vnd.kfjupyter.job+json" in c]
    assert live and any(r.get("loss") == 0.25 for r in live[-1]["metrics"])  # what the extension draws


def test_kernel_restart_keeps_the_job_running_and_it_is_reattached(workspace, workdir):
    env = {**os.environ, "KFJUPYTER_HOME": str(workspace)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(workdir), env=env)
    try:
        execute(kc, "%load_ext kfjupyter\nsteps = 12")
        execute(kc, CELL)
        job_id = execute(kc, "print(job.id)").strip()
        execute(kc, "import time\nwhile 'up' not in job.logs(rank=1): time.sleep(0.1)")

        km.restart_kernel(now=True)  # kills the kernel process
        kc.wait_for_ready(timeout=60)

        out = execute(kc, f"import kfjupyter\nj = kfjupyter.jobs.get({job_id!r})\nprint(j.status)")
        assert out.strip() == "Running"
        out = execute(kc, "j.wait(timeout=90)\nprint(j.status, len(j.metrics(rank=0)))")
        assert out.split() == ["Succeeded", "12"]
        assert "finished" in execute(kc, "print(j.logs(rank=0))")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def kfjupyter_cli(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("kfjupyter")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=120, check=check)


def test_cli_lists_shows_follows_and_cancels(workspace, workdir):
    import kfjupyter

    env = {**os.environ, "KFJUPYTER_HOME": str(workspace)}
    quick = kfjupyter.train("print('hello from the cli test')", name="quick", user_ns={}).wait(timeout=60)
    slow = kfjupyter.train(
        "import time\nprint('slow started', flush=True)\ntime.sleep(120)", name="slow", user_ns={}
    )
    wait_for(lambda: "slow started" in slow.logs() and slow.status == "Running", timeout=30)

    listing = kfjupyter_cli("jobs", "list", env=env).stdout
    assert quick.id in listing and slow.id in listing
    assert "Succeeded" in listing and "Running" in listing

    shown = json.loads(kfjupyter_cli("jobs", "show", quick.id, env=env).stdout)
    assert shown["status"] == "Succeeded" and shown["workers"] == 1

    assert kfjupyter_cli("jobs", "logs", quick.id, env=env).stdout.strip() == "hello from the cli test"
    # follow returns once the job has ended, with everything it printed
    assert "hello from the cli test" in kfjupyter_cli("jobs", "logs", quick.id, "-f", env=env).stdout

    assert kfjupyter_cli("jobs", "cancel", slow.id, env=env).stdout.split() == [slow.id, "Cancelled"]
    assert slow.status == "Cancelled"

    missing = kfjupyter_cli("jobs", "show", "no-such-job", env=env, check=False)
    assert missing.returncode == 1 and "no job 'no-such-job'" in missing.stderr
