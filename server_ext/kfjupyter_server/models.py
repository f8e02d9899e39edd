"""REST handlers of the model registry (``/models…``): thin, calling only
:mod:`kfjupyter.registry`'s public functions.

Same rules as every kfjupyter route (``@web.authenticated`` + ``@authorized``, XSRF on
POST for cookie-authenticated browsers). Registry errors become JSON errors:
``ModelNotFoundError`` → 404 ``ModelNotFound``, ``InvalidOptionError`` → 400,
``RegistryConflictError`` → 409 ``Conflict``, a refused artifact path → 400
``PathRefused`` and a file the artifact lacks → 404 ``FileNotFound``,
``RegistryBackendError`` → 502. An artifact file is streamed in chunks; nothing outside
the artifact store is ever served (the registry resolves and checks every path).
"""

from __future__ import annotations

import mimetypes
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from kfjupyter import registry, tracking
from kfjupyter.errors import InvalidOptionError
from kfjupyter.registry.artifacts import safe_relpath
from kfjupyter.registry.entities import parse_metric_filters

from .handlers import MAX_PAGE, KFJupyterHandler, api_error, attachment, bad_request, parse_int
from .serialize import dumps

CHUNK = 256 * 1024
MODEL_ORDER = ("updated", "created", "name")
VERSION_ORDER = ("number", "created", "name")
STATES = ("LIVE", "ARCHIVED")


def version_arg(version: str) -> int | str:
    """A version in a path: its number ("3") or its name ("1.2.0")."""
    return parse_int(version, "a version number") if version.isdigit() else version


