"""Notebook cells → pipeline steps (Kale's tags), run locally or on Kubeflow Pipelines v2.

    pipeline = kfjupyter.pipelines.from_notebook("train.ipynb")   # -> Pipeline
    pipeline                                                      # the DAG, drawn (SVG)
    run = kfjupyter.pipelines.run_pipeline(pipeline, {"lr": 0.1})

Modules: :mod:`.tags` (the tag grammar), :mod:`.graph` (the compiler), :mod:`.codegen`
(step programs), :mod:`.stepruntime` (runs one step), :mod:`.render` (SVG / DOT),
:mod:`.model` (the Pipeline data). The engines load lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .graph import PipelineError, from_notebook
from .model import Edge, Parameter, Pipeline, Step

__all__ = [
    "compile_kfp",
    "debug",
    "Edge",
    "from_notebook",
    "get_run",
    "list_runs",
    "Parameter",
    "Pipeline",
    "PipelineError",
    "PipelineRun",
    "run_pipeline",
    "Step",
]

#: Lazily loaded public names → the module defining them.
_LAZY = {
    "run_pipeline": ".api",
    "PipelineRun": ".api",
    "get_run": ".api",
    "list_runs": ".api",
    "debug": ".api",
    "compile_kfp": ".kfp",
}

if TYPE_CHECKING:  # pragma: no cover
    from .api import PipelineRun, debug, get_run, list_runs, run_pipeline
    from .kfp import compile_kfp


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
