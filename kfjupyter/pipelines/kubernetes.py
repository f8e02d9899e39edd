"""The ``("pipeline", "kubernetes")`` engine: pipeline runs on Kubeflow Pipelines v2.

A run is submitted through the KFP REST API (``v2beta1``, as described by the swagger of
KFP 2.17.0 copied in ``kfjupyter/k8s/schemas/kfp-2.17.0/``):

1. the pipeline is compiled to IR YAML (:func:`kfjupyter.pipelines.kfp.compile_kfp`) and the
   run request is built and checked against the swagger — all before the first request;
2. the YAML is uploaded: ``POST /apis/v2beta1/pipelines/upload`` (multipart) creates the
   pipeline named after ours with a first version; when a pipeline of that name exists,
   ``POST /apis/v2beta1/pipelines/upload_version`` adds a version named after the job;
3. ``POST /apis/v2beta1/runs`` creates the run on exactly that version, with the parameters
   in ``runtime_config.parameters``; if it is refused, the version (and the pipeline, if
   this call created it) is deleted again: nothing is left behind;
4. :meth:`KFPPipelineBackend.observe` reads ``GET /apis/v2beta1/runs/{id}`` and maps KFP's
   states to ours; :meth:`~KFPPipelineBackend.cancel` is ``POST /apis/v2beta1/runs/{id}:terminate``.

Configuration (environment):

* ``KFJUPYTER_KFP_URL`` (else ``KFP_HOST``): the KFP API's base URL, e.g.
  ``http://ml-pipeline.kubeflow.svc:8888`` or a port-forward;
* ``KFJUPYTER_KFP_TOKEN``: a bearer token; else the file named by
  ``KF_PIPELINES_SA_TOKEN_PATH`` or ``/var/run/secrets/kubeflow/pipelines/token`` (the
  projected service-account token of a Kubeflow notebook pod), re-read on every request.
  The record keeps only where the token came from, never the token; it is never logged;
* ``KFJUPYTER_KFP_EXPERIMENT``: an experiment id for the runs (else KFP's default);
* ``KFJUPYTER_NAMESPACE``: the namespace passed with the upload (multi-user Kubeflow).

KFP's REST API serves no pod logs: :meth:`~KFPPipelineBackend.logs` gives the steps' states
and errors as KFP reports them (read pod logs with kubectl or the KFP UI).
"""

from __future__ import annotations

import functools
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

from .. import status as st
from ..errors import BackendError, InvalidOptionError, KFJupyterError
from ..k8s.tracking import submission
from ..runtime.engine import Channel, Channels, EngineBase, Features
from ..runtime.logs import poll_follow
from ..status import Observation
from ..validation import check_dns1123_label
from .model import Pipeline

SWAGGER = Path(__file__).resolve().parents[1] / "k8s" / "schemas" / "kfp-2.17.0" / "v2beta1_kfp_api_single_file.swagger.json"
API = "/apis/v2beta1"
DEFAULT_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"

#: KFP's run states (``v2beta1RuntimeState``) → ours.
STATES = {
    "RUNTIME_STATE_UNSPECIFIED": st.PENDING,
    "PENDING": st.PENDING,
    "PAUSED": st.PENDING,
    "RUNNING": st.RUNNING,
    "CANCELING": st.CANCELLING,
    "SUCCEEDED": st.SUCCEEDED,
    "SKIPPED": st.SUCCEEDED,
    "FAILED": st.FAILED,
    "CANCELED": st.CANCELLED,
}
#: KFP's task states → our step states (``SKIPPED`` is a cache hit on KFP).
STEP_STATES = dict(STATES, SKIPPED="Cached", CANCELED=st.CANCELLED, CANCELING=st.CANCELLING)


class KFPError(BackendError):
    """Kubeflow Pipelines refused a request (``status``: the HTTP code, ``message``: KFP's)."""

    def __init__(self, message: str, status: int | None = None, kfp_message: str | None = None):
        super().__init__(message)
        self.status = status
        self.kfp_message = kfp_message


class KFPEndpointError(KFPError, InvalidOptionError):
    """The endpoint could not be used at all (unreachable, not the KFP API, or it refused our
    credentials) on the first request of a submit: nothing was created."""


# --------------------------------------------------------------------------- configuration


