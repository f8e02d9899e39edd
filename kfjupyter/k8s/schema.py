"""Validate manifests before they are sent, as the Kubernetes API server would.

A ``TrainJob`` is checked against the ``openAPIV3Schema`` of the upstream CRD copied in
``schemas/`` (a *structural schema*: OpenAPI v3 plus Kubernetes' ``x-kubernetes-*``
extensions), strictly — an unknown field is an error, as with
``kubectl apply --validate=strict`` — plus the rules that admission webhooks enforce and
the schema does not show (see ``schemas/README.md``). A ``ConfigMap`` is checked against
the API server's built-in rules (name, keys, 1 MiB of data).

Errors name the JSON path of every problem found::

    TrainJob 'demo-1a2b3' would be rejected by the Kubernetes API server:
      spec.trainer.env[0].name: 'PET_MASTER_PORT' is reserved by the torch runtime
"""

from __future__ import annotations

import base64
import binascii
import functools
import operator
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import InvalidOptionError, PreflightError

SCHEMAS_DIR = Path(__file__).parent / "schemas"
TRAINJOB_CRD = SCHEMAS_DIR / "trainer-v2.3.0" / "trainer.kubeflow.org_trainjobs.yaml"

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"

#: Environment variables the torch runtime sets on every node; a TrainJob may not.
TORCH_RESERVED_ENV = frozenset(
    {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
)

#: The API server's limit on the data of a ConfigMap (``core.MaxSecretSize``).
MAX_CONFIGMAP_BYTES = 1024 * 1024

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_OBJECT_META_FIELDS = frozenset(
    {
        "name", "generateName", "namespace", "labels", "annotations", "ownerReferences",
        "finalizers", "uid", "resourceVersion", "generation", "creationTimestamp",
        "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
    }
)  # fmt: skip


class ManifestError(InvalidOptionError):
    """A manifest the API server would reject; ``problems`` lists (JSON path, problem)."""

    def __init__(self, kind: str, name: Any, problems: list[tuple[str, str]]):
        self.kind = kind
        self.name = name
        self.problems = problems
        lines = [f"  {path or '<root>'}: {problem}" for path, problem in problems[:20]]
        if len(problems) > 20:
            lines.append(f"  … and {len(problems) - 20} more")
        super().__init__(
            f"{kind} {name!r} would be rejected by the Kubernetes API server:\n" + "\n".join(lines)
        )


class ConfigMapTooLargeError(PreflightError, ManifestError):
    """The bundle does not fit in one ConfigMap (1 MiB); nothing was sent."""

    def __init__(self, name: str, size: int, largest: list[tuple[str, int]]):
        biggest = ", ".join(f"{key} ({_human(n)})" for key, n in largest)
        ManifestError.__init__(
            self,
            "ConfigMap",
            name,
            [("data", f"the bundle's files take {size} bytes ({_human(size)}), over the "
                      f"{MAX_CONFIGMAP_BYTES} bytes (1 MiB) a ConfigMap can hold; largest: {biggest}")],
        )  # fmt: skip
        self.culprit = largest[0][0] if largest else None
        self.size = size


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


# --------------------------------------------------------------------------- schema


@functools.lru_cache(maxsize=None)
def load_crd_schema(path: Path = TRAINJOB_CRD, version: str = TRAINER_VERSION) -> dict:
    """The ``openAPIV3Schema`` of one version of a CRD file (parsed once, then cached)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, "rb") as fh:
        crd = yaml.load(fh, Loader=loader)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"{path.name} has no version {version}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Validator:
    """Walks a value alongside a structural schema, collecting (path, problem) pairs."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def error(self, path: str, problem: str) -> None:
        self.problems.append((path, problem))

    def validate(self, value: Any, schema: dict, path: str) -> None:
        if value is None:
            if not schema.get("nullable"):
                self.error(path, "null is not allowed here (omit the field instead)")
            return
        if not self._type_ok(value, schema, path):
            return
        self._value_checks(value, schema, path)
        if isinstance(value, dict):
            self._object(value, schema, path)
        elif isinstance(value, list):
            self._array(value, schema, path)
        for rule in schema.get("x-kubernetes-validations") or []:
            self._cel(value, rule, path)

    def _type_ok(self, value: Any, schema: dict, path: str) -> bool:
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                self.error(path, f"expected an integer or a string, got {_typename(value)}")
                return False
            return True
        expected = schema.get("type")
        if expected is None:
            return True
        checks: dict[str, Callable[[Any], bool]] = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        }
        if not checks[expected](value):
            self.error(path, f"expected {expected}, got {_typename(value)} {value!r:.60}")
            return False
        return True

    def _value_checks(self, value: Any, schema: dict, path: str) -> None:
        if "enum" in schema and value not in schema["enum"]:
            self.error(path, f"{value!r} is not one of {schema['enum']}")
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                self.error(path, f"{value!r} does not match the pattern {schema['pattern']}")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self.error(path, f"longer than {schema['maxLength']} characters ({len(value)})")
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.error(path, f"shorter than {schema['minLength']} characters")
            if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
                self.error(path, f"{value!r} is not an RFC 3339 date-time")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = _INT_RANGES.get(schema.get("format", ""), (None, None))
            if low is not None and not low <= value <= high:
                self.error(path, f"{value} is out of the {schema['format']} range")
            if "minimum" in schema and (
                value < schema["minimum"] or (schema.get("exclusiveMinimum") and value == schema["minimum"])
            ):
                self.error(path, f"{value} is less than the minimum {schema['minimum']}")
            if "maximum" in schema and (
                value > schema["maximum"] or (schema.get("exclusiveMaximum") and value == schema["maximum"])
            ):
                self.error(path, f"{value} is more than the maximum {schema['maximum']}")
        # anyOf/allOf/oneOf/not hold value validations only, in a structural schema.
        for sub in schema.get("allOf") or []:
            self.validate(value, sub, path)
        if "anyOf" in schema and not any(self._passes(value, s, path) for s in schema["anyOf"]):
            self.error(path, f"{value!r:.60} matches none of the allowed forms")
        if "oneOf" in schema and sum(self._passes(value, s, path) for s in schema["oneOf"]) != 1:
            self.error(path, f"{value!r:.60} must match exactly one of the allowed forms")
        if "not" in schema and self._passes(value, schema["not"], path):
            self.error(path, f"{value!r:.60} matches a forbidden form")

    def _passes(self, value: Any, schema: dict, path: str) -> bool:
        probe = Validator()
        probe.validate(value, schema, path)
        return not probe.problems

    def _object(self, value: dict, schema: dict, path: str) -> None:
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for key, item in value.items():
            sub = _join(path, key)
            if not path and key == "metadata":
                continue  # ObjectMeta: checked by check_metadata, as the API server does
            if key in props:
                self.validate(item, props[key], sub)
            elif isinstance(extra, dict):
                self.validate(item, extra, sub)
            elif not (preserve or extra is True):
                near = [p for p in props if p.lower() == key.lower()]
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                self.error(sub, f"unknown field {key!r}{hint}")
        for key in schema.get("required") or []:
            if key not in value:
                self.error(_join(path, key), "required field is missing")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.error(path, f"more than {schema['maxProperties']} properties")
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            self.error(path, f"fewer than {schema['minProperties']} properties")

    def _array(self, value: list, schema: dict, path: str) -> None:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.error(path, f"more than {schema['maxItems']} items ({len(value)})")
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.error(path, f"fewer than {schema['minItems']} items")
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                self.validate(item, items, f"{path}[{i}]")
        list_type = schema.get("x-kubernetes-list-type")
        seen: set = set()
        for i, item in enumerate(value):
            if list_type == "map" and isinstance(item, dict):
                key = tuple(repr(item.get(k)) for k in schema.get("x-kubernetes-list-map-keys") or [])
            elif list_type == "set" or schema.get("uniqueItems"):
                key = repr(item)
            else:
                continue
            if key in seen:
                self.error(f"{path}[{i}]", f"duplicate entry {key if isinstance(key, str) else ', '.join(key)}")
            seen.add(key)

    def _cel(self, value: Any, rule: dict, path: str) -> None:
        check = compile_cel_rule(rule["rule"])
        if check is None:  # a transition rule (compares with oldSelf): not on create
            return
        try:
            ok = check(value)
        except (KeyError, TypeError):
            ok = False
        if not ok:
            message = rule.get("message") or f"failed rule {rule['rule']}"
            m = re.search(r"\bself((?:\.[A-Za-z_]\w*)+)", rule["rule"])
            field = m.group(1)[1:] if m else ""
            if m and rule["rule"][m.end():].startswith("("):  # a method call, not a field
                field = field.rpartition(".")[0]
            if field:  # name the field the rule is about
                try:
                    message += f" (got {_cel_get(value, 'self.' + field)!r:.80})"
                except (KeyError, TypeError):
                    pass
                path = _join(path, field)
            self.error(path, message)


