"""Benchmark: ``kfjupyter.batch_predict`` with 2 workers against the model's own ``predict``
in one process, on the same rows, side by side.

A CPU-bound model (a 200-tree random forest, predicting single-threaded: ``n_jobs=1``,
BLAS/OpenMP at one thread) is registered, and the rows are written to a Parquet file. Each
round times, in turn (the order flips every round, so a loaded machine's drift falls on
both alike):

* ``predict``: ``model.predict(X)`` in this process (the rows already in memory);
* ``batch``: ``batch_predict(ref, path, workers=2)`` from the call to the job's end: the
  workers' start, the model's load, reading the input, predicting, and writing the output
  beside the input (everything a user waits for). kfjupyter is measured warm, as a user's
  second batch job runs: a first, untimed job (20,000 rows) starts the warm pool
  (``kfjupyter/runtime/warm.py``: the supervisor and the workers' host are forks of a
  process with the model's library, pandas and pyarrow imported); its time is ``cold_s``.
  ``KFJUPYTER_WARM=0`` measures it cold throughout.

* ``ceiling``, the control: the machine's own parallelism now: ``workers`` plain processes
  each predicting its share of the rows (timed inside them, without start-up or I/O); on a
  shared, loaded machine this says how much two processes can gain at all;
* ``sharded``, a second control: ``model.predict`` in this process over the same shards as
  ``batch_predict`` cuts (one call per shard, one after another). A forest predicts a
  shard's rows faster per row than a million at once (its per-tree buffers stay small), so
  this is the one-process time of batch_predict's own work: ``predict_sharded_s / batch_s``
  is the gain of its workers alone.

Prints the rounds, then as its last line one JSON object:
``{"ratio": predict_s / batch_s (median of the rounds, the rows/s of batch_predict over
predict's), "rows_per_s": rows / batch_s, "control_ratio" (= "parallel_ceiling"):
predict_s / ceiling_s, "shard_ratio": predict_sharded_s / batch_s, …}``.

    .venv/bin/python bench/batch.py [--rows 1000000] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: a control process: the model's predict on its share of the rows, single-threaded
CONTROL = """
import pickle, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
model = pickle.load(open(sys.argv[1], "rb"))
X = np.load(sys.argv[2], mmap_mode="r")
part = int(sys.argv[3]); parts = int(sys.argv[4])
rows = np.array(X[part * len(X) // parts:(part + 1) * len(X) // parts])
with threadpool_limits(1):
    t0 = time.perf_counter()
    model.predict(rows)
print(time.perf_counter() - t0)
"""


def ceiling(tmp: Path, workers: int) -> float:
    """Seconds the slowest of ``workers`` processes takes to predict its share (in parallel)."""
    procs = [subprocess.Popen([sys.executable, "-c", CONTROL, str(tmp / "model.pkl"), str(tmp / "rows.npy"), str(i), str(workers)],
                              stdout=subprocess.PIPE, text=True) for i in range(workers)]  # fmt: skip
    return max(float(p.communicate()[0].strip()) for p in procs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trees", type=int, default=200)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kf-bench-batch-"))
    os.environ["KFJUPYTER_HOME"] = str(tmp / "home")
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from threadpoolctl import threadpool_limits

    import kfjupyter

    X_train, y_train = make_classification(n_samples=5000, n_features=16, n_informative=8, random_state=0)
    model = RandomForestClassifier(n_estimators=args.trees, max_depth=14, n_jobs=1, random_state=0).fit(X_train, y_train)
    version = kfjupyter.register_model("forest", model, framework="sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, 16))
    path = tmp / "rows.parquet"
    pd.DataFrame(X, columns=[f"f{i}" for i in range(16)]).to_parquet(path, index=False)
    import pickle

    np.save(tmp / "rows.npy", X)
    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    print(f"{args.rows} rows, {args.trees} trees; batch_predict with {args.workers} workers vs predict in one process", flush=True)

    from kfjupyter.runtime import warm
    from kfjupyter.serving.batch import MIN_SHARD_ROWS, SHARDS_PER_WORKER

    # a first, untimed job starts the warm pool (kfjupyter/runtime/warm.py): a user's second
    # batch job and later ones start warm; its time is reported as cold_s
    small = tmp / "warm-up.parquet"
    pd.DataFrame(X[:20_000], columns=[f"f{i}" for i in range(16)]).to_parquet(small, index=False)
    t0 = time.perf_counter()
    kfjupyter.batch_predict(version.ref, small, workers=args.workers, wait=True, timeout=600)
    cold_s = time.perf_counter() - t0
    print(f"first job (cold, 20000 rows; starts the warm pool): {cold_s:.2f} s", flush=True)

    shard_rows = max(MIN_SHARD_ROWS, -(-args.rows // (args.workers * SHARDS_PER_WORKER)))  # batch_predict's default
    times = {"predict": [], "batch": [], "ceiling": [], "sharded": []}
    expected = None
    for r in range(args.rounds):
        for what in ("predict", "batch", "sharded") if r % 2 == 0 else ("batch", "predict", "sharded"):
            if what == "batch":
                warm.pool().wait_ready(120)  # the warm parent has done its imports (not timed)
            t0 = time.perf_counter()
            if what == "predict":
                with threadpool_limits(1):
                    expected = model.predict(X)
            elif what == "sharded":
                with threadpool_limits(1):
                    sharded = np.concatenate([model.predict(X[i:i + shard_rows]) for i in range(0, args.rows, shard_rows)])
            else:
                job = kfjupyter.batch_predict(version.ref, path, workers=args.workers, wait=True, timeout=3600)
            times[what].append(time.perf_counter() - t0)
        times["ceiling"].append(ceiling(tmp, args.workers))
        got = pd.read_parquet(job.output, columns=["prediction"])["prediction"].to_numpy()
        assert np.array_equal(got, expected), "batch_predict's output differs from predict's"
        assert np.array_equal(sharded, expected)
        print(f"round {r + 1}/{args.rounds}: predict {times['predict'][-1]:.2f} s, batch_predict {times['batch'][-1]:.2f} s, "
              f"{args.workers} plain processes {times['ceiling'][-1]:.2f} s, predict by shard {times['sharded'][-1]:.2f} s, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    predict_s, batch_s = statistics.median(times["predict"]), statistics.median(times["batch"])
    ceiling_s, sharded_s = statistics.median(times["ceiling"]), statistics.median(times["sharded"])
    print(json.dumps({"parallel_ceiling": round(predict_s / ceiling_s, 3), "control_ratio": round(predict_s / ceiling_s, 3),
                      "ceiling_s": round(ceiling_s, 3), "predict_sharded_s": round(sharded_s, 3),
                      "shard_ratio": round(sharded_s / batch_s, 3), "shard_rows": shard_rows,
                      "predict_s": round(predict_s, 3), "batch_s": round(batch_s, 3), "predict_rows_per_s": round(args.rows / predict_s, 1),
                      "rows": args.rows, "workers": args.workers, "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
                      "cold_s": round(cold_s, 3), "warm": warm.enabled(),
                      "ratio": round(predict_s / batch_s, 3), "rows_per_s": round(args.rows / batch_s, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
