"""Entry point of one rank: load a bundle and run its program.

This file uses the standard library only, so the Kubernetes backend can ship it in a
ConfigMap and run it in any image that has Python (and torch for training). When the
``kfjupyter`` package is not installed in the image, a small stand-in module provides
``kfjupyter.report`` and ``kfjupyter.output_dir`` with the same behaviour.

Environment it reads:
    KFJUPYTER_BUNDLE        directory holding program.py (default: this file's folder)
    KFJUPYTER_OUTPUT_DIR    where the program saves its outputs
    KFJUPYTER_METRICS_FILE  JSON-lines file that ``report`` appends to (optional)
    KFJUPYTER_ERROR_FILE    where the traceback of a failure is written (optional)
    KFJUPYTER_PRINT_METRICS "1": ``report`` also prints ``name=value`` lines (Katib's format)
    KFJUPYTER_METRICS_TIMESTAMPS "1": those lines start with an RFC 3339 time (Katib's early
                            stopping orders metrics by it)
    KFJUPYTER_TUNE_SPACE    a tuning trial's search space (JSON); ``param`` then reads the
                            trial's value of NAME from KFJUPYTER_PARAM_<NAME>
    KFJUPYTER_STORE_FD      (rank 0 of a local job) a listening socket on 127.0.0.1 that the
                            launcher bound: rank 0 serves torch.distributed's rendezvous
                            store on it, once the program imports torch.distributed
    KFJUPYTER_MLFLOW_TRACKER "1" (a Kubernetes pod whose job tracks to MLflow): the rank
                            starts its own tracker beside the program, ``python kf_mlflow.py``
                            (:mod:`kfjupyter.tracking.mlflow_sender`, shipped beside this
                            file), which sends the metrics file to the MLflow run; the
                            program never waits for it (see :func:`pod_tracker`)

A metrics write that fails (a full or read-only disk, a folder that went away) never
fails the program: the records are kept, a warning is printed once, and they are
written at the next ``report`` that can, or at exit.
"""

import atexit
import json
import os
import pickle
import runpy
import sys
import threading
import time
import traceback
import types
from pathlib import Path


#: Functions called with every reported record (e.g. a tuning trial's pruning check).
#: A hook may raise to stop the program (Optuna's TrialPruned, say).
report_hooks = []


class _MetricsFile:
    """Appends records to KFJUPYTER_METRICS_FILE; what cannot be written now is kept and
    written later (the file is kept open between reports; reopened when it changes)."""

    #: bytes kept while the file cannot be written; older records beyond it are dropped
    MAX_PENDING = 64 * 2**20
    #: seconds the last write at exit keeps trying
    EXIT_RETRY_S = 10.0

    def __init__(self):
        self.lock = threading.Lock()
        self.fd = None
        self.path = None
        self.pending = b""
        self.failing = False
        self.dropped = 0

    def append(self, path, line):
        with self.lock:
            self.pending += line.encode("utf-8")
            if len(self.pending) > self.MAX_PENDING:
                cut = self.pending.find(b"\n", len(self.pending) - self.MAX_PENDING) + 1
                self.dropped += self.pending[:cut].count(b"\n")
                self.pending = self.pending[cut:]
            self._write(path)

    def _close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def _write(self, path):
        try:
            if self.fd is None or self.path != path:
                self._close()
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self.path = path
            while self.pending:
                written = os.write(self.fd, self.pending)
                self.pending = self.pending[written:]
        except OSError as exc:
            self._close()
            if not self.failing:
                self.failing = True
                _warn(f"kfjupyter: cannot write metrics to {path} ({exc}); keeping them and retrying")
            return False
        if self.failing:
            self.failing = False
            lost = f" ({self.dropped} record(s) dropped)" if self.dropped else ""
            _warn(f"kfjupyter: metrics written to {path} again{lost}")
        return True

    def flush_at_exit(self):
        """At exit: keep trying for a while to write what is still pending."""
        deadline = time.monotonic() + self.EXIT_RETRY_S
        with self.lock:
            while self.pending and self.path:
                if self._write(self.path) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if self.pending:
                count = self.pending.count(b"\n")
                _warn(f"kfjupyter: {count} metric record(s) could not be written to {self.path}")
            self._close()


