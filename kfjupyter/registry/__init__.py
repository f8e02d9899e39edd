"""The model registry: register trained models, find them, point aliases at them, load them.

::

    v = kfjupyter.register_model("iris", clf, metrics={"accuracy": 0.97}, aliases="staging")
    job.register_model("iris")                      # a finished job's output, metrics and lineage
    kfjupyter.registry.set_alias("iris", "production", v.number)
    clf = kfjupyter.load_model("iris@production")   # or ("iris", version=3), "iris:3", "iris"
    kfjupyter.registry.alias_history("iris")        # who moved which alias when, from, to

Entities follow Kubeflow Model Registry (RegisteredModel → ModelVersion → ModelArtifact,
LIVE/ARCHIVED, custom properties); versions are numbered 1, 2, 3 … per model, atomically.

Where it lives: the workspace database (embedded; SQLite, or PostgreSQL through
``KFJUPYTER_DB_URL``) with artifacts in ``KFJUPYTER_ARTIFACT_URI`` (default: the
workspace folder) — or, when ``KFJUPYTER_MODEL_REGISTRY_URL`` is set, a Kubeflow Model
Registry server (its REST API ``v1`` or ``v1alpha3``: ``KFJUPYTER_MODEL_REGISTRY_API``,
probed when unset; a bearer token from ``KFJUPYTER_MODEL_REGISTRY_TOKEN`` or the file
named by ``KFJUPYTER_MODEL_REGISTRY_TOKEN_FILE``). The functions below are the same for both.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Iterable

from .entities import AliasEvent, ModelArtifact, ModelVersion, Page, RegisteredModel, parse_ref
from .errors import (
    ArtifactAccessError,
    ArtifactIntegrityError,
    ModelNotFoundError,
    RegistryBackendError,
    RegistryConflictError,
)

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from .base import Registry

__all__ = [
    "AliasEvent",
    "ArtifactAccessError",
    "ArtifactIntegrityError",
    "ModelArtifact",
    "ModelNotFoundError",
    "ModelVersion",
    "Page",
    "RegisteredModel",
    "RegistryBackendError",
    "RegistryConflictError",
    "alias_history",
    "archive",
    "archive_model",
    "artifact_file",
    "artifact_files",
    "change_marker",
    "connect",
    "delete_alias",
    "get_model",
    "get_registry",
    "get_version",
    "list_models",
    "list_versions",
    "load_model",
    "local_path",
    "parse_ref",
    "register_model",
    "restore",
    "restore_model",
    "search_versions",
    "set_alias",
    "update_model",
    "update_version",
]

_lock = threading.Lock()
_cache: dict[tuple, "Registry"] = {}


def get_registry() -> "Registry":
    """The registry of this process's environment (cached per workspace and configuration)."""
    from ..config import database_url, workspace_home
    from .artifacts import ArtifactStore, default_root

    home = workspace_home()
    url = os.environ.get("KFJUPYTER_MODEL_REGISTRY_URL")
    api = os.environ.get("KFJUPYTER_MODEL_REGISTRY_API") or None
    token_config = (os.environ.get("KFJUPYTER_MODEL_REGISTRY_TOKEN"), os.environ.get("KFJUPYTER_MODEL_REGISTRY_TOKEN_FILE"))
    key = (str(home), database_url(home), url, api, default_root(home), hash(token_config))
    with _lock:
        registry = _cache.get(key)
        if registry is None:
            store = ArtifactStore(default_root(home), home / "registry" / "cache")
            if url:
                from .remote import RemoteRegistry

                registry = RemoteRegistry(url, store, api=api, token=_token())
            else:
                from ..store.workspace import get_workspace
                from .local import LocalRegistry

                registry = LocalRegistry(get_workspace(), store)
            _cache[key] = registry
        return registry


def _token() -> str | None:
    token = os.environ.get("KFJUPYTER_MODEL_REGISTRY_TOKEN")
    path = os.environ.get("KFJUPYTER_MODEL_REGISTRY_TOKEN_FILE")
    if not token and path:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    return token or None


