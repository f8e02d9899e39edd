"""The local pipeline runner: a detached supervisor per run that runs the DAG.

:func:`kfjupyter.pipelines.run_pipeline` writes ``JOB_DIR/launch.json`` and starts
``python -m kfjupyter.pipelines.local JOB_DIR`` in a session of its own (it survives a
kernel or server restart, like the training supervisor). The supervisor runs every step
as a plain Python process, ``stepruntime.py --program … --input … --output …`` (no
kernel per step), as soon as the steps it depends on are done, at most
``max_parallel`` at a time, and writes each step's state to the workspace store.

Each step is a process of its own. On Linux it is a fork of the supervisor, which has
imported the modules of the pipeline's ``imports`` cells once (before its first fork), so
a step starts in milliseconds instead of paying for the interpreter and its imports
again (and it tells the warm parent it came from which of them to import for the next
run: :data:`~kfjupyter.runtime.warm.HINTS`, see :meth:`PipelineSupervisor.preload`);
the fork resets its signals, output, environment, working directory and store
connections and runs ``stepruntime.main`` exactly as ``python stepruntime.py ARGS``
would. ``KFJUPYTER_PIPELINE_FORK=0``, a platform other than Linux, or imports that start
threads (a fork of a threaded process can deadlock) start every step as a fresh
``python stepruntime.py …`` instead.

The supervisor's loop is shaped for a short time from one step's end to the next one's
start: it sleeps on a pidfd of each running step (``os.pidfd_open``), so a step's exit
wakes it at once (a poll every :data:`POLL_S` where there are no pidfds), and of what a
finished step leaves to do only its outputs' content hashes come before the steps after
it are decided and forked; its cache entry, its record (``finished_at`` as it was when
the step was reaped) and the run's progress line follow, as do the records of the steps
just started (:meth:`PipelineSupervisor.flush`: in the order the events happened, and
always before anything else is recorded: a cached step, a failure, a cancel, the run's
end).

* a step whose cache key (:mod:`.cache`) has a stored result is not run: the result is
  linked into the run (status ``Cached``); with ``resume`` a step that succeeded in the
  resumed run with the same fingerprint reuses that run's result;
* every step's record says why it was or was not taken from the cache;
* a step that fails makes the run Failed (the error names it and carries its
  traceback); the steps after it are Skipped, independent branches finish;
* SIGTERM (cancel) stops every running step (SIGTERM, then SIGKILL) and the run is
  Cancelled.

Files of a run (``JOB_DIR``)::

    launch.json             what to run (pipeline, parameter values, options)
    run.log                 the supervisor's account: steps started, cached, finished
    steps/NAME/program.py   the step's generated program
    steps/NAME/log          its output (stdout and stderr)
    steps/NAME/metrics.jsonl  what it passed to kfjupyter.report
    steps/NAME/error.txt    its traceback, when it failed
    steps/NAME/outputs/VAR/ the values it passed on (stepruntime's value directories)
    outputs/NAME/           what it saved to kfjupyter.output_dir()
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import select
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator


from .. import status as st
from ..config import workspace_home
from ..runtime.detached import DetachedEngine
from ..runtime.engine import Channel, Channels, Features
from ..runtime.logs import read_lines, read_records
from ..runtime.processes import ForkedProcess, child_io, default_signals, die_with_parent, fork_child, kill_groups, start_in_group
from ..runtime.supervisor import LAUNCH, Supervisor
from . import cache as kcache
from . import steps as ksteps
from .model import Pipeline, Step

RUN_LOG = "run.log"
#: the loop's turn when it cannot sleep on the steps' pidfds
POLL_S = 0.01
#: the loop's longest sleep on pidfds (a step's exit wakes it at once; a cancel within this)
WAKE_S = 0.1

# step states beyond the job states
SKIPPED = st.SKIPPED
CACHED = st.CACHED
STEP_DONE = ksteps.DONE
STEP_TERMINAL = st.CHILD_TERMINAL
#: The run's own log, and its metric channel (a row per report of any step).
RUN_CHANNEL = Channel("run", "run", rank=0)
STEPS_METRICS = Channel("steps", "steps", rank=0)


def step_dir(job_dir: Path, step: str) -> Path:
    return job_dir / "steps" / step


def files_dir(job_dir: Path, step: str) -> Path:
    return job_dir / "outputs" / step


def value_dir(job_dir: Path, step: str, name: str) -> Path:
    return step_dir(job_dir, step) / "outputs" / name


def stepruntime_path() -> str:
    """The step runtime's file, found without importing the package around it."""
    return str(Path(__file__).resolve().parent / "stepruntime.py")


