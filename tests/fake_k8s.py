"""A small, honest fake of a Kubernetes cluster with Kubeflow Trainer v2, for tests.

`FakeKubernetes` serves real Kubernetes REST paths on 127.0.0.1 (threaded HTTP/1.1),
so the official ``kubernetes`` client works against it unchanged, through a kubeconfig
file it writes. It keeps its own copy of nothing the product computes: TrainJobs are
validated here with ``jsonschema`` on the project's copied CRD (independently of
``kfjupyter/k8s/schema.py``), plus the server-side rules of
``../shared/kubeflow-schemas/README.md``.

API server: create/get/list/watch/patch/delete of ``configmaps``, ``pods`` (read-only),
``inferenceservices`` (KServe's controller, without a model server: Ready revisions, the
traffic split, and a predictor pod per revision whose log a test writes),
``trainjobs`` (and read-only ``jobsets``), ``jobs`` (``batch/v1``: validated with
``jsonschema`` on the project's copy of the Kubernetes OpenAPI definitions of a Job, strict,
plus the API server's own Job and pod-template rules, written out here independently of
``kfjupyter/k8s/schema.py``; defaulted as the API server defaults them), read-only
``persistentvolumeclaims`` (a test adds them with :meth:`add_pvc`: a claim is a folder of
this machine); ``pods/{name}/log`` with
``follow``, ``tailLines``, ``timestamps``; ``Status`` error bodies (400, 401, 404, 405,
409, 410, 422, 504); resourceVersion, uid, creationTimestamp, defaults from the schema,
``fieldValidation=Strict`` (400 on unknown fields; otherwise they are pruned with a
``Warning`` header). As kube-apiserver and its garbage collector behave:

* DELETE with ``propagationPolicy`` (query or DeleteOptions body): ``Background`` removes
  an object without finalizers at once (the answer is a ``Status``); ``Foreground`` and
  ``Orphan`` (and any object with finalizers) leave it with ``metadata.deletionTimestamp``
  and the ``foregroundDeletion`` / ``orphan`` finalizer (the answer is the object) until
  the garbage collector is done: it runs by itself, a pass at a time (:meth:`gc_tick`),
  and a test holds it with :meth:`gc_paused` to see every step. Other finalizers stay
  until a client removes them (PATCH, or PUT with the current ``resourceVersion``);
  none can be added to an object being deleted;
* WATCH with ``resourceVersion`` (410 Gone as an ERROR event for one older than the kept
  events, see :meth:`compact`), ``allowWatchBookmarks`` (BOOKMARK events) and
  ``timeoutSeconds``; DELETED events carry the deletion's resourceVersion;
* every request is counted by verb (get, list, watch, create, update, patch, delete) and
  object path (:meth:`count`, :attr:`counts`), so a test can hold a client's request rate.

Controllers (Trainer + JobSet + Job + kubelet): a created TrainJob becomes a JobSet, an
indexed Job ``<name>-node-0`` and ``numNodes`` pods labelled as Trainer/JobSet label
them. Each pod really runs: its ConfigMap/emptyDir volumes are materialised in a temp
dir (honouring ``items``), mount paths in command/args/env are rewritten to it, and the
container command runs as a local process with the env the torch runtime gives
(``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``,
``PET_MASTER_PORT``). Its stdout+stderr is the pod log. When a pod fails, the Job fails
(backoffLimit 0: the fake does not retry), its other pods are deleted, and the TrainJob
gets ``Failed``; when all succeed, ``Complete``. Pods asking for GPUs stay Pending
(Unschedulable: the fake node has none). The "image" is this venv's Python without the
kfjupyter package (as in ``pytorch/pytorch``), unless ``image_has_kfjupyter``.

The Job controller: a created Job gets pods as Kubernetes' Job controller makes them
(``parallelism`` at a time until ``completions`` succeeded; an Indexed Job's pods carry the
``batch.kubernetes.io/job-completion-index`` label and annotation and the
``JOB_COMPLETION_INDEX`` variable; a failed pod is replaced until ``backoffLimit`` failures,
then the Job fails with ``BackoffLimitExceeded`` and its other pods are deleted), and its
status (``active``, ``ready``, ``succeeded``, ``failed``, ``completedIndexes``, the
``SuccessCriteriaMet``/``Complete`` or ``FailureTarget``/``Failed`` conditions). A pod's
``persistentVolumeClaim`` volume is the claim's folder, shared by every pod mounting it.

With ``run_pods=False`` nothing runs; tests drive state with :meth:`add_pod` and
:meth:`set_condition` (TrainJobs), :meth:`add_job_pod`, :meth:`set_job_status` and
:meth:`set_job_condition` (Jobs).

Katib (kubeflow.org/v1beta1): ``experiments`` are created by clients and validated with
``jsonschema`` against ``#/components/schemas/v1beta1.Experiment`` of the project's copy
of ``katib-swagger.json`` (``$ref`` resolved by jsonschema itself, independently of
``kfjupyter/tuning/katib.py``), plus the README's rules and those of Katib's validating
webhook (trial template placeholders, batch Job templates that survive conversion to the
Go type, TrainJob templates admitted as TrainJobs). ``trials`` are read-only to clients.
No Katib controller runs: a test plays it — it picks the assignments (the suggestion
service) with :meth:`run_trial`, which renders the trial template, runs the Job (or
TrainJob) through the fake kubelet, reads the primary container's log with Katib's StdOut
collector regex and sets the Trial's observation and condition; or it sets trials by hand
with :meth:`add_trial`. :meth:`update_experiment` then computes the Experiment's status
as Katib's experiment controller does (counts, ``currentOptimalTrial``, Succeeded/Failed).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

CRD_FILE = Path(__file__).resolve().parents[1] / "kfjupyter/k8s/schemas/trainer-v2.3.0/trainer.kubeflow.org_trainjobs.yaml"
KATIB_SWAGGER = Path(__file__).resolve().parents[1] / "kfjupyter/k8s/schemas/katib-v0.19.0/katib-swagger.json"
JOB_SCHEMA = Path(__file__).resolve().parents[1] / "kfjupyter/k8s/schemas/kubernetes-v1.33.0/batch.v1.Job.json"
# plural -> (group, version, kind, clients may create it)
RESOURCES = {
    "configmaps": ("", "v1", "ConfigMap", True),
    "pods": ("", "v1", "Pod", False),
    "trainjobs": ("trainer.kubeflow.org", "v1alpha1", "TrainJob", True),
    "jobsets": ("jobset.x-k8s.io", "v1alpha2", "JobSet", False),
    "jobs": ("batch", "v1", "Job", True),
    "persistentvolumeclaims": ("", "v1", "PersistentVolumeClaim", False),
    "experiments": ("kubeflow.org", "v1beta1", "Experiment", True),
    "trials": ("kubeflow.org", "v1beta1", "Trial", False),
    "inferenceservices": ("serving.kserve.io", "v1beta1", "InferenceService", True),
}
ISVC_CRD = Path(__file__).resolve().parents[1] / "kfjupyter/k8s/schemas/kserve-v0.20.0/serving.kserve.io_inferenceservices.yaml"
# KServe's validating webhook (pkg/apis/serving/v1beta1/inference_service_validation.go), by hand
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ISVC_MODES = ("Serverless", "RawDeployment", "ModelMesh")
ISVC_IMPLEMENTATIONS = ("model", "sklearn", "xgboost", "pytorch", "onnx", "tensorflow", "triton", "lightgbm",
                        "paddle", "pmml", "huggingface")  # fmt: skip
# The default ClusterTrainingRuntime of Trainer v2.3.0 (shared/kubeflow-schemas/trainer-v2.3.0).
RUNTIMES = {"torch-distributed": {"numNodes": 1, "job": "node", "container": "node",
                                  "image": "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime"}}  # fmt: skip
PET_VARS = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
# The CEL rules of the CRD, written out by hand; an unknown rule stops the fake.
CEL = {
    "self == oldSelf": None,  # transition rule: not checked on create
    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')":
        lambda s: re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", s["metadata"]["name"]) is not None,
    "size(self.metadata.name) <= 63": lambda s: len(s["metadata"]["name"]) <= 63,
    "self == '' || self.matches('^[A-Za-z][A-Za-z0-9+.-]*://.+$')":
        lambda s: s == "" or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://.+$", s) is not None,
    "self in ['trainer.kubeflow.org/trainjob-controller', 'kueue.x-k8s.io/multikueue']":
        lambda s: s in ("trainer.kubeflow.org/trainjob-controller", "kueue.x-k8s.io/multikueue"),
    "has(self.lastUpdatedTime)": lambda s: "lastUpdatedTime" in s,
}  # fmt: skip
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def now(nano: bool = False) -> str:
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}000Z" if nano else "Z")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list | None = None):
        super().__init__(message)
        self.code, self.reason, self.causes = code, reason, causes or []


def _to_json_schema(s: dict) -> dict:
    """Kubernetes structural schema → JSON Schema (draft 4, as OpenAPI v3.0 is)."""
    out: dict = {}
    for key, value in s.items():
        if key == "properties":
            out[key] = {k: _to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "not"):
            out[key] = _to_json_schema(value)
        elif key == "additionalProperties":
            out[key] = _to_json_schema(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_json_schema(v) for v in value]
        elif not key.startswith("x-kubernetes-") and key not in ("nullable", "description", "default"):
            out[key] = value
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    elif s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _prune_and_default(obj, schema: dict, path: str, unknown: list, problems: list, rules: list) -> None:
    """What the API server does before validation: prune unknown fields (noting them),
    apply defaults; also collect duplicate list-map keys and the CEL rules to check."""
    for rule in schema.get("x-kubernetes-validations") or []:
        rules.append((path, obj, rule))
    if isinstance(obj, dict) and schema.get("type") == "object":
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        keep = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
        for key in list(obj):
            if not path and key == "metadata":
                continue
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                _prune_and_default(obj[key], sub, f"{path}.{key}" if path else key, unknown, problems, rules)
            elif not keep:
                unknown.append(f"{path}.{key}" if path else key)
                del obj[key]
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        keys, seen = schema.get("x-kubernetes-list-map-keys"), set()
        for i, item in enumerate(obj):
            _prune_and_default(item, schema["items"], f"{path}[{i}]", unknown, problems, rules)
            if schema.get("x-kubernetes-list-type") == "map" and isinstance(item, dict):
                k = tuple(json.dumps(item.get(n)) for n in keys)
                if k in seen:
                    problems.append((f"{path}[{i}]", f"Duplicate value: {', '.join(k)}"))
                seen.add(k)


class TrainJobValidator:
    """The API server's view of a TrainJob: CRD schema (jsonschema) + webhook rules."""

    def __init__(self, crd_file: Path = CRD_FILE):
        with open(crd_file, "rb") as fh:
            crd = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self.schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")["schema"]["openAPIV3Schema"]
        formats = jsonschema.FormatChecker(formats=())
        formats.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
        formats.checks("int64")(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63)
        self.validator = jsonschema.Draft4Validator(_to_json_schema(self.schema), format_checker=formats)
        self._check_rules_known(self.schema)

    def _check_rules_known(self, node) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or []:
                if rule["rule"] not in CEL:
                    raise RuntimeError(f"fake_k8s: unknown CEL rule in the CRD, teach it: {rule['rule']}")
            for v in node.values():
                self._check_rules_known(v)
        elif isinstance(node, list):
            for v in node:
                self._check_rules_known(v)

    def admit(self, obj: dict, strict: bool) -> tuple[dict, list[str]]:
        """The object as stored (pruned, defaulted) and warnings; raises ApiError."""
        obj, unknown, problems, rules = copy.deepcopy(obj), [], [], []
        _prune_and_default(obj, self.schema, "", unknown, problems, rules)
        if unknown and strict:
            raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
        for error in self.validator.iter_errors(obj):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
            problems.append((where, error.message))
        for path, value, rule in rules:
            check = CEL[rule["rule"]]
            if check is not None and value is not None and not check(value):
                problems.append((path or "<root>", rule.get("message", rule["rule"])))
        spec = obj.get("spec") or {}
        for i, env in enumerate((spec.get("trainer") or {}).get("env") or []):
            if env.get("name") in PET_VARS:
                problems.append((f"spec.trainer.env[{i}].name", f"{env['name']} is reserved by the torch runtime"))
        ref = spec.get("runtimeRef") or {}
        if ref.get("name") not in RUNTIMES or ref.get("kind", "ClusterTrainingRuntime") != "ClusterTrainingRuntime":
            problems.append(("spec.runtimeRef", f"Not found: ClusterTrainingRuntime {ref.get('name')!r}"))
        if problems:
            name = (obj.get("metadata") or {}).get("name")
            raise ApiError(422, "Invalid", f'TrainJob.trainer.kubeflow.org "{name}" is invalid: '
                           + "; ".join(f"{p}: {m}" for p, m in problems),
                           [{"reason": "FieldValueInvalid", "field": p, "message": m} for p, m in problems])  # fmt: skip
        return obj, [f'unknown field "{u}"' for u in unknown]