def connect(url: str, api: str | None = None, token: str | None = None, artifact_uri: str | None = None) -> "Registry":
    """A registry on a Kubeflow Model Registry server at ``url`` (for scripts that talk to
    several; the module-level functions use :func:`get_registry`)."""
    from ..config import workspace_home
    from .artifacts import ArtifactStore, default_root
    from .remote import RemoteRegistry

    home = workspace_home()
    store = ArtifactStore(artifact_uri or default_root(home), home / "registry" / "cache")
    return RemoteRegistry(url, store, api=api, token=token)


# -- the public API -----------------------------------------------------------------------


def register_model(
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
    artifacts: dict[str, Any] | None = None,
    aliases: str | Iterable[str] | None = None,
    author: str | None = None,
    training_sample: Any = None,
    input_example: Any = None,
) -> ModelVersion:
    """Register a new version of model ``name`` and return it.

    ``path_or_object``: a model object (scikit-learn, ``torch.nn.Module``/state dict/
    TorchScript, ``onnx.ModelProto``, XGBoost, or anything picklable), or a file or folder.
    Omitted with ``job=``: the job's saved outputs. ``version``: an optional name for the
    version (``"1.2.0"``); its number (1, 2, 3 …) is always the registry's to give.
    ``framework``: sklearn, pytorch, onnx, xgboost or custom (detected when omitted).
    ``metrics``/``params``: numbers and settings shown side by side (from a job: its last
    reported metrics; from a study: its best value and parameters). ``job``: a Job, a
    Study or a job id: the version's lineage (with the notebook and the cell). ``aliases``:
    aliases to point at the new version. ``artifacts``: more files, ``{name: path}``.
    ``training_sample``: rows of the training data (an array or a DataFrame, a few hundred
    to a few thousand rows), stored with the version: an endpoint serving it reports drift
    of its inputs against them (``Endpoint.stats()``) and can explain with SHAP.
    ``input_example``: a few rows of what the model takes; the version records them and
    its signature, the inputs' names and types and the output's (see
    :mod:`kfjupyter.registry.signature`; without one, from the training sample or the model).
    """
    return get_registry().register(
        name,
        path_or_object,
        version,
        framework=framework,
        metrics=metrics,
        params=params,
        description=description,
        job=job,
        custom_properties=custom_properties,
        artifacts=artifacts,
        aliases=aliases,
        author=author,
        training_sample=training_sample,
        input_example=input_example,
    )


def load_model(ref: str, version: int | str | None = None, alias: str | None = None, verify: bool = True, **options: Any) -> Any:
    """Load a registered model: ``"iris@production"``, ``"iris:3"``, ``("iris", version=3)``,
    ``"iris"`` (the latest LIVE version). The artifact's hash is checked first (``verify``).
    ``options`` go to the format's loader (``map_location=`` for pytorch, ``providers=`` for
    onnxruntime)."""
    return get_registry().load(ref, version=version, alias=alias, verify=verify, **options)


def get_model(name: str) -> RegisteredModel:
    return get_registry().get_model(name)


def get_version(ref: str, version: int | str | None = None, alias: str | None = None) -> ModelVersion:
    return get_registry().get_version(ref, version=version, alias=alias)


def list_models(query: str | None = None, *, metrics: dict | None = None, **filters: Any) -> Page[RegisteredModel]:
    """Registered models: ``query`` (in name or description), ``state``, ``framework``,
    ``alias``, ``limit``/``offset``, ``order_by`` (updated, created, name), ``descending``;
    ``metrics={"accuracy": (0.9, None)}``: only models with a version in those (inclusive)
    ranges."""
    if metrics:
        return _models_with_metrics(query, metrics, **filters)
    return get_registry().list_models(query, **filters)


#: Versions read per page while finding the models that have one in metric ranges.
_SEARCH_PAGE = 1000


