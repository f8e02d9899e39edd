"""Experiment tracking's cost, side by side in one invocation.

1. ``kfjupyter.report`` in a 2-rank job, 10,000 metric points in all (5,000 a rank), with
   tracking to a real ``mlflow server`` (SQLite, loopback) on and off: the time the ranks
   spend in ``report`` (the training loop never waits for the network: the job's tracker
   sends from the supervisor), and that every point reached the server.
2. The same 10,000 points from 2 processes through the ``mlflow`` client's own
   ``log_metric`` on the same server (what a loop that logs to MLflow itself waits for).
3. ``kfjupyter.runs()`` over a workspace of 10,000 runs (filter + order_by): p95.

Prints a table, then as its last line one JSON object:
``{"report_ratio": on ÷ off, "mlflow_ratio": on ÷ plain mlflow client, "runs_p95_ms": …, …}``

    python bench/tracking.py [--points 10000] [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kfjupyter.runtime.processes import free_port

RANK_PROGRAM = """
import time
t0 = time.perf_counter()
for step in range(points):
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
elapsed = time.perf_counter() - t0
import os
(kfjupyter.output_dir() / f"report_s-{os.environ['RANK']}").write_text(repr(elapsed))
"""

MLFLOW_PROGRAM = """
import sys, time
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
run_id, points, rank = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
key = "loss" if rank == 0 else f"rank-{rank}/loss"
t0 = time.perf_counter()
for step in range(points):
    client.log_metric(run_id, key, 1.0 / (step + 1), step=step)
print(time.perf_counter() - t0)
"""


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
         f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(folder / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=1)
            return proc, uri
        except OSError:
            time.sleep(0.3)
    raise SystemExit("mlflow server did not start: " + (folder / "server.log").read_text()[-2000:])


def report_job(points_per_rank: int, uri: str | None, experiment: str) -> tuple[float, str]:
    """Seconds the ranks spent in report (the slower rank), and the job id."""
    import kfjupyter

    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    else:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    job = kfjupyter.train(RANK_PROGRAM, workers=2, name="bench", user_ns={"points": points_per_rank},
                          experiment=experiment).wait()  # fmt: skip
    return max(float(job.outputs[f"report_s-{r}"].read_text()) for r in (0, 1)), job.id


def mlflow_points(uri: str, experiment: str, job_id: str, timeout: float = 120) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id], f"tags.`kfjupyter.run_id` = '{job_id}'") if exp else []
        if runs and runs[0].info.status != "RUNNING":
            rid = runs[0].info.run_id
            count = len(client.get_metric_history(rid, "loss")) + len(client.get_metric_history(rid, "rank-1/loss"))
            break
        time.sleep(0.5)
    return count


def plain_mlflow(uri: str, points_per_rank: int) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment(f"plain-{time.time_ns()}"))
    procs = [subprocess.Popen([sys.executable, "-c", MLFLOW_PROGRAM, uri, run.info.run_id, str(points_per_rank), str(r)],
                              stdout=subprocess.PIPE, text=True) for r in (0, 1)]  # fmt: skip
    return max(float(p.communicate()[0].strip().splitlines()[-1]) for p in procs)


def runs_p95(count: int, repeat: int = 20) -> tuple[float, int]:
    """p95 of kfjupyter.runs(experiment=…, filter=…, order_by=…) over ``count`` runs (ms)."""
    import kfjupyter
    from kfjupyter.jobs import new_run
    from kfjupyter.store.models import JobRecord
    from kfjupyter.store.workspace import get_workspace

    ws = get_workspace()
    jobs, runs = [], []
    for i in range(count):
        jid = f"scale-{i:06d}"
        jobs.append(JobRecord(id=jid, name="scale", kind="train", backend="local", status="Succeeded", workers=2,
                              spec={"name": "scale", "workers": 2, "gpus": 0}, backend_info={}))  # fmt: skip
        run = new_run(jid, None, "scale", {"lr": 10 ** -(i % 4), "epochs": 10 + i % 7}, {"team": "a" if i % 2 else "b"})
        run.metrics = {"loss": (i % 1000) / 1000, "acc": 1 - (i % 1000) / 1000}
        runs.append(run)
    with ws.session() as s, s.begin():
        s.add_all(jobs)
        s.add_all(runs)
    times, found = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        frame = kfjupyter.runs(experiment="scale", filter="metrics.loss < 0.5 and params.lr < 0.5",
                               order_by=["metrics.loss ASC"])  # fmt: skip
        times.append((time.perf_counter() - t0) * 1000)
        found = len(frame)
    times.sort()
    return times[max(0, int(round(0.95 * len(times))) - 1)], found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000, help="metric points in all, from 2 ranks")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the workspace for runs()")
    args = parser.parse_args()
    per_rank = args.points // 2
    with tempfile.TemporaryDirectory(prefix="kf-bench-tracking-") as tmp:
        tmp_path = Path(tmp)
        os.environ["KFJUPYTER_HOME"] = str(tmp_path / "home")
        (tmp_path / "mlflow").mkdir()
        server, uri = start_server(tmp_path / "mlflow")
        try:
            off_s, _ = report_job(per_rank, None, "bench-off")
            on_s, job_id = report_job(per_rank, uri, "bench-on")
            arrived = mlflow_points(uri, "bench-on", job_id)
            plain_s = plain_mlflow(uri, per_rank)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        os.environ["KFJUPYTER_HOME"] = str(tmp_path / "scale")
        p95, found = runs_p95(args.runs)
    result = {
        "report_ratio": round(on_s / off_s, 3), "mlflow_ratio": round(on_s / plain_s, 4),
        "runs_p95_ms": round(p95, 1), "report_on_s": round(on_s, 4), "report_off_s": round(off_s, 4),
        "mlflow_log_metric_s": round(plain_s, 3), "points": per_rank * 2, "points_in_mlflow": arrived,
        "runs": args.runs, "runs_matched": found,
    }  # fmt: skip
    print(f"{'report, tracking off':32} {off_s:10.4f} s  ({per_rank * 2} points, 2 ranks)")
    print(f"{'report, tracking on (MLflow)':32} {on_s:10.4f} s  ({arrived} points reached the server)")
    print(f"{'mlflow client log_metric':32} {plain_s:10.4f} s")
    print(f"{'kfjupyter.runs() p95':32} {p95:10.1f} ms ({args.runs} runs, {found} matched)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
