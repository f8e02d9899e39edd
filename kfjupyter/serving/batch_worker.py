"""Batch inference workers.

Local (:mod:`.batch_run` starts it): ``python -m kfjupyter.serving.batch_worker JOB_DIR
--workers N``, the *host*. It loads the model version of ``JOB_DIR/batch.json`` and reads
the input files (:func:`~.batchio.preload`, within a memory budget) once, at the same time
(the model in this thread, the files in another: decoding releases the GIL), then forks
``N`` workers that share both (a fork's memory is its parent's until written): the model's
import and load and the input's decoding are paid once, not once per worker. Each worker
(its output in
``logs/worker-I.log``) takes the shards in turn: a shard with predictions already is done;
one claimed by another worker (an exclusive ``.claim`` file) is theirs; else it claims it,
predicts its rows and writes the predictions atomically (``shards/NNNNNN.npy``), with a
line in the shard's log. When a worker fails, the host stops the others and exits with
:data:`FAILED_WORKER_EXIT` + the worker's number. Where a process cannot fork (not Linux),
the host starts ``python -m kfjupyter.serving.batch_worker JOB_DIR I`` for each worker,
which loads the model itself.

Kubernetes (a pod of the batch Job, :mod:`.batch_kubernetes`): ``python -m
kfjupyter.serving.batch_worker --indexed``: the plan is ``$KFJUPYTER_BATCH_PLAN``, the
shard is the one of the Job's completion index (``$JOB_COMPLETION_INDEX``), the input,
output and shard files are on the volume mounted at ``$KFJUPYTER_BATCH_VOLUME``; the pod
that finds every shard done after its own writes the outputs (one merger per run: an
exclusive claim).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

#: the host's exit code when worker I failed: this + I (the supervisor reads that worker's log)
FAILED_WORKER_EXIT = 64


def load_model(version: dict, folder: Path, method: str):
    """``(predict, named)``: the version's model call (see :func:`.calls.model_call`), and
    whether it takes a DataFrame (a model fitted on one names its features)."""
    from ..registry import formats
    from .calls import model_call

    model = formats.load(Path(folder), version.get("main_file"), version["format"], version.get("properties") or {})
    predict, _ = model_call(model, version["format"], method or "predict")
    return predict, getattr(model, "feature_names_in_", None) is not None


def predict_rows(predict, named: bool, file: Path, start: int, stop: int, columns: list[str] | None):
    """The predictions of rows ``start``…``stop - 1`` of ``file``, as a numpy array."""
    import numpy as np

    from . import batchio

    frame = batchio.read_rows(Path(file), start, stop, columns, keep=True)
    pred = np.asarray(predict(frame if named else frame.to_numpy()))
    if len(pred) != len(frame):
        raise ValueError(f"the model returned {len(pred)} predictions for {len(frame)} rows")
    return pred


def save(out: Path, pred) -> None:
    """Predictions written whole or not at all (a shard whose file exists is done)."""
    import numpy as np

    from . import batchio

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, pred)

    batchio.write_atomic(out, write)


def work(job_dir: Path, plan: dict, predict, named: bool, me: int) -> int:
    """One local worker's loop over the shards (see the module docstring); its exit code."""
    from . import batchio

    print(f"worker {me}: {plan['version']['ref']} loaded", flush=True)
    for shard in plan["shards"]:
        i = shard["index"]
        out = batchio.shard_output(job_dir, i)
        if out.exists():
            continue
        try:
            os.close(os.open(out.with_suffix(".claim"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue  # another worker's
        t0 = time.perf_counter()
        try:
            save(out, predict_rows(predict, named, Path(shard["file"]), shard["start"], shard["stop"], plan.get("columns")))
        except Exception:
            text = traceback.format_exc()
            with open(batchio.shard_log(job_dir, i), "a") as fh:
                fh.write(f"shard {i} failed on worker {me}:\n{text}")
            print(f"shard {i} (rows {shard['start']}–{shard['stop']} of {Path(shard['file']).name}) failed:\n{text}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return 1
        took = time.perf_counter() - t0
        line = f"shard {i}: rows {shard['start']}–{shard['stop']} of {Path(shard['file']).name} predicted in {took:.2f} s by worker {me}"
        with open(batchio.shard_log(job_dir, i), "a") as fh:
            fh.write(line + "\n")
        print(line, flush=True)
    return 0


def _plan(job_dir: Path) -> dict:
    return json.loads((job_dir / "batch.json").read_text())


def one(job_dir: Path, me: int) -> int:
    """A worker started on its own (where the host cannot fork): it loads the model itself."""
    plan = _plan(job_dir)
    predict, named = load_model(plan["version"], Path(plan["version"]["folder"]), plan.get("method"))
    return work(job_dir, plan, predict, named, me)


def can_fork() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def host(job_dir: Path, workers: int) -> int:
    """Load the model and the input once, then run ``workers`` workers (forks of this process)."""
    from ..runtime import processes
    from . import batchio

    if workers < 1:
        return 0  # every shard is done: nothing to load
    if not can_fork():  # each worker loads and reads for itself
        return _spawned(job_dir, workers)
    plan = _plan(job_dir)
    files = list(dict.fromkeys(Path(s["file"]) for s in plan["shards"]
                               if not batchio.shard_output(job_dir, s["index"]).exists()))  # fmt: skip
    t0 = time.perf_counter()
    read: dict = {}

    def preload() -> None:  # decoding releases the GIL: it runs beside the model's load
        try:
            read["files"] = batchio.preload(files, plan.get("columns"))
        except BaseException as exc:  # noqa: BLE001  (the workers read the files themselves)
            read["error"] = exc
        read["s"] = time.perf_counter() - t0

    reader = threading.Thread(target=preload, name="kfjupyter-batch-preload")
    reader.start()
    try:
        predict, named = load_model(plan["version"], Path(plan["version"]["folder"]), plan.get("method"))
        loaded = time.perf_counter() - t0
    finally:
        reader.join()
    shown = ", ".join(f.name for f in read.get("files", [])) or "none"
    print(f"host: {plan['version']['ref']} loaded in {loaded:.2f} s; input read in {read['s']:.2f} s ({shown})"
          + (f" (could not read ahead: {read['error']!r})" if "error" in read else ""), flush=True)  # fmt: skip

    def worker(me: int):
        def run() -> int:
            processes.default_signals()
            processes.die_with_parent()
            processes.child_io(batchio.worker_log(job_dir, me))
            return work(job_dir, plan, predict, named, me)

        return run

    children = {processes.fork_child(worker(i)).pid: i for i in range(workers)}
    return _wait(children)


def _spawned(job_dir: Path, workers: int) -> int:
    import subprocess

    from . import batchio

    children = {}
    for i in range(workers):
        with open(batchio.worker_log(job_dir, i), "ab", buffering=0) as out:
            proc = subprocess.Popen([sys.executable, "-m", "kfjupyter.serving.batch_worker", str(job_dir), str(i)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        children[proc.pid] = i
    return _wait(children)


def _wait(children: dict[int, int]) -> int:
    """Wait for the workers (pid → number); the first to fail stops the others."""
    left = dict(children)
    while left:
        pid, status = os.wait()
        me = left.pop(pid, None)
        if me is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            for other in left:
                try:
                    os.kill(other, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for other in list(left):
                try:
                    os.waitpid(other, 0)
                except ChildProcessError:
                    pass
            print(f"host: worker {me} failed (exit code {code}): the others stopped", flush=True)
            return FAILED_WORKER_EXIT + me
    return 0


# -- a pod of the Kubernetes batch Job ------------------------------------------------------------
def indexed() -> int:
    """The shard of this pod's completion index (see the module docstring), then the merge if
    it is the last one done."""
    from . import batchio

    plan = json.loads(Path(os.environ["KFJUPYTER_BATCH_PLAN"]).read_text())
    volume = Path(os.environ["KFJUPYTER_BATCH_VOLUME"])
    index = int(os.environ["JOB_COMPLETION_INDEX"])
    work_dir = volume / plan["work"]
    shards = [{**s, "file": str(volume / s["file"])} for s in plan["shards"]]
    shard = shards[plan["run_shards"][index]]
    i = shard["index"]
    out = batchio.shard_output(work_dir, i)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = Path(shard["file"]).name
    if out.exists():
        print(f"shard {i}: rows {shard['start']}–{shard['stop']} of {name} predicted already", flush=True)
    else:
        t0 = time.perf_counter()
        base = volume if plan["model_in"] == "volume" else Path(os.environ["KFJUPYTER_BATCH_PLAN"]).parent
        predict, named = load_model(plan["version"], base / plan["model_dir"], plan.get("method"))
        print(f"index {index}: {plan['version']['ref']} loaded in {time.perf_counter() - t0:.2f} s", flush=True)
        t0 = time.perf_counter()
        try:
            save(out, predict_rows(predict, named, Path(shard["file"]), shard["start"], shard["stop"], plan.get("columns")))
        except Exception:
            print(f"shard {i} (rows {shard['start']}–{shard['stop']} of {name}) failed:", file=sys.stderr, flush=True)
            raise
        print(f"shard {i}: rows {shard['start']}–{shard['stop']} of {name} predicted in {time.perf_counter() - t0:.2f} s "
              f"by index {index}", flush=True)  # fmt: skip
    if all(batchio.shard_output(work_dir, s["index"]).exists() for s in shards):
        claim = work_dir / f"merge-{plan['run']}.claim"
        try:
            os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return 0  # another pod of this run writes the outputs
        t0 = time.perf_counter()
        outputs = {str(volume / k): str(volume / v) for k, v in plan["outputs"].items()}
        batchio.merge(lambda n: batchio.shard_output(work_dir, n), {**plan, "shards": shards, "outputs": outputs},
                      plan["job"])  # fmt: skip
        print(f"every shard done: outputs written in {time.perf_counter() - t0:.2f} s: {', '.join(plan['outputs'].values())}",
              flush=True)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--indexed"]:
        sys.exit(indexed())
    job_dir = Path(args[0])
    if args[1:2] == ["--workers"]:
        sys.exit(host(job_dir, int(args[2])))
    sys.exit(one(job_dir, int(args[1])))


if __name__ == "__main__":
    main()
