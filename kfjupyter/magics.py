"""IPython magics: thin sugar over the Python API.

``%%kf_train`` → :func:`kfjupyter.train`; ``%%kf_tune`` → :func:`kfjupyter.tune`;
``%kf_jobs`` → :mod:`kfjupyter.jobs`; ``%kf_models`` → :mod:`kfjupyter.registry`;
``%kf_deploy`` → :func:`kfjupyter.deploy`; ``%kf_pipeline`` → :mod:`kfjupyter.pipelines`.
Parsing options and showing results is all they do; a kfjupyter error (a refused
option, an unknown job, model or endpoint …) shows as one line naming the problem
(:func:`one_line_errors`), never a traceback.
"""

from __future__ import annotations

import functools

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import jobs
from .errors import KFJupyterError, PreflightError
from .training.api import train
from .validation import parse_env_pairs
from .widgets.job_view import show, view_for


def _parse(magic, line: str):
    try:
        return parse_argstring(magic, line)
    except UsageError:
        raise
    except SystemExit as exc:  # argparse's way of saying "bad option"
        raise UsageError(f"invalid options {line!r}: {exc}") from None


def one_line_errors(magic):
    """Every magic's wrapper: a :class:`KFJupyterError` it meets becomes IPython's
    ``UsageError`` with the error's message, which IPython shows as one line. A job that
    ended Failed or Cancelled (:class:`~kfjupyter.jobs.JobFailedError`) is no usage error:
    it is raised as it is, and IPython shows its short text (job, failing rank, last lines);
    so is a :class:`~kfjupyter.errors.PreflightError` (its ``culprit`` names the value or
    module of the cell at fault, for a front end to point at), also shown as one line."""

    @functools.wraps(magic)
    def run(*args, **kwargs):
        try:
            return magic(*args, **kwargs)
        except (jobs.JobFailedError, PreflightError):
            raise
        except KFJupyterError as exc:
            raise UsageError(str(exc)) from None

    return run


