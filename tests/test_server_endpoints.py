"""REST of serving (/endpoints…): deploy a registered scikit-learn model, list it, predict
through the server (V1 and V2), logs, promote/rollback of a canary, bad input, undeploy."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("kserve")
pytest.importorskip("sklearn")

import kfjupyter  # noqa: E402
from kfjupyter import serving  # noqa: E402

from conftest import processes_of  # noqa: E402
from server_support import *  # noqa: E402,F403
from server_support import API, AUTH_WARNINGS_ARE_ERRORS, async_test, blocking, check_schema, error_of, get_json  # noqa: E402

pytestmark = AUTH_WARNINGS_ARE_ERRORS

ROW = [5.1, 3.5, 1.4, 0.2]


def register_iris() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    kfjupyter.register_model("iris", model, framework="sklearn")  # iris:1
    kfjupyter.registry.set_alias("iris", "production", 1)
    kfjupyter.register_model("iris", model, framework="sklearn")  # iris:2


async def post(jp_fetch, *parts: str, body: object, **params) -> tuple[int, dict]:
    response = await jp_fetch(
        API, *parts, method="POST", body=json.dumps(body), params=params, raise_error=False, request_timeout=60
    )
    return response.code, json.loads(response.body)


@async_test
async def test_deploy_predict_canary_logs_undeploy(jp_fetch, workspace):
    await blocking(register_iris)
    try:
        code, ep = await post(jp_fetch, "endpoints", body={"model": "iris@production", "name": "iris",
                                                           "canary": "iris:2", "canary_percent": 30})
        assert code == 200, ep
        check_schema(ep, "Endpoint")
        assert ep["status"] == "Running" and ep["url"].startswith("http://127.0.0.1:")
        assert ep["versions"] == {"iris:1": 70, "iris:2": 30} and ep["canary_percent"] == 30

        listed = await get_json(jp_fetch, "endpoints")
        check_schema(listed, "EndpointList")
        assert [e["id"] for e in listed["items"]] == [ep["id"]]
        assert (await get_json(jp_fetch, "endpoints", "iris"))["id"] == ep["id"]  # by name
        assert (await get_json(jp_fetch, "endpoints", ep["id"]))["name"] == "iris"  # by id

        code, answer = await post(jp_fetch, "endpoints", "iris", "predict", body={"instances": [ROW]})
        assert code == 200, answer
        check_schema(answer, "Prediction")
        assert answer["response"]["predictions"] == [0] and answer["version"] in ("iris:1", "iris:2")
        code, answer = await post(jp_fetch, "endpoints", "iris", "predict", body=[ROW])  # a bare list
        assert code == 200 and answer["response"] == [0]  # a list in: the predictions out
        v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
        code, answer = await post(jp_fetch, "endpoints", "iris", "predict", body=v2, protocol="v2")
        assert code == 200, answer
        assert answer["protocol"] == "v2" and answer["response"]["outputs"][0]["data"] == [0]

        # the model refuses a payload of the wrong shape: 422 with its message
        code, err = await post(jp_fetch, "endpoints", "iris", "predict", body={"instances": [[1.0, 2.0]]})
        assert code == 422 and err["reason"] == "PredictionRefused", err
        assert (await error_of(jp_fetch, "endpoints", "iris", "predict", method="POST"))[0] == 400  # no body
        code, err = await post(jp_fetch, "endpoints", "iris", "predict", body={"instances": [ROW]}, protocol="v9")
        assert code == 400

        logs = await get_json(jp_fetch, "endpoints", "iris", "logs")
        check_schema(logs, "EndpointLogs")
        assert "iris:1" in logs["text"]

        code, ep = await post(jp_fetch, "endpoints", "iris", "promote", body={})
        assert code == 200 and ep["versions"] == {"iris:2": 100}, ep
        code, ep = await post(jp_fetch, "endpoints", "iris", "rollback", body={})
        assert code == 200 and ep["versions"] == {"iris:1": 100}, ep
        code, err = await post(jp_fetch, "endpoints", "iris", "promote", body={})
        assert code == 400 and "no canary" in err["message"]

        # a second endpoint by the same name is refused while the first serves
        code, err = await post(jp_fetch, "endpoints", body={"model": "iris:1", "name": "iris"})
        assert code == 400 and "already deployed" in err["message"]

        response = await jp_fetch(API, "endpoints", "iris", method="DELETE", request_timeout=60)
        gone = json.loads(response.body)
        assert response.code == 200 and gone["status"] == "Cancelled"
        assert not processes_of(workspace) or all(not p.is_running() for p in processes_of(workspace))
        code, err = await post(jp_fetch, "endpoints", "iris", "predict", body={"instances": [ROW]})
        assert code == 409 and err["reason"] == "NotDeployed", err
        assert err["message"].startswith("endpoint iris is not deployed: it is Cancelled"), err
    finally:
        for ep in await blocking(serving.list_endpoints):
            await blocking(ep.undeploy)


@async_test
async def test_bad_requests(jp_fetch):
    await blocking(register_iris)
    assert (await error_of(jp_fetch, "endpoints", "nope"))[0] == 404
    assert (await error_of(jp_fetch, "endpoints", "nope", "logs"))[0] == 404
    code, err = await post(jp_fetch, "endpoints", body={"model": "ghost@production"})
    assert code == 404 and err["reason"] == "ModelNotFound", err
    code, err = await post(jp_fetch, "endpoints", body={"model": "iris:1", "canary": "iris:2", "canary_percent": 150})
    assert code == 400, err
    code, err = await post(jp_fetch, "endpoints", body={"name": "x"})
    assert code == 400 and "model" in err["message"]
    code, err = await post(jp_fetch, "endpoints", body={"model": "iris:1", "port": 80})
    assert code == 400 and "unknown fields: port" in err["message"]
    code, err = await post(jp_fetch, "endpoints", body={"model": "iris:1", "name": "Bad_Name"})
    assert code == 400, err
    assert (await blocking(serving.list_endpoints)) == []
