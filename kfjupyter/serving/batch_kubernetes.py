"""The Kubernetes batch inference engine: a ``batch/v1`` Indexed Job per run of a batch job.

A batch job is planned as a local one (:func:`~.batch.batch_predict`: the same shards, the
same outputs beside the inputs); on Kubernetes each run of it is

* a ``ConfigMap`` ``<job>-bundle`` holding the pods' plan (``batch.json``: the model
  version, the shards, the outputs) and, when they fit in it (1 MiB), the model version's
  files (under ``model/``), delivered as a training job's bundle is (flattened keys,
  volume ``items`` restoring the paths); a model whose files do not fit is read where it
  is when the workspace's registry is on the volume;
* a ``Job`` ``<job>`` (a resumed run: ``<job>-rN``) with ``completionMode: Indexed``,
  ``completions`` = the shards it runs, ``parallelism`` = ``workers``, ``backoffLimit: 0``
  (a failing shard fails the job, as locally) and a pod failure policy that does not count
  disruptions (a preempted or evicted pod is replaced). Each pod runs
  ``python -m kfjupyter.serving.batch_worker --indexed`` in ``image`` (kfjupyter installed):
  the shard of its completion index (``JOB_COMPLETION_INDEX``, set by the Job controller).
  The pods mount the PersistentVolumeClaim of ``volume`` where this notebook mounts it,
  so every path (inputs, outputs, the shards' predictions under
  ``<mount>/.kfjupyter-batch/<job id>/``) is the same here and there; the pod that finds
  every shard done writes the outputs.

The ConfigMap is owned by the Job, so deleting the Job collects it. Observing reads the
Job's ``completedIndexes`` (the shards' child tasks, the progress message and the ``batch``
metric channel) and its conditions (``Complete``; ``Failed`` with its reason and the failed
pod's traceback); the log channels are the pods, by completion index (``index-I``) and by
shard (``shard/N``). Cancel deletes the Job with foreground propagation (its pods go, then
the Job): Cancelling, then Cancelled. :meth:`BatchJob.resume <.batch.BatchJob.resume>`
submits a new Job over the shards not done.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .. import status as st
from ..errors import InvalidOptionError, PreflightError
from ..k8s.client import K8sClients
from ..k8s.observe import Changes, deletion
from ..k8s.schema import ConfigMapTooLargeError, validate_configmap, validate_job
from ..k8s.workload import PodWorkloadEngine, own_configmap, pending_reason, phase
from ..runtime.engine import Channel, Channels, Features
from ..status import Observation
from ..store.workspace import get_workspace
from ..validation import check_dns1123_label, check_quantity

SHARD = "shard"
CONTAINER = "batch"
#: where the ConfigMap (the plan, the model's files) is mounted in the pods
PLAN_DIR = "/opt/kfjupyter/batch"
PLAN_FILE = "batch.json"
PLAN_VOLUME = "kfjupyter-batch"
DATA_VOLUME = "kfjupyter-data"
#: the shards' predictions, under the volume's mount: ``WORK_DIR/<job id>/shards/``
WORK_DIR = ".kfjupyter-batch"
LABEL_JOB_ID = "kfjupyter.io/job-id"
LABEL_RUN = "kfjupyter.io/batch-run"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
PROGRESS = Channel("batch", "progress", rank=-1)
_VOLUME = re.compile(r"^(?P<claim>[^:]+):(?P<mount>/.*)$")


# --------------------------------------------------------------------------- checks (before anything exists)


def parse_volume(volume: Any) -> dict:
    """``"CLAIM:/mount/path"`` (or ``{"claim", "mount"}``) → ``{"claim", "mount"}``, checked."""
    if volume is None:
        raise InvalidOptionError(
            "batch_predict on Kubernetes reads and writes a PersistentVolumeClaim that this notebook and the pods "
            "both mount: pass volume='CLAIM:/mount/path' (the claim, and where this notebook has it mounted)"
        )
    if isinstance(volume, str):
        m = _VOLUME.match(volume)
        if not m:
            raise InvalidOptionError(f"volume={volume!r}: expected 'CLAIM:/mount/path' (a claim name, ':', an absolute path)")
        volume = m.groupdict()
    if not isinstance(volume, dict) or set(volume) != {"claim", "mount"}:
        raise InvalidOptionError(f"volume={volume!r}: expected 'CLAIM:/mount/path' or {{'claim': …, 'mount': …}}")
    claim, mount = volume["claim"], str(volume["mount"])
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", str(claim)) or len(str(claim)) > 253:
        raise InvalidOptionError(f"volume claim {claim!r} is not a PersistentVolumeClaim name (a DNS-1123 subdomain)")
    if not mount.startswith("/"):
        raise InvalidOptionError(f"volume mount {mount!r} must be an absolute path")
    return {"claim": claim, "mount": str(Path(mount))}


def check_data(data: Any, volume: dict) -> None:
    """A file or folder to predict must be on the volume (the pods read it there); rows in
    memory are written there (the job's folder on it)."""
    if not isinstance(data, (str, Path)):
        return
    mount = Path(volume["mount"]).resolve()
    path = Path(data).expanduser().resolve()
    if not path.is_relative_to(mount):
        raise InvalidOptionError(f"{path} is not on the volume {volume['claim']} (mounted at {mount}): the pods would not see it")


def check_spec(spec) -> None:
    """What a Kubernetes batch job needs beyond a local one (called by :class:`~.batch.BatchSpec`)."""
    if spec.volume is None:
        parse_volume(None)
    if not spec.image:
        raise InvalidOptionError(
            "the batch pods run kfjupyter's batch worker: pass image= (an image with kfjupyter and the model's "
            "libraries installed), or set KFJUPYTER_IMAGE / c.KFJupyter.image"
        )
    for what in ("cpu", "memory"):
        if getattr(spec, what) is not None:
            check_quantity(getattr(spec, what), what)
    if spec.namespace is not None:
        check_dns1123_label(spec.namespace, "namespace")


# --------------------------------------------------------------------------- manifests


def k8s_job_name(job_id: str, run: int) -> str:
    return job_id if run <= 1 else f"{job_id}-r{run}"


def _relative(path: str | Path, mount: Path) -> str:
    """``path`` as the pods find it: relative to the volume's mount (which it must be under)."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_relative_to(mount):
        raise InvalidOptionError(f"{resolved} is not on the volume (mounted at {mount}): the pods could not write or "
                                 "read it there (a folder's output goes beside it: predict a folder below the mount)")  # fmt: skip
    return resolved.relative_to(mount).as_posix()


def pod_plan(job_id: str, spec: dict, run_shards: list[int], model_in: str, model_dir: str) -> dict:
    """What every pod of the run reads (``batch.json``): paths relative to the volume's mount."""
    mount = Path(spec["volume"]["mount"]).resolve()
    version = {k: spec["version"].get(k) for k in ("ref", "model", "number", "format", "main_file", "properties")}
    return {
        "job": job_id, "run": spec.get("run") or 1, "model": spec["model"], "version": version, "method": spec["method"],
        "columns": spec.get("columns"), "include_inputs": spec.get("include_inputs", False),
        "model_in": model_in, "model_dir": model_dir, "work": f"{WORK_DIR}/{job_id}",
        "shards": [{**s, "file": _relative(s["file"], mount)} for s in spec["shards"]],
        "outputs": {_relative(k, mount): _relative(v, mount) for k, v in spec["outputs"].items()},
        "run_shards": run_shards,
    }  # fmt: skip


def model_files(spec: dict) -> tuple[str, str, dict[str, bytes]]:
    """How the pods get the model: (``"volume"``, its folder on the volume, no files) when the
    registry's copy is on the volume, else (``"plan"``, ``"model"``, its files for the ConfigMap)."""
    folder = Path(spec["version"]["folder"]).resolve()
    mount = Path(spec["volume"]["mount"]).resolve()
    if folder.is_relative_to(mount):
        return "volume", folder.relative_to(mount).as_posix(), {}
    from ..files import files_under

    files = {f"model/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in files_under(folder, what="model artifact")}
    return "plan", "model", files


def job_manifest(job_id: str, name: str, namespace: str, spec: dict, items: list[dict], completions: int) -> dict:
    """The Indexed Job of one run (see the module docstring)."""
    threads = str(spec.get("threads") or 1)
    env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",  # the plan is mounted read-only
           "KFJUPYTER_BATCH_PLAN": f"{PLAN_DIR}/{PLAN_FILE}", "KFJUPYTER_BATCH_VOLUME": spec["volume"]["mount"],
           "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}  # fmt: skip
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec["image"],
        "command": ["python", "-m", "kfjupyter.serving.batch_worker", "--indexed"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [
            {"name": PLAN_VOLUME, "mountPath": PLAN_DIR, "readOnly": True},
            {"name": DATA_VOLUME, "mountPath": spec["volume"]["mount"]},
        ],
    }
    resources = {k: spec[k] for k in ("cpu", "memory") if spec.get(k)}
    if resources:
        container["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    labels = {LABEL_JOB_ID: job_id, LABEL_RUN: str(spec.get("run") or 1), "app.kubernetes.io/managed-by": "kfjupyter"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": {"kfjupyter.io/model-version": spec["version"]["ref"]}},
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": min(spec.get("workers") or 1, completions),
            "backoffLimit": 0,
            # a pod preempted or evicted is not the shard's failure: the Job replaces it
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
            "template": {
                "metadata": {"labels": {LABEL_JOB_ID: job_id}, "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [
                        {"name": PLAN_VOLUME, "configMap": {"name": f"{name}-bundle", "items": items}},
                        {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": spec["volume"]["claim"]}},
                    ],
                },
            },
        },
    }


