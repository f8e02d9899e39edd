"""REST handlers of serving (``/endpoints…``): thin, calling only :mod:`kfjupyter.serving`.

Same rules as every kfjupyter route (``@web.authenticated`` + ``@authorized``, XSRF on
POST/DELETE for cookie-authenticated browsers). Every serving call runs in the executor
(a local deploy blocks for seconds). Local endpoints listen on 127.0.0.1 only and ask for
their token, so ``POST …/{endpoint}/predict`` is a pass-through: the server calls
``Endpoint.predict``, which sends it (jupyter_server's auth guards the route itself).
Errors: ``EndpointNotFoundError`` → 404 ``EndpointNotFound``, ``ModelNotFoundError`` →
404 ``ModelNotFound``, ``EndpointNotDeployedError`` (predict on an undeployed or stopped
endpoint) → 409 ``NotDeployed``, ``InvalidOptionError`` → 400, ``PredictionError`` → 422
``PredictionRefused``, ``BackendError`` → 502.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from kfjupyter import registry, serving

from .handlers import KFJupyterHandler, bad_request
from .serialize import dumps, job_json

PROTOCOLS = ("v1", "v2")


def endpoint_json(ep: serving.Endpoint) -> dict:
    return job_json(ep)


class EndpointsBase(KFJupyterHandler):
    ERRORS = (
        (serving.EndpointNotFoundError, 404, "EndpointNotFound"),
        (serving.EndpointNotDeployedError, 409, "NotDeployed"),
        (registry.ModelNotFoundError, 404, "ModelNotFound"),
        (serving.PredictionError, 422, "PredictionRefused"),
        (TimeoutError, 504, "Timeout"),
    ) + KFJupyterHandler.ERRORS

    async def endpoint(self, endpoint: str) -> serving.Endpoint:
        return await self.call(serving.get_endpoint, endpoint)


def _list(status: str | None) -> list[dict]:
    return [endpoint_json(ep) for ep in serving.list_endpoints(status=status)]


def _deploy(body: dict) -> dict:
    kwargs: dict[str, Any] = {}
    for key in ("name", "canary", "canary_percent"):
        if body.get(key) is not None:
            kwargs[key] = body[key]
    return endpoint_json(serving.deploy(body["model"], **kwargs))


class EndpointsHandler(EndpointsBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        status = (self.get_query_argument("status", None) or "").strip() or None
        items = await self.call(_list, status)
        self.finish(dumps({"items": items, "total": len(items)}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_object('{"model": "iris@production"}')
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise bad_request("model (a registry reference like 'iris@production') is required")
        unknown = set(body) - {"model", "name", "canary", "canary_percent"}
        if unknown:
            raise bad_request(f"unknown fields: {', '.join(sorted(unknown))}")
        if body.get("canary_percent") is not None and not isinstance(body["canary_percent"], int):
            raise bad_request("canary_percent must be an integer 0–100")
        self.finish(dumps(await self.call(_deploy, body)))


class EndpointHandler(EndpointsBase):
    @web.authenticated
    @authorized
    async def get(self, endpoint: str) -> None:
        ep = await self.endpoint(endpoint)
        self.finish(dumps(await self.call(endpoint_json, ep)))

    @web.authenticated
    @authorized
    async def delete(self, endpoint: str) -> None:
        ep = await self.endpoint(endpoint)
        await self.call(ep.undeploy)
        self.finish(dumps(await self.call(endpoint_json, ep)))


def _predict(ep: serving.Endpoint, payload: Any, protocol: str) -> dict:
    answer = ep.predict(payload, protocol=protocol)
    return {"endpoint": ep.id, "protocol": protocol, "version": ep.last_version, "response": answer}


class PredictHandler(EndpointsBase):
    @web.authenticated
    @authorized
    async def post(self, endpoint: str) -> None:
        protocol = self.get_query_argument("protocol", None) or "v1"
        if protocol not in PROTOCOLS:
            raise bad_request(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        payload = self.json_body()
        if payload is None:
            raise bad_request('the body is the request to send: {"instances": [[...]]} (V1), {"inputs": [...]} (V2) or a list of instances')
        if not isinstance(payload, (dict, list)):
            raise bad_request("the body must be a JSON object (a whole V1/V2 request) or a list of instances")
        ep = await self.endpoint(endpoint)
        self.finish(dumps(await self.call(_predict, ep, payload, protocol)))


class PromoteHandler(EndpointsBase):
    @web.authenticated
    @authorized
    async def post(self, endpoint: str) -> None:
        ep = await self.endpoint(endpoint)
        await self.call(ep.promote)
        self.finish(dumps(await self.call(endpoint_json, ep)))


class RollbackHandler(EndpointsBase):
    @web.authenticated
    @authorized
    async def post(self, endpoint: str) -> None:
        ep = await self.endpoint(endpoint)
        await self.call(ep.rollback)
        self.finish(dumps(await self.call(endpoint_json, ep)))


def _logs(ep: serving.Endpoint, server: int, tail: int | None) -> str:
    out = ep.logs(server=server, tail=tail)
    return out if isinstance(out, str) else "".join(out)


class EndpointLogsHandler(EndpointsBase):
    @web.authenticated
    @authorized
    async def get(self, endpoint: str) -> None:
        server = self.int_arg("server", 0, -1, 3)
        tail = self.int_arg("tail", None, 1, 100_000)
        ep = await self.endpoint(endpoint)
        text = await self.call(_logs, ep, server, tail)
        self.finish(dumps({"endpoint": ep.id, "server": server, "text": text}))


def _stats(ep: serving.Endpoint, window: int) -> dict:
    return {"endpoint": ep.id, **ep.stats(window=window)}


class EndpointStatsHandler(EndpointsBase):
    """``GET …/{endpoint}/stats?window=60``: ``Endpoint.stats`` (requests/s, error rate,
    latency percentiles per version, drift)."""

    @web.authenticated
    @authorized
    async def get(self, endpoint: str) -> None:
        window = self.int_arg("window", 60, 1, 86_400)
        ep = await self.endpoint(endpoint)
        self.finish(dumps(await self.call(_stats, ep, window)))
