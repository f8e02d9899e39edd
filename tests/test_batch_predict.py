"""``kfjupyter.batch_predict``: a job sharded across local worker processes, with progress,
cancel, resume of the unfinished shards, and the output beside the input."""

from __future__ import annotations

import json

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

import kfjupyter  # noqa: E402
from kfjupyter import status as st  # noqa: E402
from kfjupyter.errors import InvalidOptionError  # noqa: E402
from kfjupyter.registry.errors import ModelNotFoundError  # noqa: E402

from conftest import processes_of, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(240)


def Thresholds(delay: float = 0.0, fail_over: float | None = None):
    """A tiny model: class 1 where a row's sum is over 2 (made in a function: carried by value)."""
    import time as _time

    class Thresholds:
        n_features_in_ = 4

        def predict(self, x):
            x = np.asarray(x)
            if delay:
                _time.sleep(delay)
            if fail_over is not None and (x.sum(axis=1) > fail_over).any():
                raise ValueError(f"a row over {fail_over}")
            return (x.sum(axis=1) > 2.0).astype(np.int64)

    return Thresholds()


@pytest.fixture
def big(tmp_path, workspace):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((1_000_000, 4), dtype=np.float32), columns=["a", "b", "c", "d"])
    path = tmp_path / "data" / "rows.parquet"
    path.parent.mkdir()
    frame.to_parquet(path, index=False)
    v = kfjupyter.register_model("thresholds", Thresholds(delay=0.25), framework="custom")
    kfjupyter.registry.set_alias("thresholds", "production", v.number)
    return path, frame


def test_a_million_rows_progress_cancel_and_resume_of_the_missing_shards(big, workspace):
    path, frame = big
    job = kfjupyter.batch_predict("thresholds@production", path, workers=2, shard_rows=50_000, include_inputs=True)
    assert job.kind == "batch" and len(job.children()) == 20 and job.progress["rows"] == 1_000_000
    wait_for(lambda: job.progress["shards_done"] >= 4, timeout=120)
    running = job.refresh().message
    job.cancel()
    assert job.status == st.CANCELLED
    first = job.progress
    assert 4 <= first["shards_done"] < 20, first
    assert "shards" in running  # progress: "7/20 shards, 350000 rows"
    rows = job.metrics(channel="batch")  # the progress metric channel: rows done as shards end
    assert rows and rows[-1]["rows"] <= first["rows_done"] and rows[-1]["shards"] <= first["shards_done"]
    done = {k.name for k in job.children() if k.status == st.SUCCEEDED}
    assert len(done) == first["shards_done"] and {k.status for k in job.children()} <= {st.SUCCEEDED, st.CANCELLED}
    shard_files = {int(n): (workspace / "jobs" / job.id / "shards" / f"{int(n):06d}.npy").stat().st_mtime_ns for n in done}
    assert not processes_of(workspace)

    job.resume().wait(timeout=180)
    assert job.status == st.SUCCEEDED, job.error
    # only the missing shards ran again: the others' predictions are the same files, logged once
    for index, mtime in shard_files.items():
        assert (workspace / "jobs" / job.id / "shards" / f"{index:06d}.npy").stat().st_mtime_ns == mtime
        assert job.logs(channel=f"shard/{index}").count("predicted in") == 1
    progress_log = job.logs(channel="batch")
    assert f"resuming: {len(done)} of 20 shards already done, running the {20 - len(done)} others" in progress_log
    # one process loaded the model and read the input for both workers (forks of it), once per run
    assert progress_log.count("host: thresholds:1 loaded in") == 2
    assert progress_log.count("input read in") == 2 and "(rows.parquet)" in progress_log
    assert {k.status for k in job.children()} == {st.SUCCEEDED}
    # the output beside the input, equal to predicting in one process, with the version recorded
    out = path.with_name("rows.predictions.parquet")
    assert job.output == out
    table = pq.read_table(out)
    expected = Thresholds().predict(frame.to_numpy())
    assert np.array_equal(table.column("prediction").to_numpy(), expected)
    assert table.num_rows == 1_000_000 and table.column_names == ["a", "b", "c", "d", "prediction"]
    assert json.loads(table.schema.metadata[b"kfjupyter.model_version"])["version"] == "thresholds:1"
    sidecar = json.loads(out.with_name("rows.predictions.parquet.json").read_text())
    assert sidecar["version"] == "thresholds:1" and sidecar["job"] == job.id and sidecar["rows"] == 1_000_000
    assert job.record.message == "1000000 rows predicted with thresholds:1"


def test_a_folder_of_csv_and_jsonl_and_a_dataframe(tmp_path, workspace):
    v = kfjupyter.register_model("thresholds", Thresholds(), framework="custom")
    rng = np.random.default_rng(1)
    folder = tmp_path / "inbox"
    folder.mkdir()
    a = pd.DataFrame(rng.random((25_000, 4)), columns=list("abcd"))
    b = pd.DataFrame(rng.random((12_345, 4)), columns=list("abcd"))
    a.to_csv(folder / "a.csv", index=False)
    b.to_json(folder / "b.jsonl", orient="records", lines=True)
    job = kfjupyter.batch_predict(v.ref, folder, workers=2, shard_rows=10_000, wait=True, timeout=120)
    assert job.status == st.SUCCEEDED, job.error
    assert len(job.children()) == 3 + 2
    outputs = tmp_path / "inbox.predictions"
    got_a = pd.read_csv(outputs / "a.predictions.csv")
    got_b = pd.read_json(outputs / "b.predictions.jsonl", lines=True)
    assert np.array_equal(got_a["prediction"], Thresholds().predict(a.to_numpy()))
    assert np.array_equal(got_b["prediction"], Thresholds().predict(b.to_numpy()))
    assert json.loads((outputs / "a.predictions.csv.json").read_text())["version"] == "thresholds:1"
    # a DataFrame: its predictions are the job's output
    frame = job_frame = pd.DataFrame(rng.random((1000, 4)), columns=list("abcd"))
    job = kfjupyter.batch_predict(v.ref, job_frame, wait=True, timeout=120)
    assert job.status == st.SUCCEEDED, job.error
    result = job.result()
    assert np.array_equal(result["prediction"], Thresholds().predict(frame.to_numpy()))
    assert job.output == workspace / "jobs" / job.id / "outputs" / "predictions.parquet"
    assert sorted(job.outputs) == ["predictions.parquet", "predictions.parquet.json"]


