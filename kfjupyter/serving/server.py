"""The model-server process: ``python -m kfjupyter.serving.server SERVER_DIR``.

Reads SERVER_DIR/server.json (endpoint name, artifact folder, format, port, token), loads
the registered model, and runs a KServe ``ModelServer`` on 127.0.0.1 (KServe itself binds
0.0.0.0; here its REST server is told to bind loopback only) that answers 401 to any
request without the endpoint's token (``Authorization: Bearer TOKEN``), ``/metrics`` too. Started detached by the
local serving engine; ``ModelServer.start()`` owns the process's event loop and signals,
which is why it never runs inside a kernel or a thread.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CONFIG = "server.json"
HOST = "127.0.0.1"


class TokenCheck:
    """ASGI middleware: a request goes on only with ``Authorization: Bearer TOKEN``; else 401."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not self.allowed(scope["headers"]):
            body = b'{"error": "this endpoint needs its token: Authorization: Bearer TOKEN"}'
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def allowed(self, headers) -> bool:
        import hmac

        for name, value in headers:
            if name == b"authorization":
                return hmac.compare_digest(value.lower(), self.expected)
        return False


def _loopback_rest_server(token: str, config: dict | None = None):
    """KServe's RESTServer with its uvicorn config bound to 127.0.0.1, asking for ``token``,
    recording every inference request (and with ``log``, its bodies) in the server's folder
    (:class:`~kfjupyter.serving.monitoring.RequestLog`), and answering a component's error
    (:class:`~kfjupyter.serving.components.ComponentError`) with its own status."""
    import kserve.model_server as ms
    from fastapi.responses import JSONResponse

    from .components import ComponentError
    from .monitoring import RequestLog

    base = ms.RESTServer
    config = config or {}

    async def component_error(_request, exc):
        return JSONResponse(status_code=exc.status, content={"error": str(exc)})

    class LoopbackRESTServer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.config.host = config.get("host") or HOST  # a component in a Kubernetes pod: the pod's address

        def _add_exception_handlers(self, app):
            super()._add_exception_handlers(app)
            app.add_exception_handler(ComponentError, component_error)

        def _add_middlewares(self, app):
            super()._add_middlewares(app)
            if config.get("dir"):
                app.add_middleware(RequestLog, folder=config["dir"], version=config.get("version") or "",
                                   role=config.get("role") or "predictor", log=config.get("log"),
                                   sample=config.get("log_sample") or 1.0)  # fmt: skip
            if token:  # always locally; in a cluster the ingress's auth applies
                app.add_middleware(TokenCheck, token=token)  # the outermost: checked first

    ms.RESTServer = LoopbackRESTServer


def load_component_model(config: dict):
    """The transformer's or explainer's ``kserve.Model`` (``config["role"]``)."""
    from . import components as comp

    name, token = config["name"], config["token"]
    predictor = comp.Upstream(config["predictor_url"], token, name)
    if config["role"] == "transformer":
        explainer = comp.Upstream(config["explainer_url"], token, name, "explainer") if config.get("explainer_url") else None
        obj = comp.load_component(Path(config["bundle"]))
        return comp.make_transformer(name, obj, predictor, explainer)
    if config.get("kind") == "shap":
        import numpy as np

        from ..registry import formats

        model = formats.load(Path(config["folder"]), config.get("main_file"), config["format"], config.get("properties") or {})
        return comp.make_explainer(name, comp.shap_explainer(model, np.load(config["sample"])), "SHAP explainer")
    obj = comp.load_component(Path(config["bundle"]))
    return comp.make_explainer(name, comp.code_explainer(obj, predictor), f"explainer {comp.label_of(obj)}")


def load_predictor(config: dict):
    import cloudpickle
    from kserve import Model

    from ..registry import formats
    from .predictors import BatchingPredictor, FormatPredictor

    fmt = config["format"]
    options = {}
    model = formats.load(Path(config["folder"]), config.get("main_file"), fmt, config.get("properties") or {}, **options)
    extra = Path(config["dir"]) / "extra.pkl"
    hooks = cloudpickle.loads(extra.read_bytes()) if extra.exists() else {}
    if fmt == "pytorch" and isinstance(model, dict):
        cls = hooks.get("model_class")
        if cls is None:
            raise TypeError("this pytorch version is a state dict: deploy it with model_class=TheModuleClass")
        module = cls(**(hooks.get("model_kwargs") or {}))
        module.load_state_dict(model)
        model = module
    if fmt == "custom" and isinstance(model, Model):
        model.name = config["name"]
        if not model.ready:
            model.load()
        model.ready = True
        return model
    if config.get("max_batch_size") or config.get("max_latency_ms"):
        return BatchingPredictor(config["name"], model, fmt, pre=hooks.get("pre"), post=hooks.get("post"),
                                 max_batch_size=config.get("max_batch_size") or 32,
                                 max_latency_ms=config.get("max_latency_ms") or 10)  # fmt: skip
    return FormatPredictor(config["name"], model, fmt, pre=hooks.get("pre"), post=hooks.get("post"))


def main(argv: list[str] | None = None) -> None:
    server_dir = Path((argv or sys.argv[1:])[0])
    config = json.loads((server_dir / CONFIG).read_text())
    # kserve parses sys.argv when imported: give it only the program name
    sys.argv = sys.argv[:1]
    import kserve

    _loopback_rest_server(config["token"], config)
    role = config.get("role") or "predictor"
    if role == "predictor":
        predictor = load_predictor(config)
        print(f"kfjupyter: serving {config['version']} ({config['format']}) as {config['name']!r} on {HOST}:{config['port']}", flush=True)
    else:
        predictor = load_component_model(config)
        print(f"kfjupyter: the {role} of {config['name']!r} on {HOST}:{config['port']}, in front of {config['predictor_url']}",
              flush=True)
    kserve.ModelServer(
        http_port=config["port"],
        workers=1,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
        grace_period=2,
    ).start([predictor])


if __name__ == "__main__":
    main()
