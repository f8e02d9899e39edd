"""``kfjupyter`` on the command line: the same jobs as the notebook sees."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import jobs
from .errors import KFJupyterError
from .widgets.tables import jobs_text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kfjupyter", description="kfjupyter jobs from the shell")
    sub = parser.add_subparsers(dest="group", required=True)
    jobs_p = sub.add_parser("jobs", help="list, inspect, follow and cancel jobs")
    cmd = jobs_p.add_subparsers(dest="command", required=True)
    ls = cmd.add_parser("list", help="jobs of the workspace, newest first")
    ls.add_argument("--kind")
    ls.add_argument("--status")
    ls.add_argument("--limit", type=int, default=50)
    show = cmd.add_parser("show", help="one job as JSON")
    show.add_argument("job_id")
    logs = cmd.add_parser("logs", help="a rank's log")
    logs.add_argument("job_id")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    logs.add_argument("--rank", type=int, default=0)
    logs.add_argument("--tail", type=int, default=None)
    cancel = cmd.add_parser("cancel", help="stop every rank of a job")
    cancel.add_argument("job_id")
    jobs_p.set_defaults(func=_jobs)
    # each capability adds its own commands; each sets ``func`` (args -> exit code or None)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


#: Modules with an ``add_commands(subparsers)`` for their command group.
_COMMAND_MODULES = ("kfjupyter.pipelines.cli", "kfjupyter.notebook_runs.cli")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KFJupyterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _jobs(args) -> None:
    if args.command == "list":
        print(jobs_text(jobs.list(kind=args.kind, status=args.status, limit=args.limit)))
    elif args.command == "show":
        job = jobs.get(args.job_id)
        job.refresh()
        print(json.dumps(job.to_dict(), indent=2, default=str))
    elif args.command == "logs":
        job = jobs.get(args.job_id)
        if args.follow:
            for line in job.logs(rank=args.rank, follow=True, tail=args.tail):
                print(line, flush=True)
        else:
            print(job.logs(rank=args.rank, tail=args.tail))
    elif args.command == "cancel":
        job = jobs.get(args.job_id).cancel()
        print(f"{job.id} {job.record.status}")


if __name__ == "__main__":
    sys.exit(main())