def kfp_url(url: str | None = None) -> str:
    """The KFP API base URL (argument, ``$KFJUPYTER_KFP_URL``, ``$KFP_HOST``), checked."""
    raw = url or os.environ.get("KFJUPYTER_KFP_URL") or os.environ.get("KFP_HOST")
    if not raw:
        raise InvalidOptionError(
            "no Kubeflow Pipelines endpoint: set KFJUPYTER_KFP_URL (or KFP_HOST) to the KFP API's URL, "
            "e.g. http://ml-pipeline.kubeflow.svc.cluster.local:8888"
        )
    parts = urllib.parse.urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOptionError(f"invalid Kubeflow Pipelines URL {raw!r}: expected http(s)://HOST[:PORT][/PATH]")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidOptionError(f"invalid Kubeflow Pipelines URL {raw!r}: {exc}") from None
    return raw.strip().rstrip("/")


def token_source() -> str | None:
    """Where the bearer token comes from (``env:NAME`` or ``file:PATH``), never the token."""
    if os.environ.get("KFJUPYTER_KFP_TOKEN"):
        return "env:KFJUPYTER_KFP_TOKEN"
    path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or DEFAULT_TOKEN_PATH
    return f"file:{path}" if Path(path).is_file() else None


def _read_token(source: str | None) -> str | None:
    if not source:
        return None
    kind, _, where = source.partition(":")
    if kind == "env":
        return os.environ.get(where) or None
    try:
        return Path(where).read_text().strip() or None
    except OSError:
        return None


# --------------------------------------------------------------------------- request checks


@functools.lru_cache(maxsize=None)
def _swagger() -> dict:
    return json.loads(SWAGGER.read_text(encoding="utf-8"))


def _resolve(schema: Any, depth: int = 0) -> Any:
    """``schema`` with every ``$ref`` inlined; objects without properties are free-form."""
    if depth > 12:
        return {}
    if isinstance(schema, list):
        return [_resolve(s, depth + 1) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        merged = dict(_swagger()["definitions"][name])
        merged.update({k: v for k, v in schema.items() if k not in ("$ref", "type")})
        return _resolve(merged, depth + 1)
    out = {k: _resolve(v, depth + 1) for k, v in schema.items()}
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("additionalProperties") == {}:
        out["additionalProperties"] = True
    return out


def validate_body(definition: str, body: dict) -> dict:
    """Return ``body`` if it is a valid ``definition`` of the KFP swagger (unknown fields are
    errors, as with KFP's proto JSON parsing); raise :class:`InvalidOptionError`."""
    from ..k8s.schema import Validator

    v = Validator()
    v.validate(body, _resolve({"$ref": f"#/definitions/{definition}"}), "")
    if v.problems:
        lines = "\n".join(f"  {p or '<root>'}: {why}" for p, why in v.problems[:20])
        raise InvalidOptionError(f"{definition} would be rejected by Kubeflow Pipelines:\n{lines}")
    return body


def check_name(name: str, what: str) -> str:
    return check_dns1123_label(name, what)


# --------------------------------------------------------------------------- HTTP client


class KFPClient:
    """A minimal client of the KFP v2beta1 REST API (stdlib only)."""

    def __init__(self, url: str | None = None, token_from: str | None = None, timeout: float = 30):
        self.url = kfp_url(url)
        self.token_from = token_from if token_from is not None else token_source()
        self.timeout = timeout

    def request(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
                files: dict[str, tuple[str, bytes]] | None = None, doing: str = "") -> Any:  # fmt: skip
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        data = None
        if files is not None:
            boundary = "kfjupyter-" + uuid.uuid4().hex
            parts = []
            for field, (filename, content) in files.items():
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                    f"Content-Type: application/x-yaml\r\n\r\n".encode() + content + b"\r\n"
                )
            data = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        token = _read_token(self.token_from)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        doing = doing or f"{method} {path}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            message = _kfp_message(raw) or exc.reason or ""
            raise KFPError(
                f"Kubeflow Pipelines refused to {doing} ({exc.code}): {message}", exc.code, message
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KFPError(f"cannot reach Kubeflow Pipelines at {self.url} to {doing}: {reason}") from None
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise KFPError(
                f"Kubeflow Pipelines at {self.url} answered {doing} with something that is not JSON "
                f"(is the URL the KFP API?): {raw[:200]!r}"
            ) from None


def _kfp_message(raw: bytes) -> str | None:
    """KFP's error text: grpc-gateway's ``{code, message}`` or the upload handler's
    ``{error_message, error_details}``."""
    try:
        data = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", errors="replace").strip()
        return text[:500] or None
    if not isinstance(data, dict):
        return None
    return data.get("message") or data.get("error_message") or data.get("error") or data.get("error_details")


# --------------------------------------------------------------------------- backend


RUN_CHANNEL = Channel("run", "run", rank=0)


def experiment_id(client: "KFPClient", name: str, namespace: str | None = None) -> str:
    """The id of the KFP experiment named ``name`` (Kale's ``experiment_name``), created
    when there is none."""
    query = json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]})
    found = client.request("GET", f"{API}/experiments", query={"filter": query, "namespace": namespace, "page_size": 1},
                           doing=f"look up experiment {name}")  # fmt: skip
    for experiment in (found or {}).get("experiments") or []:
        if experiment.get("display_name") == name:
            return experiment["experiment_id"]
    body: dict[str, Any] = {"display_name": name, "description": "created by kfjupyter"}
    if namespace:
        body["namespace"] = namespace
    validate_body("v2beta1Experiment", body)
    return client.request("POST", f"{API}/experiments", body=body, doing=f"create experiment {name}")["experiment_id"]