def parse_indexes(text: str | None) -> set[int]:
    """A Job's ``completedIndexes`` (``"0-2,5,7-8"``) as a set."""
    out: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


# --------------------------------------------------------------------------- the engine


class KubernetesBatchEngine(PodWorkloadEngine):
    """The ``("batch", "kubernetes")`` engine (see the module docstring)."""

    kind = "batch"
    name = "kubernetes"
    features = Features(metrics=True, children=True, changes="watch")
    container = CONTAINER

    # -- submit
    def submit(self, job_id: str, spec, job_dir: Path) -> dict:
        from ..training.kubernetes import bundle_configmap

        spec = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        run = int(spec.get("run") or 1)
        name = k8s_job_name(job_id, run)
        check_dns1123_label(name, "Kubernetes Job name")
        ws = get_workspace()
        done = {int(k.name) for k in ws.list_children(job_id, SHARD) if k.status == st.SUCCEEDED}
        shards = spec["shards"]
        # the shards to run; none left (a run stopped while writing the outputs): the last one again, which merges
        run_shards = [s["index"] for s in shards if s["index"] not in done] or [shards[-1]["index"]]
        clients = self._connect(namespace=spec.get("namespace"))
        ns = clients.namespace
        model_in, model_dir, files = model_files(spec)
        plan = pod_plan(job_id, spec, run_shards, model_in, model_dir)
        files[PLAN_FILE] = json.dumps(plan, indent=1).encode()
        configmap, items = bundle_configmap(name, ns, files)
        job = job_manifest(job_id, name, ns, spec, items, len(run_shards))
        # both are checked, and the claim looked up, before the first object is created
        validate_job(job)
        try:
            validate_configmap(configmap)
        except ConfigMapTooLargeError as exc:
            raise PreflightError(
                f"the files of {spec['version']['ref']} take {exc.size} bytes, more than a ConfigMap holds (1 MiB): keep "
                f"the workspace's model registry on the volume (KFJUPYTER_HOME under {spec['volume']['mount']}) so the "
                "pods read the model where it is"
            ) from exc
        self._check_claim(clients, spec["volume"]["claim"])
        try:
            clients.core.create_namespaced_config_map(ns, configmap, field_validation="Strict")
        except Exception as exc:
            raise self._api_error(exc, f"create ConfigMap {configmap['metadata']['name']}") from exc
        try:
            resp = clients.batch.create_namespaced_job(ns, job, field_validation="Strict", _preload_content=False)
            created = json.loads(resp.data)
            resp.release_conn()
        except Exception as exc:
            self._delete_configmap(clients, configmap["metadata"]["name"])  # leave nothing behind
            raise self._api_error(exc, f"create Job {name}") from exc
        owned = own_configmap(clients, configmap["metadata"]["name"], created)
        position = {shard: i for i, shard in enumerate(run_shards)}
        ws.sync_children(job_id, [
            {"name": str(s["index"]), "kind": SHARD, "position": s["index"], "message": None, "error": None,
             "status": st.PENDING, "started_at": None, "finished_at": None,
             "attrs": {"file": Path(s["file"]).name, "start": s["start"], "stop": s["stop"], "job": name,
                       "index": position[s["index"]], "run": run}}
            for s in shards if s["index"] in position and s["index"] not in done])  # fmt: skip
        if done:
            ws.update_job(job_id, message=f"resuming: {len(done)} of {len(shards)} shards already done, "
                                          f"running the {len(run_shards)} others")  # fmt: skip
        try:
            (Path(job_dir) / f"{name}.json").write_text(json.dumps(job, indent=2))
        except OSError:
            pass
        return {"namespace": ns, "context": clients.context, "server": clients.server, "job": name,
                "uid": created["metadata"]["uid"], "configmap": configmap["metadata"]["name"], "configmap_owned": owned,
                "run": run, "run_shards": run_shards, "workers": job["spec"]["parallelism"]}  # fmt: skip

    def _check_claim(self, clients: K8sClients, claim: str) -> None:
        try:
            resp = clients.core.read_namespaced_persistent_volume_claim(claim, clients.namespace, _preload_content=False)
            resp.data  # read whole: the connection goes back to the pool clean
            resp.release_conn()
        except Exception as exc:
            if self._status_of(exc) == 404:
                raise InvalidOptionError(f"no PersistentVolumeClaim {claim!r} in namespace {clients.namespace}: "
                                         "the pods would wait for it forever") from exc  # fmt: skip
            raise self._api_error(exc, f"read PersistentVolumeClaim {claim}") from exc

    def _delete_configmap(self, clients: K8sClients, name: str) -> None:
        try:
            clients.core.delete_namespaced_config_map(name, clients.namespace)
        except Exception as exc:
            if self._status_of(exc) != 404:
                raise self._api_error(exc, f"delete ConfigMap {name}") from exc

    # -- observe
    def _get(self, clients: K8sClients, name: str) -> dict | None:
        try:
            resp = clients.batch.read_namespaced_job(name, clients.namespace, _preload_content=False)
        except Exception as exc:
            if self._status_of(exc) == 404:
                return None
            raise self._api_error(exc, f"read Job {name}") from exc
        try:
            return json.loads(resp.data)
        finally:
            resp.release_conn()

    def _job_pods(self, clients: K8sClients, name: str, index: int | None = None) -> list[dict]:
        selector = f"{JOB_NAME_LABEL}={name}" + (f",{INDEX_LABEL}={index}" if index is not None else "")
        return self._list_pods(clients, selector)

    def observe(self, job_id: str, info: dict) -> Observation:
        clients = self._connect(info)
        name = info["job"]
        obj = self._get(clients, name)
        seen = deletion(f"Job {clients.namespace}/{name}", obj, info.get("uid"))
        if seen is not None:
            if seen.status == st.CANCELLED:
                get_workspace().end_children(job_id, st.CANCELLED, "cancelled by the user")
            return seen
        status = obj.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        pods = self._job_pods(clients, name)
        done, total, rows = self._sync(job_id, info, status, pods, conditions)
        progress = f"{done}/{total} shards, {rows} rows"
        if failed := conditions.get("Failed"):
            reason = ": ".join(p for p in (failed.get("reason"), failed.get("message")) if p) or "the Job failed"
            detail = self._failure_log(clients, pods, lambda pod: f"shard {self._shard_of(info, pod)}", "shard")
            return Observation(st.FAILED, error=f"Job {name} failed: {reason}" + (f"\n\n{detail}" if detail else ""),
                               message=f"failed: {progress}")  # fmt: skip
        if "Complete" in conditions:
            spec = get_workspace().get_job(job_id).spec or {}
            return Observation(st.SUCCEEDED, message=f"{rows} rows predicted with {spec['version']['ref']}")
        if suspended := conditions.get("Suspended"):
            return Observation(st.PENDING, message=f"suspended: {suspended.get('message') or ''}".strip())
        seen = Observation(st.RUNNING, message=progress) if any(phase(p) == "Running" for p in pods) else \
            Observation(st.PENDING, message=pending_reason(pods) or progress)
        record = get_workspace().get_job(job_id)
        if record.status == seen.status and record.message != seen.message:  # progress: the job's message says it
            get_workspace().update_job(job_id, only_if_active=True, message=seen.message)
        return seen

    @staticmethod
    def _shard_of(info: dict, pod: dict) -> str:
        index = (pod["metadata"].get("labels") or {}).get(INDEX_LABEL)
        run_shards = info.get("run_shards") or []
        return str(run_shards[int(index)]) if index is not None and index.isdigit() and int(index) < len(run_shards) else "?"

    def _sync(self, job_id: str, info: dict, status: dict, pods: list[dict], conditions: dict) -> tuple[int, int, int]:
        """The shards' child tasks as the Job says (its completed indexes, its pods, its end);
        (shards done, shards, rows done)."""
        ws = get_workspace()
        kids = {k.name: k for k in ws.list_children(job_id, SHARD)}
        run_shards = info.get("run_shards") or []
        completed = {run_shards[i] for i in parse_indexes(status.get("completedIndexes")) if i < len(run_shards)}
        phases: dict[int, str] = {}
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
            index = (pod["metadata"].get("labels") or {}).get(INDEX_LABEL)
            if index is not None and index.isdigit() and int(index) < len(run_shards):
                phases[run_shards[int(index)]] = phase(pod)
        ended = "Failed" in conditions
        now = datetime.now(timezone.utc)
        rows = []
        for shard in run_shards:
            kid = kids.get(str(shard))
            if kid is None or kid.status in st.CHILD_TERMINAL:
                continue
            if shard in completed:
                rows.append({"name": str(shard), "status": st.SUCCEEDED, "finished_at": now,
                             "started_at": kid.started_at or now})  # fmt: skip
            elif phases.get(shard) == "Failed":
                rows.append({"name": str(shard), "status": st.FAILED, "finished_at": now, "message": "its pod failed"})
            elif ended:
                rows.append({"name": str(shard), "status": st.CANCELLED, "finished_at": now,
                             "message": "not run: another shard failed"})  # fmt: skip
            elif phases.get(shard) == "Running" and kid.status != st.RUNNING:
                rows.append({"name": str(shard), "status": st.RUNNING, "started_at": now})
        if rows:
            ws.sync_children(job_id, rows)
            kids = {k.name: k for k in ws.list_children(job_id, SHARD)}
        spec_shards = {str(s["index"]): s for s in (ws.get_job(job_id).spec or {}).get("shards") or []}
        done = [n for n, k in kids.items() if k.status == st.SUCCEEDED]
        return len(done), len(kids), sum(spec_shards[n]["stop"] - spec_shards[n]["start"] for n in done if n in spec_shards)

    def changes(self, job_id: str, info: dict) -> Changes:
        """Watches of the Job and of its pods (what :meth:`observe` reads)."""
        clients = self._connect(info)
        ns, name = clients.namespace, info["job"]
        return (
            Changes()
            .watch(functools.partial(clients.batch.list_namespaced_job, ns), field_selector=f"metadata.name={name}")
            .watch(functools.partial(clients.core.list_namespaced_pod, ns), label_selector=f"{JOB_NAME_LABEL}={name}")
        )

    # -- channels
    def channels(self, job_id: str, info: dict) -> Channels:
        run_shards = info.get("run_shards") or []
        logs = tuple(Channel(f"index-{i}", f"index {i} (shard {s})", rank=i) for i, s in enumerate(run_shards))
        return Channels(logs=logs, metrics=(PROGRESS,))

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop=None) -> Iterator[str]:  # fmt: skip
        """``index-I``: the newest pod of completion index I of this run's Job; ``shard/N``: the
        pod that ran (or runs) shard N, in whichever run of the job it ran."""
        clients = self._connect(info)
        kind, sep, number = channel.partition("/")
        if sep and kind == SHARD:
            try:
                kid = get_workspace().get_child(job_id, number)
            except Exception:  # noqa: BLE001  (no such shard)
                raise self.unknown_channel(job_id, channel, self.channels(job_id, info)) from None
            job, index = (kid.attrs or {}).get("job"), (kid.attrs or {}).get("index")
            if job is None or index is None:
                return iter(())
        elif channel.startswith("index-") and channel[6:].isdigit() and int(channel[6:]) < len(info.get("run_shards") or []):
            job, index = info["job"], int(channel[6:])
        else:
            raise self.unknown_channel(job_id, channel, self.channels(job_id, info))
        find = lambda: self._newest_pod(clients, f"{JOB_NAME_LABEL}={job},{INDEX_LABEL}={index}")  # noqa: E731
        if job != info["job"]:  # a shard of an earlier run: its pod has ended (or is gone with its Job)
            follow = False
        return self._pod_log(job_id, info, find, follow=follow, tail=tail, stop=stop)

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        """Progress (the ``batch`` channel): the rows and shards done as each shard ended."""
        if channel not in (None, PROGRESS.name):
            return []
        ws = get_workspace()
        sizes = {str(s["index"]): s["stop"] - s["start"] for s in (ws.get_job(job_id).spec or {}).get("shards") or []}
        done = sorted((k for k in ws.list_children(job_id, SHARD) if k.status == st.SUCCEEDED and k.finished_at),
                      key=lambda k: (k.finished_at, k.position))  # fmt: skip
        out, rows = [], 0
        for step, kid in enumerate(done, start=1):
            rows += sizes.get(kid.name, 0)
            finished = kid.finished_at if kid.finished_at.tzinfo else kid.finished_at.replace(tzinfo=timezone.utc)
            out.append({"rank": PROGRESS.rank, "step": step, "shards": step, "rows": rows, "time": finished.timestamp()})
        return out

    # -- cancel
    def cancel(self, job_id: str, info: dict) -> None:
        """Delete the Job (foreground: its pods first, the ConfigMap with it) once its
        completed indexes are recorded (a resume skips those shards)."""
        clients = self._connect(info)
        name = info["job"]
        obj = self._get(clients, name)
        if obj is not None and not (obj.get("metadata") or {}).get("deletionTimestamp"):
            status = obj.get("status") or {}
            self._sync(job_id, info, status, [], {})
        try:
            clients.batch.delete_namespaced_job(name, clients.namespace, propagation_policy="Foreground")
        except Exception as exc:
            if self._status_of(exc) != 404:
                raise self._api_error(exc, f"delete Job {name}") from exc
        if not info.get("configmap_owned"):
            self._delete_configmap(clients, info.get("configmap") or f"{name}-bundle")
        get_workspace().end_children(job_id, st.CANCELLED, "cancelled by the user")
