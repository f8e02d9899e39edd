"""``kfjupyter.batch_predict(..., backend="kubernetes")``: a ``batch/v1`` Indexed Job per run,
against the fake API server (tests/fake_k8s.py), which validates Jobs on the vendored
Kubernetes OpenAPI definitions independently of the product, plays the Job controller and
runs each pod as a process of this machine, its PersistentVolumeClaim a folder here."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

import kfjupyter  # noqa: E402
from fake_k8s import ApiError, JobValidator, fake_k8s_kfjupyter, fake_k8s_manual  # noqa: E402,F401
from kfjupyter import status as st  # noqa: E402
from kfjupyter.errors import InvalidOptionError, PreflightError  # noqa: E402
from kfjupyter.k8s.schema import ManifestError, validate_job  # noqa: E402
from kfjupyter.serving.batch_kubernetes import job_manifest, parse_indexes  # noqa: E402

from conftest import wait_for  # noqa: E402
from test_batch_predict import Thresholds  # noqa: E402  (the same tiny model as the local tests)

pytestmark = pytest.mark.timeout(180)
NS = "team-a"  # the namespace of the fake's kubeconfig context
IMAGE = "registry.example.com/kfjupyter-batch:0.1"


def rows(n: int, seed: int = 0) -> "pd.DataFrame":
    return pd.DataFrame(np.random.default_rng(seed).random((n, 4)), columns=list("abcd"))


@pytest.fixture
def pvc(fake_k8s_kfjupyter, tmp_path):
    """The claim ``data``: a folder this notebook mounts at the same path as the pods."""
    mount = tmp_path / "pvc"
    fake_k8s_kfjupyter.add_pvc(NS, "data", mount)
    return mount


def spec_for(tmp_path, **changes) -> dict:
    spec = {"name": "b", "model": "m@prod", "version": {"ref": "m:1", "model": "m", "format": "custom", "folder": str(tmp_path)},
            "shards": [{"index": i, "file": str(tmp_path / "x.parquet"), "start": i * 10, "stop": i * 10 + 10} for i in range(3)],
            "outputs": {str(tmp_path / "x.parquet"): str(tmp_path / "x.predictions.parquet")}, "method": "predict",
            "workers": 2, "image": IMAGE, "volume": {"claim": "data", "mount": str(tmp_path)}, "cpu": "1", "memory": "1Gi"}  # fmt: skip
    spec.update(changes)
    return spec


# --------------------------------------------------------------------------- the manifest


def test_the_job_validates_against_the_vendored_schema_and_the_fake_api_server(tmp_path):
    job = job_manifest("b-1a2b3", "b-1a2b3", NS, spec_for(tmp_path), [{"key": "batch.json", "path": "batch.json"}], 3)
    assert validate_job(job) is job
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == ("Indexed", 3, 2, 0)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["containers"][0]["command"][-1] == "--indexed"
    assert {v["name"]: next(k for k in v if k != "name") for v in pod["volumes"]} == {
        "kfjupyter-batch": "configMap", "kfjupyter-data": "persistentVolumeClaim"}
    admitted, warnings = JobValidator().admit({**job, "metadata": {**job["metadata"]}}, strict=True)
    assert warnings == [] and admitted["spec"]["podReplacementPolicy"] == "Failed"  # defaulted by the server


MUTATIONS = [
    ("spec.completionz", lambda j: j["spec"].update(completionz=3)),
    ("restartPolicy", lambda j: j["spec"]["template"]["spec"].update(restartPolicy="Always")),
    ("spec.completions", lambda j: j["spec"].update(completions="3")),
    ("image", lambda j: j["spec"]["template"]["spec"]["containers"][0].pop("image")),
    ("volumeMounts[1].name", lambda j: j["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1].update(name="nope")),
    ("spec.parallelism", lambda j: j["spec"].update(parallelism=-1)),
    ("spec.completions", lambda j: j["spec"].pop("completions")),
    ("spec.selector", lambda j: j["spec"].update(selector={"matchLabels": {"a": "b"}})),
    ("podReplacementPolicy", lambda j: j["spec"].update(podReplacementPolicy="TerminatingOrFailed")),
    ("spec.completions", lambda j: j["spec"].update(completions=100_001)),
    ("env[0].value", lambda j: j["spec"]["template"]["spec"]["containers"][0]["env"][0].update(value=1)),
    ("configMap.items[0].path", lambda j: j["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"][0].update(path="../x")),
]


@pytest.mark.parametrize("where, mutate", MUTATIONS, ids=[f"{i}-{m[0]}" for i, m in enumerate(MUTATIONS)])
def test_the_product_and_the_fake_api_server_refuse_the_same_jobs(tmp_path, where, mutate):
    job = job_manifest("b-1a2b3", "b-1a2b3", NS, spec_for(tmp_path), [{"key": "batch.json", "path": "batch.json"}], 3)
    mutate(job)
    with pytest.raises(ManifestError) as refused:
        validate_job(copy.deepcopy(job))
    assert where in str(refused.value)
    with pytest.raises(ApiError) as answered:
        JobValidator().admit(job, strict=True)
    assert answered.value.code in (400, 422)


def test_parse_indexes():
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8} and parse_indexes(None) == set() and parse_indexes("") == set()


# --------------------------------------------------------------------------- against the fake


def _requests(fake, method: str) -> list[str]:
    return [r["path"] for r in fake.requests if r["method"] == method]


def test_a_parquet_file_on_the_volume_is_predicted_by_an_indexed_job(fake_k8s_kfjupyter, pvc):
    fake = fake_k8s_kfjupyter
    frame = rows(25_000)
    path = pvc / "in" / "rows.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path, index=False)
    v = kfjupyter.register_model("thresholds", Thresholds(), framework="custom")
    job = kfjupyter.batch_predict(v.ref, path, workers=2, shard_rows=10_000, backend="k8s", volume=f"data:{pvc}",
                                  image=IMAGE, cpu="500m", memory="512Mi")  # fmt: skip
    assert job.record.backend == "kubernetes" and len(job.children()) == 3
    job.wait(timeout=120)
    assert job.status == st.SUCCEEDED, job.error
    assert job.record.message == "25000 rows predicted with thresholds:1"
    # one Indexed Job: a completion index per shard, two pods at once; the plan and the model in its ConfigMap
    (k8s_job,) = fake.list("jobs", NS)
    assert k8s_job["metadata"]["name"] == job.id
    assert (k8s_job["spec"]["completions"], k8s_job["spec"]["parallelism"]) == (3, 2)
    assert k8s_job["status"]["completedIndexes"] == "0-2" and k8s_job["status"]["succeeded"] == 3
    pods = fake.list("pods", NS, f"batch.kubernetes.io/job-name={job.id}")
    assert sorted(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1", "2"]
    (cm,) = fake.list("configmaps", NS)
    plan = json.loads(cm["data"]["batch.json"])
    assert plan["model_in"] == "plan" and any(k.startswith("model.") for k in (cm.get("binaryData") or {}) | (cm.get("data") or {}))
    assert plan["shards"][0]["file"] == "in/rows.parquet" and plan["run_shards"] == [0, 1, 2]
    # the output beside the input, equal to predicting in one process, with the version recorded
    out = path.with_name("rows.predictions.parquet")
    assert job.output == out
    table = pq.read_table(out)
    assert np.array_equal(table.column("prediction").to_numpy(), Thresholds().predict(frame.to_numpy()))
    assert json.loads(table.schema.metadata[b"kfjupyter.model_version"])["version"] == "thresholds:1"
    assert json.loads(out.with_name("rows.predictions.parquet.json").read_text())["job"] == job.id
    assert job.result()["prediction"].tolist() == table.column("prediction").to_pylist()
    # progress, children, channels
    assert job.progress == {"shards": 3, "shards_done": 3, "rows": 25_000, "rows_done": 25_000}
    assert {k.status for k in job.children()} == {st.SUCCEEDED}
    assert "predicted in" in job.logs(channel="shard/2") and "predicted in" in job.logs(rank=0)
    assert [c.name for c in job.channels().logs] == ["index-0", "index-1", "index-2"]
    progress = job.metrics(channel="batch")
    assert [r["shards"] for r in progress] == [1, 2, 3] and progress[-1]["rows"] == 25_000
    # strict creation, nothing the server had to prune
    creates = [r for r in fake.requests if r["method"] == "POST"]
    assert [r["query"].get("fieldValidation") for r in creates] == ["Strict", "Strict"]


def test_cancel_deletes_the_job_and_resume_runs_only_the_missing_shards(fake_k8s_kfjupyter, tmp_path, workspace):
    fake = fake_k8s_kfjupyter
    fake.add_pvc(NS, "home", tmp_path)  # the volume holds the workspace too: the pods read the model where it is
    frame = rows(60_000, seed=3)
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path, index=False)
    v = kfjupyter.register_model("slow", Thresholds(delay=1.5), framework="custom")
    job = kfjupyter.batch_predict(v.ref, path, workers=2, shard_rows=10_000, backend="kubernetes",
                                  volume={"claim": "home", "mount": str(tmp_path)}, image=IMAGE)  # fmt: skip
    wait_for(lambda: job.progress["shards_done"] >= 2, timeout=120, poll=0.3)
    assert "shards" in job.refresh().message
    job.cancel()
    wait_for(lambda: job.status == st.CANCELLED, timeout=30)
    assert fake.list("jobs", NS) == [] and fake.processes() == []  # the pods went first, then the Job
    deletes = [r for r in fake.requests if r["method"] == "DELETE" and "/jobs/" in r["path"]]
    assert deletes and deletes[0]["query"].get("propagationPolicy") == "Foreground"
    done = {k.name for k in job.children() if k.status == st.SUCCEEDED}
    assert 2 <= len(done) < 6 and {k.status for k in job.children()} <= {st.SUCCEEDED, st.CANCELLED}
    work = tmp_path / ".kfjupyter-batch" / job.id / "shards"
    mtimes = {n: (work / f"{int(n):06d}.npy").stat().st_mtime_ns for n in done}
    (cm,) = [c for c in fake.requests if c["method"] == "POST" and c["path"].endswith("/configmaps")]
    assert json.loads(cm["body"]["data"]["batch.json"])["model_in"] == "volume"

    job.resume().wait(timeout=120)
    assert job.status == st.SUCCEEDED, job.error
    (second,) = fake.list("jobs", NS)
    assert second["metadata"]["name"] == f"{job.id}-r2" and second["spec"]["completions"] == 6 - len(done)
    for n, mtime in mtimes.items():  # the shards done before were not predicted again
        assert (work / f"{int(n):06d}.npy").stat().st_mtime_ns == mtime
    assert {k.status for k in job.children()} == {st.SUCCEEDED}
    out = pq.read_table(tmp_path / "rows.predictions.parquet")
    assert np.array_equal(out.column("prediction").to_numpy(), Thresholds().predict(frame.to_numpy()))


def test_a_failing_shard_fails_the_job_with_the_reason_and_its_traceback(fake_k8s_kfjupyter, pvc):
    data = np.full((30_000, 4), 0.1)
    data[25_000] = 1.0  # a row of shard 2 the model refuses
    path = pvc / "rows.parquet"
    pd.DataFrame(data, columns=list("abcd")).to_parquet(path, index=False)
    v = kfjupyter.register_model("picky", Thresholds(fail_over=3.9), framework="custom")
    job = kfjupyter.batch_predict(v.ref, path, workers=1, shard_rows=10_000, backend="kubernetes", volume=f"data:{pvc}",
                                  image=IMAGE)  # fmt: skip
    job.wait(timeout=120, raise_on_failure=False)
    assert job.status == st.FAILED
    assert "BackoffLimitExceeded" in job.error and "shard 2 (pod" in job.error and "a row over 3.9" in job.error
    assert job.child("2").status == st.FAILED and "a row over" in job.logs(channel="shard/2")
    assert {job.child(n).status for n in ("0", "1")} == {st.SUCCEEDED}
    assert not path.with_name("rows.predictions.parquet").exists()


def test_a_dataframe_goes_to_the_job_folder_on_the_volume(fake_k8s_kfjupyter, pvc):
    frame = rows(3_000, seed=7)
    v = kfjupyter.register_model("thresholds", Thresholds(), framework="custom")
    job = kfjupyter.batch_predict(v.ref, frame, workers=2, shard_rows=1_000, backend="kubernetes", volume=f"data:{pvc}",
                                  image=IMAGE, wait=True, timeout=120)  # fmt: skip
    assert job.status == st.SUCCEEDED, job.error
    assert job.output == pvc / ".kfjupyter-batch" / job.id / "predictions.parquet"
    assert np.array_equal(job.result()["prediction"], Thresholds().predict(frame.to_numpy()))


def test_bad_input_is_refused_before_anything_is_submitted(fake_k8s_kfjupyter, pvc, tmp_path, workspace):
    fake = fake_k8s_kfjupyter
    v = kfjupyter.register_model("thresholds", Thresholds(), framework="custom")
    on_volume = pvc / "rows.parquet"
    rows(100).to_parquet(on_volume, index=False)
    elsewhere = tmp_path / "elsewhere.parquet"
    rows(100).to_parquet(elsewhere, index=False)
    cases = [
        (dict(data=on_volume, image=IMAGE), "pass volume='CLAIM:/mount/path'"),
        (dict(data=on_volume, image=IMAGE, volume="data"), "expected 'CLAIM:/mount/path'"),
        (dict(data=on_volume, image=IMAGE, volume="Data_1:/x"), "not a PersistentVolumeClaim name"),
        (dict(data=elsewhere, image=IMAGE, volume=f"data:{pvc}"), "is not on the volume data"),
        (dict(data=on_volume, volume=f"data:{pvc}"), "pass image="),
        (dict(data=on_volume, image=IMAGE, volume=f"data:{pvc}", cpu="lots"), "invalid cpu"),
        (dict(data=on_volume, image=IMAGE, volume=f"nope:{pvc}"), "no PersistentVolumeClaim 'nope' in namespace team-a"),
        (dict(data=pvc, image=IMAGE, volume=f"data:{pvc}"), "is not on the volume"),  # its output would be beside the mount
    ]
    for options, match in cases:
        data = options.pop("data")
        with pytest.raises(InvalidOptionError, match=match):
            kfjupyter.batch_predict(v.ref, data, backend="kubernetes", **options)
    # a model too big for a ConfigMap, not on the volume either
    big = kfjupyter.register_model("big", {"weights": np.random.default_rng(0).bytes(1_200_000)}, framework="custom")
    with pytest.raises(PreflightError, match="more than a ConfigMap holds"):
        kfjupyter.batch_predict(big.ref, on_volume, backend="kubernetes", volume=f"data:{pvc}", image=IMAGE)
    assert _requests(fake, "POST") == [] and fake.list("jobs", NS) == []
    assert kfjupyter.jobs.list(kind="batch") == []


def test_states_follow_the_job_status_the_controller_writes(fake_k8s_manual, tmp_path):
    fake = fake_k8s_manual
    mount = tmp_path / "pvc"
    fake.add_pvc(NS, "data", mount)
    path = mount / "rows.parquet"
    rows(30).to_parquet(path, index=False)
    v = kfjupyter.register_model("thresholds", Thresholds(), framework="custom")
    job = kfjupyter.batch_predict(v.ref, path, workers=2, shard_rows=10, backend="kubernetes", volume=f"data:{mount}", image=IMAGE)
    assert job.status == st.PENDING
    fake.add_job_pod(NS, job.id, 0, "Running", ["index 0: thresholds:1 loaded"])
    assert job.status == st.RUNNING and job.child("0").status == st.RUNNING
    fake.add_job_pod(NS, job.id, 2, "Succeeded", ["shard 2: rows 20–30 of rows.parquet predicted in 0.01 s"], exit_code=0)
    fake.set_job_status(NS, job.id, completedIndexes="2", succeeded=1, active=1, ready=1)
    assert job.progress == {"shards": 3, "shards_done": 1, "rows": 30, "rows_done": 10}
    assert job.refresh().message == "1/3 shards, 10 rows" and "predicted in" in job.logs(channel="shard/2")
    fake.add_job_pod(NS, job.id, 1, "Failed", ["Traceback (most recent call last):", '  File "x.py", line 1',
                                                  "ValueError: the rows are bad"], exit_code=1)  # fmt: skip
    fake.set_job_condition(NS, job.id, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert job.status == st.FAILED
    assert job.error.startswith(f"Job {job.id} failed: BackoffLimitExceeded: Job has reached the specified backoff limit")
    assert "shard 1 (pod" in job.error and "ValueError: the rows are bad" in job.error
    assert [job.child(n).status for n in "012"] == [st.CANCELLED, st.FAILED, st.SUCCEEDED]