@magics_class
class KFMagics(Magics):
    @magic_arguments()
    @argument("--workers", "-w", type=int, default=1, help="number of torch.distributed ranks")
    @argument("--name", "-n", default=None, help="job name (DNS-1123 label)")
    @argument("--backend", "-b", default=None, help="local (default) or kubernetes")
    @argument("--gpus", type=int, default=0, help="GPUs per worker")
    @argument("--cpu", default=None, help="CPUs per worker, e.g. 2 or 500m")
    @argument("--memory", default=None, help="memory per worker, e.g. 4Gi")
    @argument("--image", default=None, help="container image (kubernetes backend)")
    @argument("--namespace", default=None, help="Kubernetes namespace")
    @argument("--env", "-e", action="append", default=[], metavar="K=V", help="environment variable")
    @argument("--out", "-o", default=None, metavar="VAR", help="bind the Job handle to VAR")
    @argument("--no-wait", action="store_true", help="return at once; the job runs on")
    @argument("--experiment", default=None, help="the experiment of the job's run (default: the notebook's name)")
    @cell_magic
    @one_line_errors
    def kf_train(self, line: str, cell: str):
        """Run the cell as distributed torch.distributed ranks (see kfjupyter.train)."""
        args = _parse(self.kf_train, line)
        env = parse_env_pairs(args.env)
        job = train(
            self.shell.transform_cell(cell),
            workers=args.workers,
            name=args.name,
            backend=args.backend,
            gpus=args.gpus,
            cpu=args.cpu,
            memory=args.memory,
            image=args.image,
            env=env,
            namespace=args.namespace,
            user_ns=self.shell.user_ns,
            history=[c for c in self.shell.user_ns.get("In", []) if isinstance(c, str)],
            experiment=args.experiment,
        )
        if args.out:
            self.shell.user_ns[args.out] = job
        show(job, view_for(job, blocking=not args.no_wait), wait=not args.no_wait)
        return None

    @magic_arguments()
    @argument("--objective", required=True, help="the metric to optimise, as given to kfjupyter.report")
    @argument("--direction", default="minimize", help="minimize (default) or maximize")
    @argument("--trials", type=int, default=None, help="the study's budget of trials (default 10)")
    @argument("--parallel", type=int, default=1, help="trials running at once")
    @argument("--algorithm", default="tpe", help="random, grid, tpe (default), multivariate-tpe, cmaes, sobol")
    @argument("--early-stopping", default=None, help="median or hyperband (local only)")
    @argument("--workers-per-trial", type=int, default=1, help="run each trial as N distributed ranks")
    @argument("--max-failed", type=int, default=3, help="failed trials tolerated before the study fails")
    @argument("--resume", default=None, metavar="NAME", help="continue the study NAME (id or name)")
    @argument("--param", "-p", action="append", default=[], metavar="NAME=SPEC",
              help="a parameter: NAME=LOW:HIGH[:STEP][:log] or NAME=A,B,C")
    @argument("--out", "-o", default=None, metavar="VAR",
              help="bind the best parameters (a dict) to VAR when the study ends; with --no-wait, the Study")
    @argument("--name", "-n", default=None, help="study name (DNS-1123 label, at most 34 characters)")
    @argument("--backend", "-b", default=None, help="local (default) or kubernetes")
    @argument("--seed", type=int, default=None, help="seed of the sampler")
    @argument("--gpus", type=int, default=0, help="GPUs per trial worker")
    @argument("--cpu", default=None, help="CPUs per trial worker, e.g. 2 or 500m")
    @argument("--memory", default=None, help="memory per trial worker, e.g. 4Gi")
    @argument("--image", default=None, help="container image (kubernetes backend)")
    @argument("--namespace", default=None, help="Kubernetes namespace")
    @argument("--env", "-e", action="append", default=[], metavar="K=V", help="environment variable")
    @argument("--no-wait", action="store_true", help="return at once; the study runs on")
    @argument("--experiment", default=None, help="the experiment of the study's run (default: the notebook's name)")
    @cell_magic
    @one_line_errors
    def kf_tune(self, line: str, cell: str):
        """Search the hyperparameters the cell declares with kfjupyter.param (see kfjupyter.tune)."""
        from .tuning.api import tune
        from .widgets.study_view import view_for as study_view

        args = _parse(self.kf_tune, line)
        study = tune(
            self.shell.transform_cell(cell),
            args.objective,
            direction=args.direction,
            trials=args.trials,
            parallel=args.parallel,
            algorithm=args.algorithm,
            early_stopping=args.early_stopping,
            workers_per_trial=args.workers_per_trial,
            max_failed=args.max_failed,
            params=args.param,
            name=args.name,
            backend=args.backend,
            resume=args.resume,
            gpus=args.gpus,
            cpu=args.cpu,
            memory=args.memory,
            image=args.image,
            env=parse_env_pairs(args.env),
            namespace=args.namespace,
            seed=args.seed,
            user_ns=self.shell.user_ns,
            history=[c for c in self.shell.user_ns.get("In", []) if isinstance(c, str)],
            experiment=args.experiment,
        )
        if args.no_wait and args.out:
            self.shell.user_ns[args.out] = study
        show(study.job, study_view(study, blocking=not args.no_wait), wait=not args.no_wait)
        if args.no_wait:
            return None
        if args.out and study.best_params is not None:
            self.shell.user_ns[args.out] = study.best_params
        return None

    @magic_arguments()
    @argument("job_id", nargs="?", default=None, help="a job id: show it (live while it runs)")
    @argument("--cancel", action="store_true", help="cancel the job")
    @argument("--wait", action="store_true", help="block until the job ends")
    @argument("--kind", default=None)
    @argument("--status", default=None)
    @argument("--limit", type=int, default=20)
    @line_magic
    @one_line_errors
    def kf_jobs(self, line: str):
        """List the workspace's jobs, or re-attach to one: %kf_jobs [ID] [--cancel] [--wait]."""
        args = _parse(self.kf_jobs, line)
        if args.job_id is None:
            from IPython.display import display

            from .widgets.tables import jobs_table

            display(jobs_table(jobs.list(kind=args.kind, status=args.status, limit=args.limit)))
            return None
        job = jobs.get(args.job_id)
        if args.cancel:
            job.cancel()
        return show(job, view_for(job, blocking=args.wait), wait=args.wait)


def _models_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="%kf_models", description="Browse the model registry.", add_help=True)
    parser.add_argument("--out", "-o", dest="top_out", default=None, metavar="VAR", help="bind the result to VAR")
    sub = parser.add_subparsers(dest="action")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--framework", "-f", default=None)
    common.add_argument("--alias", "-a", default=None)
    common.add_argument("--state", default=None, help="LIVE or ARCHIVED")
    common.add_argument("--limit", type=int, default=50)
    common.add_argument("--offset", type=int, default=0)
    common.add_argument("--out", "-o", default=None, metavar="VAR", help="bind the result to VAR")
    ls = sub.add_parser("list", parents=[common], help="registered models")
    ls.add_argument("query", nargs="?", default=None)
    search = sub.add_parser("search", parents=[common], help="versions of all models")
    search.add_argument("query", nargs="?", default=None)
    search.add_argument("--model", "-m", default=None)
    search.add_argument("--metric", action="append", default=[], metavar="NAME>=X", help="NAME>=X, NAME<=X, NAME=LOW..HIGH")
    search.add_argument("--order-by", default="created", help="created, number, name or metric:NAME")
    search.add_argument("--asc", action="store_true", help="ascending order")
    show = sub.add_parser("show", help="a model and its versions (NAME), or one version (NAME:N, NAME@ALIAS)")
    show.add_argument("ref")
    show.add_argument("--out", "-o", default=None, metavar="VAR")
    alias = sub.add_parser("alias", help="point an alias at a version (or --delete it)")
    alias.add_argument("model")
    alias.add_argument("alias")
    alias.add_argument("version", nargs="?", default=None)
    alias.add_argument("--delete", action="store_true")
    alias.add_argument("--reason", default=None)
    alias.add_argument("--out", "-o", default=None, metavar="VAR")
    history = sub.add_parser("history", help="every move of a model's aliases")
    history.add_argument("model")
    history.add_argument("alias", nargs="?", default=None)
    history.add_argument("--out", "-o", default=None, metavar="VAR")
    return parser


