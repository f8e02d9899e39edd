"""MLflow tracking from Kubernetes jobs: what a job's pods need to send its runs to the
team's MLflow-compatible tracking server.

A local job's runs are copied by its tracker (:mod:`.follow`). A Kubernetes job's pods send
their own: each tracked rank starts the sender of :mod:`.mlflow_sender` beside its
program (the bootstrap does, in any image that has an MLflow client, with or without the
kfjupyter package), so ``kfjupyter.report`` inside the pod goes to MLflow with its steps,
buffered in the rank's metrics file and retried, and the training loop never waits for the
network. A lost tracking server never fails the pod's job.

The server the pods are given (checked before anything is submitted):

* ``KFJUPYTER_CLUSTER_TRACKING_URI`` (``c.KFJupyter.cluster_tracking_uri``) when set: the
  server as the cluster sees it, e.g. ``http://mlflow.mlflow.svc.cluster.local:5000``
  (``none``: no MLflow for Kubernetes jobs). A loopback address there is taken as meant
  (a sidecar in the pod serves it) with a warning;
* else ``MLFLOW_TRACKING_URI`` itself, unless it names this machine (a loopback address,
  ``localhost``, ``0.0.0.0``) or a store on its disk (a folder, ``file:``, ``sqlite:``),
  which no pod can reach: then the job is refused, saying so and what to set.

A token never goes into a manifest: ``KFJUPYTER_CLUSTER_TRACKING_TOKEN_SECRET=NAME[/KEY]``
(``c.KFJupyter.cluster_tracking_token_secret``; the key defaults to ``token``) gives the
pods ``MLFLOW_TRACKING_TOKEN`` from that Secret (a ``secretKeyRef``).

Before the job's objects are created, its run is created on the server from here (the
job's params and tags, as for a local job: :meth:`.mlflow_sink.MlflowSink.open`) and its
MLflow ids go to the pods as MLflow's own variables (``MLFLOW_RUN_ID`` for a training's
ranks, so the program's own ``mlflow`` calls land in the same run; ``MLFLOW_EXPERIMENT_ID``).
A trial's and a pipeline step's pod creates its nested run (``mlflow.parentRunId``: the
job's run). When the server cannot be reached from here, the job goes anyway (a warning)
and its pods create the run. If the submission fails after that, the run is ended FAILED.

The end: rank 0 ends a training's run (and uploads its outputs and program); the run of a
study or a pipeline (and of a job whose pods never ran) is ended from here when the job is
seen ending (:func:`job_ended`), or by ``kfjupyter.tracking.sync(job_id)``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import urllib.parse
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from .. import status as st
from ..errors import InvalidOptionError, KFJupyterError
from ..store.runs import DEFAULT_EXPERIMENT, RunRecord
from ..store.workspace import get_workspace
from ..validation import check_dns1123_subdomain
from . import mlflow_sender
from .follow import tracking_uri

CLUSTER_URI = "KFJUPYTER_CLUSTER_TRACKING_URI"
TOKEN_SECRET = "KFJUPYTER_CLUSTER_TRACKING_TOKEN_SECRET"
DEFAULT_TOKEN_KEY = "token"
#: values of KFJUPYTER_CLUSTER_TRACKING_URI that turn MLflow off for Kubernetes jobs
OFF = ("none", "off")
#: the kind of the runs a job's pods create themselves (None: the job's own run)
CHILD_KIND = {"train": None, "tune": "trial", "pipeline": "step"}
#: seconds the end of a job's run may take from here
END_TIMEOUT_S = 10.0
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")

T = TypeVar("T")


class PodTrackingWarning(UserWarning):
    """Tracking from a Kubernetes job goes on, but not as well as it could (a token not
    given, the run not created up front, a loopback address given to pods)."""


# -- the rules -------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "ip6-localhost", "ip6-loopback") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def unreachable_from_pods(uri: str) -> str | None:
    """Why a pod could not reach tracking URI ``uri`` (None: nothing against it)."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file", "sqlite") or len(scheme) == 1:  # a path (C: is a drive), a file or SQLite store
        return "a store on this machine's disk"
    if parts.hostname and _loopback(parts.hostname):
        return f"this machine's loopback address ({parts.hostname})"
    return None