class InferenceServiceValidator:
    """The API server's view of an InferenceService: the KServe v0.20.0 CRD schema
    (jsonschema, loaded on first use: the file is 2 MB) + KServe's webhook rules."""

    def __init__(self, crd_file: Path = ISVC_CRD):
        self.crd_file = crd_file
        self.schema = None

    _loaded: dict = {}  # parsed once per test session: the file is 2 MB

    def _load(self) -> None:
        if self.crd_file not in self._loaded:
            with open(self.crd_file, "rb") as fh:
                crd = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")["schema"]["openAPIV3Schema"]
            formats = jsonschema.FormatChecker(formats=())
            formats.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
            formats.checks("int64")(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63)
            self._loaded[self.crd_file] = (schema, jsonschema.Draft4Validator(_to_json_schema(schema), format_checker=formats))
        self.schema, self.validator = self._loaded[self.crd_file]

    def admit(self, obj: dict, strict: bool) -> tuple[dict, list[str]]:
        if self.schema is None:
            self._load()
        obj, unknown, problems, rules = copy.deepcopy(obj), [], [], []
        _prune_and_default(obj, self.schema, "", unknown, problems, rules)
        if rules:
            raise RuntimeError("fake_k8s: the InferenceService CRD gained CEL rules, teach them")
        if unknown and strict:
            raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
        for error in self.validator.iter_errors(obj):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
            problems.append((where, error.message))
        name = obj["metadata"].get("name") or ""
        if not ISVC_NAME.match(name):
            problems.append(("metadata.name", f"The InferenceService \"{name}\" is invalid: a DNS-1035 label must start with a letter"))
        predictor = (obj.get("spec") or {}).get("predictor")
        if not isinstance(predictor, dict):
            problems.append(("spec.predictor", "Required value"))
            predictor = {}
        count = sum(1 for k in ISVC_IMPLEMENTATIONS if k in predictor) + (1 if predictor.get("containers") else 0)
        if count != 1:
            problems.append(("spec.predictor", "exactly one predictor implementation must be specified"))
        pct = predictor.get("canaryTrafficPercent")
        if isinstance(pct, int) and not 0 <= pct <= 100:
            problems.append(("spec.predictor.canaryTrafficPercent", "canaryTrafficPercent must be between 0 and 100"))
        lo, hi = predictor.get("minReplicas"), predictor.get("maxReplicas")
        if isinstance(lo, int) and lo < 0:
            problems.append(("spec.predictor.minReplicas", "MinReplicas cannot be less than 0"))
        if isinstance(hi, int) and hi < 0:
            problems.append(("spec.predictor.maxReplicas", "MaxReplicas cannot be less than 0"))
        if isinstance(lo, int) and isinstance(hi, int) and hi != 0 and lo > hi:
            problems.append(("spec.predictor.minReplicas", "MinReplicas cannot be greater than MaxReplicas"))
        mode = (obj["metadata"].get("annotations") or {}).get("serving.kserve.io/deploymentMode")
        if mode is not None and mode not in ISVC_MODES:
            problems.append(("metadata.annotations", f"the deployment mode {mode!r} is not supported"))
        model = predictor.get("model") or {}
        if "model" in predictor and not (model.get("storageUri") or model.get("storage")):
            problems.append(("spec.predictor.model", "a storageUri or storage spec is required"))
        if problems:
            raise ApiError(422, "Invalid", f'InferenceService.serving.kserve.io "{name}" is invalid: '
                           + "; ".join(f"{p}: {m}" for p, m in problems),
                           [{"reason": "FieldValueInvalid", "field": p, "message": m} for p, m in problems])  # fmt: skip
        return obj, [f'unknown field "{u}"' for u in unknown]


def validate_configmap(obj: dict, strict: bool) -> dict:
    obj = copy.deepcopy(obj)
    unknown = [k for k in obj if k not in ("apiVersion", "kind", "metadata", "data", "binaryData", "immutable")]
    if unknown and strict:
        raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
    for k in unknown:
        del obj[k]
    problems, size = [], 0
    for field in ("data", "binaryData"):
        for key, value in (obj.get(field) or {}).items():
            if not re.fullmatch(r"[-._a-zA-Z0-9]+", key) or len(key) > 253:
                problems.append((f"{field}[{key}]", "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"))
            try:
                size += len(value.encode()) if field == "data" else len(base64.b64decode(value, validate=True))
            except (ValueError, AttributeError):
                problems.append((f"{field}[{key}]", "illegal base64 data"))
    if size > 1024 * 1024:
        problems.append(("", f"Too long: may not be more than 1048576 bytes (got {size})"))
    if problems:
        name = obj["metadata"].get("name")
        raise ApiError(422, "Invalid", f'ConfigMap "{name}" is invalid: ' + "; ".join(f"{p}: {m}" for p, m in problems),
                       [{"reason": "FieldValueInvalid", "field": p, "message": m} for p, m in problems])  # fmt: skip
    return obj


KATIB_ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "cmaes", "sobol", "hyperband",
                    "bayesianoptimization", "enas", "darts", "pbt")  # the katib-config of v0.19.0
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")


def _undeclared_fields(obj, schema: dict, components: dict, path: str, out: list) -> None:
    """Fields of ``obj`` that the (swagger) schema does not declare: what conversion to the
    Go type drops, and Katib's batch Job check rejects."""
    while True:
        if "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[-1]]
        elif len(schema.get("allOf") or []) == 1 and "properties" not in schema:
            schema = schema["allOf"][0]
        else:
            break
    if isinstance(obj, dict) and "properties" in schema:
        for key, value in obj.items():
            if key in schema["properties"]:
                _undeclared_fields(value, schema["properties"][key], components, f"{path}.{key}", out)
            elif not schema.get("additionalProperties"):
                out.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            _undeclared_fields(item, schema["items"], components, f"{path}[{i}]", out)


