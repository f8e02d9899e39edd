"""Overhead of ``kfjupyter.train`` against plain ``torchrun``, side by side.

The same 2-rank DDP training of a small MLP (gloo, CPU) runs through
``python -m torch.distributed.run`` and through ``kfjupyter.train`` on the local
backend, alternately, in this one invocation. For each it measures the wall time from
submission to the end of the job, and the time from submission to the first line the
program prints (it prints one before importing torch).

kfjupyter is measured warm (its warm pool ready, see ``kfjupyter/runtime/warm.py``): a
first, untimed job starts the pool (its time is reported as ``cold_s``), and before each
timed run of either tool the pool has finished starting, so nothing of it runs beside
the measured job. The pool is on by default (README, "Warm starts");
``KFJUPYTER_WARM=0`` measures kfjupyter cold throughout.

Prints a table, then as its last line one JSON object:
``{"ratio": kfjupyter_s / torchrun_s, "first_log_s": …, "kfjupyter_s": …, "torchrun_s": …, "cold_s": …, …}``

    python bench/train_overhead.py [--steps 3000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kfjupyter.runtime.processes import free_port

PROGRAM = """
import os
print(f"rank {os.environ['RANK']} starting", flush=True)
import torch, torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(
    torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
gen = torch.Generator().manual_seed(rank)
for step in range(STEPS):
    x = torch.randn(64, 64, generator=gen)
    loss = (model(x) - x[:, :1]).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 500 == 0 and rank == 0:
        print(f"step {step} loss {loss.item():.4f}", flush=True)
dist.destroy_process_group()
"""


def run_torchrun(source: str, workdir: Path) -> tuple[float, float]:
    script = workdir / "train.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=workdir,
    )
    first, output = None, []
    for line in proc.stdout:
        output.append(line)
        if first is None and "starting" in line:
            first = time.monotonic() - start
    if proc.wait() != 0:
        raise SystemExit(f"torchrun failed with code {proc.returncode}:\n{''.join(output[-30:])}")
    return time.monotonic() - start, first


def run_kfjupyter(source: str, workdir: Path) -> tuple[float, float]:
    import kfjupyter

    start = time.monotonic()
    job = kfjupyter.train(source, workers=2, name="bench", user_ns={}, history=[], workdir=str(workdir))
    first: list[float] = []

    def watch() -> None:
        for line in job.logs(rank=0, follow=True):
            if "starting" in line:
                first.append(time.monotonic() - start)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    job.wait(poll=0.02)
    took = time.monotonic() - start
    watcher.join(timeout=5)
    if job.status != "Succeeded":
        raise SystemExit(f"kfjupyter job {job.id} {job.status}:\n{job.error}")
    return took, first[0] if first else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps (3000 ≈ 20 s on 2 cores)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating")
    args = parser.parse_args()
    source = PROGRAM.replace("STEPS", str(args.steps))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("KFJUPYTER_HOME", str(Path(tmp) / "kfhome"))
        from kfjupyter.runtime import warm

        (Path(tmp) / "warm-up").mkdir()
        cold_s, _ = run_kfjupyter(source, Path(tmp) / "warm-up")  # starts the warm pool
        print(f"kfjupyter  first job (cold, starts the warm pool): {cold_s:.2f} s", flush=True)
        results: dict[str, list[tuple[float, float]]] = {"torchrun": [], "kfjupyter": []}
        for i in range(args.repeat):
            for name, run in (("torchrun", run_torchrun), ("kfjupyter", run_kfjupyter)):
                workdir = Path(tmp) / f"{name}-{i}"
                workdir.mkdir()
                warm.pool().wait_ready(120)
                wall, first = run(source, workdir)
                results[name].append((wall, first))
                print(f"{name:10s} run {i + 1}: {wall:7.2f} s total, first log line after {first:5.2f} s", flush=True)
    median = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    first = {k: statistics.median(f for _, f in v) for k, v in results.items()}
    figures = {
        "ratio": round(median["kfjupyter"] / median["torchrun"], 3),
        "first_log_s": round(first["kfjupyter"], 3),
        "kfjupyter_s": round(median["kfjupyter"], 3),
        "torchrun_s": round(median["torchrun"], 3),
        "torchrun_first_log_s": round(first["torchrun"], 3),
        "cold_s": round(cold_s, 3),
        "warm": warm.enabled(),
        "steps": args.steps,
        "repeat": args.repeat,
    }
    print(f"ratio kfjupyter/torchrun = {figures['ratio']} (target <= 0.3 for --steps 10, <= 1.0 long); "
          f"first log line {figures['first_log_s']} s (target <= 2 s)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
