"""An endpoint's components beyond the predictor, from notebook code: a transformer (pre- and
post-processing) and an explainer, each its own KServe model server (``kserve.Model``).

The notebook object is captured as a training cell is (:func:`kfjupyter.capture.program.
capture_object`: imports, helpers, values, preflight) into a bundle that the server loads
with the bootstrap's :func:`~kfjupyter.runtime.bootstrap.run_program`, locally and in a
Kubernetes pod alike. What the user writes works on arrays, not on the protocol:

* a transformer is a function (``preprocess``) or a class/instance with ``preprocess(x)``
  and/or ``postprocess(y)``; ``x`` is the request's inputs (V1 ``instances``, the V2 first
  input as a numpy array), what it returns is what the predictor receives; ``postprocess``
  gets the predictions back;
* an explainer is a function ``fn(x)`` or ``fn(x, predict)`` (``predict`` calls the
  endpoint's predictor) returning a JSON-able explanation; ``explainer="shap"`` is a ready
  one for tabular models: SHAP attributions (the ``shap`` library) of the model's
  ``predict_proba`` (else ``predict``) over the version's recorded training sample.

An error of the user's code is answered with an error naming the component (400 for a
``ValueError``/``TypeError``/``KeyError``: the input's fault; 500 otherwise); the server
keeps serving.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

#: the name a component's program binds the notebook object to
COMPONENT = "kf_component"
#: exceptions of user code that say the input was wrong (answered 400)
INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


class ComponentError(Exception):
    """An error a component answers with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


def label_of(obj: Any) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def transformer_hooks(obj: Any) -> tuple[Callable | None, Callable | None]:
    """(preprocess, postprocess) of a transformer: a function, or a class (instantiated
    without arguments) or an instance with either method. TypeError says what is wrong."""
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return obj, None
    target = obj() if isinstance(obj, type) else obj
    pre, post = getattr(target, "preprocess", None), getattr(target, "postprocess", None)
    if not callable(pre) and not callable(post):
        raise TypeError(f"a transformer is a function or has preprocess(x) and/or postprocess(y); "
                        f"{label_of(obj)} has neither")  # fmt: skip
    return (pre if callable(pre) else None), (post if callable(post) else None)


def check_transformer(obj: Any) -> None:
    """The kernel's check before anything is captured (a class is not instantiated here)."""
    if isinstance(obj, type):
        if not callable(getattr(obj, "preprocess", None)) and not callable(getattr(obj, "postprocess", None)):
            raise TypeError(f"a transformer class needs preprocess(x) and/or postprocess(y); {obj.__name__} has neither")
        return
    transformer_hooks(obj)


def check_explainer(obj: Any) -> None:
    if not callable(obj):
        raise TypeError(f"an explainer is a function fn(x) or fn(x, predict), or 'shap'; got {type(obj).__name__}")


def load_component(bundle: Path) -> Any:
    """The notebook object of a component's bundle (its program run, its values loaded)."""
    from ..runtime.bootstrap import run_program

    return run_program(bundle, run_name="__kfjupyter_component__")[COMPONENT]


def _tolist(x: Any) -> Any:
    if hasattr(x, "columns") and hasattr(x, "values"):
        return x.values.tolist()
    return x.tolist() if hasattr(x, "tolist") else x


def _call_user(what: str, label: str, fn: Callable | None, value: Any, *args: Any) -> Any:
    if fn is None:
        return value
    try:
        return fn(value, *args)
    except ComponentError:
        raise
    except INPUT_ERRORS as exc:
        raise ComponentError(f"the {what} refused the input: {type(exc).__name__}: {exc}", 400) from exc
    except Exception as exc:  # noqa: BLE001  (the user's code: any error is the component's answer)
        raise ComponentError(f"the {what} failed: {type(exc).__name__}: {exc}", 500) from exc


