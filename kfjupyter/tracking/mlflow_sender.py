"""The one code that sends a run's records to MLflow: metrics files → an MLflow run.

STANDARD LIBRARY ONLY, plus the MLflow client (``mlflow-skinny`` is enough), imported when
used: the same file is the sender of a local job's tracker (:mod:`.mlflow_sink` builds on
:class:`Sender`) and, shipped into a Kubernetes pod as ``kf_mlflow.py`` beside the rank's
bootstrap, the pod's own tracker (:func:`main`), in images without the kfjupyter package.

``kfjupyter.report`` appends JSON lines to a metrics file as ever; a sender reads each file
from where the server last took it (the file is the buffer), sends at most :data:`BATCH`
metrics a call (rank 0 as ``KEY``, rank N as ``rank-N/KEY``, with their steps and times),
and when the server is away it says so once, waits (doubling up to :data:`BACKOFF_CAP_S`)
and goes on from the same place: a lost server never fails the job, and loses nothing
that comes back in time.

In a pod (``KFJUPYTER_MLFLOW_TRACKER=1``; the bootstrap starts ``python kf_mlflow.py``
beside the program, which never waits for it) the environment says where to send:

    MLFLOW_TRACKING_URI            the tracking server (a token: MLFLOW_TRACKING_TOKEN,
                                   from a Secret)
    MLFLOW_RUN_ID                  the run, created up front by the notebook side; else
                                   one is created here in
    MLFLOW_EXPERIMENT_ID / _NAME   the experiment (by id, else by name)
    KFJUPYTER_MLFLOW_PARENT_RUN_ID a trial's or a step's run is nested in its job's run
    KFJUPYTER_RUN_NAME, KFJUPYTER_RUN_KIND, KFJUPYTER_RUN_ID, KFJUPYTER_JOB_ID
                                   the created run's name, kind and tags
    KFJUPYTER_METRICS_FILE         the rank's metrics file (the bootstrap sets it)
    KFJUPYTER_MLFLOW_PARAMS        params of a run created here (JSON; with a tuning
                                   trial's KFJUPYTER_PARAM_* values)
    KFJUPYTER_MLFLOW_ARTIFACTS     {"outputs": DIR, "program": FILE}: uploaded at the end
    KFJUPYTER_TRACKING_FLUSH_S     how long the last send may take (default 30 s)

It reads its end on stdin: the bootstrap writes the program's outcome (``FINISHED``,
``FAILED``) and closes it; a closed pipe without a word (the rank was killed) is ``KILLED``.
Rank 0 ends the run and uploads its artifacts; other ranks only send their metrics (and
only to a run created up front: a run made here is rank 0's).
"""

import json
import os
from contextlib import contextmanager
import select
import sys
import time
from pathlib import Path

#: metrics per ``log_batch`` (MLflow takes at most 1000 metrics and 100 params a call)
BATCH = 1000
MAX_PARAMS = 100
#: records read from a file per call (a record holds one or more metrics)
RECORDS = 500
BACKOFF_CAP_S = 5.0
#: seconds between two looks at the metrics file (in a pod)
INTERVAL_S = 1.0
#: the name of this file in a pod, beside the rank's bootstrap
POD_FILE = "kf_mlflow.py"


