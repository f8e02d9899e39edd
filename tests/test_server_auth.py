"""Every route of the server extension is authenticated, authorised and in the OpenAPI file."""

from __future__ import annotations

import inspect
import json
import re
import urllib.parse
import warnings

import pytest
from jupyter_server.auth import Authorizer
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import JupyterServerAuthWarning
from tornado.routing import PathMatches
from tornado.web import RequestHandler

from server_support import *  # noqa: F403
from server_support import (
    API,
    AUTH_WARNINGS_ARE_ERRORS,
    async_test,
    blocking,
    openapi,
    openapi_operations,
    train,
    tune,
)

pytestmark = AUTH_WARNINGS_ARE_ERRORS

STREAMS = {"/events"}  # never end on their own: no with-token control request


def extension_routes(web_app) -> dict[str, type[RequestHandler]]:
    """URL regex → handler class of every route the extension registered."""
    found: dict[str, type[RequestHandler]] = {}

    def walk(rules) -> None:
        for rule in rules:
            target = rule.target
            if hasattr(target, "rules"):
                walk(target.rules)
            elif isinstance(rule.matcher, PathMatches) and inspect.isclass(target):
                if target.__module__.startswith("kfjupyter_server") or "kfjupyter/" in rule.matcher.regex.pattern:
                    found[rule.matcher.regex.pattern] = target

    walk(web_app.default_router.rules)
    walk(web_app.wildcard_router.rules)
    return found


def implemented_verbs(handler: type[RequestHandler]) -> set[str]:
    verbs = set()
    for verb in handler.SUPPORTED_METHODS:
        method = getattr(handler, verb.lower())
        if method is RequestHandler._unimplemented_method:
            continue
        if verb == "OPTIONS" and method is APIHandler.options:  # jupyter_server's CORS pre-flight
            continue
        verbs.add(verb)
    return verbs


def as_openapi_path(pattern: str, base_url: str) -> str:
    prefix = f"{base_url}{API}"
    assert pattern.startswith(prefix) and pattern.endswith("$"), pattern
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern[len(prefix) : -1])


def test_routes_match_the_openapi_file(jp_serverapp, jp_base_url):
    routes = extension_routes(jp_serverapp.web_app)
    served = {
        (as_openapi_path(pattern, jp_base_url), verb)
        for pattern, handler in routes.items()
        for verb in implemented_verbs(handler)
    }
    described = set(openapi_operations())
    assert served == described, f"only served: {served - described}; only described: {described - served}"
    assert len(described) >= 8
    spec = openapi()
    assert spec["openapi"].startswith("3.")
    for path, item in spec["paths"].items():
        for verb, op in item.items():
            assert "403" in op["responses"], (path, verb)
            params = set(re.findall(r"{(\w+)}", path))
            declared = {p["name"] for p in op.get("parameters", []) if "$ref" not in p} | {
                spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"]
                for p in op.get("parameters", [])
                if "$ref" in p
            }
            assert params <= declared, (path, verb)


def test_every_verb_is_authenticated_and_authorized(jp_serverapp):
    for pattern, handler in extension_routes(jp_serverapp.web_app).items():
        assert handler.auth_resource == "kfjupyter", handler
        assert jp_serverapp.web_app._check_handler_auth(pattern, handler) == []
        for verb in implemented_verbs(handler):
            outer = getattr(handler, verb.lower())
            assert outer.__code__.co_qualname.startswith("authenticated"), (handler, verb)
            inner = outer.__wrapped__
            assert inner.__code__.co_filename.replace("\\", "/").endswith("jupyter_server/auth/decorator.py"), (
                handler,
                verb,
                "not @authorized",
            )


def test_auth_warnings_fail_these_tests():
    with pytest.raises(JupyterServerAuthWarning):
        warnings.warn("undecorated", JupyterServerAuthWarning, stacklevel=1)


#: Request bodies of the POSTs that need one (the others send an empty body).
BODIES = {
    "/models/{model}/aliases/{alias}": b'{"version": 1}',
    "/endpoints": b'{"model": "authz-iris:1", "name": "authz-new"}',
    "/endpoints/{endpoint}/predict": b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
    "/pipelines/compile": b'{"path": "authz.ipynb"}',
    "/pipelines/runs": b'{"path": "authz.ipynb"}',
    # refused before anything starts (a papermill run would outlive the test)
    "/notebook-runs": b'{"path": "authz.ipynb", "sweep": {"a": [1]}, "max_parallel": 0}',
}
#: Query strings of the operations that need one.
QUERIES = {
    ("/pipelines/export", "GET"): "?path=authz.ipynb",
    ("/pipelines/runs", "GET"): "?path=authz.ipynb",
    ("/notebook-runs/parameters", "GET"): "?path=authz.ipynb",
    ("/runs/compare", "GET"): "?ids={job_id}&ids={run_id}",  # two tracked runs: the job and the pipeline run
}
#: The status of a request that gets through, when it is not 200.
ACCEPTED = {("/pipelines/runs", "POST"): 201, ("/runs/{run_id}/rerun", "POST"): 201,
            ("/studies/{study_id}/retrain-best", "POST"): 201,
            # authorized, then refused: the study's trials saved no files to register
            ("/studies/{study_id}/register-best", "POST"): 400,
            # the notebook-run routes, authorized, then refused: {job_id} is a train job
            ("/notebook-runs", "POST"): 400, ("/notebook-runs/{job_id}/results", "GET"): 404,
            ("/notebook-runs/{job_id}/output", "POST"): 404}