class ExperimentValidator:
    """Katib's view of an Experiment: the swagger schema (jsonschema) + its webhook's rules."""

    def __init__(self, trainjobs: TrainJobValidator, swagger: Path = KATIB_SWAGGER):
        doc = json.loads(swagger.read_text())
        self.components = doc["components"]["schemas"]
        formats = jsonschema.FormatChecker(formats=())
        formats.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
        self.experiment = jsonschema.Draft4Validator(
            {"$ref": "#/components/schemas/v1beta1.Experiment", "components": doc["components"]}, format_checker=formats)
        self.pod_template = jsonschema.Draft4Validator(
            {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec", "components": doc["components"]})
        self.trainjobs = trainjobs

    def admit(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        problems = []
        for error in self.experiment.iter_errors(obj):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
            problems.append((where, error.message))
        name = obj["metadata"].get("name", "")
        if len(name) > 40:
            problems.append(("metadata.name", f"must be no more than 40 characters (got {len(name)})"))
        if not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?", name):
            problems.append(("metadata.name", "name must start with an alphabetic character"))
        if not problems:
            problems += self._webhook(obj.get("spec") or {})
        if problems:
            raise ApiError(422, "Invalid", f'Experiment.kubeflow.org "{name}" is invalid: '
                           + "; ".join(f"{p}: {m}" for p, m in problems),
                           [{"reason": "FieldValueInvalid", "field": p, "message": m} for p, m in problems])  # fmt: skip
        return obj

    def _webhook(self, spec: dict) -> list:
        out = []
        count, parallel, failed = spec.get("maxTrialCount"), spec.get("parallelTrialCount"), spec.get("maxFailedTrialCount")
        if count is not None and count <= 0:
            out.append(("spec.maxTrialCount", "must be greater than 0"))
        if parallel is not None and parallel <= 0:
            out.append(("spec.parallelTrialCount", "must be greater than 0"))
        if failed is not None and failed < 0:
            out.append(("spec.maxFailedTrialCount", "should not be less than 0"))
        if count is not None and parallel is not None and parallel > count:
            out.append(("spec.parallelTrialCount", "should be less than or equal to spec.maxTrialCount"))
        if count is not None and failed is not None and failed > count:
            out.append(("spec.maxFailedTrialCount", "should be less than or equal to spec.maxTrialCount"))
        objective = spec.get("objective") or {}
        if objective.get("type") not in ("minimize", "maximize"):
            out.append(("spec.objective.type", "must be minimize or maximize"))
        if not objective.get("objectiveMetricName"):
            out.append(("spec.objective.objectiveMetricName", "must be specified"))
        if (spec.get("algorithm") or {}).get("algorithmName") not in KATIB_ALGORITHMS:
            out.append(("spec.algorithm.algorithmName", "unable to get Suggestion config data"))
        if "earlyStopping" in spec and (spec["earlyStopping"] or {}).get("algorithmName") != "medianstop":
            out.append(("spec.earlyStopping.algorithmName", "unable to get EarlyStopping config data"))
        names = set()
        for i, param in enumerate(spec.get("parameters") or []):
            names.add(param.get("name"))
            kind, fs = param.get("parameterType"), param.get("feasibleSpace") or {}
            if kind not in ("int", "double", "categorical", "discrete"):
                out.append((f"spec.parameters[{i}].parameterType", f"parameterType: {kind} is not supported"))
            if kind in ("int", "double") and (fs.get("list") or not fs.get("min") or not fs.get("max")):
                out.append((f"spec.parameters[{i}].feasibleSpace", "min and max (and no list) for int and double"))
            if kind in ("categorical", "discrete") and (fs.get("min") or fs.get("max") or fs.get("step")):
                out.append((f"spec.parameters[{i}].feasibleSpace", "no min, max or step for categorical and discrete"))
        if not spec.get("parameters"):
            out.append(("spec", "spec.parameters or spec.nasConfig must be specified"))
        template = spec.get("trialTemplate") or {}
        if not template.get("primaryContainerName"):
            out.append(("spec.trialTemplate.primaryContainerName", "must be specified"))
        if not template.get("successCondition") or not template.get("failureCondition"):
            out.append(("spec.trialTemplate", "successCondition and failureCondition must be specified"))
        text = json.dumps(template.get("trialSpec") or {})
        listed = [t.get("name") for t in template.get("trialParameters") or []]
        for t in template.get("trialParameters") or []:
            ref = t.get("reference") or ""
            if ref not in names and not ref.startswith("${trialSpec."):
                out.append(("spec.trialTemplate.trialParameters", f"parameter reference {ref} does not exist in spec.parameters"))
            if "${trialParameters.%s}" % t.get("name") not in text:
                out.append(("spec.trialTemplate.trialParameters", f"parameter name: {t.get('name')} not found in spec.trialTemplate"))
        if set(PLACEHOLDER.findall(text)) - set(listed):
            out.append(("spec.trialTemplate", "parameters in spec.trialTemplate not found in spec.trialParameters"))
        run = json.loads(PLACEHOLDER.sub("test-value", text))
        if (run.get("metadata") or {}).get("name") or (run.get("metadata") or {}).get("namespace"):
            out.append(("spec.trialTemplate", "metadata.name and metadata.namespace in spec.trialTemplate must be omitted"))
        if (run.get("apiVersion"), run.get("kind")) == ("batch/v1", "Job"):
            template_spec = (run.get("spec") or {}).get("template") or {}
            for error in self.pod_template.iter_errors(template_spec):
                out.append(("spec.trialTemplate.trialSpec.spec.template", error.message))
            undeclared: list = []
            _undeclared_fields(template_spec, {"$ref": "#/io.k8s.api.core.v1.PodTemplateSpec"}, self.components, "spec.template", undeclared)
            out += [("spec.trialTemplate", f"invalid spec.trialTemplate: unable to convert: {u}") for u in undeclared]
        elif run.get("kind") == "TrainJob":
            run.setdefault("metadata", {})["name"] = "trial-test-value"
            try:
                self.trainjobs.admit(run, strict=True)
            except ApiError as exc:
                out.append(("spec.trialTemplate", str(exc)))
        return out


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class JobValidator:
    """The API server's view of a ``batch/v1`` Job: the OpenAPI definitions (``jsonschema``,
    draft 2020-12, on the vendored file as it is) and, by hand, what
    ``pkg/apis/batch/validation`` and the core pod validation add; then its defaults."""

    def __init__(self, schema_file: Path = JOB_SCHEMA):
        doc = json.loads(schema_file.read_text())
        formats = jsonschema.FormatChecker(formats=())
        formats.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
        formats.checks("int64")(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63)
        self.validator = jsonschema.Draft202012Validator(doc, format_checker=formats)

    def _errors(self, obj: dict) -> tuple[list[tuple[list, str]], list[tuple]]:
        """(unknown fields as (path, key), other problems as (path, message))."""
        unknown, problems = [], []
        for error in self.validator.iter_errors(obj):
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                declared = set((error.schema.get("properties") or {}))
                unknown += [(list(error.absolute_path), key) for key in error.instance if key not in declared]
            else:
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
                problems.append((where, error.message))
        return unknown, problems

    def admit(self, obj: dict, strict: bool) -> tuple[dict, list[str]]:
        obj = copy.deepcopy(obj)
        unknown, problems = self._errors(obj)
        names = [".".join(str(p) for p in path + [key]) for path, key in unknown]
        if unknown and strict:
            raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in names))
        for path, key in unknown:  # pruned, as decoding into the Go type drops them
            node = obj
            for part in path:
                node = node[part]
            node.pop(key, None)
        if unknown:
            _, problems = self._errors(obj)
        if not problems:
            problems = self._rules(obj)
        if problems:
            name = (obj.get("metadata") or {}).get("name")
            raise ApiError(422, "Invalid", f'Job.batch "{name}" is invalid: ' + "; ".join(f"{p}: {m}" for p, m in problems),
                           [{"reason": "FieldValueInvalid", "field": p, "message": m} for p, m in problems])  # fmt: skip
        self._default(obj)
        return obj, [f'unknown field "{u}"' for u in names]

    @staticmethod
    def _rules(job: dict) -> list:
        out = []
        name = job["metadata"].get("name") or ""
        if len(name) > 63:
            out.append(("metadata.name", "must be no more than 63 characters (it is the value of the job-name label)"))
        spec = job.get("spec") or {}
        for key in ("parallelism", "completions", "backoffLimit", "backoffLimitPerIndex", "ttlSecondsAfterFinished"):
            if spec.get(key) is not None and spec[key] < 0:
                out.append((f"spec.{key}", "must be greater than or equal to 0"))
        if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
            out.append(("spec.activeDeadlineSeconds", "must be greater than 0"))
        mode = spec.get("completionMode") or "NonIndexed"
        if mode not in ("NonIndexed", "Indexed"):
            out.append(("spec.completionMode", f'Unsupported value: "{mode}": supported values: "NonIndexed", "Indexed"'))
        if mode == "Indexed":
            if spec.get("completions") is None:
                out.append(("spec.completions", "Required value: when completion mode is Indexed"))
            for key in ("completions", "parallelism"):
                if (spec.get(key) or 0) > 100000:
                    out.append((f"spec.{key}", "must be less than or equal to 100000 when completion mode is Indexed"))
        elif spec.get("backoffLimitPerIndex") is not None:
            out.append(("spec.backoffLimitPerIndex", "requires indexed completion mode"))
        if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
            out.append(("spec.maxFailedIndexes", "requires the backoffLimitPerIndex to be set"))
        if spec.get("selector") is not None and not spec.get("manualSelector"):
            out.append(("spec.selector", "Invalid value: `selector` not auto-generated"))
        policy = spec.get("podReplacementPolicy")
        if policy is not None and policy not in ("TerminatingOrFailed", "Failed"):
            out.append(("spec.podReplacementPolicy", f'Unsupported value: "{policy}"'))
        if spec.get("podFailurePolicy") is not None and policy not in (None, "Failed"):
            out.append(("spec.podReplacementPolicy", "Not supported: must be Failed when podFailurePolicy is specified"))
        pod = (spec.get("template") or {}).get("spec") or {}
        restart = pod.get("restartPolicy")
        if restart not in ("OnFailure", "Never"):
            out.append(("spec.template.spec.restartPolicy", f'Unsupported value: "{restart or "Always"}": supported values: "OnFailure", "Never"'))
        if (spec.get("podFailurePolicy") is not None or spec.get("backoffLimitPerIndex") is not None) and restart != "Never":
            out.append(("spec.template.spec.restartPolicy", "only Never is supported with podFailurePolicy or backoffLimitPerIndex"))
        volumes = set()
        for i, vol in enumerate(pod.get("volumes") or []):
            if not DNS_LABEL.match(vol.get("name") or "") or vol["name"] in volumes:
                out.append((f"spec.template.spec.volumes[{i}].name", "Invalid value: a unique DNS-1123 label"))
            volumes.add(vol.get("name"))
            if len([k for k in vol if k != "name"]) != 1:
                out.append((f"spec.template.spec.volumes[{i}]", "may not specify more than 1 volume type"))
            for j, item in enumerate((vol.get("configMap") or {}).get("items") or []):
                if item.get("path", "").startswith("/") or ".." in item.get("path", "").split("/"):
                    out.append((f"spec.template.spec.volumes[{i}].configMap.items[{j}].path", "must be a relative path without '..'"))
            if "persistentVolumeClaim" in vol and not vol["persistentVolumeClaim"].get("claimName"):
                out.append((f"spec.template.spec.volumes[{i}].persistentVolumeClaim.claimName", "Required value"))
        names = set()
        for field in ("initContainers", "containers"):
            for i, c in enumerate(pod.get(field) or []):
                where = f"spec.template.spec.{field}[{i}]"
                if not DNS_LABEL.match(c.get("name") or "") or c["name"] in names:
                    out.append((f"{where}.name", "Invalid value: a unique DNS-1123 label"))
                names.add(c.get("name"))
                if not (c.get("image") or "").strip():
                    out.append((f"{where}.image", "Required value"))
                mounts = set()
                for j, mount in enumerate(c.get("volumeMounts") or []):
                    if mount.get("name") not in volumes:
                        out.append((f"{where}.volumeMounts[{j}].name", f'Not found: "{mount.get("name")}"'))
                    if mount.get("mountPath") in mounts:
                        out.append((f"{where}.volumeMounts[{j}].mountPath", "Invalid value: must be unique"))
                    mounts.add(mount.get("mountPath"))
        if not pod.get("containers"):
            out.append(("spec.template.spec.containers", "Required value"))
        return out

    @staticmethod
    def _default(job: dict) -> None:
        """What the API server fills in (``SetDefaults_Job`` and the generated selector)."""
        spec = job.setdefault("spec", {})
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("manualSelector", False)
        spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {})
        pod = template.setdefault("spec", {})
        pod.setdefault("dnsPolicy", "ClusterFirst")
        pod.setdefault("terminationGracePeriodSeconds", 30)
        for c in pod.get("containers") or []:
            c.setdefault("imagePullPolicy", "Always" if ":" not in c["image"] or c["image"].endswith(":latest") else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")


def _match_labels(labels: dict, selector: str | None) -> bool:
    for term in re.findall(r"(?:[^,(]|\([^)]*\))+", selector or ""):
        term = term.strip()
        if m := re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\((.*)\)", term):
            values = {v.strip() for v in m.group(3).split(",")}
            if (labels.get(m.group(1)) in values) != (m.group(2) == "in"):
                return False
        elif m := re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*(.*)", term):
            if (labels.get(m.group(1)) == m.group(3)) != (m.group(2) != "!="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _match_fields(obj: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, op, value = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term.strip()).groups()
        actual = obj
        for part in key.split("."):
            actual = (actual or {}).get(part)
        if (actual == value) != (op != "!="):
            return False
    return True


class _PodRun:
    """The kubelet's record of one pod's container: its process and its log."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.started = self.done = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_PATCH(self) -> None:
        self.server.fake._handle(self, "PATCH")

    def do_PUT(self) -> None:
        self.server.fake._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")


class FakeKubernetes:
    def __init__(self, workdir: Path, run_pods: bool = True, image_has_kfjupyter: bool = False, node_gpus: int = 0,
                 bookmark_interval: float = 60.0, event_window: int = 10000):  # fmt: skip
        self.workdir = Path(workdir)
        self.run_pods, self.node_gpus = run_pods, node_gpus
        #: how often a watch that allows bookmarks gets one (kube-apiserver: every minute,
        #: and 2 s before the watch's timeoutSeconds run out)
        self.bookmark_interval = bookmark_interval
        #: how many events the fake keeps for watches (the watch cache's window); a watch
        #: from a resourceVersion older than what is kept gets 410 Gone (see :meth:`compact`)
        self.event_window = event_window
        self.compacted = 0  # events up to this resourceVersion are gone
        self.counts: collections.Counter = collections.Counter()  # (verb, object path) -> requests
        self._gc_paused = 0
        self._gc_wake = threading.Event()
        self._gc_thread = threading.Thread(target=self._gc_loop, daemon=True, name="fake-k8s-gc")
        self.validator = TrainJobValidator()
        self.katib = ExperimentValidator(self.validator)
        self.isvcs = InferenceServiceValidator()
        self.jobs = JobValidator()
        #: PersistentVolumeClaims (namespace, name) → the folder that is their volume
        self.claims: dict[tuple[str, str], Path] = {}
        self.token = uuid.uuid4().hex
        self.requests: list[dict] = []
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.events: list[tuple[int, str, str, dict]] = []  # (rv, plural, type, object)
        self.runs: dict[str, _PodRun] = {}  # pod uid -> run
        self.rv = 0
        self.cond = threading.Condition()
        self.stopping = False
        self.shim = self.workdir / "image-shim"
        if not image_has_kfjupyter:  # like pytorch/pytorch: no kfjupyter package in the image
            (self.shim / "kfjupyter").mkdir(parents=True, exist_ok=True)
            (self.shim / "kfjupyter" / "__init__.py").write_text('raise ImportError("kfjupyter is not installed in this image")\n')
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    # -- lifecycle

    def start(self) -> "FakeKubernetes":
        self._thread.start()
        self._gc_thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
            procs = [r.proc for r in self.runs.values() if r.proc]
        for run in list(self.runs.values()):
            with run.cond:
                run.cond.notify_all()
        for proc in procs:
            _kill(proc)
        self._gc_wake.set()
        self._gc_thread.join(5)
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.workdir, onerror=_force_remove)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
        }))  # fmt: skip
        return path

    # -- state, for tests and controllers

    def get(self, plural: str, ns: str, name: str) -> dict | None:
        with self.cond:
            obj = self.objects.get((plural, ns, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, plural: str, ns: str | None = None, selector: str | None = None) -> list[dict]:
        with self.cond:
            return [copy.deepcopy(o) for (p, n, _), o in sorted(self.objects.items())
                    if p == plural and ns in (None, n) and _match_labels(o["metadata"].get("labels") or {}, selector)]  # fmt: skip

    def processes(self) -> list[subprocess.Popen]:
        """Pod processes still running."""
        return [r.proc for r in list(self.runs.values()) if r.proc and r.proc.poll() is None]

    def _store(self, plural: str, obj: dict, event: str) -> dict:
        with self.cond:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            meta = obj["metadata"]
            self.objects[(plural, meta.get("namespace", ""), meta["name"])] = obj
            self._event(plural, event, obj)
            return copy.deepcopy(obj)

    def _event(self, plural: str, kind: str, obj: dict) -> None:
        """Record a watch event at the current resourceVersion (the window drops the oldest)."""
        self.events.append((self.rv, plural, kind, copy.deepcopy(obj)))
        if len(self.events) > self.event_window:
            dropped = self.events[: len(self.events) - self.event_window]
            del self.events[: len(dropped)]
            self.compacted = max(self.compacted, dropped[-1][0])
        self.cond.notify_all()
        self._gc_wake.set()

    def compact(self) -> int:
        """Forget every event so far, as etcd's compaction does: a watch from an older
        resourceVersion than the current one gets 410 Gone. Returns that resourceVersion."""
        with self.cond:
            self.events.clear()
            self.compacted = self.rv
            return self.rv

    def count(self, verb: str | None = None, path: str | None = None, since: float | None = None) -> int:
        """Requests received (``verb``: get, list, watch, create, update, patch, delete;
        ``path``: an object's path, e.g. ``/apis/kubeflow.org/v1beta1/namespaces/team-a/experiments/x``,
        which a list or watch by ``fieldSelector=metadata.name=x`` also counts for; ``since``:
        a ``time.monotonic()`` value)."""
        return sum(1 for r in list(self.requests) if (verb is None or r["verb"] == verb)
                   and (path is None or r["object"] == path) and (since is None or r["time"] >= since))  # fmt: skip

    def _new(self, plural: str, ns: str, obj: dict, uid: str | None = None) -> dict:
        group, version, kind, _ = RESOURCES[plural]
        obj.update(apiVersion=f"{group}/{version}" if group else version, kind=kind)
        obj["metadata"].update(namespace=ns, uid=uid or str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        return self._store(plural, obj, "ADDED")

    def _remove(self, plural: str, ns: str, name: str) -> dict | None:
        """Remove an object now (what is left of a deletion once no finalizer holds it)."""
        with self.cond:
            obj = self.objects.pop((plural, ns, name), None)
            if obj is None:
                return None
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)  # the DELETED event carries its own version
            self._event(plural, "DELETED", obj)
        if plural == "pods" and (run := self.runs.get(obj["metadata"]["uid"])) and run.proc:
            threading.Thread(target=_kill, args=(run.proc,), daemon=True).start()
        elif plural == "pods" and run is not None:  # no process (a served model's pod): its log ends
            with run.cond:
                run.done = True
                run.cond.notify_all()
        return obj

    def _delete(self, plural: str, ns: str, name: str, policy: str = "Background") -> tuple[dict, bool]:
        """DELETE as kube-apiserver does it: (the object, whether it is gone).

        ``Foreground`` adds the ``foregroundDeletion`` finalizer, ``Orphan`` the ``orphan``
        one; an object with finalizers is only marked (``deletionTimestamp``) and stays
        until they are removed (by the garbage collector, or by a client's PATCH/PUT).
        ``Background`` with no finalizers removes it at once; the garbage collector then
        deletes its dependants on its next pass.
        """
        with self.cond:
            obj = self._existing(plural, ns, name)
            meta = obj["metadata"]
            finalizers = [f for f in meta.get("finalizers") or [] if f not in ("foregroundDeletion", "orphan")]
            kept = [f for f in meta.get("finalizers") or [] if f in ("foregroundDeletion", "orphan")]
            if policy == "Foreground":
                finalizers.append("foregroundDeletion")
            elif policy == "Orphan":
                finalizers.append("orphan")
            elif meta.get("deletionTimestamp"):  # a Background delete does not undo a cascade under way
                finalizers += kept
            if not finalizers:
                return self._remove(plural, ns, name), True
            if meta.get("deletionTimestamp") and meta.get("finalizers") == finalizers:
                return obj, False  # already being deleted just so: nothing changes
            meta.setdefault("deletionTimestamp", now())
            meta.setdefault("deletionGracePeriodSeconds", 0)
            meta["finalizers"] = finalizers
            return self._store(plural, obj, "MODIFIED"), False

    def _finalized(self, plural: str, obj: dict) -> dict:
        """Store an update of ``obj``; one being deleted whose last finalizer went is removed
        instead (one DELETED event, as kube-apiserver deletes it during the update)."""
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            with self.cond:
                self.objects[(plural, meta.get("namespace", ""), meta["name"])] = obj
                return self._remove(plural, meta.get("namespace", ""), meta["name"])
        return self._store(plural, obj, "MODIFIED")

    @contextlib.contextmanager
    def gc_paused(self):
        """Hold the garbage collector (which otherwise runs by itself): a test sees each
        step of a deletion, one :meth:`gc_tick` at a time."""
        with self.cond:
            self._gc_paused += 1
        try:
            yield self
        finally:
            with self.cond:
                self._gc_paused -= 1
            self._gc_wake.set()

    def _gc_loop(self) -> None:
        while not self.stopping:
            self._gc_wake.wait(0.5)
            self._gc_wake.clear()
            while not self.stopping and not self._gc_paused and self.gc_tick():
                time.sleep(0.01)

    def gc_tick(self) -> bool:
        """One pass of the garbage collector; whether it changed anything.

        * an object being deleted with ``foregroundDeletion``: its dependants (objects whose
          ``ownerReferences`` name its uid) not yet being deleted are deleted (Foreground
          if they have dependants of their own); once none with ``blockOwnerDeletion`` is
          left (as seen at the start of the pass), the finalizer is removed;
        * ``orphan``: the dependants lose their reference to it, then the finalizer goes;
        * an object whose owners are all gone is deleted (Background);
        * an object being deleted whose finalizers are all gone is removed.
        """
        changed = False
        with self.cond:
            snapshot = {key: copy.deepcopy(o) for key, o in self.objects.items()}
            live = {o["metadata"]["uid"] for o in snapshot.values()}

            def dependants(uid: str) -> list[tuple[tuple, dict, dict]]:
                return [(key, o, ref) for key, o in snapshot.items() for ref in o["metadata"].get("ownerReferences") or []
                        if ref.get("uid") == uid]  # fmt: skip

            for key, obj in snapshot.items():
                meta = obj["metadata"]
                refs = meta.get("ownerReferences") or []
                if refs and not any(r.get("uid") in live for r in refs) and not meta.get("deletionTimestamp"):
                    if key in self.objects:
                        self._delete(*key, "Background")
                        changed = True
                if not meta.get("deletionTimestamp"):
                    continue
                finalizers = list(meta.get("finalizers") or [])
                deps = dependants(meta["uid"])
                if "orphan" in finalizers:
                    for dep_key, _, _ in deps:
                        if dep_key in self.objects:
                            dep = self.objects[dep_key]
                            dep["metadata"]["ownerReferences"] = [r for r in dep["metadata"].get("ownerReferences") or []
                                                                  if r.get("uid") != meta["uid"]]  # fmt: skip
                            self._store(dep_key[0], dep, "MODIFIED")
                    finalizers.remove("orphan")
                if "foregroundDeletion" in finalizers:
                    for dep_key, dep, _ in deps:
                        if dep_key in self.objects and not self.objects[dep_key]["metadata"].get("deletionTimestamp"):
                            self._delete(*dep_key, "Foreground" if dependants(dep["metadata"]["uid"]) else "Background")
                            changed = True
                    if not any(ref.get("blockOwnerDeletion") for _, _, ref in deps):
                        finalizers.remove("foregroundDeletion")
                if finalizers != (meta.get("finalizers") or []) and key in self.objects:
                    self.objects[key]["metadata"]["finalizers"] = finalizers
                    self._finalized(key[0], self.objects[key])
                    changed = True
        return changed

    # -- HTTP

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        m = re.fullmatch(r"/(?:api/(v1)|apis/([^/]+)/([^/]+))/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?(?:/([^/]+))?", url.path)
        verb, obj_path = _verb(method, m, query), url.path
        if m and m.group(6) is None and (by_name := re.fullmatch(r"metadata\.name=([^,]+)", query.get("fieldSelector") or "")):
            obj_path = f"{url.path}/{by_name.group(1)}"
        with self.cond:
            self.requests.append({"method": method, "path": url.path, "query": query, "body": body, "verb": verb,
                                  "object": obj_path, "time": time.monotonic()})  # fmt: skip
            self.counts[(verb, obj_path)] += 1
        try:
            if h.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if url.path == "/version":
                return self._send(h, 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"})
            if not m or m.group(5) not in RESOURCES or RESOURCES[m.group(5)][:2] != (m.group(2) or "", m.group(1) or m.group(3)):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            _, _, _, ns, plural, name, sub = m.groups()
            if name is None and method == "GET":
                return self._watch(h, plural, ns, query) if _go_bool(query.get("watch")) else self._list(h, plural, ns, query)
            if name is None and method == "POST":
                return self._create(h, plural, ns, body, query)
            if sub == "log" and plural == "pods" and method == "GET":
                return self._log(h, ns, name, query)
            if sub is None and method == "GET":
                return self._send(h, 200, self._existing(plural, ns, name))
            if sub is None and method == "DELETE":
                options = body if isinstance(body, dict) else {}
                policy = query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
                if policy not in ("Background", "Foreground", "Orphan"):
                    raise ApiError(422, "Invalid", f'propagationPolicy: Unsupported value: "{policy}": supported values: "Background", "Foreground", "Orphan"')
                obj, gone = self._delete(plural, ns, name, policy)
                if not gone:  # still there, with its deletionTimestamp: the API answers with the object
                    return self._send(h, 200, obj)
                return self._send(h, 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                           "details": {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}})  # fmt: skip
            if sub is None and method == "PATCH":
                return self._patch(h, plural, ns, name, body, h.headers.get("Content-Type", ""))
            if sub is None and method == "PUT":
                return self._put(h, plural, ns, name, body)
            raise ApiError(405, "MethodNotAllowed", f"the fake does not support {method} on this resource")
        except ApiError as e:
            self._send(h, e.code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                   "message": str(e), "reason": e.reason, "code": e.code,
                                   "details": {"causes": e.causes} if e.causes else {}})  # fmt: skip

    def _send(self, h, code: int, obj, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        h.send_response(code)
        h.send_header("Content-Type", "application/json" if not isinstance(obj, bytes) else "text/plain")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _existing(self, plural: str, ns: str, name: str) -> dict:
        obj = self.get(plural, ns, name)
        if obj is None:
            group = RESOURCES[plural][0]
            raise ApiError(404, "NotFound", f'{plural}{"." + group if group else ""} "{name}" not found')
        return obj

    def _list(self, h, plural: str, ns: str, query: dict) -> None:
        items = [o for o in self.list(plural, ns, query.get("labelSelector")) if _match_fields(o, query.get("fieldSelector"))]
        group, version, kind, _ = RESOURCES[plural]
        self._send(h, 200, {"kind": f"{kind}List", "apiVersion": f"{group}/{version}" if group else version,
                            "metadata": {"resourceVersion": str(self.rv)}, "items": items})  # fmt: skip

    def _create(self, h, plural: str, ns: str, body, query: dict) -> None:
        if not RESOURCES[plural][3]:
            raise ApiError(405, "MethodNotAllowed", f"the fake does not let clients create {plural}")
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise ApiError(400, "BadRequest", "the body must be an object with metadata")
        meta = body["metadata"]
        if meta.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        name = meta.get("name")
        if not name or len(name) > 253 or not SUBDOMAIN.match(name):
            raise ApiError(422, "Invalid", f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'")
        for key, value in (meta.get("labels") or {}).items():
            prefix, _, part = key.rpartition("/")
            if not LABEL_PART.match(part) or len(part) > 63 or (prefix and not SUBDOMAIN.match(prefix)) or (value and (len(value) > 63 or not LABEL_PART.match(value))):
                raise ApiError(422, "Invalid", f"metadata.labels: Invalid value: {key}={value}")
        strict = query.get("fieldValidation") == "Strict"
        if plural == "trainjobs":
            obj, warnings = self.validator.admit(body, strict)
        elif plural == "experiments":
            obj, warnings = self.katib.admit(body), []
        elif plural == "inferenceservices":
            obj, warnings = self.isvcs.admit(body, strict)
        elif plural == "jobs":
            obj, warnings = self.jobs.admit(body, strict)
        else:
            obj, warnings = validate_configmap(body, strict), []
        obj["metadata"].pop("resourceVersion", None)
        obj["metadata"].pop("uid", None)
        obj.pop("status", None)
        with self.cond:
            if (plural, ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists')
            if plural == "jobs":  # the selector and labels the API server generates
                uid = str(uuid.uuid4())
                obj["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                obj["spec"]["template"]["metadata"].setdefault("labels", {}).update({
                    "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid, "job-name": name})  # fmt: skip
                created = self._new(plural, ns, obj, uid=uid)
            else:
                created = self._new(plural, ns, obj)
        self._send(h, 201, created, {"Warning": f'299 - "{w}"' for w in warnings[:1]})
        if plural == "jobs" and self.run_pods:
            threading.Thread(target=self._reconcile_job, args=(ns, name), daemon=True).start()
        if plural == "trainjobs" and self.run_pods:
            threading.Thread(target=self._start_trainjob, args=(ns, name), daemon=True).start()
        if plural == "inferenceservices" and self.run_pods:
            threading.Thread(target=self._reconcile_isvc, args=(ns, name), daemon=True).start()

    def _patch(self, h, plural: str, ns: str, name: str, body, content_type: str) -> None:
        if "merge-patch" not in content_type:  # strategic merge patch is treated as a merge patch
            raise ApiError(415, "UnsupportedMediaType", f"the fake does not support {content_type} on {plural}")
        if plural == "inferenceservices":
            return self._patch_isvc(h, ns, name, body, content_type)
        with self.cond:
            old = self._existing(plural, ns, name)
            patched = self._update(plural, old, _merge_patch(old, body))
        self._send(h, 200, patched)

    def _put(self, h, plural: str, ns: str, name: str, body) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise ApiError(400, "BadRequest", "the body must be an object with metadata")
        if body["metadata"].get("name") != name or body["metadata"].get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", "the name and namespace of the object must match the request's")
        if not body["metadata"].get("resourceVersion"):
            raise ApiError(422, "Invalid", "metadata.resourceVersion: Invalid value: 0: must be specified for an update")
        if plural == "inferenceservices":
            raise ApiError(405, "MethodNotAllowed", "the fake does not update inferenceservices: patch them")
        with self.cond:
            old = self._existing(plural, ns, name)
            updated = self._update(plural, old, copy.deepcopy(body))
        self._send(h, 200, updated)

    def _update(self, plural: str, old: dict, new: dict, spec_changed: bool = False) -> dict:
        """An update (PATCH or PUT) as the API server checks and stores it: the server's
        metadata kept, optimistic concurrency on ``resourceVersion``, finalizer rules; an
        object being deleted whose last finalizer goes is removed."""
        meta, before = new.setdefault("metadata", {}), old["metadata"]
        if meta.get("resourceVersion", before["resourceVersion"]) != before["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{before["name"]}": the object '
                           "has been modified; please apply your changes to the latest version and try again")  # fmt: skip
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "resourceVersion"):  # fmt: skip
            if key in before:
                meta[key] = before[key]
            else:
                meta.pop(key, None)
        if spec_changed:
            meta["generation"] = before.get("generation", 1) + 1
        finalizers = meta.get("finalizers") or []
        for i, name in enumerate(finalizers):
            if not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", str(name)):
                raise ApiError(422, "Invalid", f"metadata.finalizers[{i}]: Invalid value: {name!r}: a qualified name")
        if before.get("deletionTimestamp") and set(finalizers) - set(before.get("finalizers") or []):
            raise ApiError(422, "Invalid", "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted")
        for i, ref in enumerate(meta.get("ownerReferences") or []):
            for key in ("apiVersion", "kind", "name", "uid"):
                if not ref.get(key):
                    raise ApiError(422, "Invalid", f"metadata.ownerReferences[{i}].{key}: Required value")
        if "status" in old:  # the status subresource: the main resource's updates leave it alone
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
        if plural == "configmaps":
            for field in ("data", "binaryData"):
                if old.get("immutable") and new.get(field) != old.get(field):
                    raise ApiError(422, "Invalid", f"{field}: Forbidden: field is immutable when `immutable` is set")
            new = validate_configmap(new, False)
        elif plural != "inferenceservices" and {k: v for k, v in new.items() if k != "metadata"} != {
                k: v for k, v in old.items() if k != "metadata"}:  # fmt: skip
            raise ApiError(405, "MethodNotAllowed", f"the fake changes only the metadata of {plural}")
        return self._finalized(plural, new)

    def _watch(self, h, plural: str, ns: str, query: dict) -> None:
        """WATCH as kube-apiserver serves it.

        ``resourceVersion`` unset or ``0``: ADDED events for what exists, then the changes;
        ``N``: the changes after N (410 Gone, as an ERROR event, when N is older than the
        events kept; 504 when N is ahead of the server). ``timeoutSeconds`` ends the stream
        (default: 30 min). ``allowWatchBookmarks``: BOOKMARK events (an object with only
        ``metadata.resourceVersion``) every ``bookmark_interval`` and 2 s before the timeout,
        so a client resumes from a recent version even when nothing it watches changed.
        """
        timeout = float(query.get("timeoutSeconds") or 1800)
        start = time.monotonic()
        deadline = start + timeout
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        bookmarks = _go_bool(query.get("allowWatchBookmarks"))
        group, version, kind, _ = RESOURCES[plural]

        def wanted(obj: dict) -> bool:
            return (obj["metadata"].get("namespace") == ns and _match_fields(obj, fields)
                    and _match_labels(obj["metadata"].get("labels") or {}, labels))  # fmt: skip

        def next_bookmark(now_: float) -> float:
            before_end = deadline - 2 if timeout > 2 else deadline
            return min(now_ + self.bookmark_interval, before_end) if before_end > now_ else now_ + self.bookmark_interval

        asked = query.get("resourceVersion") or "0"
        if not asked.isdigit():
            raise ApiError(400, "BadRequest", f'resourceVersion: Invalid value: "{asked}": must be a number')
        with self.cond:
            since = int(asked)
            if since > self.rv:
                raise ApiError(504, "Timeout", f"Too large resource version: {since}, current: {self.rv}")
            expired = since and since < self.compacted
            pending = [("ADDED", o) for o in self.list(plural, ns) if wanted(o)] if not since else []
            since = since or self.rv
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        send = lambda kind_, obj: _chunk(h, json.dumps({"type": kind_, "object": obj}).encode() + b"\n")  # noqa: E731
        try:
            if expired:
                send("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 410,
                               "reason": "Expired", "message": f"too old resource version: {since} ({self.compacted})"})  # fmt: skip
                return _chunk(h, b"")
            bookmark_at = next_bookmark(start)
            while True:
                for kind_, obj in pending:
                    send(kind_, obj)
                if bookmarks and time.monotonic() >= bookmark_at:
                    send("BOOKMARK", {"kind": kind, "apiVersion": f"{group}/{version}" if group else version,
                                      "metadata": {"resourceVersion": str(since)}})  # fmt: skip
                    bookmark_at = next_bookmark(time.monotonic())
                with self.cond:
                    wake = min(deadline, bookmark_at) if bookmarks else deadline
                    while not self.stopping and self.rv <= since and time.monotonic() < wake:
                        self.cond.wait(max(0.0, min(1.0, wake - time.monotonic())))
                    if self.stopping or time.monotonic() >= deadline:
                        break
                    if since < self.compacted:  # events this watch had not sent yet are gone
                        send("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                       "code": 410, "reason": "Expired", "message": f"too old resource version: {since} ({self.compacted})"})  # fmt: skip
                        break
                    pending = [(t, o) for rv, p, t, o in self.events if rv > since and p == plural and wanted(o)]
                    since = self.rv
            _chunk(h, b"")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _log(self, h, ns: str, name: str, query: dict) -> None:
        pod = self._existing("pods", ns, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container") or names[0]
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if "container" not in query and len(names) > 1:
            raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: {names}")
        run = self.runs.get(pod["metadata"]["uid"])
        if run is None or not run.started:
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        stamps = _go_bool(query.get("timestamps"))
        line = lambda ts, text: (ts.encode() + b" " if stamps else b"") + text + b"\n"  # noqa: E731
        with run.cond:
            start = max(0, len(run.lines) - int(query["tailLines"])) if "tailLines" in query else 0
            if not _go_bool(query.get("follow")):
                return self._send(h, 200, b"".join(line(*entry) for entry in run.lines[start:]))
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            while True:
                with run.cond:
                    while len(run.lines) <= start and not run.done and not self.stopping:
                        run.cond.wait(0.5)
                    batch, start = run.lines[start:], len(run.lines)
                    finished = (run.done or self.stopping) and not batch
                if finished:
                    break
                _chunk(h, b"".join(line(*entry) for entry in batch))
            _chunk(h, b"")
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- controllers: Trainer (TrainJob → JobSet → Job → pods) and the kubelet

    def _start_trainjob(self, ns: str, name: str) -> None:
        tj = self.get("trainjobs", ns, name)
        if tj is None:
            return
        if tj["spec"].get("suspend"):
            return self.set_condition(ns, name, "Suspended", "True", "Suspended", "TrainJob is suspended")
        runtime = RUNTIMES[tj["spec"]["runtimeRef"]["name"]]
        nodes = (tj["spec"].get("trainer") or {}).get("numNodes") or runtime["numNodes"]
        template = _pod_template(tj, runtime, nodes, master_port=_free_port())
        jobset = self._new("jobsets", ns, {"metadata": {"name": name, "ownerReferences": _owned_by(tj)}, "spec": {}})
        job = self._new("jobs", ns, {
            "metadata": {"name": f"{name}-node-0", "ownerReferences": _owned_by(jobset)},
            "spec": {"completions": nodes, "parallelism": nodes, "completionMode": "Indexed", "backoffLimit": 0},
        })  # fmt: skip
        for index in range(nodes):
            labels = {
                **template["labels"],
                "jobset.sigs.k8s.io/jobset-name": name,
                "jobset.sigs.k8s.io/replicatedjob-name": runtime["job"],
                "jobset.sigs.k8s.io/job-index": "0",
                "batch.kubernetes.io/job-name": f"{name}-node-0",
                "batch.kubernetes.io/job-completion-index": str(index),
                "trainer.kubeflow.org/trainjob-ancestor-step": "trainer",
            }
            pod = self._new("pods", ns, {
                "metadata": {
                    "name": f"{name}-node-0-{index}-{uuid.uuid4().hex[:5]}",
                    "labels": labels,
                    "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                    "ownerReferences": _owned_by(job),
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [_container_status(runtime["container"], {"waiting": {"reason": "ContainerCreating"}})],
                },
            })  # fmt: skip
            self.runs[pod["metadata"]["uid"]] = _PodRun()
            threading.Thread(target=self._kubelet, args=(ns, pod), daemon=True).start()
        self._reconcile(ns, name)

    def _kubelet(self, ns: str, pod: dict) -> None:
        """Schedule, mount, run and watch one pod's container."""
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        run, container = self.runs[uid], pod["spec"]["containers"][0]
        if int((container["resources"].get("limits") or {}).get("nvidia.com/gpu", 0)) > self.node_gpus:
            unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}  # fmt: skip
            return self._update_pod(ns, name, lambda s: s.update(conditions=[unschedulable]))
        root = self.workdir / "pods" / name
        paths, missing, said = {}, "not tried", False
        while missing and not self.stopping and self.get("pods", ns, name):  # the kubelet retries mounts
            paths, missing = self._mount(ns, pod, root)
            if missing and "persistentvolumeclaim" in missing and not said:  # the scheduler's word for it
                said = True
                unbound = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": f"0/1 nodes are available: {missing}. preemption: 0/1 nodes are available"}  # fmt: skip
                self._update_pod(ns, name, lambda s: s.update(conditions=[unbound]))
            time.sleep(0 if missing is None else 0.1)
        if missing:
            return
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
               "HOME": str(home), "HOSTNAME": name, "LANG": "C.UTF-8"}  # fmt: skip
        if self.shim.exists():
            env["PYTHONPATH"] = str(self.shim)
        for var in container["env"]:
            field = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            env[var["name"]] = _field(pod, field) if field else _rewrite(var.get("value", ""), paths)
        argv = [_rewrite(a, paths) for a in container["command"] + container["args"]]
        if not argv or not shutil.which(argv[0], path=env["PATH"]):
            run.started = run.done = True
            missing_exe = f'exec: "{argv[0] if argv else ""}": executable file not found in $PATH'
            return self._finish(ns, name, 128, "StartError", missing_exe)
        with self.cond:
            if self.stopping or not self.get("pods", ns, name):
                return
            run.proc = subprocess.Popen(argv, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
            run.started = True
        started = now()
        self._update_pod(ns, name, lambda s: s.update(
            phase="Running", podIP="127.0.0.1", startTime=started,
            conditions=[{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            containerStatuses=[_container_status(container["name"], {"running": {"startedAt": started}}, ready=True)],
        ))  # fmt: skip
        for raw in iter(run.proc.stdout.readline, b""):
            with run.cond:
                run.lines.append((now(nano=True), raw.rstrip(b"\n")))
                run.cond.notify_all()
        code = run.proc.wait()
        with run.cond:
            run.done = True
            run.cond.notify_all()
        self._finish(ns, name, code if code >= 0 else 128 - code, "Completed" if code == 0 else "Error", None, started)

    def _mount(self, ns: str, pod: dict, root: Path) -> tuple[dict, str | None]:
        """Materialise the volumes under root; (mountPath → host path, what is missing)."""
        hosts = {}
        for volume in pod["spec"]["volumes"]:
            target = root / "volumes" / volume["name"]
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume:
                source = volume["configMap"]
                cm = self.get("configmaps", ns, source.get("name", ""))
                if cm is None:
                    return {}, f"configmap {source.get('name')!r} not found"
                files = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
                files.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
                items = source.get("items") or [{"key": k, "path": k} for k in files]
                if bad := [i["key"] for i in items if i["key"] not in files]:
                    return {}, f"configmap references non-existent config key: {bad[0]}"
                shutil.rmtree(target, ignore_errors=True)
                for item in items:
                    if item["path"].startswith("/") or ".." in item["path"].split("/"):
                        return {}, f"invalid item path {item['path']!r}"
                    (target / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (target / item["path"]).write_bytes(files[item["key"]])
            elif "persistentVolumeClaim" in volume:  # the claim's own folder, shared by every pod mounting it
                claim = volume["persistentVolumeClaim"].get("claimName", "")
                if self.get("persistentvolumeclaims", ns, claim) is None or (ns, claim) not in self.claims:
                    return {}, f'persistentvolumeclaim "{claim}" not found'
                target = self.claims[(ns, claim)]
            else:
                return {}, f"the fake kubelet cannot mount volume {volume['name']!r}"
            hosts[volume["name"]] = target
        paths = {}
        for mount in pod["spec"]["containers"][0]["volumeMounts"]:
            if mount["name"] not in hosts or mount.get("subPath"):
                return {}, f"volume mount {mount['name']!r} cannot be set up"
            paths[mount["mountPath"]] = hosts[mount["name"]]
            source = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
            if mount.get("readOnly") and "configMap" in source:  # a copy of this pod's own: made read-only
                for p in [*sorted(hosts[mount["name"]].rglob("*"), reverse=True), hosts[mount["name"]]]:
                    p.chmod(0o555 if p.is_dir() else 0o444)
        return paths, None

    def _update_pod(self, ns: str, name: str, change) -> None:
        with self.cond:
            pod = self.get("pods", ns, name)
            if pod is None:
                return
            change(pod["status"])
            self._store("pods", pod, "MODIFIED")

    def _finish(self, ns: str, name: str, code: int, reason: str, message: str | None, started: str | None = None) -> None:
        state = {"exitCode": code, "reason": reason, "startedAt": started or now(), "finishedAt": now()}
        if message:
            state["message"] = message
        self._update_pod(ns, name, lambda s: s.update(
            phase="Succeeded" if code == 0 else "Failed", conditions=[{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            containerStatuses=[_container_status((s.get("containerStatuses") or [{}])[0].get("name", "node"), {"terminated": state})]))  # fmt: skip
        pod = self.get("pods", ns, name)
        if pod and "jobset.sigs.k8s.io/jobset-name" in pod["metadata"]["labels"]:
            self._reconcile(ns, pod["metadata"]["labels"]["jobset.sigs.k8s.io/jobset-name"])
        elif pod and "batch.kubernetes.io/job-name" in pod["metadata"]["labels"]:
            self._reconcile_job(ns, pod["metadata"]["labels"]["batch.kubernetes.io/job-name"])

    def _reconcile(self, ns: str, name: str) -> None:
        """Job/JobSet/Trainer status: fail on the first failed pod, complete when all succeed."""
        with self.cond:
            tj = self.get("trainjobs", ns, name)
            if tj is None or any(c["type"] in ("Complete", "Failed") for c in (tj.get("status") or {}).get("conditions") or []):
                return
            pods = self.list("pods", ns, f"jobset.sigs.k8s.io/jobset-name={name}")
            phases = [p["status"]["phase"] for p in pods]
            nodes = tj["spec"].get("trainer", {}).get("numNodes") or 1
            tj.setdefault("status", {})["jobsStatus"] = [{
                "name": "node", "active": sum(ph in ("Pending", "Running") for ph in phases), "ready": phases.count("Running"),
                "succeeded": phases.count("Succeeded"), "failed": phases.count("Failed"), "suspended": 0}]  # fmt: skip
            if "Failed" in phases:
                tj["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "FailedJobs",
                                               "message": "jobset failed due to one or more job failures",
                                               "lastTransitionTime": now()}]  # fmt: skip
            elif phases.count("Succeeded") == nodes:
                tj["status"]["conditions"] = [{"type": "Complete", "status": "True", "reason": "AllJobsCompleted",
                                               "message": "jobset completed successfully", "lastTransitionTime": now()}]  # fmt: skip
            self._store("trainjobs", tj, "MODIFIED")
        if "Failed" in phases:  # the failed Job deletes its active pods
            for pod in pods:
                if pod["status"]["phase"] in ("Pending", "Running"):
                    self._remove("pods", ns, pod["metadata"]["name"])


    # -- Katib, played by the test: trials and the experiment's status

    def add_trial(self, ns: str, experiment: str, assignments: dict, condition: str = "Succeeded",
                  metrics: dict | None = None, message: str = "", name: str | None = None) -> dict:
        """A Trial of ``experiment`` in state ``condition`` (Created, Running, Succeeded, Failed,
        EarlyStopped, MetricsUnavailable, Killed), with ``metrics``: name → (min, max, latest)."""
        exp = self._existing("experiments", ns, experiment)
        name = name or f"{experiment}-{uuid.uuid4().hex[:8]}"
        trial = self._new("trials", ns, {
            "metadata": {"name": name, "labels": {"katib.kubeflow.org/experiment": experiment},
                         "ownerReferences": _owned_by(exp)},
            "spec": {"objective": exp["spec"]["objective"],
                     "parameterAssignments": [{"name": k, "value": str(v)} for k, v in assignments.items()],
                     "primaryContainerName": exp["spec"]["trialTemplate"]["primaryContainerName"]},
            "status": {}})  # fmt: skip
        self.set_trial(ns, name, condition, metrics, message)
        return self.get("trials", ns, name)

    def set_trial(self, ns: str, name: str, condition: str, metrics: dict | None = None, message: str = "") -> None:
        with self.cond:
            trial = self._existing("trials", ns, name)
            status = trial.setdefault("status", {})
            status.setdefault("startTime", now())
            conds = [{"type": "Created", "status": "True", "reason": "TrialCreated", "lastTransitionTime": now()}]
            if condition != "Created":
                conds.append({"type": "Running", "status": "True" if condition == "Running" else "False",
                              "reason": "TrialRunning", "lastTransitionTime": now()})  # fmt: skip
            if condition not in ("Created", "Running"):
                conds.append({"type": condition, "status": "True", "reason": f"Trial{condition}",
                              "message": message, "lastTransitionTime": now()})  # fmt: skip
                status["completionTime"] = now()
            status["conditions"] = conds
            if metrics is not None:
                status["observation"] = {"metrics": [
                    {"name": k, "min": str(v[0]), "max": str(v[1]), "latest": str(v[2])} for k, v in metrics.items()]}  # fmt: skip
            self._store("trials", trial, "MODIFIED")

    def update_experiment(self, ns: str, name: str) -> dict:
        """The Experiment's status as Katib's experiment controller computes it from its trials."""
        with self.cond:
            exp = self._existing("experiments", ns, name)
            spec, trials = exp["spec"], self.list("trials", ns, f"katib.kubeflow.org/experiment={name}")
            by_state: dict[str, list] = {}
            for t in trials:
                true = [c["type"] for c in t["status"].get("conditions") or [] if c["status"] == "True"]
                by_state.setdefault(true[-1] if true else "Pending", []).append(t)
            goal = spec["objective"]["objectiveMetricName"]
            strategy = next((m["value"] for m in spec["objective"].get("metricStrategies") or [] if m["name"] == goal),
                            "min" if spec["objective"]["type"] == "minimize" else "max")  # fmt: skip
            best = None
            for t in by_state.get("Succeeded", []):
                metric = next((m for m in t["status"].get("observation", {}).get("metrics", []) if m["name"] == goal), None)
                if metric is None or metric[strategy] == "unavailable":
                    continue
                value = float(metric[strategy])
                if best is None or (value < best[0] if spec["objective"]["type"] == "minimize" else value > best[0]):
                    best = (value, t)
            status = exp.setdefault("status", {})
            status.update({
                "trials": len(trials),
                "trialsSucceeded": len(by_state.get("Succeeded", [])),
                "trialsFailed": len(by_state.get("Failed", [])),
                "trialsEarlyStopped": len(by_state.get("EarlyStopped", [])),
                "trialsKilled": len(by_state.get("Killed", [])),
                "trialMetricsUnavailable": len(by_state.get("MetricsUnavailable", [])),
                "trialsRunning": len(by_state.get("Running", [])),
                "trialsPending": len(by_state.get("Created", [])),
                "succeededTrialList": [t["metadata"]["name"] for t in by_state.get("Succeeded", [])],
                "failedTrialList": [t["metadata"]["name"] for t in by_state.get("Failed", [])],
            })  # fmt: skip
            if best:
                status["currentOptimalTrial"] = {
                    "bestTrialName": best[1]["metadata"]["name"],
                    "parameterAssignments": best[1]["spec"]["parameterAssignments"],
                    "observation": best[1]["status"]["observation"]}  # fmt: skip
            ended = sum(len(by_state.get(k, [])) for k in ("Succeeded", "Failed", "EarlyStopped", "MetricsUnavailable", "Killed"))
            conds = [{"type": "Created", "status": "True", "reason": "ExperimentCreated", "lastTransitionTime": now()},
                     {"type": "Running", "status": "True", "reason": "ExperimentRunning", "lastTransitionTime": now()}]  # fmt: skip
            failed = len(by_state.get("Failed", [])) + len(by_state.get("MetricsUnavailable", []))
            if spec.get("maxFailedTrialCount") is not None and failed > spec["maxFailedTrialCount"]:
                conds[1]["status"] = "False"
                conds.append({"type": "Failed", "status": "True", "reason": "ExperimentMaxFailedTrialsReached",
                              "message": "Experiment has failed because max failed count has reached",
                              "lastTransitionTime": now()})  # fmt: skip
            elif ended >= spec["maxTrialCount"]:
                conds[1]["status"] = "False"
                conds.append({"type": "Succeeded", "status": "True", "reason": "ExperimentMaxTrialsReached",
                              "message": "Experiment has succeeded because max trial count has reached",
                              "lastTransitionTime": now()})  # fmt: skip
            status["conditions"] = conds
            return self._store("experiments", exp, "MODIFIED")

    def run_trial(self, ns: str, experiment: str, assignments: dict, timeout: float = 60) -> dict:
        """Katib's trial controller for one suggestion: render the template, run the workload
        through the fake kubelet, collect the metrics from the primary container's log."""
        exp = self._existing("experiments", ns, experiment)
        template = exp["spec"]["trialTemplate"]
        trial = self.add_trial(ns, experiment, assignments, condition="Running")
        name = trial["metadata"]["name"]
        values = {t["name"]: (str(assignments[t["reference"]]) if t["reference"] in assignments else
                              name if t["reference"] == "${trialSpec.Name}" else "") for t in template["trialParameters"]}  # fmt: skip
        run = json.loads(PLACEHOLDER.sub(lambda m: values[m.group(1)], json.dumps(template["trialSpec"])))
        run.setdefault("metadata", {}).update(name=name, ownerReferences=_owned_by(trial))
        if run["kind"] == "TrainJob":
            obj, _ = self.validator.admit(run, strict=True)
            self._new("trainjobs", ns, obj)
            self._start_trainjob(ns, name)
            workload = "trainjobs"
        else:
            self._new("jobs", ns, {"metadata": run["metadata"], "spec": run["spec"]})
            self._reconcile_job(ns, name)
            workload = "jobs"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [c["type"] for c in (self.get(workload, ns, name) or {}).get("status", {}).get("conditions") or []
                    if c["type"] in ("Complete", "Failed") and c["status"] == "True"]  # fmt: skip
            if done:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"trial {name} did not finish within {timeout} s")
        labels = template.get("primaryPodLabels") or {}
        pods = [p for p in self.list("pods", ns) if (p["metadata"].get("labels") or {}).get("kfjupyter.io/trial") == name
                and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]  # fmt: skip
        log = b"\n".join(line for pod in pods for _, line in self.runs[pod["metadata"]["uid"]].lines).decode()
        objective = exp["spec"]["objective"]["objectiveMetricName"]
        filters = [re.compile(f) for f in ((exp["spec"].get("metricsCollectorSpec") or {}).get("source") or {})
                   .get("filter", {}).get("metricsFormat") or [KATIB_DEFAULT_FILTER]]  # fmt: skip
        values_seen = [float(m.group(2)) for line in log.splitlines() if objective in line
                       for f in filters for m in f.finditer(line) if m.group(1).strip() == objective]  # fmt: skip
        if done[0] == "Failed":
            self.set_trial(ns, name, "Failed", message="the trial's job failed")
        elif not values_seen:
            self.set_trial(ns, name, "MetricsUnavailable", {objective: ("unavailable",) * 3}, "metrics unavailable")
        else:
            self.set_trial(ns, name, "Succeeded", {objective: (min(values_seen), max(values_seen), values_seen[-1])})
        self.update_experiment(ns, experiment)
        return self.get("trials", ns, name)

    def _reconcile_job(self, ns: str, name: str) -> None:
        """Kubernetes' Job controller, one pass: pods for what is left to do (at most
        ``parallelism`` active; an Indexed Job's by completion index), a failed pod replaced
        until more than ``backoffLimit`` failed (then the Job fails and its active pods are
        deleted), the status counted from the pods, Complete once ``completions`` succeeded."""
        doomed: list[str] = []
        with self.cond:
            job = self.get("jobs", ns, name)
            if job is None or job["metadata"].get("deletionTimestamp"):
                return
            status = job.setdefault("status", {})
            if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions") or []):
                return
            spec = job["spec"]
            if spec.get("suspend"):
                status["conditions"] = [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                         "message": "Job suspended", "lastTransitionTime": now()}]  # fmt: skip
                self._store("jobs", job, "MODIFIED")
                return
            indexed = spec.get("completionMode") == "Indexed"
            completions = spec.get("completions") if spec.get("completions") is not None else spec.get("parallelism", 1)
            parallelism = spec.get("parallelism", 1)
            backoff = spec.get("backoffLimit", 6)
            pods = [p for p in self.list("pods", ns, f"batch.kubernetes.io/job-name={name}")
                    if any(r.get("uid") == job["metadata"]["uid"] for r in p["metadata"].get("ownerReferences") or [])]
            phases = [p["status"]["phase"] for p in pods]
            active = [p for p in pods if p["status"]["phase"] in ("Pending", "Running")]
            failed = phases.count("Failed")
            if indexed:
                done = {int(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]) for p in pods
                        if p["status"]["phase"] == "Succeeded"}
                busy = {int(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]) for p in active}
                succeeded = len(done)
                todo = [i for i in range(completions) if i not in done and i not in busy]
            else:
                succeeded = phases.count("Succeeded")
                todo = [None] * max(0, completions - succeeded - len(active))
            status.setdefault("startTime", now())
            conditions = []
            if failed > backoff:
                conditions = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                               "message": "Job has reached the specified backoff limit", "lastTransitionTime": now()},
                              {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                               "message": "Job has reached the specified backoff limit", "lastTransitionTime": now()}]  # fmt: skip
                doomed = [p["metadata"]["name"] for p in active]
            elif succeeded >= completions:
                conditions = [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                               "message": "Reached expected number of succeeded pods", "lastTransitionTime": now()},
                              {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                               "message": "Reached expected number of succeeded pods", "lastTransitionTime": now()}]  # fmt: skip
                status["completionTime"] = now()
            else:
                for index in todo[: max(0, parallelism - len(active))]:
                    active.append(self._job_pod(ns, job, index))
            status.update(active=0 if conditions else len(active), succeeded=succeeded, failed=failed, terminating=0,
                          ready=0 if conditions else sum(p["status"]["phase"] == "Running" for p in active),
                          uncountedTerminatedPods={})  # fmt: skip
            if indexed:
                status["completedIndexes"] = _ranges(sorted(done))
            if conditions:
                status["conditions"] = conditions
            self._store("jobs", job, "MODIFIED")
        for pod in doomed:  # the failed Job deletes its active pods
            self._remove("pods", ns, pod)

    def _job_pod(self, ns: str, job: dict, index: int | None) -> dict:
        """A pod of ``job`` (of completion index ``index``), as the Job controller makes it, started."""
        name, template = job["metadata"]["name"], job["spec"]["template"]
        labels = {**(template.get("metadata") or {}).get("labels", {}), "batch.kubernetes.io/job-name": name,
                  "job-name": name, "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                  "controller-uid": job["metadata"]["uid"]}  # fmt: skip
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
        containers = []
        for c in template["spec"]["containers"]:
            c = {"args": [], "env": [], "resources": {}, "volumeMounts": [], **copy.deepcopy(c)}
            if index is not None:  # what the controller adds to every container of an Indexed Job
                c["env"].append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}})  # fmt: skip
            containers.append(c)
        pod_spec = {**copy.deepcopy(template["spec"]), "containers": containers}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            pod_spec["hostname"] = f"{name}-{index}"
        pod = self._new("pods", ns, {
            "metadata": {"name": f"{name}-{'' if index is None else f'{index}-'}{uuid.uuid4().hex[:5]}", "labels": labels,
                         "annotations": annotations, "ownerReferences": _owned_by(job)},
            "spec": pod_spec,
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [_container_status(containers[0]["name"], {"waiting": {"reason": "ContainerCreating"}})]},
        })  # fmt: skip
        self.runs[pod["metadata"]["uid"]] = _PodRun()
        threading.Thread(target=self._kubelet, args=(ns, pod), daemon=True).start()
        return pod

    # -- manual mode helpers: Jobs

    def add_job_pod(self, ns: str, job: str, index: int | None, phase: str, log: list[str] = (), exit_code: int | None = None) -> dict:
        """A pod of ``job`` (completion index ``index``) in ``phase``, with ``log`` as its log, as
        the Job controller labels it; nothing runs in it."""
        state = {"running": {"startedAt": now()}} if exit_code is None else {
            "terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed", "startedAt": now(), "finishedAt": now()}}  # fmt: skip
        obj = self._existing("jobs", ns, job)
        container = obj["spec"]["template"]["spec"]["containers"][0]["name"]
        labels = {"batch.kubernetes.io/job-name": job, "job-name": job, "batch.kubernetes.io/controller-uid": obj["metadata"]["uid"]}
        annotations = {}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        pod = self._new("pods", ns, {
            "metadata": {"name": f"{job}-{'' if index is None else f'{index}-'}{uuid.uuid4().hex[:5]}", "labels": labels,
                         "annotations": annotations, "ownerReferences": _owned_by(obj)},
            "spec": {"containers": [{"name": container, "image": "fake"}]},
            "status": {"phase": phase, "containerStatuses": [_container_status(container, state)]}})  # fmt: skip
        run = self.runs[pod["metadata"]["uid"]] = _PodRun()
        run.started, run.done = phase != "Pending", True
        run.lines = [(now(nano=True), line.encode()) for line in log]
        return pod

    def set_job_status(self, ns: str, name: str, **fields) -> dict:
        """Set fields of a Job's status as its controller would (``completedIndexes="0-2"``,
        ``succeeded=3``, ``active=1`` …)."""
        with self.cond:
            job = self._existing("jobs", ns, name)
            job.setdefault("status", {}).update(fields)
            return self._store("jobs", job, "MODIFIED")

    def set_job_condition(self, ns: str, name: str, kind: str, reason: str, message: str, status: str = "True") -> dict:
        """A condition of a Job (``Complete``, ``Failed``, ``Suspended`` …), as its controller sets it."""
        with self.cond:
            job = self._existing("jobs", ns, name)
            conditions = [c for c in (job.setdefault("status", {}).get("conditions") or []) if c["type"] != kind]
            job["status"]["conditions"] = conditions + [{"type": kind, "status": status, "reason": reason, "message": message,
                                                         "lastTransitionTime": now()}]  # fmt: skip
            return self._store("jobs", job, "MODIFIED")

    # -- PersistentVolumeClaims

    def add_pvc(self, ns: str, name: str, folder: Path, access_modes: tuple[str, ...] = ("ReadWriteMany",)) -> dict:
        """A Bound PersistentVolumeClaim whose volume is ``folder`` of this machine."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.claims[(ns, name)] = Path(folder)
        return self._new("persistentvolumeclaims", ns, {
            "metadata": {"name": name},
            "spec": {"accessModes": list(access_modes), "resources": {"requests": {"storage": "10Gi"}},
                     "storageClassName": "standard", "volumeMode": "Filesystem", "volumeName": f"pv-{uuid.uuid4().hex[:8]}"},
            "status": {"phase": "Bound", "accessModes": list(access_modes), "capacity": {"storage": "10Gi"}}})  # fmt: skip

    # -- KServe: InferenceServices

    def _patch_isvc(self, h, ns: str, name: str, body, content_type: str) -> None:
        if "merge-patch" not in content_type:
            raise ApiError(415, "UnsupportedMediaType", f"the fake does not support {content_type} on inferenceservices")
        with self.cond:
            old = self._existing("inferenceservices", ns, name)
            new = _merge_patch(old, body)
            new.pop("status", None)
            new, _ = self.isvcs.admit(new, False)
            patched = self._update("inferenceservices", old, new, spec_changed=new["spec"] != old["spec"])
        self._send(h, 200, patched)
        if self.run_pods and self.get("inferenceservices", ns, name):
            threading.Thread(target=self._reconcile_isvc, args=(ns, name), daemon=True).start()

    def _reconcile_isvc(self, ns: str, name: str) -> None:
        """KServe's controller, without pods: the new revision is Ready at once and the
        traffic follows ``canaryTrafficPercent`` between it and the last rolled-out one."""
        time.sleep(0.05)
        with self.cond:
            isvc = self.get("inferenceservices", ns, name)
            if isvc is None:
                return
            predictor = isvc["spec"]["predictor"]
            status = isvc.get("status") or {}
            comp = (status.get("components") or {}).get("predictor") or {}
            gen = isvc["metadata"]["generation"]
            revision = f"{name}-predictor-{gen:05d}"
            previous = comp.get("latestRolledoutRevision")
            pct = predictor.get("canaryTrafficPercent")
            if previous and pct is not None and pct < 100:
                traffic = [{"revisionName": revision, "percent": pct, "latestRevision": True, "tag": "latest"},
                           {"revisionName": previous, "percent": 100 - pct, "latestRevision": False, "tag": "prev"}]  # fmt: skip
                rolled = previous
            else:
                traffic = [{"revisionName": revision, "percent": 100, "latestRevision": True}]
                rolled = revision
            self._predictor_pods(isvc, [t["revisionName"] for t in traffic])
            components = {"predictor": {
                "latestCreatedRevision": revision, "latestReadyRevision": revision,
                "latestRolledoutRevision": rolled, "previousRolledoutRevision": previous if rolled != previous else comp.get("previousRolledoutRevision"),
                "traffic": traffic, "url": f"http://{name}-predictor.{ns}.example.com"}}  # fmt: skip
            # the transformer and explainer: a revision of their own each, Ready (as KServe reports them)
            for role in ("transformer", "explainer"):
                if role in isvc["spec"]:
                    old = (status.get("components") or {}).get(role) or {}
                    rev = old.get("latestCreatedRevision") if old.get("spec") == isvc["spec"][role] else f"{name}-{role}-{gen:05d}"
                    components[role] = {"latestCreatedRevision": rev, "latestReadyRevision": rev, "latestRolledoutRevision": rev,
                                        "traffic": [{"revisionName": rev, "percent": 100, "latestRevision": True}],
                                        "url": f"http://{name}-{role}.{ns}.example.com"}  # fmt: skip
            self.set_isvc_status(ns, name, ready=True, observed=gen, components=components)

    def _predictor_pods(self, isvc: dict, revisions: list[str]) -> None:
        """One Running predictor pod per revision taking traffic, labelled as KServe and
        Knative label them (RawDeployment: one Deployment, no revisions, no queue-proxy);
        the others go. Nothing runs in them: a test writes the model server's log with
        :meth:`write_log`."""
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        raw = (isvc["metadata"].get("annotations") or {}).get("serving.kserve.io/deploymentMode") == "RawDeployment"
        if raw:  # a rolling update of the Deployment: the new generation's pod replaces the old
            revisions = [f"{name}-predictor-gen{isvc['metadata']['generation']}"]
        have = self.list("pods", ns, f"serving.kserve.io/inferenceservice={name},component=predictor")
        keep = set()
        for pod in have:
            revision = pod["metadata"]["labels"].get("serving.knative.dev/revision") or pod["metadata"]["annotations"]["fake/revision"]
            if revision in revisions:
                keep.add(revision)
            else:
                self._remove("pods", ns, pod["metadata"]["name"])
        for revision in revisions:
            if revision in keep:
                continue
            labels = {"serving.kserve.io/inferenceservice": name, "component": "predictor"}
            if raw:
                labels["app"] = f"isvc.{name}-predictor"
                containers = ["kserve-container"]
                pod_name = f"{name}-predictor-{uuid.uuid4().hex[:9]}-{uuid.uuid4().hex[:5]}"
            else:
                labels.update({"serving.knative.dev/revision": revision, "app": revision})
                containers = ["kserve-container", "queue-proxy"]
                pod_name = f"{revision}-deployment-{uuid.uuid4().hex[:9]}-{uuid.uuid4().hex[:5]}"
            pod = self._new("pods", ns, {
                "metadata": {"name": pod_name, "labels": labels, "annotations": {"fake/revision": revision},
                             "ownerReferences": [{"apiVersion": isvc["apiVersion"], "kind": "InferenceService", "name": name,
                                                  "uid": isvc["metadata"]["uid"]}]},
                "spec": {"containers": [{"name": c, "image": "fake"} for c in containers]},
                "status": {"phase": "Running", "podIP": "127.0.0.1",
                           "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                           "containerStatuses": [_container_status(c, {"running": {"startedAt": now()}}) for c in containers]}})  # fmt: skip
            run = self.runs[pod["metadata"]["uid"]] = _PodRun()
            run.started = True

    def write_log(self, ns: str, pod: str, *lines: str) -> None:
        """Lines a pod's container printed (a served model's pod runs nothing of its own)."""
        obj = self._existing("pods", ns, pod)
        run = self.runs[obj["metadata"]["uid"]]
        with run.cond:
            run.lines.extend((now(nano=True), line.encode()) for line in lines)
            run.cond.notify_all()

    def set_isvc_status(self, ns: str, name: str, ready: bool, url: str | None = None, reason: str | None = None,
                        message: str = "", observed: int | None = None, components: dict | None = None) -> dict:
        """Set an InferenceService's status as KServe would (the manual mode's lever)."""
        with self.cond:
            isvc = self._existing("inferenceservices", ns, name)
            status = isvc.setdefault("status", {})
            status["observedGeneration"] = observed if observed is not None else isvc["metadata"]["generation"]
            status["url"] = url or f"http://{name}.{ns}.example.com"
            status["address"] = {"url": f"http://{name}.{ns}.svc.cluster.local"}
            if components is not None:
                status["components"] = components
            cond = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now()}
            if not ready:
                cond.update(reason=reason or "RevisionMissing", message=message)
            # KServe's per-component conditions: PredictorReady, TransformerReady, ExplainerReady
            parts = [{"type": f"{role.capitalize()}Ready", "status": "True" if ready else "False", "lastTransitionTime": now(),
                      **({} if ready else {"reason": reason or "RevisionMissing", "message": message})}
                     for role in ("predictor", "transformer", "explainer") if role in isvc["spec"]]  # fmt: skip
            status["conditions"] = [*parts, cond]
            return self._store("inferenceservices", isvc, "MODIFIED")

    def set_component_status(self, ns: str, name: str, role: str, ready: bool, reason: str = "", message: str = "") -> dict:
        """One component's condition (``TransformerReady`` …) as KServe reports it; the
        InferenceService is Ready only when every component is (the manual mode's lever)."""
        with self.cond:
            isvc = self._existing("inferenceservices", ns, name)
            conditions = [c for c in (isvc.setdefault("status", {}).get("conditions") or [])
                          if c["type"] not in (f"{role.capitalize()}Ready", "Ready")]  # fmt: skip
            part = {"type": f"{role.capitalize()}Ready", "status": "True" if ready else "False", "lastTransitionTime": now()}
            if not ready:
                part.update(reason=reason, message=message)
            everything = ready and all(c["status"] == "True" for c in conditions)
            overall = {"type": "Ready", "status": "True" if everything else "False", "lastTransitionTime": now()}
            if not everything:
                overall.update(reason=reason or "ComponentNotReady", message=message)
            isvc["status"]["conditions"] = [*conditions, part, overall]
            return self._store("inferenceservices", isvc, "MODIFIED")

    def set_condition(self, ns: str, name: str, kind: str, status: str, reason: str, message: str) -> None:
        with self.cond:
            tj = self._existing("trainjobs", ns, name)
            conditions = [c for c in (tj.setdefault("status", {}).get("conditions") or []) if c["type"] != kind]
            tj["status"]["conditions"] = conditions + [{"type": kind, "status": status, "reason": reason,
                                                        "message": message, "lastTransitionTime": now()}]  # fmt: skip
            self._store("trainjobs", tj, "MODIFIED")

    def add_pod(self, ns: str, trainjob: str, index: int, phase: str, log: list[str] = (), exit_code: int | None = None) -> dict:
        """A pod of ``trainjob``'s rank ``index`` in ``phase``, with ``log`` as its log."""
        state = {"running": {"startedAt": now()}} if exit_code is None else {
            "terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed", "startedAt": now(), "finishedAt": now()}}  # fmt: skip
        tj = self._existing("trainjobs", ns, trainjob)
        pod = self._new("pods", ns, {
            "metadata": {"name": f"{trainjob}-node-0-{index}-{uuid.uuid4().hex[:5]}",
                         "labels": {"jobset.sigs.k8s.io/jobset-name": trainjob, "jobset.sigs.k8s.io/replicatedjob-name": "node",
                                    "batch.kubernetes.io/job-completion-index": str(index)},
                         "ownerReferences": [{"apiVersion": tj["apiVersion"], "kind": "TrainJob", "name": trainjob, "uid": tj["metadata"]["uid"]}]},
            "spec": {"containers": [{"name": "node", "image": "fake"}]},
            "status": {"phase": phase, "containerStatuses": [_container_status("node", state)]}})  # fmt: skip
        run = self.runs[pod["metadata"]["uid"]] = _PodRun()
        run.started, run.done = phase != "Pending", True
        run.lines = [(now(nano=True), line.encode()) for line in log]
        return pod


