"""The Kubernetes tuning backend: a Katib ``Experiment`` per study (see :mod:`.katib`).

A study becomes a ConfigMap ``<job-id>-bundle`` (the program, as for training; owned by
the Experiment so deleting it collects the ConfigMap) and an Experiment ``<job-id>``.
Katib's controllers create a ``Trial`` per suggestion (labelled
``katib.kubeflow.org/experiment=<job-id>``), run its Job or TrainJob, and collect the
objective from the trial's output. The Study view reads the Trials (parameter
assignments, observation, conditions) and the Experiment's ``currentOptimalTrial``.
"""

from __future__ import annotations

import functools
import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .. import status as st
from ..capture.bundle import BOOTSTRAP, Bundle
from ..errors import BackendError, InvalidOptionError
from ..k8s.client import K8sClients, connect, merge_patch, stream_lines
from ..k8s.observe import Changes, deletion
from ..k8s.schema import parse_rfc3339, validate_configmap
from ..k8s.tracking import submission
from ..runtime.engine import Channel, Channels, EngineBase, Features, UnknownChannelError
from ..runtime.logs import poll_follow
from ..status import Observation
from ..store.workspace import get_workspace
from ..training.kubernetes import bundle_configmap, configmap_name
from ..validation import check_dns1123_label
from . import katib
from .spec import TuneSpec

#: Katib's Trial conditions → the Study view's trial states.
TRIAL_STATES = {
    "Succeeded": "COMPLETE",
    "EarlyStopped": "PRUNED",
    "Failed": "FAIL",
    "MetricsUnavailable": "FAIL",
    "Killed": "CANCELLED",
    "Running": "RUNNING",
    "Created": "WAITING",
}
_STRATEGY_FIELD = {"min": "min", "max": "max", "latest": "latest"}


