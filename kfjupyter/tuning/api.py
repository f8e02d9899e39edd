"""``kfjupyter.tune``: capture, read the search space, check, record, submit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from .. import status as st
from ..capture.program import MAX_PAYLOAD, Program, capture_cell, write_bundle
from ..config import default_backend, default_image
from ..errors import InvalidOptionError
from ..jobs import Job, create, resubmit
from ..store.workspace import get_workspace
from .space import ParamSpec, SearchSpace, as_param_spec, build_space
from .spec import TuneSpec
from .study import Study


def _param_options(params: Any) -> dict[str, ParamSpec]:
    """``params=``: a dict name → spec (dict of keywords, list of choices, ``--param`` text,
    ParamSpec), or a list of ``--param`` texts."""
    from .space import parse_param_option

    out: dict[str, ParamSpec] = {}
    if params is None:
        return out
    if isinstance(params, dict):
        for name, value in params.items():
            out[name] = as_param_spec(name, value)
        return out
    if isinstance(params, (list, tuple)):
        for text in params:
            spec = text if isinstance(text, ParamSpec) else parse_param_option(str(text))
            if spec.name in out:
                raise InvalidOptionError(f"parameter {spec.name!r} is given twice with --param")
            out[spec.name] = spec
        return out
    raise InvalidOptionError(f"params must be a dict or a list of 'NAME=SPEC' texts, not {type(params).__name__}")


def _program_sources(program: Program) -> list[str]:
    sources = list(program.imports) + list(program.definitions) + [program.body]
    sources += [c.decode("utf-8", "replace") for p, c in program.modules.items() if p.endswith(".py")]
    return sources


def _check_objective(objective: str, facts) -> None:
    if facts.report_calls == 0:
        raise InvalidOptionError(
            f"the objective {objective!r} is never reported: the cell never calls kfjupyter.report; "
            f"add kfjupyter.report(step=epoch, {objective}=…)"
        )
    if facts.reported is not None and objective not in facts.reported:
        seen = ", ".join(sorted(facts.reported)) or "no metric"
        raise InvalidOptionError(
            f"the objective {objective!r} is never reported: kfjupyter.report is given {seen}; "
            f"report it with kfjupyter.report({objective}=…) or choose --objective among those"
        )


def tune(
    fn_or_source: Callable[[], Any] | str,
    objective: str,
    *,
    direction: str = "minimize",
    trials: int | None = None,
    parallel: int = 1,
    algorithm: str = "tpe",
    early_stopping: str | None = None,
    workers_per_trial: int = 1,
    max_failed: int = 3,
    params: Any = None,
    strategy: str = "best",
    name: str | None = None,
    backend: str | None = None,
    resume: str | None = None,
    gpus: int = 0,
    cpu: str | None = None,
    memory: str | None = None,
    image: str | None = None,
    env: dict[str, str] | None = None,
    namespace: str | None = None,
    seed: int | None = None,
    wait: bool = False,
    user_ns: dict[str, Any] | None = None,
    history: list[str] | None = None,
    workdir: str | None = None,
    max_payload: int | None = None,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
) -> Study:
    """Search hyperparameters of ``fn_or_source`` and return its :class:`Study`.

    The program declares its parameters with ``kfjupyter.param(...)`` (literal arguments,
    so the space is known before any trial starts) and reports ``objective`` with
    ``kfjupyter.report(step=…, objective=…)``; ``params`` declares or overrides parameters
    (``{"lr": {"low": 1e-4, "high": 1e-1, "log": True}}`` or ``["lr=1e-4:1e-1:log"]``).

    ``trials`` is the study's whole budget (default 10), ``parallel`` trials run at once,
    ``algorithm`` is one of random, grid, tpe, multivariate-tpe, cmaes, sobol (Katib's
    names), ``early_stopping`` median or hyperband (local only). ``workers_per_trial`` > 1
    runs every trial as a distributed training job. ``resume`` names a study (job id or
    name) to continue: it runs until the study has ``trials`` finished trials.

    Every option, the search space and the program are checked before anything starts: a
    refusal (:class:`~kfjupyter.errors.InvalidOptionError`, ``PreflightError``) leaves
    nothing behind (a resumed study stays as it was); a backend that fails to start the
    study leaves it Failed, saying why.

    The study is a run of ``experiment`` (default: the notebook's name), each trial a
    nested run with its tuned params (see :mod:`kfjupyter.tracking`).
    """
    options = _param_options(params)
    program = capture_cell(fn_or_source, user_ns, history, workdir)
    space, facts = build_space(_program_sources(program), options)
    _check_objective(objective, facts)
    fields = dict(
        objective=objective, space=space, direction=direction, parallel=parallel, algorithm=algorithm,
        early_stopping=early_stopping, workers_per_trial=workers_per_trial, max_failed=max_failed,
        strategy=strategy, gpus=gpus, cpu=cpu, memory=memory, image=image or default_image(), env=env or {},
        namespace=namespace, seed=seed, backend=backend or default_backend(),
    )  # fmt: skip
    if resume is not None:
        return _resume(resume, program, fields, trials, name, max_payload, wait)
    spec = TuneSpec(name=name or "tune", trials=10 if trials is None else trials, **fields)
    job = create(spec, prepare=_bundle_writer(program, spec, max_payload), cell=program.body,
                 experiment=experiment, params=program.params, tags=tags)  # fmt: skip
    study = Study(job)
    return study.wait() if wait else study


def _bundle_writer(program: Program, spec: TuneSpec, max_payload: int | None):
    """The ``prepare`` of a study: its program's bundle (a resumed study's replaced)."""
    limit = max_payload if max_payload is not None else MAX_PAYLOAD.get(spec.backend, MAX_PAYLOAD["kubernetes"])

    def prepare(job_id: str, job_dir: Path) -> None:
        # the program as the notebook has it now; a refused one leaves a resumed study's as it was
        new = job_dir / "bundle.new"
        shutil.rmtree(new, ignore_errors=True)
        try:
            write_bundle(
                program, new,
                header=f"kfjupyter program of tuning job {job_id} ({spec.space.describe()})", max_bytes=limit,
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        shutil.rmtree(job_dir / "bundle", ignore_errors=True)
        new.rename(job_dir / "bundle")

    return prepare


def find_study(ref: str) -> Job:
    """A tune job by id, or the newest tune job with that name."""
    from .. import jobs
    from ..errors import JobNotFoundError

    try:
        job = jobs.get(ref)
        if job.kind == "tune":
            return job
    except JobNotFoundError:
        pass
    for record in get_workspace().list_jobs(kind="tune"):
        if record.name == ref:
            return Job(record.id)
    raise InvalidOptionError(f"--resume {ref!r}: no tuning study with that id or name in this workspace")


def _resume(ref, program, fields, trials, name, max_payload, wait) -> Study:
    job = find_study(ref)
    old = TuneSpec.from_dict(job.record.spec)
    if name is not None and name != old.name:
        raise InvalidOptionError(f"--resume {ref!r}: the study is named {old.name!r}, not {name!r}")
    if fields["backend"] != old.backend or old.backend != "local":
        raise InvalidOptionError(
            f"--resume {ref!r}: only local studies can be resumed (this one runs on {old.backend}; "
            f"asked for {fields['backend']})"
        )
    record = job.refresh()
    if record.status not in st.TERMINAL:
        raise InvalidOptionError(f"--resume {ref!r}: study {job.id} is still {record.status}")
    if SearchSpace(fields["space"]) != old.space:
        raise InvalidOptionError(
            f"--resume {ref!r}: the search space changed since study {job.id} started "
            f"(was: {old.space.describe()}; now: {SearchSpace(fields['space']).describe()})"
        )
    for key in ("objective", "direction"):
        if fields[key] != getattr(old, key):
            raise InvalidOptionError(
                f"--resume {ref!r}: the study's {key} is {getattr(old, key)!r}, not {fields[key]!r}"
            )
    spec = TuneSpec(name=old.name, trials=old.trials if trials is None else trials, **fields)
    # a refused program leaves the study as it was; a refused start marks it Failed
    resubmit(job.id, spec, prepare=_bundle_writer(program, spec, max_payload), message="resumed", cell=program.body)
    study = Study(job.id)
    return study.wait() if wait else study
