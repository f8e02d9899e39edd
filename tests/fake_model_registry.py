"""A fake Kubeflow Model Registry server, built from its OpenAPI description.

It serves one API version (``v1`` or ``v1alpha3``) from the vendored spec in
``kfjupyter/registry/schemas/`` and is as strict as the real one, or stricter:

- a path the spec does not have is 404 (so probing for the wrong version fails as it
  would), a method it does not have is 405;
- path and query parameters are validated against their schemas; an unknown query
  parameter is 400;
- request bodies are validated against the operation's schema (``oneOf`` resolved by its
  ``discriminator``), and unknown properties are refused (the real server's generated Go
  code decodes with ``DisallowUnknownFields``);
- every response it sends is validated against the operation's response schema, and its
  status must be one the spec lists (a mismatch is a 500 naming the problem, so a fake
  that drifts from the spec fails the tests).

Behaviour: RegisteredModels, ModelVersions and ModelArtifacts in memory; RegisteredModel
names unique, ModelVersion names unique within their model, ``externalId`` unique
everywhere (409 Conflict). ServingEnvironments (names unique) and their InferenceServices
(names unique within their environment, as the server keeps them as child contexts); an
InferenceService must name an existing environment, RegisteredModel and (if given) a
ModelVersion of that model, else 400; ``…/inference_services/{id}/model`` and ``/version``
answer what it serves (the latest version when ``modelVersionId`` is unset). ServeModel
actions (``…/serves``) are not implemented (500, naming it); paging with ``pageSize``/``nextPageToken``; ``orderBy``
(ID, CREATE_TIME, LAST_UPDATE_TIME) and ``sortOrder``; ``filterQuery`` as documented
(comparisons, LIKE/ILIKE, IN, AND/OR, parentheses, custom properties bare, backticked or
with a ``.xxx_value`` accessor). PATCH replaces the fields it names (``customProperties``
as a whole) and clears the editable ones it leaves out (the strictest reading: a client
that keeps its data here keeps it on every release). Optional bearer-token auth. ``requests`` records what clients sent.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent.parent / "kfjupyter" / "registry" / "schemas"
SPECS = {
    "v1": SCHEMAS / "model-registry-openapi-v1-odh-main-2026-08.yaml",
    "v1alpha3": SCHEMAS / "model-registry-openapi-v0.3.8.yaml",
}

_spec_cache: dict[str, dict] = {}


def load_spec(api: str) -> dict:
    if api not in _spec_cache:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        _spec_cache[api] = yaml.load(SPECS[api].read_text(), Loader=loader)
    return _spec_cache[api]


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- schemas ---------------------------------------------------------------------------------


def _discriminated(node: Any) -> Any:
    """OpenAPI ``oneOf`` + ``discriminator`` → JSON Schema that picks the branch by the property."""
    if isinstance(node, list):
        return [_discriminated(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _discriminated(v) for k, v in node.items()}
    disc = node.get("discriminator")
    if disc and "oneOf" in node and disc.get("mapping"):
        prop, mapping = disc["propertyName"], disc["mapping"]
        node.pop("oneOf")
        node.pop("discriminator")
        node["required"] = sorted(set(node.get("required", [])) | {prop})
        node.setdefault("properties", {})[prop] = {"enum": sorted(mapping)}
        node["allOf"] = node.get("allOf", []) + [
            {"if": {"properties": {prop: {"const": key}}}, "then": {"$ref": ref}} for key, ref in mapping.items()
        ]
    return node


class Schemas:
    def __init__(self, spec: dict):
        self.components = _discriminated(spec["components"])
        self._validators: dict[str, jsonschema.Draft7Validator] = {}
        self._valid: set[tuple[str, str]] = set()

    def deref(self, node: dict) -> dict:
        while isinstance(node, dict) and "$ref" in node:
            parts = node["$ref"].lstrip("#/").split("/")
            node = {"components": self.components}
            for part in parts:
                node = node[part]
        return node

    def validate(self, schema: dict, instance: Any, what: str) -> None:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = jsonschema.Draft7Validator({**schema, "components": self.components})
            self._validators[key] = validator
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise HTTPError(400, f"{what}: {where}: {e.message}")

    def validate_response(self, schema: dict, payload: Any) -> None:
        """Like :meth:`validate`; a list's items are checked one by one, each distinct item once."""
        item_schema = self._item_schema(schema)
        if item_schema is None or not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
            self.validate(schema, payload, "response")
            return
        self.validate(schema, {**payload, "items": []}, "response")
        for item in payload["items"]:
            key = (json.dumps(item_schema, sort_keys=True), json.dumps(item, sort_keys=True))
            if key not in self._valid:
                self.validate(item_schema, item, "response item")
                if len(self._valid) > 100_000:
                    self._valid.clear()
                self._valid.add(key)

    def _item_schema(self, schema: dict) -> dict | None:
        for part in self.deref(schema).get("allOf", []):
            items = self.deref(part).get("properties", {}).get("items")
            if isinstance(items, dict) and "items" in items:
                return items["items"]
        return None

    def known_properties(self, schema: dict, instance: dict) -> set[str] | None:
        """Property names a schema declares for this instance (None: anything goes)."""
        schema = self.deref(schema)
        names: set[str] = set(schema.get("properties", {}))
        if schema.get("additionalProperties") not in (None, False):
            return None
        for sub in schema.get("allOf", []):
            sub = self.deref(sub)
            if "if" in sub:  # a discriminated branch
                prop, const = next(iter(sub["if"]["properties"].items()))
                if instance.get(prop) != const["const"]:
                    continue
                sub = sub["then"]
            more = self.known_properties(sub, instance)
            if more is None:
                return None
            names |= more
        return names


