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


SAVING_CELL = """
import json, os
x = kfjupyter.param("x", low=-3.0, high=3.0)
with open(os.path.join(kfjupyter.output_dir(), "model.json"), "w") as fh:
    json.dump({"x": x}, fh)
kfjupyter.report(step=0, loss=(x - 1.0) ** 2)
"""


@async_test
async def test_register_best_through_the_server(jp_fetch):
    import kfjupyter

    bare = await tune(name="bare", trials=1)  # its trials save nothing: told what to do instead
    code, error = await error_of(jp_fetch, "studies", bare.id, "register-best", method="POST")
    assert code == 400 and "saved no files to kfjupyter.output_dir()" in error["message"]
    assert "retrain with the best" in error["message"]

    study = await blocking(kfjupyter.tune, SAVING_CELL, "loss", trials=2, algorithm="random", seed=0, name="saver",
                           user_ns={}, wait=True)  # fmt: skip
    response = await jp_fetch(API, "studies", study.id, "register-best", method="POST", body=json.dumps({"name": "regressor"}))
    assert response.code == 201
    version = json.loads(response.body)
    check_schema(version, "ModelVersion")
    best = await blocking(lambda: study.best_trial)
    assert version["ref"] == "regressor:1" and version["params"] == best["params"]
    assert version["lineage"]["study_id"] == study.id and version["custom_properties"]["trial"] == best["number"]

    for body, message in (({"name": ""}, "name must be a model name"), ({"nam": "x"}, "unknown field(s) nam")):
        response = await jp_fetch(API, "studies", study.id, "register-best", method="POST", body=json.dumps(body),
                                  raise_error=False)  # fmt: skip
        assert response.code == 400 and message in json.loads(response.body)["message"]
    code, error = await error_of(jp_fetch, "studies", "nope-00000", "register-best", method="POST")
    assert code == 404 and error["reason"] == "StudyNotFound"
