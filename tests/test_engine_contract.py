"""The engine contract, checked over every engine: one suite for every kind of job on every backend.

Each case starts a real job through the public API (training ranks, an Optuna study, a
pipeline run, a papermill run, a sweep, a KServe endpoint, a batch inference; on Kubernetes against the fake
API server, the fake Katib and the fake KFP) and checks what every engine promises
(:mod:`kfjupyter.runtime.engine`):

* it is an :class:`~kfjupyter.runtime.engine.Engine` and declares its features;
* the job reaches its end state; every declared log channel of the job and of its child
  tasks reads, tails and follows; every declared metric channel reads;
* a new process re-attaches to it from the store and sees the same;
* cancel stops it (and the autouse fixture checks that no process is left);
* a supervised engine's job whose supervisor is killed with SIGKILL is Failed with the
  signal as its typed reason, without anyone reading the job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from fake_k8s import fake_k8s, fake_k8s_kfjupyter, fake_k8s_manual  # noqa: F401
from fake_kfp import kfp_executor, kfp_server  # noqa: F401
from pipeline_notebooks import write_notebook

import kfjupyter
from kfjupyter import status as st
from kfjupyter.backends import get_backend
from kfjupyter.runtime.engine import Engine, Features
from kfjupyter.store.workspace import get_workspace

from conftest import wait_for

pytestmark = pytest.mark.timeout(240)

TRAIN = """
import os, kfjupyter
rank = int(os.environ["RANK"])
for step in range(3):
    print(f"hello from rank {rank} step {step}", flush=True)
    kfjupyter.report(step=step, loss=1.0 / (step + 1))
"""
TRAIN_LONG = """
import time
print("started", flush=True)
time.sleep(120)
"""
TUNE = """
x = kfjupyter.param("x", low=0.0, high=1.0)
print(f"trial with x={x}", flush=True)
kfjupyter.report(step=0, loss=(x - 0.3) ** 2)
"""
TUNE_LONG = """
import time
x = kfjupyter.param("x", low=0.0, high=1.0)
print("started", flush=True)
time.sleep(120)
kfjupyter.report(step=0, loss=x)
"""


@dataclass
class Ctx:
    """What a case needs: the test's folder and the fixtures it asked for."""

    workdir: Path
    fixtures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    kind: str
    backend: str
    start: Callable[[Ctx], Any]  # a short job that ends well: its handle
    start_long: Callable[[Ctx], Any]  # a job that runs until cancelled
    expect: str  # a text one of its log channels (its own or a child's) shows
    metric: str | None = None  # a metric it reports (engines declaring metrics)
    fixtures: tuple[str, ...] = ()
    long_fixtures: tuple[str, ...] | None = None  # those of the long job (default: the same)
    drive: Callable[[Ctx, Any], None] = lambda ctx, job: None  # the cluster's part, where a fake needs it
    drive_long: Callable[[Ctx, Any], None] = lambda ctx, job: None
    end: str = st.SUCCEEDED  # the state its short job ends in (an endpoint: serving)

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.backend}"


def _job(handle):
    """The Job of a handle (a Study and an Endpoint hold one)."""
    return getattr(handle, "job", handle)


# -- the cases ------------------------------------------------------------------------------------
def _pipeline_notebook(ctx: Ctx, long: bool = False) -> Path:
    work = "print('started', flush=True)\ntime.sleep(120)\nn = 1" if long else "print('preparing', flush=True)\nn = 21"
    return write_notebook(
        ctx.workdir / ("long.ipynb" if long else "tiny.ipynb"),
        [
            (["imports"], "import time\nimport kfjupyter"),
            (["step:prepare"], work),
            (["step:double"], "total = n * 2\nprint('total', total, flush=True)\nkfjupyter.report(total=total)"),
        ],
        name="long-pipe" if long else "tiny-pipe",
    )


def _notebook(ctx: Ctx, long: bool = False) -> Path:
    from test_notebook_runs import make_notebook

    if long:
        return make_notebook(ctx.workdir / "long.ipynb", "a = 1", "print('started', flush=True)\nimport time\ntime.sleep(120)")
    return make_notebook(ctx.workdir / "nb.ipynb", "a = 1", "print('cell says', a * 2, flush=True)\nimport kfjupyter\nkfjupyter.report(score=a * 2.0)")


