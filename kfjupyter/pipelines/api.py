"""``kfjupyter.run_pipeline``: check, record, start; ``PipelineRun`` handles; ``debug``.

Everything a run needs is checked before anything is created (the pipeline compiles,
the parameters exist and have the right types, the run to resume exists and is of the
same pipeline): a refusal from :func:`run_pipeline` (``InvalidOptionError``, a
``PipelineError``) means no record, no folder and no process were left behind; a backend
that fails to start the run (Kubeflow Pipelines unreachable) leaves it Failed, saying why.
"""

from __future__ import annotations

import html
import inspect
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .. import status as st
from ..backends import check_backend
from ..config import default_backend
from ..errors import InvalidOptionError, JobNotFoundError
from ..jobs import Job, create
from ..store.models import JobRecord
from ..store.workspace import get_workspace
from .model import PARAM_TYPES, Parameter, Pipeline
from .spec import PipelineSpec
from .steps import list_steps, new_steps, step_dict


# -- checks ----------------------------------------------------------------------------
def _type_error(param: Parameter, value: Any) -> InvalidOptionError:
    return InvalidOptionError(
        f"pipeline parameter {param.name!r} is of type {param.type} (default {param.default!r}); "
        f"{value!r} ({type(value).__name__}) is not a valid {param.type}"
    )


