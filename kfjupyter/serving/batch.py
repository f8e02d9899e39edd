"""``kfjupyter.batch_predict``: batch inference with a registered model, a job like any other.

``batch_predict("iris@production", data, workers=N)`` takes a DataFrame (or an array), a
file or a folder of files (Parquet, CSV, JSON lines), cuts the rows into shards and runs
them on ``N`` local worker processes under a detached supervisor
(:mod:`.batch_run`; the workers are :mod:`.batch_worker`). The job's message and its
``batch`` metric channel say how far it is; each shard is a child task (``shard/N``, with
its log). Cancel stops the workers; :meth:`BatchJob.resume` starts the job again and runs
only the shards that have no predictions yet. The output is written beside the input
(``data.parquet`` → ``data.predictions.parquet``; a folder → ``<folder>.predictions/``;
a DataFrame → the job's outputs) with the model version recorded (a ``.json`` sidecar and,
for Parquet, the schema metadata).

On Kubernetes (``backend="kubernetes"``, :mod:`.batch_kubernetes`) the same shards are the
completion indexes of a ``batch/v1`` Indexed Job (``parallelism`` = ``workers``), whose pods
read and write a PersistentVolumeClaim that this notebook mounts too (``volume="CLAIM:/path"``,
mounted at the same path in the pods): the same progress, cancel, resume and output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .. import status as st
from ..config import default_backend, default_image
from ..errors import InvalidOptionError
from ..jobs import Job, create, resubmit
from ..runtime.detached import DetachedEngine
from ..runtime.engine import MAX_NAME_LENGTH, Channel, Channels, Features, JobSpec, ranked
from ..store.models import ChildRecord
from ..store.workspace import get_workspace
from . import batchio
from .batchio import progress_log, progress_metrics, shard_log, worker_log

KIND = "batch"
SHARD = "shard"
PROGRESS = Channel("batch", "progress", rank=-1)
#: What a batch job's warm parent has imported (see kfjupyter/runtime/warm.py): the
#: supervisor, the workers' host and the input/output code, so that the host is a fork of
#: the supervisor with the model's library, pandas and pyarrow loaded; and per framework,
#: the modules its models load with (what unpickling a scikit-learn forest imports …).
WARM_MODULES = ("kfjupyter.serving.batch_run", "kfjupyter.serving.batch_worker", "kfjupyter.serving.batchio",
                "kfjupyter.serving.calls", "kfjupyter.registry.formats", "kfjupyter.store.workspace", "numpy",
                "pandas", "pyarrow", "pyarrow.parquet")  # fmt: skip
FRAMEWORK_MODULES = {
    "sklearn": ("sklearn.base", "sklearn.ensemble", "sklearn.linear_model", "sklearn.tree", "joblib"),
    "xgboost": ("xgboost",),
    "pytorch": ("torch",),
    "onnx": ("onnxruntime",),
}


def host_env(env: dict[str, str], workers: int, threads: int | None) -> dict[str, str]:
    """The environment of a batch job's workers' host (and its workers): each worker one
    core (``threads`` for its BLAS/OpenMP pools), pyarrow's allocator without its
    background thread (the host forks its workers, and a process is forked only while it
    has one thread)."""
    env = {**env, "PYTHONUNBUFFERED": "1", "KFJUPYTER_BATCH_WORKERS": str(workers),
           "JE_ARROW_MALLOC_CONF": "background_thread:false"}  # fmt: skip
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads or 1)
    return env


#: rows per shard when not given: enough shards for every worker to take several
MIN_SHARD_ROWS = 10_000
SHARDS_PER_WORKER = 4


@dataclass(frozen=True)
class BatchSpec(JobSpec):
    """A batch inference: the resolved model ``version``, the input ``files``, the
    ``shards`` (``{"index", "file", "start", "stop"}``), where each file's predictions go
    (``outputs``: input path → output path), the feature ``columns`` and the model's
    ``method``, run on ``workers`` local processes."""

    kind: ClassVar[str] = KIND
    #: a resumed job's Kubernetes Job is named ``<job id>-rN``
    max_name_length: ClassVar[int] = MAX_NAME_LENGTH - 5

    name: str = "batch"
    model: str = ""
    version: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    columns: list[str] | None = None
    method: str = "predict"
    include_inputs: bool = False
    workers: int = 1  # type: ignore[assignment]  (the record's column: processes at once)
    threads: int = 1
    #: which run of the job this is (a resume is the next)
    run: int = 1
    # -- on Kubernetes
    namespace: str | None = None
    #: the image of the pods (with kfjupyter and the model's libraries installed)
    image: str | None = None
    #: the PersistentVolumeClaim holding the input and the output, and where it is mounted
    #: (here and in the pods): ``{"claim": …, "mount": …}``
    volume: dict | None = None
    cpu: str | None = None
    memory: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidOptionError(f"invalid workers {self.workers!r}: expected an integer >= 1")
        super().__post_init__()
        if self.backend == "kubernetes":
            from .batch_kubernetes import check_spec

            check_spec(self)


class LocalBatchEngine(DetachedEngine):
    """Batch inference on this machine: ``workers`` processes taking shards in turn."""

    kind = KIND
    supervisor = "kfjupyter.serving.batch_run"
    what = "the batch inference supervisor"
    features = Features(supervised=True, metrics=True, children=True)

    warm_modules = WARM_MODULES

    def launch(self, job_id: str, spec: BatchSpec, job_dir: Path) -> dict:
        return {"workers": spec.workers, "threads": spec.threads, "framework": (spec.version or {}).get("format")}

    def _launch(self, job_dir: Path) -> dict:
        import json

        from ..runtime.supervisor import LAUNCH

        return json.loads((job_dir / LAUNCH).read_text())

    def warm_env(self, job_dir: Path, env: dict[str, str]) -> dict[str, str] | None:
        """The host's environment: its warm parent is started with it, so that the
        supervisor forked from it may fork the host (:func:`host_env`)."""
        launch = self._launch(job_dir)
        return host_env(env, launch["workers"], launch.get("threads"))

    def warm_modules_for(self, job_dir: Path) -> tuple[str, ...]:
        return WARM_MODULES + FRAMEWORK_MODULES.get(self._launch(job_dir).get("framework") or "", ())

    def _spec(self, job_id: str) -> dict:
        return get_workspace().get_job(job_id).spec or {}

    def channels(self, job_id: str, info: dict) -> Channels:
        n = int(self._spec(job_id).get("workers") or 1)
        return Channels(logs=(*ranked("worker", "worker", n), PROGRESS), metrics=(PROGRESS,))

    def log_path(self, job_id: str, job_dir: Path, channel: str) -> Path | None:
        if channel == PROGRESS.name:
            return progress_log(job_dir)
        kind, _, number = channel.replace("-", "/", 1).partition("/")
        shards = self._spec(job_id).get("shards") or []
        if kind == "worker" and number.isdigit() and int(number) < int(self._spec(job_id).get("workers") or 1):
            return worker_log(job_dir, int(number))
        if kind == SHARD and number.isdigit() and int(number) < len(shards):
            return shard_log(job_dir, int(number))
        return None

    def metric_paths(self, job_id: str, job_dir: Path) -> list[tuple[Channel, Path]]:
        return [(PROGRESS, progress_metrics(job_dir))]

    def tidy(self, job_id: str, info: dict, reason: str) -> None:
        """Shards still marked Running when nothing runs them any more: Cancelled (a resume runs them)."""
        ws = get_workspace()
        for kid in ws.list_children(job_id, SHARD):
            if kid.status not in st.CHILD_TERMINAL:
                ws.update_child(job_id, kid.name, status=st.CANCELLED, message=reason)


class BatchJob(Job):
    """A batch inference job: :attr:`progress`, :attr:`output`, :meth:`result`, :meth:`resume`."""

    @property
    def progress(self) -> dict:
        """Shards and rows done so far (locally read from the shards' predictions on disk; on
        Kubernetes from the Job's succeeded indexes, as the shards' child tasks record them)."""
        spec = self.record.spec or {}
        shards = spec.get("shards") or []
        if self.record.backend == "local":
            done = [s for s in shards if batchio.shard_output(self.job_dir, s["index"]).exists()]
        else:
            succeeded = {k.name for k in self.children(SHARD) if k.status == st.SUCCEEDED}
            done = [s for s in shards if str(s["index"]) in succeeded]
        rows = sum(s["stop"] - s["start"] for s in shards)
        return {"shards": len(shards), "shards_done": len(done), "rows": rows,
                "rows_done": sum(s["stop"] - s["start"] for s in done)}  # fmt: skip

    @property
    def output(self) -> Path:
        """Where the predictions are (a file, or a folder for a folder of inputs)."""
        spec = self.record.spec or {}
        outputs = list((spec.get("outputs") or {}).values())
        return Path(outputs[0]) if len(outputs) == 1 else Path(outputs[0]).parent

    def result(self):
        """The predictions (with the input rows, with ``include_inputs``), as one DataFrame (the job must have succeeded)."""
        import pandas as pd

        self.refresh()
        if self.status != st.SUCCEEDED:
            raise InvalidOptionError(f"batch job {self.id} is {self.status}: no result" +
                                     (" (resume it with .resume())" if self.status in (st.CANCELLED, st.FAILED) else ""))
        spec = self.record.spec
        return pd.concat([batchio.read_rows(Path(o), 0, batchio.count_rows(Path(o))) for o in spec["outputs"].values()],
                         ignore_index=True)  # fmt: skip

    def resume(self, workers: int | None = None) -> "BatchJob":
        """Start a cancelled or failed batch job again: only the shards without predictions run."""
        record = self.refresh()
        if record.status not in (st.CANCELLED, st.FAILED):
            raise InvalidOptionError(f"batch job {self.id} is {record.status}: only a cancelled or failed one resumes")
        data = dict(record.spec)
        data["run"] = int(data.get("run") or 1) + 1
        if workers is not None:
            data["workers"] = workers
        spec = BatchSpec.from_dict(data)
        return resubmit(self.id, spec, message="resuming")  # type: ignore[return-value]


def _input_files(data: Any) -> tuple[list[Path], Path | None]:
    path = Path(data).expanduser()
    if not path.exists():
        raise InvalidOptionError(f"no file or folder {str(path)!r} to predict on")
    if path.is_dir():
        from ..files import files_under

        files = sorted(p for p in files_under(path, what="batch input folder") if batchio.format_of(p) and ".predictions" not in p.name)
        if not files:
            raise InvalidOptionError(f"folder {path} holds no Parquet, CSV or JSON-lines files ({', '.join(batchio.FORMATS)})")
        return files, path.with_name(f"{path.name}.predictions")
    if batchio.format_of(path) is None:
        raise InvalidOptionError(f"{path.name}: batch_predict reads {', '.join(batchio.FORMATS)} files")
    return [path], None


def batch_predict(
    model: str,
    data: Any,
    workers: int = 1,
    *,
    name: str | None = None,
    shard_rows: int | None = None,
    columns: list[str] | None = None,
    method: str = "predict",
    include_inputs: bool = False,
    backend: str | None = None,
    volume: str | dict | None = None,
    image: str | None = None,
    namespace: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    wait: bool = False,
    timeout: float | None = None,
) -> BatchJob:
    """Predict ``data`` with registered model ``model`` as a batch job; returns its :class:`BatchJob`.

    ``data``: a DataFrame or an array (written to the job's folder; on Kubernetes to its
    folder on the volume), a file or a folder of
    files (``.parquet``, ``.csv``, ``.jsonl``). ``workers``: local processes at once (each
    model predicting single-threaded); ``shard_rows``: rows per shard (default: a few
    shards per worker, at least 10 000 rows); ``columns``: the feature columns (default:
    all); ``method``: ``predict`` or e.g. ``predict_proba``; ``include_inputs``: the output
    has the input's columns before the predictions (default: the predictions alone, one
    row per input row, in its order). ``wait``: block until it ends.

    ``backend="kubernetes"``: a ``batch/v1`` Indexed Job (one completion index per shard,
    ``workers`` pods at once) in ``namespace``, whose pods run ``image`` (with kfjupyter
    installed; default ``KFJUPYTER_IMAGE``) with ``cpu`` and ``memory`` each. ``volume``:
    ``"CLAIM:/mount/path"``, a PersistentVolumeClaim this notebook has mounted at that path,
    which the pods mount there too: ``data`` is a file or folder on it, and the output is
    written beside it.
    """
    from .api import resolve_version

    from ..backends import check_backend

    backend = check_backend(KIND, backend or default_backend())
    if shard_rows is not None and (isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1):
        raise InvalidOptionError(f"shard_rows must be a whole number >= 1, got {shard_rows!r}")
    if not isinstance(method, str) or not method.isidentifier():
        raise InvalidOptionError(f"method must be the name of the model's method (predict, predict_proba), got {method!r}")
    version = resolve_version(model)  # ModelNotFoundError names what is missing
    k8s: dict = {}
    cluster = {"volume": volume, "image": image, "namespace": namespace, "cpu": cpu, "memory": memory}
    if backend == "local" and (given := [k for k, v in cluster.items() if v is not None]):
        raise InvalidOptionError(f"{', '.join(given)}: for batch_predict on Kubernetes (backend='kubernetes'); "
                                 "locally, workers= sets the processes")  # fmt: skip
    if backend == "kubernetes":
        from .batch_kubernetes import check_data, parse_volume

        k8s = {"namespace": namespace, "image": image or default_image(), "volume": parse_volume(volume), "cpu": cpu,
               "memory": memory}  # fmt: skip
        check_data(data, k8s["volume"])
    in_memory = not isinstance(data, (str, Path))
    if in_memory:
        frame = _as_frame(data)
        files, folder_out = [], None
    else:
        files, folder_out = _input_files(data)
    base = name or f"batch-{version['model']}"
    base = "".join(c if c.isalnum() else "-" for c in base.lower()).strip("-")[:40] or "batch"

    def plan(input_files: list[Path], out_dir: Path | None) -> dict:
        total = sum(batchio.count_rows(f) for f in input_files)
        if total == 0:
            raise InvalidOptionError("the input has no rows to predict")
        rows = shard_rows or max(MIN_SHARD_ROWS, math.ceil(total / (workers * SHARDS_PER_WORKER)))
        shards = batchio.plan_shards(input_files, rows)
        outputs = {str(f): str(batchio.output_path(f, folder_out) if out_dir is None else out_dir / "predictions.parquet")
                   for f in input_files}  # fmt: skip
        return {"files": [str(f) for f in input_files], "shards": shards, "outputs": outputs}

    planned = plan(files, None) if not in_memory else {}
    spec_fields = dict(name=base, backend=backend, model=model, version=version, columns=columns, method=method,
                       workers=workers, include_inputs=bool(include_inputs), **k8s)  # fmt: skip
    BatchSpec(**spec_fields, **planned)  # checked before anything exists
    holder: dict = {}

    def prepare(job_id: str, job_dir: Path) -> None:
        if in_memory:  # a DataFrame: its rows as the job's input file (on Kubernetes: in its folder on the volume)
            where = job_dir if backend == "local" else _volume_folder(k8s["volume"], job_id)
            where.mkdir(parents=True, exist_ok=True)
            source = where / "input.parquet"
            frame.to_parquet(source, index=False)
            holder.update(plan([source], job_dir / "outputs" if backend == "local" else where))
        (job_dir / "shards").mkdir(exist_ok=True)

    if in_memory:
        return _create_in_memory(spec_fields, prepare, holder, wait, timeout)
    spec = BatchSpec(**spec_fields, **planned)
    job = create(spec, prepare=prepare, children=_children(spec.shards))
    return _finish(job, wait, timeout)


def _create_in_memory(spec_fields: dict, prepare, holder: dict, wait: bool, timeout: float | None) -> BatchJob:
    """A DataFrame's job: its shards are known once its rows are in the job's folder."""
    ws = get_workspace()
    spec = BatchSpec(**spec_fields)
    job = create(spec, prepare=prepare, start=False)
    full = BatchSpec(**spec_fields, **holder)
    ws.update_job(job.id, spec=full.to_dict())
    ws.sync_children(job.id, [_child_row(s) for s in full.shards])
    from ..jobs import start

    start(job.id)
    return _finish(BatchJob(job.id), wait, timeout)


def _volume_folder(volume: dict, job_id: str) -> Path:
    from .batch_kubernetes import WORK_DIR

    return Path(volume["mount"]) / WORK_DIR / job_id


def _child_row(shard: dict) -> dict:
    return {"name": str(shard["index"]), "kind": SHARD, "position": shard["index"], "status": st.PENDING,
            "attrs": {"file": Path(shard["file"]).name, "start": shard["start"], "stop": shard["stop"]}}  # fmt: skip


def _children(shards: list[dict]) -> list[ChildRecord]:
    return [ChildRecord(**_child_row(s)) for s in shards]


def _finish(job: Job, wait: bool, timeout: float | None) -> BatchJob:
    handle = job if isinstance(job, BatchJob) else BatchJob(job.id)
    if wait:
        handle.wait(timeout=timeout)
    return handle


def _as_frame(data: Any):
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise InvalidOptionError(f"batch_predict takes rows: a DataFrame, a 2-D array, a file or a folder; got shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
