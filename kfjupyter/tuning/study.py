"""The :class:`Study` handle: one view of a tuning job, whichever backend runs it."""

from __future__ import annotations

from typing import Any

from .. import status as st
from ..errors import InvalidOptionError, KFJupyterError
from ..jobs import Job
from ..runtime.engine import UnknownChannelError
from .spec import TuneSpec

#: Trial states, the same words for both backends (Katib's in brackets):
#: COMPLETE (Succeeded), PRUNED (EarlyStopped), FAIL (Failed, MetricsUnavailable),
#: CANCELLED (Killed; a trial stopped by cancel), RUNNING (Running), WAITING (Created).
TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL", "CANCELLED", "RUNNING", "WAITING")
#: Complete trials needed before parameter importances mean anything.
MIN_TRIALS_FOR_IMPORTANCE = 3

#: How a study shows itself in a notebook (the widgets layer, above this one).
STUDY_BUNDLE = "kfjupyter.widgets.study_view:study_bundle"


class Study:
    """A hyperparameter search: its trials, its best trial, and the :class:`~kfjupyter.Job` it is.

    ``Study(job_or_id)`` re-attaches to any tune job of the workspace (from another kernel,
    after a restart, from the CLI); :func:`kfjupyter.tune` returns one.
    """

    def __init__(self, job: Job | str):
        self.job = job if isinstance(job, Job) else Job(job)
        if self.job.kind != "tune":
            raise InvalidOptionError(f"job {self.job.id} is a {self.job.kind} job, not a tuning study")
        self.spec = TuneSpec.from_dict(self.job.record.spec)

    # -- identity and state

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def objective(self) -> str:
        return self.spec.objective

    @property
    def direction(self) -> str:
        return self.spec.direction

    @property
    def space(self):
        return self.spec.space

    @property
    def status(self) -> str:
        return self.job.status

    @property
    def done(self) -> bool:
        return self.job.done

    @property
    def message(self) -> str | None:
        return self.job.refresh().message

    @property
    def error(self) -> str | None:
        return self.job.error

    # -- trials

    @property
    def submitted(self) -> bool:
        """Whether the backend has the study yet (it is recorded a moment before it is submitted)."""
        return bool(self.job.record.backend_info)

    @property
    def trials(self) -> list[dict]:
        """Every trial: number, state, value, params, intermediate values, times, error."""
        if not self.submitted:
            return []
        return self.job.backend.trials(self.job.id, self.job.record.backend_info)

    @property
    def best_trial(self) -> dict | None:
        """The best COMPLETE trial so far (None before the first completes)."""
        if not self.submitted:
            return None
        return self.job.engine.best(self.job.id, self.job.record.backend_info, self.spec)

    @property
    def best_params(self) -> dict[str, Any] | None:
        best = self.best_trial
        return dict(best["params"]) if best else None

    @property
    def best_value(self) -> float | None:
        best = self.best_trial
        return best["value"] if best else None

    def trials_dataframe(self):
        """The trials as a pandas DataFrame (columns as Optuna's: number, value, state,
        datetime_start, datetime_complete, duration, params_<name>, plus error)."""
        import pandas as pd

        rows = []
        for t in self.trials:
            row = {
                "number": t["number"],
                "value": t["value"],
                "state": t["state"],
                "datetime_start": pd.to_datetime(t["datetime_start"]),
                "datetime_complete": pd.to_datetime(t["datetime_complete"]),
                "duration": pd.to_timedelta(t["duration_s"], unit="s") if t["duration_s"] is not None else pd.NaT,
            }
            for name in self.spec.space:
                row[f"params_{name}"] = t["params"].get(name)
            row["error"] = t.get("error")
            rows.append(row)
        columns = ["number", "value", "state", "datetime_start", "datetime_complete", "duration"]
        columns += [f"params_{n}" for n in self.spec.space] + ["error"]
        return pd.DataFrame(rows, columns=columns)

    def trial_log(self, number: int, tail: int | None = None) -> str:
        """What trial ``number`` printed (KeyError: no such trial); its log channel is
        ``trial/NUMBER`` (``study.job.logs(channel=…, follow=True)`` follows it)."""
        if not self.submitted:
            raise KeyError(f"no trial {number} in study {self.id}: it has not started yet")
        try:
            return self.job.logs(channel=f"trial/{number}", tail=tail)
        except UnknownChannelError:
            raise KeyError(f"no trial {number} in study {self.id}") from None

    # -- analysis

    def param_importances(self, min_trials: int = MIN_TRIALS_FOR_IMPORTANCE) -> dict:
        """How much each parameter explains the objective, by Optuna's
        :func:`optuna.importance.get_param_importances` (fANOVA) over the COMPLETE trials:
        ``{"importances": {name: share, …} (sums to 1, most important first), "trials": n,
        "message": None}``. With fewer than ``min_trials`` complete trials (or a space of
        one value) ``importances`` is empty and ``message`` says why."""
        return param_importances(self.trials, self.spec, min_trials)

    def retrain_best(self, wait: bool = False, name: str | None = None, workers: int | None = None) -> Job:
        """Start the study's cell again as a training job with the best trial's params fixed
        (``kfjupyter.param(…)`` returns them); the new job is a run of the study's experiment
        whose params are those values. Refused (:class:`InvalidOptionError`) before any trial
        completed."""
        return retrain_best(self, wait=wait, name=name, workers=workers)

    def register_best(self, name: str | None = None, **options: Any):
        """Register what the best trial saved to ``kfjupyter.output_dir()`` (one file, or
        its folder of files) as a new version of model ``name`` (default: the study's
        name), with the trial's params, the study's objective value and lineage to the
        study (``custom_properties["trial"]``: the trial's number); ``options`` go to
        :func:`kfjupyter.register_model`. Refused, saying what to do instead, before any
        trial completed, when the best trial saved nothing, or when its files stayed in
        its pod (Kubernetes): retrain with the best and register that job's output."""
        return register_best(self, name, **options)

    # -- control

    def wait(self, timeout: float | None = None, poll: float = 0.2, cancel_on_interrupt: bool = True,
             raise_on_failure: bool = True, on_event=None) -> "Study":
        """Block until the study ends; a study that ended Failed or Cancelled raises
        :class:`~kfjupyter.jobs.JobFailedError` unless ``raise_on_failure=False`` (see
        :meth:`Job.wait <kfjupyter.jobs.Job.wait>`). Ctrl-C cancels it, unless
        ``cancel_on_interrupt=False``."""
        self.job.wait(timeout=timeout, poll=poll, cancel_on_interrupt=cancel_on_interrupt,
                      raise_on_failure=raise_on_failure, on_event=on_event)  # fmt: skip
        return self

    def cancel(self) -> "Study":
        """Stop every running trial (each is marked cancelled) and mark the study Cancelled."""
        self.job.cancel()
        return self

    def to_dict(self) -> dict:
        """Everything a client shows (the sidebar's Tuning panel reads this); every time
        with its offset."""
        record = self.job.refresh()
        trials = self.trials
        best = self.best_trial
        return self._head(record) | {"best": best, "trials": trials, "space": self.spec.space.to_dict()}

    def summary(self) -> dict:
        """The study for a list: :meth:`to_dict` without its trials and space, with how many
        trials it has in each state (every state, zeros included). When its trials cannot
        be read (a cluster out of reach), its record alone, the counts None."""
        try:
            data = self.to_dict()
        except (KFJupyterError, KeyError, OSError):
            return self._head(self.job.record) | {"best": None, "n_trials": None, "trial_counts": None}
        trials = data.pop("trials")
        data.pop("space")
        counts = {state: 0 for state in TRIAL_STATES}
        for trial in trials:
            counts[trial.get("state")] = counts.get(trial.get("state"), 0) + 1
        return data | {"n_trials": len(trials), "trial_counts": counts}

    def _head(self, record) -> dict:
        """What the record and the spec say of the study."""
        from ..store.workspace import as_aware

        return {
            "id": self.id,
            "name": self.name,
            "status": record.status,
            "backend": record.backend,
            "message": record.message,
            "error": record.error,
            "objective": self.spec.objective,
            "direction": self.spec.direction,
            "algorithm": self.spec.algorithm,
            "early_stopping": self.spec.early_stopping,
            "trials_budget": self.spec.trials,
            "parallel": self.spec.parallel,
            "workers_per_trial": self.spec.workers_per_trial,
            "created_at": as_aware(record.created_at).isoformat() if record.created_at else None,
            "duration_s": self.job.duration(),
        }

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """A study shown in a notebook: the JupyterLab extension's study view (its MIME
        type), with plain HTML and text for where the extension is not installed."""
        from ..backends import load

        return load(STUDY_BUNDLE)(self)

    def __repr__(self) -> str:
        best = self.best_value if self.job.record.status in st.TERMINAL else None
        tail = f" best {self.objective}={best:.6g}" if best is not None else ""
        return f"<Study {self.id} {self.job.record.status} {self.direction} {self.objective}{tail}>"


