"""``kfjupyter.deploy`` and the :class:`Endpoint` handle.

An endpoint is a job of kind ``endpoint`` in the workspace store (one record, one status,
one log, like every long-running thing), so ``kfjupyter.jobs``, the CLI and the sidebar's
Jobs panel see it. Its ``spec`` says what is served (model version(s), traffic split);
its ``backend_info`` says where (local processes, or an InferenceService).
"""

from __future__ import annotations

import functools
import http.client
import importlib.util
import json
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

from .. import status as st
from ..backends import check_backend
from ..capture.program import MAX_PAYLOAD, capture_object, write_bundle
from ..config import default_backend, default_image
from ..errors import BackendError, InvalidOptionError, KFJupyterError
from ..jobs import create
from ..runtime.engine import UnknownChannelError
from ..store.models import JobRecord
from ..store.workspace import get_workspace
from ..validation import check_dns1123_label
from .spec import LOG_MODES, MAX_ENDPOINT_NAME, EndpointSpec

#: Registry formats a local model server can serve. Defined here, not in predictors.py,
#: so that importing the API (the server extension does) needs no kserve installed.
SUPPORTED = ("sklearn", "xgboost", "pytorch", "onnx", "custom")

KIND = "endpoint"
#: The file (in an endpoint's folder) of the notebook code its servers run: a model class
#: to rebuild a state dict, pre- and post-processing functions (cloudpickled).
HOOKS = "hooks.pkl"
#: The file (in a local endpoint's folder, 0600) of the token its servers and router ask
#: every request for (``Authorization: Bearer TOKEN``): other local users cannot call them.
TOKEN = "token"
VERSION_HEADER = "x-kfjupyter-version"


