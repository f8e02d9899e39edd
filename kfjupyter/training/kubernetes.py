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
import time
from pathlib import Path
from typing import Any, Iterator

from .. import status as st
from ..capture.bundle import BOOTSTRAP, Bundle
from ..errors import BackendError, InvalidOptionError
from ..k8s.client import K8sClients, connect, merge_patch, stream_lines
from ..k8s.observe import Changes, deletion
from ..k8s.schema import TRAINER_GROUP, TRAINER_VERSION, parse_rfc3339, validate_configmap, validate_trainjob
from ..runtime.engine import Channels, EngineBase, Features, ranked
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

#: Lines of a failed rank's log put in the job's error when no traceback is found.
ERROR_TAIL_LINES = 40
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


def trainjob_manifest(
    job_id: str, namespace: str, spec: TrainSpec, items: list[dict], sha256: str | None = None
) -> dict:
    """The TrainJob running the bundle mounted from ConfigMap ``<job_id>-bundle``."""
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
        "env": [{"name": k, "value": v} for k, v in env.items()],
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


class KubernetesTrainBackend(EngineBase):
    """Runs training jobs as Kubeflow Trainer ``TrainJob``\\ s (see the module docstring)."""

    kind = "train"
    name = "kubernetes"
    features = Features(metrics=True, changes="watch")

    def __init__(self, clients: K8sClients | None = None, poll_interval: float = 0.5):
        self._clients = clients
        self.poll_interval = poll_interval

    # -- plumbing

    def _connect(self, info: dict | None = None, namespace: str | None = None) -> K8sClients:
        if self._clients is not None:
            if namespace and namespace != self._clients.namespace:
                return K8sClients(self._clients.api_client, namespace, self._clients.context, self._clients.server)
            return self._clients
        if info:
            return connect(namespace=info.get("namespace"), context=info.get("context"))
        return connect(namespace=namespace)

    @staticmethod
    def _api_error(exc: Exception, doing: str) -> BackendError:
        from kubernetes.client.exceptions import ApiException

        if isinstance(exc, ApiException):
            message = exc.reason or ""
            try:
                message = json.loads(exc.body).get("message") or message
            except (TypeError, ValueError, AttributeError):
                pass
            return BackendError(f"Kubernetes API refused to {doing} ({exc.status}): {message}")
        return BackendError(f"cannot {doing}: {exc}")

    @staticmethod
    def _status_of(exc: Exception) -> int | None:
        return getattr(exc, "status", None)

    # -- TrainBackend

    def submit(self, job_id: str, spec: TrainSpec, job_dir: Path) -> dict:
        bundle = Bundle(Path(job_dir) / "bundle")
        check_dns1123_label(job_id, "job id")
        files = bundle.files()
        if BOOTSTRAP not in files:
            raise InvalidOptionError(f"bundle {bundle.root} has no {BOOTSTRAP}")
        sha = bundle.sha256
        clients = self._connect(namespace=spec.namespace)  # reads configuration only
        # Both objects are built and validated before the first request is sent.
        configmap, items = bundle_configmap(job_id, clients.namespace, files, sha)
        trainjob = trainjob_manifest(job_id, clients.namespace, spec, items, sha)
        validate_trainjob(trainjob)
        validate_configmap(configmap)
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

    def wait(self, job_id: str, info: dict, timeout: float | None = None) -> Observation:
        """Watch the TrainJob until it ends (or ``timeout`` seconds); its last observation."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changes(job_id, info) as changes:
            while (obs := self.observe(job_id, info)).status not in st.TERMINAL:
                left = 60.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return obs
                changes.wait(min(left, 60.0))
        return obs

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
        if not follow:
            pod = self._pod_for_rank(clients, name, rank)
            if pod is None or _phase(pod) == "Pending":
                return
            yield from self._read_log(clients, pod["metadata"]["name"], tail=tail)
            return
        with self.changes(job_id, info) as changes:  # follow: wait (watching) for the pod to start
            while (pod := self._pod_for_rank(clients, name, rank)) is None or _phase(pod) == "Pending":
                if self.observe(job_id, info).status in st.TERMINAL or (stop is not None and stop.is_set()):
                    return
                while not changes.wait(self.poll_interval):
                    if stop is not None and stop.is_set():
                        return
        while True:  # then stream until it ends
            try:
                resp = clients.core.read_namespaced_pod_log(
                    pod["metadata"]["name"], clients.namespace, container=NODE,
                    follow=True, tail_lines=tail, _preload_content=False,
                )  # fmt: skip
            except Exception as exc:
                if self._status_of(exc) in (400, 404):  # not started yet, or gone meanwhile
                    time.sleep(self.poll_interval)
                    continue
                raise self._api_error(exc, f"read the log of {pod['metadata']['name']}") from exc
            try:
                yield from stream_lines(resp, stop)
            finally:
                resp.close()
                resp.release_conn()
            return

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        """The ``name=value`` lines each rank printed (``kfjupyter.report`` on Kubernetes)."""
        if channel is not None:
            return [r for r in self.read_metrics(job_id, info) if f"rank-{r['rank']}" == channel]
        clients = self._connect(info)
        name = info.get("trainjob", job_id)
        out: list[dict] = []
        for rank in range(int(info.get("workers", 1))):
            pod = self._pod_for_rank(clients, name, rank)
            if pod is None or _phase(pod) == "Pending":
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
        try:
            pods = self._pods(clients, obj["metadata"]["name"])
        except Exception as exc:
            raise self._api_error(exc, f"list the pods of {job_id}") from exc
        if any(_phase(p) == "Running" for p in pods):
            return Observation(st.RUNNING)
        return Observation(st.PENDING, message=_pending_reason(pods))

    def _pods(self, clients: K8sClients, name: str, rank: int | None = None) -> list[dict]:
        selector = f"{JOBSET_NAME_LABEL}={name},{RJOB_NAME_LABEL}={NODE}"
        if rank is not None:
            selector += f",{JOB_INDEX_LABEL}={rank}"
        resp = clients.core.list_namespaced_pod(clients.namespace, label_selector=selector, _preload_content=False)
        try:
            return json.loads(resp.data)["items"]
        finally:
            resp.release_conn()

    def _pod_for_rank(self, clients: K8sClients, name: str, rank: int) -> dict | None:
        """The newest pod of rank ``rank`` (a retried rank has several)."""
        try:
            pods = self._pods(clients, name, rank)
        except Exception as exc:
            raise self._api_error(exc, f"list the pods of {name}") from exc
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return pods[-1] if pods else None

    def _read_log(
        self, clients: K8sClients, pod: str, tail: int | None = None, timestamps: bool = False
    ) -> list[str]:
        try:
            resp = clients.core.read_namespaced_pod_log(
                pod, clients.namespace, container=NODE, tail_lines=tail,
                timestamps=timestamps or None, _preload_content=False,
            )  # fmt: skip
        except Exception as exc:
            if self._status_of(exc) in (400, 404):
                return []
            raise self._api_error(exc, f"read the log of {pod}") from exc
        try:
            return resp.data.decode("utf-8", errors="replace").splitlines()
        finally:
            resp.release_conn()

    def _failure_log(self, clients: K8sClients, name: str) -> str:
        """The traceback (else the log tail) of the rank that failed first.

        Ranks that lose a peer fail too (with a connection error), a moment later; the log
        timestamps of the tracebacks tell which came first.
        """
        try:
            pods = self._pods(clients, name)
        except Exception:
            return ""
        failed = []
        for pod in pods[:16]:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if cs.get("name") == NODE and term.get("exitCode"):
                    stamped = self._read_log(clients, pod["metadata"]["name"], timestamps=True)
                    pairs = [line.partition(" ")[::2] for line in stamped]  # (timestamp, text)
                    texts = [text for _, text in pairs]
                    first = next((stamp for stamp, text in pairs if text.startswith(_TRACEBACK)), None)
                    failed.append((first or "~", term.get("finishedAt") or "", pod, texts))
        if not failed:
            return ""
        failed.sort(key=lambda f: f[:2])  # tracebacks by time, then pods without one
        _, _, pod, lines = failed[0]
        shown = _traceback(lines) or lines[-ERROR_TAIL_LINES:]
        rank = (pod["metadata"].get("labels") or {}).get(JOB_INDEX_LABEL, "?")
        text = f"rank {rank} (pod {pod['metadata']['name']}):\n" + "\n".join(shown)
        others = [(f[2]["metadata"].get("labels") or {}).get(JOB_INDEX_LABEL, "?") for f in failed[1:]]
        if others:
            text += f"\n(rank {', '.join(others)} failed too)"
        return text


_TRACEBACK = "Traceback (most recent call last)"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
_LAUNCHER_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # torchrun's own (glog-style) log lines


def _traceback(lines: list[str]) -> list[str] | None:
    """The first Python traceback in ``lines`` (with its chained causes), or None."""
    start = next((i for i, line in enumerate(lines) if line.startswith(_TRACEBACK)), None)
    if start is None:
        return None
    out: list[str] = []
    for line in lines[start:]:
        if out and line.startswith(_TRACEBACK) and not any(c in "\n".join(out[-3:]) for c in _CHAINED):
            break  # a new, unrelated traceback (the launcher's)
        if _LAUNCHER_LOG.match(line) or len(out) >= 120:
            break
        out.append(line)
    return out


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _pending_reason(pods: list[dict]) -> str | None:
    for pod in pods:
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"pod {pod['metadata']['name']}: {cond.get('reason')}: {cond.get('message')}"
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
                return f"pod {pod['metadata']['name']}: {waiting.get('reason')}: {waiting.get('message') or ''}"
    return None