#: Trial states → the states of child tasks.
CHILD_STATUS = {
    "COMPLETE": st.SUCCEEDED, "PRUNED": st.PRUNED, "FAIL": st.FAILED, "CANCELLED": st.CANCELLED,
    "RUNNING": st.RUNNING, "WAITING": st.PENDING,
}  # fmt: skip


def trial_child(row: dict) -> dict:
    """A trial row (either backend's) as the study's child task (the fields of a ``ChildRecord``)."""
    from datetime import datetime

    def at(iso):
        return datetime.fromisoformat(iso) if iso else None

    attrs = {"state": row["state"], "params": row["params"], "value": row["value"]}
    attrs |= {k: row[k] for k in ("worker", "name") if row.get(k) is not None}
    return {
        "name": str(row["number"]), "kind": "trial", "position": row["number"],
        "status": CHILD_STATUS.get(row["state"], row["state"]), "error": row["error"],
        "started_at": at(row["datetime_start"]), "finished_at": at(row["datetime_complete"]), "attrs": attrs,
    }  # fmt: skip


def trial_metrics(trials: list[dict], objective: str) -> list[dict]:
    """A study's metric channel ``trials``: a row per finished trial (``step`` is its number)."""
    return [{"rank": 0, "step": t["number"], "time": None, objective: t["value"]} for t in trials if t["value"] is not None]