def _register_iris() -> None:
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0, 0, 0, 0], [1, 1, 1, 1]], [0, 1])
    version = kfjupyter.register_model("iris", model, framework="sklearn")
    kfjupyter.registry.set_alias("iris", "production", version.number)


def _deploy(ctx: Ctx, backend: str):
    _register_iris()
    extra = {"storage_uri": "s3://models/iris/1/"} if backend == "kubernetes" else {}
    endpoint = kfjupyter.deploy("iris@production", name="iris", backend=backend, **extra)
    if backend == "kubernetes":  # the fake's model server prints nothing of its own
        fake = ctx.fixtures["fake_k8s"]
        for pod in fake.list("pods", "team-a", "serving.kserve.io/inferenceservice=iris,component=predictor"):
            fake.write_log("team-a", pod["metadata"]["name"], "INFO:kserve:Registering model: iris")
    return endpoint


def _batch(ctx: Ctx, long: bool = False, backend: str = "local"):
    """A batch inference over a Parquet file: 3 shards on 2 workers (the long one's model
    says "started", then takes its time). On Kubernetes the file is on a claim (the test's
    folder, mounted at the same path in the pods) and the pods' image has kfjupyter."""
    import numpy as np
    import pandas as pd

    def model(long: bool):
        import time as _time

        class Sum:
            def predict(self, x):
                if long:
                    print("started", flush=True)
                    _time.sleep(120)
                return np.asarray(x).sum(axis=1)

        return Sum()

    version = kfjupyter.register_model("summer", model(long), framework="custom")
    path = ctx.workdir / ("long.parquet" if long else "rows.parquet")
    pd.DataFrame(np.arange(3000.0).reshape(1000, 3), columns=list("abc")).to_parquet(path)
    extra = {}
    if backend == "kubernetes":
        ctx.fixtures["fake_k8s_kfjupyter"].add_pvc("team-a", "data", ctx.workdir)
        extra = {"backend": backend, "volume": f"data:{ctx.workdir}", "image": "kfjupyter-batch:test"}
    return kfjupyter.batch_predict(version.ref, path, workers=2, shard_rows=400, name="contract-long" if long else "contract",
                                   **extra)  # fmt: skip


def _play_katib(ctx: Ctx, study) -> None:
    fake = ctx.fixtures["fake_k8s"]
    for x in ("0.25", "0.75"):
        fake.run_trial("team-a", study.id, {"x": x})


def _katib_running(ctx: Ctx, study) -> None:
    """Katib's part for a study that runs on: one trial running."""
    fake = ctx.fixtures["fake_k8s_manual"]
    fake.add_trial("team-a", study.id, {"x": "0.5"}, "Running")
    fake.update_experiment("team-a", study.id)


