"""REST handlers of experiment tracking (``/experiments``, ``/runs…``): thin, calling only
:mod:`kfjupyter.tracking`.

Same rules as every kfjupyter route. Errors: an unknown run → 404 ``RunNotFound``, a
filter or order_by that is not MLflow's search syntax (and a re-run param the job does
not have) → 400 ``InvalidOption``.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from kfjupyter import tracking

from .handlers import MAX_PAGE, KFJupyterHandler, bad_request
from .serialize import dumps, job_json

#: the longest filter text taken
MAX_FILTER = 4000


class TrackingBase(KFJupyterHandler):
    ERRORS = ((tracking.RunNotFoundError, 404, "RunNotFound"),) + KFJupyterHandler.ERRORS


class ExperimentsHandler(TrackingBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(dumps({"experiments": await self.call(tracking.experiments)}))


def _page(experiment, filter_, order_by, kind, limit, offset) -> dict:
    found, total = tracking.search_runs(experiment, filter_, order_by or None, kind, limit, offset)
    return {"runs": [r.to_dict() for r in found], "total": total, "limit": limit, "offset": offset}


class RunsHandler(TrackingBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        experiment = self.get_query_argument("experiment", None) or None
        filter_ = self.get_query_argument("filter", None) or None
        if filter_ is not None and len(filter_) > MAX_FILTER:
            raise bad_request(f"the filter is longer than {MAX_FILTER} characters")
        order_by = [o for o in self.get_query_arguments("order_by") if o.strip()]
        kind = self.get_query_argument("kind", None) or None
        limit = self.int_arg("limit", 100, 0, MAX_PAGE)
        offset = self.int_arg("offset", 0, 0)
        self.finish(dumps(await self.call(_page, experiment, filter_, order_by, kind, limit, offset)))


class CompareHandler(TrackingBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        ids = [i for i in self.get_query_arguments("ids") if i.strip()]
        if len(ids) < 2 or len(ids) > 20:
            raise bad_request("compare needs 2 to 20 runs: ?ids=RUN&ids=RUN")
        comparison = await self.call(tracking.compare, *ids)
        self.finish(dumps(comparison.to_dict()))


class RunHandler(TrackingBase):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        run = await self.call(tracking.get_run, run_id)
        self.finish(dumps(run.to_dict()))


class RerunHandler(TrackingBase):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        body = self.json_object('{"params": {"lr": 0.05}}', required=False)
        params = body.get("params", {})
        if not isinstance(params, dict) or not all(isinstance(k, str) and k.isidentifier() for k in params):
            raise bad_request('params must be an object of name → value, like {"lr": 0.05}')
        job = await self.call(tracking.rerun, run_id, **params)
        self.set_status(201)
        self.finish(dumps(job_json(job)))
