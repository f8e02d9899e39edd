"""Kubeflow Pipelines v2: the compiled IR (loaded back with the kfp SDK) and runs through
the KFP REST API against a fake KFP server (tests/fake_kfp.py)."""

from __future__ import annotations

import hashlib
import os
import json
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from fake_kfp import FakeKFP, kfp_server  # noqa: F401
from kfjupyter import status as st
from kfjupyter.errors import BackendError, InvalidOptionError
from kfjupyter.pipelines.kfp import DEFAULT_IMAGE, KFPCompileError, compile_kfp, runtime_parameters
from kfjupyter.pipelines.spec import PipelineSpec
from kfjupyter.pipelines.kubernetes import KFPEndpointError, KFPPipelineBackend, validate_body
from kfjupyter.pipelines.model import Edge, Parameter, Pipeline, Step

pytest.importorskip("kfp")
from google.protobuf import json_format  # noqa: E402
from kfp import components  # noqa: E402
from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: E402

DEMO = REPO / "notebooks" / "pipeline_demo.ipynb"
NASTY = "x'; import os; os.system(\"echo pwned\") #\"\"\" {{$.inputs.parameters['seed']}}"


def load_ir(text: str) -> dict:
    """The IR as a dict, after checking it loads with the kfp SDK and parses as the proto."""
    doc = yaml.safe_load(text)
    json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())  # unknown fields refused
    loaded = components.load_component_from_text(text)
    assert loaded.component_spec.implementation.graph is not None
    return doc