def _warn(text):
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


_metrics = _MetricsFile()
atexit.register(_metrics.flush_at_exit)


def report(step=None, **metrics):
    """Record metrics of the running rank (same contract as ``kfjupyter.report``)."""
    record = {"time": time.time(), "step": step}
    for key, value in metrics.items():
        record[key] = float(value)
    path = os.environ.get("KFJUPYTER_METRICS_FILE")
    if path:
        _metrics.append(path, json.dumps(record) + "\n")
    if os.environ.get("KFJUPYTER_PRINT_METRICS") == "1":
        pairs = ([f"step={step}"] if step is not None else []) + [
            f"{k}={float(v)!r}" for k, v in metrics.items()
        ]
        if os.environ.get("KFJUPYTER_METRICS_TIMESTAMPS") == "1":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["time"]))
            pairs.insert(0, f"{stamp}.{int(record['time'] % 1 * 1e6):06d}Z")
        print(" ".join(pairs), flush=True)
    for hook in list(report_hooks):
        hook(record)
    return record


def log_params(**params):
    """Record params of the running job's run (see ``kfjupyter.log_params``): they go in its
    metrics file as one ``{"time", "params"}`` record, which the job's tracker reads."""
    path = os.environ.get("KFJUPYTER_METRICS_FILE")
    if not path:
        raise RuntimeError(
            "kfjupyter.log_params records params of the job it runs in: call it inside a job's program "
            "(a %%kf_train or %%kf_tune cell, a pipeline step, a notebook run)"
        )
    values = {str(k): (v if isinstance(v, (bool, int, float, str)) or v is None else str(v)) for k, v in params.items()}
    _metrics.append(path, json.dumps({"time": time.time(), "params": values}) + "\n")
    return values


#: The running tuning trial's parameter values (set by a local trial worker), or None.
trial_params = None


def param(name, low=None, high=None, *, step=None, log=False, choices=None, default=None):
    """A hyperparameter: the trial's value when tuning, else ``default`` (see ``kfjupyter.param``).

    Outside a tuning trial the value is ``default`` if given, else the first choice, else
    the middle of the range (geometric middle with ``log``; an integer for int ranges).
    """
    if trial_params is not None:
        if name not in trial_params:
            raise KeyError(f"parameter {name!r} is not in this tuning job's search space")
        return trial_params[name]
    space = os.environ.get("KFJUPYTER_TUNE_SPACE")
    if space:
        spec = json.loads(space).get(name)
        raw = os.environ.get("KFJUPYTER_PARAM_" + name)
        if spec is None or raw is None:
            raise KeyError(f"parameter {name!r} is not in this tuning job's search space")
        return _typed_param(spec, raw)
    if default is not None:
        return default
    if choices is not None:
        return list(choices)[0]
    if low is None or high is None:
        raise TypeError(f"kfjupyter.param({name!r}) needs low and high, or choices")
    middle = (low * high) ** 0.5 if log else (low + high) / 2
    if step:
        middle = low + round((middle - low) / step) * step
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step or 1))
    return int(round(middle)) if is_int else float(middle)


def _typed_param(spec, raw):
    """A trial value as Katib passes it (text) → the Python value of the parameter."""
    kind = spec["type"]
    if kind == "double":
        return float(raw)
    if kind == "int":
        return int(float(raw))
    for choice in spec["choices"]:
        if (kind == "discrete" and float(raw) == float(choice)) or str(choice) == raw:
            return choice
    raise ValueError(f"value {raw!r} is not one of the choices of parameter {spec.get('name')!r}")