def best_of(trials: list[dict], direction: str) -> dict | None:
    complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    if not complete:
        return None
    pick = min if direction == "minimize" else max
    return pick(complete, key=lambda t: (t["value"], -t["number"]) if direction == "maximize" else (t["value"], t["number"]))


def get(job_id: str) -> Study:
    """Re-attach to a tuning study by job id."""
    try:
        return Study(job_id)
    except KFJupyterError:
        raise


def list_studies(status: str | None = None, limit: int | None = 50, offset: int = 0) -> list[Study]:
    """The workspace's tuning studies, newest first."""
    from .. import jobs

    return [Study(j) for j in jobs.list(kind="tune", status=status, limit=limit, offset=offset)]


def param_importances(trials: list[dict], spec: TuneSpec, min_trials: int = MIN_TRIALS_FOR_IMPORTANCE) -> dict:
    """Parameter importances of ``trials`` (see :meth:`Study.param_importances`): an
    in-memory Optuna study of the COMPLETE trials, so both backends' trials are read alike."""
    import optuna

    complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    varying = [n for n in spec.space if len({repr(t["params"].get(n)) for t in complete}) > 1]
    out = {"importances": {}, "trials": len(complete), "message": None}
    if len(complete) < max(2, min_trials):
        out["message"] = (f"parameter importances need at least {max(2, min_trials)} complete trials; "
                          f"this study has {len(complete)}")  # fmt: skip
        return out
    if not varying:
        out["message"] = "every complete trial has the same params: nothing to compare"
        return out
    distributions = spec.space.distributions()
    study = optuna.create_study(direction=spec.direction)
    for t in complete:
        params = {n: t["params"][n] for n in spec.space if n in t["params"]}
        dists = {n: distributions[n] for n in params}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=t["value"]))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    values = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying)
    out["importances"] = {k: float(v) for k, v in values.items()}
    return out


