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

from pathlib import Path
from typing import Callable

from .. import status as st
from ..store.runs import RunRecord, split_run_id
from ..store.workspace import get_workspace
from .mlflow_sender import BACKOFF_CAP_S, BATCH, MAX_PARAMS, RECORDS, Sender, artifact_paths, client as _client
from .mlflow_sender import experiment_id, param_text as _value

__all__ = ["BACKOFF_CAP_S", "BATCH", "END_STATUS", "MAX_PARAMS", "RECORDS", "MlflowSink", "experiment_id",
           "search_mlflow"]  # fmt: skip

#: MLflow's run statuses of kfjupyter's end states
END_STATUS = {st.SUCCEEDED: "FINISHED", st.FAILED: "FAILED", st.CANCELLED: "KILLED", "Skipped": "KILLED",
              "Cached": "FINISHED", "Pruned": "KILLED"}  # fmt: skip


class MlflowSink(Sender):
    """The MLflow copy of one local job's runs: :class:`~.mlflow_sender.Sender` with each
    run's MLflow state (its MLflow run, the read positions of its files) kept in the run's
    record of the workspace store, and the runs made from what the store says of them."""

    def __init__(self, uri: str, job_id: str, job_dir: Path | None, engine=None, say: Callable[[str], None] = print):
        super().__init__(uri, say)
        self.job_id, self.job_dir, self.engine = job_id, Path(job_dir) if job_dir else None, engine
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
        state["run_id"], state["experiment_id"] = self.create_run(
            run.experiment, run.name, tags, run.params, start_ms=int(started.timestamp() * 1000) if started else None
        )
        state["params"] = sorted(run.params)
        self._save(rid)
        return state

    def open(self, rid: str, **note) -> dict | None:
        """The MLflow state of run ``rid``, its MLflow run created if need be, with ``note``
        (fields kept with it: ``pods=URI`` for a Kubernetes job's run, ``ended=True``);
        None when the server failed it (said)."""
        if not self.attempt(lambda: bool(self._open(rid))):
            return None
        state = self._state(rid)
        state.update(note)
        self._save(rid)
        return state

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.job_dir)) if self.job_dir and path.is_relative_to(self.job_dir) else str(path)

    # -- sending
    def send(self, run_files: dict[str, list[tuple[int, Path]]], force: bool = False) -> bool:
        """Send what is new (at most RECORDS records per file and call); whether all was sent.
        While the server is away, nothing is tried before its retry time (unless ``force``)."""
        if not self.due(force):
            return False

        def work() -> bool:
            done = True
            for rid in sorted(run_files, key=lambda r: (split_run_id(r)[1] is not None, r)):
                state = self._open(rid)
                for rank, path in run_files[rid]:
                    all_read = self.send_file(state["run_id"], state, rank, path, self._rel(path))
                    self._save(rid)
                    done = all_read and done
            return done

        return self.attempt(work)

    # -- the end
    def finish(self, run_files: dict[str, list[tuple[int, Path]]], timeout: float) -> bool:
        """Send everything, end the runs, upload the artifacts: for ``timeout`` seconds at most."""
        if self.flush(lambda: self.send(run_files, force=True) and self._end_all(run_files), timeout):
            return True
        left = self._unsent(run_files)
        self.say(f"MLflow tracking server {self.uri}: {left} byte(s) of records not sent yet; "
                 f"kfjupyter.tracking.sync({self.job_id!r}) sends them once it is back")  # fmt: skip
        return False

    def _unsent(self, run_files) -> int:
        total = 0
        for rid, files in run_files.items():
            sent = self._state(rid)["sent"]
            for _, path in files:
                total += max(0, (path.stat().st_size if path.exists() else 0) - sent.get(self._rel(path), 0))
        return total

    def _end_all(self, run_files) -> bool:
        from ..store.workspace import ChildNotFoundError

        ws = get_workspace()
        rids = sorted(set(run_files) | {self.job_id}, key=lambda r: (split_run_id(r)[1] is None, r))  # children first

        def work() -> bool:
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
                self.end_run(state["run_id"], END_STATUS.get(status, "FINISHED"), self._artifacts(rid))
                state["ended"] = True
                self._save(rid)
            return True

        return self.attempt(work)

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
        return artifact_paths(candidates)


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