def _typename(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- CEL subset
#
# The CRD's ``x-kubernetes-validations`` are CEL expressions. The handful of forms that
# the Trainer CRDs use are translated here; `unsupported_cel_rules` lists any other, and a
# test keeps that list empty, so a CRD upgrade cannot silently weaken validation.

_CEL_PATH = r"self(?:\.[A-Za-z_]\w*)*"
_CEL_STRING = r"'((?:[^'\\]|\\.)*)'"


class UnsupportedRule(ValueError):
    pass


def _cel_get(obj: Any, expr: str) -> Any:
    for part in expr.split(".")[1:]:
        obj = obj[part]
    return obj


def _cel_unquote(text: str) -> str:
    return text.encode().decode("unicode_escape")


def _cel_atom(expr: str) -> Callable[[Any], bool] | None:
    expr = expr.strip()
    if expr in ("self == oldSelf", "oldSelf == self"):
        return None
    if m := re.fullmatch(rf"({_CEL_PATH})\.matches\({_CEL_STRING}\)", expr):
        target, regex = m.group(1), _cel_unquote(m.group(2))
        return lambda v: re.search(regex, _cel_get(v, target)) is not None
    if m := re.fullmatch(rf"size\(({_CEL_PATH})\)\s*(<=|<|>=|>|==|!=)\s*(\d+)", expr):
        target, op, n = m.group(1), m.group(2), int(m.group(3))
        compare = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
                   "==": operator.eq, "!=": operator.ne}[op]  # fmt: skip
        return lambda v: compare(len(_cel_get(v, target)), n)
    if m := re.fullmatch(rf"({_CEL_PATH})\s+in\s+\[(.*)\]", expr):
        target = m.group(1)
        allowed = [_cel_unquote(s) for s in re.findall(_CEL_STRING, m.group(2))]
        return lambda v: _cel_get(v, target) in allowed
    if m := re.fullmatch(rf"({_CEL_PATH})\s*(==|!=)\s*{_CEL_STRING}", expr):
        target, op, text = m.group(1), m.group(2), _cel_unquote(m.group(3))
        return lambda v: (_cel_get(v, target) == text) == (op == "==")
    if m := re.fullmatch(rf"has\(({_CEL_PATH})\.([A-Za-z_]\w*)\)", expr):
        target, field = m.group(1), m.group(2)
        return lambda v: field in _cel_get(v, target)
    raise UnsupportedRule(expr)


