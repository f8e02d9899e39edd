"""The one call of a registered model, whatever its format: ``model_call(model, fmt)`` →
(a function of a 2-D batch returning a numpy array, the number of features it expects
when the model says). The model servers (:mod:`.predictors`) and batch inference
(:mod:`.batch_worker`) both predict through it; it needs no kserve."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def model_call(model: Any, fmt: str, method: str = "predict") -> tuple[Callable[[Any], Any], int | None]:
    """``method``: ``predict`` (default) or another method of a model that has it
    (``predict_proba`` of a classifier)."""
    if method != "predict":
        fn = getattr(model, method, None)
        if not callable(fn):
            raise TypeError(f"the model ({type(model).__name__}) has no {method}()")
        return (lambda x: np.asarray(fn(x))), None
    if fmt in ("sklearn", "xgboost"):
        if hasattr(model, "predict") and not type(model).__name__ == "Booster":
            return (lambda x: np.asarray(model.predict(x))), None
        import xgboost

        return (lambda x: np.asarray(model.predict(xgboost.DMatrix(np.asarray(x, dtype=np.float32))))), None
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

        return run, None
    if fmt == "onnx":
        session = model
        first = session.get_inputs()[0]

        def run(x):
            return np.asarray(session.run(None, {first.name: np.asarray(x, dtype=np.float32)})[0])

        return run, (first.shape[1] if len(first.shape) == 2 and isinstance(first.shape[1], int) else None)
    if fmt == "custom":
        if hasattr(model, "predict"):
            return (lambda x: model.predict(x)), None
        if callable(model):
            return model, None
        raise TypeError(f"a custom model must be callable or have predict(), got {type(model).__name__}")
    raise TypeError(f"unsupported format {fmt!r}")