class ModelsBase(KFJupyterHandler):
    ERRORS = (
        (registry.ModelNotFoundError, 404, "ModelNotFound"),
        (registry.RegistryConflictError, 409, "Conflict"),
        (registry.ArtifactAccessError, 404, "FileNotFound"),
    ) + KFJupyterHandler.ERRORS

    def choice_arg(self, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = self.get_query_argument(name, None) or default
        if value is not None and value not in choices:
            raise bad_request(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def bool_arg(self, name: str, default: bool) -> bool:
        raw = (self.get_query_argument(name, None) or "").strip().lower()
        if not raw:
            return default
        if raw not in ("true", "false", "1", "0"):
            raise bad_request(f"{name} must be true or false, got {raw!r}")
        return raw in ("true", "1")

    def metric_args(self) -> dict | None:
        filters = [f for f in self.get_query_arguments("metric") if f.strip()]
        if not filters:
            return None
        try:
            return parse_metric_filters(filters)
        except InvalidOptionError as exc:
            raise bad_request(str(exc)) from None

    def body(self) -> dict:
        return self.json_object('{"version": 2}', required=False)


def page_json(page: Any) -> dict:
    return page.to_dict()


def version_json(version: Any) -> dict:
    """A version as the panel shows it: with ``servable`` (can Deploy work, else why:
    :func:`kfjupyter.serving.api.servable`, deploy's own preflight)."""
    from kfjupyter.serving.api import servable

    data = version.to_dict()
    data["servable"] = servable(version)
    try:  # the params of the run that produced it (tracking); a version from a kernel has none
        data["run"] = tracking.version_run(version)
    except Exception:  # noqa: BLE001  (tracking unreadable: the card shows the version's own params)
        data["run"] = None
    return data


def versions_page_json(page: Any) -> dict:
    data = page.to_dict()
    data["items"] = [version_json(v) for v in page.items]
    return data


class ModelsHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        query = (self.get_query_argument("q", None) or "").strip() or None
        filters = {
            "state": self.choice_arg("state", STATES, None),
            "framework": (self.get_query_argument("framework", None) or "").strip() or None,
            "alias": (self.get_query_argument("alias", None) or "").strip() or None,
            "limit": self.int_arg("limit", 50, 1, MAX_PAGE),
            "offset": self.int_arg("offset", 0, 0),
            "order_by": self.choice_arg("order_by", MODEL_ORDER, "updated"),
            "descending": self.bool_arg("descending", True),
        }
        page = await self.call(registry.list_models, query, metrics=self.metric_args(), **filters)
        self.finish(dumps(page_json(page)))


class VersionSearchHandler(ModelsBase):
    """Versions of every model (kfjupyter.registry.search_versions), filtered and paged."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        text = lambda name: (self.get_query_argument(name, None) or "").strip() or None  # noqa: E731
        order_by = self.get_query_argument("order_by", None) or "created"
        if order_by not in ("created", "number", "name") and not (order_by.startswith("metric:") and len(order_by) > 7):
            raise bad_request(f"order_by must be created, number, name or metric:NAME, got {order_by!r}")
        page = await self.call(
            registry.search_versions,
            text("q"),
            model=text("model"),
            framework=text("framework"),
            alias=text("alias"),
            state=self.choice_arg("state", STATES, None),
            job_id=text("job_id"),
            metrics=self.metric_args(),
            limit=self.int_arg("limit", 50, 1, MAX_PAGE),
            offset=self.int_arg("offset", 0, 0),
            order_by=order_by,
            descending=self.bool_arg("descending", True),
        )
        self.finish(dumps(page_json(page)))


class ModelHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def get(self, model: str) -> None:
        found = await self.call(registry.get_model, model)
        self.finish(dumps(found.to_dict()))


class VersionsHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def get(self, model: str) -> None:
        await self.call(registry.get_model, model)  # 404 for an unknown model
        query = (self.get_query_argument("q", None) or "").strip() or None
        page = await self.call(
            registry.search_versions,
            query,
            model=model,
            state=self.choice_arg("state", STATES, None),
            alias=(self.get_query_argument("alias", None) or "").strip() or None,
            metrics=self.metric_args(),
            limit=self.int_arg("limit", 50, 1, MAX_PAGE),
            offset=self.int_arg("offset", 0, 0),
            order_by=self.choice_arg("order_by", VERSION_ORDER, "number"),
            descending=self.bool_arg("descending", True),
        )
        self.finish(dumps(await self.call(versions_page_json, page)))


class VersionHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def get(self, model: str, version: str) -> None:
        found = await self.call(registry.get_version, model, version=version_arg(version))
        self.finish(dumps(await self.call(version_json, found)))


class AliasesHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def get(self, model: str) -> None:
        alias = (self.get_query_argument("alias", None) or "").strip() or None

        def read() -> dict:
            current = registry.get_model(model).aliases
            history = registry.alias_history(model, alias)
            return {"model": model, "aliases": current, "history": [e.to_dict() for e in history]}

        self.finish(dumps(await self.call(read)))


class AliasHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def post(self, model: str, alias: str) -> None:
        body = self.body()
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, (int, str)) or version == "":
            raise bad_request("the body needs a version: its number or name, e.g. {\"version\": 2}")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise bad_request("reason must be a string")
        who = who_of(self.current_user)
        moved = await self.call(registry.set_alias, model, alias, version, who=who, reason=reason)
        self.finish(dumps(moved.to_dict()))


def who_of(user: Any) -> str | None:
    """The name kept in the alias history: a named Jupyter user's (e.g. JupyterHub's);
    for the anonymous user of a token-only server, None: the registry records the user
    running the server, as the Python API does."""
    if user is None:
        return None
    name = getattr(user, "username", None) or None
    if not name or (getattr(user, "name", "") or "").startswith("Anonymous "):
        return None
    return name


class ArchiveHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def post(self, model: str, version: str) -> None:
        force = self.body().get("force", False)
        if not isinstance(force, bool):
            raise bad_request("force must be true or false")
        done = await self.call(registry.archive, model, version=version_arg(version), force=force)
        self.finish(dumps(done.to_dict()))


class RestoreHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def post(self, model: str, version: str) -> None:
        done = await self.call(registry.restore, model, version=version_arg(version))
        self.finish(dumps(done.to_dict()))


class FilesHandler(ModelsBase):
    @web.authenticated
    @authorized
    async def get(self, model: str, version: str) -> None:
        artifact = self.get_query_argument("artifact", None) or None
        files = await self.call(registry.artifact_files, model, version=version_arg(version), artifact=artifact)
        self.finish(dumps({"model": model, "version": version, "files": files}))


class FileHandler(ModelsBase):
    """One file of a version's artifact, streamed; paths that could leave the store are refused."""

    @web.authenticated
    @authorized
    async def get(self, model: str, version: str, path: str) -> None:
        try:
            safe_relpath(path)
        except registry.ArtifactAccessError as exc:
            raise api_error(400, str(exc), "PathRefused") from exc
        artifact = self.get_query_argument("artifact", None) or None
        target = await self.call(registry.artifact_file, model, path, version=version_arg(version), artifact=artifact)
        self.set_header("Content-Type", mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        self.set_header("Content-Disposition", attachment(target.name))
        self.set_header("Content-Length", str(target.stat().st_size))
        self.set_header("X-Content-Type-Options", "nosniff")
        with open(target, "rb") as fh:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        self.finish()


class StudyRegisterBestHandler(ModelsBase):
    """POST ``{"name": …}`` (optional; default the study's name): what the study's best
    trial saved, registered as a new version (201, the version)."""

    @web.authenticated
    @authorized
    async def post(self, study_id: str) -> None:
        from .handlers import load_study

        body = self.json_object('{"name": "iris"}', required=False)
        unknown = set(body) - {"name"}
        if unknown:
            raise bad_request(f"unknown field(s) {', '.join(sorted(unknown))}: only name")
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise bad_request("name must be a model name (a non-empty string)")

        def register() -> dict:
            return version_json(load_study(study_id).register_best(name.strip() if name else None))

        data = await self.call(register)
        self.set_status(201)
        self.finish(dumps(data))