def executor(doc: dict, task: str) -> dict:
    comp = doc["components"][doc["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    return doc["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]


def hand_made() -> Pipeline:
    """load → (train, report: explicit prev without data) with every mapping in play."""
    steps = {
        "load": Step(name="load", cells=[1], source="data = [1, 2, 3]", image="python:3.12-slim",
                     outputs=["data"], parameters=["note"], program="data = [len(note), 2, 3]\n"),
        "train": Step(name="train", cells=[2], source="model = sum(data) * lr", limits={"cpu": "2", "memory": "4Gi",
                      "nvidia.com/gpu": "1"}, cache=False, inputs={"data": "load"}, outputs=["model"],
                      parameters=["lr"], program="model = sum(data) * lr\nprint('model', model)\n"),
        "report": Step(name="report", cells=[3], source="print('done')", prev=["load"], program="print('done', note)\n",
                       parameters=["note"]),
        "score": Step(name="score", cells=[4], source="acc = model / 10", inputs={"model": "train"},
                      outputs=["acc"], metrics=["acc"], program="acc = model / 10\n"),
    }  # fmt: skip
    edges = [Edge("load", "train", ("data",)), Edge("load", "report", (), True), Edge("train", "score", ("model",))]
    params = {"lr": Parameter("lr", "float", 0.5), "note": Parameter("note", "str", NASTY),
              "sizes": Parameter("sizes", "json", [1, 2])}  # fmt: skip
    return Pipeline(name="Hand_Made", steps=steps, edges=edges, parameters=params, metrics=["acc"])


# --------------------------------------------------------------------------- compile


def test_the_demo_notebook_compiles_to_ir_that_kfp_loads_one_component_per_step(tmp_path):
    from kfjupyter.pipelines import from_notebook

    pipeline = from_notebook(DEMO)
    text = compile_kfp(pipeline, tmp_path / "demo.yaml")
    assert (tmp_path / "demo.yaml").read_text() == text
    doc = load_ir(text)
    tasks = doc["root"]["dag"]["tasks"]
    assert sorted(t["taskInfo"]["name"] for t in tasks.values()) == sorted(pipeline.steps)
    assert len(doc["components"]) == len(pipeline.steps) == len(doc["deploymentSpec"]["executors"])
    # typed pipeline inputs with the notebook's defaults, each passed only to its readers
    inputs = doc["root"]["inputDefinitions"]["parameters"]
    types = {"int": "NUMBER_INTEGER", "float": "NUMBER_DOUBLE", "str": "STRING", "bool": "BOOLEAN", "json": "STRING"}
    assert {n: (d["parameterType"], d["defaultValue"]) for n, d in inputs.items()} == {
        p.name: (types[p.type], p.default) for p in pipeline.parameters.values()  # names as written (C stays C)
    }
    for key, task in tasks.items():
        step = pipeline.steps[task["taskInfo"]["name"]]
        given = {n: s["componentInputParameter"] for n, s in task.get("inputs", {}).get("parameters", {}).items()}
        assert given == {p: p for p in step.parameters}
        arts = task.get("inputs", {}).get("artifacts", {})
        assert {n: a["taskOutputArtifact"]["producerTask"] for n, a in arts.items()} == {
            n: s for n, s in step.inputs.items()
        }
        container = executor(doc, key)
        assert container["image"] == (step.image or DEFAULT_IMAGE)
        assert container["command"][:2] == ["python3", "-c"] and container["command"][-1] == step.program
        runtime = "\n".join(container["command"][2:5])  # loader, step runtime, bootstrap: no Jupyter
        assert not any(f"import {m}" in runtime for m in ("IPython", "jupyter_client", "nbformat", "papermill", "ipykernel"))
        args = container["args"]
        for name in step.outputs:
            i = args.index(name)
            assert args[i - 1] == "--output" and args[i + 1] == f"{{{{$.outputs.artifacts['{name}'].path}}}}"
        assert task["cachingOptions"].get("enableCache", False) == step.cache
    evaluate = executor(doc, "evaluate")["args"]
    assert [evaluate[i + 1] for i, a in enumerate(evaluate) if a == "--metric"] == pipeline.metrics


def test_images_resources_caching_prev_and_json_parameters_are_mapped():
    text = compile_kfp(hand_made())
    doc = load_ir(text)
    assert doc["pipelineInfo"]["name"] == "hand-made"
    tasks = doc["root"]["dag"]["tasks"]
    assert executor(doc, "load")["image"] == "python:3.12-slim"
    assert executor(doc, "train")["image"] == DEFAULT_IMAGE
    resources = executor(doc, "train")["resources"]
    assert resources["resourceCpuLimit"] == "2" and resources["resourceMemoryLimit"] == "4Gi"
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu" and resources["accelerator"]["resourceCount"] == "1"
    assert "resources" not in executor(doc, "load")
    assert tasks["train"]["cachingOptions"] == {} and tasks["load"]["cachingOptions"] == {"enableCache": True}
    # the explicit prev: with no data flow is kept as a dependency
    assert tasks["report"]["dependentTasks"] == ["load"] and "artifacts" not in tasks["report"].get("inputs", {})
    assert tasks["score"]["dependentTasks"] == ["train"]
    # a json parameter is JSON text (integers stay integers)
    sizes = doc["root"]["inputDefinitions"]["parameters"]["sizes"]
    assert sizes["parameterType"] == "STRING" and json.loads(sizes["defaultValue"]) == [1, 2]
    # a step with metrics writes them to an artifact too
    assert "kfjupyter_metrics" in doc["components"]["comp-score"]["outputDefinitions"]["artifacts"]


def test_a_parameter_with_quotes_and_code_is_a_parameter_never_source():
    text = compile_kfp(hand_made())
    doc = load_ir(text)
    assert doc["root"]["inputDefinitions"]["parameters"]["note"]["defaultValue"] == NASTY
    for key in ("load", "report"):
        container = executor(doc, key)
        assert all("pwned" not in part for part in container["command"])  # never in the source
        args = container["args"]
        i = args.index("note")
        assert args[i - 1 : i + 3] == ["--param", "note", "str", "{{$.inputs.parameters['note']}}"]
    assert doc["root"]["dag"]["tasks"]["load"]["inputs"]["parameters"]["note"] == {"componentInputParameter": "note"}
    # and a run sends it as data
    assert runtime_parameters(hand_made(), {"note": "it's \"quoted\""})["note"] == "it's \"quoted\""


def test_bad_limits_and_parameters_are_refused_before_compiling():
    p = hand_made()
    p.steps["train"].limits["disk"] = "1Gi"
    with pytest.raises(KFPCompileError, match="unknown limit 'disk'"):
        compile_kfp(p)
    with pytest.raises(KFPCompileError, match="unknown pipeline parameter"):
        runtime_parameters(hand_made(), {"nope": 1})
    with pytest.raises(KFPCompileError, match="lr is a float"):
        runtime_parameters(hand_made(), {"lr": "fast"})


def test_the_vendored_swagger_is_kfp_2_17_unmodified_and_checks_run_bodies():
    ours = REPO / "kfjupyter/k8s/schemas/kfp-2.17.0/v2beta1_kfp_api_single_file.swagger.json"
    assert json.loads(ours.read_text())["info"]["version"] == "2.17.0"
    shared = REPO.parent / "shared/kubeflow-schemas/kfp-2.17.0/v2beta1_kfp_api_single_file.swagger.json"
    if shared.exists():
        assert hashlib.sha256(ours.read_bytes()).hexdigest() == hashlib.sha256(shared.read_bytes()).hexdigest()
    good = {"display_name": "r", "runtime_config": {"parameters": {"a": 1, "b": {"x": [1]}}},
            "pipeline_version_reference": {"pipeline_id": "p"}, "pipeline_spec": {"anything": {"goes": 1}}}  # fmt: skip
    assert validate_body("v2beta1Run", good) is good
    with pytest.raises(InvalidOptionError, match=r"runtime_config.paramters: unknown field"):
        validate_body("v2beta1Run", {"display_name": "r", "runtime_config": {"paramters": {}}})
    with pytest.raises(InvalidOptionError, match=r"state: 'DONE' is not one of"):
        validate_body("v2beta1Run", {"display_name": "r", "state": "DONE"})


# --------------------------------------------------------------------------- the REST path


def follow(backend, job_id, info, timeout=60.0) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obs = backend.observe(job_id, info)
        if not seen or seen[-1] != obs.status:
            seen.append(obs.status)
        if obs.status in st.TERMINAL:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"still {seen} after {timeout} s")