def read_new_records(path, offset, limit=None):
    """The records (metrics and params) of a JSON-lines file from byte ``offset`` on, at most
    ``limit`` of them, and the offset after the last one read: what a follower of the file
    reads next time. A last line still being written is left for then."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    out = []
    position = offset
    for line in chunk.splitlines(keepends=True):
        if not line.endswith(b"\n") or (limit is not None and len(out) >= limit):
            break
        position += len(line)
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out, position


#: The MLflow client's settings of a sender (unless set already): one try of 10 s at most.
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def client(uri):
    """An MLflow client of ``uri`` that fails fast: the sender retries itself (the client's
    own retries, minutes of back-off, would hold the tracker). The client reads its
    settings from the environment: a tracker's process keeps them (see :func:`fail_fast`)."""
    for name, value in FAIL_FAST.items():
        os.environ.setdefault(name, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@contextmanager
def fail_fast():
    """The fail-fast settings of :func:`client` for a while only: in a notebook's process,
    whose own MLflow calls keep their settings afterwards."""
    added = [name for name in FAIL_FAST if name not in os.environ]
    os.environ.update({name: FAIL_FAST[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def experiment_id(mlflow_client, name):
    """The id of experiment ``name`` (created if missing)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name)
    except Exception:  # noqa: BLE001  (another job created it meanwhile)
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def param_text(value):
    """A param's value as MLflow keeps it (text, at most 6000 characters)."""
    return str(value)[:6000]


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _refused(exc):
    """Whether an MLflow error is the server refusing the request (not worth retrying)."""
    code = exc.get_http_status_code() if hasattr(exc, "get_http_status_code") else None
    return code is not None and 400 <= code < 500 and code not in (408, 429)


class Sender:
    """Sends records to the MLflow runs of one job (or one pod): run creation, params,
    metrics files, the end and the artifacts; and the retry state of its server.

    Every call that talks to the server runs inside :meth:`attempt`: an error there is the
    server away (said once, then tried again after a back-off), a refusal (a 4xx) is said
    and skipped. A metrics file's read position lives in a ``state`` dict the caller keeps
    (``{"sent": {file: offset}, "params": [names sent]}``): in memory in a pod, in the run's
    record of the workspace store locally."""

    def __init__(self, uri, say):
        self.uri, self.say = uri, say
        self.client = client(uri)
        self.failing = False
        self.refusal = None
        self.retry_at = 0.0
        self.backoff = 0.5

    # -- the server's state
    def due(self, force=False):
        """Whether to try now: not before the retry time while the server is away."""
        return force or time.monotonic() >= self.retry_at

    def attempt(self, work):
        """``work()`` (a turn of MLflow calls): what it returns, False if the server failed it."""
        from mlflow.exceptions import MlflowException

        try:
            done = work()
        except MlflowException as exc:
            if _refused(exc):  # said once, tried again later (what it refused may be sent another way)
                text = f"MLflow refused a request ({exc.message[:300]})"
                if text != self.refusal:
                    self.refusal = text
                    self.say(text)
                self._later()
                return False
            self.lost(exc)
            return False
        except Exception as exc:  # noqa: BLE001  (connection errors, the server going away)
            self.lost(exc)
            return False
        if self.failing:
            self.failing = False
            self.say(f"MLflow tracking server {self.uri} is back: sending what it missed")
        self.backoff = 0.5
        return done

    def lost(self, exc):
        if not self.failing:
            self.failing = True
            why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            self.say(f"MLflow tracking server {self.uri} unreachable ({why}); "
                     "the job goes on, its records are kept and sent when the server is back")  # fmt: skip
        self._later()

    def _later(self):
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_CAP_S)

    def flush(self, turn, timeout):
        """Call ``turn()`` (forced sends) until it says all is done, for ``timeout`` seconds
        at most, waiting out the back-off between tries. Whether it got done."""
        deadline = time.monotonic() + timeout
        while True:
            if turn():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(self.backoff, max(0.0, deadline - time.monotonic())))

    # -- what is sent
    def create_run(self, experiment, name, tags, params, start_ms=None, experiment_ref=None):
        """A new run of ``experiment`` (a name; or ``experiment_ref``, an id) with its tags
        and params: (run id, experiment id)."""
        exp_id = experiment_ref or experiment_id(self.client, experiment)
        created = self.client.create_run(exp_id, start_time=start_ms, tags=dict(tags), run_name=name)
        self.log_params(created.info.run_id, params)
        return created.info.run_id, created.info.experiment_id

    def log_params(self, run_id, params):
        from mlflow.entities import Param

        items = [Param(str(k), param_text(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(run_id, params=items[i: i + MAX_PARAMS])

    def _refusable(self, call, what):
        """``call()``; a refusal of the server is said and skipped (the records go)."""
        from mlflow.exceptions import MlflowException

        try:
            call()
        except MlflowException as exc:
            if not _refused(exc):
                raise
            self.say(f"MLflow refused {what} ({exc.message[:300]}); skipped")

    def send_file(self, run_id, state, rank, path, name):
        """Send what is new in metrics file ``path`` (``name``: its key in ``state``) to run
        ``run_id``: at most :data:`RECORDS` records. Whether the file was all read."""
        from mlflow.entities import Metric

        offset = state["sent"].get(name, 0)
        records, new_offset = read_new_records(path, offset, limit=RECORDS)
        if not records:
            return True
        known = set(state.get("params") or ())
        metrics, params = [], {}
        prefix = "" if rank == 0 else f"rank-{rank}/"
        for record in records:
            if "params" in record:
                params.update({k: v for k, v in (record["params"] or {}).items() if k not in known})
                continue
            stamp = int(float(record.get("time") or time.time()) * 1000)
            step = record.get("step")
            step = int(step) if _number(step) else 0
            for key, value in record.items():
                if key not in ("time", "step") and _number(value):
                    metrics.append(Metric(prefix + key, float(value), stamp, step))
        if params:
            self._refusable(lambda: self.log_params(run_id, params), f"params {', '.join(sorted(params))}")
        for i in range(0, len(metrics), BATCH):
            chunk = metrics[i: i + BATCH]
            self._refusable(lambda: self.client.log_batch(run_id, metrics=chunk), f"{len(chunk)} metric(s) of {name}")
        state["params"] = sorted(known | set(params))
        state["sent"][name] = new_offset
        return len(records) < RECORDS

    def end_run(self, run_id, status, artifacts=()):
        """Upload ``artifacts`` ((local path, folder in the run) pairs) and end the run."""
        for local, where in artifacts:
            local = Path(local)
            if local.is_dir():
                self.client.log_artifacts(run_id, str(local), where)
            else:
                self.client.log_artifact(run_id, str(local), where)
        self.client.set_terminated(run_id, status)


def artifact_paths(candidates):
    """Of (path, folder) pairs, those worth uploading: a file, or a folder holding files
    (links left out)."""
    out = []
    for path, where in candidates:
        path = Path(path)
        if path.is_symlink():
            continue
        if path.is_file() or (path.is_dir() and any(p.is_file() for p in path.rglob("*"))):
            out.append((path, where))
    return out


# ---------------------------------------------------------------------------------------
# in a pod
# ---------------------------------------------------------------------------------------


def pod_params(env):
    """The params of a run created in the pod: KFJUPYTER_MLFLOW_PARAMS, and a Katib trial's
    values (``KFJUPYTER_PARAM_<name>`` of the names in KFJUPYTER_TUNE_SPACE)."""
    params = {}
    try:
        params.update(json.loads(env.get("KFJUPYTER_MLFLOW_PARAMS") or "{}"))
    except ValueError:
        pass
    try:
        space = json.loads(env.get("KFJUPYTER_TUNE_SPACE") or "{}")
    except ValueError:
        space = {}
    for name in space:
        if "KFJUPYTER_PARAM_" + name in env:
            params[name] = env["KFJUPYTER_PARAM_" + name]
    return params


class PodTracker:
    """A pod's rank sending its own metrics file to its MLflow run (see the module docstring)."""

    def __init__(self, env, say):
        self.env, self.say = env, say
        self.sender = Sender(env["MLFLOW_TRACKING_URI"], say)
        self.rank = int(env.get("RANK") or 0)
        self.path = Path(env["KFJUPYTER_METRICS_FILE"])
        self.run_id = env.get("MLFLOW_RUN_ID") or None
        self.state = {"sent": {}, "params": []}

    def _open(self):
        if self.run_id:
            return self.run_id
        env = self.env
        tags = {"kfjupyter.kind": env.get("KFJUPYTER_RUN_KIND") or "train"}
        for tag, var in (("kfjupyter.job_id", "KFJUPYTER_JOB_ID"), ("kfjupyter.run_id", "KFJUPYTER_RUN_ID"),
                         ("mlflow.parentRunId", "KFJUPYTER_MLFLOW_PARENT_RUN_ID")):  # fmt: skip
            if env.get(var):
                tags[tag] = env[var]
        params = pod_params(env)
        self.run_id, _ = self.sender.create_run(
            env.get("MLFLOW_EXPERIMENT_NAME") or "Default", env.get("KFJUPYTER_RUN_NAME") or None, tags, params,
            start_ms=int(time.time() * 1000), experiment_ref=env.get("MLFLOW_EXPERIMENT_ID") or None,
        )  # fmt: skip
        self.state["params"] = sorted(params)
        self.say(f"MLflow run {self.run_id} created on {self.sender.uri}")
        return self.run_id

    def send(self, force=False):
        """Send what is new; whether all of it got there."""
        if not self.sender.due(force):
            return False
        return self.sender.attempt(lambda: self.sender.send_file(self._open(), self.state, self.rank, self.path, "metrics"))

    def _end(self, status):
        def work():
            try:
                wanted = json.loads(self.env.get("KFJUPYTER_MLFLOW_ARTIFACTS") or "{}")
            except ValueError:
                wanted = {}
            artifacts = artifact_paths([(path, where) for where, path in wanted.items() if path])
            self.sender.end_run(self._open(), status, artifacts)
            return True

        return self.sender.attempt(work)

    def finish(self, status, timeout):
        """The last records, and (rank 0) the run's end and artifacts, for ``timeout`` s at most."""
        ok = self.sender.flush(lambda: self.send(force=True) and (self.rank != 0 or self._end(status)), timeout)
        if not ok:
            left = max(0, (self.path.stat().st_size if self.path.exists() else 0) - self.state["sent"].get("metrics", 0))
            self.say(f"MLflow tracking server {self.sender.uri}: {left} byte(s) of records not sent in {timeout:g} s; "
                     "they are in the pod's log (kfjupyter.report's name=value lines)")  # fmt: skip
        return ok


def _say(text):
    try:
        sys.stderr.write(f"[kfjupyter tracking {time.strftime('%H:%M:%S')}] {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def main():
    """The pod's tracker process (started by the bootstrap; see the module docstring)."""
    env = dict(os.environ)
    stdin = sys.stdin.fileno()
    try:
        tracker = PodTracker(env, _say)
    except ImportError:
        _say("MLflow tracking is off in this pod: its image has no MLflow client (pip install mlflow-skinny); "
             "the job goes on")  # fmt: skip
        return 0
    except Exception as exc:  # noqa: BLE001  (tracking never fails a job)
        _say(f"MLflow tracking is off in this pod: {exc!r}")
        return 0
    said = b""
    while True:
        if select.select([stdin], [], [], INTERVAL_S)[0]:
            chunk = os.read(stdin, 64)
            said += chunk
            if not chunk or b"\n" in said:
                break
        try:
            tracker.send()
        except Exception as exc:  # noqa: BLE001
            _say(f"tracking: {exc!r}")
    status = said.decode("ascii", "replace").strip() or "KILLED"
    timeout = float(env.get("KFJUPYTER_TRACKING_FLUSH_S") or 30)
    try:
        return 0 if tracker.finish(status if status in ("FINISHED", "FAILED", "KILLED") else "FAILED", timeout) else 3
    except Exception as exc:  # noqa: BLE001
        _say(f"tracking: {exc!r}")
        return 3


if __name__ == "__main__":
    sys.exit(main())
