"""The remote registry: Kubeflow Model Registry's REST API behind the same interface.

Speaks ``/api/model_registry/v1`` (current) or ``/api/model_registry/v1alpha3`` (v0.3.x
servers), given or probed (``v1`` first). The OpenAPI descriptions are vendored in
``schemas/``. How kfjupyter's ideas map onto Kubeflow's entities:

- a version's **number** is the custom property ``kfjupyter.number``; its Kubeflow
  ``name`` is the number as text unless a name (label) was given. Numbers are handed out
  by counting (max + 1) and claimed by creating the version with the ``externalId``
  ``kfjupyter:<model id>:<number>``, which the server keeps unique: a concurrent claim of
  the same number gets 409 Conflict and counts again — no duplicate, no gap.
- **metrics** and **params** are custom properties ``metric.<name>`` (double) and
  ``param.<name>``; the **framework** is the artifact's ``modelFormatName`` (and
  ``kfjupyter.framework`` on the version); **lineage** is ``kfjupyter.lineage`` (a struct)
  plus ``kfjupyter.job_id`` and the artifact's ``modelSource*`` fields.
- **aliases** are custom properties ``kfjupyter.alias.<alias>`` of the RegisteredModel
  (the version number), and their **history** the struct ``kfjupyter.alias_history``.
  Kubeflow's API has no compare-and-set, so two alias moves at the very same moment may
  both win (the last write stays); version numbering has no such gap.
- artifacts are stored by kfjupyter's artifact store (content-hashed, ``uri`` on the
  ModelArtifact; hash, size and main file as its custom properties).
- a **deployment** to a cluster is an ``InferenceService`` entity named after the
  endpoint, in the ``ServingEnvironment`` named after the namespace (got or created):
  ``registeredModelId`` + ``modelVersionId`` of the version serving the traffic (a canary
  is the custom properties ``kfjupyter.canary_version_id`` and ``kfjupyter.canary_percent``),
  ``desiredState`` DEPLOYED, then UNDEPLOYED when undeployed. Deploying the same name in
  the same environment again reuses the entity, as Kubeflow's own serving controller does.

Search filters Kubeflow can express go in ``filterQuery``; the rest (text across model
and version names, aliases, sorting by a metric) is applied here.
"""

from __future__ import annotations

import base64
import json
import random
import time
from datetime import datetime, timezone
from typing import Any

from .base import MetricRanges, Registry, VersionSpec, current_user
from .entities import (
    ARCHIVED,
    LIVE,
    AliasEvent,
    ModelArtifact,
    ModelVersion,
    Page,
    Ref,
    RegisteredModel,
    check_alias,
    check_model_name,
    parse_ref,
)
from .errors import InvalidOptionError, ModelNotFoundError, RegistryBackendError, RegistryConflictError

API_VERSIONS = ("v1", "v1alpha3")
PREFIX = "/api/model_registry/"
PAGE = 500
NUMBER = "kfjupyter.number"
FRAMEWORK = "kfjupyter.framework"
LINEAGE = "kfjupyter.lineage"
JOB_ID = "kfjupyter.job_id"
LABEL = "kfjupyter.label"
ALIAS = "kfjupyter.alias."
HISTORY = "kfjupyter.alias_history"
SHA = "kfjupyter.sha256"
SIZE = "kfjupyter.size"
MAIN = "kfjupyter.main_file"
PROPS = "kfjupyter.properties"
RESERVED = ("kfjupyter.", "metric.", "param.")
#: what a PATCH may carry (RegisteredModelUpdate / ModelVersionUpdate)
EDITABLE = {
    "model": {
        "description", "customProperties", "externalId", "owner", "state", "readme", "maturity", "language",
        "tasks", "provider", "logo", "license", "licenseLink", "libraryName",
    },
    "version": {"description", "customProperties", "externalId", "state", "author"},
    "inference_service": {"description", "customProperties", "externalId", "desiredState", "modelVersionId", "runtime"},
}
#: InferenceService.desiredState
DEPLOYED, UNDEPLOYED = "DEPLOYED", "UNDEPLOYED"
ENDPOINT_ID = "kfjupyter.endpoint_id"
SERVED_REF = "kfjupyter.version"
CANARY_ID = "kfjupyter.canary_version_id"
CANARY_REF = "kfjupyter.canary_version"
CANARY_PERCENT = "kfjupyter.canary_percent"
INT32 = 2**31 - 1


