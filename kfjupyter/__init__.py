"""kfjupyter: from a Jupyter notebook to Kubeflow without leaving the notebook.

The public API::

    kfjupyter.train(fn_or_source, workers=2, …)  -> Job     distributed training
    kfjupyter.tune(fn_or_source, "val_loss", …) -> Study    hyperparameter search
    kfjupyter.param("lr", low=…, high=…, log=True)           a hyperparameter of the cell
    kfjupyter.report(step=…, **metrics)                      metrics from any rank
    kfjupyter.output_dir()                      -> Path      where a rank saves outputs
    kfjupyter.jobs.get(id) / kfjupyter.jobs.list()           re-attach to jobs
    kfjupyter.register_model(name, model, …) -> ModelVersion  the model registry
    kfjupyter.load_model("iris@production")                  (kfjupyter.registry: aliases, search …)
    kfjupyter.deploy("iris@production", name="iris") -> Endpoint  serve a model version
    kfjupyter.batch_predict("iris@production", data, workers=N) -> BatchJob  batch inference
    kfjupyter.pipelines.from_notebook(path) -> Pipeline       tagged cells → pipeline steps
    kfjupyter.run_pipeline(path_or_pipeline, …) -> PipelineRun  run it (locally, or on KFP)
    kfjupyter.run_notebook(path, parameters={…}, sweep={…})  papermill runs as jobs
    kfjupyter.log_params(**params)                           more params of the running job's run
    kfjupyter.runs(experiment=…, filter=…, order_by=…)       every job is a run: a DataFrame
    kfjupyter.compare(run_a, run_b, …)                       params that differ, metrics, curves

In a notebook, ``%load_ext kfjupyter`` adds ``%%kf_train``, ``%%kf_tune``, ``%kf_jobs`` and
``%kf_models``.

Heavy modules (SQLAlchemy, IPython, kubernetes) load on first use, so a rank that only
calls ``report`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runtime.bootstrap import log_params, output_dir, param, report

__version__ = "0.1.0"

__all__ = [
    "batch_predict",
    "deploy",
    "Endpoint",
    "Job",
    "jobs",
    "load_ipython_extension",
    "load_model",
    "log_params",
    "output_dir",
    "param",
    "pipelines",
    "run_notebook",
    "run_pipeline",
    "register_model",
    "registry",
    "report",
    "runs",
    "compare",
    "Study",
    "train",
    "tune",
    "unload_ipython_extension",
]

if TYPE_CHECKING:  # pragma: no cover
    from . import jobs
    from .jobs import Job
    from . import registry
    from .registry import load_model, register_model
    from .training.api import train
    from .tuning.api import tune
    from .tuning.study import Study


def __getattr__(name: str) -> Any:
    if name == "train":
        from .training.api import train

        return train
    if name == "tune":
        from .tuning.api import tune

        return tune
    if name == "Study":
        from .tuning.study import Study

        return Study
    if name == "Job":
        from .jobs import Job

        return Job
    if name in ("register_model", "load_model"):
        from . import registry

        return getattr(registry, name)
    if name in ("deploy", "Endpoint"):
        from . import serving

        return getattr(serving, name)
    if name == "batch_predict":
        from .serving.batch import batch_predict

        return batch_predict
    if name == "run_pipeline":
        from .pipelines import run_pipeline

        return run_pipeline
    if name in ("runs", "compare"):
        from . import tracking

        return getattr(tracking, name)
    if name == "run_notebook":
        from .notebook_runs import run_notebook

        return run_notebook
    if name in ("registry", "pipelines", "notebook_runs", "tracking"):
        import importlib

        return importlib.import_module("." + name, __name__)
    if name == "jobs":
        import importlib

        return importlib.import_module(".jobs", __name__)
    raise AttributeError(f"module 'kfjupyter' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    pass
