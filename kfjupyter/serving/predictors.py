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
        self.features = _expected_features(model)
        self._call = self._make_call()
        self.ready = True

    def _make_call(self) -> Callable[[Any], Any]:
        fmt, model = self.format, self.model
        if fmt in ("sklearn", "xgboost"):
            if hasattr(model, "predict") and not type(model).__name__ == "Booster":
                return lambda x: np.asarray(model.predict(x))
            import xgboost

            return lambda x: np.asarray(model.predict(xgboost.DMatrix(np.asarray(x, dtype=np.float32))))
        if fmt == "pytorch":
            import torch

            if isinstance(model, dict):
                raise TypeError(
                    "a pytorch state dict needs its model class: deploy(..., model_class=YourModule) "
                    "or register the whole module"
                )
            model.eval()

            def run(x):
                with torch.no_grad():
                    out = model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
                return out.detach().cpu().numpy()

            return run
        if fmt == "onnx":
            session = model
            first = session.get_inputs()[0]

            def run(x):
                return np.asarray(session.run(None, {first.name: np.asarray(x, dtype=np.float32)})[0])

            self.features = first.shape[1] if len(first.shape) == 2 and isinstance(first.shape[1], int) else None
            return run
        if fmt == "custom":
            if isinstance(model, Model):
                return lambda x: model.predict(x)
            if hasattr(model, "predict"):
                return lambda x: model.predict(x)
            if callable(model):
                return model
            raise TypeError(f"a custom model must be callable or have predict(), got {type(model).__name__}")
        raise TypeError(f"unsupported format {fmt!r}")

    def predict(self, payload: Any, headers: dict | None = None) -> Any:
        try:
            inputs = get_predict_input(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"expected {{'instances': [...]}} (V1) or V2 inputs: {exc}") from exc
        if self.pre is not None:
            inputs = self.pre(inputs)
        inputs = _as_2d(inputs, self.features)
        try:
            result = self._call(inputs)
        except InvalidInput:
            raise
        except (ValueError, TypeError, RuntimeError) as exc:
            raise InvalidInput(f"the model refused the input: {exc}") from exc
        if self.post is not None:
            result = self.post(result)
        if not isinstance(result, (np.ndarray, list)) and not hasattr(result, "iterrows"):
            result = np.asarray(result)
        return get_predict_response(payload, result, self.name)