# -- custom properties (MetadataValue) -------------------------------------------------------


def encode_value(value: Any) -> dict:
    if isinstance(value, bool):
        return {"metadataType": "MetadataBoolValue", "bool_value": value}
    if isinstance(value, int) and -INT32 <= value <= INT32:
        return {"metadataType": "MetadataIntValue", "int_value": str(value)}
    if isinstance(value, (int, float)):
        return {"metadataType": "MetadataDoubleValue", "double_value": float(value)}
    if isinstance(value, str):
        return {"metadataType": "MetadataStringValue", "string_value": value}
    data = json.dumps(value, default=str).encode()
    return {"metadataType": "MetadataStructValue", "struct_value": base64.b64encode(data).decode()}


def decode_value(value: dict) -> Any:
    kind = value.get("metadataType")
    if kind == "MetadataBoolValue":
        return value.get("bool_value")
    if kind == "MetadataIntValue":
        return int(value.get("int_value", 0))
    if kind == "MetadataDoubleValue":
        return value.get("double_value")
    if kind == "MetadataStringValue":
        return value.get("string_value")
    if kind == "MetadataStructValue":
        try:
            return json.loads(base64.b64decode(value.get("struct_value", "")))
        except ValueError:
            return value.get("struct_value")
    return value.get("proto_value")


def _props(entity: dict) -> dict[str, Any]:
    return {k: decode_value(v) for k, v in (entity.get("customProperties") or {}).items()}