CASES = [
    Case("train", "local", lambda c: kfjupyter.train(TRAIN, workers=2, name="contract", user_ns={}),
         lambda c: kfjupyter.train(TRAIN_LONG, workers=2, name="contract-long", user_ns={}),
         expect="hello from rank 1 step 2", metric="loss"),
    Case("tune", "local", lambda c: kfjupyter.tune(TUNE, "loss", trials=2, name="contract", user_ns={}),
         lambda c: kfjupyter.tune(TUNE_LONG, "loss", trials=2, name="contract-long", user_ns={}),
         expect="trial with x=", metric="loss"),
    Case("pipeline", "local", lambda c: kfjupyter.run_pipeline(_pipeline_notebook(c), cache=False),
         lambda c: kfjupyter.run_pipeline(_pipeline_notebook(c, long=True), cache=False),
         expect="total 42", metric="total"),
    Case("notebook", "local", lambda c: kfjupyter.run_notebook(_notebook(c)),
         lambda c: kfjupyter.run_notebook(_notebook(c, long=True)), expect="cell says 2", metric="score"),
    Case("sweep", "local", lambda c: kfjupyter.run_notebook(_notebook(c), sweep={"a": [1, 2]}, max_parallel=2),
         lambda c: kfjupyter.run_notebook(_notebook(c, long=True), sweep={"a": [1, 2]}, max_parallel=2),
         expect="cell says 4", metric="score"),
    Case("endpoint", "local", lambda c: _deploy(c, "local"), lambda c: _deploy(c, "local"),
         expect="iris", end=st.RUNNING),
    Case("batch", "local", lambda c: _batch(c), lambda c: _batch(c, long=True), expect="predicted in", metric="rows"),
    Case("train", "kubernetes",
         lambda c: kfjupyter.train(TRAIN, workers=2, name="contract", backend="kubernetes", user_ns={}),
         lambda c: kfjupyter.train(TRAIN_LONG, workers=2, name="contract-long", backend="kubernetes", user_ns={}),
         expect="hello from rank 1 step 2", metric="loss", fixtures=("fake_k8s",)),
    Case("tune", "kubernetes",
         lambda c: kfjupyter.tune(TUNE, "loss", trials=2, name="contract", backend="kubernetes", user_ns={}),
         lambda c: kfjupyter.tune(TUNE_LONG, "loss", trials=2, name="contract-long", backend="kubernetes", user_ns={}),
         expect="loss=", metric="loss", fixtures=("fake_k8s",), long_fixtures=("fake_k8s_manual",),
         drive=_play_katib, drive_long=_katib_running),
    Case("pipeline", "kubernetes", lambda c: kfjupyter.run_pipeline(_pipeline_notebook(c), backend="kubernetes"),
         lambda c: kfjupyter.run_pipeline(_pipeline_notebook(c, long=True), backend="kubernetes"),
         expect="double: Succeeded", fixtures=("kfp_server",), long_fixtures=("kfp_executor",)),
    Case("endpoint", "kubernetes", lambda c: _deploy(c, "kubernetes"), lambda c: _deploy(c, "kubernetes"),
         expect="Registering model: iris", fixtures=("fake_k8s",), end=st.RUNNING),
    Case("batch", "kubernetes", lambda c: _batch(c, backend="kubernetes"), lambda c: _batch(c, True, "kubernetes"),
         expect="predicted in", metric="rows", fixtures=("fake_k8s_kfjupyter",)),
]
IDS = [c.id for c in CASES]


def _ctx(request, case: Case, workdir: Path, long: bool = False) -> Ctx:
    names = case.long_fixtures if long and case.long_fixtures is not None else case.fixtures
    return Ctx(workdir, {n: request.getfixturevalue(n) for n in names})


def _wait_end(job, case: Case, timeout: float = 120.0) -> None:
    if case.end in st.TERMINAL:
        job.wait(timeout=timeout)
    else:
        wait_for(lambda: job.status == case.end, timeout=timeout)


def _follow(job, channel: str, ended: bool, limit: float = 20.0) -> tuple[list[str], bool]:
    """Follow a channel in a thread: (its lines, whether it ended by itself within ``limit``)."""
    stop = threading.Event()
    lines: list[str] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            lines.extend(job.logs(channel=channel, follow=True, stop=stop))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(limit if ended else 1.5)
    by_itself = not reader.is_alive()
    stop.set()
    reader.join(10)
    assert not errors, errors
    return lines, by_itself


