"""A long-lived trial worker: ask the study for a trial, run the program, tell, repeat.

``python -m kfjupyter.tuning.worker JOB_DIR INDEX`` — started by the tuning supervisor,
``parallel`` of them per study. A worker imports Python, Optuna (and, through the
program, torch …) once and runs many trials, so a trial costs the program's own run
time plus a few journal records, not a process start-up.

A trial runs the captured program in this process with fresh copies of the notebook's
values; ``kfjupyter.param`` returns the trial's values and every ``kfjupyter.report`` of
the objective is an intermediate value that may prune the trial. With
``workers_per_trial`` > 1 the trial is a distributed training run instead: its ranks are
started by the training supervisor's code (RANK, WORLD_SIZE, MASTER_* …), get the
trial's values in ``KFJUPYTER_PARAM_<name>``, and rank 0's reports drive pruning.

SIGTERM (cancel, or the study failing) ends the running trial at once: it is marked FAIL
with the reason the supervisor left in ``JOB_DIR/stop_reason``, and the worker exits.
"""

from __future__ import annotations

import json
import os
import pickle
import runpy
import signal
import sys
import time
import traceback
from pathlib import Path

import optuna
from optuna.storages.journal._file import get_lock_file
from optuna.trial import TrialState

from ..runtime import bootstrap
from ..runtime.ranks import RankGroup, rank_paths
from ..runtime.supervisor import LAUNCH
from . import engine
from .spec import TuneSpec
from .supervisor import STOP_REASON, trial_dir

#: Characters of a failed trial's traceback kept in the study.
ERROR_CHARS = 4000


class TrialStopped(BaseException):
    """Raised in the running trial when the worker is told to stop (not an ``Exception``,
    so the program's ``except Exception`` does not swallow it)."""


def objective_of(reports: list[float], spec: TuneSpec) -> float:
    if spec.strategy == "latest":
        return reports[-1]
    return min(reports) if spec.direction == "minimize" else max(reports)