def param_text(ptype: str, value: Any) -> str:
    """A parameter value as stepruntime's ``--param NAME TYPE VALUE`` reads it."""
    if ptype == "bool":
        return "true" if value else "false"
    if ptype == "float":
        return repr(float(value))
    if ptype == "int":
        return str(int(value))
    if ptype == "json":
        return json.dumps(value)
    return str(value)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def imported_modules(source: str) -> list[str]:
    """Absolute module names the ``import`` statements of ``source`` load."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return list(dict.fromkeys(names))


def _installed(name: str) -> bool:
    """Whether the loaded module ``name`` comes from the standard library or the installed
    packages (not from the notebook's folder, nor from a project installed as editable)."""
    import sysconfig

    origin = getattr(sys.modules.get(name), "__file__", None)
    if not origin:
        return name in sys.builtin_module_names
    path = os.path.realpath(origin)
    roots = {os.path.realpath(p) for key, p in sysconfig.get_paths().items()
             if key in ("stdlib", "platstdlib", "purelib", "platlib") and p}  # fmt: skip
    return any(path.startswith(root + os.sep) for root in roots)


def fork_step(args: list[str], env: dict[str, str], workdir: str | None, log: Path,
              close: tuple[int, ...] = ()) -> ForkedProcess:  # fmt: skip
    """Run ``stepruntime.main(args)`` in a fork of this process: a process of its own,
    like ``python stepruntime.py ARGS``, without the interpreter start and the imports
    that the supervisor has already paid for. Its output goes to ``log``; the file
    descriptors ``close`` (the supervisor's own) are closed in it."""
    return fork_child(lambda: _step_child(args, env, workdir, log, close))


def _step_child(args: list[str], env: dict[str, str], workdir: str | None, log: Path,
                close: tuple[int, ...] = ()) -> int:  # fmt: skip
    """The forked step: its own process group, output, environment and folder, then the step."""
    for fd in close:
        os.close(fd)
    default_signals()
    os.setpgid(0, 0)  # a process group of its own: stopping the step stops what it started
    die_with_parent()
    child_io(log)
    os.environ.clear()
    os.environ.update(env)
    if workdir:
        os.chdir(workdir)
    sys.path[0] = os.getcwd()
    # the store's connections belong to the supervisor: never use them here
    store = sys.modules.get("kfjupyter.store.workspace")
    if store is not None:
        store.forget_workspaces()
    sys.argv = [stepruntime_path(), *args]
    from . import stepruntime

    return stepruntime.main(args) or 0


class PipelineSupervisor(Supervisor):
    what = "the kfjupyter pipeline supervisor"

    def __init__(self, job_dir: Path):
        super().__init__(job_dir)
        self.run_id: str = self.job_id
        self.pipeline = Pipeline.from_dict(self.launch["pipeline"])
        self.values: dict[str, Any] = self.launch["parameters"]
        self.max_parallel: int = self.launch["max_parallel"]
        self.use_cache: bool = self.launch.get("cache", True)
        self.resume: str | None = self.launch.get("resume")
        self.workdir: str | None = self.launch.get("workdir")
        self.status: dict[str, str] = {name: st.PENDING for name in self.pipeline.steps}
        self.hashes: dict[str, dict[str, str]] = {}  # step → {output name: content hash}
        self.running: dict[str, tuple[subprocess.Popen, dict]] = {}
        self.errors: list[str] = []
        self.home = workspace_home()  # the cache's home, known without loading the store
        self.fork = sys.platform.startswith("linux") and os.environ.get("KFJUPYTER_PIPELINE_FORK", "1") != "0"
        self._preloaded = False
        self._resumed: dict[str, Any] = {}
        self._pidfds: dict[str, int] = {}  # running step → a pidfd of its process
        self._later: list[Callable[[], None]] = []  # records still to write (see flush)
        self._log = open(self.job_dir / RUN_LOG, "a", buffering=1, encoding="utf-8")

    # -- plumbing ----------------------------------------------------------------
    def close(self) -> None:
        self._log.close()

    def say(self, text: str) -> None:
        self._log.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def set_step(self, name: str, status: str, **fields: Any) -> None:
        self.status[name] = status
        ksteps.update_step(self.store, self.run_id, name, status=status, **fields)

    def flush(self, until_a_step_ends: bool = False) -> None:
        """Write the records left for later (finished steps' results, started steps'
        records: see the module docstring), in the order they were left; with
        ``until_a_step_ends``, only until a running step has ended (the loop reaps it
        and starts what it unblocks first, then comes back for the rest)."""
        while self._later:
            if until_a_step_ends and self._a_step_ended():
                return
            self._later.pop(0)()

    def _a_step_ended(self) -> bool:
        fds = list(self._pidfds.values())
        return bool(fds) and bool(select.select(fds, [], [], 0)[0])

    def wait_for_steps(self) -> None:
        """Sleep until a running step ends (its pidfd is readable), at most :data:`WAKE_S`
        (:data:`POLL_S` without pidfds)."""
        if self._later:
            return  # records to write first (a step has ended meanwhile)
        fds = list(self._pidfds.values())
        if fds and len(fds) == len(self.running):
            select.select(fds, [], [], WAKE_S)
        else:
            time.sleep(POLL_S)

    def _watch(self, name: str, pid: int) -> None:
        try:
            self._pidfds[name] = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pass  # no pidfds here (an old kernel): the loop polls

    def _unwatch(self, name: str) -> None:
        fd = self._pidfds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def preload(self) -> None:
        """Import the modules of the ``imports`` cells once, here, so that every step
        (a fork of this process) starts with them loaded."""
        self._preloaded = True
        from . import stepruntime

        stepruntime._parser()  # noqa: SLF001  (built once, here: every fork has it)
        if self.workdir and self.workdir not in sys.path:
            sys.path.insert(0, self.workdir)  # the notebook's own modules
        started = time.monotonic()
        loaded, failed = [], []
        for module in imported_modules(self.pipeline.imports):
            try:
                importlib.import_module(module)
                loaded.append(module)
            except BaseException as exc:  # noqa: BLE001  (the step will fail with the real traceback)
                failed.append(f"{module} ({type(exc).__name__})")
        took = time.monotonic() - started
        import threading

        if threading.active_count() > 1:  # forking a process with threads can deadlock the child
            self.write_hints([])
            self.fork = False
            self.say(f"the imports cells started threads ({threading.active_count() - 1}): every step runs as "
                     "a fresh python process instead of a fork")
            return
        self.write_hints([m for m in loaded if _installed(m)])
        self.say(f"steps are forked from this process with {', '.join(loaded) or 'no modules'} loaded "
                 f"({took:.2f} s)" + (f"; could not preload {', '.join(failed)}" if failed else ""))

    def write_hints(self, modules: list[str]) -> None:
        """Name ``modules`` to the warm parents (``JOB_DIR/warm_hints.json``): the next
        run's supervisor may start with them loaded (see :mod:`kfjupyter.runtime.warm`).
        Only installed modules are named (a notebook's own module may change before then),
        and none at all when the imports started a thread."""
        from ..runtime.warm import HINTS

        path = self.job_dir / HINTS
        try:
            path.with_suffix(".tmp").write_text(json.dumps(modules), encoding="utf-8")
            os.replace(path.with_suffix(".tmp"), path)
        except OSError:
            pass  # hints only: the next run preloads what this one did

    # -- the cache -----------------------------------------------------------------
    def fingerprint(self, step: Step) -> dict[str, Any]:
        inputs = {name: self.hashes[src][name] for name, src in step.inputs.items()}
        params = {name: self.values[name] for name in step.parameters}
        return kcache.fingerprint(step, inputs, params, kcache.local_modules(step.program, self.workdir))

    def _resumed_step(self, name: str):
        if not self._resumed and self.resume:
            self._resumed = {r.name: r for r in ksteps.list_steps(self.resume, self.store)}
        return self._resumed.get(name)

    def try_reuse(self, step: Step, fp: dict[str, Any], key: str) -> dict[str, Any]:
        """Whether the step's result can be taken from the resumed run or the cache.

        Returns ``hit``, ``reason`` (None when only the store can say why not: see
        :meth:`explain`), and for a hit ``source`` (the run that produced it), ``from``
        (the folder to link it from), ``from_run`` and ``log_src`` (that run's log of the
        step). Nothing is linked yet (:meth:`record_cached` does).
        """
        old = self._resumed_step(step.name) if self.resume else None
        if old is not None and old.status in STEP_DONE and ksteps.attr(old, "fingerprint") == fp:
            old_dir = step_dir(self.store.job_dir(self.resume), step.name)
            if all((old_dir / "outputs" / n).exists() for n in step.outputs):
                self.hashes[step.name] = dict(ksteps.attr(old, "outputs") or {})
                source = ksteps.attr(old, "source_run")
                return dict(hit=True, reason=f"cached: succeeded in run {self.resume}, which this run resumes",
                            source=source if old.status == CACHED and source else self.resume,
                            **{"from": old_dir, "from_run": True, "log_src": old_dir / "log"})
        if not step.cache:
            return dict(hit=False, reason="not cached: cache:false tag")
        if not self.use_cache:
            return dict(hit=False, reason="not cached: --no-cache")
        entry = kcache.lookup(self.home, key)
        if entry is not None:
            self.hashes[step.name] = entry["outputs"]
            return dict(hit=True, reason=f"cached: same code, inputs and parameters as run {entry['run_id']}",
                        source=entry["run_id"],
                        **{"from": Path(entry["dir"]), "from_run": False, "log_src": Path(entry["dir"]) / "log"})
        if old is not None and old.status not in STEP_DONE and ksteps.attr(old, "fingerprint") == fp:
            return dict(hit=False, reason=f"not cached: {old.status.lower()} in run {self.resume}")
        return dict(hit=False, reason=None)

    @functools.cached_property
    def notebook(self) -> str | None:
        """The run's notebook (as its record has it): with the name, the pipeline's identity."""
        return self.store.get_job(self.run_id).notebook

    def explain(self, step: Step, fp: dict[str, Any]) -> str:
        """Why a step not taken from the cache was not: its last run (of this pipeline from
        this notebook) failed, or what changed since."""
        previous = ksteps.last_step(self.store, self.pipeline.name, self.notebook, step.name, exclude_run=self.run_id)
        if previous is not None and previous.status == st.FAILED:
            return kcache.explain_miss(None, fp, failed_in=previous.job_id)
        return kcache.explain_miss(ksteps.attr(previous, "fingerprint") if previous else None, fp)

    # -- steps ---------------------------------------------------------------------
    def ready(self) -> list[str]:
        return [
            name
            for name, state in self.status.items()
            if state == st.PENDING and all(self.status[u] in STEP_DONE for u in self.pipeline.upstream(name))
        ]

    def decide(self, name: str) -> dict[str, Any]:
        """Whether ``name`` is taken from the cache (or the resumed run), and why."""
        step = self.pipeline.steps[name]
        fp = self.fingerprint(step)
        key = kcache.cache_key(fp)
        return dict(self.try_reuse(step, fp, key), name=name, fp=fp, key=key)

    def start(self, name: str) -> None:
        decision = self.decide(name)
        if decision["hit"]:
            self.flush()
            self.record_cached(decision)
            self.progress()
        else:
            self.spawn(decision)
            self.status[name] = st.RUNNING  # recorded by flush, once every ready step is forked
            self._later.append(functools.partial(self.record_started, name, self.running[name]))

    def record_cached(self, d: dict[str, Any]) -> None:
        name, log_src = d["name"], d["log_src"]
        sdir = step_dir(self.job_dir, name)
        sdir.mkdir(parents=True, exist_ok=True)
        kcache.restore(d["from"], sdir, files_dir(self.job_dir, name), from_run=d["from_run"])
        previous = log_src.read_text(errors="replace") if log_src and log_src.exists() else ""
        (sdir / "log").write_text(f"[kfjupyter] {d['reason']}; the log of that run:\n{previous}")
        now = _now()
        self.set_step(name, CACHED, cached=True, source_run=d["source"], outputs=self.hashes[name],
                      started_at=now, finished_at=now, cache_key=d["key"], fingerprint=d["fp"],
                      cache_reason=d["reason"])
        self.say(f"step {name}: {d['reason']}")

    def spawn(self, d: dict[str, Any]) -> None:
        """Start the step's process (the store is not touched: see :meth:`record_started`)."""
        name = d["name"]
        step = self.pipeline.steps[name]
        sdir = step_dir(self.job_dir, name)
        (sdir / "outputs").mkdir(parents=True, exist_ok=True)
        fdir = files_dir(self.job_dir, name)
        fdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-u", stepruntime_path(), "--program", str(sdir / "program.py"), "--step", name]
        for pname in step.parameters:
            ptype = self.pipeline.parameters[pname].type
            argv += ["--param", pname, ptype, param_text(ptype, self.values[pname])]
        for vname, src in step.inputs.items():
            argv += ["--input", vname, str(value_dir(self.job_dir, src, vname))]
        for vname in step.outputs:
            argv += ["--output", vname, str(value_dir(self.job_dir, name, vname))]
        for mname in step.metrics:
            argv += ["--metric", mname]
        env = dict(os.environ)
        env.update(self.launch.get("env") or {})
        if self.workdir:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.workdir, env.get("PYTHONPATH")]))
        env.update(
            PYTHONUNBUFFERED="1",
            KFJUPYTER_JOB_ID=self.run_id,
            KFJUPYTER_STEP=name,
            KFJUPYTER_OUTPUT_DIR=str(fdir),
            KFJUPYTER_METRICS_FILE=str(sdir / "metrics.jsonl"),
            KFJUPYTER_ERROR_FILE=str(sdir / "error.txt"),
        )
        started = _now()
        if self.fork and not self._preloaded:
            self.preload()
        if self.fork:
            proc = fork_step(argv[3:], env, self.workdir, sdir / "log", close=tuple(self._pidfds.values()))
            self.register_group(proc.pid)
        else:
            proc = start_in_group(argv, sdir / "log", self.job_dir, env=env, cwd=self.workdir)
        self.running[name] = (proc, dict(d, started=started))
        self._watch(name, proc.pid)

    def record_started(self, name: str, started: tuple[Any, dict] | None = None) -> None:
        """The record of a step just started (``started``: its process and decision, as
        :meth:`spawn` left them; by default, from the steps running now)."""
        proc, info = started or self.running[name]
        reason = info["reason"] or self.explain(self.pipeline.steps[name], info["fp"])
        if self.status[name] == st.PENDING:  # (a deferred record never takes back a later state)
            self.status[name] = st.RUNNING
        ksteps.update_step(self.store, self.run_id, name, status=st.RUNNING, cached=False, cache_key=info["key"],
                           fingerprint=info["fp"], cache_reason=reason, started_at=info["started"])
        self.say(f"step {name}: started (pid {proc.pid}); {reason}")

    def finished(self, name: str, code: int) -> None:
        """A step's process ended with ``code``. A success gives the steps after it their
        inputs' hashes now; its cache entry and record are left to :meth:`flush`."""
        finished_at = _now()
        proc, info = self.running.pop(name)
        self._unwatch(name)
        step = self.pipeline.steps[name]
        sdir = step_dir(self.job_dir, name)
        if code == 0:
            from .stepruntime import content_hash

            try:
                hashes = {v: content_hash(value_dir(self.job_dir, name, v)) for v in step.outputs}
            except OSError as exc:
                self.flush()
                self.fail(name, f"step {name}: its outputs could not be read: {exc}")
                return
            self.hashes[name] = hashes
            self.status[name] = st.SUCCEEDED  # the steps after it may be decided now
            self._later.append(functools.partial(self.record_succeeded, name, info, hashes, finished_at))
            return
        self.flush()
        error_file = sdir / "error.txt"
        if error_file.exists() and error_file.read_text(errors="replace").strip():
            detail = error_file.read_text(errors="replace")
        else:
            detail = "\n".join(read_lines(sdir / "log", 40))
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        self.fail(name, f"step {name} failed ({how}):\n{detail}".rstrip())

    def record_succeeded(self, name: str, info: dict, hashes: dict[str, str], finished_at: datetime) -> None:
        """A succeeded step's cache entry, its record and the run's progress line."""
        step = self.pipeline.steps[name]
        if step.cache:
            entry = {"run_id": self.run_id, "step": name, "pipeline": self.pipeline.name,
                     "outputs": hashes, "fingerprint": info["fp"], "created": time.time()}
            try:
                kcache.store(self.home, info["key"], entry, step_dir(self.job_dir, name),
                             files_dir(self.job_dir, name))  # fmt: skip
            except OSError as exc:
                self.say(f"step {name}: its result could not be cached: {exc}")
        self.set_step(name, st.SUCCEEDED, outputs=hashes, finished_at=finished_at)
        self.say(f"step {name}: succeeded")
        if self.running or self.ready():
            self.progress()  # (else the run ends now, and its end gives the run its message)

    def progress(self) -> None:
        """The run's message while it runs: how many steps are done."""
        done = sum(state in STEP_TERMINAL for state in self.status.values())
        self.store.update_job(self.run_id, only_if_active=True, message=f"{done}/{len(self.status)} steps done")

    def fail(self, name: str, error: str) -> None:
        self.errors.append(error)
        self.set_step(name, st.FAILED, error=error)
        self.say(f"step {name}: failed")
        self.skip_after(name, f"not run: step {name} failed")
        self.progress()

    def skip_after(self, name: str, reason: str) -> None:
        todo = list(self.pipeline.downstream(name))
        while todo:
            child = todo.pop(0)
            if self.status[child] == st.PENDING:
                self.set_step(child, SKIPPED, cache_reason=reason)
                self.say(f"step {child}: skipped ({reason})")
            todo += self.pipeline.downstream(child)

    def stop_all(self) -> None:
        kill_groups([proc.pid for proc, _ in self.running.values()])
        self.flush()
        for name, (proc, _) in list(self.running.items()):
            proc.poll()
            self._unwatch(name)
            self.set_step(name, st.CANCELLED, error="cancelled by the user")
        self.running.clear()
        for name, state in self.status.items():
            if state == st.PENDING:
                self.set_step(name, SKIPPED, cache_reason="not run: the run was cancelled")

    def all_cached(self) -> bool:
        """Settle the run here and now if every step's result is in the cache (no
        supervisor process needed); False, with nothing recorded, otherwise."""
        decisions = []
        for name in self.pipeline.steps:
            decision = self.decide(name)
            if not decision["hit"]:
                return False
            decisions.append(decision)
        self.say(f"run {self.run_id} of pipeline {self.pipeline.name}: every step's result is in the cache")
        self.set_status(st.RUNNING)
        for decision in decisions:
            self.record_cached(decision)
        self.set_status(st.SUCCEEDED, message=f"{len(decisions)} cached")
        self.say(f"done: {len(decisions)} cached")
        return True

    # -- the run ---------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_all()
        super().stop()

    def run(self) -> None:
        self.say(f"run {self.run_id} of pipeline {self.pipeline.name}: {len(self.status)} steps, "
                 f"up to {self.max_parallel} at a time" + (f", resuming run {self.resume}" if self.resume else ""))
        # the first steps start before the store is loaded (SQLAlchemy takes a while to
        # import); the store's import overlaps their start
        early: list[dict[str, Any]] = []
        if not self.resume:
            for name in self.ready():
                if sum(not d["hit"] for d in early) >= self.max_parallel:
                    break
                early.append(self.decide(name))
                if not early[-1]["hit"]:
                    self.spawn(early[-1])
        self.set_status(st.RUNNING)
        for d in early:
            if d["hit"]:
                self.record_cached(d)
            else:
                self.record_started(d["name"])
        while True:
            if self.cancelled:
                self.stop_all()
                self.set_status(st.CANCELLED, message="cancelled by the user")
                self.say("cancelled")
                return
            for name, (proc, _) in list(self.running.items()):
                code = proc.poll()
                if code is not None:
                    self.finished(name, code)
            progressed = True
            while progressed and not self.cancelled:
                progressed = False
                for name in self.ready():
                    if len(self.running) >= self.max_parallel:
                        break
                    self.start(name)
                    progressed = True
            self.flush(until_a_step_ends=True)
            if not self.running and not self.ready() and not self._later:
                break
            self.wait_for_steps()
        self.flush()
        counts: dict[str, int] = {}
        for state in self.status.values():
            counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
        if self.errors:
            self.set_status(st.FAILED, error="\n\n".join(self.errors), message=summary)
        else:
            self.set_status(st.SUCCEEDED, message=summary)
        self.say(f"done: {summary}")