@functools.lru_cache(maxsize=None)
def compile_cel_rule(rule: str) -> Callable[[Any], bool] | None:
    """A Python predicate for a CEL rule; None for transition rules; raises if unknown."""
    alternatives = [part for part in re.split(r"\s*\|\|\s*", rule.strip())]
    checks = [_cel_atom(part) for part in alternatives]
    if any(c is None for c in checks):
        if len(checks) > 1:
            raise UnsupportedRule(rule)
        return None
    return lambda v: any(c(v) for c in checks)


def unsupported_cel_rules(schema: dict) -> list[str]:
    """CEL rules of ``schema`` that :func:`compile_cel_rule` cannot translate."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or []:
                try:
                    compile_cel_rule(rule["rule"])
                except UnsupportedRule:
                    found.append(rule["rule"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


# --------------------------------------------------------------------------- objects


def check_metadata(meta: Any, v: Validator, name_rule: str) -> None:
    if not isinstance(meta, dict):
        v.error("metadata", "required object is missing")
        return
    for key in meta:
        if key not in _OBJECT_META_FIELDS:
            v.error(_join("metadata", key), f"unknown field {key!r}")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        v.error("metadata.name", "required field is missing")
    elif name_rule == "label" and (len(name) > 63 or not _DNS1123_LABEL.match(name)):
        v.error("metadata.name", f"{name!r} is not a DNS-1123 label (lower-case letters, digits, '-'; at most 63)")
    elif name_rule == "subdomain" and (len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name)):
        v.error("metadata.name", f"{name!r} is not a DNS-1123 subdomain (lower-case letters, digits, '-', '.')")
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS1123_LABEL.match(namespace)):
        v.error("metadata.namespace", f"{namespace!r} is not a DNS-1123 label")
    for field in ("labels", "annotations"):
        entries = meta.get(field)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            v.error(_join("metadata", field), "expected an object of strings")
            continue
        for key, value in entries.items():
            path = f"metadata.{field}[{key!r}]"
            if not _qualified_name_ok(key):
                v.error(path, f"invalid key {key!r}: a DNS prefix, '/', and a name of at most 63 characters")
            if not isinstance(value, str):
                v.error(path, f"value must be a string, got {_typename(value)}")
            elif field == "labels" and value and (len(value) > 63 or not _QUALIFIED_NAME.match(value)):
                v.error(path, f"invalid label value {value!r}")
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(key):
                v.error(f"metadata.ownerReferences[{i}].{key}", "required field is missing")


def _qualified_name_ok(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def validate_trainjob(manifest: dict) -> dict:
    """Return ``manifest`` if the API server would accept it; raise :class:`ManifestError`."""
    v = Validator()
    name = (manifest.get("metadata") or {}).get("name") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict):
        raise ManifestError("TrainJob", name, [("", "a TrainJob must be an object")])
    if manifest.get("apiVersion") != f"{TRAINER_GROUP}/{TRAINER_VERSION}":
        v.error("apiVersion", f"expected {TRAINER_GROUP}/{TRAINER_VERSION}, got {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != "TrainJob":
        v.error("kind", f"expected TrainJob, got {manifest.get('kind')!r}")
    check_metadata(manifest.get("metadata"), v, "label")
    if v.problems:  # the CEL rules on the root read metadata.name: stop here
        raise ManifestError("TrainJob", name, v.problems)
    v.validate(manifest, load_crd_schema(), "")
    # Admission-webhook rules (schemas/README.md).
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    trainer = spec.get("trainer") if isinstance(spec.get("trainer"), dict) else {}
    for i, env in enumerate(trainer.get("env") or []):
        if isinstance(env, dict) and env.get("name") in TORCH_RESERVED_ENV:
            v.error(f"spec.trainer.env[{i}].name", f"{env['name']!r} is reserved by the torch runtime (it sets it)")
    for p, patch in enumerate(spec.get("runtimePatches") or []):
        for path, env in _patched_envs(patch, f"spec.runtimePatches[{p}]"):
            if isinstance(env, dict) and env.get("name") in TORCH_RESERVED_ENV:
                v.error(path, f"{env['name']!r} is reserved by the torch runtime (it sets it)")
    if v.problems:
        raise ManifestError("TrainJob", name, v.problems)
    return manifest


def _patched_envs(patch: Any, path: str):
    """(path, env entry) of every container env in a runtime patch."""
    try:
        jobs = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    except (KeyError, TypeError):
        return
    for j, job in enumerate(jobs or []):
        try:
            pod = job["template"]["spec"]["template"]["spec"]
        except (KeyError, TypeError):
            continue
        base = f"{path}.trainingRuntimeSpec.template.spec.replicatedJobs[{j}].template.spec.template.spec"
        for field in ("containers", "initContainers"):
            for c, container in enumerate(pod.get(field) or []):
                for e, env in enumerate((container or {}).get("env") or []):
                    yield f"{base}.{field}[{c}].env[{e}].name", env


def validate_configmap(manifest: dict) -> dict:
    """Return ``manifest`` if the API server would accept this ConfigMap.

    Raises :class:`ConfigMapTooLargeError` (a :class:`~kfjupyter.errors.PreflightError`)
    when its data exceeds 1 MiB, :class:`ManifestError` for any other problem.
    """
    v = Validator()
    meta = manifest.get("metadata") if isinstance(manifest, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if manifest.get("apiVersion") != "v1" or manifest.get("kind") != "ConfigMap":
        v.error("kind", "expected apiVersion v1, kind ConfigMap")
    check_metadata(meta, v, "subdomain")
    for key in manifest:
        if key not in ("apiVersion", "kind", "metadata", "data", "binaryData", "immutable"):
            v.error(key, f"unknown field {key!r}")
    sizes: dict[str, int] = {}
    data = manifest.get("data") or {}
    binary = manifest.get("binaryData") or {}
    for field, entries in (("data", data), ("binaryData", binary)):
        if not isinstance(entries, dict):
            v.error(field, "expected an object")
            continue
        for key, value in entries.items():
            path = f"{field}[{key!r}]"
            if not isinstance(key, str) or len(key) > 253 or not _CONFIGMAP_KEY.match(key) or key in (".", ".."):
                v.error(path, "invalid key: use letters, digits, '-', '_' and '.' (at most 253 characters)")
            if field == "data":
                if not isinstance(value, str):
                    v.error(path, f"expected a string, got {_typename(value)}")
                    continue
                sizes[key] = len(value.encode("utf-8"))
            else:
                try:
                    sizes[key] = len(base64.b64decode(value, validate=True))
                except (binascii.Error, TypeError, ValueError):
                    v.error(path, "binaryData values must be base64")
            if field == "binaryData" and key in data:
                v.error(path, "the key is also in data")
    if v.problems:
        raise ManifestError("ConfigMap", name, v.problems)
    total = sum(sizes.values())
    if total > MAX_CONFIGMAP_BYTES:
        largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        raise ConfigMapTooLargeError(str(name), total, largest)
    return manifest


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed), as Kubernetes writes them."""
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$", text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    fraction = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{fraction}{zone}").timestamp()


