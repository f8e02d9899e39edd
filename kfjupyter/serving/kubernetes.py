"""The Kubernetes serving engine: a KServe ``InferenceService`` (serving.kserve.io/v1beta1).

The manifest names the registry artifact (``predictor.model.modelFormat`` + ``storageUri``),
resources, min/max replicas, the canary percent and the deployment-mode annotation, and
is validated before it is sent: strictly against the ``openAPIV3Schema`` of the vendored
KServe v0.20.0 CRD (``kfjupyter/k8s/schemas/kserve-v0.20.0/``), plus the rules of KServe's
validating webhook that the schema does not show (see ``schemas/README.md``).

A canary follows KServe's model: the InferenceService names the new version with
``canaryTrafficPercent``; KServe keeps the last rolled-out revision for the rest (on the
first rollout there is none: the percent would be ignored). So a canary deploy creates
the service with the primary version and returns; the first look at the endpoint
(:meth:`~KubernetesEndpointBackend.observe`, whoever asks: ``deploy(wait=True)``, a status
read, the sidebar) that finds the primary Ready and rolled out patches the canary in.
``promote`` drops the percent (the canary takes it all); ``rollback`` patches the previous
version back. Followers watch the InferenceService (:mod:`kfjupyter.k8s.observe`).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Iterator

from .. import status as st
from ..errors import BackendError, InvalidOptionError
from ..k8s.observe import Changes, deletion
from ..k8s.schema import SCHEMAS_DIR, ManifestError, check_metadata, Validator, load_crd_schema
from ..runtime.engine import Channel, Channels, EngineBase, Features
from ..status import Observation
from ..validation import check_quantity

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ISVC_CRD = SCHEMAS_DIR / "kserve-v0.20.0" / "serving.kserve.io_inferenceservices.yaml"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODES = ("Serverless", "RawDeployment")
#: KServe's webhook: InferenceService names are DNS-1035 labels (start with a letter)
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: URI schemes KServe's storage initializer downloads from
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "hf://", "https://", "http://", "oci://", "hdfs://", "webhdfs://")
#: the serving runtimes' modelFormat names (the registry's formats are named after them)
MODEL_FORMATS = {"sklearn": "sklearn", "xgboost": "xgboost", "pytorch": "pytorch", "onnx": "onnx"}
#: the model server's container in a predictor pod, and Knative's label of a pod's revision
SERVER_CONTAINER = "kserve-container"
REVISION_LABEL = "serving.knative.dev/revision"


@functools.lru_cache(maxsize=1)
def isvc_schema() -> dict:
    return load_crd_schema(ISVC_CRD, VERSION)


def storage_uri(version: dict) -> str:
    uri = version.get("uri") or ""
    if not uri.startswith(STORAGE_SCHEMES):
        raise InvalidOptionError(
            f"version {version['ref']} is stored at {uri!r}, which a cluster cannot read: register it in an "
            "artifact store the cluster can reach (s3://, gs://, pvc:// …) or pass storage_uri= (canary_storage_uri=)"
        )
    return uri


def _resources(resources: dict | None) -> dict | None:
    if not resources:
        return None
    unknown = set(resources) - {"requests", "limits"}
    if unknown:
        raise InvalidOptionError(f"resources takes 'requests' and 'limits', not {sorted(unknown)}")
    return {kind: {k: check_quantity(v, f"resources.{kind}.{k}") for k, v in values.items()}
            for kind, values in resources.items()}


#: where a component's files (its captured bundle, its server.json) are mounted in its container
COMPONENTS_DIR = "/opt/kfjupyter/components"
COMPONENTS_VOLUME = "kfjupyter-components"
#: the port KServe sends a component's traffic to
COMPONENT_PORT = 8080


def component_files(job_id: str, spec: dict, namespace: str, job_dir: Path) -> dict[str, bytes]:
    """The files of the endpoint's components from notebook code, as their containers see
    them under :data:`COMPONENTS_DIR`: ``ROLE/bundle/…`` (captured as for a training job) and
    ``ROLE/server.json`` (the model server's config: KServe's hosts of the predictor and
    the explainer, no token: the cluster's own auth applies)."""
    import json as _json

    from ..capture.bundle import Bundle

    files: dict[str, bytes] = {}
    name = spec["name"]
    for role in ("transformer", "explainer"):
        comp = spec.get(role)
        if not comp:
            continue
        if comp.get("kind") != "code":
            raise InvalidOptionError(f"{role}={comp.get('label')!r} runs on local endpoints; on Kubernetes pass notebook code")
        for path, content in Bundle(Path(job_dir) / comp["bundle"]).files().items():
            files[f"{role}/bundle/{path}"] = content
        config = {"role": role, "name": name, "port": COMPONENT_PORT, "host": "0.0.0.0", "token": None, "dir": None,
                  "label": comp.get("label"), "kind": "code", "bundle": f"{COMPONENTS_DIR}/{role}/bundle",
                  "predictor_url": f"http://{name}-predictor.{namespace}",
                  "explainer_url": f"http://{name}-explainer.{namespace}" if spec.get("explainer") else None}  # fmt: skip
        files[f"{role}/server.json"] = _json.dumps(config, indent=1).encode()
    return files


def _component(role: str, spec: dict, items: list[dict], configmap: str) -> dict:
    image = spec.get("image")
    if not image:
        raise InvalidOptionError(
            f"the {role} runs the notebook's code in an image with kfjupyter and kserve installed: pass image= "
            "(or set KFJUPYTER_IMAGE / c.KFJupyter.image)"
        )
    container = {
        "name": SERVER_CONTAINER,
        "image": image,
        "command": ["python", "-m", "kfjupyter.serving.server", f"{COMPONENTS_DIR}/{role}"],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],  # the files are mounted read-only
        "ports": [{"containerPort": COMPONENT_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": COMPONENTS_VOLUME, "mountPath": COMPONENTS_DIR, "readOnly": True}],
    }
    mine = [i for i in items if i["path"].startswith(f"{role}/")]
    return {"containers": [container],
            "volumes": [{"name": COMPONENTS_VOLUME, "configMap": {"name": configmap, "items": mine}}]}  # fmt: skip


def build_isvc(job_id: str, spec: dict, namespace: str, version: dict | None = None,
               canary_percent: int | None = None, items: list[dict] | None = None) -> dict:
    """The InferenceService serving ``version`` (default: the spec's primary version), with
    the spec's transformer and explainer (their files: the ConfigMap's volume ``items``),
    KServe's logger and batcher on the predictor."""
    version = version or spec["version"]
    fmt = version["format"]
    if fmt not in MODEL_FORMATS:
        raise InvalidOptionError(
            f"version {version['ref']} has format {fmt!r}: a Kubernetes endpoint serves "
            f"{', '.join(MODEL_FORMATS)} (KServe runtimes); serve a custom model locally"
        )
    model = {"modelFormat": {"name": MODEL_FORMATS[fmt]}, "storageUri": storage_uri(version)}
    if res := _resources(spec.get("resources")):
        model["resources"] = res
    predictor: dict = {"model": model}
    if spec.get("min_replicas") is not None:
        predictor["minReplicas"] = spec["min_replicas"]
    if spec.get("max_replicas") is not None:
        predictor["maxReplicas"] = spec["max_replicas"]
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    if spec.get("log"):
        predictor["logger"] = {"mode": spec["log"], "url": spec.get("log_sink")}
    batcher = {k: spec[f] for k, f in (("maxBatchSize", "max_batch_size"), ("maxLatency", "max_latency_ms")) if spec.get(f)}
    if batcher:
        predictor["batcher"] = batcher
    components = {}
    for role in ("transformer", "explainer"):
        if spec.get(role):
            from ..training.kubernetes import configmap_name

            components[role] = _component(role, spec, items or [], configmap_name(job_id))
    annotations = {"kfjupyter.io/model-version": version["ref"]}
    if spec.get("deployment_mode"):
        annotations[MODE_ANNOTATION] = spec["deployment_mode"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": spec["name"],
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kfjupyter", "kfjupyter.io/job-id": job_id},
            "annotations": annotations,
        },
        "spec": {"predictor": predictor, **components},
    }


def validate_isvc(manifest: dict) -> dict:
    """Return ``manifest`` if the API server (and KServe's webhook) would accept it."""
    v = Validator()
    name = (manifest.get("metadata") or {}).get("name")
    if manifest.get("apiVersion") != f"{GROUP}/{VERSION}":
        v.error("apiVersion", f"expected {GROUP}/{VERSION}, got {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != "InferenceService":
        v.error("kind", f"expected InferenceService, got {manifest.get('kind')!r}")
    check_metadata(manifest.get("metadata"), v, "label")
    if isinstance(name, str) and not _ISVC_NAME.match(name):
        v.error("metadata.name", f"{name!r}: an InferenceService name starts with a letter (DNS-1035 label)")
    v.validate(manifest, isvc_schema(), "")
    predictor = ((manifest.get("spec") or {}).get("predictor")) or {}
    pct = predictor.get("canaryTrafficPercent")
    if isinstance(pct, int) and not 0 <= pct <= 100:
        v.error("spec.predictor.canaryTrafficPercent", f"must be between 0 and 100, got {pct}")
    lo, hi = predictor.get("minReplicas"), predictor.get("maxReplicas")
    if isinstance(lo, int) and lo < 0:
        v.error("spec.predictor.minReplicas", "cannot be less than 0")
    if isinstance(hi, int) and hi < 0:
        v.error("spec.predictor.maxReplicas", "cannot be less than 0")
    if isinstance(lo, int) and isinstance(hi, int) and hi and lo > hi:
        v.error("spec.predictor.minReplicas", f"{lo} is greater than maxReplicas {hi}")
    implementations = [k for k in ("model", "sklearn", "xgboost", "pytorch", "onnx", "tensorflow", "triton",
                                   "lightgbm", "paddle", "pmml", "huggingface") if k in predictor]
    if len(implementations) + (1 if predictor.get("containers") else 0) != 1:
        v.error("spec.predictor", "exactly one predictor implementation is required")
    logger = predictor.get("logger")
    if isinstance(logger, dict) and not str(logger.get("url") or "").startswith(("http://", "https://")):
        v.error("spec.predictor.logger.url", f"the logger's sink must be an http(s) URL, got {logger.get('url')!r}")
    for role in ("transformer", "explainer"):
        comp = ((manifest.get("spec") or {}).get(role)) or None
        if comp is not None and len(comp.get("containers") or []) + (1 if comp.get("art") else 0) != 1:
            v.error(f"spec.{role}", "exactly one implementation is required (one container)")
    mode = ((manifest.get("metadata") or {}).get("annotations") or {}).get(MODE_ANNOTATION)
    if mode is not None and mode not in DEPLOYMENT_MODES:
        v.error(f"metadata.annotations[{MODE_ANNOTATION!r}]", f"{mode!r} is not one of {', '.join(DEPLOYMENT_MODES)}")
    if v.problems:
        raise ManifestError("InferenceService", name, v.problems)
    return manifest


def _canary_due(spec: dict, obj: dict) -> bool:
    """The endpoint has a canary that the InferenceService does not carry yet, and the
    primary is rolled out (KServe splits the traffic between the last rolled-out revision
    and the spec): time to patch the canary in."""
    canary = spec.get("canary")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    predictor = ((obj.get("spec") or {}).get("predictor")) or {}
    rolled = (obj.get("status") or {}).get("observedGeneration", 0) >= (obj.get("metadata") or {}).get("generation", 0)
    return bool(canary) and rolled and "canaryTrafficPercent" not in predictor \
        and annotations.get("kfjupyter.io/model-version") == (spec.get("version") or {}).get("ref")


COMPONENT_ROLES = ("transformer", "explainer")


def component_state(obj: dict, role: str) -> tuple[bool, str | None, str | None] | None:
    """KServe's ``TransformerReady`` / ``ExplainerReady`` condition: (ready, reason, message)."""
    kind = f"{role.capitalize()}Ready"
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status") == "True", cond.get("reason"), cond.get("message")
    return None


def _not_ready_component(obj: dict) -> str:
    """"the transformer is not ready (…); " when a component (not the predictor, which the
    service's own condition speaks of) holds the service back."""
    for role in COMPONENT_ROLES:
        state = component_state(obj, role)
        if state is not None and not state[0]:
            return f"the {role} is not ready ({': '.join(p for p in state[1:] if p)}); "
    return ""


def _ready(obj: dict) -> tuple[bool, str | None, str | None]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True", cond.get("reason"), cond.get("message")
    return False, None, None


PRIMARY = Channel("server/primary", "primary", rank=0, child="primary")
CANARY = Channel("server/canary", "canary", rank=1, child="canary")


class KubernetesEndpointBackend(EngineBase):
    """The ``("endpoint", "kubernetes")`` engine. Channels: ``server/primary`` (a predictor
    pod of the primary revision) and, with a canary, ``server/canary``."""

    kind = "endpoint"
    name = "kubernetes"
    features = Features(children=True, changes="watch")
    #: the model runtime an InferenceService names in Kubeflow Model Registry: KServe's, the
    #: ServingRuntime left to KServe's selection by ``modelFormat``
    runtime = "kserve"

    def serving_environment(self, info: dict) -> str | None:
        """Where Kubeflow Model Registry records the deployment: the namespace."""
        return info.get("namespace")

    def _clients(self, namespace: str | None = None):
        from ..k8s.client import connect

        return connect(namespace)

    def validate(self, spec: dict, items: list[dict] | None = None) -> None:
        """Build and check the manifest(s) before anything is sent."""
        if spec.get("log") and (spec.get("log_sample") or 1) < 1:
            raise InvalidOptionError("KServe's logger logs every request: log_sample applies to local endpoints")
        validate_isvc(build_isvc("check", spec, spec.get("namespace") or "default", items=items))
        if spec.get("canary"):
            validate_isvc(build_isvc("check", spec, spec.get("namespace") or "default", spec["canary"], spec["canary_percent"],
                                     items=items))  # fmt: skip

    def _get(self, info: dict) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        k8s = self._clients(info["namespace"])
        try:
            return k8s.custom.get_namespaced_custom_object(GROUP, VERSION, info["namespace"], PLURAL, info["name"])
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise BackendError(f"cannot read InferenceService {info['name']}: {exc.reason}") from exc

    def _patch(self, info: dict, manifest: dict) -> None:
        from kubernetes.client.exceptions import ApiException

        from ..k8s.client import merge_patch

        k8s = self._clients(info["namespace"])
        body = {"metadata": {"annotations": manifest["metadata"]["annotations"]},
                "spec": {"predictor": {**manifest["spec"]["predictor"],
                                       "canaryTrafficPercent": manifest["spec"]["predictor"].get("canaryTrafficPercent")}}}
        try:
            merge_patch(k8s.custom.patch_namespaced_custom_object, GROUP, VERSION, info["namespace"], PLURAL, info["name"], body)
        except ApiException as exc:
            raise BackendError(f"the API server refused the InferenceService change: {exc.status} {exc.reason}: {exc.body}") from exc

    def changes(self, job_id: str, info: dict) -> Changes:
        """A watch of the InferenceService (what :meth:`observe` reads)."""
        k8s = self._clients(info["namespace"])
        call = functools.partial(k8s.custom.list_namespaced_custom_object, GROUP, VERSION, info["namespace"], PLURAL)
        return Changes().watch(call, field_selector=f"metadata.name={info['name']}")

    def submit(self, job_id: str, spec, job_dir) -> dict:
        from kubernetes.client.exceptions import ApiException

        from .api import HOOKS

        spec = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        from ..k8s.schema import validate_configmap
        from ..training.kubernetes import bundle_configmap

        if (Path(job_dir) / HOOKS).exists():
            raise InvalidOptionError("model_class/preprocess/postprocess apply to local endpoints only: pass transformer= "
                                     "(the InferenceService's transformer)")
        k8s = self._clients(spec.get("namespace"))
        # the components' code travels as a training job's does: a ConfigMap mounted in their containers
        files = component_files(job_id, spec, k8s.namespace, Path(job_dir))
        configmap, items = bundle_configmap(job_id, k8s.namespace, files) if files else (None, None)
        self.validate(spec, items)
        manifest = validate_isvc(build_isvc(job_id, spec, k8s.namespace, items=items))
        if configmap is not None:
            validate_configmap(configmap)
            try:
                k8s.core.create_namespaced_config_map(k8s.namespace, configmap, field_validation="Strict")
            except ApiException as exc:
                raise BackendError(f"the API server refused ConfigMap {configmap['metadata']['name']}: {exc.status} "
                                   f"{exc.reason}: {exc.body}") from exc
        try:
            created = k8s.custom.create_namespaced_custom_object(GROUP, VERSION, k8s.namespace, PLURAL, manifest,
                                                                 field_validation="Strict")
        except ApiException as exc:
            if configmap is not None:
                self._delete_configmap(k8s, k8s.namespace, configmap["metadata"]["name"])
            raise BackendError(f"the API server refused InferenceService {spec['name']}: {exc.status} {exc.reason}: {exc.body}") from exc
        info = {"namespace": k8s.namespace, "name": spec["name"], "server": k8s.server, "canary": bool(spec.get("canary"))}
        if configmap is not None:
            self._own_configmap(k8s, configmap["metadata"]["name"], created)
            info.update(configmap=configmap["metadata"]["name"], component_items=items)
        # a canary is patched in by observe() once the primary is rolled out (see the module docstring)
        return info

    @staticmethod
    def _own_configmap(k8s, name: str, isvc: dict) -> None:
        """The InferenceService owns its components' ConfigMap (garbage-collected with it);
        a refusal is no failure: cancel deletes it anyway."""
        from ..k8s.workload import own_configmap

        own_configmap(k8s, name, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", **isvc})

    @staticmethod
    def _delete_configmap(k8s, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            k8s.core.delete_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise BackendError(f"cannot delete ConfigMap {name}: {exc.reason}") from exc

    def observe(self, job_id: str, info: dict) -> Observation:
        from ..store.workspace import get_workspace

        obj = self._get(info)
        if seen := deletion(f"InferenceService {info['namespace']}/{info['name']}", obj):
            return seen  # its servers were marked Cancelled by the undeploy
        ready, reason, message = _ready(obj)
        spec = get_workspace().get_job(job_id).spec or {}
        if ready and _canary_due(spec, obj):
            self._patch(info, validate_isvc(build_isvc(job_id, spec, info["namespace"], spec["canary"], spec["canary_percent"], items=info.get("component_items"))))
            seen = Observation(st.PENDING, message=f"the primary is Ready: rolling out the canary {spec['canary']['ref']}")
        elif ready:
            seen = Observation(st.RUNNING)
        elif reason and "Fail" in reason:
            seen = Observation(st.FAILED, error=f"{_not_ready_component(obj)}{reason}: {message or ''}")
        else:
            seen = Observation(st.PENDING, message=_not_ready_component(obj) + (": ".join(p for p in (reason, message) if p)
                                                                                  or "") or None)  # fmt: skip
        self._sync_children(job_id, info, seen, obj)
        return seen

    def _sync_children(self, job_id: str, info: dict, seen: Observation, obj: dict | None = None) -> None:
        """The revisions serving the endpoint, and its transformer and explainer, as its
        child tasks (a component's state: KServe's ``TransformerReady``/``ExplainerReady``)."""
        from ..store.workspace import get_workspace

        spec = get_workspace().get_job(job_id).spec or {}
        rows = [{"name": "primary", "kind": "server", "position": 0, "status": seen.status, "error": seen.error,
                 "attrs": {"version": (spec.get("version") or {}).get("ref")}}]  # fmt: skip
        canary = spec.get("canary")
        had_canary = any(c.name == "canary" for c in get_workspace().list_children(job_id, "server"))
        if canary or had_canary:  # a canary, or one that was (promoted or rolled back): stopped
            rows.append({"name": "canary", "kind": "server", "position": 1,
                         "status": seen.status if canary else st.CANCELLED,
                         "attrs": {"version": canary.get("ref") if canary else None}})  # fmt: skip
        for position, role in enumerate(COMPONENT_ROLES, start=2):
            if spec.get(role):
                state = component_state(obj or {}, role)
                status = seen.status if state is None or seen.status in st.TERMINAL else st.RUNNING if state[0] else st.PENDING
                comp = ((obj or {}).get("status") or {}).get("components", {}).get(role) or {}
                rows.append({"name": role, "kind": "server", "position": position, "status": status,
                             "message": state[2] if state and not state[0] else None,
                             "attrs": {"version": f"{role} {spec[role].get('label')}", "url": comp.get("url")}})  # fmt: skip
        get_workspace().sync_children(job_id, rows)

    def channels(self, job_id: str, info: dict) -> Channels:
        from ..store.workspace import get_workspace

        canary = (get_workspace().get_job(job_id).spec or {}).get("canary")
        return Channels(logs=(PRIMARY, CANARY) if canary else (PRIMARY,))

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop=None) -> Iterator[str]:  # fmt: skip
        from ..store.workspace import get_workspace

        role = channel.partition("/")[2]
        if role in COMPONENT_ROLES and (get_workspace().get_job(job_id).spec or {}).get(role):
            return self._component_log(info, role, follow=follow, tail=tail, stop=stop)
        if channel not in (PRIMARY.name, CANARY.name):
            raise self.unknown_channel(job_id, channel, self.channels(job_id, info))
        if channel == CANARY.name and CANARY not in self.channels(job_id, info).logs:
            return iter(())  # a canary no more: its pods are gone with its revision
        return self.logs(job_id, info, rank=0 if channel == PRIMARY.name else 1, follow=follow, tail=tail, stop=stop)

    def _component_log(self, info: dict, role: str, follow: bool, tail: int | None, stop=None) -> Iterator[str]:
        """The newest pod's log of the transformer or explainer (container ``kserve-container``)."""
        k8s = self._clients(info["namespace"])
        pods = k8s.core.list_namespaced_pod(
            info["namespace"], label_selector=f"serving.kserve.io/inferenceservice={info['name']},component={role}").items
        pods = sorted((p for p in pods if p.status is None or p.status.phase != "Pending"),
                      key=lambda p: str(p.metadata.creation_timestamp or ""))  # fmt: skip
        return self._pod_log(k8s, info, pods[-1].metadata.name, follow, tail, stop) if pods else iter(())

    def rolled_out(self, info: dict) -> bool:
        """KServe has acted on the latest spec (``status.observedGeneration`` caught up)."""
        obj = self._get(info) or {}
        return (obj.get("status") or {}).get("observedGeneration", 0) >= (obj.get("metadata") or {}).get("generation", 0)

    def url(self, info: dict) -> str | None:
        obj = self._get(info)
        return ((obj or {}).get("status") or {}).get("url")

    def _predictor_pod(self, k8s, info: dict, rank: int) -> str | None:
        """The newest predictor pod of the primary revision (``rank`` 0) or of the canary (1).

        Serverless: KServe's status names the revisions (``latestRolledoutRevision`` takes
        the primary's share, a newer ``latestCreatedRevision`` is the canary) and Knative
        labels each pod with its revision. RawDeployment has no revisions (and no canary).
        """
        if rank not in (0, 1):
            raise InvalidOptionError(f"server={rank}: a Kubernetes endpoint has server 0 (the model) and 1 (its canary)")
        obj = self._get(info) or {}
        comp = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
        rolled, latest = comp.get("latestRolledoutRevision"), comp.get("latestCreatedRevision")
        revision = rolled if rank == 0 else latest if latest and latest != rolled else None
        if rank == 1 and revision is None:
            raise InvalidOptionError(f"endpoint {info['name']} has no canary revision (server=1)")
        pods = k8s.core.list_namespaced_pod(
            info["namespace"], label_selector=f"serving.kserve.io/inferenceservice={info['name']},component=predictor"
        ).items
        if revision and any((p.metadata.labels or {}).get(REVISION_LABEL) for p in pods):
            pods = [p for p in pods if (p.metadata.labels or {}).get(REVISION_LABEL) == revision]
        pods = [p for p in pods if p.status is None or p.status.phase != "Pending"]
        pods.sort(key=lambda p: (p.status is not None and p.status.phase == "Running", str(p.metadata.creation_timestamp or "")))
        return pods[-1].metadata.name if pods else None

    def logs(self, job_id: str, info: dict, rank: int = 0, follow: bool = False, tail: int | None = None,
             stop=None) -> Iterator[str]:  # fmt: skip
        """The model server's log (container ``kserve-container``) of a predictor pod; with
        ``follow``, its lines as they come until the pod goes (undeploy, a new revision)."""
        k8s = self._clients(info["namespace"])
        pod = self._predictor_pod(k8s, info, rank)
        if pod is None:
            return iter(())
        return self._pod_log(k8s, info, pod, follow, tail, stop)

    def _pod_log(self, k8s, info: dict, pod: str, follow: bool, tail: int | None, stop=None) -> Iterator[str]:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = k8s.core.read_namespaced_pod_log(pod, info["namespace"], container=SERVER_CONTAINER, tail_lines=tail,
                                                    follow=follow or None, _preload_content=False)
        except ApiException as exc:
            if exc.status in (400, 404):  # not started yet, or gone meanwhile
                return iter(())
            raise BackendError(f"cannot read the log of {pod}: {exc.status} {exc.reason}") from exc
        if not follow:
            try:
                return iter(resp.data.decode("utf-8", errors="replace").splitlines())
            finally:
                resp.release_conn()
        from ..k8s.client import stream_lines

        return stream_lines(resp, stop)

    def cancel(self, job_id: str, info: dict) -> None:
        from kubernetes.client.exceptions import ApiException

        from ..store.workspace import get_workspace

        k8s = self._clients(info["namespace"])
        ws = get_workspace()
        # the endpoint then reads Cancelling while the InferenceService is being deleted
        # (KServe's finalizer), Cancelled once it is gone (k8s.observe.deletion)
        try:
            k8s.custom.delete_namespaced_custom_object(GROUP, VERSION, info["namespace"], PLURAL, info["name"])
        except ApiException as exc:
            if exc.status != 404:
                ws.update_job(job_id, only_if_active=True, message=f"undeploy failed: {exc.reason}")
                raise BackendError(f"cannot delete InferenceService {info['name']}: {exc.reason}") from exc
        if info.get("configmap"):
            self._delete_configmap(k8s, info["namespace"], info["configmap"])
        ws.end_children(job_id, st.CANCELLED, "undeployed")

    def promote(self, job_id: str, spec: dict, info: dict) -> tuple[dict, dict]:
        self._patch(info, validate_isvc(build_isvc(job_id, spec, info["namespace"], spec["canary"], None, items=info.get("component_items"))))
        spec = {**spec, "previous": spec["version"], "version": spec["canary"], "canary": None, "canary_percent": 0}
        return spec, info

    def rollback(self, job_id: str, spec: dict, info: dict) -> tuple[dict, dict]:
        if spec.get("canary"):
            self._patch(info, validate_isvc(build_isvc(job_id, spec, info["namespace"], spec["version"], None, items=info.get("component_items"))))
            return {**spec, "canary": None, "canary_percent": 0}, info
        self._patch(info, validate_isvc(build_isvc(job_id, spec, info["namespace"], spec["previous"], None, items=info.get("component_items"))))
        return {**spec, "version": spec["previous"], "previous": spec["version"]}, info