def _models_with_metrics(
    query: str | None, metrics: dict, *, state: str | None = None, framework: str | None = None,
    alias: str | None = None, limit: int | None = 50, offset: int = 0, order_by: str = "updated",
    descending: bool = True,
) -> Page[RegisteredModel]:  # fmt: skip
    """A page of the models that have a version in the metric ranges (and match the rest)."""
    names: list[str] = []
    at = 0
    while True:
        page = search_versions(None, framework=framework, alias=alias, state=state, metrics=metrics,
                               limit=_SEARCH_PAGE, offset=at)  # fmt: skip
        names += [v.model for v in page if v.model not in names]
        if page.next_offset is None:
            break
        at = page.next_offset
    models = [get_model(n) for n in names]
    if query:
        q = query.lower()
        models = [m for m in models if q in m.name.lower() or q in (m.description or "").lower()]
    key = {"name": lambda m: m.name, "created": lambda m: str(m.created_at), "updated": lambda m: str(m.updated_at)}
    models.sort(key=key[order_by], reverse=descending)
    items = models[offset : offset + limit] if limit is not None else models[offset:]
    return Page(items=items, total=len(models), offset=offset, limit=limit)


def change_marker() -> Any:
    """A cheap value that changes whenever the registry does (a registration, an alias
    move, an archive, an edit): the Jupyter server polls it to tell the sidebar."""
    return get_registry().change_marker()


def list_versions(model: str, state: str | None = None, limit: int | None = None, offset: int = 0) -> Page[ModelVersion]:
    return get_registry().list_versions(model, state=state, limit=limit, offset=offset)


def search_versions(query: str | None = None, **filters: Any) -> Page[ModelVersion]:
    """Versions of all models: ``query`` (model name, version name, description), ``model``,
    ``framework``, ``alias``, ``state``, ``job_id``, ``metrics={"accuracy": (0.9, None)}``
    (inclusive ranges), ``limit``/``offset``, ``order_by`` (created, number, name,
    ``metric:NAME``), ``descending``."""
    return get_registry().search_versions(query, **filters)


def set_alias(model: str, alias: str, version: int | str, who: str | None = None, reason: str | None = None) -> ModelVersion:
    """Point ``alias`` of ``model`` at a version (its number or name); the move is recorded."""
    return get_registry().set_alias(model, alias, version, who=who, reason=reason)


def delete_alias(model: str, alias: str, who: str | None = None, reason: str | None = None) -> None:
    get_registry().delete_alias(model, alias, who=who, reason=reason)


def alias_history(model: str, alias: str | None = None) -> list[AliasEvent]:
    """Every move of the model's aliases (or of one), oldest first: who, when, from, to."""
    return get_registry().alias_history(model, alias)


def archive(ref: str, version: int | str | None = None, force: bool = False) -> ModelVersion:
    """Archive a version (``force`` also removes the aliases pointing at it)."""
    return get_registry().archive(ref, version=version, force=force)


def restore(ref: str, version: int | str | None = None) -> ModelVersion:
    return get_registry().restore(ref, version=version)


def archive_model(name: str) -> RegisteredModel:
    return get_registry().set_model_state(name, "ARCHIVED")


def restore_model(name: str) -> RegisteredModel:
    return get_registry().set_model_state(name, "LIVE")


def update_version(ref: str, version: int | str | None = None, **changes: Any) -> ModelVersion:
    """Change a version's ``description`` or add ``custom_properties``."""
    return get_registry().update_version(ref, version, **changes)


def update_model(name: str, **changes: Any) -> RegisteredModel:
    """Change a model's ``description``, ``owner`` or add ``custom_properties``."""
    return get_registry().update_model(name, **changes)


def local_path(
    ref: str, version: int | str | None = None, alias: str | None = None, artifact: str | None = None, verify: bool = True
) -> "Path":
    """The folder of a version's artifact on this machine (downloaded when remote), hash-checked."""
    return get_registry().local_path(ref, version=version, alias=alias, artifact=artifact, verify=verify)


def artifact_files(ref: str, version: int | str | None = None, artifact: str | None = None) -> list[dict]:
    """The files of a version's artifact: ``[{"path": …, "size": …}]``."""
    return get_registry().artifact_files(ref, version=version, artifact=artifact)


def artifact_file(ref: str, path: str, version: int | str | None = None, artifact: str | None = None) -> "Path":
    """One file of a version's artifact, for download; anything outside the artifact store
    (``..``, absolute paths, symlinks out) raises :class:`ArtifactAccessError`."""
    return get_registry().artifact_file(ref, path, version=version, artifact=artifact)
