"""The batch inference supervisor: ``python -m kfjupyter.serving.batch_run JOB_DIR``.

It writes the plan the workers read (``JOB_DIR/batch.json``: the model version and the
shards), forgets the claims of a run that was stopped, and starts the workers' host
(:mod:`~kfjupyter.serving.batch_worker`: one process, in a process group of its own, that
loads the model and reads the input once, then forks up to ``workers`` single-threaded
workers; its own lines go to the ``batch`` log). A worker claims a shard (an exclusive
``.claim`` file), predicts it and writes its predictions atomically, so a shard whose
predictions exist is done: a resumed job runs only the others. The supervisor watches the
shards (their child tasks, the ``batch`` log and metric channel, the job's message), fails
the job with the worker's error if one fails, and once every shard is done writes the
outputs beside the inputs.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .. import status as st
from ..runtime import processes, warm
from ..runtime.logs import read_lines
from ..runtime.supervisor import Supervisor
from . import batchio
from .batch import SHARD, host_env
from .batch_worker import FAILED_WORKER_EXIT
from .batchio import progress_log, progress_metrics, worker_log

POLL_S = 0.1
PLAN = "batch.json"


class BatchSupervisor(Supervisor):
    what = "the batch inference supervisor"

    def log(self, text: str) -> None:
        path = progress_log(self.job_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def before_threads(self) -> None:
        """Write the plan and start the workers' host, first thing (it takes a moment to
        load the model): a fork of this process when it may (a warm parent's fork, with
        the model's library loaded, and one thread), else ``python -m …batch_worker``."""
        spec = self.store.get_job(self.job_id).spec
        shards = spec["shards"]
        folder = self.job_dir / "shards"
        folder.mkdir(exist_ok=True)
        for claim in folder.glob("*.claim"):  # a stopped run's claims: nobody works on them now
            claim.unlink()
        (self.job_dir / PLAN).write_text(json.dumps({k: spec.get(k) for k in ("version", "shards", "columns", "method")}))
        done = {s["index"] for s in shards if batchio.shard_output(self.job_dir, s["index"]).exists()}
        env = host_env(dict(os.environ), self.launch["workers"], self.launch.get("threads"))
        count = min(self.launch["workers"], len(shards) - len(done))
        log = progress_log(self.job_dir)
        log.parent.mkdir(parents=True, exist_ok=True)  # the workers' logs are beside it
        if warm.can_fork(env):
            self.host = processes.fork_child(lambda: _host_child(self.job_dir, count, env, log), group=True)
            processes.register_group(self.job_dir, self.host.pid)
            self.forked = True
        else:
            self.host = processes.start_in_group([sys.executable, "-m", "kfjupyter.serving.batch_worker", str(self.job_dir),
                                                  "--workers", str(count)], log, self.job_dir, env=env)  # fmt: skip
            self.forked = False
        self.plan = (spec, shards, done, count)

    def run(self) -> None:
        spec, shards, done, count = self.plan
        host = self.host
        total_rows = sum(s["stop"] - s["start"] for s in shards)
        missing = len(shards) - len(done)
        if self.forked:
            self.log("the workers' host is a fork of the warm supervisor (the model's library loaded)")
        if done:
            self.log(f"resuming: {len(done)} of {len(shards)} shards already done, running the {missing} others")
        self.store.sync_children(self.job_id, [
            {"name": str(s["index"]), "kind": SHARD, "position": s["index"], "message": None,
             "status": st.SUCCEEDED if s["index"] in done else st.PENDING} for s in shards])  # fmt: skip
        self.set_status(st.RUNNING, message=f"{len(done)}/{len(shards)} shards")
        self.log(f"predicting {total_rows} rows in {len(shards)} shards on {count} worker(s) with {spec['version']['ref']}")
        started, seen, running = time.monotonic(), set(done), set()
        while True:
            if self.cancelled:
                self.stop()
                self._watch(shards, seen, running, started)  # what ended while the workers stopped
                self._end_children(shards, seen, st.CANCELLED, "cancelled by the user")
                self.log(f"cancelled: {len(seen)} of {len(shards)} shards done (resume runs the others)")
                self.set_status(st.CANCELLED, message=f"cancelled: {len(seen)}/{len(shards)} shards done")
                return
            rows = self._watch(shards, seen, running, started)
            code = host.poll()
            if code not in (None, 0):
                self.stop()
                self._watch(shards, seen, running, started)
                if code >= FAILED_WORKER_EXIT:  # a worker failed: its log says why
                    who = f"batch worker {code - FAILED_WORKER_EXIT}"
                    text = "\n".join(read_lines(worker_log(self.job_dir, code - FAILED_WORKER_EXIT), 30))
                else:  # the host itself (the model's load …)
                    who = "the batch workers' host"
                    text = "\n".join(read_lines(progress_log(self.job_dir), 30))
                # the shards being predicted failed with it; the others never ran
                self._end_children([s for s in shards if s["index"] in running], seen, st.FAILED, f"{who} failed")
                self._end_children(shards, seen | running, st.CANCELLED, f"not run: {who} failed")
                self.set_status(st.FAILED, error=f"{who} failed:\n{text}")
                return
            if code == 0:
                self._watch(shards, seen, running, started)
                if len(seen) < len(shards):
                    self.set_status(st.FAILED, error=f"the workers ended with {len(shards) - len(seen)} shard(s) not done")
                    return
                self.set_message(f"writing the output ({rows} rows)")
                self._merge(spec, shards)
                self.log(f"done: {rows} rows in {time.monotonic() - started:.1f} s; output: {', '.join(spec['outputs'].values())}")
                self.set_status(st.SUCCEEDED, message=f"{rows} rows predicted with {spec['version']['ref']}")
                return
            time.sleep(POLL_S)

    def _watch(self, shards: list[dict], seen: set, running: set, started: float) -> int:
        """Record newly done and newly claimed shards; the rows done."""
        new, claimed = [], []
        for s in shards:
            i = s["index"]
            if i in seen:
                continue
            if batchio.shard_output(self.job_dir, i).exists():
                seen.add(i)
                running.discard(i)
                new.append({"name": str(i), "kind": SHARD, "position": i, "status": st.SUCCEEDED})
            elif i not in running and batchio.shard_output(self.job_dir, i).with_suffix(".claim").exists():
                running.add(i)
                claimed.append({"name": str(i), "kind": SHARD, "position": i, "status": st.RUNNING})
        rows = sum(s["stop"] - s["start"] for s in shards if s["index"] in seen)
        if new or claimed:
            self.store.sync_children(self.job_id, new + claimed)
        if new:
            elapsed = max(time.monotonic() - started, 1e-6)
            record = {"time": time.time(), "step": len(seen), "shards": len(seen), "rows": rows,
                      "rows_per_s": round(rows / elapsed, 1)}  # fmt: skip
            path = progress_metrics(self.job_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            self.set_message(f"{len(seen)}/{len(shards)} shards, {rows} rows")
        return rows

    def _end_children(self, shards: list[dict], seen: set, status: str, why: str) -> None:
        rows = [{"name": str(s["index"]), "kind": SHARD, "position": s["index"], "status": status, "message": why}
                for s in shards if s["index"] not in seen]  # fmt: skip
        if rows:
            self.store.sync_children(self.job_id, rows)

    def _merge(self, spec: dict, shards: list[dict]) -> None:
        batchio.merge(lambda i: batchio.shard_output(self.job_dir, i), {**spec, "shards": shards}, self.job_id)


def _host_child(job_dir, workers: int, env: dict[str, str], log) -> int:
    """The forked host: a process group of its own, its output to the ``batch`` log, the
    host's environment; then :func:`~.batch_worker.host` as ``python -m …batch_worker``."""
    from ..store.workspace import forget_workspaces
    from .batch_worker import host

    processes.default_signals()
    processes.own_group()
    processes.die_with_parent()
    processes.child_io(log)
    os.environ.clear()
    os.environ.update(env)
    forget_workspaces()  # the store's connections are the supervisor's
    return host(job_dir, workers)


main = BatchSupervisor.main

if __name__ == "__main__":
    main()
