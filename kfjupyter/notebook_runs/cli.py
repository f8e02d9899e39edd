"""``kfjupyter run``: a notebook executed with papermill as a tracked job, or a sweep of runs.

    kfjupyter run train.ipynb -p lr 0.01 -p epochs 3
    kfjupyter run train.ipynb --sweep lr=0.1,0.01 --sweep layers=1,2 --max-parallel 2

Values are read like papermill's ``-p``: ``true``/``false``, ``none``, integers, floats,
else strings. A single run prints the notebook's progress (its job log) as it goes; a
sweep prints each run's state changes, then the results table. Ctrl-C cancels what was
started. With ``--no-wait`` the job id is printed and the job runs on.
"""

from __future__ import annotations

import sys


def add_commands(subparsers) -> None:
    """Add ``kfjupyter run`` to the ``kfjupyter`` parser."""
    run = subparsers.add_parser(
        "run",
        help="run a notebook with papermill as a job (parameters, sweeps)",
        description="Execute NOTEBOOK with papermill as a tracked job. The notebook is never modified; "
        "the executed copy is kept with the job.",
    )
    run.add_argument("notebook", metavar="NOTEBOOK")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="a parameter (repeatable); VALUE read like papermill -p: bool, none, int, float or text",
    )
    run.add_argument(
        "--sweep",
        action="append",
        metavar="NAME=V1,V2,…",
        default=[],
        help="sweep a parameter over comma-separated values (repeatable: the grid of all combinations)",
    )
    run.add_argument("--name", metavar="N", help="job name (default: from the notebook's file name)")
    run.add_argument("--kernel", help="Jupyter kernel (default: the notebook's, else python3)")
    run.add_argument("--max-parallel", type=int, default=None, metavar="N", help="runs of a sweep at once (default: CPUs)")
    run.add_argument("--no-wait", action="store_true", help="print the job id and return; the job runs on")
    run.set_defaults(func=_run)


def _run(args) -> int:
    from .api import Sweep, run_notebook
    from .params import parse_sweep_args, parse_value
    from ..errors import InvalidOptionError

    parameters = {}
    for name, value in args.parameter:
        if name in parameters:
            raise InvalidOptionError(f"parameter {name!r} given twice")
        parameters[name] = parse_value(value)
    sweep = parse_sweep_args(args.sweep) if args.sweep else None
    handle = run_notebook(
        args.notebook,
        parameters,
        sweep=sweep,
        name=args.name,
        kernel=args.kernel,
        max_parallel=args.max_parallel,
    )
    if isinstance(handle, Sweep):
        print(f"sweep {handle.id}: {len(handle.grid)} run(s) of {args.notebook}, {handle.max_parallel} at a time", flush=True)
    else:
        print(f"run {handle.id}: {args.notebook}", flush=True)
    if args.no_wait:
        print(f"running on; follow it with: kfjupyter jobs logs -f {handle.id}")
        return 0
    try:
        return _follow_sweep(handle) if isinstance(handle, Sweep) else _follow_run(handle)
    except KeyboardInterrupt as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130


def _follow_run(run) -> int:
    from .. import status as st

    run.follow(lambda e: print(e.line, flush=True) if e.kind == "line" else None, channels=[run.log_channel()])
    took = run.duration()
    print(f"{run.id} {run.record.status}" + (f" in {took:.1f} s" if took is not None else ""))
    if run.output_notebook.exists():
        print(f"output notebook: {run.output_notebook}")
    metrics = run.last_metrics()
    if metrics:
        print("metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in metrics.items()))
    if run.record.status != st.SUCCEEDED:
        if run.record.error:
            print(run.record.error, file=sys.stderr)
        return 1
    return 0


def _follow_sweep(sweep, poll: float = 0.5) -> int:
    from .. import status as st

    total = len(sweep.grid)

    def show(event) -> None:
        run = event.child
        if event.kind != "child" or (run.status == st.PENDING and not run.started_at):
            return
        shown = " ".join(f"{k}={v!r}" for k, v in (run.attrs.get("parameters") or {}).items())
        first = (run.error or "").splitlines()[:1] if run.status == st.FAILED else []
        print(f"[{run.position + 1}/{total}] {run.job_ref} {run.status}  {shown}" + (f"  {first[0]}" if first else ""),
              flush=True)  # fmt: skip

    sweep.follow(show, children=True, poll=poll)
    print()
    print(sweep.results_text())
    print()
    print(f"sweep {sweep.id} {sweep.record.status}")
    return 0 if sweep.record.status == st.SUCCEEDED else 1
