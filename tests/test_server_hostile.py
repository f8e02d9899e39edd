"""Ordinary bad input on the REST API answers 4xx with a message, never a 500: integers
past 64 bits, artifact file names that are not Latin-1 or hold CR/LF, notebook paths that
are huge, hold a NUL or pass through a link, JSON nested deeper than a parser recurses,
and links in a job's outputs or an artifact."""

from __future__ import annotations

import json
import os
import urllib.parse

from kfjupyter import registry

from server_support import *  # noqa: F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, blocking, check_schema

pytestmark = AUTH_WARNINGS_ARE_ERRORS

HUGE = (str(2**63), str(2**64), "9" * 40)


def register(tmp_path) -> None:
    folder = tmp_path / "art"
    folder.mkdir()
    (folder / "weights.txt").write_text("w\n")
    (folder / "模型.txt").write_text("unicode name\n")
    (folder / "a\r\nb.txt").write_text("crlf name\n")
    registry.register_model("iris", str(folder), framework="custom")


async def fetch(jp_fetch, *parts: str, method: str = "GET", body: bytes | None = None, **params):
    kwargs = {"body": body if body is not None else b""} if method == "POST" else {}
    return await jp_fetch(API, *parts, method=method, params=params, raise_error=False, request_timeout=60, **kwargs)


def error(response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    data = json.loads(response.body)
    assert set(data) >= {"message", "reason"}
    return data


@async_test
async def test_integers_past_64_bits_are_a_400_on_every_route_that_takes_one(jp_fetch, tmp_path):
    await blocking(register, tmp_path)
    queries = [
        (("jobs",), "offset"), (("jobs",), "limit"), (("studies",), "offset"), (("models",), "offset"),
        (("model-versions",), "offset"), (("models", "iris", "versions"), "offset"),
        (("endpoints", "x", "logs"), "tail"), (("endpoints", "x", "logs"), "server"),
    ]
    for parts, name in queries:
        for value in HUGE:
            response = await fetch(jp_fetch, *parts, **{name: value})
            assert response.code == 400, (parts, name, value, response.code, response.body)
            assert name in error(response)["message"]
    versions = [
        ("models", "iris", "versions", "{}"), ("models", "iris", "versions", "{}", "files"),
        ("models", "iris", "versions", "{}", "files", "weights.txt"),
    ]
    for template in versions:
        for value in HUGE:
            parts = [p.format(value) for p in template]
            response = await fetch(jp_fetch, *parts)
            assert response.code == 400, (parts, response.code, response.body)
            assert "version" in error(response)["message"]
    for verb in ("archive", "restore"):
        response = await fetch(jp_fetch, "models", "iris", "versions", HUGE[0], verb, method="POST", body=b"{}")
        assert response.code == 400, (verb, response.code, response.body)
    response = await fetch(jp_fetch, "studies", "s", "trials", HUGE[1], "log")
    assert response.code in (400, 404), response.body
    response = await fetch(jp_fetch, "jobs", "j", "logs", tail=HUGE[0])
    assert response.code == 400, response.body


@async_test
async def test_artifact_files_with_any_name_download_with_an_rfc_6266_header(jp_fetch, tmp_path):
    await blocking(register, tmp_path)
    files = json.loads((await fetch(jp_fetch, "models", "iris", "versions", "1", "files")).body)["files"]
    assert {f["path"] for f in files} == {"weights.txt", "模型.txt", "a\r\nb.txt"}
    for name, content in (("模型.txt", b"unicode name\n"), ("a\r\nb.txt", b"crlf name\n")):
        response = await fetch(jp_fetch, "models", "iris", "versions", "1", "files", name)  # jp_fetch quotes it
        assert response.code == 200, (name, response.code, response.body)
        assert response.body == content
        disposition = response.headers["Content-Disposition"]
        assert disposition.isascii() and "\r" not in disposition and "\n" not in disposition
        assert f"filename*=UTF-8''{urllib.parse.quote(name, safe='')}" in disposition
        assert disposition.startswith('attachment; filename="')


@async_test
async def test_a_huge_or_nul_notebook_path_is_refused_with_a_message(jp_fetch, jp_root_dir):
    for path in ("a" * 5000 + ".ipynb", "x\x00.ipynb", "d/" * 3000 + "n.ipynb"):
        for route, method in ((("pipelines", "compile"), "POST"), (("pipelines", "runs"), "POST")):
            body = json.dumps({"path": path}).encode()
            response = await fetch(jp_fetch, *route, method=method, body=body)
            assert response.code in (400, 404), (route, path[:20], response.code, response.body)
            assert error(response)["message"]
        for route in (("pipelines", "export"), ("pipelines", "runs")):
            response = await fetch(jp_fetch, *route, path=path)
            assert response.code in (400, 404), (route, path[:20], response.code, response.body)


@async_test
async def test_a_notebook_path_through_a_link_is_refused_naming_the_link(jp_fetch, jp_root_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "n.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    os.symlink(outside, jp_root_dir / "linked")
    os.symlink(outside / "n.ipynb", jp_root_dir / "direct.ipynb")
    for path in ("linked/n.ipynb", "direct.ipynb"):
        response = await fetch(jp_fetch, "pipelines", "compile", method="POST", body=json.dumps({"path": path}).encode())
        assert response.code == 400, (path, response.code, response.body)
        message = error(response)["message"]
        assert "link" in message and path.split("/")[0] in message, message


@async_test
async def test_json_nested_100000_deep_is_a_400_on_every_json_post(jp_fetch, tmp_path):
    await blocking(register, tmp_path)
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    routes = [
        ("models", "iris", "aliases", "production"), ("models", "iris", "versions", "1", "archive"),
        ("endpoints",), ("endpoints", "x", "predict"), ("pipelines", "compile"), ("pipelines", "runs"),
    ]
    for parts in routes:
        for body in (deep, deep_object):
            response = await fetch(jp_fetch, *parts, method="POST", body=body)
            assert response.code == 400, (parts, response.code, response.body[:200])
            assert "JSON" in error(response)["message"]
    check_schema(error(response), "Error")