def retrain_best(study: Study, wait: bool = False, name: str | None = None, workers: int | None = None) -> Job:
    """The study's program again as a ``train`` job, the best trial's params fixed (see
    :meth:`Study.retrain_best`)."""
    import shutil
    from pathlib import Path

    from .. import jobs
    from ..store.workspace import get_workspace
    from ..training.spec import TrainSpec

    best = study.best_trial
    if not best:
        raise InvalidOptionError(f"study {study.id} has no complete trial yet: nothing to retrain with")
    spec, record = study.spec, study.job.record
    env = dict(spec.env)
    env["KFJUPYTER_TUNE_SPACE"] = spec.space.env_json()
    for pname, value in best["params"].items():
        if pname in spec.space:
            env[f"KFJUPYTER_PARAM_{pname}"] = spec.space[pname].text(value)
    train = TrainSpec(
        name=name or f"{study.name}-best", workers=workers or spec.workers_per_trial, gpus=spec.gpus,
        cpu=spec.cpu, memory=spec.memory, image=spec.image, env=env, namespace=spec.namespace, backend=record.backend,
    )  # fmt: skip
    old_dir = get_workspace().job_dir(study.id)

    def prepare(job_id: str, job_dir: Path) -> None:
        shutil.copytree(old_dir / "bundle", job_dir / "bundle")

    experiment, tags, source = None, None, None
    from ..store.runs import RunRecord

    with get_workspace().reader() as s:  # the study's run: the new job is a run of its experiment
        run = s.get(RunRecord, study.id)
        if run is not None:  # a study without a run record still retrains
            experiment, tags, source = run.experiment, dict(run.tags or {}), run.id
    params = {k: v for k, v in best["params"].items()}
    job = jobs.create(train, prepare=prepare, notebook=record.notebook, cell=record.cell,
                      experiment=experiment, params=params, tags=tags, source_run=source)  # fmt: skip
    return job.wait() if wait else job


def register_best(study: Study, name: str | None = None, **options: Any):
    """The best trial's saved files as a model version (see :meth:`Study.register_best`)."""
    from .. import registry
    from ..store.workspace import get_workspace
    from .supervisor import trial_dir

    best = study.best_trial
    if not best:
        raise InvalidOptionError(f"study {study.id} has no complete trial yet: nothing to register")
    number = best.get("number")
    which = f"the best trial of study {study.id} (trial {number}, {study.objective} = {best.get('value')})"
    instead = ("retrain with the best (study.retrain_best(), the Tuning panel's Retrain with the best) "
               "and register that job's output (job.register_model(...))")  # fmt: skip
    if study.job.record.backend != "local":
        raise InvalidOptionError(f"{which} ran on {study.job.record.backend}: its files stayed in its pod; {instead}")
    folder = trial_dir(get_workspace().job_dir(study.id), int(number)) / "outputs"
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    if not files:
        raise InvalidOptionError(f"{which} saved no files to kfjupyter.output_dir(): save the model there in the "
                                 f"cell, or {instead}")  # fmt: skip
    options.setdefault("params", dict(best.get("params") or {}))
    options.setdefault("metrics", {study.objective: best.get("value")})
    options["custom_properties"] = {"trial": int(number), **(options.get("custom_properties") or {})}
    return registry.register_model(name or study.name, files[0] if len(files) == 1 else folder, job=study, **options)
