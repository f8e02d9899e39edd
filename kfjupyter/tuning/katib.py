"""Katib ``Experiment`` manifests (kubeflow.org/v1beta1) for a tuning job, and their validation.

A study becomes an Experiment whose ``trialTemplate`` runs the captured program — the
bundle mounted from a ConfigMap, as for training — once per trial:

* a batch ``Job`` (container ``training``, ``python kf_bootstrap.py``) for one-process
  trials;
* a Kubeflow Trainer ``TrainJob`` (the training backend's manifest, ``numNodes`` =
  workers per trial) when each trial is distributed. Katib must list
  ``TrainJob.v1alpha1.trainer.kubeflow.org`` in its ``trialResources`` for that.

The trial's values reach the program as ``KFJUPYTER_PARAM_<name>=${trialParameters.<name>}``
(Katib substitutes them) and ``kfjupyter.param`` reads them. ``kfjupyter.report`` prints
``<RFC 3339 time> step=3 val_loss=0.25`` lines, which Katib's ``StdOut`` metrics
collector parses with the filter below (the timestamp orders them for medianstop).

Every Experiment is checked before it is sent (:func:`validate_experiment`) against
``#/components/schemas/v1beta1.Experiment`` of the copied ``katib-swagger.json`` —
strictly: an unknown field is an error, as it would be silently dropped — and against
the rules Katib's validating webhook enforces (see ``k8s/schemas/README.md``).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

from ..capture.bundle import BOOTSTRAP
from ..k8s.schema import SCHEMAS_DIR, ManifestError, check_metadata, structural_schema, Validator, validate_trainjob
from ..training.kubernetes import (
    BUNDLE_DIR,
    BUNDLE_VOLUME,
    OUTPUT_DIR,
    OUTPUT_VOLUME,
    configmap_name,
    env_entries,
    trainjob_manifest,
)
from ..training.spec import TrainSpec
from .spec import MEDIAN_MIN_TRIALS, MEDIAN_START_STEP, TuneSpec

KATIB_SWAGGER = SCHEMAS_DIR / "katib-v0.19.0" / "katib-swagger.json"
KATIB_GROUP = "kubeflow.org"
KATIB_VERSION = "v1beta1"
API_VERSION = f"{KATIB_GROUP}/{KATIB_VERSION}"
EXPERIMENTS = "experiments"
TRIALS = "trials"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
LABEL_JOB_ID = "kfjupyter.io/job-id"
LABEL_TRIAL = "kfjupyter.io/trial"
#: The trial parameter that carries the trial's name into its pods' labels.
TRIAL_NAME_PARAM = "kfjupyterTrialName"
#: Image of one-process trials when none is given: the torch runtime's image of Trainer v2.3.0.
DEFAULT_IMAGE = "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime"
CONTAINER = "training"
MAX_NAME_LENGTH = 40
#: Katib's StdOut collector: ``name=value`` pairs (its default filter, written out).
METRICS_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
CONDITION = 'status.conditions.#(type=="{}")#|#(status=="True")#'
STRATEGY = {("best", "minimize"): "min", ("best", "maximize"): "max", ("latest", "minimize"): "latest",
            ("latest", "maximize"): "latest"}  # fmt: skip
#: Katib's suggestion services that accept a ``random_state`` setting.
SEEDED = ("random", "tpe", "multivariate-tpe", "cmaes")
KNOWN_ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "cmaes", "sobol", "hyperband",
                    "bayesianoptimization", "enas", "darts", "pbt")  # fmt: skip
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")
_META_KEYS = ("Name", "Namespace", "Kind", "APIVersion")


def _env(spec: TuneSpec) -> dict[str, str]:
    env = dict(spec.env)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "KFJUPYTER_BUNDLE": BUNDLE_DIR,
            "KFJUPYTER_OUTPUT_DIR": OUTPUT_DIR,
            "KFJUPYTER_PRINT_METRICS": "1",
            "KFJUPYTER_METRICS_TIMESTAMPS": "1",
            "KFJUPYTER_TUNE_SPACE": spec.space.env_json(),
        }
    )
    for name in spec.space:
        env[f"KFJUPYTER_PARAM_{name}"] = "${trialParameters.%s}" % name
    return env


def _resources(spec: TuneSpec) -> dict:
    resources: dict[str, str] = {}
    if spec.cpu:
        resources["cpu"] = spec.cpu
    if spec.memory:
        resources["memory"] = spec.memory
    if spec.gpus:
        resources["nvidia.com/gpu"] = str(spec.gpus)
    return {"requests": dict(resources), "limits": dict(resources)} if resources else {}


#: The name of a trial's run in MLflow: the Trial's name (Katib substitutes it).
TRIAL_RUN_NAME = "${trialParameters.%s}" % TRIAL_NAME_PARAM


def batch_job_template(job_id: str, spec: TuneSpec, items: list[dict], tracking=None) -> dict:
    """The trial as a batch Job: one process running the bundle (with ``tracking``, a
    :class:`kfjupyter.tracking.pods.PodTracking`: sending its run to MLflow)."""
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or DEFAULT_IMAGE,
        "command": ["python", f"{BUNDLE_DIR}/{BOOTSTRAP}"],
        "env": env_entries(_env(spec), tracking, run_name=TRIAL_RUN_NAME),
        "volumeMounts": [
            {"name": BUNDLE_VOLUME, "mountPath": BUNDLE_DIR, "readOnly": True},
            {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_DIR},
        ],
    }
    if resources := _resources(spec):
        container["resources"] = resources
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {LABEL_JOB_ID: job_id, LABEL_TRIAL: "${trialParameters.%s}" % TRIAL_NAME_PARAM},
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [
                        {"name": BUNDLE_VOLUME, "configMap": {"name": configmap_name(job_id), "items": items}},
                        {"name": OUTPUT_VOLUME, "emptyDir": {}},
                    ],
                },
            },
        },
    }


def trainjob_template(job_id: str, spec: TuneSpec, items: list[dict], tracking=None) -> dict:
    """The trial as a TrainJob of ``workers_per_trial`` nodes (the training backend's manifest)."""
    env = {k: v for k, v in _env(spec).items() if k not in ("KFJUPYTER_BUNDLE", "KFJUPYTER_OUTPUT_DIR",
                                                             "KFJUPYTER_PRINT_METRICS", "PYTHONDONTWRITEBYTECODE")}  # fmt: skip
    train = TrainSpec(
        name=job_id, workers=spec.workers_per_trial, gpus=spec.gpus, cpu=spec.cpu, memory=spec.memory,
        image=spec.image, env=env, backend="kubernetes",
    )  # fmt: skip
    manifest = trainjob_manifest(job_id, "default", train, items, tracking=tracking, run_name=TRIAL_RUN_NAME)
    validate_trainjob(manifest)  # as Trainer would see it, under the name Katib will give it
    template = copy.deepcopy(manifest)
    del template["metadata"]["name"], template["metadata"]["namespace"]
    patch = template["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    patch["template"]["spec"]["template"]["metadata"]["labels"][LABEL_TRIAL] = "${trialParameters.%s}" % TRIAL_NAME_PARAM
    return template


def experiment_manifest(job_id: str, namespace: str, spec: TuneSpec, items: list[dict], tracking=None) -> dict:
    distributed = spec.workers_per_trial > 1
    template = trainjob_template if distributed else batch_job_template
    trial_spec = template(job_id, spec, items, tracking)
    trial_template: dict[str, Any] = {
        "primaryContainerName": "node" if distributed else CONTAINER,
        "successCondition": CONDITION.format("Complete"),
        "failureCondition": CONDITION.format("Failed"),
        "trialParameters": [
            {"name": name, "reference": name, "description": p.describe()} for name, p in spec.space.items()
        ] + [{"name": TRIAL_NAME_PARAM, "reference": "${trialSpec.Name}", "description": "the trial's name"}],
        "trialSpec": trial_spec,
    }
    if distributed:  # metrics come from rank 0
        trial_template["primaryPodLabels"] = {
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "batch.kubernetes.io/job-completion-index": "0",
        }
    algorithm: dict[str, Any] = {"algorithmName": spec.algorithm}
    if spec.seed is not None and spec.algorithm in SEEDED:
        algorithm["algorithmSettings"] = [{"name": "random_state", "value": str(spec.seed)}]
    body: dict[str, Any] = {
        "objective": {
            "type": spec.direction,
            "objectiveMetricName": spec.objective,
            "metricStrategies": [{"name": spec.objective, "value": STRATEGY[(spec.strategy, spec.direction)]}],
        },
        "algorithm": algorithm,
        "parallelTrialCount": spec.parallel,
        "maxTrialCount": spec.trials,
        "maxFailedTrialCount": spec.max_failed,
        "parameters": [p.to_katib() for p in spec.space.values()],
        "metricsCollectorSpec": {
            "collector": {"kind": "StdOut"},
            "source": {"filter": {"metricsFormat": [METRICS_FILTER]}},
        },
        "resumePolicy": "Never",
        "trialTemplate": trial_template,
    }
    if spec.early_stopping == "median":
        body["earlyStopping"] = {
            "algorithmName": "medianstop",
            "algorithmSettings": [
                {"name": "min_trials_required", "value": str(MEDIAN_MIN_TRIALS)},
                {"name": "start_step", "value": str(MEDIAN_START_STEP)},
            ],
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": {
            "name": job_id,
            "namespace": namespace,
            "labels": {LABEL_JOB_ID: job_id, "app.kubernetes.io/managed-by": "kfjupyter"},
        },
        "spec": body,
    }


# --------------------------------------------------------------------------- validation


@functools.lru_cache(maxsize=None)
def _swagger_schemas() -> dict:
    with open(KATIB_SWAGGER, "rb") as fh:
        return json.load(fh)["components"]["schemas"]


@functools.lru_cache(maxsize=None)
def resolved_schema(name: str) -> dict:
    """A swagger component with every ``$ref`` inlined, as the structural validator of
    :mod:`kfjupyter.k8s.schema` reads schemas (:func:`~kfjupyter.k8s.schema.structural_schema`)."""
    return structural_schema(_swagger_schemas(), name)


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def validate_experiment(manifest: dict) -> dict:
    """Return ``manifest`` if Katib and the API server would accept it; raise :class:`ManifestError`."""
    v = Validator()
    meta = manifest.get("metadata") if isinstance(manifest, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(manifest, dict):
        raise ManifestError("Experiment", name, [("", "an Experiment must be an object")])
    if manifest.get("apiVersion") != API_VERSION:
        v.error("apiVersion", f"expected {API_VERSION}, got {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != "Experiment":
        v.error("kind", f"expected Experiment, got {manifest.get('kind')!r}")
    check_metadata(meta, v, "label")
    if isinstance(name, str):
        if len(name) > MAX_NAME_LENGTH:
            v.error("metadata.name", f"{name!r} is longer than Katib's {MAX_NAME_LENGTH} characters ({len(name)})")
        if not _NAME.match(name):
            v.error("metadata.name", f"{name!r} must start with a letter: lower-case letters, digits and '-'")
    v.validate(manifest, resolved_schema("v1beta1.Experiment"), "")
    spec = manifest.get("spec")
    if isinstance(spec, dict):
        _katib_rules(spec, v)
    if v.problems:
        raise ManifestError("Experiment", name, v.problems)
    return manifest


def _katib_rules(spec: dict, v: Validator) -> None:
    """What Katib's validating webhook and the schema README add to the schema."""
    max_trials, parallel, max_failed = (spec.get(k) for k in ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount"))
    ints = {k: x for k, x in (("maxTrialCount", max_trials), ("parallelTrialCount", parallel),
                              ("maxFailedTrialCount", max_failed)) if isinstance(x, int)}  # fmt: skip
    if ints.get("maxTrialCount", 1) <= 0:
        v.error("spec.maxTrialCount", "must be greater than 0")
    if ints.get("parallelTrialCount", 1) <= 0:
        v.error("spec.parallelTrialCount", "must be greater than 0")
    if ints.get("maxFailedTrialCount", 0) < 0:
        v.error("spec.maxFailedTrialCount", "should not be less than 0")
    if "maxTrialCount" in ints:
        for key in ("parallelTrialCount", "maxFailedTrialCount"):
            if key in ints and ints[key] > ints["maxTrialCount"]:
                v.error(f"spec.{key}", f"{ints[key]} should be less than or equal to spec.maxTrialCount ({ints['maxTrialCount']})")
    objective = spec.get("objective") or {}
    if objective.get("type") not in ("minimize", "maximize"):
        v.error("spec.objective.type", f"{objective.get('type')!r} must be minimize or maximize")
    if not objective.get("objectiveMetricName"):
        v.error("spec.objective.objectiveMetricName", "must be specified")
    for i, strategy in enumerate(objective.get("metricStrategies") or []):
        if isinstance(strategy, dict) and strategy.get("value") not in ("min", "max", "latest"):
            v.error(f"spec.objective.metricStrategies[{i}].value", f"{strategy.get('value')!r} is not min, max or latest")
    algorithm = (spec.get("algorithm") or {}).get("algorithmName")
    if algorithm not in KNOWN_ALGORITHMS:
        v.error("spec.algorithm.algorithmName", f"{algorithm!r} is not an algorithm Katib knows")
    early = spec.get("earlyStopping")
    if early is not None and (early or {}).get("algorithmName") != "medianstop":
        v.error("spec.earlyStopping.algorithmName", f"{(early or {}).get('algorithmName')!r}: Katib's early stopping is medianstop")
    if spec.get("resumePolicy") not in (None, "", "Never", "LongRunning", "FromVolume"):
        v.error("spec.resumePolicy", f"{spec.get('resumePolicy')!r} is not a ResumePolicyType")
    params = spec.get("parameters") or []
    if not params:
        v.error("spec.parameters", "spec.parameters must be specified")
    names = set()
    for i, p in enumerate(params):
        if not isinstance(p, dict):
            continue
        path, kind, space = f"spec.parameters[{i}]", p.get("parameterType"), p.get("feasibleSpace") or {}
        names.add(p.get("name"))
        if kind not in ("double", "int", "categorical", "discrete"):
            v.error(f"{path}.parameterType", f"{kind!r} is not supported")
        if not space:
            v.error(f"{path}.feasibleSpace", "feasibleSpace must be specified")
        if space.get("distribution") not in (None, "", "uniform", "logUniform", "normal", "logNormal"):
            v.error(f"{path}.feasibleSpace.distribution", f"{space.get('distribution')!r} is not supported")
        if kind in ("double", "int"):
            if space.get("list"):
                v.error(f"{path}.feasibleSpace.list", f"not supported for parameterType {kind}")
            low, high = _number(space.get("min")), _number(space.get("max"))
            if low is None or high is None:
                v.error(f"{path}.feasibleSpace", f"min and max must be numbers given as text for {kind}")
            elif low >= high:
                v.error(f"{path}.feasibleSpace", f"min {space.get('min')!r} must be less than max {space.get('max')!r}")
            if "step" in space and (_number(space["step"]) or 0) <= 0:
                v.error(f"{path}.feasibleSpace.step", f"{space['step']!r} must be a positive number")
        elif kind in ("categorical", "discrete"):
            if any(k in space for k in ("min", "max", "step")):
                v.error(f"{path}.feasibleSpace", f"min, max and step are not supported for parameterType {kind}")
            if not space.get("list"):
                v.error(f"{path}.feasibleSpace.list", f"a list of values is required for parameterType {kind}")
            if kind == "discrete" and any(_number(x) is None for x in space.get("list") or []):
                v.error(f"{path}.feasibleSpace.list", "discrete values must be numbers given as text")
        if (spec.get("algorithm") or {}).get("algorithmName") == "grid" and kind == "double" and "step" not in space:
            v.error(f"{path}.feasibleSpace.step", "the grid algorithm needs a step for a double parameter")
    collector = spec.get("metricsCollectorSpec") or {}
    kind = (collector.get("collector") or {}).get("kind", "StdOut")
    if kind not in ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None", "Push"):
        v.error("spec.metricsCollectorSpec.collector.kind", f"{kind!r} is not a metrics collector kind")
    for i, fmt in enumerate(((collector.get("source") or {}).get("filter") or {}).get("metricsFormat") or []):
        try:
            compiled = re.compile(fmt)
        except re.error as exc:
            v.error(f"spec.metricsCollectorSpec.source.filter.metricsFormat[{i}]", f"invalid filter: {exc}")
            continue
        if compiled.groups < 2:
            v.error(f"spec.metricsCollectorSpec.source.filter.metricsFormat[{i}]", "two top subexpressions are required")
    _trial_template_rules(spec.get("trialTemplate"), names, v)


def _trial_template_rules(template: Any, parameter_names: set, v: Validator) -> None:
    path = "spec.trialTemplate"
    if not isinstance(template, dict):
        v.error(path, "must be specified")
        return
    if not template.get("primaryContainerName"):
        v.error(f"{path}.primaryContainerName", "must be specified")
    if not template.get("successCondition") or not template.get("failureCondition"):
        v.error(path, "successCondition and failureCondition must be specified")
    trial_spec = template.get("trialSpec")
    if not isinstance(trial_spec, dict):
        v.error(f"{path}.trialSpec", "must be specified (kfjupyter does not use configMap templates)")
        return
    text = json.dumps(trial_spec)
    declared = []
    for i, p in enumerate(template.get("trialParameters") or []):
        pname, ref = p.get("name"), p.get("reference")
        if not pname or not ref or "{" in pname or "}" in pname:
            v.error(f"{path}.trialParameters[{i}]", "name and reference must be given; name must not contain '{' or '}'")
            continue
        if pname in declared:
            v.error(f"{path}.trialParameters[{i}].name", f"{pname!r} is duplicated")
        declared.append(pname)
        meta = re.fullmatch(r"\$\{trialSpec\.(\w+)(\[.*\])?\}", ref)
        if not (meta and meta.group(1) in (*_META_KEYS, "Labels", "Annotations")) and ref not in parameter_names:
            v.error(f"{path}.trialParameters[{i}].reference", f"{ref!r} is not in spec.parameters")
        if "${trialParameters.%s}" % pname not in text:
            v.error(f"{path}.trialParameters[{i}].name", f"{pname!r} is not used in spec.trialTemplate.trialSpec")
    for used in sorted(set(_PLACEHOLDER.findall(text)) - set(declared)):
        v.error(f"{path}.trialSpec", "${trialParameters.%s} is not in spec.trialTemplate.trialParameters" % used)
    meta = trial_spec.get("metadata") or {}
    if meta.get("name") or meta.get("namespace"):
        v.error(f"{path}.trialSpec.metadata", "metadata.name and metadata.namespace must be omitted")
    if not trial_spec.get("apiVersion") or not trial_spec.get("kind"):
        v.error(f"{path}.trialSpec", "apiVersion and kind must be specified")
    substituted = json.loads(_PLACEHOLDER.sub("x", text))
    if (trial_spec.get("apiVersion"), trial_spec.get("kind")) == ("batch/v1", "Job"):
        _batch_job_rules(substituted, f"{path}.trialSpec", v)
    elif trial_spec.get("kind") == "TrainJob":
        named = copy.deepcopy(substituted)
        named.setdefault("metadata", {})["name"] = "trial-x"
        try:
            validate_trainjob(named)
        except ManifestError as exc:
            for where, problem in exc.problems:
                v.error(f"{path}.trialSpec.{where}", problem)


_JOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "backoffLimitPerIndex", "completionMode", "completions",
    "managedBy", "manualSelector", "maxFailedIndexes", "parallelism", "podFailurePolicy",
    "podReplacementPolicy", "selector", "successPolicy", "suspend", "template", "ttlSecondsAfterFinished",
}  # fmt: skip


def _batch_job_rules(job: dict, path: str, v: Validator) -> None:
    """Katib converts a batch Job template to the Go type and rejects what does not survive."""
    for key in job:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            v.error(f"{path}.{key}", f"unknown field {key!r} of a batch Job")
    spec = job.get("spec") or {}
    for key in spec:
        if key not in _JOB_SPEC_FIELDS:
            v.error(f"{path}.spec.{key}", f"unknown field {key!r} of a JobSpec")
    template = spec.get("template")
    if not isinstance(template, dict):
        v.error(f"{path}.spec.template", "required field is missing")
        return
    probe = Validator()
    probe.validate(template, resolved_schema("io.k8s.api.core.v1.PodTemplateSpec"), f"{path}.spec.template")
    for where, problem in probe.problems:
        v.error(where, problem)
    restart = (template.get("spec") or {}).get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        v.error(f"{path}.spec.template.spec.restartPolicy", f"{restart!r}: a Job's pods restart Never or OnFailure")


def load_swagger_path() -> Path:
    return KATIB_SWAGGER