def _verb(method: str, m, query: dict) -> str:
    """The API verb of a request (as kube-apiserver's audit log and metrics name it)."""
    collection = m is None or m.group(6) is None
    if method == "GET":
        return ("watch" if _go_bool(query.get("watch")) else "list") if collection else "get"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def _go_bool(text: str | None) -> bool:
    """A boolean query parameter as the API server reads it (Go's ``strconv.ParseBool``):
    kubernetes clients before v31 send Python's ``True``, later ones ``true``."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def _ranges(indexes: list[int]) -> str:
    """Sorted indexes as a Job's status writes them: ``"0-2,5,7-8"``."""
    parts, i = [], 0
    while i < len(indexes):
        j = i
        while j + 1 < len(indexes) and indexes[j + 1] == indexes[j] + 1:
            j += 1
        parts.append(str(indexes[i]) if i == j else f"{indexes[i]}-{indexes[j]}")
        i = j + 1
    return ",".join(parts)


def _dig(obj, *keys):
    for key in keys:
        obj = (obj or {}).get(key)
    return obj


def _owned_by(owner: dict) -> list[dict]:
    meta = owner["metadata"]
    return [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}]  # fmt: skip


def _pod_template(tj: dict, runtime: dict, nodes: int, master_port: int) -> dict:
    """The runtime's pod template, with the TrainJob's trainer fields and runtimePatches applied."""
    trainer = tj["spec"].get("trainer") or {}
    labels, volumes, mounts, env = {}, [], [], list(trainer.get("env") or [])
    for patch in tj["spec"].get("runtimePatches") or []:
        for job in _dig(patch, "trainingRuntimeSpec", "template", "spec", "replicatedJobs") or []:
            if job["name"] != runtime["job"]:
                continue
            template = _dig(job, "template", "spec", "template") or {}
            labels.update(_dig(template, "metadata", "labels") or {})
            volumes += _dig(template, "spec", "volumes") or []
            for c in _dig(template, "spec", "containers") or []:
                if c["name"] == runtime["container"]:
                    mounts += c.get("volumeMounts") or []
                    env += c.get("env") or []
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    env += [  # what the torch plugin of Trainer adds (the master is node 0; here on localhost)
        {"name": "PET_NNODES", "value": str(nodes)},
        {"name": "PET_NPROC_PER_NODE", "value": str(trainer.get("numProcPerNode") or "auto")},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": index}}},
        {"name": "PET_MASTER_ADDR", "value": "127.0.0.1"},
        {"name": "PET_MASTER_PORT", "value": str(master_port)},
    ]
    container = {
        "name": runtime["container"],
        "image": trainer.get("image") or runtime["image"],
        "command": trainer.get("command") or [],
        "args": trainer.get("args") or [],
        "env": env,
        "resources": trainer.get("resourcesPerNode") or {},
        "volumeMounts": mounts,
    }
    return {"labels": labels, "spec": {"restartPolicy": "Never", "volumes": volumes, "containers": [container]}}


