"""``kfjupyter pipelines …``: run, list, show, logs, cancel and debug pipeline runs.

    kfjupyter pipelines run NOTEBOOK [-p NAME VALUE]… [--resume RUN_ID] [--backend local]
                            [--no-cache] [--max-parallel N] [--no-wait]
    kfjupyter pipelines list [--notebook PATH]
    kfjupyter pipelines show RUN_ID [--json]        the steps, and why each was (not) cached
    kfjupyter pipelines logs RUN_ID STEP [-f]
    kfjupyter pipelines cancel RUN_ID
    kfjupyter pipelines debug RUN_ID STEP           an IPython shell with the step's inputs
    kfjupyter pipelines cache [--clear] [--older-than DAYS]   the step cache's size; empty it
"""

from __future__ import annotations

import json
import sys


def add_commands(subparsers) -> None:
    """Add this capability's command group to the ``kfjupyter`` parser."""
    group = subparsers.add_parser("pipelines", help="run tagged notebooks as pipelines (local DAG runner or KFP)")
    cmd = group.add_subparsers(dest="command", required=True)
    run = cmd.add_parser("run", help="run a tagged notebook as a pipeline")
    run.add_argument("notebook")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a pipeline parameter (repeatable)")
    run.add_argument("--resume", default=None, metavar="RUN_ID", help="rerun a failed run from its failed steps")
    run.add_argument("--backend", "-b", default=None, help="local (default) or kubernetes")
    run.add_argument("--no-cache", action="store_true", help="run every step, cached or not")
    run.add_argument("--max-parallel", type=int, default=None, help="steps at once (default: CPU count, at least 2)")
    run.add_argument("--no-wait", action="store_true", help="print the run id and return; the run goes on")
    ls = cmd.add_parser("list", help="pipeline runs, newest first")
    ls.add_argument("--notebook", default=None)
    ls.add_argument("--limit", type=int, default=50)
    show = cmd.add_parser("show", help="a run's steps, and why each was or was not cached")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="the run as JSON")
    logs = cmd.add_parser("logs", help="one step's log")
    logs.add_argument("run_id")
    logs.add_argument("step")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the step ends")
    logs.add_argument("--tail", type=int, default=None)
    cancel = cmd.add_parser("cancel", help="stop every step of a run")
    cancel.add_argument("run_id")
    debug = cmd.add_parser(
        "debug",
        help="an IPython shell with a step's inputs and parameters loaded (in a notebook: %%kf_pipeline debug)",
    )
    debug.add_argument("run_id")
    debug.add_argument("step")
    cache = cmd.add_parser("cache", help="how much the step cache holds; --clear empties it")
    cache.add_argument("--clear", action="store_true", help="forget the cached step results")
    cache.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                       help="with --clear: only results stored more than DAYS days ago")
    group.set_defaults(func=_main)


def _main(args) -> int | None:
    from . import api

    if args.command == "run":
        run = api.run_pipeline(
            args.notebook,
            dict(args.param),
            backend=args.backend,
            resume=args.resume,
            max_parallel=args.max_parallel,
            cache=not args.no_cache,
        )
        if args.no_wait:
            print(run.id)
            return 0
        return _follow(run)
    if args.command == "cache":
        return _cache(args)
    if args.command == "list":
        runs = api.list_runs(notebook=args.notebook, limit=args.limit)
        rows = [("id", "pipeline", "status", "steps", "created")]
        for run in runs:
            record = run.refresh()
            created = record.created_at.strftime("%Y-%m-%d %H:%M:%S") if record.created_at else ""
            rows.append((run.id, record.name, record.status, record.message or "", created))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        return 0
    run = api.get_run(args.run_id)
    if args.command == "show":
        if args.json:
            print(json.dumps(run.to_dict(), indent=2, default=str))
        else:
            print(api.steps_text(run))
            if run.record.error:
                print("\n" + run.record.error)
            metrics = run.pipeline_metrics()
            if metrics:
                print("\n" + "  ".join(f"{k}={v:g}" for k, v in metrics.items()))
        return 0
    if args.command == "logs":
        if args.follow:
            run.follow(lambda e: print(e.line, flush=True) if e.kind == "line" else None,
                       channels=[f"step/{args.step}"], tail=args.tail, cancel_on_interrupt=False)  # fmt: skip
        else:
            print(run.step_logs(args.step, tail=args.tail))
        return 0
    if args.command == "cancel":
        run.cancel()
        print(f"{run.id} {run.record.status}")
        return 0
    if args.command == "debug":
        return _debug(run, args.step)
    return 2


def _cache(args) -> int:
    from ..store.workspace import get_workspace
    from . import cache

    home = get_workspace().home
    if args.clear:
        older = None if args.older_than is None else args.older_than * 86400
        print(f"removed {cache.clear(home, older)} cached step result(s)")
    entries, size = cache.usage(home)
    print(f"step cache {cache.cache_root(home)}: {entries} result(s), {size / 2**20:.1f} MiB")
    return 0


def _follow(run) -> int:
    """Print step state changes until the run ends; Ctrl-C cancels it."""
    from .. import status as st
    from .api import steps_text

    def show(event) -> None:
        if event.kind == "child":
            step = event.child
            reason = (step.attrs or {}).get("cache_reason")
            why = f"  ({reason})" if step.status != st.RUNNING and reason else ""
            print(f"{step.name}: {step.status}{why}", flush=True)

    try:
        run.follow(show, children=True, poll=0.3)
    except KeyboardInterrupt as exc:
        print(exc, file=sys.stderr)
        return 130
    print()
    print(steps_text(run))
    if run.record.error:
        print("\n" + run.record.error, file=sys.stderr)
    return 0 if run.record.status == st.SUCCEEDED else 1


def _debug(run, step: str) -> int:
    """Load the step's inputs into a fresh namespace and open IPython on it (in a terminal)."""
    from .api import debug

    namespace: dict = {}
    pipeline = run.pipeline
    names = debug(run.id, step, namespace=namespace, quiet=True)
    code = pipeline.steps[step].source
    print(f"step {step} of run {run.id} ({run.status}): inputs and parameters {', '.join(names) or '(none)'}")
    if not sys.stdin.isatty():
        print(
            "stdin is not a terminal, so no shell was opened. In a notebook, run\n"
            f"    %kf_pipeline debug {run.id} {step}\n"
            f"or kfjupyter.pipelines.debug({run.id!r}, {step!r}) to load them into the kernel;\n"
            "the step's code:\n"
        )
        print(code)
        return 0
    setup = (pipeline.imports + "\n" + pipeline.functions).strip()
    if setup:
        exec(compile(setup, f"<{pipeline.name} imports and functions>", "exec"), namespace)  # the notebook's own cells
    from IPython import start_ipython
    from traitlets.config import Config

    config = Config()
    config.TerminalInteractiveShell.banner2 = (
        f"kfjupyter: step {step} of run {run.id}; loaded {', '.join(names) or 'nothing'} "
        f"(and the imports/functions cells). `step_code` holds the step's code; exec(step_code) reruns it.\n"
    )
    namespace["step_code"] = code
    start_ipython(argv=[], user_ns=namespace, config=config)
    return 0