class Worker:
    def __init__(self, job_dir: Path, index: int):
        self.job_dir = job_dir
        self.index = index
        self.launch = json.loads((job_dir / LAUNCH).read_text())
        spec = TuneSpec.from_dict(self.launch["spec"])
        self.storage = engine.open_storage(job_dir)
        study_id = self.storage.get_study_id_from_name(self.launch["study_name"])
        if spec.seed is not None and spec.algorithm != "grid":
            # every worker (and every resumed run) its own stream: the same seed in two
            # workers would propose the same parameters twice. Not the grid: its seed
            # shuffles the grid, and its grid ids (kept in the study) name points of that
            # one order, which every worker and every resumed run must share
            done = len(self.storage.get_all_trials(study_id, deepcopy=False))
            spec = spec.with_changes(seed=spec.seed + 7919 * index + 104729 * done)
        self.spec = spec
        self.study = engine.load_study(job_dir, self.launch["study_name"], spec, self.storage)
        self.study_id = study_id
        self.claim_lock = engine.FlockLock(str(job_dir / "claim.lock"))
        self.distributions = self.spec.space.distributions()
        bundle = job_dir / "bundle"
        self.program = bundle / "program.py"
        values = bundle / "values.pkl"
        self.values: dict[str, bytes] = pickle.loads(values.read_bytes()) if values.exists() else {}
        self.stopping = False
        self.in_program = False

    # -- signals

    def _on_signal(self, *_args) -> None:
        self.stopping = True
        if self.in_program:
            self.in_program = False  # raise once
            raise TrialStopped()

    def stop_reason(self) -> str:
        try:
            return (self.job_dir / STOP_REASON).read_text().strip() or "cancelled by the user"
        except OSError:
            return "cancelled by the user"

    # -- the loop

    def claim(self) -> optuna.Trial | None:
        """The next trial of the budget, or None when the budget is spent or the study failed."""
        with get_lock_file(self.claim_lock):
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
            if len(engine.failed(trials)) > self.spec.max_failed:
                return None
            if len(engine.counted(trials)) >= self.spec.trials:
                return None
            trial = self.study.ask(self.distributions)
            self.storage.set_trial_system_attr(trial._trial_id, engine.ATTR_PID, os.getpid())
        return trial

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.launch.get("workdir"):
            sys.path.insert(0, self.launch["workdir"])
        modules = self.job_dir / "bundle" / "modules"
        if modules.is_dir():
            sys.path.insert(0, str(modules))
        while not self.stopping:
            trial = self.claim()
            if trial is None:
                return
            try:
                self.run_trial(trial)
            except TrialStopped:
                return

    def _log_position(self) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            return os.fstat(1).st_size
        except OSError:
            return 0

    def run_trial(self, trial: optuna.Trial) -> None:
        number = trial.number
        start = self._log_position()
        shown = ", ".join(f"{k}={v!r}" for k, v in trial.params.items())
        print(f"[kfjupyter] trial {number} started: {shown}", flush=True)
        self._mark_log(trial, [start, None])  # its log is followed from here while it runs
        state, value, error, stopped = TrialState.FAIL, None, None, None
        reports: list[float] = []
        try:
            if self.spec.workers_per_trial > 1:
                reports = self.run_distributed(trial)
            else:
                reports = self.run_in_process(trial)
            if not reports:
                error = (
                    f"the trial ended without reporting the objective {self.spec.objective!r}: "
                    f"call kfjupyter.report({self.spec.objective}=…)"
                )
            else:
                state, value = TrialState.COMPLETE, objective_of(reports, self.spec)
        except optuna.TrialPruned as exc:
            state = TrialState.PRUNED
            print(f"[kfjupyter] trial {number} pruned: {exc}", flush=True)
        except TrialStopped:
            stopped = self.stop_reason()
        except _TrialFailed as exc:
            error = str(exc)
        except BaseException:  # the program's own error: record it, go on with the next trial
            error = traceback.format_exc()
        if error:
            sys.stderr.write(error.rstrip() + "\n")
        end = self._log_position()
        self._tell(trial, state, value, error, stopped, [start, end])
        print(f"[kfjupyter] trial {number} {'CANCELLED' if stopped else state.name}"
              + (f": {self.spec.objective}={value!r}" if value is not None else ""), flush=True)
        if stopped:
            raise TrialStopped()

    def _mark_log(self, trial, log_span) -> None:
        """Which worker runs the trial, and the part of its log the trial's output is."""
        try:
            self.storage.set_trial_user_attr(trial._trial_id, engine.ATTR_WORKER, self.index)
            self.storage.set_trial_user_attr(trial._trial_id, engine.ATTR_LOG, log_span)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, KeyError):
            pass  # the supervisor ended it meanwhile (cancel)

    def _tell(self, trial, state, value, error, stopped, log_span) -> None:
        try:
            self.storage.set_trial_user_attr(trial._trial_id, engine.ATTR_LOG, log_span)
            if stopped:
                self.storage.set_trial_user_attr(trial._trial_id, engine.ATTR_CANCELLED, stopped)
            elif error:
                self.storage.set_trial_user_attr(trial._trial_id, engine.ATTR_ERROR, error[-ERROR_CHARS:])
            if state == TrialState.COMPLETE:
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, KeyError):
            pass  # the supervisor ended it meanwhile (cancel)

    # -- one trial in this process

    def _reporter(self, trial: optuna.Trial, reports: list[float]):
        objective = self.spec.objective

        def hook(record: dict) -> None:
            value = record.get(objective)
            if value is None:
                return
            step = record.get("step")
            step = int(step) if isinstance(step, (int, float)) and step >= 0 else len(reports)
            reports.append(value)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{objective}={value!r} at step {step}")

        return hook

    def run_in_process(self, trial: optuna.Trial) -> list[float]:
        folder = trial_dir(self.job_dir, trial.number)
        (folder / "outputs").mkdir(parents=True, exist_ok=True)
        os.environ["KFJUPYTER_OUTPUT_DIR"] = str(folder / "outputs")
        os.environ["KFJUPYTER_METRICS_FILE"] = str(folder / "metrics.jsonl")
        os.environ["KFJUPYTER_TRIAL_NUMBER"] = str(trial.number)
        reports: list[float] = []
        hook = self._reporter(trial, reports)
        values = {name: pickle.loads(blob) for name, blob in self.values.items()}  # fresh per trial
        bootstrap.trial_params = dict(trial.params)
        bootstrap.report_hooks.append(hook)
        self.in_program = True
        try:
            runpy.run_path(str(self.program), init_globals=values, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise _TrialFailed(f"the program called sys.exit({exc.code!r})") from None
        finally:
            self.in_program = False
            bootstrap.report_hooks.remove(hook)
            bootstrap.trial_params = None
        return reports

    # -- one trial as a distributed training run

    def run_distributed(self, trial: optuna.Trial) -> list[float]:
        folder = trial_dir(self.job_dir, trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(self.spec.env)
        env["KFJUPYTER_TUNE_SPACE"] = self.spec.space.env_json()
        env["KFJUPYTER_TRIAL_NUMBER"] = str(trial.number)
        for name, value in trial.params.items():
            env[f"KFJUPYTER_PARAM_{name}"] = self.spec.space[name].text(value)
        ranks = RankGroup(
            folder, run_id=f"{self.launch['job_id']}-t{trial.number}", job_id=self.launch["job_id"],
            workers=self.spec.workers_per_trial, bundle=self.job_dir / "bundle", groups_dir=self.job_dir,
            env=env, gpus=self.spec.gpus, threads=self.launch.get("threads"), workdir=self.launch.get("workdir"),
        )  # fmt: skip
        ranks.start()
        reports: list[float] = []
        hook = self._reporter(trial, reports)
        metrics, offset = rank_paths(folder, 0)["metrics"], 0
        try:
            while True:
                if self.stopping:
                    raise TrialStopped()
                outcome, failure = ranks.outcome()
                if metrics.exists():  # rank 0's reports, as they come
                    with open(metrics, "rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read()
                    complete = chunk[: chunk.rfind(b"\n") + 1]
                    offset += len(complete)
                    for line in complete.splitlines():
                        hook(json.loads(line))
                if outcome == "failed":
                    raise _TrialFailed(ranks.failure_text(*failure))
                if outcome == "succeeded":
                    return reports
                time.sleep(0.05)
        finally:
            ranks.stop(grace=1.0)


class _TrialFailed(Exception):
    """A trial's failure whose message is the whole story (no worker traceback)."""


def main(argv: list[str] | None = None) -> None:
    args = argv or sys.argv[1:]
    Worker(Path(args[0]), int(args[1])).run()


if __name__ == "__main__":
    main()