def test_the_demo_pipeline_is_uploaded_run_and_followed_to_succeeded(kfp_server, tmp_path):
    from kfjupyter.pipelines import from_notebook

    pipeline = from_notebook(DEMO)
    backend = KFPPipelineBackend()
    spec = PipelineSpec(name=pipeline.name, backend="kubernetes", pipeline=pipeline.to_dict(),
                        parameters={"C": 2.5, "seed": 7}, cache=True)  # fmt: skip
    info = backend.submit("iris-demo-a1b2c", spec, tmp_path / "job")
    assert json.loads(json.dumps(info)) == info and "token" not in json.dumps(info).lower().replace("token_from", "")
    # the upload: multipart, the IR we compile, named after the pipeline
    paths = [(r["method"], r["path"]) for r in kfp_server.requests]
    # Kale's experiment_name: looked up, created when missing, the run filed under it
    assert paths[:2] == [("GET", "/apis/v2beta1/experiments"), ("POST", "/apis/v2beta1/experiments")]
    assert kfp_server.requests[1]["body"]["display_name"] == "kfjupyter-demo"
    experiment = [e for e in kfp_server.experiments.values() if e["display_name"] == "kfjupyter-demo"]
    assert len(experiment) == 1
    kfp_server.requests[:2] = []
    paths = paths[2:]
    assert paths == [("GET", "/apis/v2beta1/pipelines/names/iris-demo"), ("POST", "/apis/v2beta1/pipelines/upload"),
                     ("GET", f"/apis/v2beta1/pipelines/{info['pipeline_id']}/versions"), ("POST", "/apis/v2beta1/runs")]  # fmt: skip
    assert kfp_server.requests[3]["body"]["experiment_id"] == experiment[0]["experiment_id"]
    upload = kfp_server.requests[1]
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert upload["query"]["name"] == "iris-demo"
    filename, content = upload["files"]["uploadfile"]
    assert filename == "iris-demo.yaml" and content.decode() == (tmp_path / "job" / "pipeline.yaml").read_text()
    assert yaml.safe_load(content) == yaml.safe_load(compile_kfp(pipeline))
    # the run: that version, the parameters typed as the IR declares them
    run_body = kfp_server.requests[3]["body"]
    assert run_body["pipeline_version_reference"] == {"pipeline_id": info["pipeline_id"],
                                                      "pipeline_version_id": info["pipeline_version_id"]}  # fmt: skip
    assert run_body["runtime_config"]["parameters"] == {"C": 2.5, "seed": 7, "test_size": 0.3, "n_estimators": 50}
    # followed to the end through KFP's states
    assert follow(backend, "iris-demo-a1b2c", info) == [st.PENDING, st.RUNNING, st.SUCCEEDED]
    assert {s["name"]: s["status"] for s in backend.steps("iris-demo-a1b2c", info)} == dict.fromkeys(pipeline.steps, st.SUCCEEDED)
    assert "train-logreg: Succeeded" in "\n".join(backend.read_log("iris-demo-a1b2c", info, "run"))
    # a second run of the same pipeline adds a version instead of failing on the name
    info2 = backend.submit("iris-demo-d4e5f", PipelineSpec(name=pipeline.name, backend="kubernetes", pipeline=pipeline.to_dict()),
                           tmp_path / "job2")  # fmt: skip
    assert info2["pipeline_id"] == info["pipeline_id"] and info2["pipeline_version_id"] != info["pipeline_version_id"]
    # the experiment is found this time, not created again
    assert len([e for e in kfp_server.experiments.values() if e["display_name"] == "kfjupyter-demo"]) == 1
    assert kfp_server.requests[-1]["body"]["experiment_id"] == experiment[0]["experiment_id"]
    assert kfp_server.requests[-2]["path"] == "/apis/v2beta1/pipelines/upload_version"
    assert kfp_server.requests[-2]["query"]["pipelineid"] == info["pipeline_id"]


def test_a_failing_run_reads_failed_with_kfps_error(kfp_server, tmp_path):
    backend = KFPPipelineBackend()
    kfp_server.fail_next("train", "OOMKilled: the container used more than 4Gi")
    info = backend.submit_pipeline("hand-a1b2c", hand_made(), {"lr": 0.1}, tmp_path / "job")
    assert follow(backend, "hand-a1b2c", info)[-1] == st.FAILED
    obs = backend.observe("hand-a1b2c", info)
    assert "step train: OOMKilled: the container used more than 4Gi" in obs.error
    steps = {s["name"]: s for s in backend.steps("hand-a1b2c", info)}
    assert steps["train"]["status"] == st.FAILED and "OOMKilled" in steps["train"]["error"]


