"""A small, honest fake of the Kubeflow Pipelines 2.17 API server (REST ``v2beta1``), for tests.

`FakeKFP` serves real HTTP on 127.0.0.1 (threaded). It validates what it receives on its
own, independently of ``kfjupyter/pipelines/kubernetes.py``:

* requests against the project's copy of KFP's swagger
  (``kfjupyter/k8s/schemas/kfp-2.17.0/v2beta1_kfp_api_single_file.swagger.json``) with
  ``jsonschema`` (``$ref`` resolved by jsonschema itself) plus proto-JSON strictness (an
  undeclared field is ``unknown field``, as grpc-gateway's ``protojson`` says), typed query
  parameters, the ``Authorization: Bearer`` token when the fake has one;
* an uploaded pipeline (``multipart/form-data``, field ``uploadfile``) is parsed as YAML and
  loaded with kfp's own ``PipelineSpec`` proto (``json_format.ParseDict``, unknown fields
  refused) and ``kfp.components.load_component_from_text``: an invalid IR is refused with
  KFP's upload error body ``{"error_message", "error_details"}``;
* a run's ``runtime_config.parameters`` are checked against the pipeline's root
  ``inputDefinitions`` (unknown names, missing required ones, types), its
  ``pipeline_version_reference`` must name an uploaded pipeline (and version).

Errors of the grpc-gateway routes are ``googleRpcStatus`` bodies (``code`` is the gRPC
code, ``message`` the text) with the matching HTTP status.

Routes: pipelines ``upload``, ``upload_version``, ``names/{name}``, ``{id}`` (GET, DELETE),
``{id}/versions`` (GET), ``{id}/versions/{vid}`` (GET, DELETE); runs create, get, list,
``:terminate``, delete; ``healthz``.

Run states: a created run is ``PENDING``; every ``GET`` of it then moves it one state on
(``PENDING`` → ``RUNNING`` → ``SUCCEEDED``), with ``run_details.task_details`` for every task
of the pipeline (``display_name`` = the task's ``taskInfo.name``). :meth:`FakeKFP.fail_next`
makes the next run (or :meth:`FakeKFP.fail_run` a given run) end ``FAILED`` at a task with an
error message, as KFP reports a failed pod. ``:terminate`` moves a run to ``CANCELING``,
then ``CANCELED`` (with ``execute=True``, once its running task's process is killed, as KFP
deletes the run's pods).

With ``execute=True`` the fake plays the KFP driver + launcher instead: it really runs each
task's container command (``python3`` = this venv's Python, with a ``kfjupyter`` that cannot
be imported — an image without the package), tasks in dependency order, placeholders
``{{$.inputs.parameters['x']}}``, ``{{$.inputs.artifacts['x'].path}}`` and
``{{$.outputs.artifacts['x'].path}}`` rendered as KFP's launcher renders them (parameter
values as text: numbers as JSON numbers, booleans ``true``/``false``, strings as they are),
artifacts as local paths under the fake's workdir, ``{{$}}`` as the executor input (JSON:
``outputs.outputFile`` is the task's ``executor_output.json``, which must then parse as KFP's
``ExecutorOutput`` proto, as the launcher reads it). The run's state follows the processes.

An upload may hold a second YAML document, the platform spec (``platforms.kubernetes``, what
kfp-kubernetes adds): it is parsed with ``PlatformSpec`` and each executor's config with
kfp-kubernetes' ``KubernetesExecutorConfig`` (unknown fields refused).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import yaml

SWAGGER = Path(__file__).resolve().parents[1] / "kfjupyter/k8s/schemas/kfp-2.17.0/v2beta1_kfp_api_single_file.swagger.json"
API = "/apis/v2beta1"

# gRPC codes (google.rpc.Code) and their HTTP status in grpc-gateway
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, UNAUTHENTICATED, FAILED_PRECONDITION = 3, 5, 6, 16, 9
UNIMPLEMENTED = 12
HTTP_OF = {UNIMPLEMENTED: 501, INVALID_ARGUMENT: 400, NOT_FOUND: 404, ALREADY_EXISTS: 409, UNAUTHENTICATED: 401, FAILED_PRECONDITION: 400}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RpcError(Exception):
    def __init__(self, code: int, message: str, upload: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.upload = upload  # the upload handler's body format


def _undeclared(obj, schema: dict, definitions: dict, path: str, out: list) -> None:
    """Fields of ``obj`` the schema does not declare (proto JSON parsing refuses them)."""
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and extra is None:
            return  # google.protobuf.Struct: free-form
        for key, value in obj.items():
            if props and key in props:
                _undeclared(value, props[key], definitions, f"{path}.{key}" if path else key, out)
            elif isinstance(extra, dict):
                _undeclared(value, extra, definitions, f"{path}.{key}" if path else key, out)
            else:
                out.append(f"{path}.{key}" if path else key)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            _undeclared(item, schema["items"], definitions, f"{path}[{i}]", out)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.fake._handle(self, "PATCH")


class FakeKFP:
    def __init__(self, workdir: Path, token: str | None = None, execute: bool = False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.execute = execute
        self.swagger = json.loads(SWAGGER.read_text())
        self.definitions = self.swagger["definitions"]
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}  # version id -> version (with "_spec": the IR dict)
        self.runs: dict[str, dict] = {}
        #: experiment id -> experiment (a v2beta1Experiment)
        self.experiments: dict[str, dict] = {"default-experiment": {
            "experiment_id": "default-experiment", "display_name": "Default", "storage_state": "AVAILABLE"}}
        self.plans: dict[str, dict] = {}  # run id -> {"fail": (task, message) | None, ...}
        self._fail_next: tuple[str | None, str] | None = None
        self.processes: list[subprocess.Popen] = []
        self.lock = threading.RLock()
        self.shim = self.workdir / "image-shim"  # an image without the kfjupyter package
        (self.shim / "kfjupyter").mkdir(parents=True, exist_ok=True)
        (self.shim / "kfjupyter" / "__init__.py").write_text('raise ImportError("kfjupyter is not installed in this image")\n')
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    # -- lifecycle

    def start(self) -> "FakeKFP":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # -- test controls

    def fail_next(self, task: str | None = None, message: str = "task failed") -> None:
        """The next created run fails at ``task`` (default: its first task) with ``message``."""
        self._fail_next = (task, message)

    def fail_run(self, run_id: str, task: str | None = None, message: str = "task failed") -> None:
        with self.lock:
            self.plans[run_id]["fail"] = (task, message)

    def spec_of(self, run_id: str) -> dict:
        """The IR (dict) of the pipeline version a run runs."""
        run = self.runs[run_id]
        return self.versions[run["pipeline_version_reference"]["pipeline_version_id"]]["_spec"]

    # -- HTTP

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        record = {"method": method, "path": path, "query": query, "headers": dict(h.headers), "raw": raw,
                  "time": time.monotonic()}  # fmt: skip
        self.requests.append(record)
        upload = path in (f"{API}/pipelines/upload", f"{API}/pipelines/upload_version")
        try:
            if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
                raise RpcError(UNAUTHENTICATED, "Unauthenticated: Request header error: there is no user identity header.", upload)
            op_path, params, operation = self._route(method, path)
            self._check_query(operation, query, upload)
            body = None
            if upload:
                record["files"] = self._multipart(h, raw)
            elif raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise RpcError(INVALID_ARGUMENT, f"proto: syntax error: {exc}") from None
                self._check_body(operation, body)
            record["body"] = body
            result = self._dispatch(method, op_path, params, query, body, record)
            self._send(h, 200, result)
        except RpcError as exc:
            status = HTTP_OF.get(exc.code, 500)
            if exc.upload:
                self._send(h, status, {"error_message": exc.message, "error_details": exc.message})
            else:
                self._send(h, status, {"code": exc.code, "message": exc.message, "details": []})

    def _send(self, h, code: int, obj) -> None:
        data = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str) -> tuple[str, dict, dict]:
        # literal paths first (pipelines/upload before pipelines/{pipeline_id}), as the gateway does
        matched = False
        for template, ops in sorted(self.swagger["paths"].items(), key=lambda kv: kv[0].count("{")):
            names = re.findall(r"\{([^}]+)\}", template)
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/:]+)", re.escape(template)) + "$"
            m = re.match(pattern, path)
            if m:
                matched = True
                if method.lower() in ops:
                    return template, dict(zip(names, m.groups())), ops[method.lower()]
        if matched:
            raise RpcError(UNIMPLEMENTED, f"Method Not Allowed: {method} {path}")
        raise RpcError(NOT_FOUND, f"Not Found: {path}")

    def _check_query(self, operation: dict, query: dict, upload: bool) -> None:
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        for name, value in query.items():
            p = declared.get(name)
            if p is None:
                continue  # grpc-gateway ignores query parameters it does not know
            if p.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                raise RpcError(INVALID_ARGUMENT, f"bad query parameter {name}: {value!r} is not an integer", upload)

    def _check_body(self, operation: dict, body) -> None:
        params = [p for p in operation.get("parameters", []) if p["in"] == "body"]
        if not params:
            return
        schema = params[0]["schema"]
        try:
            jsonschema.validate(body, {**schema, "definitions": self.definitions})
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path)
            raise RpcError(INVALID_ARGUMENT, f"proto: invalid value for {where or 'body'}: {exc.message}") from None
        unknown: list[str] = []
        _undeclared(body, schema, self.definitions, "", unknown)
        if unknown:
            raise RpcError(INVALID_ARGUMENT, f'proto: (line 1:2): unknown field "{unknown[0].rsplit(".", 1)[-1]}"')

    def _multipart(self, h, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
        ctype = h.headers.get("Content-Type") or ""
        if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
            raise RpcError(INVALID_ARGUMENT, "Failed to create a pipeline and a pipeline version: "
                           "Failed to read a file from the upload request: request Content-Type isn't multipart/form-data", True)  # fmt: skip
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw
        )
        files = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            files[name] = (part.get_filename(), part.get_payload(decode=True))
        return files

    # -- the API

    def _dispatch(self, method: str, op: str, params: dict, query: dict, body, record: dict):
        with self.lock:
            if op == f"{API}/healthz":
                return {"multi_user": False, "pipeline_store": "database"}
            if op == f"{API}/pipelines/upload":
                return self._upload(query, record["files"])
            if op == f"{API}/pipelines/upload_version":
                return self._upload_version(query, record["files"])
            if op == f"{API}/pipelines/names/{{name}}":
                found = [p for p in self.pipelines.values() if p["name"] == params["name"]]
                if not found:
                    raise RpcError(NOT_FOUND, f"Failed to get a pipeline with name {params['name']}: ResourceNotFoundError: Pipeline {params['name']} not found")
                return found[0]
            if op == f"{API}/pipelines/{{pipeline_id}}":
                pipeline = self._pipeline(params["pipeline_id"])
                if method == "DELETE":
                    if any(v["pipeline_id"] == pipeline["pipeline_id"] for v in self.versions.values()):
                        raise RpcError(FAILED_PRECONDITION, f"Failed to delete pipeline {pipeline['pipeline_id']}. Remove all its pipeline versions first")
                    del self.pipelines[pipeline["pipeline_id"]]
                    return {}
                return pipeline
            if op == f"{API}/pipelines/{{pipeline_id}}/versions":
                self._pipeline(params["pipeline_id"])
                versions = [self._public(v) for v in self.versions.values() if v["pipeline_id"] == params["pipeline_id"]]
                versions.sort(key=lambda v: v["created_at"], reverse="desc" in (query.get("sort_by") or ""))
                size = int(query.get("page_size") or 0) or len(versions)
                return {"pipeline_versions": versions[:size], "total_size": len(versions)}
            if op == f"{API}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}":
                version = self.versions.get(params["pipeline_version_id"])
                if version is None or version["pipeline_id"] != params["pipeline_id"]:
                    raise RpcError(NOT_FOUND, f"Pipeline version {params['pipeline_version_id']} not found")
                if method == "DELETE":
                    del self.versions[params["pipeline_version_id"]]
                    return {}
                return self._public(version)
            if op == f"{API}/experiments" and method == "POST":
                return self._create_experiment(body)
            if op == f"{API}/experiments":
                return self._list_experiments(query)
            if op == f"{API}/runs" and method == "POST":
                return self._create_run(body, query)
            if op == f"{API}/runs":
                runs = [self._public(r) for r in self.runs.values()
                        if not query.get("experiment_id") or r["experiment_id"] == query["experiment_id"]]  # fmt: skip
                return {"runs": runs, "total_size": len(runs)}
            if op == f"{API}/runs/{{run_id}}":
                run = self._run(params["run_id"])
                if method == "DELETE":
                    del self.runs[run["run_id"]]
                    return {}
                seen = json.loads(json.dumps(self._public(run)))
                if not self.execute:
                    self._advance(run)  # the next poll sees the next state
                return seen
            if op == f"{API}/runs/{{run_id}}:terminate":
                run = self._run(params["run_id"])
                if run["state"] in ("PENDING", "RUNNING"):
                    self._set_state(run, "CANCELING")
                    self.plans[run["run_id"]]["terminate"] = True
                    for proc in self.plans[run["run_id"]].get("running", []):
                        proc.kill()  # KFP deletes the run's pods
                return {}
        raise RpcError(UNIMPLEMENTED, f"the fake does not implement {method} {op}")

    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _pipeline(self, pipeline_id: str) -> dict:
        if pipeline_id not in self.pipelines:
            raise RpcError(NOT_FOUND, f"Failed to get pipeline {pipeline_id}: ResourceNotFoundError: Pipeline {pipeline_id} not found")
        return self.pipelines[pipeline_id]

    def _run(self, run_id: str) -> dict:
        if run_id not in self.runs:
            raise RpcError(NOT_FOUND, f"Failed to get a run: ResourceNotFoundError: Run {run_id} not found")
        return self.runs[run_id]

    def _load_ir(self, files: dict) -> dict:
        if "uploadfile" not in files:
            raise RpcError(INVALID_ARGUMENT, "Failed to create a pipeline and a pipeline version: Failed to read a file "
                           "from the upload request: http: no such file", True)  # fmt: skip
        _, content = files["uploadfile"]
        try:
            docs = list(yaml.safe_load_all(content))
            doc, platform = (docs + [None])[:2] if docs else (None, None)
        except yaml.YAMLError as exc:
            raise RpcError(INVALID_ARGUMENT, f"Failed to create a pipeline and a pipeline version: invalid YAML: {exc}", True) from None
        if not isinstance(doc, dict) or "pipelineInfo" not in doc or "root" not in doc:
            raise RpcError(INVALID_ARGUMENT, "Failed to create a pipeline and a pipeline version: the file is not a "
                           "KFP v2 pipeline spec (no pipelineInfo/root)", True)  # fmt: skip
        from google.protobuf import json_format
        from kfp import components
        from kfp.pipeline_spec import pipeline_spec_pb2

        try:
            json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
            if platform is not None or len(docs) > 2:
                from kfp.kubernetes import kubernetes_executor_config_pb2

                if len(docs) > 2 or not isinstance(platform, dict) or set(platform) != {"platforms"}:
                    raise ValueError("the second YAML document is not a platform spec (platforms: …)")
                json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
                k8s = platform["platforms"].get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
                for label, config in k8s.items():
                    if label not in doc["deploymentSpec"]["executors"]:
                        raise ValueError(f"platform spec: no executor {label}")
                    json_format.ParseDict(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig())
            components.load_component_from_text(content.decode("utf-8"))
        except Exception as exc:  # noqa: BLE001
            raise RpcError(INVALID_ARGUMENT, f"Failed to create a pipeline and a pipeline version: invalid pipeline spec: {exc}", True) from None
        return doc

    def _upload(self, query: dict, files: dict) -> dict:
        doc = self._load_ir(files)
        name = query.get("name") or files["uploadfile"][0] or doc["pipelineInfo"]["name"]
        if any(p["name"] == name for p in self.pipelines.values()):
            raise RpcError(ALREADY_EXISTS, f"Failed to create a pipeline and a pipeline version: Already exist error: "
                           f"Failed to create a new pipeline. The name {name} already exists. Please specify a new name", True)  # fmt: skip
        pid = str(uuid.uuid4())
        pipeline = {"pipeline_id": pid, "name": name, "display_name": query.get("display_name") or name,
                    "description": query.get("description") or "", "created_at": now()}  # fmt: skip
        if query.get("namespace"):
            pipeline["namespace"] = query["namespace"]
        self.pipelines[pid] = pipeline
        self._new_version(pid, name, doc)
        return pipeline

    def _upload_version(self, query: dict, files: dict) -> dict:
        doc = self._load_ir(files)
        pid = query.get("pipelineid")
        if not pid:
            raise RpcError(INVALID_ARGUMENT, "Failed to create a pipeline version: Pipeline id is empty", True)
        if pid not in self.pipelines:
            raise RpcError(NOT_FOUND, f"Failed to create a pipeline version: Pipeline {pid} not found", True)
        name = query.get("name") or files["uploadfile"][0]
        if any(v["pipeline_id"] == pid and v["name"] == name for v in self.versions.values()):
            raise RpcError(ALREADY_EXISTS, f"Failed to create a pipeline version: Already exist error: the name {name} already exists", True)
        return self._public(self._new_version(pid, name, doc, query.get("display_name")))

    def _new_version(self, pid: str, name: str, doc: dict, display: str | None = None) -> dict:
        vid = str(uuid.uuid4())
        time.sleep(0.001)  # distinct created_at
        version = {"pipeline_id": pid, "pipeline_version_id": vid, "name": name, "display_name": display or name,
                   "created_at": now(), "pipeline_spec": doc, "_spec": doc}  # fmt: skip
        self.versions[vid] = version
        return version

    def _create_experiment(self, body: dict) -> dict:
        name = body.get("display_name")
        if not name:
            raise RpcError(INVALID_ARGUMENT, "Failed to create a new experiment due to validation error: "
                           "Experiment name is empty. Please specify a valid experiment name")  # fmt: skip
        if any(e["display_name"] == name and e.get("namespace") == body.get("namespace") for e in self.experiments.values()):
            raise RpcError(ALREADY_EXISTS, f"Failed to create a new experiment: Experiment {name} already exists")
        experiment = {**body, "experiment_id": str(uuid.uuid4()), "storage_state": "AVAILABLE",
                      "created_at": now()}
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _list_experiments(self, query: dict) -> dict:
        """KFP's list, with the filter it documents (a JSON of predicates; EQUALS only here)."""
        found = list(self.experiments.values())
        if query.get("filter"):
            try:
                predicates = json.loads(query["filter"]).get("predicates", [])
            except ValueError as exc:
                raise RpcError(INVALID_ARGUMENT, f"Invalid filter: {exc}") from None
            for p in predicates:
                if p.get("operation") not in ("EQUALS", None):
                    raise RpcError(UNIMPLEMENTED, f"filter operation {p.get('operation')} is not in this fake")
                value = p.get("string_value", p.get("stringValue"))
                found = [e for e in found if e.get(p.get("key")) == value]
        if query.get("namespace"):
            found = [e for e in found if e.get("namespace") in (None, query["namespace"])]
        size = int(query.get("page_size") or 0) or len(found)
        return {"experiments": found[:size], "total_size": len(found)}

    def _create_run(self, body: dict, query: dict) -> dict:
        if not body.get("display_name"):
            raise RpcError(INVALID_ARGUMENT, "Failed to create a run due to invalid input: The run name is empty. Please specify a valid name")
        ref = body.get("pipeline_version_reference") or {}
        if body.get("pipeline_spec") is None and not ref.get("pipeline_id"):
            raise RpcError(INVALID_ARGUMENT, "Failed to create a run due to invalid input: pipeline spec or pipeline version reference is required")
        if ref.get("pipeline_id"):
            self._pipeline(ref["pipeline_id"])
            vid = ref.get("pipeline_version_id")
            if vid:
                if vid not in self.versions or self.versions[vid]["pipeline_id"] != ref["pipeline_id"]:
                    raise RpcError(NOT_FOUND, f"Failed to create a run: Pipeline version {vid} not found")
            else:
                latest = sorted((v for v in self.versions.values() if v["pipeline_id"] == ref["pipeline_id"]), key=lambda v: v["created_at"])
                vid = latest[-1]["pipeline_version_id"]
            spec = self.versions[vid]["_spec"]
        else:
            spec = body["pipeline_spec"]
            vid = None
        experiment = body.get("experiment_id") or query.get("experiment_id")
        if experiment and experiment not in self.experiments:
            raise RpcError(NOT_FOUND, f"Failed to create a run: Failed to fetch experiment {experiment}: "
                           f"ResourceNotFoundError: Experiment {experiment} not found")  # fmt: skip
        params = (body.get("runtime_config") or {}).get("parameters") or {}
        self._check_parameters(spec, params)
        run_id = str(uuid.uuid4())
        run = dict(body)
        run.update(run_id=run_id, experiment_id=body.get("experiment_id") or query.get("experiment_id") or "default-experiment",
                   storage_state="AVAILABLE", created_at=now(), scheduled_at=now(), state="PENDING",
                   state_history=[{"update_time": now(), "state": "PENDING"}],
                   run_details={"task_details": []})  # fmt: skip
        run["pipeline_version_reference"] = {"pipeline_id": ref.get("pipeline_id", ""), "pipeline_version_id": vid or ""}
        self.runs[run_id] = run
        self.plans[run_id] = {"fail": self._fail_next, "terminate": False}
        self._fail_next = None
        if self.execute:
            threading.Thread(target=self._execute, args=(run_id, spec, params), daemon=True).start()
        return self._public(run)

    def _check_parameters(self, spec: dict, params: dict) -> None:
        declared = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
        for name, value in params.items():
            if name not in declared:
                raise RpcError(INVALID_ARGUMENT, f"Failed to create a run due to invalid input: input parameter {name} "
                               f"is not declared by the pipeline (declared: {', '.join(sorted(declared))})")  # fmt: skip
            kind = declared[name]["parameterType"]
            ok = {
                "STRING": lambda v: isinstance(v, str),
                "NUMBER_INTEGER": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer(),
                "NUMBER_DOUBLE": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                "BOOLEAN": lambda v: isinstance(v, bool),
                "LIST": lambda v: isinstance(v, list),
                "STRUCT": lambda v: isinstance(v, dict),
            }[kind](value)
            if not ok:
                raise RpcError(INVALID_ARGUMENT, f"Failed to create a run due to invalid input: input parameter {name} "
                               f"requires type {kind}, got {value!r}")  # fmt: skip
        for name, d in declared.items():
            if name not in params and not d.get("isOptional") and "defaultValue" not in d:
                raise RpcError(INVALID_ARGUMENT, f"Failed to create a run due to invalid input: input parameter {name} is required")

    # -- run state

    def _set_state(self, run: dict, state: str, error: str | None = None) -> None:
        run["state"] = state
        entry = {"update_time": now(), "state": state}
        if error:
            entry["error"] = {"code": 2, "message": error}
            run["error"] = {"code": 2, "message": error}
        run["state_history"].append(entry)
        if state in ("SUCCEEDED", "FAILED", "CANCELED"):
            run["finished_at"] = now()

    def _tasks(self, run: dict) -> list[tuple[str, str]]:
        """(task key, display name) in dependency order."""
        spec = self.spec_of(run["run_id"])
        tasks = spec["root"]["dag"]["tasks"]
        order: list[str] = []
        while len(order) < len(tasks):
            for key, task in tasks.items():
                if key not in order and all(d in order for d in task.get("dependentTasks", [])):
                    order.append(key)
        return [(k, tasks[k]["taskInfo"]["name"]) for k in order]

    def _task_detail(self, run: dict, name: str, state: str, error: str | None = None) -> None:
        details = run["run_details"]["task_details"]
        detail = next((d for d in details if d["display_name"] == name), None)
        if detail is None:
            detail = {"run_id": run["run_id"], "task_id": str(uuid.uuid4()), "display_name": name,
                      "create_time": now(), "pod_name": f"{name}-{uuid.uuid4().hex[:8]}", "state_history": []}  # fmt: skip
            details.append(detail)
        detail["state"] = state
        detail["state_history"].append({"update_time": now(), "state": state})
        if state == "RUNNING":
            detail["start_time"] = now()
        if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            detail["end_time"] = now()
        if error:
            detail["error"] = {"code": 2, "message": error}

    def _advance(self, run: dict) -> None:
        plan = self.plans[run["run_id"]]
        state = run["state"]
        tasks = self._tasks(run)
        if state == "CANCELING":
            for _, name in tasks:
                self._task_detail(run, name, "CANCELED")
            self._set_state(run, "CANCELED")
        elif state == "PENDING":
            self._set_state(run, "RUNNING")
            dag = self.spec_of(run["run_id"])["root"]["dag"]["tasks"]
            for key, name in tasks:  # the tasks with nothing upstream start
                if not dag[key].get("dependentTasks"):
                    self._task_detail(run, name, "RUNNING")
        elif state == "RUNNING":
            fail = plan.get("fail")
            if fail:
                failing = fail[0] or tasks[0][1]
                dag = self.spec_of(run["run_id"])["root"]["dag"]["tasks"]
                key_of = {name: key for key, name in tasks}
                blocked = {key_of[failing]}
                for key, name in tasks:  # dependency order: downstream of the failure never starts
                    if key in blocked:
                        continue
                    if blocked & set(dag[key].get("dependentTasks", [])):
                        blocked.add(key)
                        details = run["run_details"]["task_details"]
                        details[:] = [d for d in details if d["display_name"] != name]
                    else:
                        self._task_detail(run, name, "SUCCEEDED")
                self._task_detail(run, failing, "FAILED", fail[1])
                self._set_state(run, "FAILED", f"failed: task {failing}: {fail[1]}")
            else:
                for _, name in tasks:
                    self._task_detail(run, name, "SUCCEEDED")
                self._set_state(run, "SUCCEEDED")

    # -- execute mode: the driver + launcher, locally

    def _execute(self, run_id: str, spec: dict, params: dict) -> None:
        with self.lock:
            run = self.runs[run_id]
            self._set_state(run, "RUNNING")
            tasks = self._tasks(run)
        root_defaults = {n: d.get("defaultValue") for n, d in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()}
        values = {**root_defaults, **params}
        outputs: dict[tuple[str, str], Path] = {}  # (task key, artifact) -> path
        base = self.workdir / "runs" / run_id
        for key, name in tasks:
            task = spec["root"]["dag"]["tasks"][key]
            component = spec["components"][task["componentRef"]["name"]]
            container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
            rendered: dict[str, str] = {}
            for pname, source in (task.get("inputs", {}).get("parameters") or {}).items():
                rendered[f"{{{{$.inputs.parameters['{pname}']}}}}"] = _render_value(values[source["componentInputParameter"]])
            for aname, source in (task.get("inputs", {}).get("artifacts") or {}).items():
                producer = source["taskOutputArtifact"]
                rendered[f"{{{{$.inputs.artifacts['{aname}'].path}}}}"] = str(outputs[(producer["producerTask"], producer["outputArtifactKey"])])
            for aname in (component.get("outputDefinitions", {}).get("artifacts") or {}):
                path = base / key / aname
                outputs[(key, aname)] = path
                rendered[f"{{{{$.outputs.artifacts['{aname}'].path}}}}"] = str(path)
            executor_output = base / key / "executor_output.json"
            rendered["{{$}}"] = json.dumps({"outputs": {"outputFile": str(executor_output), "artifacts": {
                n: {"artifacts": [{"name": n, "uri": f"minio://mlpipeline/{run_id}/{key}/{n}"}]} for n in
                (component.get("outputDefinitions", {}).get("artifacts") or {})}}})  # fmt: skip
            argv = [rendered.get(a, a) for a in container["command"] + container.get("args", [])]
            if argv[0] == "python3":
                argv[0] = sys.executable
            env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(base / key), "PYTHONPATH": str(self.shim),
                   "LANG": "C.UTF-8"}  # fmt: skip
            env.update({e["name"]: e["value"] for e in container.get("env", [])})
            (base / key).mkdir(parents=True, exist_ok=True)
            with self.lock:
                if self.plans[run_id]["terminate"]:
                    self._task_detail(run, name, "CANCELED")
                    self._set_state(run, "CANCELED")
                    return
                self._task_detail(run, name, "RUNNING")
                proc = subprocess.Popen(argv, env=env, cwd=base / key, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                self.processes.append(proc)
                self.plans[run_id].setdefault("running", []).append(proc)
            log, _ = proc.communicate()
            (base / key / "log.txt").write_bytes(log)
            with self.lock:
                self.plans[run_id]["running"].remove(proc)
                if self.plans[run_id]["terminate"]:
                    self._task_detail(run, name, "CANCELED")
                    self._set_state(run, "CANCELED")
                    return
                if proc.returncode != 0:
                    tail = "\n".join(log.decode(errors="replace").splitlines()[-15:])
                    self._task_detail(run, name, "FAILED", f"exit status {proc.returncode}: {tail}")
                    self._set_state(run, "FAILED", f"task {name} failed with exit status {proc.returncode}")
                    return
                if executor_output.exists():  # what the launcher parses (protojson): must be an ExecutorOutput
                    from google.protobuf import json_format
                    from kfp.pipeline_spec import pipeline_spec_pb2

                    try:
                        json_format.Parse(executor_output.read_text(), pipeline_spec_pb2.ExecutorOutput())
                    except json_format.ParseError as exc:
                        self._task_detail(run, name, "FAILED", f"failed to parse the executor output: {exc}")
                        self._set_state(run, "FAILED", f"task {name}: invalid executor output")
                        return
                self._task_detail(run, name, "SUCCEEDED")
        with self.lock:
            self._set_state(run, "SUCCEEDED")


def _render_value(value) -> str:
    """A parameter value as KFP's launcher puts it on a command line."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


# -- fixtures (import them into a test module: ``from fake_kfp import kfp_server``) ---------------
import pytest  # noqa: E402


def _running(tmp_path, monkeypatch, execute: bool) -> FakeKFP:
    server = FakeKFP(tmp_path / "kfp", execute=execute).start()
    monkeypatch.setenv("KFJUPYTER_KFP_URL", server.url)
    for name in ("KFP_HOST", "KFJUPYTER_KFP_TOKEN", "KFJUPYTER_KFP_EXPERIMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    return server


@pytest.fixture
def kfp_server(tmp_path, monkeypatch):
    """A fake KFP (KFJUPYTER_KFP_URL points at it) whose runs move on by themselves as they are read."""
    server = _running(tmp_path, monkeypatch, execute=False)
    yield server
    server.stop()


@pytest.fixture
def kfp_executor(tmp_path, monkeypatch):
    """A fake KFP that really runs the steps (a long one runs until terminated)."""
    server = _running(tmp_path, monkeypatch, execute=True)
    yield server
    server.stop()
