"""What every engine whose job runs as Kubernetes pods shares: the connection, the API's
errors as kfjupyter's, waiting on a watch, finding a pod, reading and following its log,
and saying why a pod failed (its Python traceback) or why pods wait.

The training engine (a Trainer ``TrainJob``: pods of a JobSet) and the batch inference
engine (a ``batch/v1`` Indexed Job) are subclasses of :class:`PodWorkloadEngine`; each says
which pods are whose (label selectors) and names its container.
"""

from __future__ import annotations

import json
import re
import time
from typing import Callable, ClassVar, Iterator

from .. import status as st
from ..errors import BackendError
from ..runtime.engine import EngineBase
from ..status import Observation
from .client import K8sClients, connect, stream_lines

#: Lines of a failed pod's log put in the job's error when no traceback is found.
ERROR_TAIL_LINES = 40
TRACEBACK = "Traceback (most recent call last)"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
_LAUNCHER_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # torchrun's own (glog-style) log lines


def traceback_of(lines: list[str]) -> list[str] | None:
    """The first Python traceback in ``lines`` (with its chained causes), or None."""
    start = next((i for i, line in enumerate(lines) if line.startswith(TRACEBACK)), None)
    if start is None:
        return None
    out: list[str] = []
    for line in lines[start:]:
        if out and line.startswith(TRACEBACK) and not any(c in "\n".join(out[-3:]) for c in _CHAINED):
            break  # a new, unrelated traceback (the launcher's)
        if _LAUNCHER_LOG.match(line) or len(out) >= 120:
            break
        out.append(line)
    return out


def phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def pending_reason(pods: list[dict]) -> str | None:
    """Why pods wait (not scheduled, an image that does not pull …), or None."""
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


def newest(pods: list[dict]) -> dict | None:
    """The most recently created of ``pods`` (a retried index or rank has several)."""
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


class PodWorkloadEngine(EngineBase):
    """Base of the engines whose job is a Kubernetes workload of pods (see the module docstring)."""

    #: the container whose log is the pod's log
    container: ClassVar[str] = ""
    #: how long a follower waits between two looks for a pod that has not started
    poll_interval: float = 0.5

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

    def wait(self, job_id: str, info: dict, timeout: float | None = None) -> Observation:
        """Watch the job's objects until it ends (or ``timeout`` seconds); its last observation."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changes(job_id, info) as changes:
            while (obs := self.observe(job_id, info)).status not in st.TERMINAL:
                left = 60.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return obs
                changes.wait(min(left, 60.0))
        return obs

    # -- pods
    def _list_pods(self, clients: K8sClients, selector: str) -> list[dict]:
        try:
            resp = clients.core.list_namespaced_pod(clients.namespace, label_selector=selector, _preload_content=False)
        except Exception as exc:
            raise self._api_error(exc, f"list the pods {selector}") from exc
        try:
            return json.loads(resp.data)["items"]
        finally:
            resp.release_conn()

    def _newest_pod(self, clients: K8sClients, selector: str) -> dict | None:
        return newest(self._list_pods(clients, selector))

    def _read_log(self, clients: K8sClients, pod: str, tail: int | None = None, timestamps: bool = False) -> list[str]:
        """The lines of ``pod``'s container log (none while it has not started, or once it is gone)."""
        try:
            resp = clients.core.read_namespaced_pod_log(
                pod, clients.namespace, container=self.container, tail_lines=tail,
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

    def _pod_log(self, job_id: str, info: dict, find: Callable[[], dict | None], *, follow: bool, tail: int | None,
                 stop=None) -> Iterator[str]:  # fmt: skip
        """The log of the pod ``find()`` returns (its newest); with ``follow``, waiting
        (watching the job) for it to start, then its lines as they come until it ends."""
        clients = self._connect(info)
        if not follow:
            pod = find()
            if pod is None or phase(pod) == "Pending":
                return
            yield from self._read_log(clients, pod["metadata"]["name"], tail=tail)
            return
        with self.changes(job_id, info) as changes:
            while (pod := find()) is None or phase(pod) == "Pending":
                if self.observe(job_id, info).status in st.TERMINAL or (stop is not None and stop.is_set()):
                    return
                while not changes.wait(self.poll_interval):
                    if stop is not None and stop.is_set():
                        return
        while True:
            try:
                resp = clients.core.read_namespaced_pod_log(
                    pod["metadata"]["name"], clients.namespace, container=self.container,
                    follow=True, tail_lines=tail, _preload_content=False,
                )  # fmt: skip
            except Exception as exc:
                if self._status_of(exc) in (400, 404):  # not started yet, or gone meanwhile
                    if stop is not None and stop.is_set():
                        return
                    time.sleep(self.poll_interval)
                    if self._status_of(exc) == 404:
                        return
                    continue
                raise self._api_error(exc, f"read the log of {pod['metadata']['name']}") from exc
            try:
                yield from stream_lines(resp, stop)
            finally:
                resp.close()
                resp.release_conn()
            return

    def _failure_log(self, clients: K8sClients, pods: list[dict], describe: Callable[[dict], str], what: str) -> str:
        """The traceback (else the log tail) of the pod that failed first, named by
        ``describe(pod)`` (``rank 1``, ``shard 3``), and which others failed too.

        Pods that lose a peer fail too (with a connection error), a moment later; the log
        timestamps of the tracebacks tell which came first.
        """
        failed = []
        for pod in pods[:16]:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if cs.get("name") == self.container and term.get("exitCode"):
                    stamped = self._read_log(clients, pod["metadata"]["name"], timestamps=True)
                    pairs = [line.partition(" ")[::2] for line in stamped]  # (timestamp, text)
                    texts = [text for _, text in pairs]
                    first = next((stamp for stamp, text in pairs if text.startswith(TRACEBACK)), None)
                    failed.append((first or "~", term.get("finishedAt") or "", pod, texts))
        if not failed:
            return ""
        failed.sort(key=lambda f: f[:2])  # tracebacks by time, then pods without one
        _, _, pod, lines = failed[0]
        shown = traceback_of(lines) or lines[-ERROR_TAIL_LINES:]
        text = f"{describe(pod)} (pod {pod['metadata']['name']}):\n" + "\n".join(shown)
        others = [describe(f[2]).removeprefix(f"{what} ") for f in failed[1:]]
        if others:
            text += f"\n({what} {', '.join(others)} failed too)"
        return text


def own_configmap(clients: K8sClients, name: str, owner: dict) -> bool:
    """Make the object ``owner`` (as the API server returned it) the owner of ConfigMap
    ``name``, so deleting it garbage-collects the ConfigMap; False if the API refused (the
    engine's cancel then deletes the ConfigMap itself)."""
    from .client import merge_patch

    meta = owner.get("metadata") or {}
    ref = {"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind"), "name": meta.get("name"), "uid": meta.get("uid")}
    try:
        merge_patch(clients.core.patch_namespaced_config_map, name, meta.get("namespace") or clients.namespace,
                    {"metadata": {"ownerReferences": [ref]}})  # fmt: skip
        return True
    except Exception:  # noqa: BLE001
        return False
