"""REST handlers of pipelines (``/pipelines…``): thin, calling only :mod:`kfjupyter.pipelines`.

Same rules as every kfjupyter route (``@web.authenticated`` + ``@authorized``, XSRF on
POST for cookie-authenticated browsers); every call runs in the executor. A notebook is
named by its path under the server's root (what JupyterLab's contents API calls
``path``); a path leaving the root is refused. Errors: ``PipelineError`` → 400
``PipelineError`` with ``cell`` (the index of the notebook cell at fault, or null);
an unknown notebook → 404 ``NotebookNotFound``; an unknown run → 404
``PipelineRunNotFound``; a step the run lacks → 404 ``StepNotFound``; the ``kfp`` SDK
missing → 501 ``MissingDependency``; ``KFPCompileError`` otherwise → 400.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_core.paths import is_hidden
from tornado import web

from kfjupyter import jobs
from kfjupyter.errors import InvalidOptionError, JobNotFoundError
from kfjupyter.files import path_under

from .handlers import KFJupyterHandler, api_error, attachment, bad_request
from .serialize import dumps, job_json

#: How many pipeline runs ``GET /pipelines/runs`` answers (the newest).
LIST_LIMIT = 50


class CellError(web.HTTPError):
    """A 400 that names the notebook cell at fault."""

    def __init__(self, message: str, cell: int | None):
        super().__init__(400, "%s", message, reason="PipelineError")
        self.cell = cell


def _pipelines():
    import kfjupyter.pipelines as kp

    return kp


class PipelinesBase(KFJupyterHandler):
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, CellError):
            self.finish(dumps({"message": exc.log_message % exc.args, "reason": exc.reason, "cell": exc.cell}))
            return
        super().write_error(status_code, **kwargs)

    ERRORS = (
        (JobNotFoundError, 404, "PipelineRunNotFound"),
    ) + KFJupyterHandler.ERRORS

    def http_error(self, exc: BaseException) -> web.HTTPError | None:
        """A compile error names its cell; compiling for KFP without ``kfp`` is a 501."""
        kind = type(exc).__name__
        if kind == "PipelineError":
            return CellError(str(exc), getattr(exc, "cell", None))
        if kind == "KFPCompileError":
            if isinstance(exc.__cause__, ImportError):
                return api_error(501, str(exc), "MissingDependency")
            return api_error(400, str(exc), "KFPCompileError")
        return super().http_error(exc)

    # -- arguments -------------------------------------------------------------------
    def root(self) -> Path:
        root = self.settings.get("server_root_dir") or getattr(self.contents_manager, "root_dir", None) or "."
        return Path(root).expanduser().resolve()

    def notebook(self, path: Any) -> Path:
        """The notebook file ``path`` (under the server's root) names; 400/404 otherwise.
        No link on its way is followed (:mod:`kfjupyter.files`): one is refused, named."""
        if not isinstance(path, str) or not path.strip():
            raise bad_request("path (the notebook's path under the server's root) is required")
        root = self.root()
        try:
            full = path_under(root, path.lstrip("/"), "notebook path")
        except InvalidOptionError as exc:
            raise bad_request(f"{exc} (the server's root folder is {root})") from None
        if full.suffix != ".ipynb":
            raise bad_request(f"{path} is not a notebook (.ipynb)")
        if not full.is_file():
            raise api_error(404, f"no notebook {path}", "NotebookNotFound")
        if not getattr(self.contents_manager, "allow_hidden", True) and is_hidden(str(full), str(root)):
            raise api_error(404, f"no notebook {path}", "NotebookNotFound")  # as the contents API answers
        return full

    def notebook_body(self) -> dict:
        return self.json_object('{"path": "pipeline.ipynb"}')


# -- the calls (in the executor) -----------------------------------------------------------
def _compile(path: Path) -> dict:
    return _pipelines().from_notebook(str(path)).to_dict()


def _get_run(run_id: str):
    job = jobs.get(run_id)
    if job.record.kind != "pipeline":
        raise api_error(404, f"job {run_id} is a {job.record.kind} job, not a pipeline run", "PipelineRunNotFound")
    return _pipelines().get_run(run_id)


def run_json(run) -> dict:
    return job_json(run)


def _start(path: Path, parameters: dict | None, backend: str | None) -> dict:
    run = _pipelines().run_pipeline(str(path), parameters or None, backend=backend)
    return run_json(run)


def _list(target: Path | None) -> list[dict]:
    runs = _pipelines().list_runs(notebook=str(target) if target is not None else None, limit=LIST_LIMIT)
    return [run_json(run) for run in runs]


def _cancel(run_id: str) -> dict:
    run = _get_run(run_id)
    run.cancel()
    return run_json(_pipelines().get_run(run_id))


def _step_logs(run_id: str, step: str, tail: int | None) -> dict:
    run = _get_run(run_id)
    steps = list(run.pipeline.steps)
    if step not in steps:
        raise api_error(404, f"pipeline run {run_id} has no step {step!r} (steps: {', '.join(steps)})", "StepNotFound")
    return {"run_id": run_id, "step": step, "text": run.step_logs(step, tail=tail) or ""}


def _step_outputs(run_id: str, step: str) -> dict:
    run = _get_run(run_id)
    steps = list(run.pipeline.steps)
    if step not in steps:
        raise api_error(404, f"pipeline run {run_id} has no step {step!r} (steps: {', '.join(steps)})", "StepNotFound")
    return {"run_id": run_id, "step": step, "backend": run.record.backend, "outputs": run.step_outputs(step)}


def _export(path: Path, default_image: str | None) -> str:
    kp = _pipelines()
    pipeline = kp.from_notebook(str(path))
    if default_image:
        return kp.compile_kfp(pipeline, default_image=default_image)
    return kp.compile_kfp(pipeline)


# -- handlers ------------------------------------------------------------------------------
class CompileHandler(PipelinesBase):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        path = self.notebook(self.notebook_body().get("path"))
        self.finish(dumps(await self.call(_compile, path)))


class RunsHandler(PipelinesBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        raw = self.get_query_argument("path", None)
        target = self.notebook(raw) if raw else None
        runs = await self.call(_list, target)
        self.finish(dumps({"runs": runs, "total": len(runs)}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.notebook_body()
        unknown = set(body) - {"path", "parameters", "backend"}
        if unknown:
            raise bad_request(f"unknown fields: {', '.join(sorted(unknown))}")
        path = self.notebook(body.get("path"))
        parameters = body.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise bad_request("parameters must be a JSON object {name: value}")
        backend = body.get("backend")
        if backend is not None and not isinstance(backend, str):
            raise bad_request("backend must be a string: local or kubernetes")
        data = await self.call(_start, path, parameters, backend or None)
        self.set_status(201)
        self.finish(dumps(data))


class RunHandler(PipelinesBase):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        run = await self.call(_get_run, run_id)
        self.finish(dumps(await self.call(run_json, run)))


class RunCancelHandler(PipelinesBase):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        self.finish(dumps(await self.call(_cancel, run_id)))


class StepLogsHandler(PipelinesBase):
    @web.authenticated
    @authorized
    async def get(self, run_id: str, step: str) -> None:
        tail = self.int_arg("tail", None, minimum=0)
        self.finish(dumps(await self.call(_step_logs, run_id, step, tail or None)))


class StepOutputsHandler(PipelinesBase):
    """``GET /pipelines/runs/{id}/steps/{step}/outputs``: :meth:`PipelineRun.step_outputs`."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str, step: str) -> None:
        self.finish(dumps(await self.call(_step_outputs, run_id, step)))


class ExportHandler(PipelinesBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.notebook(self.get_query_argument("path", None))
        text = await self.call(_export, path, self.kfconfig.image)
        self.set_header("Content-Disposition", attachment(f"{path.stem}.yaml"))
        self.finish(text, set_content_type="application/yaml; charset=utf-8")
