"""The registry interface, and what every backend shares: preparing a registration
(lineage, defaults from a job, the artifact stored by content) and loading a model back.

A backend implements the storage primitives (:class:`Registry`'s abstract methods); the
embedded store (:mod:`.local`) and Kubeflow Model Registry (:mod:`.remote`) are the two.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..files import files_under
from . import formats, signature
from .artifacts import ArtifactStore
from .entities import (
    AliasEvent,
    ModelVersion,
    Page,
    Ref,
    RegisteredModel,
    check_alias,
    check_label,
    check_model_name,
    parse_ref,
)
from .errors import InvalidOptionError

#: longest cell source kept as lineage
MAX_CELL = 20_000

#: metric ranges: {"accuracy": (0.9, None)} (inclusive; None leaves a side open)
MetricRanges = dict[str, tuple[float | None, float | None]]

#: the artifact (and its file) of a version's sample of its training data
TRAINING_SAMPLE = "training_sample"
SAMPLE_FILE = "training-sample.npy"


def current_user() -> str | None:
    user = os.environ.get("JUPYTERHUB_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user database entry
        return None


@dataclass
class ArtifactSpec:
    """An artifact ready to be recorded: already stored in the artifact store."""

    name: str
    uri: str
    sha256: str
    size: int
    format: str
    format_version: str | None
    main_file: str | None
    properties: dict = field(default_factory=dict)


@dataclass
class VersionSpec:
    """Everything a backend records for one new version (its number is the backend's to give)."""

    model: str
    label: str | None
    framework: str
    framework_version: str | None
    description: str | None
    author: str | None
    metrics: dict[str, float | None]
    params: dict[str, Any]
    custom_properties: dict[str, Any]
    lineage: dict[str, Any]
    artifacts: list[ArtifactSpec]
    aliases: list[str]


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"metric value {value!r} is not a number") from None
    return out if out == out else None  # NaN → None


def _resolve_job(job: Any):
    """(Job, study or None) from a Job, a Study, or a job id."""
    from ..jobs import Job

    if job is None:
        return None, None
    if isinstance(job, str):
        job = Job(job)
    if not isinstance(job, Job) and isinstance(getattr(job, "job", None), Job):
        return job.job, job
    if not isinstance(job, Job):
        raise InvalidOptionError(f"job={job!r}: give a Job, a Study or a job id")
    return job, None


def lineage_of(job: Any, study: Any = None) -> dict[str, Any]:
    """Where a model came from: the job (study, pipeline run) and the notebook and cell."""
    lineage: dict[str, Any] = {}
    if job is not None:
        record = job.record
        lineage.update(
            job_id=record.id,
            job_kind=record.kind,
            job_name=record.name,
            job_backend=record.backend,
            job_status=record.status,
            notebook=record.notebook,
            cell=record.cell,
        )
        if study is not None:
            lineage["study_id"] = study.id
        if record.kind == "pipeline":
            lineage["pipeline_run_id"] = record.id
    else:
        lineage["notebook"] = os.environ.get("JPY_SESSION_NAME")
        if "IPython" in sys.modules:  # a kernel or shell: the cell being run
            try:
                shell = sys.modules["IPython"].get_ipython()
                cells = shell.user_ns.get("In") if shell is not None else None
                if cells:
                    lineage["cell"] = cells[-1]
            except Exception:  # pragma: no cover - an unusual shell
                pass
    if isinstance(lineage.get("cell"), str):
        lineage["cell"] = lineage["cell"][:MAX_CELL]
    return {k: v for k, v in lineage.items() if v not in (None, "")}


def job_metrics(job: Any) -> dict[str, float | None]:
    """The last value of each metric rank 0 reported."""
    out: dict[str, float | None] = {}
    try:
        rows = job.metrics(rank=0) or job.metrics()
    except Exception:
        return out
    for row in rows:
        for key, value in row.items():
            if key not in ("rank", "step", "time"):
                out[key] = value
    return out