# -- filterQuery -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'])*'|\"(?:[^\"])*\")|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<op><>|!=|>=|<=|=|<|>)|(?P<paren>[(),])|(?P<tick>`[^`]+`(?:\.\w+)?)|(?P<word>[A-Za-z_][\w.]*))"
)
_TYPED = ("string_value", "double_value", "int_value", "bool_value")
_STANDARD = {"id", "name", "state", "externalId", "description", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise HTTPError(400, f"filterQuery: cannot parse at {text[pos:]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.upper() == word:
            self.i += 1
            return True
        return False

    def parse(self):
        node = self.expr()
        if self.i != len(self.toks):
            raise HTTPError(400, f"filterQuery: unexpected {self.peek()[1]!r}")
        return node

    def expr(self):
        node = self.term()
        while self.keyword("OR"):
            node = ("or", node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.keyword("AND"):
            node = ("and", node, self.factor())
        return node

    def factor(self):
        kind, value = self.peek()
        if kind == "paren" and value == "(":
            self.take()
            node = self.expr()
            if self.take() != ("paren", ")"):
                raise HTTPError(400, "filterQuery: missing ')'")
            return node
        prop = self.prop()
        if self.keyword("IN"):
            if self.take() != ("paren", "("):
                raise HTTPError(400, "filterQuery: IN needs a list")
            values = [self.value()]
            while self.peek() == ("paren", ","):
                self.take()
                values.append(self.value())
            if self.take() != ("paren", ")"):
                raise HTTPError(400, "filterQuery: missing ')'")
            return ("in", prop, values)
        for word in ("LIKE", "ILIKE"):
            if self.keyword(word):
                return (word.lower(), prop, self.value())
        kind, op = self.take()
        if kind != "op":
            raise HTTPError(400, f"filterQuery: expected an operator after {prop[0]!r}")
        return ("cmp", prop, "!=" if op == "<>" else op, self.value())

    def prop(self):
        kind, value = self.take()
        if kind == "tick":
            name, _, typed = value[1:].partition("`")
            typed = typed.lstrip(".") or None
        elif kind == "word":
            name, typed = value, None
            head, _, tail = value.rpartition(".")
            if head and tail in _TYPED:
                name, typed = head, tail
        else:
            raise HTTPError(400, f"filterQuery: expected a property, got {value!r}")
        if typed is not None and typed not in _TYPED:
            raise HTTPError(400, f"filterQuery: unknown accessor {typed!r}")
        return name, typed

    def value(self):
        kind, value = self.take()
        if kind == "str":
            return value[1:-1]
        if kind == "num":
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "word" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise HTTPError(400, f"filterQuery: expected a value, got {value!r}")


def _prop_value(entity: dict, name: str, typed: str | None) -> Any:
    if typed is None and name in _STANDARD:
        value = entity.get(name)
        return int(value) if name in ("id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch") and value else value
    prop = (entity.get("customProperties") or {}).get(name)
    if prop is None:
        return None
    for key in _TYPED:
        if key in prop:
            if typed is not None and key != typed:
                return None
            value = prop[key]
            return int(value) if key == "int_value" else value
    return None


def _like(value: Any, pattern: str, flags: int = 0) -> bool:
    if not isinstance(value, str):
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def _eval(node, entity: dict) -> bool:
    kind = node[0]
    if kind == "and":
        return _eval(node[1], entity) and _eval(node[2], entity)
    if kind == "or":
        return _eval(node[1], entity) or _eval(node[2], entity)
    value = _prop_value(entity, *node[1])
    if value is None:
        return False
    if kind == "like":
        return _like(value, node[2])
    if kind == "ilike":
        return _like(value, node[2], re.IGNORECASE)
    if kind == "in":
        return value in node[2]
    _, _, op, other = node
    if isinstance(other, (int, float)) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    try:
        return {
            "=": value == other,
            "!=": value != other,
            ">": value > other,
            "<": value < other,
            ">=": value >= other,
            "<=": value <= other,
        }[op]
    except TypeError:
        return False


def matches(query: str, entity: dict) -> bool:
    return _eval(_Parser(query).parse(), entity)


# -- the store -----------------------------------------------------------------------------------


@dataclass
class Store:
    models: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    artifacts: dict[str, dict] = field(default_factory=dict)
    environments: dict[str, dict] = field(default_factory=dict)
    inference_services: dict[str, dict] = field(default_factory=dict)
    #: artifact id → the version it belongs to
    parents: dict[str, str] = field(default_factory=dict)
    next_id: int = 1

    def new_id(self) -> str:
        value = str(self.next_id)
        self.next_id += 1
        return value

    def external_ids(self) -> set[str]:
        return {
            e["externalId"]
            for table in (self.models, self.versions, self.artifacts, self.environments, self.inference_services)
            for e in table.values()
            if e.get("externalId")
        }


#: editable fields a PATCH that leaves them out clears (the strict reading of the API:
#: clients must send every editable field, as Kubeflow's own dashboard does)
CLEARED_BY_PATCH = {
    "model": {"description", "customProperties", "owner", "externalId"},
    "version": {"description", "customProperties", "author", "externalId"},
    "environment": {"description", "customProperties", "externalId"},
    "inference_service": {"description", "customProperties", "externalId", "desiredState", "modelVersionId", "runtime"},
}


def _now_ms() -> str:
    return str(int(time.time() * 1000))


class FakeModelRegistry:
    """``with FakeModelRegistry("v1") as mr: mr.url …`` — a server on 127.0.0.1."""

    def __init__(self, api: str = "v1", token: str | None = None):
        self.api = api
        self.token = token
        self.spec = load_spec(api)
        self.schemas = Schemas(self.spec)
        self.prefix = f"/api/model_registry/{api}"
        self.routes = [(self._template(p), p, item) for p, item in self.spec["paths"].items()]
        self.store = Store()
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self._server: ThreadingHTTPServer | None = None

    @staticmethod
    def _template(path: str) -> re.Pattern:
        return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")

    # -- server ---------------------------------------------------------------------------------
    def start(self) -> "FakeModelRegistry":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # headers and body go out as two writes: without this, Nagle + delayed ACK add 40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = fake.handle(self.command, self.path, raw, dict(self.headers))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeModelRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- requests ---------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, raw_body: bytes, headers: dict) -> tuple[int, dict]:
        parsed = urlparse(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query, keep_blank_values=True).items()}
        record = {"method": method, "path": parsed.path, "query": query, "body": None}
        self.requests.append(record)
        operation = None
        dispatched = False
        try:
            if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
                raise HTTPError(401, "missing or wrong bearer token")
            for pattern, template, item in self.routes:
                m = pattern.match(parsed.path)
                if m:
                    break
            else:
                raise HTTPError(404, f"no route {parsed.path}")
            operation = item.get(method.lower())
            if operation is None:
                raise HTTPError(405, f"{method} not allowed on {template}")
            self._check_params(item, operation, m.groupdict(), query)
            body = None
            if "requestBody" in operation:
                try:
                    body = json.loads(raw_body or b"null")
                except ValueError:
                    raise HTTPError(400, "request body is not JSON") from None
                record["body"] = body
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                if body is None:
                    raise HTTPError(400, "request body required")
                self.schemas.validate(schema, body, "request body")
                known = self.schemas.known_properties(schema, body)
                if known is not None and isinstance(body, dict):
                    unknown = sorted(set(body) - known)
                    if unknown:
                        raise HTTPError(400, f"request body: unknown field(s) {unknown}")
            with self.lock:
                dispatched = True
                status, payload = self._dispatch(method, template, m.groupdict(), query, body)
        except HTTPError as exc:
            status, payload = exc.status, {"code": str(exc.status), "message": exc.message}
        # a request refused before it reached the behaviour (validation, auth, routing) is
        # answered like the real server's middleware does, whatever the operation lists
        status, payload = self._checked(operation if dispatched else None, status, payload)
        record["status"] = status
        if status >= 400:
            record["error"] = payload.get("message")
        return status, payload

    def _checked(self, operation: dict | None, status: int, payload: dict) -> tuple[int, dict]:
        if operation is None:
            return status, payload
        response = operation.get("responses", {}).get(str(status))
        if response is None:
            return 500, {"code": "500", "message": f"fake bug: status {status} is not in the spec ({payload})"}
        response = self.schemas.deref(response)
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            try:
                self.schemas.validate_response(schema, payload)
            except HTTPError as exc:
                return 500, {"code": "500", "message": f"fake bug: {exc.message}"}
        return status, payload

    def _check_params(self, item: dict, operation: dict, path_params: dict, query: dict) -> None:
        declared = [self.schemas.deref(p) for p in item.get("parameters", []) + operation.get("parameters", [])]
        names = {p["name"] for p in declared if p["in"] == "query"}
        unknown = sorted(set(query) - names)
        if unknown:
            raise HTTPError(400, f"unknown query parameter(s) {unknown}")
        for p in declared:
            source = path_params if p["in"] == "path" else query if p["in"] == "query" else None
            if source is None or p["name"] not in source:
                if p.get("required"):
                    raise HTTPError(400, f"missing parameter {p['name']}")
                continue
            self.schemas.validate(p["schema"], source[p["name"]], f"parameter {p['name']}")

    # -- behaviour --------------------------------------------------------------------------------
    def _dispatch(self, method: str, template: str, params: dict, query: dict, body: Any) -> tuple[int, dict]:
        rel = template[len(self.prefix):]
        ids = list(params.values())
        s = self.store
        if rel == "/registered_models":
            if method == "GET":
                return 200, self._list(s.models.values(), query)
            return 201, self._create_model(body)
        if rel == "/registered_model":
            return 200, self._find(s.models.values(), query)
        if rel.startswith("/registered_models/{") and rel.endswith("/versions"):
            model = self._get(s.models, ids[0], "RegisteredModel")
            if method == "GET":
                items = [v for v in s.versions.values() if v["registeredModelId"] == model["id"]]
                items = [v for v in items if self._found(v, query)]
                return 200, self._list(items, query)
            return 201, self._create_version({**body, "registeredModelId": model["id"]})
        if rel.startswith("/registered_models/{"):
            model = self._get(s.models, ids[0], "RegisteredModel")
            if method == "GET":
                return 200, model
            if "name" in body and body["name"] != model["name"]:
                raise HTTPError(400, "name cannot be changed")
            return 200, self._patch(model, body, CLEARED_BY_PATCH["model"])
        if rel == "/model_versions":
            if method == "GET":
                return 200, self._list(s.versions.values(), query)
            return 201, self._create_version(body)
        if rel == "/model_version":
            return 200, self._find(s.versions.values(), query, parent_key="registeredModelId")
        if rel.startswith("/model_versions/{") and rel.endswith("/artifacts"):
            version = self._get(s.versions, ids[0], "ModelVersion")
            if method == "GET":
                items = [a for aid, a in s.artifacts.items() if s.parents.get(aid) == version["id"]]
                if query.get("artifactType"):
                    items = [a for a in items if a.get("artifactType") == query["artifactType"]]
                items = [a for a in items if self._found(a, query)]
                return 200, self._list(items, query)
            return self._upsert_artifact(version, body)
        if rel.startswith("/model_versions/{"):
            version = self._get(s.versions, ids[0], "ModelVersion")
            if method == "GET":
                return 200, version
            return 200, self._patch(version, body, CLEARED_BY_PATCH["version"])
        if rel in ("/model_artifacts", "/artifacts"):
            items = [a for a in s.artifacts.values() if rel == "/artifacts" or a.get("artifactType") == "model-artifact"]
            if method == "GET":
                if query.get("artifactType"):
                    items = [a for a in items if a.get("artifactType") == query["artifactType"]]
                return 200, self._list(items, query)
            return 201, self._create_artifact(body, None)
        if rel in ("/model_artifact", "/artifact"):
            items = [a for a in s.artifacts.values() if rel == "/artifact" or a.get("artifactType") == "model-artifact"]
            return 200, self._find(items, query, parent_key=None)
        if rel.startswith(("/model_artifacts/{", "/artifacts/{")):
            art = self._get(s.artifacts, ids[0], "Artifact")
            if method == "GET":
                return 200, art
            return 200, self._patch(art, body)
        if rel == "/serving_environments":
            if method == "GET":
                return 200, self._list(s.environments.values(), query)
            return 201, self._create_environment(body)
        if rel == "/serving_environment":
            return 200, self._find(s.environments.values(), query, parent_key=None)
        if rel.startswith("/serving_environments/{") and rel.endswith("/inference_services"):
            env = self._get(s.environments, ids[0], "ServingEnvironment")
            if method == "GET":
                items = [i for i in s.inference_services.values() if i["servingEnvironmentId"] == env["id"]]
                return 200, self._list([i for i in items if self._found(i, query)], query)
            return 201, self._create_inference_service({**body, "servingEnvironmentId": env["id"]})
        if rel.startswith("/serving_environments/{"):
            env = self._get(s.environments, ids[0], "ServingEnvironment")
            if method == "GET":
                return 200, env
            return 200, self._patch(env, body, CLEARED_BY_PATCH["environment"])
        if rel == "/inference_services":
            if method == "GET":
                return 200, self._list(s.inference_services.values(), query)
            return self._created_status(template), self._create_inference_service(body)
        if rel == "/inference_service":
            return 200, self._find(s.inference_services.values(), query, parent_key="servingEnvironmentId")
        if rel.startswith("/inference_services/{") and rel.endswith("/model"):
            isvc = self._get(s.inference_services, ids[0], "InferenceService")
            return 200, self._get(s.models, isvc["registeredModelId"], "RegisteredModel")
        if rel.startswith("/inference_services/{") and rel.endswith("/version"):
            isvc = self._get(s.inference_services, ids[0], "InferenceService")
            if isvc.get("modelVersionId"):
                return 200, self._get(s.versions, isvc["modelVersionId"], "ModelVersion")
            versions = [v for v in s.versions.values() if v["registeredModelId"] == isvc["registeredModelId"]]
            if not versions:
                raise HTTPError(404, f"RegisteredModel {isvc['registeredModelId']} has no version to serve")
            return 200, max(versions, key=lambda v: (int(v["createTimeSinceEpoch"]), int(v["id"])))
        if rel.startswith("/inference_services/{") and "/" not in rel[len("/inference_services/{"):]:
            isvc = self._get(s.inference_services, ids[0], "InferenceService")
            if method == "GET":
                return 200, isvc
            self._check_serves(isvc["registeredModelId"], body.get("modelVersionId"))
            return 200, self._patch(isvc, body, CLEARED_BY_PATCH["inference_service"])
        raise HTTPError(500, f"the fake does not implement {method} {template}")

    def _created_status(self, template: str) -> int:
        """What a create answers: 201, or 200 where the spec says so (v0.3's POST /inference_services)."""
        return 201 if "201" in self.spec["paths"][template]["post"]["responses"] else 200

    def _get(self, table: dict, entity_id: str, kind: str) -> dict:
        if entity_id not in table:
            raise HTTPError(404, f"{kind} {entity_id} not found")
        return table[entity_id]

    @staticmethod
    def _found(entity: dict, query: dict) -> bool:
        return all(entity.get(k) == query[k] for k in ("name", "externalId") if query.get(k))

    def _find(self, items, query: dict, parent_key: str | None = "") -> dict:
        if not query.get("name") and not query.get("externalId"):
            raise HTTPError(400, "give name or externalId")
        for e in items:
            if not self._found(e, query):
                continue
            parent = query.get("parentResourceId")
            if parent and parent_key and e.get(parent_key) != parent:
                continue
            if parent and parent_key is None and self.store.parents.get(e["id"]) != parent:
                continue
            return e
        raise HTTPError(404, f"no entity matching {query}")

    def _list(self, items, query: dict) -> dict:
        items = list(items)
        if query.get("filterQuery"):
            tree = _Parser(query["filterQuery"]).parse()
            items = [e for e in items if _eval(tree, e)]
        order = query.get("orderBy") or "ID"
        key = {"ID": "id", "CREATE_TIME": "createTimeSinceEpoch", "LAST_UPDATE_TIME": "lastUpdateTimeSinceEpoch"}[order]
        items.sort(key=lambda e: (int(e[key]), int(e["id"])), reverse=query.get("sortOrder") == "DESC")
        size = int(query.get("pageSize") or 100)
        if size < 1:
            raise HTTPError(400, "pageSize must be positive")
        start = 0
        if query.get("nextPageToken"):
            try:
                start = int(base64.urlsafe_b64decode(query["nextPageToken"].encode()).decode())
            except ValueError:
                raise HTTPError(400, "invalid nextPageToken") from None
        page = items[start:start + size]
        more = start + size < len(items)
        token = base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else ""
        return {"items": copy.deepcopy(page), "nextPageToken": token, "pageSize": size, "size": len(page)}

    def _stamp(self, entity: dict) -> dict:
        entity["id"] = self.store.new_id()
        entity["createTimeSinceEpoch"] = entity["lastUpdateTimeSinceEpoch"] = _now_ms()
        return entity

    def _check_external(self, body: dict, current: dict | None = None) -> None:
        ext = body.get("externalId")
        if ext and (current is None or current.get("externalId") != ext) and ext in self.store.external_ids():
            raise HTTPError(409, f"externalId {ext!r} already exists")

    def _create_model(self, body: dict) -> dict:
        if any(m["name"] == body["name"] for m in self.store.models.values()):
            raise HTTPError(409, f"RegisteredModel with name {body['name']!r} already exists")
        self._check_external(body)
        model = self._stamp({"state": "LIVE", **copy.deepcopy(body)})
        self.store.models[model["id"]] = model
        return model

    def _create_version(self, body: dict) -> dict:
        model_id = body["registeredModelId"]
        if model_id not in self.store.models:
            raise HTTPError(422, f"RegisteredModel {model_id} not found")
        if any(v["registeredModelId"] == model_id and v["name"] == body["name"] for v in self.store.versions.values()):
            raise HTTPError(409, f"ModelVersion {body['name']!r} already exists in RegisteredModel {model_id}")
        self._check_external(body)
        version = self._stamp({"state": "LIVE", **copy.deepcopy(body)})
        self.store.versions[version["id"]] = version
        self._touch(self.store.models[model_id])
        return version

    def _create_environment(self, body: dict) -> dict:
        if any(e["name"] == body["name"] for e in self.store.environments.values()):
            raise HTTPError(409, f"ServingEnvironment with name {body['name']!r} already exists")
        self._check_external(body)
        env = self._stamp(copy.deepcopy(body))
        self.store.environments[env["id"]] = env
        return env

    def _check_serves(self, model_id: str, version_id: str | None) -> None:
        if version_id is None:
            return
        version = self.store.versions.get(version_id)
        if version is None:
            raise HTTPError(400, f"ModelVersion {version_id} not found")
        if version["registeredModelId"] != model_id:
            raise HTTPError(400, f"ModelVersion {version_id} is not a version of RegisteredModel {model_id}")

    def _create_inference_service(self, body: dict) -> dict:
        env_id, model_id = body["servingEnvironmentId"], body["registeredModelId"]
        if env_id not in self.store.environments:
            raise HTTPError(400, f"ServingEnvironment {env_id} not found")
        if model_id not in self.store.models:
            raise HTTPError(400, f"RegisteredModel {model_id} not found")
        self._check_serves(model_id, body.get("modelVersionId"))
        name = body.get("name")
        if name and any(i.get("name") == name and i["servingEnvironmentId"] == env_id for i in self.store.inference_services.values()):
            raise HTTPError(409, f"InferenceService {name!r} already exists in ServingEnvironment {env_id}")
        self._check_external(body)
        isvc = self._stamp(copy.deepcopy(body))
        self.store.inference_services[isvc["id"]] = isvc
        return isvc

    def _create_artifact(self, body: dict, version_id: str | None) -> dict:
        kind = body.get("artifactType", "model-artifact")
        for aid, a in self.store.artifacts.items():
            if body.get("name") and a.get("name") == body["name"] and a.get("artifactType") == kind and self.store.parents.get(aid) == version_id:
                raise HTTPError(409, f"artifact {body['name']!r} already exists")
        self._check_external(body)
        art = self._stamp({"artifactType": kind, "state": "UNKNOWN", **copy.deepcopy(body)})
        self.store.artifacts[art["id"]] = art
        if version_id is not None:
            self.store.parents[art["id"]] = version_id
        return art

    def _upsert_artifact(self, version: dict, body: dict) -> tuple[int, dict]:
        if body.get("id"):
            art = self._get(self.store.artifacts, body["id"], "Artifact")
            self.store.parents[art["id"]] = version["id"]
            return 200, art
        return 201, self._create_artifact(body, version["id"])

    def _patch(self, entity: dict, body: dict, editable: set[str] = frozenset()) -> dict:
        self._check_external(body, entity)
        for key in editable - set(body):  # as some releases did: what a PATCH leaves out is cleared
            entity.pop(key, None)
        for key, value in body.items():
            if key in ("id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch", "registeredModelId", "artifactType",
                       "servingEnvironmentId"):
                continue
            entity[key] = copy.deepcopy(value)
        self._touch(entity)
        return entity

    @staticmethod
    def _touch(entity: dict) -> None:
        entity["lastUpdateTimeSinceEpoch"] = str(max(int(_now_ms()), int(entity["lastUpdateTimeSinceEpoch"]) + 1))


if __name__ == "__main__":  # pragma: no cover - run by hand: python tests/fake_model_registry.py v1
    import sys

    with FakeModelRegistry(sys.argv[1] if len(sys.argv) > 1 else "v1") as fake:
        print(fake.url, flush=True)
        threading.Event().wait()