#: A registered model (see register_authz_model): version 1 gets the alias, version 2 is
#: archived and restored, its file "weights.txt" downloaded.
MODEL_PARAMS = {
    "{model}": "authz-model",
    "{version}": "2",
    "{alias}": "production",
    "{path}": "weights.txt",
    "{endpoint}": "authz-ep",
    "{step}": "a",
}


async def register_authz_model(tmp_path) -> None:
    from kfjupyter import registry

    weights = tmp_path / "weights.txt"
    weights.write_text("w = 1\n")
    for _ in range(2):
        await blocking(registry.register_model, "authz-model", str(weights), framework="custom")


async def deploy_authz_endpoint() -> None:
    """A real endpoint with a canary (so promote, then rollback, answer 200); undeployed last."""
    import kfjupyter
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    for _ in range(2):
        await blocking(kfjupyter.register_model, "authz-iris", model, framework="sklearn")
    await blocking(kfjupyter.deploy, "authz-iris:1", name="authz-ep", canary="authz-iris:2", canary_percent=50)


async def undeploy_all() -> None:
    from kfjupyter import serving

    for ep in await blocking(serving.list_endpoints):
        await blocking(ep.undeploy)


def ordered_operations() -> list[tuple[str, str]]:
    """The spec's operations, DELETEs last (undeploying the endpoint the others use)."""
    return sorted(openapi_operations(), key=lambda op: op[1] == "DELETE")


def body_of(path: str, verb: str) -> bytes | None:
    return BODIES.get(path, b"") if verb == "POST" else None


def operation_url(base_url: str, path: str, job_id: str, study_id: str, run_id: str = "", verb: str = "GET") -> str:
    """The URL of an operation on a real job, a real study and its trial 0, a real model,
    a real pipeline run of the notebook authz.ipynb (see run_authz_pipeline)."""
    filled = path.replace("{job_id}", job_id).replace("{study_id}", study_id).replace("{number}", "0")
    filled = filled.replace("{run_id}", run_id)
    for name, value in MODEL_PARAMS.items():
        filled = filled.replace(name, value)
    assert "{" not in filled, f"operation_url: fill in the path parameters of {path}"
    query = QUERIES.get((path, verb), "").replace("{job_id}", job_id).replace("{run_id}", run_id)
    return f"{base_url}{API}{filled}{query}"


async def run_authz_pipeline(root_dir) -> str:
    """authz.ipynb (one step "a") in the server's root, and a finished local run of it."""
    import kfjupyter.pipelines as kp

    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {"tags": ["step:a"]},
                   "outputs": [], "source": "print('authz step')"}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    (root_dir / "authz.ipynb").write_text(json.dumps(nb))
    run = await blocking(kp.run_pipeline, str(root_dir / "authz.ipynb"))
    await blocking(run.wait, 60)
    return run.id


async def wait_pipeline_runs() -> None:
    """Let the runs the requests started finish (no process may outlive the test)."""
    from kfjupyter import jobs

    for job in await blocking(jobs.list, kind="pipeline"):
        await blocking(job.wait, 60)


@async_test
async def test_every_operation_refuses_requests_without_the_token(
    jp_fetch, http_server_client, jp_base_url, jp_auth_header, tmp_path, jp_root_dir
):
    job = await train("print('hi')", name="authz", wait=True)  # a real job: a refusal is not a 404
    study = await tune("authz")  # a real study with a trial 0
    await register_authz_model(tmp_path)  # a real model: its versions, alias and file
    await deploy_authz_endpoint()  # a real endpoint
    run_id = await run_authz_pipeline(jp_root_dir)  # a real pipeline run
    try:
        await refused_then_accepted(http_server_client, jp_base_url, jp_auth_header, job, study, run_id)
    finally:
        await undeploy_all()
        await wait_pipeline_runs()


async def refused_then_accepted(http_server_client, jp_base_url, jp_auth_header, job, study, run_id) -> None:
    operations = ordered_operations()
    assert operations
    for path, verb in operations:
        url = operation_url(jp_base_url, path, job.id, study.id, run_id, verb)
        body = body_of(path, verb)
        for headers in ({}, {"Authorization": "token wrong-token"}, {"Authorization": "Bearer nope"}):
            response = await http_server_client.fetch(
                url, method=verb, headers=headers, body=body, raise_error=False, follow_redirects=False, request_timeout=10
            )
            assert response.code in (401, 403), (verb, path, headers, response.code)
            assert response.headers["Content-Type"].startswith("application/json"), (verb, path)
            assert "message" in json.loads(response.body), (verb, path)
        if path not in STREAMS:  # the same request with the token gets through
            response = await http_server_client.fetch(
                url, method=verb, headers=dict(jp_auth_header), body=body, raise_error=False, request_timeout=60
            )
            assert response.code == ACCEPTED.get((path, verb), 200), (verb, path, response.code, response.body[:200])


