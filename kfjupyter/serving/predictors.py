"""KServe predictors for the registry's formats (run inside the model-server process).

Each wraps a model loaded by :mod:`kfjupyter.registry.formats` in a ``kserve.Model``
whose ``predict`` answers both protocols: V1 (``{"instances": [...]}`` →
``{"predictions": [...]}``) and the Open Inference Protocol V2 (``InferRequest`` →
``InferResponse``). Input of the wrong shape is refused with ``InvalidInput`` (HTTP 400)
naming what was expected.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.utils.utils import get_predict_input, get_predict_response

from .calls import model_call



def _expected_features(model: Any) -> int | None:
    n = getattr(model, "n_features_in_", None)
    return int(n) if isinstance(n, (int, np.integer)) else None


def _as_2d(inputs: Any, features: int | None) -> Any:
    if isinstance(inputs, np.ndarray):
        if inputs.dtype == object:
            raise InvalidInput("instances must be lists of numbers of the same length")
        if inputs.ndim == 1 and inputs.size and features is not None:
            raise InvalidInput(f"each instance must be a list of {features} numbers, got a flat list")
        if features is not None and inputs.ndim == 2 and inputs.shape[1] != features:
            raise InvalidInput(f"each instance must have {features} features, got {inputs.shape[1]}")
    return inputs


class FormatPredictor(Model):
    """One registered model version, served under the endpoint's name."""

    def __init__(self, name: str, model: Any, fmt: str, pre: Callable | None = None, post: Callable | None = None):
        super().__init__(name)
        self.model = model
        self.format = fmt
        self.pre = pre
        self.post = post
        self._call, features = model_call(model, fmt)
        self.features = features if features is not None else _expected_features(model)
        self.ready = True

    def predict(self, payload: Any, headers: dict | None = None) -> Any:
        return self.respond(payload, self.run(self.inputs(payload)))

    def inputs(self, payload: Any) -> Any:
        """The request's inputs (V1 or V2), preprocessed and checked."""
        try:
            inputs = get_predict_input(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"expected {{'instances': [...]}} (V1) or V2 inputs: {exc}") from exc
        if self.pre is not None:
            inputs = self.pre(inputs)
        return _as_2d(inputs, self.features)

    def run(self, inputs: Any) -> Any:
        try:
            return self._call(inputs)
        except InvalidInput:
            raise
        except (ValueError, TypeError, RuntimeError) as exc:
            raise InvalidInput(f"the model refused the input: {exc}") from exc

    def respond(self, payload: Any, result: Any) -> Any:
        if self.post is not None:
            result = self.post(result)
        if not isinstance(result, (np.ndarray, list)) and not hasattr(result, "iterrows"):
            result = np.asarray(result)
        return get_predict_response(payload, result, self.name)


class BatchingPredictor(FormatPredictor):
    """A predictor that groups concurrent requests (KServe's batcher, in the server):
    rows wait until ``max_batch_size`` of them are there or the first has waited
    ``max_latency_ms``, then the model predicts them at once and each request gets its own
    rows back (an error of the batch is every request's error)."""

    def __init__(self, *args: Any, max_batch_size: int = 32, max_latency_ms: int = 10, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_batch_size, self.max_latency = max_batch_size, max_latency_ms / 1000
        self.pending: list[tuple[Any, Any]] = []
        self.rows = 0
        self.timer = None

    async def predict(self, payload: Any, headers: dict | None = None) -> Any:
        import asyncio

        inputs = np.asarray(self.inputs(payload))
        future = asyncio.get_running_loop().create_future()
        self.pending.append((inputs, future))
        self.rows += len(inputs)
        if self.rows >= self.max_batch_size:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.max_latency, self.flush)
        return self.respond(payload, await future)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending, self.rows = self.pending, [], 0
        if not batch:
            return
        try:
            out = np.asarray(self.run(np.concatenate([x for x, _ in batch]) if len(batch) > 1 else batch[0][0]))
        except Exception as exc:  # noqa: BLE001  (the batch's error is each request's)
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for x, future in batch:
            future.set_result(out[start : start + len(x)])
            start += len(x)
