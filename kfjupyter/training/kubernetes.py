"""The Kubernetes training backend: a Kubeflow Trainer v2 ``TrainJob`` per job.

A job becomes two objects in the user's namespace:

* a ``ConfigMap`` ``<job-id>-bundle`` holding every file of the bundle (keys cannot hold
  '/', so paths are flattened and the volume's ``items`` restore the layout; files that
  are not UTF-8 text, such as values.pkl, go in ``binaryData``);
* a ``TrainJob`` ``<job-id>`` on the ``torch-distributed`` ClusterTrainingRuntime with
  ``numNodes = workers`` and one process per node. A ``runtimePatches`` entry mounts the
  ConfigMap into the runtime's ``node`` container, and the trainer command is
  ``torchrun <bundle>/kf_bootstrap.py``: torchrun reads the ``PET_*`` variables that the
  torch runtime sets (nodes, node rank, master address and port).

The ConfigMap is owned by the TrainJob, so deleting the TrainJob garbage-collects it.
Trainer runs the nodes as a JobSet; the pods of rank *r* carry the labels
``jobset.sigs.k8s.io/jobset-name=<job-id>``,
``jobset.sigs.k8s.io/replicatedjob-name=node`` and
``batch.kubernetes.io/job-completion-index=<r>``.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path
from typing import Any, Iterator

from .. import status as st
from ..capture.bundle import BOOTSTRAP, Bundle
from ..errors import BackendError, InvalidOptionError
from ..k8s.client import K8sClients, merge_patch
from ..k8s.observe import Changes, deletion
from ..k8s.schema import TRAINER_GROUP, TRAINER_VERSION, parse_rfc3339, validate_configmap, validate_trainjob
from ..k8s.tracking import submission
from ..k8s.workload import PodWorkloadEngine, pending_reason, phase
from ..runtime.engine import Channels, Features, ranked
from ..status import Observation
from ..validation import check_dns1123_label
from .spec import TrainSpec

PLURAL = "trainjobs"
API_VERSION = f"{TRAINER_GROUP}/{TRAINER_VERSION}"
RUNTIME = "torch-distributed"
#: Name of the replicated job and of the trainer container in the torch runtime.
NODE = "node"
PATCH_MANAGER = "kfjupyter.io/kfjupyter"
LABEL_JOB_ID = "kfjupyter.io/job-id"
ANNOTATION_BUNDLE = "kfjupyter.io/bundle-sha256"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
RJOB_NAME_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"

BUNDLE_DIR = "/opt/kfjupyter/bundle"
OUTPUT_DIR = "/opt/kfjupyter/outputs"
BUNDLE_VOLUME = "kfjupyter-bundle"
OUTPUT_VOLUME = "kfjupyter-outputs"

_METRIC_TOKEN = re.compile(r"^([A-Za-z_][-\w.]*)=(\S+)$")


# --------------------------------------------------------------------------- manifests


def configmap_name(job_id: str) -> str:
    return f"{job_id}-bundle"


def bundle_configmap(
    job_id: str, namespace: str, files: dict[str, bytes], sha256: str | None = None
) -> tuple[dict, list[dict]]:
    """The ConfigMap carrying ``files``, and the volume ``items`` that restore their paths."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    items: list[dict] = []
    used: set[str] = set()
    for i, path in enumerate(sorted(files)):
        key = re.sub(r"[^-._a-zA-Z0-9]", "_", path.replace("/", "."))[-240:].lstrip(".") or "file"
        if key in used:
            key = f"{i}-{key}"
        used.add(key)
        content = files[path]
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode("ascii")
        items.append({"key": key, "path": path})
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(job_id),
            "namespace": namespace,
            "labels": {LABEL_JOB_ID: job_id, "app.kubernetes.io/managed-by": "kfjupyter"},
        },
        "immutable": True,
    }
    if sha256:
        manifest["metadata"]["annotations"] = {ANNOTATION_BUNDLE: sha256}
    if data:
        manifest["data"] = data
    if binary:
        manifest["binaryData"] = binary
    return manifest, items


def env_entries(env: dict[str, str], tracking=None, **child: str) -> list[dict]:
    """A container's ``env`` entries: ``env``, and with ``tracking`` (a
    :class:`kfjupyter.tracking.pods.PodTracking`) what the pod needs to send its runs to
    MLflow (``child``: of a trial's or a step's run)."""
    if tracking is not None:
        return tracking.env_vars(env, **child)
    return [{"name": k, "value": v} for k, v in env.items()]