main = PipelineSupervisor.main


# -- the engine the job handles talk to ----------------------------------------------
class LocalPipelineEngine(DetachedEngine):
    """Local pipeline runs. Channels: ``run`` (the supervisor's account of the run),
    ``step/NAME`` (a step's output; its metrics too), and the metric channel ``steps``
    (every step's reports, with ``pipeline_step``)."""

    kind = "pipeline"
    supervisor = "kfjupyter.pipelines.local"
    what = "the run's pipeline supervisor"
    features = Features(supervised=True, metrics=True, children=True)
    cancel_timeout = 10.0
    #: a warm parent has the supervisor, the step runtime and the store loaded (see runtime/warm.py)
    warm_modules = ("kfjupyter.pipelines.local", "kfjupyter.pipelines.stepruntime", "kfjupyter.store.workspace",
                    "kfjupyter.tracking.follow")  # fmt: skip

    def launch(self, job_id: str, spec, job_dir: Path) -> dict:
        return spec.launch(job_dir)

    def answer_without_supervisor(self, job_dir: Path) -> dict | None:
        """Every result cached: the run is answered here, without starting a supervisor."""
        supervisor = PipelineSupervisor(job_dir)
        try:
            if supervisor.use_cache and not supervisor.resume and supervisor.all_cached():
                return {"pid": None, "create_time": None, "job_dir": str(job_dir), "supervisor": False}
        finally:
            supervisor.close()
        return None

    def environment(self) -> dict[str, str]:
        # a fixed hash seed: a set or a dict of strings pickles in the same order in every
        # run, so an unchanged value has the same content hash and the cache recognises it
        return {**super().environment(), "PYTHONHASHSEED": "0"}

    def tidy(self, job_id: str, info: dict, reason: str) -> None:
        ksteps.sweep_steps(job_id, reason)

    def backfill_children(self, job_id: str, info: dict) -> None:
        ksteps.list_steps(job_id)  # adopts the steps an earlier kfjupyter kept in a table of their own

    def _steps(self, job_dir: Path) -> list[str]:
        return list(json.loads((job_dir / LAUNCH).read_text())["pipeline"]["steps"])

    def channels(self, job_id: str, info: dict) -> Channels:
        return Channels(logs=(RUN_CHANNEL,), metrics=(STEPS_METRICS,))

    def log_path(self, job_id: str, job_dir: Path, channel: str) -> Path | None:
        if channel == RUN_CHANNEL.name:
            return job_dir / RUN_LOG
        kind, _, name = channel.partition("/")
        if kind == ksteps.STEP and name in self._steps(job_dir):
            return step_dir(job_dir, name) / "log"
        return None

    def run_metric_files(self, job_id: str, job_dir: Path) -> dict[str | None, list[tuple[int, Path]]]:
        """Each step's reports."""
        return {name: [(0, step_dir(job_dir, name) / "metrics.jsonl")] for name in self._steps(job_dir)}

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        """What the steps reported: rows with ``pipeline_step`` and the reported values."""
        job_dir = Path(info["job_dir"])
        out: list[dict] = []
        for name in self._steps(job_dir):
            if channel in (None, STEPS_METRICS.name, f"{ksteps.STEP}/{name}"):
                path = step_dir(job_dir, name) / "metrics.jsonl"
                out += [{"rank": 0, "pipeline_step": name, **record} for record in read_records(path)]
        return out


if __name__ == "__main__":
    main()
