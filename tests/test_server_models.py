"""The server extension's model-registry routes (``/models…``) against a real embedded registry."""

from __future__ import annotations

import json

from kfjupyter import registry
from kfjupyter.registry.base import current_user

from server_support import *  # noqa: F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, blocking, check_schema, error_of, get_json

pytestmark = AUTH_WARNINGS_ARE_ERRORS


def register_all(tmp_path) -> None:
    """iris v1..v3 (sklearn-ish custom files, accuracy rising), digits v1..v2, 12 small models."""
    folder = tmp_path / "art"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.txt").write_text("iris weights\n")
    (folder / "sub" / "config.json").write_text('{"layers": 2}')
    for i, acc in enumerate([0.81, 0.9, 0.95]):
        registry.register_model("iris", str(folder), framework="custom", metrics={"accuracy": acc, "loss": 1 - acc},
                                description=f"iris run {i}")  # fmt: skip
    for acc in (0.7, 0.99):
        registry.register_model("digits", str(folder / "weights.txt"), framework="custom", metrics={"accuracy": acc})
    for i in range(12):
        registry.register_model(f"bulk-{i:02d}", str(folder / "weights.txt"), framework="custom", metrics={"accuracy": 0.5})


async def post(jp_fetch, *parts: str, body: dict | None = None):
    return await jp_fetch(API, *parts, method="POST", body=json.dumps(body or {}).encode(), raise_error=False)


@async_test
async def test_models_listed_searched_paged_and_filtered(jp_fetch, tmp_path, http_server_client, jp_base_url, jp_auth_header):
    await blocking(register_all, tmp_path)
    page = await get_json(jp_fetch, "models", limit=5)
    check_schema(page, "ModelList")
    assert (page["total"], page["offset"], page["limit"], page["next_offset"]) == (14, 0, 5, 5)
    assert len(page["items"]) == 5
    rest = await get_json(jp_fetch, "models", limit=50, offset=5)
    assert len(rest["items"]) == 9 and rest["next_offset"] is None
    names = {m["name"] for m in page["items"] + rest["items"]}
    assert len(names) == 14 and {"iris", "digits"} <= names

    found = await get_json(jp_fetch, "models", q="IRI")
    assert [m["name"] for m in found["items"]] == ["iris"]
    iris = found["items"][0]
    assert iris["latest_version"] == 3 and iris["version_count"] == 3 and iris["frameworks"] == ["custom"]

    by_name = await get_json(jp_fetch, "models", order_by="name", descending="false", limit=2)
    assert [m["name"] for m in by_name["items"]] == ["bulk-00", "bulk-01"]

    # metric ranges: models with a version in every range
    good = await get_json(jp_fetch, "models", metric="accuracy>=0.94", order_by="name", descending="false")
    check_schema(good, "ModelList")
    assert [m["name"] for m in good["items"]] == ["digits", "iris"] and good["total"] == 2
    query = "metric=accuracy%3E%3D0.9&metric=loss%3C%3D0.06"  # repeated: every range holds
    both = await http_server_client.fetch(f"{jp_base_url}{API}/models?{query}", headers=dict(jp_auth_header))
    assert [m["name"] for m in json.loads(both.body)["items"]] == ["iris"]

    assert (await error_of(jp_fetch, "models", metric="accuracy>>1"))[0] == 400
    assert (await error_of(jp_fetch, "models", limit=0))[0] == 400
    assert (await error_of(jp_fetch, "models", order_by="size"))[0] == 400
    assert (await error_of(jp_fetch, "models", "nope"))[0] == 404