class Upstream:
    """Calls from a component to the endpoint's predictor (or explainer), with its token, on
    kept-alive HTTP/1.1 connections (a pool of the canary router's :class:`~kfjupyter.
    serving.router.Upstream`: a general HTTP client costs this hop a millisecond)."""

    def __init__(self, url: str, token: str | None, name: str, what: str = "predictor"):
        from urllib.parse import urlsplit

        self.url, self.name, self.what = url, name, what
        parts = urlsplit(url)
        self.host = f"{parts.hostname}:{parts.port or 80}"
        self.auth = f"authorization: Bearer {token}\r\n".encode() if token else b""
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.idle: list = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        """(status, response head, body) of a POST of JSON ``body`` to ``path``."""
        from .router import Upstream as Connection, dechunk

        conn = self.idle.pop() if self.idle else Connection(self.url)
        request = (f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                   f"content-length: {len(body)}\r\n").encode() + self.auth + b"\r\n" + body  # fmt: skip
        try:
            head, data = await conn.exchange(request)
        except (OSError, EOFError) as exc:
            conn.close()
            raise ComponentError(f"the {self.what} did not answer at {self.url}: {exc!r}", 502) from None
        self.idle.append(conn)
        status = int(head.split(b" ", 2)[1])
        if b"\ntransfer-encoding: chunked" in head.lower():
            data = dechunk(data)
        return status, head, data

    def _check(self, status: int, data: bytes) -> None:
        if status != 200:
            import orjson

            try:
                detail = orjson.loads(data).get("error") or data.decode(errors="replace")
            except (ValueError, AttributeError):
                detail = data.decode(errors="replace")
            raise ComponentError(f"the {self.what} answered HTTP {status}: {detail}", status)

    async def infer(self, data: Any, protocol: str, response_headers: dict | None = None) -> Any:
        import orjson

        if protocol == "v2":
            from kserve import InferResponse

            rest, _ = data.to_rest()
            status, head, body = await self.post(f"/v2/models/{self.name}/infer",
                                                 rest if isinstance(rest, bytes) else orjson.dumps(rest))
        else:
            status, head, body = await self.post(f"/v1/models/{self.name}:predict", orjson.dumps(data))
        self._check(status, body)
        if response_headers is not None:
            from .api import VERSION_HEADER

            lower = head.lower()
            i = lower.find(f"\n{VERSION_HEADER}:".encode())
            if i >= 0:
                end = lower.find(b"\r", i + 1)
                response_headers[VERSION_HEADER] = head[i + len(VERSION_HEADER) + 2 : end if end > 0 else None].strip().decode()
        return InferResponse.from_bytes(body, len(body)) if protocol == "v2" else orjson.loads(body)

    async def explain(self, data: dict) -> Any:
        import orjson

        status, _, body = await self.post(f"/v1/models/{self.name}:explain", orjson.dumps(data))
        self._check(status, body)
        return orjson.loads(body)

    def predict_sync(self, x: Any) -> Any:
        """Predictions of the predictor for ``x`` (V1), from synchronous user code."""
        import http.client
        import json
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            conn.request("POST", f"/v1/models/{self.name}:predict", body=json.dumps({"instances": _tolist(x)}),
                         headers={**self.headers, "content-type": "application/json"})
            resp = conn.getresponse()
            body = json.loads(resp.read() or b"{}")
        finally:
            conn.close()
        if resp.status != 200:
            raise ComponentError(f"the {self.what} answered HTTP {resp.status}: {body.get('error', body)}", resp.status)
        return body["predictions"]


def _v2_request(name: str, x: Any):
    import numpy as np
    from kserve import InferInput, InferRequest
    from kserve.utils.utils import from_np_dtype

    arr = np.asarray(x)
    item = InferInput(name="input-0", shape=list(arr.shape), datatype=from_np_dtype(arr.dtype))
    item.set_data_from_numpy(arr, binary_data=False)
    return InferRequest(model_name=name, infer_inputs=[item])


