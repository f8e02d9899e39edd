"""The local serving engine: KServe model servers (and a canary router) as detached
processes on 127.0.0.1, each asking every request for the endpoint's token
(``Authorization: Bearer TOKEN``, the token in the endpoint's folder: see ``api.TOKEN``),
so no other local user can call them.

Every process runs in a session of its own (``start_new_session``) so a kernel restart
leaves it serving; its command line names its folder under the endpoint's job folder,
so it can always be found. ``backend_info`` of the endpoint's job record holds what is
needed to find it again: the servers (pid, start time, port, version), the router, and
the URL users call.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil

from .. import status as st
from ..errors import BackendError, InvalidOptionError
from ..files import PRIVATE_UMASK
from ..runtime.engine import Channel, Channels, EngineBase, Features
from ..runtime.logs import follow_file, read_lines
from ..runtime.processes import alive, free_port, kill_tree
from ..status import Observation
from . import router as router_mod
from . import server as server_mod

READY_TIMEOUT_S = float(os.environ.get("KFJUPYTER_SERVE_READY_TIMEOUT", "90"))


class EndpointStartError(BackendError):
    """A model server or the router did not become ready; nothing was left running."""


def check_port_free(port: int) -> int:
    if not (0 < int(port) < 65536):
        raise InvalidOptionError(f"port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", int(port)))
        except OSError as exc:
            raise InvalidOptionError(f"port {port} on 127.0.0.1 is in use ({exc.strerror}): choose another or leave port unset") from None
    return int(port)


def endpoint_token(job_dir: Path) -> str:
    """The endpoint's token: read from its folder, or made there (0600) the first time."""
    from .api import TOKEN

    path = Path(job_dir) / TOKEN
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