# -- authorisation: the authorizer is asked about resource "kfjupyter" -------------------------
class RecordingAuthorizer(Authorizer):
    asked: list[tuple[str, str, str]] = []
    deny: set[str] = set()

    def is_authorized(self, handler, user, action, resource):
        if resource == "kfjupyter":
            RecordingAuthorizer.asked.append((handler.request.method, action, handler.request.path))
        return resource not in RecordingAuthorizer.deny


@pytest.fixture
def recording_authorizer(jp_server_config):
    RecordingAuthorizer.asked = []
    RecordingAuthorizer.deny = set()
    jp_server_config["ServerApp"]["authorizer_class"] = RecordingAuthorizer
    return RecordingAuthorizer


@async_test
async def test_the_authorizer_decides_every_operation(
    recording_authorizer, jp_fetch, http_server_client, jp_base_url, jp_auth_header, tmp_path, jp_root_dir
):
    job = await train("print('hi')", name="authz", wait=True)
    study = await tune("authz")
    await register_authz_model(tmp_path)
    await deploy_authz_endpoint()
    run_id = await run_authz_pipeline(jp_root_dir)
    try:
        await authorizer_decides(recording_authorizer, http_server_client, jp_base_url, jp_auth_header, job, study, run_id)
    finally:
        await undeploy_all()
        await wait_pipeline_runs()


async def authorizer_decides(recording_authorizer, http_server_client, jp_base_url, jp_auth_header, job, study, run_id) -> None:
    operations = [(p, v) for p, v in ordered_operations() if p not in STREAMS]
    for path, verb in operations:
        response = await http_server_client.fetch(
            operation_url(jp_base_url, path, job.id, study.id, run_id, verb),
            method=verb,
            headers=dict(jp_auth_header),
            body=body_of(path, verb),
            raise_error=False,
            request_timeout=60,
        )
        assert response.code == ACCEPTED.get((path, verb), 200), (verb, path, response.code)
    expected_actions = {"GET": "read", "POST": "write", "DELETE": "write"}
    asked = {(method, urllib.parse.unquote(url)) for method, _, url in recording_authorizer.asked}
    for path, verb in operations:
        url = operation_url(jp_base_url, path, job.id, study.id, run_id, verb).split("?", 1)[0]
        assert (verb, urllib.parse.unquote(url)) in asked, (verb, path)
    assert all(action == expected_actions[method] for method, action, _ in recording_authorizer.asked)

    recording_authorizer.deny = {"kfjupyter"}  # a user without the right to kfjupyter
    for path, verb in openapi_operations():
        response = await http_server_client.fetch(
            operation_url(jp_base_url, path, job.id, study.id, run_id, verb),
            method=verb,
            headers=dict(jp_auth_header),
            body=body_of(path, verb),
            raise_error=False,
            request_timeout=10,
        )
        assert response.code == 403, (verb, path)
        assert json.loads(response.body)["reason"] == "Forbidden"


# -- XSRF: a browser's cookie alone can't cancel a job --------------------------------------------
def cookies_of(response) -> dict[str, str]:
    jar = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0].strip().strip('"')
    return jar


def cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f'{k}="{v}"' if "|" in v else f"{k}={v}" for k, v in jar.items())


@async_test
async def test_post_with_the_login_cookie_needs_the_xsrf_token(jp_fetch, http_server_client, jp_base_url, jp_serverapp):
    job = await train("print('hi')", name="xsrf", wait=True)
    login = f"{jp_base_url}login"
    page = await http_server_client.fetch(login, raise_error=False, follow_redirects=False)
    jar = cookies_of(page)
    assert "_xsrf" in jar
    token = jp_serverapp.identity_provider.token
    response = await http_server_client.fetch(
        login,
        method="POST",
        body=urllib.parse.urlencode({"password": token, "_xsrf": jar["_xsrf"]}),
        headers={"Cookie": cookie_header(jar)},
        raise_error=False,
        follow_redirects=False,
    )
    assert response.code == 302, response.body
    jar.update(cookies_of(response))
    assert any(name.startswith("username-") for name in jar)
    cancel = f"{jp_base_url}{API}/jobs/{job.id}/cancel"

    # the cookie authenticates a GET …
    ok = await http_server_client.fetch(f"{jp_base_url}{API}/jobs/{job.id}", headers={"Cookie": cookie_header(jar)})
    assert json.loads(ok.body)["id"] == job.id
    # … but a POST without the XSRF token is refused
    refused = await http_server_client.fetch(
        cancel, method="POST", body=b"", headers={"Cookie": cookie_header(jar)}, raise_error=False
    )
    assert refused.code == 403
    # with it, the POST goes through
    accepted = await http_server_client.fetch(
        cancel, method="POST", body=b"", headers={"Cookie": cookie_header(jar), "X-XSRFToken": jar["_xsrf"]}, raise_error=False
    )
    assert accepted.code == 200, accepted.body
    assert json.loads(accepted.body)["id"] == job.id