def make_transformer(name: str, obj: Any, predictor: Upstream, explainer: Upstream | None = None):
    """The transformer's ``kserve.Model``: preprocess → predictor (same protocol) → postprocess."""
    from kserve import InferRequest, Model
    from kserve.utils.utils import get_predict_input, get_predict_response

    from .api import VERSION_HEADER

    label = label_of(obj)
    pre, post = transformer_hooks(obj)
    what = f"transformer {label}"

    class Transformer(Model):
        def __init__(self):
            super().__init__(name, return_response_headers=True)
            self.ready = True

        async def predict(self, payload, headers=None, response_headers=None):
            v2 = isinstance(payload, InferRequest)
            try:
                inputs = get_predict_input(payload)
            except (KeyError, TypeError, ValueError) as exc:
                raise ComponentError(f"expected {{'instances': [...]}} (V1) or V2 inputs: {exc}", 400) from exc
            x = _call_user(f"{what} (preprocess)", label, pre, inputs)
            seen: dict = {}
            if v2:
                result = await predictor.infer(_v2_request(name, x), "v2", seen)
                outputs = result.outputs[0].as_numpy()
            else:
                result = await predictor.infer({"instances": _tolist(x)}, "v1", seen)
                outputs = result["predictions"]
            if response_headers is not None and seen.get(VERSION_HEADER):
                response_headers[VERSION_HEADER] = seen[VERSION_HEADER]
            y = _call_user(f"{what} (postprocess)", label, post, outputs)
            return get_predict_response(payload, y if not isinstance(y, tuple) else list(y), name)

        async def explain(self, payload, headers=None):
            if explainer is None:
                raise ComponentError(f"endpoint {name} has no explainer (deploy it with explainer=…)", 404)
            inputs = payload.get("instances") if isinstance(payload, dict) else None
            if inputs is None:
                raise ComponentError("expected {'instances': [...]}", 400)
            return await explainer.explain({"instances": _tolist(_call_user(f"{what} (preprocess)", label, pre, inputs))})

    return Transformer()


def make_explainer(name: str, explain: Callable[[Any], Any], what: str):
    """The explainer's ``kserve.Model``: ``:explain`` answers ``explain(instances)``."""
    from kserve import Model

    class Explainer(Model):
        def __init__(self):
            super().__init__(name)
            self.ready = True

        def explain(self, payload, headers=None):
            inputs = payload.get("instances") if isinstance(payload, dict) else None
            if not isinstance(inputs, list):
                raise ComponentError("expected {'instances': [...]}", 400)
            return {"explanations": _call_user(what, what, explain, inputs)}

        def predict(self, payload, headers=None):
            raise ComponentError(f"the explainer of {name} answers :explain only", 404)

    return Explainer()


def code_explainer(obj: Any, predictor: Upstream) -> Callable[[Any], Any]:
    """A notebook function ``fn(x)`` or ``fn(x, predict)`` as ``explain(instances)``."""
    try:
        takes_predict = len(inspect.signature(obj).parameters) >= 2
    except (TypeError, ValueError):
        takes_predict = False
    return (lambda x: obj(x, predictor.predict_sync)) if takes_predict else obj


def shap_explainer(model: Any, background: Any) -> Callable[[Any], Any]:
    """SHAP feature attributions (the ``shap`` library) of a tabular model's
    ``predict_proba`` (else ``predict``) against ``background`` (the training sample)."""
    import numpy as np
    import shap

    fn = getattr(model, "predict_proba", None) or model.predict
    background = np.asarray(background, dtype=float)
    if len(background) > 100:
        background = background[np.random.default_rng(0).choice(len(background), 100, replace=False)]
    explainer = shap.Explainer(fn, background)

    def explain(x):
        exp = explainer(np.asarray(x, dtype=float))
        return [{"values": np.asarray(v).tolist(), "base_values": np.asarray(b).tolist()}
                for v, b in zip(exp.values, exp.base_values)]  # fmt: skip

    return explain
