"""REST handlers of papermill runs started from JupyterLab (``/notebook-runs…``): thin,
calling only :mod:`kfjupyter.notebook_runs`.

* ``GET /notebook-runs/parameters?path=`` — :func:`kfjupyter.notebook_runs.params.notebook_parameters`;
* ``POST /notebook-runs`` ``{"path", "parameters"?, "sweep"?, "max_parallel"?}`` —
  :func:`kfjupyter.notebook_runs.api.start_from_notebook`, answering the job (201);
* ``GET /notebook-runs/{job_id}/results`` — :func:`kfjupyter.notebook_runs.api.results_table`;
* ``POST /notebook-runs/{job_id}/output`` — :func:`kfjupyter.notebook_runs.api.output_in_folder`,
  answering ``{"path"}`` under the server's root (what JupyterLab opens).

A notebook is named by its path under the server's root, checked as the pipeline routes
check it (no link followed, nothing outside the root). Errors as every route's: a refused
value → 400 ``InvalidOption`` naming it; an unknown job → 404 ``JobNotFound``.
"""

from __future__ import annotations

from pathlib import Path

from jupyter_server.auth.decorator import authorized
from tornado import web

from kfjupyter import jobs
from .handlers import KFJupyterHandler, api_error, bad_request
from .pipelines import PipelinesBase
from .serialize import clean, dumps, job_json

BODY_FIELDS = {"path", "parameters", "sweep", "max_parallel"}


def _nr():
    from kfjupyter.notebook_runs import api, params

    return api, params


def _parameters(path: Path) -> dict:
    return _nr()[1].notebook_parameters(path)


def _start(path: Path, parameters, sweep, max_parallel) -> dict:
    return job_json(_nr()[0].start_from_notebook(str(path), parameters, sweep, max_parallel))


def _check_kind(job_id: str) -> None:
    kind = jobs.get(job_id).record.kind
    if kind not in ("notebook", "sweep"):
        raise api_error(404, f"job {job_id} is a {kind} job, not a notebook run or sweep", "JobNotFound")


def _results(job_id: str) -> dict:
    _check_kind(job_id)
    return clean(_nr()[0].results_table(job_id))


def _output(job_id: str, root: Path, allow_hidden: bool) -> dict:
    _check_kind(job_id)
    full = _nr()[0].output_in_folder(job_id, root, allow_hidden)
    return {"job_id": job_id, "path": full.relative_to(root).as_posix()}


class NotebookRunsBase(PipelinesBase):
    """The pipeline routes' notebook-path checks (:meth:`PipelinesBase.notebook`), every
    route's error answers (an unknown job is a ``JobNotFound``)."""

    ERRORS = KFJupyterHandler.ERRORS
    http_error = KFJupyterHandler.http_error


class ParametersHandler(NotebookRunsBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.notebook(self.get_query_argument("path", None))
        self.finish(dumps(await self.call(_parameters, path)))


class NotebookRunsHandler(NotebookRunsBase):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_object('{"path": "train.ipynb", "sweep": {"lr": [0.1, 0.01]}, "max_parallel": 2}')
        unknown = set(body) - BODY_FIELDS
        if unknown:
            raise bad_request(f"unknown fields: {', '.join(sorted(unknown))} (expected: {', '.join(sorted(BODY_FIELDS))})")
        path = self.notebook(body.get("path"))
        parameters, sweep, parallel = body.get("parameters"), body.get("sweep"), body.get("max_parallel")
        if parameters is not None and not isinstance(parameters, dict):
            raise bad_request("parameters must be a JSON object {name: value}")
        if sweep is not None and not isinstance(sweep, dict):
            raise bad_request("sweep must be a JSON object {name: [value, …]}")
        data = await self.call(_start, path, parameters or None, sweep or None, parallel)
        self.set_status(201)
        self.finish(dumps(data))


class ResultsHandler(NotebookRunsBase):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.finish(dumps(await self.call(_results, job_id)))


class OutputHandler(NotebookRunsBase):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))
        self.finish(dumps(await self.call(_output, job_id, self.root(), allow_hidden)))