def coerce_parameter(param: Parameter, value: Any) -> Any:
    """``value`` as a value of ``param``'s type. Text (from the CLI, a magic or a form) is
    parsed; any other value must already have the type (an int is a valid float)."""
    kind = param.type
    if kind not in PARAM_TYPES:
        raise InvalidOptionError(f"pipeline parameter {param.name!r} has an unknown type {kind!r}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise _type_error(param, value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
            if kind == "bool":
                lowered = text.lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off"):
                    return False
                raise ValueError(text)
            return json.loads(text)
        except ValueError:
            raise _type_error(param, value) from None
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "json":
        try:
            return json.loads(json.dumps(value))
        except (TypeError, ValueError):
            raise _type_error(param, value) from None
    raise _type_error(param, value)


def check_parameters(pipeline: Pipeline, given: dict[str, Any] | None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's parameter values: ``base`` (default: the defaults) with ``given`` applied."""
    given = dict(given or {})
    unknown = sorted(n for n in given if n not in pipeline.parameters)
    if unknown:
        known = ", ".join(pipeline.parameters) or "none (it has no pipeline-parameters cell)"
        raise InvalidOptionError(
            f"unknown pipeline parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for pipeline {pipeline.name!r}; its parameters: {known}"
        )
    values = dict(base) if base is not None else pipeline.parameter_values()
    for name in pipeline.parameters:
        values.setdefault(name, pipeline.parameters[name].default)
    for name, value in given.items():
        values[name] = coerce_parameter(pipeline.parameters[name], value)
    return {name: values[name] for name in pipeline.parameters}


def _load(path_or_pipeline: Any) -> Pipeline:
    if isinstance(path_or_pipeline, Pipeline):
        return path_or_pipeline
    from .graph import from_notebook

    return from_notebook(path_or_pipeline)


def _resumed(resume: str, pipeline: Pipeline, backend: str) -> JobRecord:
    if backend != "local":
        raise InvalidOptionError("resume works with the local backend only")
    try:
        record = get_workspace().get_job(resume)
    except JobNotFoundError:
        raise InvalidOptionError(f"cannot resume {resume!r}: there is no pipeline run with that id") from None
    if record.kind != "pipeline":
        raise InvalidOptionError(f"cannot resume {resume!r}: it is a {record.kind} job, not a pipeline run")
    if record.backend != "local":
        raise InvalidOptionError(f"cannot resume {resume!r}: it ran on the {record.backend} backend")
    old = (record.spec or {}).get("pipeline", {}).get("name")
    if old != pipeline.name:
        raise InvalidOptionError(
            f"cannot resume {resume!r}: it is a run of pipeline {old!r}, not of {pipeline.name!r}"
        )
    if record.status not in st.TERMINAL:
        raise InvalidOptionError(f"cannot resume {resume!r}: it is still {record.status}; wait for it or cancel it")
    return record


# -- starting a run ----------------------------------------------------------------------
def run_pipeline(
    path_or_pipeline: Any,
    parameters: dict[str, Any] | None = None,
    *,
    backend: str | None = None,
    resume: str | None = None,
    max_parallel: int | None = None,
    cache: bool = True,
    wait: bool = False,
    experiment: str | None = None,
) -> "PipelineRun":
    """Run a pipeline (a tagged notebook's path, or a :class:`Pipeline`) and return its run.

    ``parameters`` override the ``pipeline-parameters`` defaults (text is parsed to the
    parameter's type). ``backend``: ``local`` (default; a DAG runner on this machine) or
    ``kubernetes`` (Kubeflow Pipelines). ``resume``: the id of an ended local run of the same
    pipeline; the steps that succeeded there are reused (its parameter values are the
    default), the failed ones and those after them run again. ``max_parallel``: steps run
    at once (default: the CPU count, at least 2). ``cache=False`` runs every step even if
    its result is cached. ``wait``: block until the run ends (Ctrl-C cancels it).
    ``experiment``: the run's experiment (default: the notebook's name); each step is a
    nested run (see :mod:`kfjupyter.tracking`).
    """
    backend = check_backend("pipeline", backend or default_backend())
    if max_parallel is None:
        max_parallel = max(2, os.cpu_count() or 1)
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise InvalidOptionError(f"invalid max_parallel {max_parallel!r}: expected an integer >= 1")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidOptionError(f"parameters must be a dict of name → value, not {type(parameters).__name__}")
    pipeline = _load(path_or_pipeline)
    if not pipeline.steps:
        raise InvalidOptionError(f"pipeline {pipeline.name!r} has no steps: tag cells with step:NAME")
    base = None
    if resume:
        old = _resumed(resume, pipeline, backend)
        base = {k: v for k, v in (old.spec or {}).get("parameters", {}).items() if k in pipeline.parameters}
    values = check_parameters(pipeline, parameters, base)
    spec = PipelineSpec(
        name=pipeline.name[:63], backend=backend, pipeline=pipeline.to_dict(), parameters=values,
        max_parallel=max_parallel, cache=bool(cache), resume=resume,
        workdir=str(Path(pipeline.notebook).resolve().parent) if pipeline.notebook else os.getcwd(),
    )  # fmt: skip

    def prepare(run_id: str, job_dir: Path) -> None:
        for name, step in pipeline.steps.items():
            folder = job_dir / "steps" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "program.py").write_text(step.program)

    run = create(
        spec, prepare=prepare, children=new_steps(list(pipeline.steps)),
        notebook=str(Path(pipeline.notebook).resolve()) if pipeline.notebook else None, experiment=experiment,
    )  # fmt: skip
    return run.wait() if wait else run


class PipelineRun(Job):
    """A handle on one pipeline run: a :class:`~kfjupyter.jobs.Job` plus its steps."""

    @property
    def pipeline(self) -> Pipeline:
        return Pipeline.from_dict(self._record.spec["pipeline"])

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self._record.spec.get("parameters", {}))

    @property
    def steps(self) -> list[dict[str, Any]]:
        """Every step: name, status, cached, cache_reason, times, error."""
        self.refresh()
        return [step_dict(r) for r in list_steps(self.id)]

    def step(self, name: str) -> dict[str, Any]:
        for row in self.steps:
            if row["name"] == name:
                return row
        raise InvalidOptionError(f"pipeline run {self.id} has no step {name!r}; its steps: {', '.join(self.pipeline.steps)}")

    def _check_step(self, name: str) -> None:
        if name not in self._record.spec["pipeline"]["steps"]:
            steps = ", ".join(self._record.spec["pipeline"]["steps"])
            raise InvalidOptionError(f"pipeline run {self.id} has no step {name!r}; its steps: {steps}")

    def step_logs(self, step: str, follow: bool = False, tail: int | None = None) -> str | Iterator[str]:
        """One step's output; with ``follow`` an iterator of lines until the step ends."""
        self._check_step(step)
        return self.logs(channel=f"step/{step}", follow=follow, tail=tail)

    def step_program(self, step: str) -> str:
        self._check_step(step)
        return self._record.spec["pipeline"]["steps"][step]["program"]

    def step_metrics(self) -> dict[str, dict[str, float]]:
        """Last reported value of every metric, per step."""
        out: dict[str, dict[str, float]] = {}
        for row in self.metrics():
            values = {k: v for k, v in row.items() if k not in ("rank", "pipeline_step", "step", "time")}
            out.setdefault(row.get("pipeline_step", ""), {}).update(values)
        return out

    def pipeline_metrics(self) -> dict[str, float]:
        """The ``pipeline-metrics`` of the run: name → the value its step reported."""
        return self._named_metrics(self.step_metrics())

    def _named_metrics(self, per_step: dict[str, dict[str, float]]) -> dict[str, float]:
        names = self._record.spec["pipeline"].get("metrics", [])
        found: dict[str, float] = {}
        for values in per_step.values():
            for name in names:
                if name in values:
                    found[name] = values[name]
        return {name: found[name] for name in names if name in found}

    def value(self, step: str, name: str) -> Any:
        """A value ``step`` passed on (loaded from its value directory)."""
        from . import stepruntime
        from .local import value_dir

        self._check_step(step)
        path = value_dir(self.job_dir, step, name)
        if not path.exists():
            raise InvalidOptionError(f"step {step} of run {self.id} did not pass on {name!r}")
        return stepruntime.load_value(path)

    def step_outputs(self, step: str) -> list[dict[str, Any]]:
        """The values ``step`` handed on in this run, as the panel lists them: one dict per
        output variable of the step (in the pipeline's order) with ``name``, ``type`` (the
        Python type saved, e.g. ``numpy.ndarray``), ``format`` (stepruntime's), ``size``
        (bytes of the saved data), ``to`` (the downstream steps that read it), ``preview``
        (a short text: the value's repr for JSON values, shape and dtype for a numpy array,
        else None) and ``available`` (False when the step did not pass it on: not run
        yet, failed, or a Kubeflow Pipelines run, whose values stay in KFP's store).
        Nothing is unpickled: a preview reads only JSON text and numpy's header.
        """
        self._check_step(step)
        pipeline = self._record.spec["pipeline"]
        readers: dict[str, list[str]] = {}
        for other, spec in pipeline["steps"].items():
            for name, source in (spec.get("inputs") or {}).items():
                if source == step:
                    readers.setdefault(name, []).append(other)
        out: list[dict[str, Any]] = []
        for name in pipeline["steps"][step].get("outputs") or []:
            row: dict[str, Any] = {"name": name, "type": None, "format": None, "size": None,
                                   "to": readers.get(name, []), "preview": None, "available": False}  # fmt: skip
            folder = self._value_folder(step, name)
            meta_file = folder / "meta.json" if folder is not None else None
            if meta_file is not None and meta_file.is_file():
                try:
                    meta = json.loads(meta_file.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    meta = {}
                row["type"] = meta.get("type")
                row["format"] = meta.get("format")
                data = next((f for f in sorted(folder.glob("data.*"))), None)
                if data is not None:
                    row["available"] = True
                    row["size"] = data.stat().st_size
                    row["preview"] = _value_preview(row["format"], data)
            out.append(row)
        return out

    def _value_folder(self, step: str, name: str) -> Path | None:
        if self._record.backend != "local":
            return None
        from .local import value_dir

        return value_dir(self.job_dir, step, name)

    def debug(self, step: str, namespace: dict[str, Any] | None = None) -> list[str]:
        """Load ``step``'s inputs and parameters into ``namespace`` (see :func:`debug`)."""
        return debug(self.id, step, namespace=namespace)

    def to_dict(self) -> dict:
        self.refresh()
        data = super().to_dict()
        data["spec"] = {k: v for k, v in (data.get("spec") or {}).items() if k != "pipeline"}
        data["steps"] = [step_dict(r) for r in list_steps(self.id)]
        per_step = self.step_metrics()  # the steps' metric files, read once
        data["metrics"] = self._named_metrics(per_step)
        data["step_metrics"] = per_step
        data["parameters"] = self.parameters
        data["pipeline"] = self._record.spec["pipeline"]
        return data

    def _repr_html_(self) -> str:
        return steps_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """Its DAG with each step's state, for the extension's renderer; its steps table
        (HTML) beside it for every other front end."""
        from .render import PIPELINE_MIME, mime_payload

        steps = self.steps
        payload = mime_payload(self._record.spec["pipeline"], {s["name"]: s["status"] for s in steps},
                               {"id": self.id, "name": self._record.name, "status": self._record.status})  # fmt: skip
        return {PIPELINE_MIME: payload, "text/html": steps_html(self, steps), "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"<PipelineRun {self.id} {self._record.name} {self._record.status} backend={self._record.backend}>"


#: The longest preview :meth:`PipelineRun.step_outputs` answers, in characters.
PREVIEW_CHARS = 200
#: The most bytes of a JSON value read for its preview.
PREVIEW_READ = 64 * 1024


def _value_preview(fmt: str | None, data: Path) -> str | None:
    """A short text for a saved value, read without unpickling anything."""
    import reprlib

    try:
        if fmt == "json":
            with open(data, encoding="utf-8") as fh:
                text = fh.read(PREVIEW_READ + 1)
            if len(text) > PREVIEW_READ:
                return text[: PREVIEW_CHARS - 1] + "…"
            short = reprlib.Repr()
            short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlevel = 60, 60, 8, 8, 3
            text = short.repr(json.loads(text))
        elif fmt == "numpy":
            import numpy as np

            with open(data, "rb") as fh:
                major, _minor = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _fortran, dtype = read(fh)
            text = f"array shape {tuple(shape)} dtype {dtype}"
        else:
            return None
    except Exception:  # noqa: BLE001 - a preview is a nicety: none rather than an error
        return None
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def get_run(run_id: str) -> PipelineRun:
    """Re-attach to a pipeline run by id."""
    run = PipelineRun(run_id)
    if run.kind != "pipeline":
        raise InvalidOptionError(f"job {run_id!r} is a {run.kind} job, not a pipeline run")
    return run


def list_runs(notebook: str | None = None, pipeline: str | None = None, limit: int | None = 50) -> list[PipelineRun]:
    """Pipeline runs of the workspace, newest first (optionally of one notebook or pipeline)."""
    records = get_workspace().list_jobs(kind="pipeline")
    if notebook is not None:
        target = os.path.abspath(notebook)
        records = [r for r in records if r.notebook and (r.notebook == notebook or os.path.abspath(r.notebook) == target)]
    if pipeline is not None:
        records = [r for r in records if r.name == pipeline]
    return [PipelineRun(r.id, r) for r in records[:limit]]


# -- debugging a step ----------------------------------------------------------------------
def debug(run_id: str, step: str, namespace: dict[str, Any] | None = None, *, quiet: bool = False) -> list[str]:
    """Load a step's inputs (the values its upstream steps passed on in run ``run_id``) and
    the parameters it reads into ``namespace`` (default: the IPython kernel's namespace,
    else the caller's globals), and print the step's code, so the failure can be
    reproduced by running that code. Returns the names loaded.
    """
    from . import stepruntime
    from .local import value_dir

    run = get_run(run_id)
    pipeline = run.pipeline
    if step not in pipeline.steps:
        raise InvalidOptionError(f"pipeline run {run_id} has no step {step!r}; its steps: {', '.join(pipeline.steps)}")
    spec = pipeline.steps[step]
    loaded: dict[str, Any] = {}
    for name, source in spec.inputs.items():
        path = value_dir(run.job_dir, source, name)
        if not path.exists():
            state = next((s["status"] for s in run.steps if s["name"] == source), "?")
            raise InvalidOptionError(
                f"input {name!r} of step {step} is missing in run {run_id}: step {source} did not pass it on ({state})"
            )
        loaded[name] = stepruntime.load_value(path)
    values = run.parameters
    for name in spec.parameters:
        loaded[name] = values[name]
    if namespace is None:
        namespace = _caller_namespace()
    namespace.update(loaded)
    if not quiet:
        print(f"# step {step} of run {run_id} ({run.status}): loaded {', '.join(sorted(loaded)) or 'nothing'}")
        if pipeline.imports.strip() or pipeline.functions.strip():
            print("# (run the notebook's imports/functions cells first if this namespace lacks them)")
        print(spec.source)
    return sorted(loaded)


def _caller_namespace() -> dict[str, Any]:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover
        shell = None
    if shell is not None:
        return shell.user_ns
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__", "").startswith("kfjupyter"):
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


# -- showing runs ----------------------------------------------------------------------------
STEP_COLUMNS = ("step", "status", "duration", "cache")


def _step_row(row: dict[str, Any]) -> dict[str, str]:
    return {
        "step": row["name"],
        "status": row["status"],
        "duration": f"{row['duration_s']:.1f}s" if row.get("duration_s") is not None else "",
        "cache": row.get("cache_reason") or "",
    }


def steps_text(run: PipelineRun) -> str:
    from ..table import Table

    return repr(Table(STEP_COLUMNS, [_step_row(r) for r in run.steps], caption=f"{run.id}  {run.name}  {run.status}"))


class RunSteps:
    """A pipeline run's steps, shown: HTML in a notebook (:func:`steps_html`), text
    elsewhere (:func:`steps_text`)."""

    def __init__(self, run: PipelineRun):
        self.run = run

    def _repr_html_(self) -> str:
        return steps_html(self.run)

    def __repr__(self) -> str:
        return steps_text(self.run)


#: A status in the notebook's table: its icon and colour (the theme's variable in JupyterLab,
#: a light-theme colour elsewhere); the words stay in the text colour (AA in both themes).
#: The same icons as the Pipeline panel's (labextension/src/pipelinerun.ts STATUS_INFO).
_STATUS_LOOK = {
    "Pending": ("○", "var(--jp-ui-font-color2, #616161)"),
    "Running": ("◐", "var(--jp-brand-color1, #1565c0)"),
    "Succeeded": ("✓", "var(--jp-success-color1, #2e7d32)"),
    "Cached": ("↺", "var(--jp-info-color1, #00838f)"),
    "Failed": ("✕", "var(--jp-error-color1, #c62828)"),
    "Skipped": ("⤼", "var(--jp-ui-font-color3, #757575)"),
    "Cancelling": ("⊘", "var(--jp-warn-color1, #e65100)"),
    "Cancelled": ("⊘", "var(--jp-warn-color1, #e65100)"),
}


def _status_html(status: str) -> str:
    icon, colour = _STATUS_LOOK.get(status, ("•", "inherit"))
    style = "font-style:italic" if status == "Skipped" else ""
    return (
        f"<span style='color:{colour}' aria-hidden='true'>{icon}</span> "
        f"<span style='{style}'>{html.escape(status)}</span>"
    )


def steps_html(run: PipelineRun, steps: list[dict] | None = None) -> str:
    """The run's steps table (``steps``: as :attr:`PipelineRun.steps` just read them)."""
    rows = []
    for raw in run.steps if steps is None else steps:
        row = _step_row(raw)
        rows.append(
            "<tr>"
            + f"<td>{html.escape(row['step'])}</td>"
            + f"<td data-status='{html.escape(row['status'])}'>{_status_html(row['status'])}</td>"
            + f"<td>{html.escape(row['duration'])}</td>"
            + f"<td>{html.escape(row['cache'])}</td></tr>"
        )
    error = ""
    if run.record.error:
        error = f"<pre style='color:var(--jp-error-color1, #c62828)'>{html.escape(run.record.error)}</pre>"
    metrics = run.pipeline_metrics()
    shown = ""
    if metrics:
        shown = "<p>" + ", ".join(f"{html.escape(k)} = {v:g}" for k, v in metrics.items()) + "</p>"
    head = "".join(f"<th>{c}</th>" for c in STEP_COLUMNS)
    title = f"<p><b>{html.escape(run.id)}</b> ({html.escape(run.name)}): {_status_html(run.record.status)}</p>"
    return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{shown}{error}"
