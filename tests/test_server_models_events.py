"""The Models panel's server side: ``event: model`` on ``GET /events`` when the registry
changes (from any process), and a version's ``servable`` (Deploy's preflight) in its JSON."""

from __future__ import annotations

import pytest

from kfjupyter import registry

from server_support import *  # noqa: F403
from server_support import AUTH_WARNINGS_ARE_ERRORS, async_test, blocking, check_schema, get_json

pytestmark = AUTH_WARNINGS_ARE_ERRORS


@async_test
async def test_a_registration_is_an_event_model(jp_fetch, event_stream):
    stream = event_stream("events")
    await stream.until(lambda s: "connected" in s.comments)
    await stream.until(lambda s: "keepalive" in s.comments)  # the watcher has read the marker by now
    assert not [e for e, _ in stream.events if e == "model"]
    await blocking(registry.register_model, "m", {"a": 1}, framework="custom")
    first = await stream.until(lambda s: [d for e, d in s.events if e == "model"], timeout=15)
    assert "marker" in first[0]
    await blocking(registry.set_alias, "m", "production", 1)
    await stream.until(lambda s: len([d for e, d in s.events if e == "model"]) >= 2, timeout=15)
    # no repeats while nothing changes
    count = len(stream.events)
    await stream.until(lambda s: s.comments.count("keepalive") >= 3)
    assert len([e for e, _ in stream.events[count:] if e == "model"]) == 0


@async_test
async def test_versions_say_whether_deploy_can_work(jp_fetch, tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    await blocking(registry.register_model, "quick", str(path))
    await blocking(registry.register_model, "quick", torch.nn.Linear(4, 2))
    page = await get_json(jp_fetch, "models", "quick", "versions")
    check_schema(page, "VersionList")
    by_number = {v["number"]: v for v in page["items"]}
    assert by_number[2]["servable"] == {"ok": True}
    refused = by_number[1]["servable"]
    assert refused["ok"] is False and refused["needs"] == "model_class" and "state dict" in refused["reason"]
    one = await get_json(jp_fetch, "models", "quick", "versions", "1")
    assert one["servable"] == refused
