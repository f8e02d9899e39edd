"""The MLflow copy of a job's runs, in MLflow's own layout.

A job is an MLflow run of the experiment of the same name (created if missing); its
trials, steps and a sweep's notebook runs are nested runs (``mlflow.parentRunId``). Params
(options, tuned params, pipeline and papermill parameters, the scalars a cell read,
``kfjupyter.log_params``), metrics with their steps and times (rank 0 as ``KEY``, other
ranks as ``rank-N/KEY``), tags (``mlflow.runName``, ``mlflow.source.name`` = the
notebook, ``mlflow.source.git.commit``, ``kfjupyter.*``), artifacts (the job's outputs and
its program) and the end status go there through the MLflow client (``mlflow-skinny`` is
enough: the ``tracking`` extra).

The sink never blocks a job: it runs on the tracker's thread, reads each metrics file
from where the server last took it (the offsets are kept in the run's record), sends at
most :data:`BATCH` records a call, and when the server is away it says so once in the
job's log, waits (doubling up to :data:`BACKOFF_CAP_S`) and goes on from the same place.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from .. import status as st
from ..store.runs import RunRecord, split_run_id
from ..store.workspace import get_workspace

#: records per ``log_batch`` (MLflow takes at most 1000 metrics and 100 params a call)
BATCH = 1000
MAX_PARAMS = 100
#: records read from a file per call (a record holds one or more metrics)
RECORDS = 500
BACKOFF_CAP_S = 5.0
#: MLflow's run statuses of kfjupyter's end states
END_STATUS = {st.SUCCEEDED: "FINISHED", st.FAILED: "FAILED", st.CANCELLED: "KILLED", "Skipped": "KILLED",
              "Cached": "FINISHED", "Pruned": "KILLED"}  # fmt: skip


def _client(uri: str):
    # the sink retries itself: the client's own retries (minutes of back-off) would hold the tracker
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001  (another job created it meanwhile)
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _value(value: Any) -> str:
    return str(value)[:6000]


class MlflowSink:
    def __init__(self, uri: str, job_id: str, job_dir: Path, engine, say: Callable[[str], None]):
        self.uri, self.job_id, self.job_dir, self.engine, self.say = uri, job_id, Path(job_dir), engine, say
        self.client = _client(uri)
        self.failing = False
        self.retry_at = 0.0
        self.backoff = 0.5
        self.states: dict[str, dict] = {}

    # -- state kept in the run's record
    def _state(self, rid: str) -> dict:
        if rid not in self.states:
            with get_workspace().reader() as s:
                record = s.get(RunRecord, rid)
            self.states[rid] = dict((record.mlflow if record is not None else None) or {"sent": {}, "params": []})
        return self.states[rid]

    def _save(self, rid: str) -> None:
        ws = get_workspace()
        with ws.session() as s, s.begin():
            record = s.get(RunRecord, rid, with_for_update=True)
            if record is not None:
                record.mlflow = dict(self.states[rid])

    def _open(self, rid: str) -> dict:
        """The run's MLflow run (created, with its params and tags, the first time)."""
        from ..tracking.model import get_run

        state = self._state(rid)
        if state.get("run_id"):
            return state
        run = get_run(rid)
        parent_id = None
        if run.parent_run:
            parent = self._open(run.parent_run)
            parent_id = parent["run_id"]
        from mlflow.entities import Param, RunTag

        tags = {"kfjupyter.run_id": rid, "kfjupyter.job_id": run.job_id, "kfjupyter.kind": run.kind,
                **{f"kfjupyter.{k}": _value(v) for k, v in run.env.items() if k not in ("notebook", "git_commit")},
                **{k: _value(v) for k, v in run.tags.items()}}  # fmt: skip
        if run.notebook:
            tags["mlflow.source.name"] = run.notebook
        if run.env.get("git_commit"):
            tags["mlflow.source.git.commit"] = run.env["git_commit"]
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        if run.source_run:
            tags["kfjupyter.source_run"] = run.source_run
        started = run.started_at or run.created_at
        created = self.client.create_run(
            experiment_id(self.client, run.experiment), start_time=int(started.timestamp() * 1000) if started else None,
            tags=tags, run_name=run.name,
        )  # fmt: skip
        state["run_id"] = created.info.run_id
        state["experiment_id"] = created.info.experiment_id
        params = [Param(k, _value(v)) for k, v in sorted(run.params.items())]
        for i in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(state["run_id"], params=params[i: i + MAX_PARAMS])
        state["params"] = sorted(run.params)
        self._save(rid)
        return state

    # -- sending
    def send(self, run_files: dict[str, list[tuple[int, Path]]], force: bool = False) -> bool:
        """Send what is new (at most BATCH records per file and call); whether all was sent.
        While the server is away, nothing is tried before its retry time (unless ``force``)."""
        if not force and time.monotonic() < self.retry_at:
            return False
        from mlflow.exceptions import MlflowException

        try:
            done = True
            for rid in sorted(run_files, key=lambda r: (split_run_id(r)[1] is not None, r)):
                state = self._open(rid)
                for rank, path in run_files[rid]:
                    done = self._send_file(rid, state, rank, path) and done
            if self.failing:
                self.failing = False
                self.say(f"MLflow tracking server {self.uri} is back: sending what it missed")
            self.backoff = 0.5
            return done
        except MlflowException as exc:
            code = exc.get_http_status_code()
            if code is not None and 400 <= code < 500 and code not in (408, 429):
                self.say(f"MLflow refused a batch ({exc.message[:300]}); skipped")
                return False
            self._lost(exc)
        except Exception as exc:  # noqa: BLE001  (connection errors, the server going away)
            self._lost(exc)
        return False

    def _lost(self, exc: Exception) -> None:
        if not self.failing:
            self.failing = True
            self.say(f"MLflow tracking server {self.uri} unreachable ({str(exc).splitlines()[0][:200]}); "
                     "the job goes on, its records are kept and sent when the server is back")  # fmt: skip
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_CAP_S)

    def _send_file(self, rid: str, state: dict, rank: int, path: Path) -> bool:
        from mlflow.entities import Metric, Param

        from ..runtime.logs import read_new_records

        rel = str(path.relative_to(self.job_dir)) if path.is_relative_to(self.job_dir) else str(path)
        offset = state["sent"].get(rel, 0)
        records, new_offset = read_new_records(path, offset, limit=RECORDS)
        if not records:
            return True
        metrics, params = [], {}
        prefix = "" if rank == 0 else f"rank-{rank}/"
        for record in records:
            if "params" in record:
                params.update({k: v for k, v in (record["params"] or {}).items() if k not in state["params"]})
                continue
            stamp = int(float(record.get("time") or time.time()) * 1000)
            step = record.get("step")
            step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else 0
            for key, value in record.items():
                if key not in ("time", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics.append(Metric(prefix + key, float(value), stamp, step))
        items = [Param(k, _value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(state["run_id"], params=items[i: i + MAX_PARAMS])
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(state["run_id"], metrics=metrics[i: i + BATCH])
        state["params"] = sorted(set(state["params"]) | set(params))
        state["sent"][rel] = new_offset
        self._save(rid)
        return len(records) < RECORDS

    # -- the end
    def finish(self, run_files: dict[str, list[tuple[int, Path]]], timeout: float) -> bool:
        """Send everything, end the runs, upload the artifacts: for ``timeout`` seconds at most."""
        deadline = time.monotonic() + timeout
        while True:
            if self.send(run_files, force=True) and self._end_all(run_files):
                return True
            if time.monotonic() >= deadline:
                left = self._unsent(run_files)
                self.say(f"MLflow tracking server {self.uri}: {left} byte(s) of records not sent yet; "
                         f"kfjupyter.tracking.sync({self.job_id!r}) sends them once it is back")  # fmt: skip
                return False
            time.sleep(min(self.backoff, max(0.0, deadline - time.monotonic())))

    def _unsent(self, run_files) -> int:
        total = 0
        for rid, files in run_files.items():
            sent = self._state(rid)["sent"]
            for _, path in files:
                rel = str(path.relative_to(self.job_dir)) if path.is_relative_to(self.job_dir) else str(path)
                total += max(0, (path.stat().st_size if path.exists() else 0) - sent.get(rel, 0))
        return total

    def _end_all(self, run_files) -> bool:
        from ..store.workspace import ChildNotFoundError

        ws = get_workspace()
        rids = sorted(set(run_files) | {self.job_id}, key=lambda r: (split_run_id(r)[1] is None, r))  # children first
        try:
            for rid in rids:
                state = self._open(rid)
                if state.get("ended"):
                    continue
                job_id, child = split_run_id(rid)
                try:
                    status = ws.get_child(job_id, child).status if child else ws.get_job(job_id).status
                except ChildNotFoundError:
                    status = st.SUCCEEDED
                if status not in st.CHILD_TERMINAL:
                    continue
                for local, where in self._artifacts(rid):
                    if local.is_dir():
                        self.client.log_artifacts(state["run_id"], str(local), where)
                    else:
                        self.client.log_artifact(state["run_id"], str(local), where)
                self.client.set_terminated(state["run_id"], END_STATUS.get(status, "FINISHED"))
                state["ended"] = True
                self._save(rid)
            return True
        except Exception as exc:  # noqa: BLE001
            self._lost(exc)
            return False

    def _artifacts(self, rid: str) -> list[tuple[Path, str | None]]:
        """What a run's MLflow copy keeps as artifacts: its outputs and its program."""
        job_id, child = split_run_id(rid)
        folder = get_workspace().job_dir(job_id)
        if child is None:
            candidates = [(folder / "outputs", "outputs"), (folder / "bundle" / "program.py", "program"),
                          (folder / "input.ipynb", "notebook"), (folder / "output.ipynb", "notebook")]  # fmt: skip
        else:
            candidates = [(folder / "trials" / child / "outputs", "outputs"),
                          (folder / "steps" / child / "program.py", "program")]  # fmt: skip
        out = []
        for path, where in candidates:
            if path.is_file() or (path.is_dir() and any(p.is_file() for p in path.rglob("*"))):
                if not path.is_symlink():
                    out.append((path, where))
        return out


def search_mlflow(experiment: str | None, filter: str | None, order_by, limit: int | None):  # noqa: A002
    """The runs of an MLflow experiment as a DataFrame (``kfjupyter.runs(source="mlflow")``)."""
    import pandas as pd

    from .follow import tracking_uri
    from .search import SearchSyntaxError

    uri = tracking_uri()
    if not uri:
        raise SearchSyntaxError("no MLflow tracking server: set MLFLOW_TRACKING_URI (or c.KFJupyter.tracking_uri)")
    client = _client(uri)
    if experiment is None:
        ids = [e.experiment_id for e in client.search_experiments()]
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise SearchSyntaxError(f"no experiment {experiment!r} on the MLflow tracking server {uri}")
        ids = [found.experiment_id]
    orders = [order_by] if isinstance(order_by, str) else list(order_by or [])
    rows = []
    for run in client.search_runs(ids, filter_string=filter or "", order_by=orders or None, max_results=limit or 1000):
        row = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "name": run.info.run_name,
               "status": run.info.status, "start_time": run.info.start_time, "end_time": run.info.end_time}  # fmt: skip
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)