def http_get(port: int, path: str, token: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(read_lines(path, lines))


def _spawn(module: str, folder: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab", buffering=0) as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the kernel; killed by undeploy
            umask=PRIVATE_UMASK,  # what it writes only this user reads
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _proc_info(proc: subprocess.Popen) -> dict:
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        created = None
    return {"pid": proc.pid, "create_time": created}


def stop_process(info: dict | None) -> None:
    """Stop one server/router process and its children (SIGTERM, then SIGKILL)."""
    if not info or not alive(info.get("pid"), info.get("create_time")):
        return
    try:
        proc = psutil.Process(info["pid"])
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    kill_tree(procs, grace=5.0)


def _wait_ready(proc: subprocess.Popen, port: int, path: str, token: str, log: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise EndpointStartError(f"{what} exited with code {code} before it was ready:\n{_log_tail(log)}")
        try:
            status, body = http_get(port, path, token, timeout=1.0)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise EndpointStartError(f"{what} was not ready within {timeout:.0f} s:\n{_log_tail(log)}")
        time.sleep(0.1)


#: what the model servers take from the endpoint's spec (request logging, batching)
SERVER_OPTIONS = ("log", "log_sample", "max_batch_size", "max_latency_ms")


def server_options(spec: dict) -> dict:
    return {k: spec.get(k) for k in SERVER_OPTIONS if spec.get(k) is not None}


def launch_server(job_dir: Path, name: str, version: dict, port: int | None = None, extra: bytes | None = None,
                  options: dict | None = None):  # fmt: skip
    """Spawn one KServe model server for ``version``: (process, info). See :func:`await_ready`."""
    folder = job_dir / "servers" / f"{version['ref'].replace(':', '-')}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    port = check_port_free(port) if port else free_port()
    config = {
        **(options or {}),
        "role": "predictor",
        "name": name,
        "version": version["ref"],
        "format": version["format"],
        "folder": version["folder"],
        "main_file": version.get("main_file"),
        "properties": version.get("properties") or {},
        "port": port,
        "dir": str(folder),
        "token": endpoint_token(job_dir),
    }
    (folder / server_mod.CONFIG).write_text(json.dumps(config, indent=1))
    if extra:
        (folder / "extra.pkl").write_bytes(extra)
    log = folder / "server.log"
    proc = _spawn("kfjupyter.serving.server", folder, log)
    info = {"role": "server", "version": version["ref"], "port": port, "dir": str(folder), "log": str(log),
            "url": f"http://127.0.0.1:{port}", "name": name, **_proc_info(proc)}
    return proc, info


def launch_component(job_dir: Path, name: str, role: str, component: dict, predictor_url: str, port: int | None = None,
                     **config) -> tuple:  # fmt: skip
    """Spawn the transformer or explainer server (``role``) of an endpoint, in front of
    ``predictor_url``: (process, info), awaited like a model server (:func:`await_ready`)."""
    folder = job_dir / "components" / role
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    bundle = job_dir / component["bundle"] if component.get("bundle") else None
    config = {**component, **config, "role": role, "name": name, "port": port, "dir": str(folder),
              "predictor_url": predictor_url, "token": endpoint_token(job_dir), "version": role,
              "bundle": str(bundle) if bundle else None}  # fmt: skip
    (folder / server_mod.CONFIG).write_text(json.dumps(config, indent=1))
    log = folder / "server.log"
    proc = _spawn("kfjupyter.serving.server", folder, log)
    info = {"role": role, "version": f"{role} {component.get('label') or component.get('kind')}", "port": port,
            "dir": str(folder), "log": str(log), "url": f"http://127.0.0.1:{port}", "name": name, **_proc_info(proc)}
    return proc, info


def await_ready(started: list, timeout: float = READY_TIMEOUT_S) -> list[dict]:
    """Wait until every started server's model is ready; on any failure stop them all."""
    try:
        for proc, info in started:
            job_dir = Path(info["dir"]).parent.parent
            what = f"the {info['version']}" if info["role"] in COMPONENTS else f"the model server for {info['version']}"
            _wait_ready(proc, info["port"], f"/v1/models/{info['name']}", endpoint_token(job_dir), Path(info["log"]),
                        what, timeout)
    except BaseException:
        for proc, info in started:
            stop_process(info)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        raise
    return [info for _, info in started]


def start_server(job_dir: Path, name: str, version: dict, port: int | None = None, extra: bytes | None = None,
                 timeout: float = READY_TIMEOUT_S, options: dict | None = None) -> dict:  # fmt: skip
    """Start one KServe model server for ``version`` and wait until the model is ready."""
    return await_ready([launch_server(job_dir, name, version, port=port, extra=extra, options=options)], timeout)[0]


def write_router_config(router_dir: Path, port: int, upstreams: list[dict], generation: int,
                        explainer: str | None = None) -> None:  # fmt: skip
    path = router_dir / router_mod.CONFIG
    tmp = path.with_suffix(".tmp")
    config = {"port": port, "generation": generation, "upstreams": upstreams, "token": endpoint_token(router_dir.parent),
              "explainer": explainer}  # fmt: skip
    tmp.write_text(json.dumps(config, indent=1))
    os.replace(tmp, path)


def start_router(job_dir: Path, upstreams: list[dict], port: int | None = None, timeout: float = 30.0,
                 explainer: str | None = None) -> dict:  # fmt: skip
    """The router in front of the servers: the canary split, and ``:explain`` to ``explainer``."""
    folder = job_dir / "router"
    folder.mkdir(parents=True, exist_ok=True)
    port = check_port_free(port) if port else free_port()
    write_router_config(folder, port, upstreams, 1, explainer)
    log = folder / "router.log"
    proc = _spawn("kfjupyter.serving.router", folder, log)
    info = {"role": "router", "port": port, "dir": str(folder), "log": str(log), "generation": 1,
            "url": f"http://127.0.0.1:{port}", "explainer": explainer, **_proc_info(proc)}
    try:
        _wait_ready(proc, port, "/kfjupyter/router", endpoint_token(job_dir), log, "the canary router", timeout)
    except BaseException:
        stop_process(info)
        proc.wait(timeout=10)
        raise
    return info


def set_traffic(router: dict, upstreams: list[dict], timeout: float = 10.0) -> dict:
    """Give the router a new split and wait until it serves it."""
    generation = router.get("generation", 1) + 1
    write_router_config(Path(router["dir"]), router["port"], upstreams, generation, router.get("explainer"))
    token = endpoint_token(Path(router["dir"]).parent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = http_get(router["port"], "/kfjupyter/router", token)
            if status == 200 and json.loads(body).get("generation") == generation:
                return {**router, "generation": generation}
        except OSError:
            pass
        time.sleep(0.05)
    raise BackendError(f"the canary router did not take the new traffic split within {timeout} s")


def upstream(server: dict, weight: float) -> dict:
    return {"url": server["url"], "version": server["version"], "weight": weight}


#: The roles of an endpoint's processes: its child tasks, and their log channels
#: (``server/primary`` …, selected by rank 0, 1 and -1 as ``Endpoint.logs(server=…)`` does).
ROLES = {"primary": 0, "canary": 1, "router": -1, "transformer": 2, "explainer": 3}
COMPONENTS = ("transformer", "explainer")


def _processes(info: dict) -> dict[str, dict]:
    """The endpoint's processes by role (a lone server is the primary)."""
    servers = info.get("servers") or []
    out = {("primary" if i == 0 else "canary"): s for i, s in enumerate(servers[:2])}
    for role in ("router", *COMPONENTS):
        if info.get(role):
            out[role] = info[role]
    return out


def _explainer_model(version: dict, explainer: dict) -> dict:
    """What a ready-made explainer loads itself: the model (and its training sample)."""
    if explainer.get("kind") != "shap":
        return {}
    return {k: version.get(k) for k in ("folder", "main_file", "format", "properties", "sample")}


def _hooks(job_dir: Path) -> bytes | None:
    from .api import HOOKS

    path = Path(job_dir) / HOOKS
    return path.read_bytes() if path.exists() else None


class LocalEndpointBackend(EngineBase):
    """The ``("endpoint", "local")`` engine: answers for endpoint job records. Its servers
    (primary, canary, the canary router) are the endpoint's child tasks."""

    kind = "endpoint"
    name = "local"
    features = Features(children=True)
    #: Kubeflow Model Registry records cluster deployments only
    runtime = None

    def serving_environment(self, info: dict) -> str | None:
        return None

    def url(self, info: dict) -> str | None:
        return info.get("url")

    def rolled_out(self, info: dict) -> bool:
        return True

    def submit(self, job_id: str, spec, job_dir: Path) -> dict:
        spec = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        extra = _hooks(job_dir)
        servers: list[dict] = []
        router = None
        started = []
        components: dict[str, dict] = {}
        if spec.get("port"):
            check_port_free(spec["port"])
        canary, transformer, explainer = spec.get("canary"), spec.get("transformer"), spec.get("explainer")
        # the process the user's URL reaches: the transformer, else the router (a canary split,
        # an explainer's :explain), else the one model server
        front = "transformer" if transformer else "router" if canary or explainer else "server"
        options = server_options(spec)
        try:
            # both versions start at once: a canary deploy takes one server's start-up time
            started.append(launch_server(job_dir, spec["name"], spec["version"],
                                         port=spec.get("port") if front == "server" else None, extra=extra,
                                         options=options))  # fmt: skip
            if canary:
                started.append(launch_server(job_dir, spec["name"], canary, extra=extra, options=options))
            servers = await_ready(started)
            explainer_port = free_port() if explainer else None
            explainer_url = f"http://127.0.0.1:{explainer_port}" if explainer else None
            if canary or front == "router":
                if canary:
                    servers[0]["role"] = "primary"
                    servers[1]["role"] = "canary"
                pct = spec["canary_percent"] if canary else 0
                ups = [upstream(servers[0], 100 - pct)] + ([upstream(servers[1], pct)] if canary else [])
                router = start_router(job_dir, ups, port=spec.get("port") if front == "router" else None,
                                      explainer=explainer_url if front == "router" else None)  # fmt: skip
            predictor_url = (router or servers[0])["url"]
            pending = []
            if explainer:
                pending.append(launch_component(job_dir, spec["name"], "explainer", explainer, predictor_url,
                                                port=explainer_port, **_explainer_model(spec["version"], explainer)))
            if transformer:
                pending.append(launch_component(job_dir, spec["name"], "transformer", transformer, predictor_url,
                                                port=check_port_free(spec["port"]) if spec.get("port") else None,
                                                explainer_url=explainer_url, **options))  # fmt: skip
            started += pending
            for info in await_ready(pending):
                components[info["role"]] = info
        except BaseException:
            for _, s in started:
                stop_process(s)
            stop_process(router)
            raise
        url = (components.get("transformer") or router or servers[0])["url"]
        info = {"url": url, "servers": servers, "router": router, "previous": None, **components}
        _sync_servers(job_id, info)
        return info

    # -- the job interface ---------------------------------------------------------------------
    def observe(self, job_id: str, info: dict, _again: bool = True) -> Observation:
        procs = list(info.get("servers") or []) + [info[r] for r in ("router", *COMPONENTS) if info.get(r)]
        dead = [p for p in procs if not alive(p.get("pid"), p.get("create_time"))]
        if dead and _again:
            # promote/rollback record the new servers before stopping the old ones: a caller
            # holding the record from before that sees a stopped server that is no longer in it
            from ..store.workspace import get_workspace

            current = get_workspace().get_job(job_id).backend_info or {}
            if current.get("servers") != info.get("servers") or current.get("router") != info.get("router"):
                return self.observe(job_id, current, _again=False)
        if dead:
            p = dead[0]
            what = ("the canary router" if p["role"] == "router" else f"the {p['role']}" if p["role"] in COMPONENTS
                    else f"the model server of {p['version']}")  # fmt: skip
            _sync_servers(job_id, info, failed={id(x) for x in dead})
            return Observation(st.FAILED, error=f"{what} stopped:\n{_log_tail(Path(p['log']))}")
        return Observation(st.RUNNING)

    def backfill_children(self, job_id: str, info: dict) -> None:
        _sync_servers(job_id, info)

    def channels(self, job_id: str, info: dict) -> Channels:
        return Channels(logs=tuple(Channel(f"server/{role}", role, rank=ROLES[role], child=role)
                                   for role in _processes(info)))  # fmt: skip

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop=None) -> Iterator[str]:  # fmt: skip
        """The log of one of the endpoint's processes (``server/primary``, ``server/canary``,
        ``server/router``)."""
        kind, _, role = channel.partition("/")
        p = _processes(info).get(role) if kind == "server" else None
        if not p:  # a server that was stopped (a promoted canary's old primary …): its log stays
            from ..store.workspace import ChildNotFoundError, get_workspace

            try:
                p = dict(get_workspace().get_child(job_id, role).attrs) if kind == "server" else None
            except ChildNotFoundError:
                p = None
            if not p or not p.get("log"):
                raise self.unknown_channel(job_id, channel, self.channels(job_id, info))
        path = Path(p["log"])
        if follow:
            return follow_file(path, lambda: not alive(p.get("pid"), p.get("create_time")), tail=tail, stop=stop)
        return iter(read_lines(path, tail))

    def cancel(self, job_id: str, info: dict) -> None:
        """Undeploy: stop the router and every server; the record reads Cancelled."""
        from ..store.workspace import get_workspace

        # Cancelled first: a status read while the processes stop must not take that for a failure
        get_workspace().update_job(job_id, only_if_active=True, status=st.CANCELLED, message="undeployed")
        for role in (*COMPONENTS, "router"):
            stop_process(info.get(role))
        for s in info.get("servers") or []:
            stop_process(s)
        _sync_servers(job_id, {}, previous=info)

    # -- canary control ---------------------------------------------------------------------------
    def promote(self, job_id: str, spec: dict, info: dict) -> tuple[dict, dict]:
        servers = info["servers"]
        primary, canary = servers[0], servers[1]
        router = set_traffic(info["router"], [upstream(canary, 100)])
        canary = {**canary, "role": "primary"}
        spec = {**spec, "previous": spec["version"], "version": spec["canary"], "canary": None, "canary_percent": 0}
        info = _record_switch(job_id, spec, {**info, "servers": [canary], "router": router})
        stop_process(primary)
        return spec, info

    def rollback(self, job_id: str, spec: dict, info: dict) -> tuple[dict, dict]:
        servers = info["servers"]
        if spec.get("canary"):
            router = set_traffic(info["router"], [upstream(servers[0], 100)])
            spec = {**spec, "canary": None, "canary_percent": 0}
            info = _record_switch(job_id, spec, {**info, "servers": servers[:1], "router": router})
            stop_process(servers[1])
            return spec, info
        # undo a promote: the previous version comes back up, then takes the traffic
        from ..store.workspace import get_workspace

        job_dir = get_workspace().job_dir(job_id)
        back = start_server(job_dir, spec["name"], spec["previous"], extra=_hooks(job_dir), options=server_options(spec))
        back["role"] = "primary"
        try:
            router = set_traffic(info["router"], [upstream(back, 100)])
        except BaseException:
            stop_process(back)
            raise
        spec = {**spec, "version": spec["previous"], "previous": spec["version"]}
        info = _record_switch(job_id, spec, {**info, "servers": [back], "router": router})
        for s in servers:
            stop_process(s)
        return spec, info


def _sync_servers(job_id: str, info: dict, failed: set[int] = frozenset(), previous: dict | None = None) -> None:
    """The endpoint's processes as its child tasks: those of ``info`` Running (or Failed),
    the others it had Cancelled (stopped)."""
    from ..store.workspace import get_workspace

    ws = get_workspace()
    now = _processes(info)
    rows = []
    for role, p in now.items():
        rows.append({"name": role, "kind": "server", "position": [*ROLES].index(role),
                     "status": st.FAILED if id(p) in failed else st.RUNNING,
                     "attrs": {k: p.get(k) for k in ("version", "port", "url", "pid", "create_time", "log")}})
    for record in ws.list_children(job_id, "server"):
        if record.name not in now and record.status not in st.TERMINAL:
            rows.append({"name": record.name, "kind": "server", "position": record.position, "status": st.CANCELLED})
    for role in _processes(previous or {}):
        if role not in now and not any(r["name"] == role for r in rows):
            rows.append({"name": role, "kind": "server", "position": [*ROLES].index(role), "status": st.CANCELLED})
    ws.sync_children(job_id, rows)


def _record_switch(job_id: str, spec: dict, info: dict) -> dict:
    """Record the servers now taking the traffic before the old ones stop, so that no
    status read in between takes a stopped server of the old set for a failure."""
    from ..store.workspace import get_workspace

    get_workspace().update_job(job_id, only_if_active=True, spec=spec, backend_info=info)
    _sync_servers(job_id, info)
    return info