# --------------------------------------------------------------------------- built-in kinds
#
# The Kubernetes API's own kinds are checked against the JSON Schema of their OpenAPI
# definitions (``schemas/kubernetes-vX.Y.Z/``, strict: an undeclared field is an error),
# turned into the structural form the :class:`Validator` walks, plus the rules of the API
# server's validation code that the definitions do not carry (see ``schemas/README.md``).

KUBERNETES_VERSION = "v1.33.0"
JOB_SCHEMA = SCHEMAS_DIR / f"kubernetes-{KUBERNETES_VERSION}" / "batch.v1.Job.json"
JOB_DEFINITION = "io.k8s.api.batch.v1.Job"
#: the API server's limits on an Indexed Job (``completions``, ``parallelism``, ``maxFailedIndexes``)
MAX_INDEXED_COMPLETIONS = 100_000
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
#: what the structural form leaves out of a definition
_SKIP_KEYS = ("description", "x-kubernetes-v2-schema", "$comment")


@functools.lru_cache(maxsize=None)
def load_json_schema(path: Path) -> dict:
    """The definitions of a vendored JSON Schema / OpenAPI document (``$defs``,
    ``definitions`` or ``components.schemas``), parsed once."""
    import json

    with open(path, "rb") as fh:
        doc = json.load(fh)
    return doc.get("$defs") or doc.get("definitions") or doc["components"]["schemas"]