def cluster_tracking_uri() -> str | None:
    """The tracking server a Kubernetes job's pods send to (None: none); raises
    :class:`InvalidOptionError` when the only one set is out of a pod's reach."""
    raw = (os.environ.get(CLUSTER_URI) or "").strip()
    if raw:
        if raw.lower() in OFF:
            return None
        problem = unreachable_from_pods(raw)
        if problem and problem.startswith("a store"):
            raise InvalidOptionError(
                f"{CLUSTER_URI}={raw!r} is {problem}: a pod has no such folder. Give the tracking server's URL "
                "as the cluster sees it (e.g. http://mlflow.mlflow.svc.cluster.local:5000); nothing was submitted"
            )
        if problem:
            warnings.warn(
                f"{CLUSTER_URI}={raw!r} is {problem}: inside a pod that is the pod itself, so only a sidecar (or "
                "hostNetwork) serves it there", PodTrackingWarning, stacklevel=4,
            )  # fmt: skip
        return raw
    uri = tracking_uri()
    if not uri:
        return None
    problem = unreachable_from_pods(uri)
    if problem:
        raise InvalidOptionError(
            f"MLFLOW_TRACKING_URI={uri!r} is {problem}, which a Kubernetes pod cannot reach: this job's runs would "
            f"not get to MLflow. Set {CLUSTER_URI} (c.KFJupyter.cluster_tracking_uri) to the tracking server's "
            "address as the cluster sees it (e.g. http://mlflow.mlflow.svc.cluster.local:5000), or to 'none' to "
            "run Kubernetes jobs without MLflow; nothing was submitted"
        )
    return uri


def token_secret() -> tuple[str, str] | None:
    """The Secret (name, key) holding the pods' MLflow token (KFJUPYTER_CLUSTER_TRACKING_TOKEN_SECRET)."""
    raw = (os.environ.get(TOKEN_SECRET) or "").strip()
    return parse_token_secret(raw) if raw else None


def parse_token_secret(raw: str) -> tuple[str, str]:
    """``NAME[/KEY]`` → (Secret name, key), checked."""
    name, _, key = raw.strip().partition("/")
    check_dns1123_subdomain(name, f"{TOKEN_SECRET}: Secret name")
    key = key or DEFAULT_TOKEN_KEY
    if not _SECRET_KEY.match(key):
        raise InvalidOptionError(f"invalid {TOKEN_SECRET} key {key!r}: letters, digits, '-', '_' and '.'")
    return name, key


# -- what the pods get -----------------------------------------------------------------