class Registry(ABC):
    """One interface over the embedded store and Kubeflow Model Registry."""

    #: "local" or "kubeflow"
    kind: str = ""

    def __init__(self, store: ArtifactStore):
        self.store = store

    # -- primitives every backend implements ---------------------------------------------
    @abstractmethod
    def _create_version(self, spec: VersionSpec, who: str | None) -> ModelVersion: ...

    @abstractmethod
    def get_model(self, name: str) -> RegisteredModel: ...

    @abstractmethod
    def get_version(self, ref: str, version: int | str | None = None, alias: str | None = None) -> ModelVersion: ...

    @abstractmethod
    def list_models(
        self,
        query: str | None = None,
        *,
        state: str | None = None,
        framework: str | None = None,
        alias: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
        order_by: str = "updated",
        descending: bool = True,
    ) -> Page[RegisteredModel]: ...

    @abstractmethod
    def search_versions(
        self,
        query: str | None = None,
        *,
        model: str | None = None,
        framework: str | None = None,
        alias: str | None = None,
        state: str | None = None,
        metrics: MetricRanges | None = None,
        job_id: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
        order_by: str = "created",
        descending: bool = True,
    ) -> Page[ModelVersion]: ...

    @abstractmethod
    def set_alias(
        self, model: str, alias: str, version: int | str, who: str | None = None, reason: str | None = None
    ) -> ModelVersion: ...

    @abstractmethod
    def delete_alias(self, model: str, alias: str, who: str | None = None, reason: str | None = None) -> None: ...

    @abstractmethod
    def alias_history(self, model: str, alias: str | None = None) -> list[AliasEvent]: ...

    @abstractmethod
    def set_version_state(
        self, ref: str, state: str, version: int | str | None = None, force: bool = False, who: str | None = None
    ) -> ModelVersion: ...

    @abstractmethod
    def set_model_state(self, name: str, state: str) -> RegisteredModel: ...

    @abstractmethod
    def update_version(
        self,
        ref: str,
        version: int | str | None = None,
        *,
        description: str | None = None,
        custom_properties: dict | None = None,
    ) -> ModelVersion: ...

    @abstractmethod
    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        custom_properties: dict | None = None,
    ) -> RegisteredModel: ...

    # -- deployments ----------------------------------------------------------------------------
    def record_deployment(self, environment: str, name: str, ref: str, *, runtime: str | None = None,
                          canary: str | None = None, canary_percent: int = 0, endpoint_id: str | None = None) -> dict | None:
        """Record that version ``ref`` is served as ``name`` in ``environment`` (a cluster
        namespace); a backend that keeps deployments returns the ids it recorded them under.
        The embedded registry keeps none (the workspace's endpoint is the record): None."""
        return None

    def update_deployment(self, record: dict, *, ref: str | None = None, canary: str | None = None,
                          canary_percent: int = 0, undeployed: bool = False) -> dict:
        """Change a recorded deployment: what it serves (``ref``, a canary), or that it is gone."""
        return record

    # -- shared ----------------------------------------------------------------------------
    def change_marker(self) -> Any:
        """A cheap value that changes whenever a model, a version or an alias changes
        (compare two reads: equal means nothing changed). This default asks for the newest
        model and the number of versions; the embedded registry reads a few maxima."""
        page = self.list_models(limit=1, order_by="updated", descending=True)
        newest = page.items[0] if page.items else None
        versions = self.search_versions(limit=1)
        return [page.total, newest.name if newest else None,
                _iso_or_none(newest.updated_at) if newest else None, versions.total]

    def list_versions(
        self, model: str, state: str | None = None, limit: int | None = None, offset: int = 0, descending: bool = True
    ) -> Page[ModelVersion]:
        self.get_model(model)  # ModelNotFoundError for an unknown model
        return self.search_versions(
            model=model, state=state, limit=limit, offset=offset, order_by="number", descending=descending
        )

    def archive(self, ref: str, version: int | str | None = None, force: bool = False) -> ModelVersion:
        return self.set_version_state(ref, "ARCHIVED", version=version, force=force)

    def restore(self, ref: str, version: int | str | None = None) -> ModelVersion:
        return self.set_version_state(ref, "LIVE", version=version)

    def register(
        self,
        name: str,
        path_or_object: Any = None,
        version: str | None = None,
        *,
        framework: str | None = None,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        description: str | None = None,
        job: Any = None,
        custom_properties: dict[str, Any] | None = None,
        artifacts: dict[str, str | os.PathLike] | None = None,
        aliases: str | Iterable[str] | None = None,
        author: str | None = None,
        training_sample: Any = None,
        input_example: Any = None,
    ) -> ModelVersion:
        check_model_name(name)
        label = None
        if version is not None:
            if isinstance(version, int) and not isinstance(version, bool):
                raise InvalidOptionError(
                    f"version={version}: numbers are given by the registry (the next free one); "
                    "pass a name such as '1.0' or 'v3' to label a version"
                )
            label = check_label(str(version))
        if framework is not None:
            formats.check_framework(framework)
        alias_list = [aliases] if isinstance(aliases, str) else list(aliases or [])
        for alias in alias_list:
            check_alias(alias)
        job_handle, study = _resolve_job(job)
        lineage = lineage_of(job_handle, study)
        if metrics is None and job_handle is not None:
            metrics = job_metrics(job_handle)
            if study is not None and getattr(study, "best_value", None) is not None:
                metrics = {**metrics, study.objective: study.best_value}
        if params is None and study is not None:
            params = dict(study.best_params or {})
        if path_or_object is None:
            path_or_object = self._job_output(job_handle)
        # what it takes and gives, found (or refused) before anything is stored
        described = signature.describe(path_or_object, input_example, training_sample)
        main = self._store_model(path_or_object, framework, job_handle)
        extra = [self._store_file(key, Path(p)) for key, p in (artifacts or {}).items()]
        if training_sample is not None:
            extra.append(self._store_sample(training_sample))
        spec = VersionSpec(
            model=name,
            label=label,
            framework=main.format,
            framework_version=main.format_version,
            description=description,
            author=author or current_user(),
            metrics={str(k): _float(v) for k, v in (metrics or {}).items()},
            params=dict(params or {}),
            custom_properties={**described, **(custom_properties or {})},
            lineage=lineage,
            artifacts=[main, *extra],
            aliases=alias_list,
        )
        return self._create_version(spec, who=author or current_user())

    @staticmethod
    def _job_output(job: Any) -> Path:
        if job is None:
            raise InvalidOptionError("register_model needs the model: an object, a file or a folder (or job=…)")
        outputs = job.outputs
        if not outputs:
            raise InvalidOptionError(
                f"job {job.id} saved no outputs (files written to kfjupyter.output_dir()); pass the model or its path"
            )
        return next(iter(outputs.values())) if len(outputs) == 1 else job.output_dir

    def _store_model(self, model: Any, framework: str | None, job: Any) -> ArtifactSpec:
        if isinstance(model, (str, os.PathLike)):
            path = Path(model).expanduser()
            if job is not None and not path.is_absolute() and not path.exists() and (job.output_dir / path).exists():
                path = job.output_dir / path
            if not path.exists():
                raise InvalidOptionError(f"no file or folder {str(path)!r} to register")
            return self._store_file("model", path, framework)
        framework = framework or formats.detect(model)
        with self.store.stage() as stage:
            info = formats.save(model, framework, stage)
            stored = self.store.commit(stage)
        return ArtifactSpec(
            "model", stored.uri, stored.sha256, stored.size, framework, info["format_version"], info["main_file"],
            info["properties"],
        )

    def _store_sample(self, sample: Any) -> ArtifactSpec:
        """A sample of the training data (rows of numbers: an array, a DataFrame, a list of
        rows) as the artifact :data:`TRAINING_SAMPLE` (``training-sample.npy``), what an
        endpoint's drift summary and SHAP explainer compare with."""
        import numpy as np

        values = sample.to_numpy() if hasattr(sample, "to_numpy") else sample
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InvalidOptionError(f"training_sample must be rows of numbers (an array or a DataFrame): {exc}") from None
        if arr.ndim not in (1, 2) or not len(arr):
            raise InvalidOptionError(f"training_sample must be a non-empty table of rows, got shape {arr.shape}")
        with self.store.stage() as stage:
            np.save(stage / SAMPLE_FILE, arr[:, None] if arr.ndim == 1 else arr)
            stored = self.store.commit(stage)
        return ArtifactSpec(TRAINING_SAMPLE, stored.uri, stored.sha256, stored.size, "numpy", None, SAMPLE_FILE, {})

    def _store_file(self, name: str, path: Path, framework: str | None = None) -> ArtifactSpec:
        if not path.exists():
            raise InvalidOptionError(f"no file or folder {str(path)!r} to register")
        if path.is_dir():
            files_under(path, what="model folder")  # a link in it is refused, named
        framework = framework or formats.detect_path(path)
        with self.store.stage() as stage:
            if path.is_dir():
                # links are copied as links (never followed): the store refuses any it finds
                shutil.copytree(path, stage, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(path, stage / path.name)
            main_file = formats.main_file_in(stage, framework)
            properties: dict = {}
            if framework == "pytorch" and main_file:  # what deploy needs to know (a state dict needs its class)
                kind = formats.pytorch_file_kind(stage / main_file)
                if kind:
                    properties["torch_kind"] = kind
            stored = self.store.commit(stage)
        return ArtifactSpec(name, stored.uri, stored.sha256, stored.size, framework, None, main_file, properties)

    # -- loading and files ------------------------------------------------------------------
    def _artifact(self, ref: str, version: int | str | None, alias: str | None, artifact: str | None):
        mv = self.get_version(ref, version=version, alias=alias)
        if artifact is None:
            art = mv.artifact
        else:
            art = next((a for a in mv.artifacts if a.name == artifact), None)
        if art is None:
            from .errors import ModelNotFoundError

            raise ModelNotFoundError(f"version {mv.ref} has no artifact {artifact or 'model'!r}")
        return mv, art

    def local_path(
        self,
        ref: str,
        version: int | str | None = None,
        alias: str | None = None,
        artifact: str | None = None,
        verify: bool = True,
    ) -> Path:
        """The folder of a version's artifact on this machine (downloaded if remote), hash-checked."""
        _, art = self._artifact(ref, version, alias, artifact)
        return self.store.local_dir(art.uri, art.sha256, verify=verify)

    def load(
        self,
        ref: str,
        version: int | str | None = None,
        alias: str | None = None,
        verify: bool = True,
        **options: Any,
    ) -> Any:
        mv, art = self._artifact(ref, version, alias, None)
        folder = self.store.local_dir(art.uri, art.sha256, verify=verify)
        return formats.load(folder, art.main_file, art.format or mv.framework, art.properties, **options)

    def artifact_files(self, ref: str, version: int | str | None = None, artifact: str | None = None) -> list[dict]:
        _, art = self._artifact(ref, version, None, artifact)
        return self.store.list_files(art.uri, art.sha256)

    def artifact_file(
        self, ref: str, path: str, version: int | str | None = None, artifact: str | None = None
    ) -> Path:
        """One file of a version's artifact, for download: traversal and foreign URIs refused."""
        from .artifacts import safe_relpath

        safe_relpath(path)  # refuse before touching the registry
        _, art = self._artifact(ref, version, None, artifact)
        return self.store.resolve_file(art.uri, path, art.sha256)

    @staticmethod
    def ref(ref: str, version: int | str | None = None, alias: str | None = None) -> Ref:
        return parse_ref(ref, version, alias)


def _iso_or_none(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value
