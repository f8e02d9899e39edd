"""IPython magics: thin sugar over the Python API.

``%%kf_train`` → :func:`kfjupyter.train`; ``%%kf_tune`` → :func:`kfjupyter.tune`;
``%kf_jobs`` → :mod:`kfjupyter.jobs`.
Parsing options and showing results is all they do.
"""

from __future__ import annotations

import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import jobs
from . import status as st
from .errors import InvalidOptionError
from .training.api import train
from .validation import parse_env_pairs
from .widgets.job_view import follow_in_background, view_for


def _parse(magic, line: str):
    try:
        return parse_argstring(magic, line)
    except UsageError:
        raise
    except SystemExit as exc:  # argparse's way of saying "bad option"
        raise UsageError(f"invalid options {line!r}: {exc}") from None


def watch(job: jobs.Job, wait: bool, poll: float = 0.5) -> jobs.Job:
    """Show a live view of ``job``; with ``wait``, block until it ends (Ctrl-C cancels)."""
    from IPython.display import display

    view = view_for(job, blocking=wait)
    display(view)
    if not wait:
        follow_in_background(view)
        return job
    try:
        while job.status not in st.TERMINAL:
            view.refresh()
            time.sleep(poll)
    except KeyboardInterrupt:
        job.cancel()
        view.refresh()
        print(f"job {job.id} cancelled")
        raise
    view.refresh()
    return job


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
    @cell_magic
    def kf_train(self, line: str, cell: str):
        """Run the cell as distributed torch.distributed ranks (see kfjupyter.train)."""
        args = _parse(self.kf_train, line)
        try:
            env = parse_env_pairs(args.env)
        except InvalidOptionError as exc:
            raise UsageError(str(exc)) from None
        source = self.shell.transform_cell(cell)
        try:
            job = train(
                source,
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
            )
        except InvalidOptionError as exc:
            raise UsageError(str(exc)) from None
        if args.out:
            self.shell.user_ns[args.out] = job
        watch(job, wait=not args.no_wait)
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
    @cell_magic
    def kf_tune(self, line: str, cell: str):
        """Search the hyperparameters the cell declares with kfjupyter.param (see kfjupyter.tune)."""
        from .tuning.api import tune
        from .widgets.study_view import view_for as study_view

        args = _parse(self.kf_tune, line)
        try:
            env = parse_env_pairs(args.env)
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
                env=env,
                namespace=args.namespace,
                seed=args.seed,
                user_ns=self.shell.user_ns,
                history=[c for c in self.shell.user_ns.get("In", []) if isinstance(c, str)],
            )
        except InvalidOptionError as exc:
            raise UsageError(str(exc)) from None
        from IPython.display import display

        view = study_view(study, blocking=not args.no_wait)
        display(view)
        if args.no_wait:
            if args.out:
                self.shell.user_ns[args.out] = study
            follow_in_background(view)
            return None
        try:
            while study.job.status not in st.TERMINAL:
                view.refresh()
                time.sleep(0.5)
        except KeyboardInterrupt:
            study.cancel()
            view.refresh()
            print(f"study {study.id} cancelled")
            raise
        view.refresh()
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
    def kf_jobs(self, line: str):
        """List the workspace's jobs, or re-attach to one: %kf_jobs [ID] [--cancel] [--wait]."""
        args = _parse(self.kf_jobs, line)
        if args.job_id is None:
            from IPython.display import HTML, display

            from .widgets.tables import jobs_table

            display(HTML(jobs_table(jobs.list(kind=args.kind, status=args.status, limit=args.limit))))
            return None
        job = jobs.get(args.job_id)
        if args.cancel:
            job.cancel()
        return watch(job, wait=args.wait)


def load_ipython_extension(ipython) -> None:
    import kfjupyter

    ipython.register_magics(KFMagics)
    ipython.push({"kfjupyter": kfjupyter}, interactive=False)
