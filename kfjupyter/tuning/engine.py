"""Optuna as the local engine: the study's storage, samplers, pruners and trial rows.

The study lives in the job's folder as an Optuna ``JournalStorage`` on a file
(``study.journal``), which any number of processes may use at once. Its lock is an
``flock`` on ``study.journal.lock``: the kernel releases it when a process dies, so a
trial worker killed mid-write never leaves the others waiting on a stale lock file (as
Optuna's symlink lock would, for 30 s). Appends are written and flushed without an
``fsync`` each (Optuna's file backend syncs every record, ~3.5 ms on this disk, several
per trial): a crash of any process loses nothing; a power cut may lose the last records.
"""

from __future__ import annotations

import fcntl
import os
import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalStorage
from optuna.storages.journal._file import BaseJournalFileLock, get_lock_file
from optuna.trial import FrozenTrial, TrialState

from .space import SearchSpace
from .spec import MEDIAN_MIN_TRIALS, MEDIAN_START_STEP, TuneSpec

JOURNAL = "study.journal"
#: User attributes kfjupyter keeps on a trial.
ATTR_ERROR = "kf_error"  # the traceback of a failed trial
ATTR_CANCELLED = "kf_cancelled"  # why a trial was stopped from outside (cancel, study failed)
ATTR_WORKER = "kf_worker"  # which trial worker ran it
ATTR_LOG = "kf_log"  # [start, end] byte offsets of its output in that worker's log
ATTR_PID = "kf_pid"  # system attribute: the pid of the process running it

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class FlockLock(BaseJournalFileLock):
    """An exclusive ``flock`` on a lock file, released by the kernel if the holder dies."""

    def __init__(self, path: str):
        self._path = path
        self._local = threading.local()

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._local.fd = fd
        return True

    def release(self) -> None:
        fd = getattr(self._local, "fd", None)
        self._local.fd = None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class JournalFile(JournalFileBackend):
    """Optuna's journal file, locked with :class:`FlockLock`, appended without fsync."""

    def __init__(self, path: str):
        super().__init__(path, lock_obj=FlockLock(path + ".lock"))

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        import json

        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        with get_lock_file(self._lock):
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)


def open_storage(job_dir: Path) -> JournalStorage:
    backend: BaseJournalBackend = JournalFile(str(Path(job_dir) / JOURNAL))
    return JournalStorage(backend)


def storage_lock(job_dir: Path) -> FlockLock:
    """The same lock as the journal's: held while a worker claims a trial of the budget."""
    return FlockLock(str(Path(job_dir) / JOURNAL) + ".lock")


class _Grid(optuna.samplers.GridSampler):
    # GridSampler stops `study.optimize` when the grid is done; kfjupyter's workers end
    # on their budget instead (trials <= grid size), and stop() outside optimize raises.
    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(spec: TuneSpec) -> optuna.samplers.BaseSampler:
    """Katib's algorithm names → Optuna samplers."""
    seed = spec.seed
    if spec.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.algorithm == "grid":
        return _Grid(spec.space.grid(), seed=seed)
    if spec.algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if spec.algorithm == "multivariate-tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if spec.algorithm == "cmaes":
        # categorical parameters are sampled at random beside CMA-ES (as Katib's goptuna does)
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if spec.algorithm == "sobol":
        return optuna.samplers.QMCSampler(qmc_type="sobol", seed=seed, warn_independent_sampling=False)
    raise ValueError(spec.algorithm)


def make_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    if spec.early_stopping == "median":
        # Katib medianstop: min_trials_required=3, start_step=4 (the 4th reported value)
        return optuna.pruners.MedianPruner(
            n_startup_trials=MEDIAN_MIN_TRIALS, n_warmup_steps=MEDIAN_START_STEP - 1, n_min_trials=1
        )
    if spec.early_stopping == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def create_study(job_dir: Path, study_name: str, spec: TuneSpec) -> None:
    optuna.create_study(
        storage=open_storage(job_dir), study_name=study_name, direction=spec.direction, load_if_exists=True
    )


def load_study(job_dir: Path, study_name: str, spec: TuneSpec, storage: JournalStorage | None = None) -> optuna.Study:
    return optuna.load_study(
        study_name=study_name,
        storage=storage or open_storage(job_dir),
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
    )


def is_cancelled(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(ATTR_CANCELLED))


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that use the budget: all but those cancelled from outside."""
    return [t for t in trials if not is_cancelled(t)]


def failed(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.FAIL and not is_cancelled(t)]


def state_name(trial: FrozenTrial) -> str:
    if is_cancelled(trial):
        return "CANCELLED"
    return trial.state.name


def _iso(value: datetime | None) -> str | None:
    """An Optuna time (this machine's local time, without an offset) with its offset."""
    return value.astimezone().isoformat() if value else None


def trial_row(trial: FrozenTrial, space: SearchSpace | None = None) -> dict:
    """One trial as the Study view shows it (the same keys for every backend)."""
    start, end = trial.datetime_start, trial.datetime_complete
    duration = (end - start).total_seconds() if start and end else (
        (datetime.now() - start).total_seconds() if start else None
    )
    value = trial.value if trial.state in (TrialState.COMPLETE,) else None
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        value = None
    return {
        "number": trial.number,
        "state": state_name(trial),
        "value": value,
        "params": dict(trial.params),
        "intermediate": {int(k): v for k, v in sorted(trial.intermediate_values.items())},
        "datetime_start": _iso(start),
        "datetime_complete": _iso(end),
        "duration_s": duration,
        "error": trial.user_attrs.get(ATTR_ERROR) or trial.user_attrs.get(ATTR_CANCELLED),
        "worker": trial.user_attrs.get(ATTR_WORKER),
        "channel": f"trial/{trial.number}",
    }


def sync_trial_children(job_id: str, storage: JournalStorage, study_name: str, trials=None) -> None:
    """Bring the study's child tasks in the store up to date with its journal."""
    from ..store.workspace import get_workspace

    from .study import trial_child

    if trials is None:
        trials = storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False)
    get_workspace().sync_children(job_id, [trial_child(trial_row(t)) for t in trials])


def close_log_spans(storage: JournalStorage, study_name: str, pids: set[int], end: int) -> None:
    """The running trials of worker processes ``pids`` (which died) end their part of their
    worker's log at ``end``: the worker that takes their place writes after it."""
    study_id = storage.get_study_id_from_name(study_name)
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        span = trial.user_attrs.get(ATTR_LOG)
        if trial.system_attrs.get(ATTR_PID) in pids and span and span[1] is None:
            try:
                storage.set_trial_user_attr(trial._trial_id, ATTR_LOG, [span[0], end])
            except (KeyError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass


def end_running_trials(
    storage: JournalStorage,
    study_name: str,
    reason: str,
    *,
    cancelled: bool = True,
    only_pids: set[int] | None = None,
) -> int:
    """Mark the study's RUNNING (and WAITING) trials FAIL with ``reason``; return how many.

    ``cancelled`` trials were stopped from outside (they do not use the budget nor count
    as failures); others failed (e.g. their worker process died). With ``only_pids``,
    only the trials of those worker processes (system attribute ``kf_pid``).
    """
    study_id = storage.get_study_id_from_name(study_name)
    marked = 0
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if only_pids is not None and trial.system_attrs.get(ATTR_PID) not in only_pids:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, ATTR_CANCELLED if cancelled else ATTR_ERROR, reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            marked += 1
        except (KeyError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # it finished meanwhile
    return marked
