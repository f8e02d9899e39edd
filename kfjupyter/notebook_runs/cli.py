"""``kfjupyter run``: a notebook executed with papermill as a tracked job, or a sweep of runs.

    kfjupyter run train.ipynb -p lr 0.01 -p epochs 3
    kfjupyter run train.ipynb -f params.yaml -y "layers: [1, 2]" --cwd data/
    kfjupyter run train.ipynb --sweep lr=0.1,0.01 --sweep layers=1,2 --max-parallel 2

Parameters are read as papermill reads them: ``-p`` values as ``papermill -p`` does
(``True``/``False``/``None``, then int, then float, else text), ``-r`` as raw text, ``-y``
YAML text, ``-f`` a YAML file, ``-b`` base64 YAML; later sources win (``-b``, ``-f``, ``-y``,
``-p``, ``-r``, as in papermill). A single run prints the notebook's progress and its cells'
output (its job log) as it goes (``--no-log-output``: progress only); a sweep prints each
run's state changes, then the results table. Ctrl-C, SIGTERM and SIGHUP cancel what was
started. With ``--no-wait`` the job id is printed and the job runs on.
"""

from __future__ import annotations

import argparse
import base64
import signal
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
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="a parameter (repeatable); VALUE read as papermill -p reads it: True, False, None, int, "
                     "float, else text")  # fmt: skip
    run.add_argument("-r", "--parameter-raw", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="a parameter read as raw text (repeatable)")  # fmt: skip
    run.add_argument("-y", "--parameters-yaml", action="append", metavar="YAML", default=[],
                     help="parameters as YAML text (repeatable)")  # fmt: skip
    run.add_argument("-f", "--parameters-file", action="append", metavar="FILE", default=[],
                     help="parameters from a YAML file (repeatable)")  # fmt: skip
    run.add_argument("-b", "--parameters-base64", action="append", metavar="B64", default=[],
                     help="parameters as base64-encoded YAML (repeatable)")  # fmt: skip
    run.add_argument(
        "--sweep",
        action="append",
        metavar="NAME=V1,V2,…",
        default=[],
        help="sweep a parameter over comma-separated values (repeatable: the grid of all combinations)",
    )
    run.add_argument("--name", metavar="N", help="job name (default: from the notebook's file name)")
    run.add_argument("--experiment", metavar="NAME",
                     help="the experiment its run (a sweep: every run) is filed under (default: the notebook's name)")  # fmt: skip
    run.add_argument("-k", "--kernel", help="Jupyter kernel (default: the notebook's, else python3; python is python3)")
    run.add_argument("-l", "--language", help="language of the parameters (default: the notebook's, else its kernel's)")
    run.add_argument("--cwd", metavar="DIR", help="folder the kernel runs in (default: the notebook's folder)")
    run.add_argument("--report-mode", action="store_true", help="hide the cells' input in the output notebook")
    run.add_argument("--execution-timeout", type=int, metavar="S", help="seconds each cell may run (default: no limit)")
    run.add_argument("--start-timeout", type=int, default=60, metavar="S", help="seconds the kernel may take to start (default 60)")
    run.add_argument("--prepare-only", action="store_true",
                     help="write the output notebook with the parameters injected, without running it")  # fmt: skip
    run.add_argument("--log-output", action=argparse.BooleanOptionalAction, default=True,
                     help="print the cells' output as the run goes (default; --no-log-output: progress only)")  # fmt: skip
    run.add_argument("--max-parallel", type=int, default=None, metavar="N", help="runs of a sweep at once (default: CPUs)")
    run.add_argument("--no-wait", action="store_true", help="print the job id and return; the job runs on")
    run.set_defaults(func=_run)


def collect_parameters(args) -> dict:
    """The parameters of ``kfjupyter run``'s options, merged in papermill's order."""
    from pathlib import Path

    from ..errors import InvalidOptionError
    from .params import parse_value, parse_yaml_parameters

    parameters: dict = {}
    for text in args.parameters_base64:
        try:
            decoded = base64.b64decode(text)
        except ValueError as exc:
            raise InvalidOptionError(f"invalid -b value: not base64 ({exc})") from None
        parameters.update(parse_yaml_parameters(decoded, "the -b parameters"))
    for name in args.parameters_file:
        path = Path(name).expanduser()
        if not path.is_file():
            raise InvalidOptionError(f"parameters file not found: {path}")
        parameters.update(parse_yaml_parameters(path.read_bytes(), f"the parameters of {path}"))
    for text in args.parameters_yaml:
        parameters.update(parse_yaml_parameters(text, "the -y parameters"))
    seen: set = set()
    for name, value in [*((n, parse_value(v)) for n, v in args.parameter), *args.parameter_raw]:
        if name in seen:
            raise InvalidOptionError(f"parameter {name!r} given twice")
        seen.add(name)
        parameters[name] = value
    return parameters


def _run(args) -> int:
    from .kernels import pool
    from .params import parse_sweep_args

    parameters = collect_parameters(args)
    sweep = parse_sweep_args(args.sweep) if args.sweep else None
    # this command starts one run: it keeps no warm kernel for a next one (called in a
    # longer-lived process, that process's setting is back once the command returns)
    kept, pool().keep = pool().keep, 0
    try:
        return _start_and_follow(args, parameters, sweep)
    finally:
        pool().keep = kept


def _start_and_follow(args, parameters: dict, sweep: dict | None) -> int:
    from .api import Sweep, run_notebook

    handle = run_notebook(
        args.notebook,
        parameters,
        sweep=sweep,
        name=args.name,
        kernel=args.kernel,
        max_parallel=args.max_parallel,
        cwd=args.cwd,
        language=args.language,
        report_mode=args.report_mode,
        execution_timeout=args.execution_timeout,
        start_timeout=args.start_timeout,
        prepare_only=args.prepare_only,
        experiment=args.experiment,
    )
    if isinstance(handle, Sweep):
        print(f"sweep {handle.id}: {len(handle.grid)} run(s) of {args.notebook}, {handle.max_parallel} at a time", flush=True)
    else:
        print(f"run {handle.id}: {args.notebook}", flush=True)
    if args.no_wait:
        print(f"running on; follow it with: kfjupyter jobs logs -f {handle.id}")
        return 0
    try:
        with interrupted_by(signal.SIGTERM, signal.SIGHUP):
            return _follow_sweep(handle) if isinstance(handle, Sweep) else _follow_run(handle, args.log_output)
    except KeyboardInterrupt as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130


class interrupted_by:
    """While inside, the signals given act as Ctrl-C (KeyboardInterrupt): a blocking
    ``kfjupyter run`` that is terminated or loses its terminal cancels its job."""

    def __init__(self, *signals: int):
        self.signals = signals
        self.old: dict = {}

    def _raise(self, signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def __enter__(self):
        for sig in self.signals:
            self.old[sig] = signal.signal(sig, self._raise)
        return self

    def __exit__(self, *exc):
        for sig, old in self.old.items():
            signal.signal(sig, old)


def _follow_run(run, log_output: bool = True) -> int:
    from .. import status as st
    from .runner import OWN_LINE

    def show(event) -> None:
        if event.kind == "line" and (log_output or OWN_LINE.match(event.line)):
            print(event.line, flush=True)

    run.follow(show, channels=[run.log_channel()])
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