def output_dir():
    path = Path(os.environ.get("KFJUPYTER_OUTPUT_DIR", "outputs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _install_standin():
    module = types.ModuleType("kfjupyter")
    module.report = report
    module.output_dir = output_dir
    module.param = param
    module.log_params = log_params
    module.__doc__ = "kfjupyter stand-in for images without the kfjupyter package"
    sys.modules["kfjupyter"] = module


#: The pod's MLflow sender, shipped beside this file (kfjupyter.tracking.mlflow_sender).
SENDER = "kf_mlflow.py"


class _PodTracker:
    """The process sending this rank's metrics file to MLflow (see :func:`pod_tracker`)."""

    def __init__(self, proc):
        self.proc = proc

    def finish(self, ok):
        """Tell the tracker how the program ended and wait for its last send (bounded by
        KFJUPYTER_TRACKING_FLUSH_S, plus a margin): the pod ends only once it is done."""
        try:
            self.proc.stdin.write(b"FINISHED\n" if ok else b"FAILED\n")
            self.proc.stdin.close()
        except (OSError, ValueError):  # the tracker is gone already (it said why)
            pass
        timeout = float(os.environ.get("KFJUPYTER_TRACKING_FLUSH_S") or 30) + 15
        try:
            self.proc.wait(timeout)
        except Exception:  # noqa: BLE001  (tracking never fails a job)
            self.proc.kill()


def pod_tracker(name=None, params=None, artifacts=None):
    """In a pod whose job tracks to MLflow (``KFJUPYTER_MLFLOW_TRACKER=1``): start the
    rank's tracker process and return its handle (``finish(ok)`` at the program's end);
    else None. ``name``, ``params``: of the run the pod creates (a pipeline step's);
    ``artifacts``: ``{"outputs": DIR, "program": FILE}`` uploaded at the end.

    A rank other than 0 tracks only into a run created up front (``MLFLOW_RUN_ID``): a run
    made in the pod is rank 0's. ``report`` writes its metrics file as ever (one is made
    in the temporary folder when none is set); the tracker reads it in a process of its
    own, so the program never waits for the network, and a tracker that cannot start
    (no MLflow client in the image) says so and leaves the job alone."""
    if os.environ.get("KFJUPYTER_MLFLOW_TRACKER") != "1" or not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    if (os.environ.get("RANK") or "0") != "0" and not os.environ.get("MLFLOW_RUN_ID"):
        return None
    sender = Path(__file__).resolve().with_name(SENDER)
    if sender.is_file():
        argv = [sys.executable, str(sender)]
    else:
        try:
            import importlib.util

            found = importlib.util.find_spec("kfjupyter.tracking.mlflow_sender")
        except ImportError:
            found = None
        if found is None:
            _warn(f"kfjupyter: MLflow tracking is off in this pod: no {SENDER} beside {Path(__file__).name}")
            return None
        argv = [sys.executable, "-m", "kfjupyter.tracking.mlflow_sender"]
    if not os.environ.get("KFJUPYTER_METRICS_FILE"):
        import tempfile

        fd, path = tempfile.mkstemp(prefix="kfjupyter-metrics-", suffix=".jsonl")
        os.close(fd)
        os.environ["KFJUPYTER_METRICS_FILE"] = path
    env = dict(os.environ)
    if name:
        env["KFJUPYTER_RUN_NAME"] = str(name)
    if params:
        env["KFJUPYTER_MLFLOW_PARAMS"] = json.dumps({str(k): str(v) for k, v in params.items()})
    wanted = dict(artifacts or {})
    if "outputs" not in wanted and os.environ.get("KFJUPYTER_OUTPUT_DIR"):
        wanted["outputs"] = os.environ["KFJUPYTER_OUTPUT_DIR"]
    env["KFJUPYTER_MLFLOW_ARTIFACTS"] = json.dumps({k: str(v) for k, v in wanted.items() if v})
    import subprocess

    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env, close_fds=True)
    except OSError as exc:
        _warn(f"kfjupyter: MLflow tracking is off in this pod: {exc}")
        return None
    return _PodTracker(proc)


class _AfterImport:
    """A one-shot import hook: ``callback(module)`` right after ``name`` is first imported."""

    def __init__(self, name, callback):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module
        callback = self.callback

        def exec_module(module):
            run(module)
            callback(module)

        spec.loader.exec_module = exec_module
        return spec


#: rank 0's rendezvous store server, kept alive for the whole program
_store = None


def _serve_store(dist):
    """Serve torch.distributed's rendezvous store on the launcher's loopback socket."""
    global _store
    fd = int(os.environ.pop("KFJUPYTER_STORE_FD"))
    from datetime import timedelta

    try:
        _store = dist.TCPStore(
            "127.0.0.1", int(os.environ["MASTER_PORT"]), int(os.environ.get("WORLD_SIZE", "1")), True,
            timedelta(minutes=30), wait_for_workers=False, master_listen_fd=fd,
        )  # fmt: skip
    except TypeError:  # a torch without master_listen_fd: rank 0 hosts the store itself, as torch does
        os.close(fd)
        os.environ.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        _warn("kfjupyter: this torch cannot serve the rendezvous store on loopback only; rank 0 hosts it")


#: every process group the program made, kept until the rank ends (see _keep_groups)
_groups = []


def _keep_groups(dist):
    """Keep every process group the program makes until the rank ends (:func:`end`).

    Destroying a gloo group can deadlock torch (2.13 at least): a collective run in a
    backward pass holds the autograd context (a Python object) until the group's worker
    thread drops it, which takes the GIL, while ``~ProcessGroupGloo`` joins that thread
    with the GIL held when the group's last reference goes from Python (a DDP model freed
    right after ``destroy_process_group()``, at the end of ``main()`` or of the program).
    A rank started fresh is mostly spared by accident: DDP's constructor imports
    ``torch.distributed.nn``, whose ``group=group.WORLD`` defaults then hold the default
    group for good; a rank forked from a warm parent has that module imported before any
    group exists. So the launcher keeps the groups, in both, and they go with the process.
    ``destroy_process_group()`` still unregisters them, as ever."""
    c10d = getattr(dist, "distributed_c10d", None)
    for name in ("_register_process_group", "_update_default_pg"):  # every group; the default one
        register = getattr(c10d, name, None)
        if register is None or getattr(register, "_kfjupyter_keeps", False):
            continue

        def keeping(*args, _register=register, **kwargs):
            _groups.extend(a for a in args if a is not None and not isinstance(a, str))
            return _register(*args, **kwargs)

        keeping._kfjupyter_keeps = True
        setattr(c10d, name, keeping)


def _prepare_distributed(dist):
    _keep_groups(dist)
    if os.environ.get("KFJUPYTER_STORE_FD"):
        _serve_store(dist)


def _prepare_store():
    """Rank 0's store and the kept groups: now if torch.distributed is imported (a warm
    rank), else right after the program imports it."""
    if "torch.distributed" in sys.modules:
        _prepare_distributed(sys.modules["torch.distributed"])
    else:
        sys.meta_path.insert(0, _AfterImport("torch.distributed", _prepare_distributed))


def run_program(bundle, run_name="__main__"):
    """Run a bundle's program with its values (its modules on ``sys.path``): its globals."""
    bundle = Path(bundle)
    modules = bundle / "modules"
    if modules.is_dir() and str(modules) not in sys.path:
        sys.path.insert(0, str(modules))
    values = {}
    if (bundle / "values.pkl").exists():
        with open(bundle / "values.pkl", "rb") as fh:
            # one pickle per variable, so the capture side could name a culprit
            values = {name: pickle.loads(blob) for name, blob in pickle.load(fh).items()}
    return runpy.run_path(str(bundle / "program.py"), init_globals=values, run_name=run_name)


def main():
    global _program
    _prepare_store()
    bundle = Path(os.environ.get("KFJUPYTER_BUNDLE") or Path(__file__).resolve().parent)
    modules = bundle / "modules"
    if modules.is_dir():
        sys.path.insert(0, str(modules))
    try:
        import kfjupyter  # noqa: F401  (the real package, when the image has it)
    except ImportError:
        _install_standin()
    _program = str(bundle / "program.py")
    tracker = pod_tracker(artifacts={"program": bundle / "program.py"})
    ok = False
    try:
        _kept.append(run_program(bundle))  # its globals: cleared only at the end (see end)
        ok = True
    except SystemExit as exc:
        _kept.append(exc)  # and with it the frames of the program
        ok = exc.code in (None, 0)
        raise
    except BaseException as exc:
        _kept.append(exc)
        text = traceback.format_exc()
        sys.stderr.write(text)
        sys.stderr.flush()
        error_file = os.environ.get("KFJUPYTER_ERROR_FILE")
        if error_file:
            Path(error_file).write_text(text, encoding="utf-8")
        sys.exit(1)
    finally:
        if tracker is not None:
            _metrics.flush_at_exit()  # what report could not write yet, before the last send
            tracker.finish(ok)


#: what the program left (its globals, or the exception that ended it, with its frames),
#: kept for :func:`end`; and the file it ran from
_kept = []
_program = None


def _exit_status(exc):
    """The exit status ``python`` gives a ``SystemExit`` (printing a message, as it does)."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    _warn(str(exc.code))
    return 1


def _program_namespaces(program):
    """The module namespaces of the program that ran from the file ``program``: the
    globals it left and the dict its functions hold (``run_path`` returns a copy), or the
    one its failing frames ran in."""
    spaces = []
    for kept in _kept:
        if isinstance(kept, dict):
            spaces.append(kept)
            spaces.extend(v.__globals__ for v in kept.values() if isinstance(v, types.FunctionType))
        else:
            tb = getattr(kept, "__traceback__", None)
            while tb is not None:
                spaces.append(tb.tb_frame.f_globals)
                tb = tb.tb_next
    unique = {id(space): space for space in spaces if space.get("__file__") == program}
    return list(unique.values())


def _clear_namespace(space):
    """What the interpreter does to ``__main__`` at its end: names with one leading
    underscore first, then all but ``__builtins__``, set to None."""
    for first in (True, False):
        for name in list(space):
            if name != "__builtins__" and (not first or (name[:1] == "_" and name[1:2] != "_")):
                space[name] = None


def end(status):
    """End the rank as the interpreter ends a program, less the teardown of everything
    else it loaded: wait for the threads the program started, run the ``atexit``
    functions, clear the program's globals as ``__main__``'s are cleared (their objects'
    ``__del__`` runs, open files are closed), write out the standard streams (Python's
    and C's), then leave with ``status``.

    Torch and the other modules are not torn down: a fresh interpreter's teardown of them
    takes seconds here, and can abort in gloo's threads; the process groups the program
    made go with the process (:func:`_keep_groups`). A rank started fresh and one forked
    from a warm parent end the same way."""
    try:
        try:
            threading._shutdown()  # noqa: SLF001  (what Py_Finalize does first)
        finally:
            atexit._run_exitfuncs()  # noqa: SLF001
        if _program is not None:
            for space in _program_namespaces(_program):
                _clear_namespace(space)
        del _kept[:]
    except BaseException:  # noqa: BLE001  (as an interpreter's end, it only says so)
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        try:
            import ctypes

            ctypes.CDLL(None).fflush(None)  # what C and C++ code printed
        except Exception:  # noqa: BLE001  (no C library to ask)
            pass
        os._exit(status)


if __name__ == "__main__":
    try:
        main()
        _status = 0
    except SystemExit as _exc:
        _status = _exit_status(_exc)
    except BaseException:  # noqa: BLE001  (KeyboardInterrupt before the program ran)
        traceback.print_exc()
        _status = 1
    end(_status)