@magics_class
class KFModelsMagics(Magics):
    @line_magic
    @one_line_errors
    def kf_models(self, line: str):
        """The model registry: %kf_models [list|search|show|alias|history] … (%kf_models -h)."""
        import shlex

        from IPython.display import display

        from . import registry
        from .registry import display as shown

        try:
            args = _models_parser().parse_args(shlex.split(line))
        except SystemExit as exc:
            if exc.code in (0, None):  # -h
                return None
            raise UsageError(f"invalid %kf_models arguments {line!r}") from None
        action = args.action or "list"
        if action == "list":
            value = registry.list_models(
                getattr(args, "query", None), framework=getattr(args, "framework", None),
                alias=getattr(args, "alias", None), state=getattr(args, "state", None),
                limit=getattr(args, "limit", 50), offset=getattr(args, "offset", 0),
            )
            view = shown.models_table(value)
        elif action == "search":
            from .registry.entities import parse_metric_filters

            value = registry.search_versions(
                args.query, model=args.model, framework=args.framework, alias=args.alias, state=args.state,
                metrics=parse_metric_filters(args.metric), order_by=args.order_by, descending=not args.asc,
                limit=args.limit, offset=args.offset,
            )
            view = shown.versions_table(value)
        elif action == "show" and (":" in args.ref or "@" in args.ref):
            value = registry.get_version(args.ref)
            view = shown.VersionCard(value)
        elif action == "show":
            value = registry.get_model(args.ref)
            view = shown.versions_table(registry.list_versions(args.ref, limit=50))
            view.caption = repr(value)
        elif action == "alias" and args.delete:
            value = registry.delete_alias(args.model, args.alias, reason=args.reason)
            view = shown.history_table(registry.alias_history(args.model, args.alias))
        elif action == "alias":
            if args.version is None:
                raise UsageError("%kf_models alias MODEL ALIAS VERSION (or --delete)")
            value = registry.set_alias(args.model, args.alias, args.version, reason=args.reason)
            view = shown.VersionCard(value)
        else:
            value = registry.alias_history(args.model, args.alias)
            view = shown.history_table(value)
        display(view)
        out = getattr(args, "out", None) or args.top_out
        if out:
            self.shell.user_ns[out] = value
        return None


@magics_class
class KFServingMagics(Magics):
    @magic_arguments()
    @argument("model", nargs="?", default=None, help="a registry reference: iris@production, iris:3, iris")
    @argument("--name", "-n", default=None, help="endpoint name (DNS-1123 label; default: the model's)")
    @argument("--canary", default=None, metavar="REF", help="a second version taking --canary-percent of the traffic")
    @argument("--canary-percent", type=int, default=10, help="share of the canary, 0-100 (default 10)")
    @argument("--backend", "-b", default=None, help="local (default) or kubernetes")
    @argument("--port", type=int, default=None, help="local port on 127.0.0.1 (default: a free one)")
    @argument("--namespace", default=None, help="Kubernetes namespace")
    @argument("--storage-uri", default=None, help="the artifact's URI as the cluster reads it (kubernetes)")
    @argument("--promote", default=None, metavar="ENDPOINT", help="give the canary of ENDPOINT all the traffic")
    @argument("--rollback", default=None, metavar="ENDPOINT", help="drop the canary of ENDPOINT / undo its promote")
    @argument("--undeploy", default=None, metavar="ENDPOINT", help="stop serving ENDPOINT")
    @argument("--out", "-o", default=None, metavar="VAR", help="bind the Endpoint handle to VAR")
    @line_magic
    @one_line_errors
    def kf_deploy(self, line: str):
        """Serve a registered model: %kf_deploy iris@production [--name iris] [--canary iris@staging]."""
        from .serving import deploy, get_endpoint

        args = _parse(self.kf_deploy, line)
        for action in ("promote", "rollback", "undeploy"):
            target = getattr(args, action)
            if target:
                return getattr(get_endpoint(target), action)()
        if not args.model:
            raise UsageError("%kf_deploy needs a model reference, e.g. %kf_deploy iris@production")
        endpoint = deploy(
            args.model, name=args.name, canary=args.canary, canary_percent=args.canary_percent,
            backend=args.backend, port=args.port, namespace=args.namespace, storage_uri=args.storage_uri,
        )
        if args.out:
            self.shell.user_ns[args.out] = endpoint
        return endpoint