class KFPPipelineBackend(EngineBase):
    """Runs pipelines on Kubeflow Pipelines v2 (see the module docstring). Channels: ``run``
    and ``step/NAME`` carry the steps' states and errors (KFP's REST API serves no pod
    logs); the steps are the run's child tasks, kept up to date as it is observed."""

    kind = "pipeline"
    name = "kubernetes"
    #: KFP's REST API has no watch: followers back off
    features = Features(children=True, changes="backoff")

    def __init__(self, url: str | None = None, poll_interval: float = 1.0):
        self._url = url
        self.poll_interval = poll_interval

    def _client(self, info: dict | None = None) -> KFPClient:
        if info:
            return KFPClient(info.get("url"), token_from=info.get("token_from") or "")
        return KFPClient(self._url)

    # -- the engine protocol

    def submit(self, job_id: str, spec, job_dir: Path) -> dict:
        """The engine protocol of :func:`kfjupyter.pipelines.run_pipeline`: ``spec`` is a
        :class:`~kfjupyter.pipelines.spec.PipelineSpec`."""
        return self.submit_pipeline(job_id, Pipeline.from_dict(spec.pipeline), spec.parameters, job_dir, cache=spec.cache)

    def submit_pipeline(self, job_id: str, pipeline: Pipeline, parameters: dict | None = None,
                        job_dir: Path | None = None, *, cache: bool = True, **options: Any) -> dict:  # fmt: skip
        """Upload ``pipeline`` and start a run of it; ``backend_info``. Raise before sending
        anything if the pipeline, the parameters or the configuration are wrong.
        ``cache=False`` turns KFP's cache off for every step of this run."""
        import copy

        from .kfp import compile_kfp, kfp_name, runtime_parameters

        check_name(job_id, "job id")
        if not cache:
            pipeline = copy.deepcopy(pipeline)
            for step in pipeline.steps.values():
                step.cache = False
        name = kfp_name(pipeline.name)
        check_name(name, "KFP pipeline name")
        client = self._client()  # checks the URL
        values = runtime_parameters(pipeline, parameters)
        with submission(job_id, "pipeline",
                        lambda tracking: compile_kfp(pipeline, default_image=options.get("default_image"), tracking=tracking),
                        lambda ir_yaml: None) as ir_yaml:  # fmt: skip
            return self._start_run(job_id, pipeline, name, client, values, ir_yaml, job_dir, options)

    def _start_run(self, job_id: str, pipeline: Pipeline, name: str, client: "KFPClient", values: dict, ir_yaml: str,
                   job_dir: Path | None, options: dict) -> dict:  # fmt: skip
        """Upload the compiled pipeline and start its run (see :meth:`submit_pipeline`)."""
        experiment = options.get("experiment_id") or os.environ.get("KFJUPYTER_KFP_EXPERIMENT")
        namespace = options.get("namespace") or os.environ.get("KFJUPYTER_NAMESPACE")
        if not experiment and pipeline.experiment:  # Kale's experiment_name: found, or created
            experiment = experiment_id(client, pipeline.experiment, namespace)
        run_body: dict[str, Any] = {
            "display_name": f"{name} {job_id}",
            "description": f"kfjupyter job {job_id}" + (f" ({pipeline.notebook})" if pipeline.notebook else ""),
            "pipeline_version_reference": {"pipeline_id": "", "pipeline_version_id": ""},
            "runtime_config": {"parameters": values},
        }
        if experiment:
            run_body["experiment_id"] = experiment
        if options.get("service_account"):
            run_body["service_account"] = options["service_account"]
        validate_body("v2beta1Run", run_body)
        if job_dir is not None:
            job_dir = Path(job_dir)
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / "pipeline.yaml").write_text(ir_yaml, encoding="utf-8")

        # 1. the pipeline (a new one, or a new version of the one with that name)
        created_pipeline = False
        try:
            existing = client.request("GET", f"{API}/pipelines/names/{urllib.parse.quote(name)}",
                                      query={"namespace": namespace}, doing=f"look up pipeline {name}")  # fmt: skip
        except KFPError as exc:
            if exc.status != 404:  # nothing was created yet: the endpoint is unusable
                raise KFPEndpointError(str(exc), exc.status, exc.kfp_message) from None
            existing = None
        files = {"uploadfile": (f"{name}.yaml", ir_yaml.encode("utf-8"))}
        if existing and existing.get("pipeline_id"):
            pipeline_id = existing["pipeline_id"]
            version = client.request(
                "POST", f"{API}/pipelines/upload_version", files=files,
                query={"pipelineid": pipeline_id, "name": job_id, "display_name": f"{name} {job_id}"},
                doing=f"upload a version of pipeline {name}",
            )  # fmt: skip
            version_id = version.get("pipeline_version_id")
        else:
            uploaded = client.request(
                "POST", f"{API}/pipelines/upload", files=files,
                query={"name": name, "display_name": name, "namespace": namespace,
                       "description": f"kfjupyter pipeline {pipeline.name}"},
                doing=f"upload pipeline {name}",
            )  # fmt: skip
            pipeline_id = uploaded.get("pipeline_id")
            created_pipeline = True
            version_id = None
            try:
                versions = client.request(
                    "GET", f"{API}/pipelines/{pipeline_id}/versions",
                    query={"page_size": 1, "sort_by": "created_at desc"}, doing=f"list versions of pipeline {name}",
                )  # fmt: skip
                version_id = ((versions.get("pipeline_versions") or [{}])[0]).get("pipeline_version_id")
            except KFJupyterError:
                self._cleanup(client, pipeline_id, None, created_pipeline)
                raise
        if not pipeline_id or not version_id:
            self._cleanup(client, pipeline_id, version_id, created_pipeline)
            raise KFPError(f"Kubeflow Pipelines did not say which pipeline version it created for {name}")

        # 2. the run
        run_body["pipeline_version_reference"] = {"pipeline_id": pipeline_id, "pipeline_version_id": version_id}
        try:
            run = client.request("POST", f"{API}/runs", body=run_body, doing=f"create a run of pipeline {name}")
        except KFJupyterError:
            self._cleanup(client, pipeline_id, version_id, created_pipeline)
            raise
        run_id = run.get("run_id")
        info = {
            "url": client.url,
            "token_from": client.token_from,
            "pipeline_name": name,
            "pipeline_id": pipeline_id,
            "pipeline_version_id": version_id,
            "pipeline_created": created_pipeline,
            "run_id": run_id,
            "experiment_id": run.get("experiment_id") or experiment,
            "steps": list(pipeline.steps),
            "parameters": values,
        }
        if job_dir is not None:
            (job_dir / "kfp_run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
        return info

    def _cleanup(self, client: KFPClient, pipeline_id: str | None, version_id: str | None, created: bool) -> None:
        """Delete what a failed submit uploaded (best effort)."""
        try:
            if pipeline_id and version_id:
                client.request("DELETE", f"{API}/pipelines/{pipeline_id}/versions/{version_id}")
            if pipeline_id and created:
                client.request("DELETE", f"{API}/pipelines/{pipeline_id}")
        except KFJupyterError:
            pass

    def get_run(self, info: dict) -> dict:
        return self._client(info).request("GET", f"{API}/runs/{info['run_id']}", doing=f"read run {info['run_id']}")

    def observe(self, job_id: str, info: dict) -> Observation:
        try:
            run = self.get_run(info)
        except KFPError as exc:
            if exc.status == 404:
                return st.cancellation(f"KFP run {info.get('run_id')}", gone=True)
            raise
        self._sync_steps(job_id, info, run)
        state = run.get("state") or "RUNTIME_STATE_UNSPECIFIED"
        status = STATES.get(state, st.PENDING)
        if status == st.CANCELLING:  # terminated: KFP is deleting its pods
            return st.cancellation(f"KFP run {info.get('run_id')}", gone=False, detail="KFP is terminating it (CANCELING)")
        if status == st.FAILED:
            error = _run_error(run) or f"KFP run {info.get('run_id')} failed"
            return Observation(st.FAILED, error=error, message=error.splitlines()[0])
        message = f"KFP run {info.get('run_id')}: {state}"
        return Observation(status, message=message)

    def _sync_steps(self, job_id: str, info: dict, run: dict) -> None:
        """Copy the steps' KFP states into the run's step records (when the store has them)."""
        from . import steps as ksteps

        try:
            from ..store.workspace import get_workspace

            ws = get_workspace()
            known = {r.name: r for r in ksteps.list_steps(job_id, ws)}
        except Exception:  # noqa: BLE001 - no store, no step records: nothing to keep in sync
            return
        for step in self.steps(job_id, info, run):
            record = known.get(step["name"])
            if record is None or (record.status == step["status"] and record.error == step.get("error")):
                continue
            fields: dict[str, Any] = {"status": step["status"], "cached": step["cached"]}
            if step["cached"]:
                fields["cache_reason"] = "taken from Kubeflow Pipelines' cache"
            if step.get("error"):
                fields["error"] = step["error"]
            try:
                ksteps.update_step(ws, job_id, step["name"], **fields)
            except KFJupyterError:
                pass

    def steps(self, job_id: str, info: dict, run: dict | None = None) -> list[dict]:
        """Per-step states as KFP reports them (``task_details`` whose display name is a step)."""
        run = run if run is not None else self.get_run(info)
        wanted = info.get("steps") or []
        found: dict[str, dict] = {}
        for task in (run.get("run_details") or {}).get("task_details") or []:
            name = task.get("display_name")
            if name in wanted:
                found[name] = {
                    "name": name,
                    "status": STEP_STATES.get(task.get("state") or "", st.PENDING),
                    "cached": task.get("state") == "SKIPPED",
                    "started_at": task.get("start_time"),
                    "finished_at": task.get("end_time"),
                    "error": (task.get("error") or {}).get("message"),
                    "pod_name": task.get("pod_name"),
                }
        out = [found.get(n) or {"name": n, "status": st.PENDING, "cached": False} for n in wanted]
        ended = {"FAILED": "Skipped", "CANCELED": st.CANCELLED}.get(run.get("state") or "")
        for step in out:  # the run ended: a step that never got to run will not
            if ended and step["status"] in (st.PENDING, st.RUNNING):
                step["status"] = ended if step["status"] == st.PENDING or ended == st.CANCELLED else st.FAILED
        return out

    def channels(self, job_id: str, info: dict) -> Channels:
        return Channels(logs=(RUN_CHANNEL,))

    def backfill_children(self, job_id: str, info: dict) -> None:
        from . import steps as ksteps

        ksteps.list_steps(job_id)  # adopts the steps an earlier kfjupyter kept in a table of their own

    def _state_lines(self, job_id: str, info: dict, step: str | None) -> list[str]:
        lines = []
        for s in self.steps(job_id, info):
            if step is not None and s["name"] != step:
                continue
            lines.append(f"{s['name']}: {s['status']}" + (f" (pod {s['pod_name']})" if s.get("pod_name") else ""))
            if s.get("error"):
                lines.extend(f"  {e}" for e in str(s["error"]).splitlines())
        return lines

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop=None) -> Iterator[str]:  # fmt: skip
        """Step states and errors (KFP's REST API serves no pod logs; see the module
        docstring): of every step on ``run``, of one on ``step/NAME``."""
        kind, _, name = channel.partition("/")
        if channel != RUN_CHANNEL.name and not (kind == "step" and name in (info.get("steps") or [])):
            raise self.unknown_channel(job_id, channel, self.channels(job_id, info))
        step = name if kind == "step" else None
        read = functools.partial(self._state_lines, job_id, info, step)
        if follow:
            done = lambda: self.observe(job_id, info).status in st.TERMINAL  # noqa: E731
            return poll_follow(read, done, stop=stop, poll=self.poll_interval)
        lines = read()
        return iter(lines[-tail:] if tail else lines)

    def cancel(self, job_id: str, info: dict) -> None:
        try:
            self._client(info).request("POST", f"{API}/runs/{info['run_id']}:terminate",
                                       doing=f"terminate run {info['run_id']}")  # fmt: skip
        except KFPError as exc:
            if exc.status != 404:
                raise


def _run_error(run: dict) -> str | None:
    parts = []
    message = (run.get("error") or {}).get("message")
    if message:
        parts.append(message)
    for task in (run.get("run_details") or {}).get("task_details") or []:
        if task.get("state") == "FAILED" and (task.get("error") or {}).get("message"):
            parts.append(f"step {task.get('display_name')}: {task['error']['message']}")
    return "\n".join(parts) or None