def _seconds(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return parse_rfc3339(stamp)
    except ValueError:
        return None


def _iso(stamp: str | None) -> str | None:
    seconds = _seconds(stamp)
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat() if seconds is not None else None


EXPERIMENT_CHANNEL = Channel("experiment", "experiment", rank=0)
TRIALS_CHANNEL = Channel("trials", "trials", rank=0)


class KubernetesTuneBackend(EngineBase):
    """Studies as Katib Experiments. Channels: ``experiment`` (a line per trial state seen),
    ``trial/N`` (the trial's primary pod's log) and the metric channel ``trials``."""

    kind = "tune"
    name = "kubernetes"
    features = Features(metrics=True, children=True, changes="watch")

    def __init__(self, clients: K8sClients | None = None):
        self._clients = clients

    def _connect(self, info: dict | None = None, namespace: str | None = None) -> K8sClients:
        if self._clients is not None:
            return self._clients
        if info:
            return connect(namespace=info.get("namespace"), context=info.get("context"))
        return connect(namespace=namespace)

    @staticmethod
    def _api_error(exc: Exception, doing: str) -> BackendError:
        body = getattr(exc, "body", None)
        try:
            message = json.loads(body).get("message") if body else None
        except (ValueError, AttributeError):
            message = None
        return BackendError(f"cannot {doing}: {message or exc}")

    # -- submit

    def submit(self, job_id: str, spec: TuneSpec, job_dir: Path) -> dict:
        check_dns1123_label(job_id, "tuning job id", katib.MAX_NAME_LENGTH)
        bundle = Bundle(job_dir / "bundle")
        files = bundle.files()
        if BOOTSTRAP not in files:
            raise InvalidOptionError(f"bundle {bundle.root} has no {BOOTSTRAP}")
        clients = self._connect(namespace=spec.namespace)

        def build(tracking) -> tuple[dict, dict]:
            configmap, items = bundle_configmap(job_id, clients.namespace, {**files, **tracking.files}, bundle.sha256)
            return configmap, katib.experiment_manifest(job_id, clients.namespace, spec, items, tracking)

        def check(built: tuple[dict, dict]) -> None:
            katib.validate_experiment(built[1])  # both are checked before anything is sent
            validate_configmap(built[0])

        with submission(job_id, "tune", build, check) as (configmap, experiment):
            return self._create(job_id, clients, configmap, experiment, job_dir, spec)

    def _create(self, job_id: str, clients, configmap: dict, experiment: dict, job_dir: Path, spec: TuneSpec) -> dict:
        core, custom, ns = clients.core, clients.custom, clients.namespace
        try:
            core.create_namespaced_config_map(ns, configmap, field_validation="Strict")
        except Exception as exc:
            raise self._api_error(exc, f"create ConfigMap {configmap_name(job_id)}") from exc
        try:
            created = custom.create_namespaced_custom_object(
                katib.KATIB_GROUP, katib.KATIB_VERSION, ns, katib.EXPERIMENTS, experiment, field_validation="Strict"
            )
        except Exception as exc:
            try:
                core.delete_namespaced_config_map(configmap_name(job_id), ns)
            except Exception:
                pass
            raise self._api_error(exc, f"create Experiment {job_id}") from exc
        uid = created["metadata"]["uid"]
        try:
            merge_patch(
                core.patch_namespaced_config_map, configmap_name(job_id), ns,
                {"metadata": {"ownerReferences": [
                    {"apiVersion": katib.API_VERSION, "kind": "Experiment", "name": job_id, "uid": uid}]}},
            )  # fmt: skip
        except Exception:
            pass  # cancel() deletes it explicitly
        try:
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / "experiment.json").write_text(json.dumps(experiment, indent=2))
        except OSError:
            pass
        return {
            "namespace": ns,
            "context": clients.context,
            "server": clients.server,
            "experiment": job_id,
            "uid": uid,
            "configmap": configmap_name(job_id),
            "workers": spec.parallel,
        }

    # -- state

    def _experiment(self, info: dict) -> dict | None:
        clients = self._connect(info)
        try:
            obj = clients.custom.get_namespaced_custom_object(
                katib.KATIB_GROUP, katib.KATIB_VERSION, clients.namespace, katib.EXPERIMENTS, info["experiment"]
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise self._api_error(exc, f"read Experiment {info['experiment']}") from exc
        if info.get("uid") and obj["metadata"].get("uid") != info["uid"]:
            return None
        return obj

    def observe(self, job_id: str, info: dict) -> Observation:
        obj = self._experiment(info)
        if seen := deletion(f"Experiment {info.get('namespace')}/{info['experiment']}", obj):
            return seen  # its Trials go with it (they were marked Cancelled by the cancel)
        self._sync_children(job_id, info)
        conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}

        def true(kind: str) -> dict | None:
            c = conditions.get(kind)
            return c if c and c.get("status") == "True" else None

        status = obj.get("status") or {}
        progress = (
            f"{status.get('trialsSucceeded', 0)} succeeded, {status.get('trialsEarlyStopped', 0)} early stopped, "
            f"{status.get('trialsFailed', 0)} failed, {status.get('trialsRunning', 0)} running "
            f"of {(obj.get('spec') or {}).get('maxTrialCount')}"
        )
        if failed := true("Failed"):
            message = failed.get("message") or failed.get("reason") or "Experiment failed"
            return Observation(st.FAILED, error=message, message=progress)
        if true("Succeeded"):
            return Observation(st.SUCCEEDED, message=progress)
        if true("Running"):
            return Observation(st.RUNNING, message=progress)
        return Observation(st.PENDING, message=progress)

    def changes(self, job_id: str, info: dict) -> Changes:
        """Watches of the Experiment and of its Trials (what :meth:`observe` reads)."""
        clients = self._connect(info)
        call = functools.partial(clients.custom.list_namespaced_custom_object, katib.KATIB_GROUP, katib.KATIB_VERSION, clients.namespace)
        return (Changes().watch(functools.partial(call, katib.EXPERIMENTS), field_selector=f"metadata.name={info['experiment']}")
                .watch(functools.partial(call, katib.TRIALS), label_selector=f"{katib.EXPERIMENT_LABEL}={info['experiment']}"))  # fmt: skip

    def cancel(self, job_id: str, info: dict) -> None:
        clients = self._connect(info)
        try:
            clients.custom.delete_namespaced_custom_object(
                katib.KATIB_GROUP, katib.KATIB_VERSION, clients.namespace, katib.EXPERIMENTS, info["experiment"],
                propagation_policy="Foreground",
            )  # fmt: skip
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                raise self._api_error(exc, f"delete Experiment {job_id}") from exc
        try:
            clients.core.delete_namespaced_config_map(info.get("configmap", configmap_name(job_id)), clients.namespace)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                raise self._api_error(exc, f"delete ConfigMap {configmap_name(job_id)}") from exc
        get_workspace().end_children(job_id, st.CANCELLED, "cancelled by the user")  # the Trials went with it

    # -- the Study view

    def _trial_objects(self, info: dict) -> list[dict]:
        clients = self._connect(info)
        try:
            resp = clients.custom.list_namespaced_custom_object(
                katib.KATIB_GROUP, katib.KATIB_VERSION, clients.namespace, katib.TRIALS,
                label_selector=f"{katib.EXPERIMENT_LABEL}={info['experiment']}",
            )  # fmt: skip
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return []
            raise self._api_error(exc, f"list the trials of {info['experiment']}") from exc
        items = resp.get("items") or []
        return sorted(items, key=lambda t: (t["metadata"].get("creationTimestamp") or "", t["metadata"]["name"]))

    def _spec(self, job_id: str) -> TuneSpec:
        return TuneSpec.from_dict(get_workspace().get_job(job_id).spec)

    def _row(self, number: int, trial: dict, spec: TuneSpec) -> dict:
        status = trial.get("status") or {}
        state, error = "WAITING", None
        for cond in status.get("conditions") or []:
            if cond.get("status") == "True" and cond.get("type") in TRIAL_STATES:
                state = TRIAL_STATES[cond["type"]]  # the last true condition wins
                if cond["type"] in ("Failed", "MetricsUnavailable", "Killed"):
                    error = cond.get("message") or cond.get("reason")
                    if cond["type"] == "MetricsUnavailable":
                        error = f"the objective {spec.objective!r} was never reported ({error})"
        params = {}
        for a in (trial.get("spec") or {}).get("parameterAssignments") or []:
            p = spec.space.get(a.get("name"))
            params[a.get("name")] = p.parse(str(a.get("value"))) if p else a.get("value")
        value = self._value(status.get("observation"), spec) if state == "COMPLETE" else None
        start, end = _seconds(status.get("startTime")), _seconds(status.get("completionTime"))
        now = datetime.now(timezone.utc).timestamp()
        return {
            "number": number,
            "name": trial["metadata"]["name"],
            "state": state,
            "value": value,
            "params": params,
            "intermediate": {},
            "datetime_start": _iso(status.get("startTime")),
            "datetime_complete": _iso(status.get("completionTime")),
            "duration_s": (end or now) - start if start else None,
            "error": error,
            "worker": None,
            "channel": f"trial/{number}",
        }

    @staticmethod
    def _value(observation: dict | None, spec: TuneSpec) -> float | None:
        field = _STRATEGY_FIELD[katib.STRATEGY[(spec.strategy, spec.direction)]]
        for metric in (observation or {}).get("metrics") or []:
            if metric.get("name") == spec.objective:
                try:
                    return float(metric.get(field))
                except (TypeError, ValueError):
                    return None  # "unavailable"
        return None

    def trials(self, job_id: str, info: dict) -> list[dict]:
        spec = self._spec(job_id)
        return [self._row(i, t, spec) for i, t in enumerate(self._trial_objects(info))]

    def best(self, job_id: str, info: dict, spec: TuneSpec) -> dict | None:
        """Katib's ``currentOptimalTrial``, as a trial row."""
        obj = self._experiment(info)
        optimal = ((obj or {}).get("status") or {}).get("currentOptimalTrial") or {}
        name = optimal.get("bestTrialName")
        if not name:
            return None
        value = self._value(optimal.get("observation"), spec)
        if value is None:
            return None
        rows = {r["name"]: r for r in self.trials(job_id, info)}
        params = {}
        for a in optimal.get("parameterAssignments") or []:
            p = spec.space.get(a.get("name"))
            params[a.get("name")] = p.parse(str(a.get("value"))) if p else a.get("value")
        row = dict(rows.get(name) or {"number": None, "name": name, "state": "COMPLETE", "intermediate": {},
                                       "datetime_start": None, "datetime_complete": None, "duration_s": None,
                                       "error": None, "worker": None})  # fmt: skip
        row.update(value=value, params=params)
        return row

    def _sync_children(self, job_id: str, info: dict) -> None:
        """The Experiment's Trials as the study's child tasks in the store."""
        from .study import trial_child

        get_workspace().sync_children(job_id, [trial_child(t) for t in self.trials(job_id, info)])

    def backfill_children(self, job_id: str, info: dict) -> None:
        if self._experiment(info) is not None:
            self._sync_children(job_id, info)

    # -- channels

    def channels(self, job_id: str, info: dict) -> Channels:
        return Channels(logs=(EXPERIMENT_CHANNEL,), metrics=(TRIALS_CHANNEL,))

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        if channel not in (None, TRIALS_CHANNEL.name):
            return []
        from .study import trial_metrics

        return trial_metrics(self.trials(job_id, info), self._spec(job_id).objective)

    def _summary(self, job_id: str, info: dict) -> list[str]:
        lines = []
        for t in self.trials(job_id, info):
            value = f" value={t['value']:.6g}" if t["value"] is not None else ""
            lines.append(f"trial {t['number']} {t['name']} {t['state']}{value} {t['params']}")
        return lines

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop: threading.Event | None = None) -> Iterator[str]:  # fmt: skip
        """``experiment``: one line per trial in its current state (followed: a line each
        time a trial's state changes); ``trial/N``: the log of the trial's primary pod."""
        done = lambda: self.observe(job_id, info).status in st.TERMINAL  # noqa: E731
        if channel == EXPERIMENT_CHANNEL.name:
            if follow:
                return poll_follow(lambda: self._summary(job_id, info), done, tail=tail, stop=stop)
            lines = self._summary(job_id, info)
            return iter(lines[-tail:] if tail else lines)
        kind, _, number = channel.partition("/")
        if kind != "trial" or not number.isdigit():
            raise self.unknown_channel(job_id, channel, self.channels(job_id, info))
        return self._trial_log(job_id, info, int(number), tail, follow, stop)

    def _trial_log(self, job_id, info, number, tail, follow, stop) -> Iterator[str]:
        """The log of the trial's primary pod (rank 0 of a distributed trial)."""
        objects = self._trial_objects(info)
        if not 0 <= number < len(objects):
            raise UnknownChannelError(f"study {job_id} has no trial {number}")
        clients = self._connect(info)
        name = objects[number]["metadata"]["name"]
        resp = clients.core.list_namespaced_pod(
            clients.namespace, label_selector=f"{katib.LABEL_TRIAL}={name}", _preload_content=False
        )
        try:
            pods = json.loads(resp.data)["items"]
        finally:
            resp.release_conn()
        lines: list[str] = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            labels = pod["metadata"].get("labels") or {}
            if labels.get("batch.kubernetes.io/job-completion-index", "0") != "0":
                continue
            container = katib.CONTAINER if "jobset.sigs.k8s.io/jobset-name" not in labels else "node"
            try:
                log = clients.core.read_namespaced_pod_log(
                    pod["metadata"]["name"], clients.namespace, container=container, follow=follow or None,
                    tail_lines=tail, _preload_content=False,
                )  # fmt: skip
            except Exception as exc:
                if getattr(exc, "status", None) not in (400, 404):
                    raise self._api_error(exc, f"read the log of {pod['metadata']['name']}") from exc
                continue
            if follow:
                return stream_lines(log, stop)
            lines += log.data.decode("utf-8", errors="replace").splitlines()
            log.release_conn()
        return iter(lines[-tail:] if tail else lines)
