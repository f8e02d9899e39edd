"""The study routes for analysis and follow-ups: importances, retrain with the best params."""

from __future__ import annotations

import json

from kfjupyter import status as st

from server_support import *  # noqa: F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, blocking, check_schema, error_of, get_json, tune

pytestmark = AUTH_WARNINGS_ARE_ERRORS


@async_test
async def test_importances_and_retrain_best_through_the_server(jp_fetch):
    few = await tune(name="few", trials=1)
    data = await get_json(jp_fetch, "studies", few.id, "importances")
    assert data["importances"] == {} and "at least 3 complete trials" in data["message"]

    study = await tune(name="many", trials=4, parallel=2)
    data = await get_json(jp_fetch, "studies", study.id, "importances")
    assert data["message"] is None and data["trials"] == 4 and list(data["importances"]) == ["x"]
    assert data["importances"]["x"] == 1.0

    response = await jp_fetch(API, "studies", study.id, "retrain-best", method="POST", body=b"")
    assert response.code == 201
    job = json.loads(response.body)
    check_schema(job, "Job")
    assert job["kind"] == "train" and job["name"] == "many-best"
    import kfjupyter

    done = await blocking(lambda: kfjupyter.Job(job["id"]).wait(timeout=60))
    assert done.status == st.SUCCEEDED

    code, error = await error_of(jp_fetch, "studies", "nope-00000", "importances")
    assert code == 404 and error["reason"] == "StudyNotFound"
    code, error = await error_of(jp_fetch, "studies", "nope-00000", "retrain-best", method="POST")
    assert code == 404