def structural_schema(definitions: dict, name: str) -> dict:
    """Definition ``name`` with every ``$ref`` inlined, in the structural form the
    :class:`Validator` reads: ``allOf: [$ref]`` merged, ``type: [T, "null"]`` (JSON Schema's
    optional fields, which the API server reads as absent) as ``type: T`` + ``nullable``,
    int-or-string (``format``, or ``oneOf`` an integer and a string) as Kubernetes' marker,
    descriptions dropped. A recursive type accepts anything below its second appearance."""
    cache: dict[str, dict] = {}

    def resolve(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(n, stack) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"].rsplit("/", 1)[-1]
            if ref in stack:
                return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            if ref not in cache:
                cache[ref] = resolve(definitions[ref], stack + (ref,))
            return {**cache[ref], **{k: v for k, v in node.items() if k not in ("$ref", *_SKIP_KEYS)}}
        out: dict = {}
        for key, value in node.items():
            if key == "properties":  # a map of field names: "description" may be one of them
                out[key] = {field: resolve(sub, stack) for field, sub in value.items()}
            elif key not in _SKIP_KEYS:
                out[key] = resolve(value, stack)
        all_of = out.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and "properties" not in out and "type" not in out:
            merged = dict(all_of[0])
            merged.update({k: v for k, v in out.items() if k not in ("allOf", "default")})
            out = merged
        if isinstance(out.get("type"), list):
            types = [t for t in out["type"] if t != "null"]
            out["type"] = types[0] if len(types) == 1 else None
            if out["type"] is None:
                del out["type"]
            if "null" in node["type"]:
                out["nullable"] = True
        alternatives = out.get("oneOf") or out.get("anyOf")
        if alternatives and all(set(a) <= {"type", "nullable"} for a in alternatives):
            if {a.get("type") for a in alternatives} == {"integer", "string"}:
                out = {"x-kubernetes-int-or-string": True, **({"nullable": True} if all(a.get("nullable") for a in alternatives) else {})}
            elif all(a.get("nullable") for a in alternatives):
                out["nullable"] = True
        if out.get("format") == "int-or-string":
            out = {"x-kubernetes-int-or-string": True}
        return out

    return resolve(definitions[name], (name,))


@functools.lru_cache(maxsize=None)
def job_schema() -> dict:
    return structural_schema(load_json_schema(JOB_SCHEMA), JOB_DEFINITION)


def validate_job(manifest: dict) -> dict:
    """Return ``manifest`` (a ``batch/v1`` Job) if the API server would accept it; raise
    :class:`ManifestError` naming every problem."""
    v = Validator()
    meta = manifest.get("metadata") if isinstance(manifest, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(manifest, dict):
        raise ManifestError("Job", name, [("", "a Job must be an object")])
    if manifest.get("apiVersion") != "batch/v1":
        v.error("apiVersion", f"expected batch/v1, got {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != "Job":
        v.error("kind", f"expected Job, got {manifest.get('kind')!r}")
    check_metadata(meta, v, "subdomain")
    if isinstance(name, str) and len(name) > 63:  # its pods carry it as the value of a label
        v.error("metadata.name", f"{name!r} is longer than 63 characters: a Job's pods are labelled with its name")
    v.validate(manifest, job_schema(), "")
    if not v.problems:
        job_rules(manifest, "", v)
    if v.problems:
        raise ManifestError("Job", name, v.problems)
    return manifest


def job_rules(job: dict, path: str, v: Validator) -> None:
    """What the API server's validation of a Job (``pkg/apis/batch/validation``, and the
    core validation of its pod template) adds to the OpenAPI definitions."""
    spec = job.get("spec") or {}
    at = _join(path, "spec")
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished", "backoffLimitPerIndex"):
        if isinstance(spec.get(key), int) and spec[key] < 0:
            v.error(f"{at}.{key}", f"must be greater than or equal to 0, got {spec[key]}")
    if isinstance(spec.get("activeDeadlineSeconds"), int) and spec["activeDeadlineSeconds"] <= 0:
        v.error(f"{at}.activeDeadlineSeconds", "must be greater than 0")
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        v.error(f"{at}.completionMode", f"Unsupported value {mode!r}: 'NonIndexed' or 'Indexed'")
    if mode == "Indexed":
        if spec.get("completions") is None:
            v.error(f"{at}.completions", "required when completionMode is Indexed")
        for key in ("completions", "parallelism"):
            if isinstance(spec.get(key), int) and spec[key] > MAX_INDEXED_COMPLETIONS:
                v.error(f"{at}.{key}", f"must be less than or equal to {MAX_INDEXED_COMPLETIONS} for an Indexed Job")
    elif spec.get("backoffLimitPerIndex") is not None:
        v.error(f"{at}.backoffLimitPerIndex", "requires completionMode Indexed")
    if spec.get("maxFailedIndexes") is not None:
        if spec.get("backoffLimitPerIndex") is None:
            v.error(f"{at}.maxFailedIndexes", "requires backoffLimitPerIndex")
        elif isinstance(spec.get("completions"), int) and spec["maxFailedIndexes"] > spec["completions"]:
            v.error(f"{at}.maxFailedIndexes", "must be less than or equal to completions")
    if spec.get("podReplacementPolicy") not in (None, "TerminatingOrFailed", "Failed"):
        v.error(f"{at}.podReplacementPolicy", f"Unsupported value {spec['podReplacementPolicy']!r}")
    elif spec.get("podFailurePolicy") is not None and spec.get("podReplacementPolicy") not in (None, "Failed"):
        v.error(f"{at}.podReplacementPolicy", "only 'Failed' is supported with a podFailurePolicy")
    if spec.get("selector") is not None and not spec.get("manualSelector"):
        v.error(f"{at}.selector", "`selector` not auto-generated: the API server makes it unless manualSelector is true")
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    restart = pod.get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        v.error(f"{at}.template.spec.restartPolicy", f"Unsupported value {restart!r}: a Job's pods restart 'Never' or 'OnFailure'")
    if (spec.get("backoffLimitPerIndex") is not None or spec.get("podFailurePolicy") is not None) and restart != "Never":
        v.error(f"{at}.template.spec.restartPolicy", "must be Never with backoffLimitPerIndex or podFailurePolicy")
    tmeta = template.get("metadata") or {}
    for field in ("labels", "annotations"):
        for key, value in (tmeta.get(field) or {}).items():
            if not _qualified_name_ok(key):
                v.error(f"{at}.template.metadata.{field}[{key!r}]", f"invalid key {key!r}")
            elif field == "labels" and value and (len(value) > 63 or not _QUALIFIED_NAME.match(value)):
                v.error(f"{at}.template.metadata.labels[{key!r}]", f"invalid label value {value!r}")
    pod_spec_rules(pod, f"{at}.template.spec", v)


def pod_spec_rules(pod: dict, at: str, v: Validator) -> None:
    """The core validation of a pod's spec that its OpenAPI definition does not show:
    names, references between volumes and mounts, images, quantities."""
    from ..validation import QUANTITY

    volumes: dict[str, dict] = {}
    for i, vol in enumerate(pod.get("volumes") or []):
        where = f"{at}.volumes[{i}]"
        vname = vol.get("name")
        if not isinstance(vname, str) or not _DNS1123_LABEL.match(vname) or len(vname) > 63:
            v.error(f"{where}.name", f"{vname!r} is not a DNS-1123 label")
        elif vname in volumes:
            v.error(f"{where}.name", f"Duplicate value: {vname!r}")
        volumes[vname] = vol
        sources = [k for k in vol if k != "name"]
        if len(sources) != 1:
            v.error(where, f"must specify exactly 1 volume type, got {sources or 'none'}")
        if "configMap" in vol:
            cm = vol["configMap"] or {}
            if not cm.get("name"):
                v.error(f"{where}.configMap.name", "Required value")
            for j, item in enumerate(cm.get("items") or []):
                key, ipath = item.get("key"), item.get("path")
                if not isinstance(key, str) or not _CONFIGMAP_KEY.match(key) or len(key) > 253:
                    v.error(f"{where}.configMap.items[{j}].key", f"{key!r} is not a valid config key")
                if not ipath or ipath.startswith("/") or ".." in ipath.split("/"):
                    v.error(f"{where}.configMap.items[{j}].path", f"{ipath!r} must be a relative path without '..'")
        if "persistentVolumeClaim" in vol and not (vol["persistentVolumeClaim"] or {}).get("claimName"):
            v.error(f"{where}.persistentVolumeClaim.claimName", "Required value")
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, c in enumerate(pod.get(field) or []):
            where = f"{at}.{field}[{i}]"
            cname = c.get("name")
            if not isinstance(cname, str) or not _DNS1123_LABEL.match(cname) or len(cname) > 63:
                v.error(f"{where}.name", f"{cname!r} is not a DNS-1123 label")
            elif cname in names:
                v.error(f"{where}.name", f"Duplicate value: {cname!r}")
            names.add(cname)
            image = c.get("image")
            if not image or image != image.strip():
                v.error(f"{where}.image", "Required value" if not image else "must not have leading or trailing whitespace")
            for j, env in enumerate(c.get("env") or []):
                if not isinstance(env.get("name"), str) or not _ENV_NAME.match(env["name"]):
                    v.error(f"{where}.env[{j}].name", f"{env.get('name')!r} is not a valid environment variable name")
            paths: set[str] = set()
            for j, mount in enumerate(c.get("volumeMounts") or []):
                if mount.get("name") not in volumes:
                    v.error(f"{where}.volumeMounts[{j}].name", f"Not found: {mount.get('name')!r} (no volume of that name)")
                mpath = mount.get("mountPath")
                if not mpath:
                    v.error(f"{where}.volumeMounts[{j}].mountPath", "Required value")
                elif mpath in paths:
                    v.error(f"{where}.volumeMounts[{j}].mountPath", f"must be unique: {mpath!r}")
                paths.add(mpath)
            for j, port in enumerate(c.get("ports") or []):
                if isinstance(port.get("containerPort"), int) and not 0 < port["containerPort"] < 65536:
                    v.error(f"{where}.ports[{j}].containerPort", "must be between 1 and 65535")
            resources = c.get("resources") or {}
            amounts: dict[str, dict[str, float]] = {}
            for kind in ("requests", "limits"):
                for res, value in (resources.get(kind) or {}).items():
                    if not QUANTITY.match(str(value).strip()):
                        v.error(f"{where}.resources.{kind}[{res!r}]", f"{value!r} is not a quantity ('500m', '2', '4Gi')")
                    else:
                        amounts.setdefault(kind, {})[res] = _quantity(str(value))
            for res, asked in (amounts.get("requests") or {}).items():
                limit = (amounts.get("limits") or {}).get(res)
                if limit is not None and asked > limit:
                    v.error(f"{where}.resources.requests[{res!r}]", f"must be less than or equal to the {res} limit")


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": 1e-9, "u": 1e-6,
             "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}  # fmt: skip


def _quantity(text: str) -> float:
    """The value of a Kubernetes quantity (already checked) as a number, to compare two."""
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)", text.strip())
    if not m or m.group(2) not in _SUFFIXES:
        return float("nan")
    return float(m.group(1)) * _SUFFIXES[m.group(2)]