@dataclass(frozen=True)
class PodTracking:
    """What the pods of job ``job_id`` are given to send its runs to MLflow (``uri`` None:
    no tracking; every method then adds nothing)."""

    job_id: str
    kind: str
    uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    name: str = ""
    #: the job's MLflow run and experiment, once created up front
    run_id: str | None = None
    experiment_id: str | None = None
    secret: tuple[str, str] | None = None

    @property
    def enabled(self) -> bool:
        return self.uri is not None

    def env(self, run_name: str | None = None, child_run: str | None = None) -> dict[str, str]:
        """The plain variables of the job's pods. A trial's or a step's pod (``run_name``,
        and ``child_run``: its kfjupyter run id when known) creates its nested run."""
        if not self.enabled:
            return {}
        env = {"KFJUPYTER_MLFLOW_TRACKER": "1", "MLFLOW_TRACKING_URI": self.uri,
               "MLFLOW_EXPERIMENT_NAME": self.experiment, "KFJUPYTER_JOB_ID": self.job_id}  # fmt: skip
        if self.experiment_id:
            env["MLFLOW_EXPERIMENT_ID"] = self.experiment_id
        child = CHILD_KIND.get(self.kind)
        if child is None:
            env.update(KFJUPYTER_RUN_KIND=self.kind, KFJUPYTER_RUN_ID=self.job_id, KFJUPYTER_RUN_NAME=self.name)
            if self.run_id:
                env["MLFLOW_RUN_ID"] = self.run_id
            return env
        env["KFJUPYTER_RUN_KIND"] = child
        if self.run_id:
            env["KFJUPYTER_MLFLOW_PARENT_RUN_ID"] = self.run_id
        if run_name:
            env["KFJUPYTER_RUN_NAME"] = run_name
        if child_run:
            env["KFJUPYTER_RUN_ID"] = child_run
        return env

    @property
    def secret_env(self) -> list[dict]:
        """The token's env entry: a reference to its Secret, never its value."""
        if not self.enabled or not self.secret:
            return []
        name, key = self.secret
        return [{"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]

    def env_vars(self, base: dict[str, str] | None = None, **child: str | None) -> list[dict]:
        """A container's ``env``: ``base`` with the tracking variables (theirs win), then the
        token's Secret reference; each name once."""
        plain = {**(base or {}), **self.env(**child)}
        refs = self.secret_env
        taken = {r["name"] for r in refs}
        return [{"name": k, "value": v} for k, v in plain.items() if k not in taken] + refs

    @property
    def files(self) -> dict[str, bytes]:
        """What the pods run beside the bootstrap: the sender (``kf_mlflow.py``)."""
        return {mlflow_sender.POD_FILE: Path(mlflow_sender.__file__).read_bytes()} if self.enabled else {}


def configure(job_id: str, kind: str) -> PodTracking:
    """The tracking of a Kubernetes job about to be submitted, from the configuration and
    the job's run record (no request yet); a refusal raises :class:`InvalidOptionError`."""
    uri = cluster_tracking_uri()
    if uri is None:
        return PodTracking(job_id, kind)
    secret = token_secret()
    if secret is None and os.environ.get("MLFLOW_TRACKING_TOKEN"):
        warnings.warn(
            f"MLFLOW_TRACKING_TOKEN is not given to the pods of {job_id} (a token is never written into a "
            f"manifest): name a Secret holding it with {TOKEN_SECRET}=NAME[/KEY]", PodTrackingWarning, stacklevel=4,
        )  # fmt: skip
    ws = get_workspace()
    with ws.reader() as s:
        record = s.get(RunRecord, job_id)
    try:
        name = ws.get_job(job_id).name
    except KFJupyterError:  # an engine called without a job record (a direct submit)
        name = job_id
    experiment = record.experiment if record is not None else DEFAULT_EXPERIMENT
    return PodTracking(job_id, kind, uri, experiment, name, secret=secret)


def opened(tracking: PodTracking) -> PodTracking:
    """``tracking`` with the job's MLflow run created up front (best effort: a warning when
    the server cannot be reached from here; the pods create the run then)."""
    if not tracking.enabled:
        return tracking
    said: list[str] = []
    state = None
    try:
        from .mlflow_sink import MlflowSink

        with mlflow_sender.fail_fast():
            sink = MlflowSink(tracking.uri, tracking.job_id, None, say=said.append)
            state = sink.open(tracking.job_id, pods=tracking.uri)
    except ImportError:
        said.append("no MLflow client in this environment: pip install 'kfjupyter[tracking]'")
    if state is None:
        warnings.warn(
            f"the MLflow run of {tracking.job_id} could not be created from here ({'; '.join(said) or 'no answer'}): "
            f"the job goes on and its pods create it on {tracking.uri} (without the job's params)",
            PodTrackingWarning, stacklevel=4,
        )  # fmt: skip
        return tracking
    return replace(tracking, run_id=state["run_id"], experiment_id=state["experiment_id"])


@contextmanager
def submission(job_id: str, kind: str, build: Callable[[PodTracking], T], check: Callable[[T], Any]) -> Iterator[T]:
    """The manifests of a Kubernetes job with what its pods need for MLflow: ``build(tracking)``
    makes them, ``check`` validates them (raises). They are built and checked first as they
    will be (refusals come before any request), then the job's run is created and they are
    built again with its ids. Inside the ``with`` the caller submits them; if that fails,
    the run is ended FAILED."""
    tracking = configure(job_id, kind)
    built = build(tracking)
    check(built)
    if tracking.enabled:
        tracking = opened(tracking)
        built = build(tracking)
        check(built)
    try:
        yield built
    except BaseException:
        if tracking.run_id:
            end_run(job_id, st.FAILED, timeout=2.0)
        raise


# -- the end of a job's run --------------------------------------------------------------


def _state(job_id: str) -> dict:
    with get_workspace().reader() as s:
        record = s.get(RunRecord, job_id)
    return dict((record.mlflow if record is not None else None) or {})


def end_run(job_id: str, status: str | None = None, timeout: float = END_TIMEOUT_S) -> bool:
    """End the MLflow run of Kubernetes job ``job_id`` with its status (``status``, else the
    job's), trying for ``timeout`` seconds. Whether it is ended (or has nothing to end)."""
    state = _state(job_id)
    if not state.get("pods") or not state.get("run_id") or state.get("ended"):
        return True
    from .mlflow_sink import END_STATUS, MlflowSink

    status = status or get_workspace().get_job(job_id).status
    if status not in st.TERMINAL:
        return True
    with mlflow_sender.fail_fast():
        sink = MlflowSink(state["pods"], job_id, None, say=lambda text: None)

        def end() -> bool:
            sink.client.set_terminated(state["run_id"], END_STATUS.get(status, "FINISHED"))
            return True

        if not sink.flush(lambda: sink.attempt(end), timeout):
            return False
        sink.open(job_id, ended=True)
    return True


def job_ended(record) -> None:
    """A Kubernetes job was seen ending (``Job.refresh``): its MLflow run is ended in the
    background (what its pods cannot know: the end of a study or a pipeline, a job whose
    pods never ran). ``kfjupyter.tracking.sync(job_id)`` does it again if this fails."""
    try:
        state = _state(record.id)
    except Exception:  # noqa: BLE001  (tracking never fails a job, nor a look at one)
        return
    if state.get("pods") and state.get("run_id") and not state.get("ended"):
        threading.Thread(target=end_run, args=(record.id, record.status), name=f"kfjupyter-end-{record.id}",
                         daemon=True).start()  # fmt: skip