@async_test
async def test_versions_aliases_history_archive_restore(jp_fetch, tmp_path):
    await blocking(register_all, tmp_path)
    versions = await get_json(jp_fetch, "models", "iris", "versions", limit=2)
    check_schema(versions, "VersionList")
    assert [v["number"] for v in versions["items"]] == [3, 2] and versions["total"] == 3 and versions["next_offset"] == 2
    assert versions["items"][0]["metrics"] == {"accuracy": 0.95, "loss": 1 - 0.95}
    ranged = await get_json(jp_fetch, "models", "iris", "versions", metric="accuracy=0.85..0.92")
    assert [v["number"] for v in ranged["items"]] == [2]
    assert (await error_of(jp_fetch, "models", "nope", "versions"))[0] == 404

    one = await get_json(jp_fetch, "models", "iris", "versions", "1")
    check_schema(one, "ModelVersion")
    assert one["ref"] == "iris:1" and one["description"] == "iris run 0"
    assert (await error_of(jp_fetch, "models", "iris", "versions", "9"))[0] == 404

    # set, then move an alias; the history keeps both moves
    response = await post(jp_fetch, "models", "iris", "aliases", "production", body={"version": 1})
    assert response.code == 200 and json.loads(response.body)["aliases"] == ["production"]
    response = await post(jp_fetch, "models", "iris", "aliases", "production", body={"version": 2, "reason": "better"})
    moved = json.loads(response.body)
    check_schema(moved, "ModelVersion")
    assert moved["number"] == 2 and moved["aliases"] == ["production"]
    aliases = await get_json(jp_fetch, "models", "iris", "aliases")
    check_schema(aliases, "AliasHistory")
    assert aliases["aliases"] == {"production": 2}
    assert [(e["from_version"], e["to_version"]) for e in aliases["history"]] == [(None, 1), (1, 2)]
    assert aliases["history"][1]["reason"] == "better" and aliases["history"][1]["at"]
    # the token's anonymous Jupyter user is no name: the server's user is recorded, as in Python
    assert aliases["history"][1]["who"] == current_user()
    assert (await get_json(jp_fetch, "models", "iris"))["aliases"] == {"production": 2}
    only = await get_json(jp_fetch, "models", "iris", "versions", alias="production")
    assert [v["number"] for v in only["items"]] == [2]

    for bad in ({}, {"version": True}, {"version": None}):
        assert (await post(jp_fetch, "models", "iris", "aliases", "production", body=bad)).code == 400
    assert (await post(jp_fetch, "models", "iris", "aliases", "Bad Alias!", body={"version": 1})).code == 400
    assert (await post(jp_fetch, "models", "iris", "aliases", "production", body={"version": 7})).code == 404
    not_json = await jp_fetch(API, "models", "iris", "aliases", "x", method="POST", body=b"{", raise_error=False)
    assert not_json.code == 400

    # archive: refused while an alias points at it, forced removes the alias (recorded)
    refused = await post(jp_fetch, "models", "iris", "versions", "2", "archive")
    assert refused.code == 409 and json.loads(refused.body)["reason"] == "Conflict"
    archived = await post(jp_fetch, "models", "iris", "versions", "1", "archive")
    assert archived.code == 200 and json.loads(archived.body)["state"] == "ARCHIVED"
    live = await get_json(jp_fetch, "models", "iris", "versions", state="LIVE")
    assert [v["number"] for v in live["items"]] == [3, 2]
    restored = await post(jp_fetch, "models", "iris", "versions", "1", "restore")
    assert json.loads(restored.body)["state"] == "LIVE"
    forced = await post(jp_fetch, "models", "iris", "versions", "2", "archive", body={"force": True})
    assert json.loads(forced.body)["state"] == "ARCHIVED" and json.loads(forced.body)["aliases"] == []
    history = (await get_json(jp_fetch, "models", "iris", "aliases", alias="production"))["history"]
    assert [(e["from_version"], e["to_version"]) for e in history] == [(None, 1), (1, 2), (2, None)]

    # versions of every model: metric ranges, sorted by a metric, filters
    best = await get_json(jp_fetch, "model-versions", metric="accuracy>=0.9", order_by="metric:accuracy")
    check_schema(best, "VersionList")
    assert [v["ref"] for v in best["items"]] == ["digits:2", "iris:3", "iris:2"]  # archived ones too
    live = await get_json(jp_fetch, "model-versions", metric="accuracy>=0.9", state="LIVE", order_by="metric:accuracy")
    assert [v["ref"] for v in live["items"]] == ["digits:2", "iris:3"]
    assert (await get_json(jp_fetch, "model-versions", q="digits", limit=1))["total"] == 2
    assert (await get_json(jp_fetch, "model-versions", state="ARCHIVED"))["total"] == 1
    assert (await error_of(jp_fetch, "model-versions", order_by="size"))[0] == 400


@async_test
async def test_artifact_files_download_and_traversal_refused(jp_fetch, tmp_path, http_server_client, jp_base_url, jp_auth_header):
    await blocking(register_all, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    listing = await get_json(jp_fetch, "models", "iris", "versions", "3", "files")
    check_schema(listing, "ArtifactFiles")
    assert sorted(f["path"] for f in listing["files"]) == ["sub/config.json", "weights.txt"]

    response = await jp_fetch(API, "models", "iris", "versions", "3", "files", "sub", "config.json")
    assert response.code == 200 and response.body == b'{"layers": 2}'
    assert response.headers["Content-Disposition"] == "attachment; filename=\"config.json\"; filename*=UTF-8''config.json"
    assert (await jp_fetch(API, "models", "iris", "versions", "latest-not", "files", raise_error=False)).code == 404

    base = f"{jp_base_url}{API}/models/iris/versions/3/files/"
    attempts = [
        "../../../../secret.txt",
        "sub/../../weights.txt",
        "%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "%2E%2E%2F%2E%2E%2Fsecret.txt",
        "..%2f..%2f..%2fsecret.txt",
        "%252e%252e%252fsecret.txt",
        "/" + str(secret),
        "%2F" + str(secret).lstrip("/").replace("/", "%2F"),
        "sub%5C..%5C..%5Csecret.txt",
        "weights.txt%00.png",
        "./weights.txt",
        "~/secret.txt",
        "nothing-here.txt",
    ]
    for attempt in attempts:
        response = await http_server_client.fetch(
            base + attempt, headers=dict(jp_auth_header), raise_error=False, follow_redirects=False
        )
        assert response.code in (400, 404), (attempt, response.code)
        assert b"TOP SECRET" not in response.body and b"iris weights" not in response.body, attempt
    # the refusals say why
    code, err = await error_of(jp_fetch, "models", "iris", "versions", "3", "files", "..", "x")
    assert code in (400, 404)
    response = await http_server_client.fetch(
        base + "%2e%2e%2fsecret.txt", headers=dict(jp_auth_header), raise_error=False
    )
    assert response.code == 400 and json.loads(response.body)["reason"] == "PathRefused"