class PredictionError(KFJupyterError):
    """The endpoint refused a request (bad payload shape, model error …); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class EndpointNotFoundError(KFJupyterError, LookupError):
    """No endpoint by that name or id in the workspace."""


class EndpointNotDeployedError(KFJupyterError):
    """The endpoint exists but serves nothing: it was undeployed, or its server stopped."""


# -- resolving what to serve ------------------------------------------------------------------
def resolve_version(ref: str, local: bool = True) -> dict:
    """A registry reference → what a server needs: format, artifact folder/URI, version ref."""
    from ..registry import get_registry

    return version_info(get_registry().get_version(ref), ref, local=local)  # ModelNotFoundError names it


def version_info(mv: Any, asked: str | None = None, local: bool = True) -> dict:
    """A registry version (:class:`~kfjupyter.registry.ModelVersion`) → what a server needs;
    InvalidOptionError when it has nothing a server can serve (no artifact, a format no
    server takes)."""
    from ..registry import get_registry
    from ..registry.base import SAMPLE_FILE, TRAINING_SAMPLE

    art = mv.artifact
    if art is None:
        raise InvalidOptionError(f"version {mv.ref} has no artifact to serve")
    fmt = art.format or mv.framework
    if fmt not in SUPPORTED:
        raise InvalidOptionError(f"version {mv.ref} has format {fmt!r}: serving supports {', '.join(SUPPORTED)}")
    out = {"ref": mv.ref, "asked": asked or mv.ref, "model": mv.model, "number": mv.number, "format": fmt,
           "uri": art.uri, "main_file": art.main_file, "properties": art.properties or {}}
    which = mv.number if mv.number is not None else mv.name
    if local:
        reg = get_registry()
        out["folder"] = str(reg.local_path(mv.model, version=which))
        if any(a.name == TRAINING_SAMPLE for a in mv.artifacts):
            out["sample"] = str(reg.local_path(mv.model, version=which, artifact=TRAINING_SAMPLE) / SAMPLE_FILE)
    return out


# -- can it be served? (the one rule deploy applies, and the sidebar shows before trying) ----------
#: what a refusal of :func:`version_problem` asks for: the notebook's model class
NEEDS_MODEL_CLASS = "model_class"


def backend_problem(backend: str) -> str | None:
    """Why endpoints cannot run on ``backend`` here (None: they can)."""
    if backend == "local" and importlib.util.find_spec("kserve") is None:
        return "serving on the local backend needs KServe's model server: pip install 'kfjupyter[serving]'"
    return None


def version_problem(version: dict, model_class: bool = False) -> tuple[str, str] | None:
    """Why a resolved version (:func:`version_info`) cannot be served as it is, and what is
    missing; None when it can. ``model_class``: the deploy passes one."""
    props = version.get("properties") or {}
    if version["format"] == "pytorch" and props.get("torch_kind") == "state_dict" and not model_class:
        ref = version["ref"]
        return (
            f"version {ref} is a PyTorch state dict: the server needs the model class to rebuild the module. "
            f"Deploy it from a notebook with kfjupyter.deploy({ref!r}, model_class=YourModule) (pass model_class= "
            "and model_kwargs=), or register the whole module (torch.nn.Module) or a TorchScript one",
            NEEDS_MODEL_CLASS,
        )
    return None


def servable(model: Any, *, backend: str | None = None, model_class: bool = False) -> dict:
    """Whether ``deploy`` of a version can work, checked without starting anything:
    ``{"ok": True}`` or ``{"ok": False, "reason": "…", "needs": "model_class" | None}``.

    ``model``: a registry reference (``"iris@production"``, ``"net:3"``) or a
    :class:`~kfjupyter.registry.ModelVersion`. The same checks as :func:`deploy`'s own
    preflight (a format no server takes, no artifact, a PyTorch state dict without
    ``model_class``, no KServe for local endpoints). An unknown model raises
    ``ModelNotFoundError`` as deploy does."""
    from ..registry import get_registry

    try:
        which = check_backend(KIND, backend or default_backend())
    except KFJupyterError as exc:
        return {"ok": False, "reason": str(exc), "needs": None}
    problem = backend_problem(which)
    if problem:
        return {"ok": False, "reason": problem, "needs": None}
    mv = get_registry().get_version(model) if isinstance(model, str) else model
    try:
        version = version_info(mv, local=False)
    except InvalidOptionError as exc:
        return {"ok": False, "reason": str(exc), "needs": None}
    found = version_problem(version, model_class=model_class)
    if found:
        return {"ok": False, "reason": found[0], "needs": found[1]}
    return {"ok": True}


def component_spec(role: str, obj: Any, version: dict, backend: str) -> tuple[dict, Any]:
    """A transformer's or explainer's spec and its captured program (None: a ready-made
    one); a refusal names what is wrong before anything is started."""
    from .components import COMPONENT, check_explainer, check_transformer, label_of

    if role == "explainer" and isinstance(obj, str):
        if obj != "shap":
            raise InvalidOptionError(f"explainer={obj!r}: a ready-made explainer is 'shap', else pass a function")
        if importlib.util.find_spec("shap") is None:
            raise InvalidOptionError("explainer='shap' needs the shap library: pip install shap (or pass a function)")
        if version["format"] not in ("sklearn", "xgboost", "custom"):
            raise InvalidOptionError(f"explainer='shap' explains tabular models (sklearn, xgboost); {version['ref']} is {version['format']}")
        if not version.get("sample") and backend == "local":
            raise InvalidOptionError(f"explainer='shap' needs a sample of the training data: version {version['ref']} "
                                     "recorded none (register_model(..., training_sample=X_train))")
        if backend != "local":
            raise InvalidOptionError("explainer='shap' runs on local endpoints; on Kubernetes pass a function")
        return {"kind": "shap", "label": "shap"}, None
    try:
        (check_transformer if role == "transformer" else check_explainer)(obj)
    except TypeError as exc:
        raise InvalidOptionError(f"{role}={label_of(obj)}: {exc}") from None
    program = capture_object(obj, COMPONENT)  # PreflightError names what would not survive the trip
    return {"kind": "code", "label": label_of(obj), "bundle": f"components/{role}/bundle"}, program


def _check_percent(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise InvalidOptionError(f"canary_percent must be a whole number from 0 to 100, got {value!r}")
    if not 0 <= int(value) <= 100:
        raise InvalidOptionError(f"canary_percent must be from 0 to 100, got {value}")
    return int(value)


def _default_name(ref: str) -> str:
    base = ref.split("@")[0].split(":")[0].lower()
    return "".join(c if c.isalnum() else "-" for c in base).strip("-")[:50] or "model"


# -- deploy ---------------------------------------------------------------------------------------
def deploy(
    model: str,
    name: str | None = None,
    *,
    canary: str | None = None,
    canary_percent: int = 10,
    backend: str | None = None,
    port: int | None = None,
    model_class: Any = None,
    model_kwargs: dict | None = None,
    preprocess: Any = None,
    postprocess: Any = None,
    namespace: str | None = None,
    resources: dict | None = None,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    deployment_mode: str | None = None,
    storage_uri: str | None = None,
    canary_storage_uri: str | None = None,
    transformer: Any = None,
    explainer: Any = None,
    log: str | None = None,
    log_sample: float = 1.0,
    log_sink: str | None = None,
    max_batch_size: int | None = None,
    max_latency_ms: int | None = None,
    image: str | None = None,
    wait: bool = True,
    timeout: float | None = None,
) -> "Endpoint":
    """Serve a registered model version: ``deploy("iris@production", name="iris")``.

    ``canary="iris@staging", canary_percent=10`` sends that share of the traffic to a
    second version (then :meth:`Endpoint.promote` / :meth:`Endpoint.rollback`). Locally
    (the default backend) the model runs in a KServe ``ModelServer`` process on 127.0.0.1
    (``port``: a fixed port, else a free one) and this returns once it is ready; on
    ``backend="kubernetes"`` it becomes a KServe ``InferenceService`` (``namespace``,
    ``resources={"requests": {...}, "limits": {...}}``, ``min_replicas``/``max_replicas``,
    ``deployment_mode``: ``Serverless`` or ``RawDeployment``; ``storage_uri`` /
    ``canary_storage_uri`` replace the artifacts' URIs, which the cluster must be able to
    read: s3://, gs://, pvc:// …). ``model_class`` (+
    ``model_kwargs``) rebuilds a pytorch state dict; ``preprocess``/``postprocess`` are
    functions run on the inputs/outputs in the server (KServe's transformer idea).

    ``transformer=prep``: a notebook function (its preprocessing) or a class/instance with
    ``preprocess(x)``/``postprocess(y)``, captured and preflighted as a training cell is; it
    runs as a KServe model server in front of the predictor (locally; the InferenceService's
    ``transformer`` on Kubernetes, in ``image``). ``explainer=fn`` (``fn(x)`` or
    ``fn(x, predict)``) or ``explainer="shap"`` (SHAP attributions over the version's
    training sample) answers ``:explain`` (:meth:`Endpoint.explain`). ``log="all" |
    "request" | "response"`` logs that share (``log_sample``) of the requests: locally in
    the workspace (:meth:`Endpoint.logged_requests`), on Kubernetes through KServe's logger
    to ``log_sink`` (a URL). ``max_batch_size``/``max_latency_ms``: KServe's batcher on
    Kubernetes, the local server's batching. :meth:`Endpoint.stats` shows the health.
    """
    import cloudpickle

    if not isinstance(model, str) or not model.strip():
        raise InvalidOptionError(f"model must be a registry reference like 'iris@production', got {model!r}")
    backend = check_backend(KIND, backend or default_backend())
    problem = backend_problem(backend)
    if problem:
        raise InvalidOptionError(problem)
    name = check_dns1123_label(name or _default_name(model), "endpoint name", max_length=MAX_ENDPOINT_NAME)
    if canary is not None:
        canary_percent = _check_percent(canary_percent)
    elif canary_percent not in (10, None):
        _check_percent(canary_percent)
    if port is not None and backend != "local":
        raise InvalidOptionError("port applies to local endpoints only")
    local = backend == "local"
    version = resolve_version(model, local=local)
    canary_version = resolve_version(canary, local=local) if canary is not None else None
    if storage_uri:
        version["uri"] = storage_uri
    if canary_storage_uri and canary_version:
        canary_version["uri"] = canary_storage_uri
    for rec in get_workspace().list_jobs(kind=KIND, limit=None):
        if rec.name == name and rec.status not in st.TERMINAL:
            raise InvalidOptionError(f"an endpoint named {name!r} is already deployed ({rec.id}): undeploy it or choose another name")
    for v in (version, canary_version):
        found = v and version_problem(v, model_class=model_class is not None)
        if found:
            raise InvalidOptionError(found[0])
    if log is not None and log not in LOG_MODES:
        raise InvalidOptionError(f"log must be one of {', '.join(map(repr, LOG_MODES))} (or None), got {log!r}")
    if log_sink is not None and local:
        raise InvalidOptionError("log_sink applies to Kubernetes endpoints (KServe's logger); local endpoints log "
                                 "to the workspace: read them with endpoint.logged_requests()")
    if log_sink is None and log and not local:
        raise InvalidOptionError("log= on Kubernetes needs log_sink=, the URL KServe's logger sends the CloudEvents to")
    programs: dict[str, Any] = {}
    components: dict[str, dict] = {}
    for role, obj in (("transformer", transformer), ("explainer", explainer)):
        if obj is not None:
            components[role], program = component_spec(role, obj, version, backend)
            if program is not None:
                programs[role] = program
    spec = EndpointSpec(
        name=name, backend=backend, model=model, version=version, canary=canary_version,
        canary_percent=canary_percent if canary_version else 0, port=port, namespace=namespace,
        resources=resources, min_replicas=min_replicas, max_replicas=max_replicas, deployment_mode=deployment_mode,
        log=log, log_sample=log_sample, log_sink=log_sink, max_batch_size=max_batch_size, max_latency_ms=max_latency_ms,
        image=image or default_image(), **components,
    )  # fmt: skip
    hooks = {k: v for k, v in {"model_class": model_class, "model_kwargs": model_kwargs,
                               "pre": preprocess, "post": postprocess}.items() if v is not None}

    def prepare(job_id: str, job_dir) -> None:
        if hooks:  # the notebook code the model servers run (the engine refuses it where it can't)
            (job_dir / HOOKS).write_bytes(cloudpickle.dumps(hooks))
        for role, program in programs.items():  # a component's captured code, as a training job's bundle
            write_bundle(program, job_dir / components[role]["bundle"], header=f"the {role} of endpoint {name} ({job_id})",
                         max_bytes=MAX_PAYLOAD.get(backend, MAX_PAYLOAD["kubernetes"]))

    # a refusal (a manifest the cluster would reject, a port in use …) leaves nothing;
    # a server that fails to start leaves a Failed endpoint that says why
    job = create(spec, prepare=prepare)
    engine, info = job.engine, job.record.backend_info
    record = _record_deployment(engine, job.id, spec.to_dict(), info)
    if record is not None:
        info = {**info, REGISTRY_RECORD: record}
    shown = f"serving {version['ref']}" + (f", canary {canary_version['ref']} at {canary_percent}%" if canary_version else "")
    get_workspace().update_job(job.id, only_if_active=True, backend_info=info,
                               status=st.RUNNING if local else st.PENDING, message=shown)  # fmt: skip
    endpoint = Endpoint(job.id)
    if wait and not local:
        try:
            endpoint.wait_ready(timeout=timeout or 600)
        except TimeoutError:
            raise TimeoutError(endpoint._remove_unready(timeout or 600)) from None
    return endpoint


# -- the record in Kubeflow Model Registry ------------------------------------------------------
#: where ``backend_info`` keeps the ids of the deployment's InferenceService entity
REGISTRY_RECORD = "model_registry"


def _record_deployment(engine: Any, job_id: str, spec: dict, info: dict) -> dict | None:
    """Record a cluster deployment in the registry when it is Kubeflow Model Registry.

    The engine says which serving environment (namespace) it deployed to; a local endpoint
    (a process on 127.0.0.1) has none and is not recorded. The endpoint is up whatever the
    registry answers: a refusal is a warning and the record's ``error``, not a failed deploy.
    """
    environment = engine.serving_environment(info)
    if environment is None:
        return None
    from ..registry import get_registry

    reg = get_registry()
    try:
        canary = spec.get("canary")
        return reg.record_deployment(
            environment, spec["name"], spec["version"]["ref"], runtime=engine.runtime,
            canary=canary["ref"] if canary else None, canary_percent=spec.get("canary_percent") or 0, endpoint_id=job_id,
        )
    except KFJupyterError as exc:
        warnings.warn(f"endpoint {spec['name']} is deployed, but the registry did not record it: {exc}", stacklevel=3)
        return {"error": str(exc)}


def _update_record(info: dict, spec: dict | None = None, undeployed: bool = False) -> dict | None:
    """Tell the registry what the deployment now serves (``spec``), or that it is undeployed."""
    record = (info or {}).get(REGISTRY_RECORD)
    if not record or "inference_service_id" not in record:
        return record
    from ..registry import get_registry

    try:
        if spec is None:
            return get_registry().update_deployment(record, undeployed=undeployed)
        canary = spec.get("canary")
        return get_registry().update_deployment(
            record, ref=spec["version"]["ref"], canary=canary["ref"] if canary else None,
            canary_percent=spec.get("canary_percent") or 0,
        )
    except KFJupyterError as exc:
        warnings.warn(f"the registry did not record the change of the deployment: {exc}", stacklevel=3)
        return {**record, "error": str(exc)}


# -- the handle ---------------------------------------------------------------------------------
class Endpoint:
    """A deployed model. Cheap to create; every property reads the current record."""

    def __init__(self, job_id: str):
        from ..jobs import Job

        self.id = job_id
        self.job = Job(job_id)
        if self.job.kind != KIND:
            raise EndpointNotFoundError(f"job {job_id!r} is a {self.job.kind} job, not an endpoint")
        self.last_version: str | None = None

    # -- state --------------------------------------------------------------------------------
    @property
    def record(self) -> JobRecord:
        return self.job.record

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def info(self) -> dict:
        return self.job.refresh().backend_info or {}

    @property
    def spec(self) -> dict:
        return self.job.refresh().spec or {}

    @property
    def status(self) -> str:
        """Pending, Running (Ready), Failed (a server stopped), Cancelled (undeployed)."""
        return self.job.status

    @property
    def ready(self) -> bool:
        return self.status == st.RUNNING

    @property
    def url(self) -> str | None:
        """The base URL (local: ``http://127.0.0.1:PORT``; Kubernetes: the InferenceService's ``status.url``)."""
        return self._url_of(self.info)

    def _url_of(self, info: dict) -> str | None:
        if "url" in info:
            return info["url"]
        return self.job.engine.url(info) if info else None

    @functools.cached_property
    def token(self) -> str | None:
        """The token a direct call of a local endpoint sends (``Authorization: Bearer
        TOKEN``); None for an endpoint that asks for none (on Kubernetes)."""
        path = get_workspace().job_dir(self.id) / TOKEN
        return path.read_text().strip() if path.exists() else None

    @property
    def predict_url(self) -> str | None:
        return f"{self.url}/v1/models/{self.name}:predict" if self.url else None

    @property
    def infer_url(self) -> str | None:
        return f"{self.url}/v2/models/{self.name}/infer" if self.url else None

    @property
    def versions(self) -> dict[str, int]:
        """Traffic split: version ref → percent."""
        spec = self.spec
        if spec.get("canary"):
            pct = spec["canary_percent"]
            return {spec["version"]["ref"]: 100 - pct, spec["canary"]["ref"]: pct}
        return {spec["version"]["ref"]: 100}

    def wait_ready(self, timeout: float = 600, poll: float = 0.5) -> "Endpoint":
        """Block until the endpoint serves its latest spec; TimeoutError after ``timeout`` s
        (it is left as it is). Watches where the backend allows (see ``Job.changes``)."""
        deadline = time.monotonic() + timeout
        with self.job.changes(poll) as feed:
            while True:
                if feed.take():
                    status = self.status
                    feed.looked(True)
                    if status == st.RUNNING and self.job.engine.rolled_out(self.record.backend_info or {}):
                        return self  # Ready, and for the latest spec (a canary patched in after the create)
                    if status in st.TERMINAL:
                        raise BackendError(f"endpoint {self.name} is {status}: {self.job.error or self.record.message or ''}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"endpoint {self.name} not ready after {timeout} s")
                feed.wait(deadline - time.monotonic())

    def _remove_unready(self, timeout: float) -> str:
        """``deploy(wait=True)`` gave up: remove what it created (nothing was serving
        before it) and say what that was and how far it got."""
        info = self.job.refresh().backend_info or {}
        what = f"InferenceService {info.get('namespace')}/{info.get('name')}" if "namespace" in info else f"endpoint {self.name}"
        seen = self.job.engine.observe(self.id, info) if info else None  # the condition now (the record keeps the first)
        last = (seen and (seen.error or seen.message)) or "no condition reported yet"
        try:
            self.undeploy()
        except KFJupyterError as exc:
            return (f"endpoint {self.name} not ready after {timeout} s (last condition: {last}); removing {what} "
                    f"failed ({exc}): remove it with kfjupyter.get_endpoint({self.id!r}).undeploy()")
        get_workspace().update_job(self.id, message=f"not ready after {timeout} s ({last}); {what} was removed")
        return (f"endpoint {self.name} not ready after {timeout} s (last condition: {last}); {what} was removed "
                "(deploy again with a longer timeout=, or wait=False and follow endpoint.status)")

    # -- calling ------------------------------------------------------------------------------
    def request(self, path: str, payload: Any, timeout: float = 30.0) -> tuple[int, dict, dict]:
        """POST JSON to ``path`` of the endpoint: (status, body, headers).
        :class:`EndpointNotDeployedError` when it serves nothing (undeployed, or stopped)."""
        record = self.job.refresh()
        if record.status in st.TERMINAL:
            why = record.message if record.status == st.CANCELLED else record.error
            raise EndpointNotDeployedError(
                f"endpoint {self.name} is not deployed: it is {record.status}" + (f" ({why.strip()})" if why else "")
            )
        url = self._url_of(record.backend_info or {})
        if not url:
            raise BackendError(f"endpoint {self.name} has no URL yet (status {record.status})")
        parts = urlsplit(url)
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        try:
            body = json.dumps(payload).encode()
            conn.request("POST", (parts.path or "") + path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
        except OSError as exc:
            raise BackendError(f"endpoint {self.name} did not answer at {url}: {exc} (status {record.status})") from exc
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"error": raw.decode(errors="replace")}
        return resp.status, data, headers

    def predict(self, data: Any, protocol: str = "v1") -> Any:
        """Predictions for ``data`` (a list of instances, a numpy array or a DataFrame).

        ``protocol="v1"`` posts ``{"instances": …}`` and returns ``predictions``;
        ``"v2"`` sends an Open Inference Protocol request and returns the first output's
        data. A dict is sent as it is (a full V1 or V2 body) and the whole answer returned.
        The version that answered is in :attr:`last_version`.
        """
        raw = isinstance(data, dict)
        if protocol == "v1":
            payload = data if raw else {"instances": _to_list(data)}
            path = f"/v1/models/{self.name}:predict"
        elif protocol == "v2":
            payload = data if raw else v2_request(data)
            path = f"/v2/models/{self.name}/infer"
        else:
            raise InvalidOptionError(f"protocol must be 'v1' or 'v2', got {protocol!r}")
        status, body, headers = self.request(path, payload)
        self.last_version = headers.get(VERSION_HEADER)
        if status != 200:
            detail = body.get("error") or body.get("detail") or body
            raise PredictionError(f"endpoint {self.name} refused the request (HTTP {status}): {detail}", status)
        if raw:
            return body
        if protocol == "v1":
            return body["predictions"]
        out = body["outputs"][0]
        return out["data"]

    def explain(self, data: Any) -> Any:
        """The explainer's answer for ``data`` (V1 ``:explain``): its ``explanations``."""
        if not self.spec.get("explainer"):
            raise InvalidOptionError(f"endpoint {self.name} has no explainer: deploy it with explainer=…")
        payload = data if isinstance(data, dict) else {"instances": _to_list(data)}
        status, body, _ = self.request(f"/v1/models/{self.name}:explain", payload, timeout=120)
        if status != 200:
            detail = body.get("error") or body.get("detail") or body
            raise PredictionError(f"endpoint {self.name} refused the explanation (HTTP {status}): {detail}", status)
        return body if isinstance(data, dict) else body.get("explanations", body)

    # -- health ---------------------------------------------------------------------------------
    def stats(self, window: float = 60.0, drift: bool = True) -> dict:
        """The endpoint's health over the last ``window`` seconds, per version (and for its
        transformer and explainer): ``requests``, ``requests_per_s``, ``error_rate``,
        ``p50_ms``/``p95_ms``/``p99_ms`` and its share of the traffic; with request logging
        on and a version that recorded a training sample, its ``drift`` (see
        :mod:`kfjupyter.serving.monitoring`). Local endpoints (a Kubernetes endpoint's
        health is KServe's: its logger's sink and the cluster's metrics)."""
        from . import monitoring

        if window <= 0:
            raise InvalidOptionError(f"window must be a number of seconds > 0, got {window!r}")
        record = self.job.refresh()
        if record.backend != "local":
            raise InvalidOptionError(f"endpoint {self.name} runs on {record.backend}: its requests are logged by KServe's "
                                     f"logger to {(record.spec or {}).get('log_sink') or 'its sink'}, not here")
        info = record.backend_info or {}
        out = monitoring.endpoint_stats(info, self.versions, window)
        spec = record.spec or {}
        if drift and spec.get("log") in ("all", "request"):
            logged = monitoring.logged_requests(info, limit=None)
            for v in filter(None, (spec.get("version"), spec.get("canary"))):
                entry = out["versions"].setdefault(v["ref"], {"role": "predictor"})
                if v.get("sample"):
                    import numpy as np

                    entry["drift"] = monitoring.drift_summary(np.load(v["sample"]), monitoring.logged_inputs(logged, v["ref"]))
        return out

    def logged_requests(self, limit: int | None = 1000) -> list[dict]:
        """The requests and responses request logging kept (``deploy(log=…)``), oldest first:
        ``t``, ``version``, ``role``, ``verb``, ``status``, ``ms``, ``request``, ``response``."""
        from . import monitoring

        record = self.job.refresh()
        if record.backend != "local":
            raise InvalidOptionError(f"endpoint {self.name} logs through KServe's logger to "
                                     f"{(record.spec or {}).get('log_sink')}: read them there")
        return monitoring.logged_requests(record.backend_info or {}, limit)

    # -- control ------------------------------------------------------------------------------
    def logs(self, server: int = 0, tail: int | None = None, follow: bool = False):
        """The model server's log (``server=1``: the canary's; ``-1``: the router's): the
        channel ``server/primary``, ``server/canary`` or ``server/router`` of the endpoint."""
        try:
            channel = self.job.log_channel(rank=server)
        except UnknownChannelError:
            known = ", ".join(f"{c.rank} ({c.label})" for c in self.job.channels().logs) or "none yet"
            what = {1: "canary", -1: "canary router"}.get(server, f"server {server}")
            raise InvalidOptionError(f"server={server}: endpoint {self.name} has no {what}; it has server {known}") from None
        return self.job.logs(channel=channel, tail=tail, follow=follow)

    def undeploy(self) -> "Endpoint":
        """Stop serving: every process (or the InferenceService) goes; the record reads Cancelled."""
        undeployed = get_workspace().get_job(self.id).status == st.CANCELLED  # as recorded before this call
        record = self.job.refresh()
        if record.backend_info and record.status != st.CANCELLED:  # a Cancelled one's name may serve another now
            self.job.backend.cancel(self.id, record.backend_info)  # Cancelled (Cancelling while the cluster deletes it)
        elif not record.backend_info:
            get_workspace().update_job(self.id, only_if_active=True, status=st.CANCELLED, message="undeployed")
        if not undeployed and (record.backend_info or {}).get(REGISTRY_RECORD):
            _update_record(record.backend_info, undeployed=True)
        self.job.refresh()
        return self

    def _control(self, what: str) -> "Endpoint":
        record = self.job.refresh()
        if record.status in st.TERMINAL:
            raise InvalidOptionError(f"endpoint {self.name} is {record.status}: nothing to {what}")
        engine = self.job.backend
        spec, info = getattr(engine, what)(self.id, dict(record.spec), dict(record.backend_info))
        if (record.backend_info or {}).get(REGISTRY_RECORD):
            info = {**info, REGISTRY_RECORD: _update_record(record.backend_info, spec)}
        get_workspace().update_job(self.id, spec=spec, backend_info=info,
                                   message=f"{what}: serving {spec['version']['ref']}")
        self.job.refresh()
        return self

    def promote(self) -> "Endpoint":
        """The canary takes all the traffic and becomes the endpoint's version."""
        if not self.spec.get("canary"):
            raise InvalidOptionError(f"endpoint {self.name} has no canary to promote")
        return self._control("promote")

    def rollback(self) -> "Endpoint":
        """Back to the previous version: drop the canary, or undo the last promote."""
        spec = self.spec
        if not spec.get("canary") and not spec.get("previous"):
            raise InvalidOptionError(f"endpoint {self.name} has no canary and no previous version to roll back to")
        return self._control("rollback")

    def to_dict(self) -> dict:
        """The endpoint as every client shows it: its job, where to call it, what it serves."""
        data = self.job.to_dict()
        spec = self.job.record.spec or {}
        data.update(
            url=self.url, versions=self.versions, model=spec.get("model"), canary_percent=spec.get("canary_percent") or 0,
            predict_url=self.predict_url, infer_url=self.infer_url,
            transformer=(spec.get("transformer") or {}).get("label"), explainer=(spec.get("explainer") or {}).get("label"),
            log=spec.get("log"),
        )  # fmt: skip
        return data

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.record.status} {self.record.backend} versions={self.versions}>"


def _to_list(data: Any) -> Any:
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        return data.values.tolist()
    if hasattr(data, "tolist"):
        return data.tolist()
    return data


def v2_request(data: Any) -> dict:
    import numpy as np

    arr = np.asarray(_to_list(data))
    if arr.dtype.kind == "f":
        dtype = "FP32" if arr.dtype == np.float32 else "FP64"
    elif arr.dtype.kind in "iu":
        dtype = "INT64"
    elif arr.dtype.kind == "b":
        dtype = "BOOL"
    else:
        raise InvalidOptionError(f"v2 predict takes numbers; got an array of {arr.dtype}")
    return {"inputs": [{"name": "input-0", "shape": list(arr.shape), "datatype": dtype, "data": arr.ravel().tolist()}]}


# -- finding endpoints -----------------------------------------------------------------------------
def get_endpoint(name_or_id: str) -> Endpoint:
    """An endpoint by id, or the newest endpoint with that name."""
    ws = get_workspace()
    try:
        rec = ws.get_job(name_or_id)
        if rec.kind == KIND:
            return Endpoint(rec.id)
    except KFJupyterError:
        pass
    records = [r for r in ws.list_jobs(kind=KIND, limit=None) if r.name == name_or_id]
    if not records:
        raise EndpointNotFoundError(f"no endpoint named {name_or_id!r} in the workspace")
    active = [r for r in records if r.status not in st.TERMINAL]
    return Endpoint((active or records)[0].id)


def list_endpoints(status: str | None = None) -> list[Endpoint]:
    return [Endpoint(r.id) for r in get_workspace().list_jobs(kind=KIND, status=status, limit=None)]