def test_refusals_name_the_problem_and_leave_nothing(tmp_path, workspace):
    v = kfjupyter.register_model("thresholds", Thresholds(), framework="custom")
    (tmp_path / "x.txt").write_text("1,2")
    (tmp_path / "empty").mkdir()
    pd.DataFrame({"a": []}).to_parquet(tmp_path / "none.parquet")
    for data, match in ((tmp_path / "missing.parquet", "no file or folder"), (tmp_path / "x.txt", "reads .parquet"),
                        (tmp_path / "empty", "holds no Parquet"), (tmp_path / "none.parquet", "no rows"),
                        (np.zeros(3), "rows")):  # fmt: skip
        with pytest.raises(InvalidOptionError, match=match):
            kfjupyter.batch_predict(v.ref, data)
    with pytest.raises(InvalidOptionError, match="workers"):
        kfjupyter.batch_predict(v.ref, np.zeros((3, 4)), workers=0)
    with pytest.raises(InvalidOptionError, match="shard_rows"):
        kfjupyter.batch_predict(v.ref, np.zeros((3, 4)), shard_rows=0)
    with pytest.raises(ModelNotFoundError):
        kfjupyter.batch_predict("nope@production", np.zeros((3, 4)))
    with pytest.raises(InvalidOptionError, match="volume, image: for batch_predict on Kubernetes"):
        kfjupyter.batch_predict(v.ref, np.zeros((3, 4)), volume="data:/mnt", image="x")
    with pytest.raises(InvalidOptionError, match="unknown backend 'moon'"):
        kfjupyter.batch_predict(v.ref, np.zeros((3, 4)), backend="moon")
    assert kfjupyter.jobs.list(kind="batch") == []
    assert not (workspace / "jobs").exists() or not any((workspace / "jobs").iterdir())


def test_a_failing_shard_fails_the_job_naming_it(tmp_path, workspace):
    v = kfjupyter.register_model("thresholds", Thresholds(fail_over=3.9), framework="custom")
    data = np.full((30_000, 4), 0.1)
    data[25_000] = 1.0  # a row of shard 2 the model refuses
    job = kfjupyter.batch_predict(v.ref, data, workers=2, shard_rows=10_000, wait=False)
    job.wait(timeout=120, raise_on_failure=False)
    assert job.status == st.FAILED
    assert "batch worker" in job.error and "shard 2" in job.error and "a row over 3.9" in job.error
    assert job.child("2").status == st.FAILED and "a row over" in job.logs(channel="shard/2")
    wait_for(lambda: not processes_of(workspace), timeout=10)  # the other worker stopped with it



def test_a_warm_batch_job_forks_its_host_and_predicts_what_a_cold_one_does(tmp_path, workspace):
    """The second job of a process starts warm (kfjupyter/runtime/warm.py): the supervisor
    and the workers' host are forks of a warm parent; the output is the cold job's, a
    failing worker fails it the same way, and cancel leaves nothing of it running."""
    from kfjupyter.runtime import warm

    warm.pool().close()  # as in a fresh process: the first job starts cold
    v = kfjupyter.register_model("thresholds", Thresholds(fail_over=3.9), framework="custom")
    data = np.random.default_rng(1).random((40_000, 4))
    cold = kfjupyter.batch_predict(v.ref, data, workers=2, shard_rows=10_000, wait=True, timeout=120)
    assert "fork of the warm supervisor" not in cold.logs(channel="batch")
    assert warm.pool().wait_ready(120)
    hot = kfjupyter.batch_predict(v.ref, data, workers=2, shard_rows=10_000, wait=True, timeout=120)
    assert hot.status == st.SUCCEEDED, hot.error
    assert "the workers' host is a fork of the warm supervisor" in hot.logs(channel="batch")
    assert np.array_equal(hot.result()["prediction"].to_numpy(), cold.result()["prediction"].to_numpy())
    # a failing worker: the job fails naming the shard, as a cold one does
    bad = data.copy()
    bad[25_000] = 1.0
    failed = kfjupyter.batch_predict(v.ref, bad, workers=2, shard_rows=10_000)
    failed.wait(timeout=120, raise_on_failure=False)
    assert failed.status == st.FAILED and "shard 2" in failed.error and "a row over 3.9" in failed.error
    assert "fork of the warm supervisor" in failed.logs(channel="batch")
    # cancel mid-way: the forked host and its workers go with the job
    slow = kfjupyter.register_model("slow", Thresholds(delay=0.5), framework="custom")
    job = kfjupyter.batch_predict(slow.ref, data, workers=2, shard_rows=2_000, wait=False)
    wait_for(lambda: job.progress["shards_done"] >= 1, timeout=120)
    job.cancel()
    assert job.status == st.CANCELLED
    wait_for(lambda: not processes_of(workspace), timeout=20)