def trainjob_manifest(
    job_id: str, namespace: str, spec: TrainSpec, items: list[dict], sha256: str | None = None, tracking=None,
    **child: str,
) -> dict:
    """The TrainJob running the bundle mounted from ConfigMap ``<job_id>-bundle``; with
    ``tracking`` (a :class:`kfjupyter.tracking.pods.PodTracking`), what its ranks need to
    send their runs to MLflow (``child``: of a tuning trial's run)."""
    env = dict(spec.env)
    env.setdefault("PYTHONUNBUFFERED", "1")  # log lines reach `kubectl logs` as printed
    env.update(
        {
            "KFJUPYTER_BUNDLE": BUNDLE_DIR,
            "KFJUPYTER_OUTPUT_DIR": OUTPUT_DIR,
            "KFJUPYTER_PRINT_METRICS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",  # the bundle is mounted read-only
        }
    )
    trainer: dict[str, Any] = {
        "numNodes": spec.workers,
        "numProcPerNode": 1,
        "command": ["torchrun", f"{BUNDLE_DIR}/{BOOTSTRAP}"],
        "env": env_entries(env, tracking, **child),
    }
    if spec.image:
        trainer["image"] = spec.image
    resources: dict[str, Any] = {}
    if spec.cpu:
        resources["cpu"] = spec.cpu
    if spec.memory:
        resources["memory"] = spec.memory
    if spec.gpus:
        resources["nvidia.com/gpu"] = spec.gpus
    if resources:
        trainer["resourcesPerNode"] = {"requests": dict(resources), "limits": dict(resources)}
    labels = {LABEL_JOB_ID: job_id, "app.kubernetes.io/managed-by": "kfjupyter"}
    pod_patch = {
        "metadata": {"labels": {LABEL_JOB_ID: job_id}},
        "spec": {
            "volumes": [
                {"name": BUNDLE_VOLUME, "configMap": {"name": configmap_name(job_id), "items": items}},
                {"name": OUTPUT_VOLUME, "emptyDir": {}},
            ],
            "containers": [
                {
                    "name": NODE,
                    "volumeMounts": [
                        {"name": BUNDLE_VOLUME, "mountPath": BUNDLE_DIR, "readOnly": True},
                        {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_DIR},
                    ],
                }
            ],
        },
    }
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": job_id, "namespace": namespace, "labels": labels},
        "spec": {
            "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": "ClusterTrainingRuntime", "name": RUNTIME},
            "trainer": trainer,
            "runtimePatches": [
                {
                    "manager": PATCH_MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {"name": NODE, "template": {"spec": {"template": pod_patch}}}
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }
    if sha256:
        manifest["metadata"]["annotations"] = {ANNOTATION_BUNDLE: sha256}
    return manifest


def parse_metric_line(line: str) -> dict | None:
    """``step=3 loss=0.5`` → ``{"step": 3, "loss": 0.5}``; None if not a metrics line."""
    tokens = line.split()
    if not tokens:
        return None
    record: dict[str, Any] = {}
    for token in tokens:
        m = _METRIC_TOKEN.match(token)
        if not m:
            return None
        try:
            value = float(m.group(2))
        except ValueError:
            return None
        record[m.group(1)] = value
    step = record.pop("step", None)
    if not record:
        return None
    record["step"] = int(step) if step is not None and float(step).is_integer() else step
    return record


# --------------------------------------------------------------------------- backend


class KubernetesTrainBackend(PodWorkloadEngine):
    """Runs training jobs as Kubeflow Trainer ``TrainJob``\\ s (see the module docstring)."""

    kind = "train"
    name = "kubernetes"
    features = Features(metrics=True, changes="watch")
    container = NODE

    # -- TrainBackend

    def submit(self, job_id: str, spec: TrainSpec, job_dir: Path) -> dict:
        bundle = Bundle(Path(job_dir) / "bundle")
        check_dns1123_label(job_id, "job id")
        files = bundle.files()
        if BOOTSTRAP not in files:
            raise InvalidOptionError(f"bundle {bundle.root} has no {BOOTSTRAP}")
        sha = bundle.sha256
        clients = self._connect(namespace=spec.namespace)  # reads configuration only
        ns = clients.namespace

        def build(tracking) -> tuple[dict, dict]:
            configmap, items = bundle_configmap(job_id, ns, {**files, **tracking.files}, sha)
            return configmap, trainjob_manifest(job_id, ns, spec, items, sha, tracking)

        def check(built: tuple[dict, dict]) -> None:
            validate_trainjob(built[1])
            validate_configmap(built[0])

        # Both objects are built and validated before the first request is sent.
        with submission(job_id, "train", build, check) as (configmap, trainjob):
            return self._create(job_id, clients, configmap, trainjob, sha, job_dir, spec)

    def _create(self, job_id: str, clients: K8sClients, configmap: dict, trainjob: dict, sha: str, job_dir: Path,
                spec: TrainSpec) -> dict:  # fmt: skip
        core, custom, ns = clients.core, clients.custom, clients.namespace
        try:
            core.create_namespaced_config_map(ns, configmap, field_validation="Strict")
        except Exception as exc:
            if self._status_of(exc) == 409:
                raise BackendError(f"ConfigMap {configmap_name(job_id)} already exists in namespace {ns}") from exc
            raise self._api_error(exc, f"create ConfigMap {configmap_name(job_id)}") from exc
        try:
            created = custom.create_namespaced_custom_object(
                TRAINER_GROUP, TRAINER_VERSION, ns, PLURAL, trainjob, field_validation="Strict"
            )
        except Exception as exc:
            try:  # leave nothing behind
                core.delete_namespaced_config_map(configmap_name(job_id), ns)
            except Exception:
                pass
            raise self._api_error(exc, f"create TrainJob {job_id}") from exc
        uid = created["metadata"]["uid"]
        owned = True
        try:
            merge_patch(
                core.patch_namespaced_config_map,
                configmap_name(job_id),
                ns,
                {"metadata": {"ownerReferences": [
                    {"apiVersion": API_VERSION, "kind": "TrainJob", "name": job_id, "uid": uid}
                ]}},
            )  # fmt: skip
        except Exception:
            owned = False  # cancel() still deletes it explicitly
        info = {
            "namespace": ns,
            "context": clients.context,
            "server": clients.server,
            "trainjob": job_id,
            "uid": uid,
            "configmap": configmap_name(job_id),
            "configmap_owned": owned,
            "runtime": RUNTIME,
            "workers": spec.workers,
            "bundle_sha256": sha,
        }
        try:
            job_dir = Path(job_dir)
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / "trainjob.json").write_text(json.dumps(trainjob, indent=2))
        except OSError:
            pass
        return info

    def observe(self, job_id: str, info: dict) -> Observation:
        clients = self._connect(info)
        name = info.get("trainjob", job_id)
        try:
            obj = clients.custom.get_namespaced_custom_object(TRAINER_GROUP, TRAINER_VERSION, clients.namespace, PLURAL, name)
        except Exception as exc:
            if self._status_of(exc) != 404:
                raise self._api_error(exc, f"read TrainJob {job_id}") from exc
            obj = None
        seen = deletion(f"TrainJob {clients.namespace}/{name}", obj, info.get("uid"))
        return seen or self._observation(clients, job_id, obj)

    def changes(self, job_id: str, info: dict) -> Changes:
        """Watches of the TrainJob and of its pods (what :meth:`observe` reads)."""
        clients = self._connect(info)
        name, ns = info.get("trainjob", job_id), clients.namespace
        return (
            Changes()
            .watch(functools.partial(clients.custom.list_namespaced_custom_object, TRAINER_GROUP, TRAINER_VERSION, ns, PLURAL),
                   field_selector=f"metadata.name={name}")
            .watch(functools.partial(clients.core.list_namespaced_pod, ns), label_selector=f"{JOBSET_NAME_LABEL}={name},{RJOB_NAME_LABEL}={NODE}")
        )  # fmt: skip

    def channels(self, job_id: str, info: dict) -> Channels:
        workers = int(info.get("workers", 1))
        return Channels(logs=ranked("rank", "rank", workers), metrics=ranked("rank", "rank", workers))

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop=None) -> Iterator[str]:  # fmt: skip
        """``rank-N``: the log of rank N's newest pod (followed until the pod ends)."""
        known = self.channels(job_id, info)
        if channel not in {c.name for c in known.logs}:
            raise self.unknown_channel(job_id, channel, known)
        return self._rank_log(job_id, info, int(channel.split("-")[1]), follow, tail, stop)

    def _rank_log(self, job_id: str, info: dict, rank: int, follow: bool, tail: int | None, stop=None) -> Iterator[str]:
        clients = self._connect(info)
        name = info.get("trainjob", job_id)
        return self._pod_log(job_id, info, lambda: self._pod_for_rank(clients, name, rank), follow=follow, tail=tail, stop=stop)

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        """The ``name=value`` lines each rank printed (``kfjupyter.report`` on Kubernetes)."""
        if channel is not None:
            return [r for r in self.read_metrics(job_id, info) if f"rank-{r['rank']}" == channel]
        clients = self._connect(info)
        name = info.get("trainjob", job_id)
        out: list[dict] = []
        for rank in range(int(info.get("workers", 1))):
            pod = self._pod_for_rank(clients, name, rank)
            if pod is None or phase(pod) == "Pending":
                continue
            for line in self._read_log(clients, pod["metadata"]["name"], timestamps=True):
                stamp, _, text = line.partition(" ")
                record = parse_metric_line(text)
                if record is None:
                    continue
                try:
                    record["time"] = parse_rfc3339(stamp)
                except ValueError:
                    record["time"] = None
                out.append({"rank": rank, **record})
        return out

    def cancel(self, job_id: str, info: dict) -> None:
        clients = self._connect(info)
        ns = clients.namespace
        try:
            clients.custom.delete_namespaced_custom_object(
                TRAINER_GROUP, TRAINER_VERSION, ns, PLURAL, info.get("trainjob", job_id),
                propagation_policy="Background",
            )  # fmt: skip
        except Exception as exc:
            if self._status_of(exc) != 404:
                raise self._api_error(exc, f"delete TrainJob {job_id}") from exc
        try:
            clients.core.delete_namespaced_config_map(info.get("configmap", configmap_name(job_id)), ns)
        except Exception as exc:
            if self._status_of(exc) != 404:
                raise self._api_error(exc, f"delete ConfigMap {configmap_name(job_id)}") from exc

    # -- helpers

    def _observation(self, clients: K8sClients, job_id: str, obj: dict) -> Observation:
        conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}

        def true(kind: str) -> dict | None:
            c = conditions.get(kind)
            return c if c and c.get("status") == "True" else None

        if failed := true("Failed"):
            message = failed.get("message") or failed.get("reason") or "TrainJob failed"
            detail = self._failure_log(clients, obj["metadata"]["name"])
            return Observation(st.FAILED, error=f"{message}\n\n{detail}" if detail else message, message=message)
        if done := true("Complete"):
            return Observation(st.SUCCEEDED, message=done.get("message"))
        if suspended := true("Suspended"):
            return Observation(st.PENDING, message=f"suspended: {suspended.get('message') or ''}".strip())
        pods = self._pods(clients, obj["metadata"]["name"])
        if any(phase(p) == "Running" for p in pods):
            return Observation(st.RUNNING)
        return Observation(st.PENDING, message=pending_reason(pods))

    def _pods(self, clients: K8sClients, name: str, rank: int | None = None) -> list[dict]:
        selector = f"{JOBSET_NAME_LABEL}={name},{RJOB_NAME_LABEL}={NODE}"
        if rank is not None:
            selector += f",{JOB_INDEX_LABEL}={rank}"
        return self._list_pods(clients, selector)

    def _pod_for_rank(self, clients: K8sClients, name: str, rank: int) -> dict | None:
        """The newest pod of rank ``rank`` (a retried rank has several)."""
        return self._newest_pod(clients, f"{JOBSET_NAME_LABEL}={name},{RJOB_NAME_LABEL}={NODE},{JOB_INDEX_LABEL}={rank}")

    def _failure_log(self, clients: K8sClients, name: str) -> str:  # type: ignore[override]
        """The traceback (else the log tail) of the rank that failed first."""
        try:
            pods = self._pods(clients, name)
        except Exception:
            return ""
        rank = lambda pod: f"rank {(pod['metadata'].get('labels') or {}).get(JOB_INDEX_LABEL, '?')}"  # noqa: E731
        return PodWorkloadEngine._failure_log(self, clients, pods, rank, "rank")