def _field(pod: dict, path: str) -> str:
    """The value of a downward-API ``fieldRef``."""
    if m := re.fullmatch(r"metadata\.(annotations|labels)\['(.*)'\]", path):
        return (pod["metadata"].get(m.group(1)) or {}).get(m.group(2), "")
    return str(_dig(pod, *path.split(".")) or "")


def _container_status(name: str, state: dict, ready: bool = False) -> dict:
    return {"name": name, "image": "fake", "imageID": "", "ready": ready, "restartCount": 0, "state": state}


def _merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _rewrite(text: str, paths: dict) -> str:
    for mount in sorted(paths, key=len, reverse=True):
        text = re.sub(re.escape(mount.rstrip("/")) + r"(?=/|$|[^\w.-])", lambda _: str(paths[mount]), text)
    return text


def _chunk(h, data: bytes) -> None:
    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    h.wfile.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 3)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    try:  # grandchildren left in the group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _force_remove(func, path, _exc) -> None:
    os.chmod(os.path.dirname(path), 0o755)
    if os.path.isdir(path):
        os.chmod(path, 0o755)
    func(path)


def _running(tmp_path, monkeypatch, **options):
    fake = FakeKubernetes(Path(tempfile.mkdtemp(prefix="fake-k8s-")), **options).start()
    monkeypatch.setenv("KUBECONFIG", str(fake.write_kubeconfig(tmp_path / "kubeconfig", namespace="team-a")))
    monkeypatch.delenv("KFJUPYTER_NAMESPACE", raising=False)
    return fake


@pytest.fixture
def fake_k8s(tmp_path, monkeypatch):
    """A running FakeKubernetes whose controllers run pods; KUBECONFIG points at it (namespace ``team-a``)."""
    fake = _running(tmp_path, monkeypatch)
    yield fake
    fake.stop()


@pytest.fixture
def fake_k8s_manual(tmp_path, monkeypatch):
    """A FakeKubernetes that runs nothing: the test sets conditions and pods by hand."""
    fake = _running(tmp_path, monkeypatch, run_pods=False)
    yield fake
    fake.stop()


@pytest.fixture
def fake_k8s_kfjupyter(tmp_path, monkeypatch):
    """A running FakeKubernetes whose "image" has kfjupyter installed (this venv's), as a
    batch worker's or a model server component's image has; KUBECONFIG points at it."""
    fake = _running(tmp_path, monkeypatch, image_has_kfjupyter=True)
    yield fake
    fake.stop()