def _time(ms: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
    except (TypeError, ValueError):
        return None


def _quoted(text: str) -> str:
    """A filterQuery string literal."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise InvalidOptionError(f"search text {text!r} cannot hold both kinds of quotes")


def _number(entity: dict) -> int | None:
    props = entity.get("customProperties") or {}
    if NUMBER in props:
        return int(decode_value(props[NUMBER]))
    name = entity.get("name") or ""
    return int(name) if name.isdigit() else None


class RemoteRegistry(Registry):
    kind = "kubeflow"

    def __init__(self, url: str, store, api: str | None = None, token: str | None = None, timeout: float = 30.0):
        import requests

        super().__init__(store)
        if api not in (None, "auto", *API_VERSIONS):
            raise InvalidOptionError(f"Model Registry API {api!r}: one of {', '.join(API_VERSIONS)} (or auto)")
        self.url = url.rstrip("/")
        self._api = None if api in (None, "auto") else api
        self.timeout = timeout
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        self._names: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<RemoteRegistry {self.url} api={self._api or 'unprobed'} artifacts={self.store.root_uri}>"

    # -- HTTP ----------------------------------------------------------------------------------
    @property
    def api(self) -> str:
        """The API version in use (probed on first use unless configured)."""
        if self._api is None:
            self._api = self._probe()
        return self._api

    def _probe(self) -> str:
        import requests

        tried = []
        for api in API_VERSIONS:
            try:
                resp = self.http.get(f"{self.url}{PREFIX}{api}/registered_models", params={"pageSize": "1"}, timeout=self.timeout)
            except requests.RequestException as exc:
                raise RegistryBackendError(f"Model Registry at {self.url} unreachable: {exc}") from None
            if resp.status_code == 200:
                return api
            if resp.status_code in (401, 403):
                raise RegistryBackendError(f"Model Registry at {self.url} refused the credentials ({resp.status_code})")
            tried.append(f"{api}: HTTP {resp.status_code}")
        raise RegistryBackendError(f"no Model Registry API at {self.url} ({'; '.join(tried)})")

    def _call(self, method: str, path: str, params: dict | None = None, body: dict | None = None, missing: str | None = None) -> dict:
        import requests

        url = f"{self.url}{PREFIX}{self.api}{path}"
        try:
            resp = self.http.request(method, url, params=params, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryBackendError(f"Model Registry at {self.url} unreachable: {exc}") from None
        if resp.status_code in (200, 201):
            return resp.json()
        try:
            message = resp.json().get("message") or resp.text
        except ValueError:
            message = resp.text
        if resp.status_code == 404 and missing:
            raise ModelNotFoundError(missing)
        if resp.status_code == 409:
            raise RegistryConflictError(f"Model Registry: {message}")
        raise RegistryBackendError(f"Model Registry {method} {path}: HTTP {resp.status_code}: {message}")

    def _patch(self, kind: str, current: dict, changes: dict) -> dict:
        """PATCH with every editable field of ``current`` plus ``changes``: some Model Registry
        releases clear the editable fields a PATCH leaves out, so none is left out."""
        body = {k: v for k, v in current.items() if k in EDITABLE[kind]}
        body.update(changes)
        path = {"model": "/registered_models", "version": "/model_versions", "inference_service": "/inference_services"}[kind]
        return self._call("PATCH", f"{path}/{current['id']}", body=body)

    def _walk(self, path: str, params: dict | None = None, order: str = "ID") -> list[dict]:
        """Every item of a listing (following nextPageToken)."""
        items: list[dict] = []
        query = {**(params or {}), "pageSize": str(PAGE), "orderBy": order, "sortOrder": "ASC"}
        while True:
            page = self._call("GET", path, params=query)
            items.extend(page.get("items") or [])
            token = page.get("nextPageToken")
            if not token or not page.get("items"):
                return items
            query["nextPageToken"] = token

    # -- entities ----------------------------------------------------------------------------------
    def _find_model(self, name: str) -> dict:
        check_model_name(name)
        try:
            return self._call("GET", "/registered_model", params={"name": name}, missing=f"no registered model {name!r}")
        except ModelNotFoundError:
            raise ModelNotFoundError(f"no registered model {name!r}") from None

    def _model_name(self, model_id: str) -> str:
        name = self._names.get(model_id)
        if name is None:
            name = self._call("GET", f"/registered_models/{model_id}", missing=f"no registered model {model_id}")["name"]
            self._names[model_id] = name
        return name

    def _model_versions(self, model_id: str) -> list[dict]:
        return self._walk(f"/registered_models/{model_id}/versions")

    def _aliases(self, model: dict) -> dict[str, int]:
        return {
            k[len(ALIAS):]: decode_value(v)
            for k, v in sorted((model.get("customProperties") or {}).items())
            if k.startswith(ALIAS)
        }

    def _to_model(self, model: dict, versions: list[dict] | None = None) -> RegisteredModel:
        self._names[model["id"]] = model["name"]
        numbers = [n for n in (_number(v) for v in versions or []) if n is not None]
        return RegisteredModel(
            id=model["id"],
            name=model["name"],
            state=model.get("state") or LIVE,
            description=model.get("description"),
            owner=model.get("owner"),
            latest_version=max(numbers) if numbers else None,
            version_count=len(versions) if versions is not None else None,
            aliases=self._aliases(model),
            frameworks=sorted({f for f in (_props(v).get(FRAMEWORK) for v in versions or []) if f}),
            custom_properties={k: v for k, v in _props(model).items() if not k.startswith(RESERVED)},
            created_at=_time(model.get("createTimeSinceEpoch")),
            updated_at=_time(model.get("lastUpdateTimeSinceEpoch")),
        )

    def _to_artifact(self, art: dict) -> ModelArtifact:
        props = _props(art)
        return ModelArtifact(
            id=art["id"],
            name=art.get("name") or "model",
            uri=art.get("uri") or "",
            sha256=props.get(SHA),
            size=props.get(SIZE),
            format=art.get("modelFormatName") or "custom",
            format_version=art.get("modelFormatVersion"),
            main_file=props.get(MAIN),
            state=art.get("state") or LIVE,
            properties=props.get(PROPS) or {},
            created_at=_time(art.get("createTimeSinceEpoch")),
        )

    def _to_version(self, v: dict, model: dict | None = None, artifacts: list[dict] | None = None) -> ModelVersion:
        props = _props(v)
        model_id = v["registeredModelId"]
        if model is None:
            model = self._call("GET", f"/registered_models/{model_id}", missing=f"no registered model {model_id}")
        number = _number(v)
        if artifacts is None:
            artifacts = self._walk(f"/model_versions/{v['id']}/artifacts")
        arts = [self._to_artifact(a) for a in artifacts if a.get("artifactType", "model-artifact") == "model-artifact"]
        return ModelVersion(
            id=v["id"],
            model=model["name"],
            number=number,
            name=v["name"],
            state=v.get("state") or LIVE,
            framework=props.get(FRAMEWORK) or (arts[0].format if arts else "custom"),
            framework_version=arts[0].format_version if arts else None,
            description=v.get("description"),
            author=v.get("author"),
            metrics={k[len("metric."):]: val for k, val in props.items() if k.startswith("metric.")},
            params={k[len("param."):]: val for k, val in props.items() if k.startswith("param.")},
            custom_properties={k: val for k, val in props.items() if not k.startswith(RESERVED)},
            lineage=props.get(LINEAGE) or {},
            aliases=sorted(a for a, n in self._aliases(model).items() if number is not None and n == number),
            artifacts=arts,
            created_at=_time(v.get("createTimeSinceEpoch")),
            updated_at=_time(v.get("lastUpdateTimeSinceEpoch")),
        )

    def _version_entity(self, ref: Ref) -> tuple[dict, dict]:
        model = self._find_model(ref.model)
        if ref.alias:
            number = self._aliases(model).get(ref.alias)
            if number is None:
                raise ModelNotFoundError(f"model {ref.model!r} has no alias {ref.alias!r}")
            ref = Ref(ref.model, number=number)
        versions = self._model_versions(model["id"])
        if ref.number is not None:
            found = [v for v in versions if _number(v) == ref.number]
            missing = f"model {ref.model!r} has no version {ref.number}"
        elif ref.label:
            found = [v for v in versions if v.get("name") == ref.label]
            missing = f"model {ref.model!r} has no version named {ref.label!r}"
        else:
            live = [v for v in versions if (v.get("state") or LIVE) == LIVE]
            found = sorted(live, key=lambda v: (_number(v) or 0, int(v["id"])))[-1:]
            missing = f"model {ref.model!r} has no LIVE version"
        if not found:
            raise ModelNotFoundError(missing)
        return model, found[0]

    # -- registering -------------------------------------------------------------------------------
    def _ensure_model(self, spec: VersionSpec) -> dict:
        for _ in range(5):
            try:
                return self._find_model(spec.model)
            except ModelNotFoundError:
                pass
            try:
                body = {"name": spec.model, "state": LIVE}
                if spec.author:
                    body["owner"] = spec.author
                return self._call("POST", "/registered_models", body=body)
            except RegistryConflictError:
                continue  # created by someone else meanwhile
        raise RegistryBackendError(f"could not create registered model {spec.model!r}")

    def _version_props(self, spec: VersionSpec, number: int) -> dict:
        props: dict[str, Any] = {k: v for k, v in spec.custom_properties.items()}
        for key in props:
            if key.startswith(RESERVED):
                raise InvalidOptionError(f"custom property {key!r}: names starting {', '.join(RESERVED)} are kfjupyter's")
        props.update({f"metric.{k}": float(v) for k, v in spec.metrics.items() if v is not None})
        props.update({f"param.{k}": v for k, v in spec.params.items()})
        props[NUMBER] = number
        props[FRAMEWORK] = spec.framework
        if spec.lineage:
            props[LINEAGE] = spec.lineage
        if spec.lineage.get("job_id"):
            props[JOB_ID] = spec.lineage["job_id"]
        return {k: encode_value(v) for k, v in props.items() if v is not None}

    def _create_version(self, spec: VersionSpec, who: str | None) -> ModelVersion:
        model = self._ensure_model(spec)
        if (model.get("state") or LIVE) == ARCHIVED:
            raise RegistryConflictError(f"model {spec.model!r} is archived: restore it before registering versions")
        for attempt in range(30):
            versions = self._model_versions(model["id"])
            if spec.label is not None and any(v.get("name") == spec.label for v in versions):
                raise RegistryConflictError(f"model {spec.model!r} already has a version named {spec.label!r}")
            number = max([n for n in (_number(v) for v in versions) if n is not None] or [0]) + 1
            body = {
                "name": spec.label or str(number),
                "registeredModelId": model["id"],
                "externalId": f"kfjupyter:{model['id']}:{number}",
                "state": LIVE,
                "customProperties": self._version_props(spec, number),
            }
            if spec.description:
                body["description"] = spec.description
            if spec.author:
                body["author"] = spec.author
            try:
                created = self._call("POST", "/model_versions", body=body)
                break
            except RegistryConflictError:
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # another kernel took the number
        else:
            raise RegistryBackendError(f"could not number a new version of {spec.model!r}: too many concurrent registrations")
        posted = []
        try:
            for art in spec.artifacts:
                body = {
                    "artifactType": "model-artifact",
                    "name": art.name,
                    "uri": art.uri,
                    "state": "LIVE",
                    "modelFormatName": art.format,
                    "customProperties": {
                        k: encode_value(v)
                        for k, v in {SHA: art.sha256, SIZE: art.size, MAIN: art.main_file, PROPS: art.properties or None}.items()
                        if v is not None
                    },
                }
                if art.format_version:
                    body["modelFormatVersion"] = art.format_version
                lineage = spec.lineage
                if lineage.get("job_id"):
                    body.update(
                        modelSourceKind="kfjupyter",
                        modelSourceClass=lineage.get("job_kind", "job"),
                        modelSourceId=lineage["job_id"],
                        modelSourceName=lineage.get("job_name", lineage["job_id"]),
                    )
                posted.append(self._call("POST", f"/model_versions/{created['id']}/artifacts", body=body))
        except Exception:
            self._patch("version", created, {"state": ARCHIVED, "description": "registration failed"})
            raise
        for alias in spec.aliases:
            self.set_alias(spec.model, alias, number, who=who, reason="set at registration")
        if spec.aliases:
            model = self._find_model(spec.model)
        return self._to_version(created, model, artifacts=posted)

    # -- reading -----------------------------------------------------------------------------------
    def get_model(self, name: str) -> RegisteredModel:
        model = self._find_model(name)
        return self._to_model(model, self._model_versions(model["id"]))

    def get_version(self, ref: str, version: int | str | None = None, alias: str | None = None) -> ModelVersion:
        model, v = self._version_entity(parse_ref(ref, version, alias))
        return self._to_version(v, model)

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
    ) -> Page[RegisteredModel]:
        clauses = []
        if state:
            clauses.append(f"state = '{state}'")
        if alias:
            clauses.append(f"`{ALIAS}{check_alias(alias)}` > 0")
        params = {"filterQuery": " AND ".join(clauses)} if clauses else None
        models = self._walk("/registered_models", params)
        if query:  # name or description, any case (here: filterQuery takes printable ASCII only)
            needle = query.lower()
            models = [m for m in models if needle in m["name"].lower() or needle in (m.get("description") or "").lower()]
        if framework:
            ids = {v["registeredModelId"] for v in self._walk("/model_versions", {"filterQuery": f"`{FRAMEWORK}` = {_quoted(framework)}"})}
            models = [m for m in models if m["id"] in ids]
        keys = {
            "updated": lambda m: int(m.get("lastUpdateTimeSinceEpoch") or 0),
            "created": lambda m: int(m.get("createTimeSinceEpoch") or 0),
            "name": lambda m: m["name"],
        }
        if order_by not in keys:
            raise InvalidOptionError(f"order_by={order_by!r}: one of {', '.join(keys)}")
        models.sort(key=lambda m: (keys[order_by](m), int(m["id"])), reverse=descending)
        page = models[offset: None if limit is None else offset + limit]
        return Page([self._to_model(m, self._model_versions(m["id"])) for m in page], len(models), offset, limit)

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
    ) -> Page[ModelVersion]:
        clauses = []
        if state:
            clauses.append(f"state = '{state}'")
        if framework:
            clauses.append(f"`{FRAMEWORK}` = {_quoted(framework)}")
        if job_id:
            clauses.append(f"`{JOB_ID}` = {_quoted(job_id)}")
        for key, (low, high) in (metrics or {}).items():
            if low is not None:
                clauses.append(f"`metric.{key}` >= {float(low)!r}")
            if high is not None:
                clauses.append(f"`metric.{key}` <= {float(high)!r}")
        params = {"filterQuery": " AND ".join(clauses)} if clauses else None
        models: dict[str, dict] = {}
        if model:
            m = self._find_model(model)
            models[m["id"]] = m
            versions = self._walk(f"/registered_models/{m['id']}/versions", params)
        else:
            versions = self._walk("/model_versions", params)
            for m in self._walk("/registered_models"):
                models[m["id"]] = m
        out = []
        needle = query.lower() if query else None
        for v in versions:
            m = models.get(v["registeredModelId"])
            if m is None:
                continue
            if needle and not any(needle in (text or "").lower() for text in (m["name"], v.get("name"), v.get("description"))):
                continue
            if alias and self._aliases(m).get(check_alias(alias)) != _number(v):
                continue
            out.append((m, v))
        if order_by.startswith("metric:"):
            key = "metric." + order_by.split(":", 1)[1]
            with_metric = [p for p in out if _props(p[1]).get(key) is not None]
            without = [p for p in out if _props(p[1]).get(key) is None]
            with_metric.sort(key=lambda p: (_props(p[1])[key], int(p[1]["id"])), reverse=descending)
            out = with_metric + without
        elif order_by == "created":
            out.sort(key=lambda p: (int(p[1].get("createTimeSinceEpoch") or 0), int(p[1]["id"])), reverse=descending)
        elif order_by == "number":
            out.sort(key=lambda p: _number(p[1]) or 0, reverse=descending)
            out.sort(key=lambda p: p[0]["name"])
        elif order_by == "name":
            out.sort(key=lambda p: (p[0]["name"], _number(p[1]) or 0), reverse=descending)
        else:
            raise InvalidOptionError(f"order_by={order_by!r}: created, number, name or metric:NAME")
        page = out[offset: None if limit is None else offset + limit]
        return Page([self._to_version(v, m) for m, v in page], len(out), offset, limit)

    # -- aliases -----------------------------------------------------------------------------------
    def _patch_model_props(self, model: dict, props: dict[str, dict]) -> dict:
        return self._patch("model", model, {"customProperties": props})

    def _record(self, model: dict, alias: str, old: int | None, new: int | None, who: str | None, reason: str | None) -> None:
        props = dict(model.get("customProperties") or {})
        history = decode_value(props[HISTORY]) if HISTORY in props else []
        history.append(
            {"alias": alias, "from": old, "to": new, "who": who, "at": datetime.now(timezone.utc).isoformat(), "reason": reason}
        )
        props[HISTORY] = encode_value(history)
        if new is None:
            props.pop(ALIAS + alias, None)
        else:
            props[ALIAS + alias] = encode_value(new)
        self._patch_model_props(model, props)

    def set_alias(
        self, model: str, alias: str, version: int | str, who: str | None = None, reason: str | None = None
    ) -> ModelVersion:
        check_alias(alias)
        ref = parse_ref(version) if isinstance(version, str) and ("@" in version or ":" in version) else parse_ref(model, version)
        if ref.model != model:
            raise InvalidOptionError(f"alias {alias!r} of {model!r} cannot point at a version of {ref.model!r}")
        m, v = self._version_entity(ref)
        number = _number(v)
        if number is None:
            raise RegistryConflictError(f"version {v['name']!r} of {model!r} has no kfjupyter number; aliases point at numbers")
        if (v.get("state") or LIVE) != LIVE:
            raise RegistryConflictError(f"version {number} of {model!r} is {v.get('state')}: restore it before pointing an alias at it")
        old = self._aliases(m).get(alias)
        if old != number:
            self._record(m, alias, old, number, who or current_user(), reason)
        return self.get_version(model, version=number)

    def delete_alias(self, model: str, alias: str, who: str | None = None, reason: str | None = None) -> None:
        check_alias(alias)
        m = self._find_model(model)
        old = self._aliases(m).get(alias)
        if old is None:
            raise ModelNotFoundError(f"model {model!r} has no alias {alias!r}")
        self._record(m, alias, old, None, who or current_user(), reason)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasEvent]:
        m = self._find_model(model)
        props = _props(m)
        events = props.get(HISTORY) or []
        return [
            AliasEvent(model, e["alias"], e.get("from"), e.get("to"), e.get("who"), datetime.fromisoformat(e["at"]), e.get("reason"))
            for e in events
            if alias is None or e["alias"] == alias
        ]

    # -- state and updates -------------------------------------------------------------------------
    def set_version_state(
        self, ref: str, state: str, version: int | str | None = None, force: bool = False, who: str | None = None
    ) -> ModelVersion:
        if state not in (LIVE, ARCHIVED):
            raise InvalidOptionError(f"state {state!r}: LIVE or ARCHIVED")
        m, v = self._version_entity(parse_ref(ref, version))
        number = _number(v)
        if state == ARCHIVED and (v.get("state") or LIVE) != ARCHIVED:
            pointing = sorted(a for a, n in self._aliases(m).items() if n == number)
            if pointing and not force:
                raise RegistryConflictError(
                    f"version {number} of {m['name']!r} is where alias(es) {', '.join(pointing)} point: "
                    "move them first, or archive with force=True to remove them"
                )
            for alias in pointing:
                self._record(m, alias, number, None, who or current_user(), f"version {number} archived")
                m = self._find_model(m["name"])
        updated = self._patch("version", v, {"state": state})
        return self._to_version(updated, self._find_model(m["name"]))

    def set_model_state(self, name: str, state: str) -> RegisteredModel:
        if state not in (LIVE, ARCHIVED):
            raise InvalidOptionError(f"state {state!r}: LIVE or ARCHIVED")
        m = self._find_model(name)
        updated = self._patch("model", m, {"state": state})
        return self._to_model(updated, self._model_versions(m["id"]))

    def update_version(
        self,
        ref: str,
        version: int | str | None = None,
        *,
        description: str | None = None,
        custom_properties: dict | None = None,
    ) -> ModelVersion:
        m, v = self._version_entity(parse_ref(ref, version))
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if custom_properties is not None:
            for key in custom_properties:
                if key.startswith(RESERVED):
                    raise InvalidOptionError(f"custom property {key!r}: names starting {', '.join(RESERVED)} are kfjupyter's")
            props = dict(v.get("customProperties") or {})
            props.update({k: encode_value(val) for k, val in custom_properties.items()})
            body["customProperties"] = props
        updated = self._patch("version", v, body) if body else v
        return self._to_version(updated, m)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        custom_properties: dict | None = None,
    ) -> RegisteredModel:
        m = self._find_model(name)
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if owner is not None:
            body["owner"] = owner
        if custom_properties is not None:
            props = dict(m.get("customProperties") or {})
            props.update({k: encode_value(val) for k, val in custom_properties.items()})
            body["customProperties"] = props
        updated = self._patch("model", m, body) if body else m
        return self._to_model(updated, self._model_versions(m["id"]))

    # -- deployments (ServingEnvironment / InferenceService) --------------------------------------
    def _serving_environment(self, name: str) -> dict:
        """The ServingEnvironment called ``name``, created if missing (another client may win the race)."""
        for _ in range(5):
            try:
                return self._call("GET", "/serving_environment", params={"name": name}, missing=name)
            except ModelNotFoundError:
                pass
            try:
                return self._call("POST", "/serving_environments",
                                  body={"name": name, "description": "recorded by kfjupyter"})
            except RegistryConflictError:
                continue
        raise RegistryBackendError(f"could not create serving environment {name!r}")

    def _deployment_body(self, ref: str, canary: str | None, canary_percent: int, endpoint_id: str | None,
                         current: dict | None = None) -> tuple[dict, dict, dict]:
        """(model, version, the InferenceService fields that say what is served)."""
        model, version = self._version_entity(parse_ref(ref))
        props = {k: v for k, v in ((current or {}).get("customProperties") or {}).items()
                 if k not in (CANARY_ID, CANARY_REF, CANARY_PERCENT)}
        props[SERVED_REF] = encode_value(ref)
        if endpoint_id:
            props[ENDPOINT_ID] = encode_value(endpoint_id)
        if canary:
            cmodel, cversion = self._version_entity(parse_ref(canary))
            if cmodel["id"] != model["id"]:
                raise InvalidOptionError(f"canary {canary} is not a version of {model['name']!r}")
            props.update({CANARY_ID: encode_value(cversion["id"]), CANARY_REF: encode_value(canary),
                          CANARY_PERCENT: encode_value(int(canary_percent))})
        return model, version, {"modelVersionId": version["id"], "customProperties": props}

    def record_deployment(self, environment: str, name: str, ref: str, *, runtime: str | None = None,
                          canary: str | None = None, canary_percent: int = 0, endpoint_id: str | None = None) -> dict:
        env = self._serving_environment(environment)
        existing = None
        try:
            existing = self._call("GET", "/inference_service", params={"name": name, "parentResourceId": env["id"]},
                                  missing=name)
        except ModelNotFoundError:
            pass
        model, version, served = self._deployment_body(ref, canary, canary_percent, endpoint_id, existing)
        changes = {**served, "desiredState": DEPLOYED}
        if runtime:
            changes["runtime"] = runtime
        if existing is not None and existing["registeredModelId"] == model["id"]:
            isvc = self._patch("inference_service", existing, changes)
        elif existing is not None:
            raise RegistryConflictError(
                f"serving environment {environment!r} already has an InferenceService {name!r} serving another model"
            )
        else:
            body = {"name": name, "servingEnvironmentId": env["id"], "registeredModelId": model["id"], **changes}
            isvc = self._call("POST", "/inference_services", body=body)
        return {"inference_service_id": isvc["id"], "serving_environment_id": env["id"],
                "registered_model_id": model["id"], "model_version_id": version["id"], "endpoint_id": endpoint_id}

    def update_deployment(self, record: dict, *, ref: str | None = None, canary: str | None = None,
                          canary_percent: int = 0, undeployed: bool = False) -> dict:
        isvc = self._call("GET", f"/inference_services/{record['inference_service_id']}",
                          missing=f"no InferenceService {record['inference_service_id']} in Model Registry")
        owner = _props(isvc).get(ENDPOINT_ID)
        if record.get("endpoint_id") and owner and owner != record["endpoint_id"]:
            return {**record, "superseded_by": owner}  # deployed again since, by another endpoint: theirs now
        changes: dict[str, Any] = {}
        out = dict(record)
        if ref is not None:
            _, version, served = self._deployment_body(ref, canary, canary_percent, None, isvc)
            changes.update(served)
            out["model_version_id"] = version["id"]
        changes["desiredState"] = UNDEPLOYED if undeployed else DEPLOYED
        self._patch("inference_service", isvc, changes)
        return out


__all__ = ["RemoteRegistry", "decode_value", "encode_value"]