# -- the contract ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_submit_observe_and_read_every_channel(case: Case, request, workspace, workdir):
    ctx = _ctx(request, case, workdir)
    handle = case.start(ctx)
    job = _job(handle)
    engine = job.engine
    assert isinstance(engine, Engine)
    assert type(engine).features is engine.features and isinstance(engine.features, Features)
    assert (engine.kind, engine.name) == (job.kind, job.record.backend) == (case.kind, case.backend)
    case.drive(ctx, handle)
    _wait_end(job, case)
    assert job.status == case.end, job.error
    ended = case.end in st.TERMINAL

    channels = job.channels()
    assert channels.logs, "every job has at least one log channel"
    assert [c.rank for c in channels.logs if c.rank is not None], "and one selected by rank"
    kids = job.children()
    if engine.features.children:
        assert kids and all(k.channel == f"{k.kind}/{k.name}" for k in kids)
        if ended:
            assert all(k.status in st.CHILD_TERMINAL for k in kids), [(k.name, k.status) for k in kids]
    else:
        assert kids == []
    texts = {}
    for name in [c.name for c in channels.logs] + [k.channel for k in kids]:
        text = job.logs(channel=name)
        texts[name] = text
        lines = text.split("\n") if text else []
        assert job.logs(channel=name, tail=1) == (lines[-1] if lines else ""), name
        followed, by_itself = _follow(job, name, ended)
        if ended:
            assert by_itself, f"following {name} of an ended job ends"
        assert followed[: len(lines)] == lines or followed == lines[-len(followed):], name
    assert any(case.expect in text for text in texts.values()), texts
    by_rank = job.logs(rank=channels.logs[0].rank)
    assert by_rank == texts[channels.logs[0].name]

    if engine.features.metrics:
        rows = job.metrics()
        assert rows and all("rank" in r for r in rows)
        assert any(case.metric in r for r in rows), rows
        for chan in channels.metrics:
            assert all(r in rows for r in job.metrics(channel=chan.name))
    else:
        assert job.metrics() == []

    # a new process re-attaches from the store and sees the same
    first = channels.logs[0].name
    script = (
        "import json, kfjupyter; j = kfjupyter.jobs.get(%r); "
        "print(json.dumps({'status': j.status, 'channels': j.channels().to_dict(), 'log': j.logs(channel=%r), "
        "'children': [c.name for c in j.children()]}))" % (job.id, first)
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"status": case.end, "channels": channels.to_dict(), "log": job.logs(channel=first),
                    "children": [k.name for k in job.children()]}  # fmt: skip
    if not ended:
        _job(handle).cancel()
        assert job.status == st.CANCELLED


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cancel_stops_the_job(case: Case, request, workspace, workdir):
    ctx = _ctx(request, case, workdir, long=True)
    handle = case.start_long(ctx)
    job = _job(handle)
    case.drive_long(ctx, handle)
    if case.backend == "local" and case.end in st.TERMINAL:
        wait_for(lambda: "started" in "".join(_all_logs(job)), timeout=90)
    else:
        wait_for(lambda: job.status == st.RUNNING, timeout=90)
    job.cancel()
    wait_for(lambda: job.status == st.CANCELLED, timeout=30)  # a remote engine may take a look or two
    assert get_workspace().get_job(job.id).status == st.CANCELLED
    for kid in job.children():
        assert kid.status in st.CHILD_TERMINAL, (kid.name, kid.status)
    for chan in job.channels().logs:
        job.logs(channel=chan.name)  # still readable


def _all_logs(job) -> list[str]:
    names = [c.name for c in job.channels().logs] + [k.channel for k in job.children()]
    out = []
    for name in names:
        try:
            out.append(job.logs(channel=name))
        except kfjupyter.errors.KFJupyterError:
            pass
    return out


SUPERVISED = [c for c in CASES if get_backend(c.kind, c.backend).features.supervised]


@pytest.mark.parametrize("case", SUPERVISED, ids=[c.id for c in SUPERVISED])
def test_a_supervisor_killed_with_sigkill_fails_the_job_with_the_signal_unread(case: Case, request, workspace, workdir):
    ctx = _ctx(request, case, workdir, long=True)
    job = _job(case.start_long(ctx))
    wait_for(lambda: "started" in "".join(_all_logs(job)), timeout=90)
    keeper = psutil.Process(job.record.backend_info["pid"])
    (supervisor,) = keeper.children()  # the keeper forked it
    supervisor.send_signal(signal.SIGKILL)
    ws = get_workspace()
    # nobody reads the job through its engine: the record itself turns Failed
    record = wait_for(lambda: (r := ws.get_job(job.id)).status in st.TERMINAL and r, timeout=20)
    assert record.status == st.FAILED
    assert record.end_reason == {"kind": "supervisor_lost", "signal": 9, "exit_code": None}
    assert "killed by signal 9 (SIGKILL)" in record.error
    assert kfjupyter.jobs.get(job.id).end_reason == st.SupervisorLost(signal=9)
    for kid in ws.list_children(job.id):
        assert kid.status in st.CHILD_TERMINAL or kid.job_ref, (kid.name, kid.status)
    for other in kfjupyter.jobs.list(status=st.RUNNING) + kfjupyter.jobs.list(status=st.PENDING):
        other.cancel()  # a sweep's runs go on without their sweep's supervisor: stop them here