def test_cancel_terminates_the_run(kfp_server, tmp_path):
    backend = KFPPipelineBackend()
    info = backend.submit_pipeline("hand-c1c2c", hand_made(), None, tmp_path / "job", cache=False)
    uploaded = yaml.safe_load(kfp_server.requests[1]["files"]["uploadfile"][1])
    assert all(t["cachingOptions"] == {} for t in uploaded["root"]["dag"]["tasks"].values())  # cache=False: off for all
    backend.cancel("hand-c1c2c", info)
    assert kfp_server.requests[-1]["path"] == f"/apis/v2beta1/runs/{info['run_id']}:terminate"
    assert follow(backend, "hand-c1c2c", info)[-1] == st.CANCELLED
    backend.cancel("hand-c1c2c", info)  # idempotent


def test_bad_endpoints_and_names_fail_clearly_and_leave_nothing(kfp_server, tmp_path, monkeypatch):
    backend = KFPPipelineBackend()
    pipeline = hand_made()
    monkeypatch.delenv("KFJUPYTER_KFP_URL")
    with pytest.raises(InvalidOptionError, match="set KFJUPYTER_KFP_URL"):
        backend.submit_pipeline("hand-a1b2c", pipeline, None, tmp_path / "j")
    monkeypatch.setenv("KFP_HOST", "ml-pipeline:8888")
    with pytest.raises(InvalidOptionError, match="invalid Kubeflow Pipelines URL 'ml-pipeline:8888'"):
        backend.submit_pipeline("hand-a1b2c", pipeline, None, tmp_path / "j")
    monkeypatch.setenv("KFJUPYTER_KFP_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(KFPEndpointError, match=r"cannot reach Kubeflow Pipelines at http://127.0.0.1:9"):
        backend.submit_pipeline("hand-a1b2c", pipeline, None, tmp_path / "j")
    monkeypatch.setenv("KFJUPYTER_KFP_URL", kfp_server.url)
    with pytest.raises(InvalidOptionError, match="invalid job id 'Hand_1'"):
        backend.submit_pipeline("Hand_1", pipeline, None, tmp_path / "j")
    assert kfp_server.requests == []
    # the server refuses the run: what was uploaded is deleted again
    monkeypatch.setenv("KFJUPYTER_KFP_EXPERIMENT", "no-such-experiment")
    with pytest.raises(BackendError, match=r"refused to create a run of pipeline hand-made \(404\): .*Experiment no-such-experiment not found"):
        backend.submit_pipeline("hand-a1b2c", pipeline, None, tmp_path / "j")
    assert kfp_server.pipelines == {} and kfp_server.versions == {} and kfp_server.runs == {}
    assert [r["method"] for r in kfp_server.requests][-2:] == ["DELETE", "DELETE"]


def test_a_token_is_sent_as_bearer_never_stored_and_a_wrong_one_is_kfps_error(tmp_path, monkeypatch):
    server = FakeKFP(tmp_path / "kfp", token="s3cret-token").start()
    try:
        monkeypatch.setenv("KFJUPYTER_KFP_URL", server.url + "/")
        monkeypatch.setenv("KFJUPYTER_KFP_TOKEN", "wrong")
        backend = KFPPipelineBackend()
        with pytest.raises(KFPEndpointError, match=r"\(401\): Unauthenticated") as err:
            backend.submit_pipeline("hand-a1b2c", hand_made(), None, tmp_path / "j")
        assert "wrong" not in str(err.value)
        monkeypatch.setenv("KFJUPYTER_KFP_TOKEN", "s3cret-token")
        info = backend.submit_pipeline("hand-a1b2c", hand_made(), None, tmp_path / "j")
        assert "s3cret" not in json.dumps(info) and info["token_from"] == "env:KFJUPYTER_KFP_TOKEN"
        assert all(r["headers"].get("Authorization") == "Bearer s3cret-token" for r in server.requests[1:])
        assert follow(backend, "hand-a1b2c", info)[-1] == st.SUCCEEDED
    finally:
        server.stop()


def test_the_fake_refuses_an_invalid_ir_and_bad_run_parameters(kfp_server):
    from kfjupyter.pipelines.kubernetes import KFPClient, KFPError

    client = KFPClient()
    doc = yaml.safe_load(compile_kfp(hand_made()))
    doc["root"]["dag"]["tasks"]["train"]["cachingOption"] = {}  # a typo: not in the proto
    with pytest.raises(KFPError, match=r"\(400\): .*invalid pipeline spec"):
        client.request("POST", "/apis/v2beta1/pipelines/upload", query={"name": "x"},
                       files={"uploadfile": ("x.yaml", yaml.safe_dump(doc).encode())})  # fmt: skip
    good = compile_kfp(hand_made()).encode()
    pipeline = client.request("POST", "/apis/v2beta1/pipelines/upload", query={"name": "x"}, files={"uploadfile": ("x.yaml", good)})
    ref = {"pipeline_id": pipeline["pipeline_id"]}
    with pytest.raises(KFPError, match="input parameter lr requires type NUMBER_DOUBLE"):
        client.request("POST", "/apis/v2beta1/runs", body={"display_name": "r", "pipeline_version_reference": ref,
                                                          "runtime_config": {"parameters": {"lr": "fast"}}})  # fmt: skip
    with pytest.raises(KFPError, match='unknown field "paramters"'):
        client.request("POST", "/apis/v2beta1/runs", body={"display_name": "r", "pipeline_version_reference": ref,
                                                          "runtime_config": {"paramters": {}}})  # fmt: skip


def test_the_steps_really_run_from_the_ir_without_kfjupyter_in_the_image(tmp_path, monkeypatch):
    """The fake plays KFP's launcher: each task's container command, with its placeholders
    rendered, runs in an 'image' where kfjupyter cannot be imported."""
    server = FakeKFP(tmp_path / "kfp", execute=True).start()
    try:
        monkeypatch.setenv("KFJUPYTER_KFP_URL", server.url)
        backend = KFPPipelineBackend()
        info = backend.submit_pipeline("hand-e1e2e", hand_made(), {"lr": 2.0}, tmp_path / "job")
        assert follow(backend, "hand-e1e2e", info)[-1] == st.SUCCEEDED, backend.observe("hand-e1e2e", info)
        runs = tmp_path / "kfp" / "runs" / info["run_id"]
        # the parameter with quotes and code arrived as a string: len(NASTY) went into data
        assert f"model {float((len(NASTY) + 5) * 2.0)}" in (runs / "train" / "log.txt").read_text()
        assert f"done {NASTY}" in (runs / "report" / "log.txt").read_text()
        assert "pwned" not in (runs / "report" / "log.txt").read_text().replace(NASTY, "")
        meta = json.loads((runs / "score" / "acc" / "meta.json").read_text())
        assert meta["format"] == "json"
        metrics = [json.loads(line) for line in (runs / "score" / "kfjupyter_metrics").read_text().splitlines()]
        assert metrics[-1]["acc"] == pytest.approx((len(NASTY) + 5) * 2.0 / 10)
        assert "acc=" in (runs / "score" / "log.txt").read_text()  # report's name=value line in the log
        # a failing step: KFP's error carries the traceback
        broken = hand_made()
        broken.steps["train"].program = "raise ValueError('bad data')\n"
        info = backend.submit_pipeline("hand-e3e4e", broken, None, tmp_path / "job2")
        assert follow(backend, "hand-e3e4e", info)[-1] == st.FAILED
        assert "ValueError: bad data" in backend.observe("hand-e3e4e", info).error
    finally:
        server.stop()


def test_run_pipeline_with_the_kubernetes_backend_is_a_tracked_job(kfp_server, tmp_path):
    import kfjupyter
    from kfjupyter.pipelines import get_run, run_pipeline

    run = run_pipeline(DEMO, {"C": 2.5}, backend="kubernetes")
    assert run.record.backend == "kubernetes" and run.record.backend_info["run_id"] in kfp_server.runs
    created = next(r for r in kfp_server.requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs")
    assert created["body"]["runtime_config"]["parameters"]["C"] == 2.5
    run.wait(timeout=60, poll=0.05)
    again = get_run(run.id)
    assert again.status == st.SUCCEEDED
    assert [(s["name"], s["status"]) for s in again.steps] == [(n, st.SUCCEEDED) for n in again.pipeline.steps]
    assert "evaluate: Succeeded" in again.step_logs("evaluate")
    assert again.to_dict()["status"] == st.SUCCEEDED
    from kfjupyter.pipelines.kubernetes import KFPClient

    listed = KFPClient().request("GET", "/apis/v2beta1/runs", query={"page_size": 10})["runs"]
    assert [(r["run_id"], r["state"]) for r in listed] == [(run.record.backend_info["run_id"], "SUCCEEDED")]
    # a run KFP fails: the job and its steps say so, with KFP's error
    kfp_server.fail_next("train-forest", "pod train-forest-x1: OOMKilled")
    failed = run_pipeline(DEMO, backend="kubernetes").wait(raise_on_failure=False, timeout=60, poll=0.05)
    assert failed.status == st.FAILED and "step train-forest: pod train-forest-x1: OOMKilled" in failed.error
    steps = {s["name"]: s for s in failed.steps}
    assert steps["train-forest"]["status"] == st.FAILED and "OOMKilled" in steps["train-forest"]["error"]
    assert steps["prepare"]["status"] == steps["train-logreg"]["status"] == st.SUCCEEDED
    assert steps["evaluate"]["status"] == "Skipped"  # KFP never started it
    # no endpoint: refused before anything is recorded or sent
    count, sent = len(kfjupyter.jobs.list()), len(kfp_server.requests)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KFJUPYTER_KFP_URL")
        with pytest.raises(InvalidOptionError, match="KFJUPYTER_KFP_URL"):
            run_pipeline(DEMO, backend="kubernetes")
    assert len(kfjupyter.jobs.list()) == count and len(kfp_server.requests) == sent


def test_a_value_a_step_reads_and_passes_on_changed_crosses_twice(tmp_path, monkeypatch):
    steps = {
        "make": Step(name="make", cells=[0], source="", outputs=["X"], parameters=["flag"],
                     program="X = {'n': 1, 'flag': flag}\n"),
        "bump": Step(name="bump", cells=[1], source="", inputs={"X": "make"}, outputs=["X"],
                     program="X = dict(X, n=X['n'] + 1)\n"),
        "show": Step(name="show", cells=[2], source="", inputs={"X": "bump"}, program="print('got', X)\n"),
    }  # fmt: skip
    edges = [Edge("make", "bump", ("X",)), Edge("bump", "show", ("X",))]
    pipeline = Pipeline("twice", steps, edges, {"flag": Parameter("flag", "bool", False)})
    doc = load_ir(compile_kfp(pipeline))
    assert doc["root"]["dag"]["tasks"]["bump"]["inputs"]["artifacts"] == {
        "X__in": {"taskOutputArtifact": {"outputArtifactKey": "X", "producerTask": "make"}}
    }
    assert executor(doc, "bump")["args"][-6:] == ["--input", "X", "{{$.inputs.artifacts['X__in'].path}}",
                                                  "--output", "X", "{{$.outputs.artifacts['X'].path}}"]  # fmt: skip
    server = FakeKFP(tmp_path / "kfp", execute=True).start()
    try:
        monkeypatch.setenv("KFJUPYTER_KFP_URL", server.url)
        backend = KFPPipelineBackend()
        info = backend.submit_pipeline("twice-a1b2c", pipeline, {"flag": True}, tmp_path / "job")
        assert follow(backend, "twice-a1b2c", info)[-1] == st.SUCCEEDED, backend.observe("twice-a1b2c", info)
        log = (tmp_path / "kfp" / "runs" / info["run_id"] / "show" / "log.txt").read_text()
        assert "got {'n': 2, 'flag': True}" in log
    finally:
        server.stop()


# --------------------------------------------------------------------------- issue 18: KFP output a Kale user recognises


def ir_and_platform(text: str) -> tuple[dict, dict]:
    """The pipeline spec (checked as :func:`load_ir` does) and the kubernetes platform spec
    (``platforms.kubernetes``, parsed with kfp-kubernetes' own proto) of compiled IR."""
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb
    from kfp.pipeline_spec import pipeline_spec_pb2 as pb

    docs = list(yaml.safe_load_all(text))
    doc = load_ir(yaml.safe_dump(docs[0]))
    platform = docs[1] if len(docs) > 1 else {}
    assert set(platform) <= {"platforms"}
    json_format.ParseDict(platform, pb.PlatformSpec())
    kubernetes = (platform.get("platforms") or {}).get("kubernetes", {})
    for config in kubernetes.get("deploymentSpec", {}).get("executors", {}).values():
        json_format.ParseDict(config, k8s_pb.KubernetesExecutorConfig())  # unknown fields refused
    components.load_component_from_text(text)  # the whole file, as KFP's upload reads it
    return doc, kubernetes


def test_pipeline_metrics_are_a_system_metrics_output_that_kfp_reads_from_the_executor_output(tmp_path, monkeypatch):
    doc = load_ir(compile_kfp(hand_made()))
    outputs = doc["components"]["comp-score"]["outputDefinitions"]["artifacts"]
    assert outputs["kfjupyter_metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert all(o["artifactType"]["schemaTitle"] == "system.Artifact" for n, o in outputs.items() if n != "kfjupyter_metrics")
    assert "{{$}}" in executor(doc, "score")["args"]  # the executor input: where KFP reads the logged metrics
    assert "{{$}}" not in executor(doc, "train")["args"]  # no metrics, no executor output
    server = FakeKFP(tmp_path / "kfp", execute=True).start()
    try:
        monkeypatch.setenv("KFJUPYTER_KFP_URL", server.url)
        backend = KFPPipelineBackend()
        info = backend.submit_pipeline("hand-m1m2m", hand_made(), {"lr": 2.0}, tmp_path / "job")
        assert follow(backend, "hand-m1m2m", info)[-1] == st.SUCCEEDED, backend.observe("hand-m1m2m", info)
        task = tmp_path / "kfp" / "runs" / info["run_id"] / "score"
        # what the launcher parses (ExecutorOutput, protojson) holds the metric, as metrics.log_metric leaves it
        out = pipeline_spec_pb2.ExecutorOutput()
        json_format.Parse((task / "executor_output.json").read_text(), out)
        logged = json_format.MessageToDict(out)["artifacts"]["kfjupyter_metrics"]["artifacts"][0]["metadata"]
        assert logged == {"acc": pytest.approx((len(NASTY) + 5) * 2.0 / 10)}
        # the local format (JSON lines) is still in the artifact's file
        assert json.loads((task / "kfjupyter_metrics").read_text().splitlines()[-1])["acc"] == logged["acc"]
    finally:
        server.stop()


def test_parameter_and_value_names_keep_their_case_and_only_names_kfp_refuses_are_refused():
    p = hand_made()
    p.parameters["LR"] = Parameter("LR", "float", 1.0)
    p.steps["train"].parameters.append("LR")
    p.steps["train"].outputs.append("Model_B")
    p.steps["score"].inputs["Model_B"] = "train"
    doc = load_ir(compile_kfp(p))
    assert set(doc["root"]["inputDefinitions"]["parameters"]) == {"lr", "LR", "note", "sizes"}
    train = doc["components"]["comp-train"]
    assert set(train["inputDefinitions"]["parameters"]) == {"lr", "LR"}
    assert "Model_B" in train["outputDefinitions"]["artifacts"]
    assert doc["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["LR"] == {"componentInputParameter": "LR"}
    args = executor(doc, "train")["args"]
    i = args.index("LR")
    assert args[i - 1 : i + 3] == ["--param", "LR", "float", "{{$.inputs.parameters['LR']}}"]
    assert doc["root"]["dag"]["tasks"]["score"]["inputs"]["artifacts"]["Model_B"] == {
        "taskOutputArtifact": {"outputArtifactKey": "Model_B", "producerTask": "train"}}
    assert runtime_parameters(p, {"LR": 3})["LR"] == 3.0 and runtime_parameters(p)["lr"] == 0.5
    # what the kfp SDK refuses (a name must begin with an ASCII letter) is refused, saying why
    for bad in ("_private", "données"):
        q = hand_made()
        q.parameters[bad] = Parameter(bad, "int", 1)
        q.steps["load"].parameters.append(bad)
        with pytest.raises(KFPCompileError, match=rf"parameter {bad!r}: Kubeflow Pipelines refuses this name"):
            compile_kfp(q)
    q = hand_made()
    q.steps["load"].outputs.append("_tmp")
    with pytest.raises(KFPCompileError, match=r"step load: value '_tmp': Kubeflow Pipelines refuses this name"):
        compile_kfp(q)


def test_labels_annotations_secrets_and_volumes_are_where_kfp_kubernetes_puts_them():
    p = hand_made()
    p.description = "Trains and scores, Kale style"
    train = p.steps["train"]
    train.labels = {"team": "ml", "app.kubernetes.io/part-of": "demo"}
    train.annotations = {"sidecar.istio.io/inject": "false"}
    train.secrets = {"AWS_ACCESS_KEY_ID": {"name": "s3-creds", "key": "access"},
                     "AWS_SECRET_ACCESS_KEY": {"name": "s3-creds", "key": "secret"}}
    p.volumes = [
        {"name": "workspace-demo", "mount_point": "/home/jovyan", "type": "pvc", "expose_as_env_var": True},
        {"name": "scratch", "mount_point": "/scratch", "type": "new_pvc", "size": 5, "size_type": "Gi",
         "volume_access_mode": "rwo", "storage_class_name": "fast",
         "annotations": [{"key": "backup", "value": "no"}, {"key": "", "value": ""}]},
    ]
    doc, k8s = ir_and_platform(compile_kfp(p))
    assert doc["pipelineInfo"]["description"] == "Trains and scores, Kale style"
    executors = k8s["deploymentSpec"]["executors"]
    labels = doc["components"]["comp-train"]["executorLabel"]
    pod = executors[labels]
    assert pod["podMetadata"] == {"labels": train.labels, "annotations": train.annotations}
    assert sorted((s["secretName"], s["keyToEnv"][0]["secretKey"], s["keyToEnv"][0]["envVar"]) for s in pod["secretAsEnv"]) == [
        ("s3-creds", "access", "AWS_ACCESS_KEY_ID"), ("s3-creds", "secret", "AWS_SECRET_ACCESS_KEY")]
    # every step mounts both volumes; the new one is created first, by KFP's createpvc
    tasks = doc["root"]["dag"]["tasks"]
    create = [k for k, t in tasks.items() if t["componentRef"]["name"].startswith("comp-createpvc")]
    assert len(create) == 1
    pvc_inputs = doc["components"][tasks[create[0]]["componentRef"]["name"]]["inputDefinitions"]["parameters"]
    assert set(pvc_inputs) >= {"access_modes", "size", "pvc_name_suffix", "storage_class_name", "annotations"}
    given = {n: v["runtimeValue"]["constant"] for n, v in tasks[create[0]]["inputs"]["parameters"].items()}
    assert given == {"access_modes": ["ReadWriteOnce"], "size": "5Gi", "pvc_name_suffix": "-scratch",
                     "storage_class_name": "fast", "annotations": {"backup": "no"}}
    for step in p.steps:
        mounts = executors[doc["components"][tasks[step]["componentRef"]["name"]]["executorLabel"]]["pvcMount"]
        assert [m["mountPath"] for m in mounts] == ["/home/jovyan", "/scratch"]
        assert mounts[0]["pvcNameParameter"] == {"runtimeValue": {"constant": "workspace-demo"}}
        assert mounts[1]["pvcNameParameter"]["taskOutputParameter"] == {"outputParameterKey": "name", "producerTask": create[0]}
        assert create[0] in tasks[step]["dependentTasks"]
        env = {e["name"]: e["value"] for e in executor(doc, step)["env"]}
        assert env["KALE_VOLUME_WORKSPACE_DEMO"] == "/home/jovyan" and "KALE_VOLUME_SCRATCH" not in env
    assert "podMetadata" not in executors[doc["components"]["comp-load"]["executorLabel"]]
    # a volume KFP cannot mount is refused, naming it
    p.volumes = [{"name": "snap", "mount_point": "/data", "type": "clone"}]
    with pytest.raises(KFPCompileError, match=r"volume 'snap': type 'clone' cannot be mounted on Kubeflow Pipelines"):
        compile_kfp(p)
    p.volumes = [{"name": "scratch", "mount_point": "/scratch", "type": "new_pvc"}]
    with pytest.raises(KFPCompileError, match=r"volume 'scratch': a new_pvc volume needs a size"):
        compile_kfp(p)


def notebook_folder_pipeline(folder: Path) -> Pipeline:
    """Steps importing a module of the notebook's folder (a package, too) and opening a data file."""
    (folder / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (folder / "tools").mkdir()
    (folder / "tools" / "__init__.py").write_text("from .inner import BASE\n")
    (folder / "tools" / "inner.py").write_text("BASE = 100\n")
    (folder / "data").mkdir()
    (folder / "data" / "iris.csv").write_text("a,b\n1,2\n")
    steps = {
        "use": Step(name="use", cells=[1], source="", outputs=["value"],
                    program="import helpers\nfrom tools import BASE\nvalue = helpers.double(3) + BASE\n"),
        "show": Step(name="show", cells=[2], source="", inputs={"value": "use"},
                     program="import os\nif os.path.exists('data/iris.csv'):\n    print(open('data/iris.csv').read())\n"
                             "print('value', value)\n"),
    }  # fmt: skip
    return Pipeline("local-files", steps, [Edge("use", "show", ("value",))], {}, notebook=str(folder / "nb.ipynb"))


def test_local_modules_travel_with_the_component_and_data_files_are_named_at_compile_time(tmp_path, monkeypatch):
    from kfjupyter.pipelines.kfp import KFPCompileWarning

    folder = tmp_path / "project"
    folder.mkdir()
    pipeline = notebook_folder_pipeline(folder)
    with pytest.warns(KFPCompileWarning) as caught:
        text = compile_kfp(pipeline)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith("step show: data/iris.csv (a file of the notebook's folder)")
    assert "will not be in the step's container on Kubeflow Pipelines" in messages[0]
    load_ir(text)
    # the modules are run from the component itself: in an image without them, the step imports them
    server = FakeKFP(tmp_path / "kfp", execute=True).start()
    try:
        monkeypatch.setenv("KFJUPYTER_KFP_URL", server.url)
        backend = KFPPipelineBackend()
        with pytest.warns(KFPCompileWarning):
            info = backend.submit_pipeline("files-a1b2c", pipeline, None, tmp_path / "job")
        assert follow(backend, "files-a1b2c", info)[-1] == st.SUCCEEDED, backend.observe("files-a1b2c", info)
        log = (tmp_path / "kfp" / "runs" / info["run_id"] / "show" / "log.txt").read_text()
        assert "value 106" in log and "a,b" not in log  # the data file did not travel, as the warning said
    finally:
        server.stop()
    # a module too big for one command-line argument is not shipped, and the warning says so
    (folder / "helpers.py").write_text("def double(x):\n    return 2 * x\n" + "".join(f"# {os.urandom(60).hex()}\n" for _ in range(3000)))
    with pytest.warns(KFPCompileWarning) as caught:
        compile_kfp(pipeline)
    assert re.fullmatch(r"step use: local module helpers \(\d+ KiB\) is too big to travel inside the component "
                        r"\(at most 127 KiB a step\): install it in the image", str(caught[0].message))
    assert caught[0].filename == __file__  # the warning points at the caller
