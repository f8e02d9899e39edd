"""Overhead of ``kfjupyter.tune`` against plain in-process Optuna, side by side.

The same study — ``--trials`` trials of an objective that sleeps ``--sleep`` seconds, two
at a time — runs through ``kfjupyter.tune`` on the local backend (detached supervisor,
two long-lived trial worker processes, a journal file storage) and through plain
``optuna.study.optimize(n_jobs=2)`` in this process (two threads, in-memory storage), in
this one invocation, with the same sampler. Wall time is measured from the call to the
end of the study (kfjupyter: submission, process start-up, and noticing the end).

Prints a table, then as its last line one JSON object:
``{"ratio": kfjupyter_s / optuna_s, "per_trial_overhead_ms": …, "kfjupyter_s": …, "optuna_s": …}``
where the per-trial overhead is ``(kfjupyter_s - optuna_s) / trials * parallel`` (what
each trial costs a worker beyond the objective itself, start-up spread over the trials).

    python bench/tune_overhead.py [--trials 100] [--sleep 0.2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

OBJECTIVE = """import time
x = kfjupyter.param("x", low=-10.0, high=10.0)
time.sleep(SLEEP)
kfjupyter.report(loss=(x - 2) ** 2)
"""


def run_optuna(trials: int, sleep: float, parallel: int, seed: int) -> float:
    import optuna

    def objective(trial):
        x = trial.suggest_float("x", -10.0, 10.0)
        time.sleep(sleep)
        return (x - 2) ** 2

    start = time.monotonic()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(objective, n_trials=trials, n_jobs=parallel)
    took = time.monotonic() - start
    assert len(study.trials) == trials
    return took


def run_kfjupyter(trials: int, sleep: float, parallel: int, seed: int) -> float:
    import kfjupyter
    from kfjupyter import status as st

    start = time.monotonic()
    study = kfjupyter.tune(
        OBJECTIVE.replace("SLEEP", repr(sleep)), "loss", trials=trials, parallel=parallel,
        algorithm="random", seed=seed, name="bench", user_ns={},
    )  # fmt: skip
    study.wait(poll=0.02)
    took = time.monotonic() - start
    assert study.status == st.SUCCEEDED, study.error
    assert sum(t["state"] == "COMPLETE" for t in study.trials) == trials
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="kfjupyter-bench-")
    os.environ["KFJUPYTER_HOME"] = home
    os.chdir(home)
    # both sides start with their libraries imported (a notebook has them already)
    import optuna  # noqa: F401

    import kfjupyter.tuning.api  # noqa: F401
    from kfjupyter.store.workspace import get_workspace

    get_workspace()

    ours, theirs = [], []
    for i in range(args.repeat):
        theirs.append(run_optuna(args.trials, args.sleep, args.parallel, seed=i))
        ours.append(run_kfjupyter(args.trials, args.sleep, args.parallel, seed=i))
        print(f"run {i}: kfjupyter {ours[-1]:.2f} s, optuna {theirs[-1]:.2f} s", flush=True)
    k, o = statistics.median(ours), statistics.median(theirs)
    ideal = args.trials * args.sleep / args.parallel
    overhead_ms = (k - o) / args.trials * args.parallel * 1000
    print(f"{args.trials} trials x {args.sleep} s, {args.parallel} at a time (ideal {ideal:.2f} s)")
    print(f"{'':24}{'wall s':>10}")
    print(f"{'kfjupyter.tune':24}{k:>10.2f}")
    print(f"{'optuna, 2 threads':24}{o:>10.2f}")
    print(f"ratio {k / o:.3f}; per-trial overhead {overhead_ms:.1f} ms")
    print(json.dumps({
        "ratio": round(k / o, 3),
        "per_trial_overhead_ms": round(overhead_ms, 1),
        "kfjupyter_s": round(k, 3),
        "optuna_s": round(o, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