def _pipeline_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="%kf_pipeline",
        description="Tagged notebook cells as a pipeline. The notebook is read as saved on disk: "
        "save it (Ctrl+S) after editing tags or cells.",
    )
    sub = parser.add_subparsers(dest="action")
    comp = sub.add_parser("compile", help="the DAG and the steps of a notebook (default: this one, as saved)")
    comp.add_argument("notebook", nargs="?", default=None)
    comp.add_argument("--out", "-o", default=None, metavar="VAR", help="bind the Pipeline to VAR")
    run = sub.add_parser("run", help="run the notebook's pipeline (default: this notebook, as saved)")
    run.add_argument("notebook", nargs="?", default=None)
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    run.add_argument("--resume", default=None, metavar="RUN_ID", help="rerun a failed run from its failed steps")
    run.add_argument("--backend", "-b", default=None, help="local (default) or kubernetes")
    run.add_argument("--no-cache", action="store_true", help="run every step, cached or not")
    run.add_argument("--max-parallel", type=int, default=None, help="steps at once (default: CPU count, >= 2)")
    run.add_argument("--no-wait", action="store_true", help="return at once; the run goes on")
    run.add_argument("--out", "-o", default=None, metavar="VAR", help="bind the PipelineRun to VAR")
    run.add_argument("--experiment", default=None, help="the experiment of the run (default: the notebook's name)")
    debug = sub.add_parser("debug", help="load a step's inputs and parameters into this kernel")
    debug.add_argument("run_id")
    debug.add_argument("step")
    show = sub.add_parser("show", help="a run's steps and why each was (not) cached")
    show.add_argument("run_id")
    logs = sub.add_parser("logs", help="a step's log")
    logs.add_argument("run_id")
    logs.add_argument("step")
    cancel = sub.add_parser("cancel", help="stop a run")
    cancel.add_argument("run_id")
    sub.add_parser("list", help="pipeline runs of the workspace")
    return parser


@magics_class
class KFPipelineMagics(Magics):
    @line_magic
    @one_line_errors
    def kf_pipeline(self, line: str):
        """Pipelines from tagged cells: %kf_pipeline compile|run|debug|show|logs|cancel|list (-h)."""
        import os
        import shlex

        from IPython.display import display

        from . import pipelines
        from .pipelines import api
        from .widgets.pipeline_view import view_for as steps_view
        from .widgets.tables import jobs_table

        try:
            args = _pipeline_parser().parse_args(shlex.split(line))
        except SystemExit as exc:
            if exc.code in (0, None):  # -h
                return None
            raise UsageError(f"invalid %kf_pipeline arguments {line!r} (see %kf_pipeline -h)") from None
        action = args.action or "compile"
        notebook = getattr(args, "notebook", None)
        if action in ("compile", "run") and notebook is None:
            notebook = os.environ.get("JPY_SESSION_NAME")
            if not notebook:
                raise UsageError(f"%kf_pipeline {action}: name the notebook (this kernel does not know its own)")
        if action == "compile":
            pipeline = pipelines.from_notebook(notebook)
            display(pipeline)  # its DAG and steps table; text in a terminal
            if args.out:
                self.shell.user_ns[args.out] = pipeline
            return None
        if action == "run":
            run = api.run_pipeline(
                notebook, dict(args.param), backend=args.backend, resume=args.resume,
                max_parallel=args.max_parallel, cache=not args.no_cache, experiment=args.experiment,
            )
            if args.out:
                self.shell.user_ns[args.out] = run
            show(run, steps_view(run, blocking=not args.no_wait), wait=not args.no_wait)
            return None
        if action == "debug":
            api.debug(args.run_id, args.step, namespace=self.shell.user_ns)
            return None
        if action == "list":
            display(jobs_table(api.list_runs(), empty="no pipeline runs"))
            return None
        run = api.get_run(args.run_id)
        if action == "show":
            display(api.RunSteps(run))
        elif action == "logs":
            print(run.step_logs(args.step))
        elif action == "cancel":
            run.cancel()
            display(api.RunSteps(run))
        return None


def load_ipython_extension(ipython) -> None:
    import kfjupyter

    ipython.register_magics(KFMagics)
    ipython.register_magics(KFModelsMagics)
    ipython.register_magics(KFServingMagics)
    ipython.register_magics(KFPipelineMagics)
    ipython.push({"kfjupyter": kfjupyter}, interactive=False)
