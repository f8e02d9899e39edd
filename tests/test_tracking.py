"""Experiment tracking without MLflow: every job is a run, with automatic params; search
with MLflow's syntax; compare; re-run; lineage to models."""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter import tracking
from kfjupyter.errors import InvalidOptionError
from kfjupyter.tracking.search import Clause, Key, SearchSyntaxError, matches, parse_filter, parse_order_by

CELL = """
for step in range(epochs):
    kfjupyter.report(step=step, loss=lr * (epochs - step), acc=step / epochs)
kfjupyter.log_params(optimizer="sgd")
(kfjupyter.output_dir() / "model.txt").write_text(str(lr))
"""


def train(ns, **kw):
    return kfjupyter.train(CELL, workers=1, name="fit", user_ns=ns, **kw).wait()


def test_a_changed_lr_is_the_one_differing_param(workdir, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", str(workdir / "churn.ipynb"))
    (workdir / "churn.ipynb").write_text("{}")
    ns = {"epochs": 3, "lr": 0.1, "data": [1, 2, 3], "name_": "x"}
    a = train(ns)
    ns["lr"] = 0.05
    b = train(ns)

    run = tracking.get_run(a.id)
    assert run.experiment == "churn"  # the notebook's name
    assert run.params["lr"] == 0.1 and run.params["epochs"] == 3
    assert "data" not in run.params  # a list is not a plain scalar
    assert run.params["workers"] == 1  # an option it was started with
    assert run.params["optimizer"] == "sgd"  # kfjupyter.log_params inside the job
    assert run.metrics["loss"] == pytest.approx(0.1) and run.metrics["acc"] == pytest.approx(2 / 3)
    assert run.env["python"] and run.env["packages"].startswith("sha256:") and len(run.env["notebook_sha256"]) == 64

    diff = kfjupyter.compare(a, b)
    assert list(diff.params.index) == ["lr"]
    assert diff.params.loc["lr", a.id] == 0.1 and diff.params.loc["lr", b.id] == 0.05
    assert diff.metrics.loc["loss", b.id] == pytest.approx(0.05)
    assert diff.curves["loss"][a.id] == [(0.0, pytest.approx(0.3)), (1.0, pytest.approx(0.2)), (2.0, pytest.approx(0.1))]
    assert len(diff.curves_frame("loss")) == 3
    assert diff.to_dict()["params"] == [{"name": "lr", "values": [0.1, 0.05]}]

    with pytest.raises(InvalidOptionError, match="at least two"):
        kfjupyter.compare(a)


def test_runs_filter_and_order(workdir):
    for lr in (0.3, 0.1, 0.2):
        train({"epochs": 2, "lr": lr}, experiment="sweep-a")
    train({"epochs": 2, "lr": 0.05}, experiment="other")

    frame = kfjupyter.runs(experiment="sweep-a", order_by=["params.lr DESC"])
    assert list(frame["params.lr"]) == [0.3, 0.2, 0.1]
    assert set(frame["experiment"]) == {"sweep-a"}
    low = kfjupyter.runs(experiment="sweep-a", filter="metrics.loss < 0.25 and params.epochs = '2'",
                         order_by="metrics.loss")  # fmt: skip
    assert list(low["params.lr"]) == [0.1, 0.2]
    assert len(kfjupyter.runs(filter="params.lr = 0.05 and attributes.status = 'FINISHED'")) == 1
    assert len(kfjupyter.runs(filter="attributes.status = 'Succeeded' and tags.none IS NULL")) == 4
    assert len(kfjupyter.runs(filter="attributes.name LIKE 'fi%' and params.lr IN (0.3, 0.2)")) == 2
    assert kfjupyter.runs(experiment="nothing-here").empty
    with pytest.raises(SearchSyntaxError, match="unknown prefix 'metricz'"):
        kfjupyter.runs(filter="metricz.loss < 1")
    assert {e["name"]: e["runs"] for e in tracking.experiments()} == {"sweep-a": 3, "other": 1}


def test_rerun_changes_one_param_and_links_back(workdir):
    a = train({"epochs": 2, "lr": 0.1}, tags={"team": "a"})
    b = a.rerun(lr=0.01, wait=True)
    assert b.status == st.SUCCEEDED
    run = tracking.get_run(b.id)
    assert run.source_run == a.id and run.params["lr"] == 0.01 and run.tags == {"team": "a"}
    assert run.metrics["loss"] == pytest.approx(0.01)
    assert (b.outputs["model.txt"]).read_text() == "0.01"
    assert list(kfjupyter.compare(a, b).params.index) == ["lr"]
    with pytest.raises(InvalidOptionError, match="has no param 'lrr'.*lr"):
        a.rerun(lrr=0.5)
    c = a.rerun(workers=2, wait=True)  # an option
    assert tracking.get_run(c.id).params["workers"] == 2


def test_lineage_from_run_to_model_and_back(workdir):
    job = train({"epochs": 1, "lr": 0.1})
    version = job.register_model("fit-model", job.outputs["model.txt"])
    assert tracking.get_run(job.id).models == [f"fit-model/{version.number}"]
    assert tracking.get_run(version).run_id == job.id


@pytest.mark.parametrize(
    "text, clauses",
    [
        ("metrics.val_loss < 0.2", [Clause(Key("metrics", "val_loss"), "<", 0.2)]),
        ("params.lr = '0.1' AND tags.`my tag` != \"x\"",
         [Clause(Key("params", "lr"), "=", "0.1"), Clause(Key("tags", "my tag"), "!=", "x")]),
        ("attributes.status IN ('FINISHED', 'FAILED')", [Clause(Key("attributes", "status"), "IN", ("FINISHED", "FAILED"))]),
        ("status = 'Running'", [Clause(Key("attributes", "status"), "=", "Running")]),
        ("metric.rank-1/loss >= -1e-3", [Clause(Key("metrics", "rank-1/loss"), ">=", -0.001)]),
        ("params.opt NOT IN ('sgd')", [Clause(Key("params", "opt"), "NOT IN", ("sgd",))]),
        ("params.x IS NOT NULL", [Clause(Key("params", "x"), "IS NOT NULL")]),
        ("", []),
    ],
)
def test_filter_grammar(text, clauses):
    assert parse_filter(text) == clauses


@pytest.mark.parametrize(
    "text, message",
    [
        ("metrics.loss <", "expected a number or a quoted string at the end"),
        ("metrics.loss < 1 or params.a = 'b'", "OR is not supported"),
        ("metrics.loss ~ 1", "unexpected '~"),
        ("bogus = 1", "unknown attribute 'bogus'"),
        ("params.a LIKE 3", "LIKE needs a quoted pattern"),
        ("metrics.loss 1", "expected a comparator"),
    ],
)
def test_filter_errors_say_what_is_wrong(text, message):
    with pytest.raises(SearchSyntaxError, match=message):
        parse_filter(text)


def test_matching_rules():
    lr = Key("params", "lr")
    assert matches(Clause(lr, "=", "0.1"), 0.1) and matches(Clause(lr, "<", 0.2), 0.1)
    assert matches(Clause(lr, "=", 0.1), "0.1") and not matches(Clause(lr, "=", 0.1), None)
    assert matches(Clause(Key("params", "opt"), "ILIKE", "S_D"), "sgd")
    assert not matches(Clause(Key("params", "opt"), "LIKE", "S%"), "sgd")
    assert matches(Clause(Key("attributes", "status"), "=", "KILLED"), "Cancelled")
    assert parse_order_by(["metrics.loss DESC", "name"]) == [(Key("metrics", "loss"), True), (Key("attributes", "name"), False)]
    with pytest.raises(SearchSyntaxError, match="ASC or DESC"):
        parse_order_by("metrics.loss UP")


def test_log_params_outside_a_job_says_where_it_works(monkeypatch):
    monkeypatch.delenv("KFJUPYTER_METRICS_FILE", raising=False)
    with pytest.raises(RuntimeError, match="inside a job's program"):
        kfjupyter.log_params(lr=1)


def test_experiment_name_is_checked(workdir):
    with pytest.raises(InvalidOptionError, match="invalid experiment name"):
        kfjupyter.train(CELL, workers=1, user_ns={"epochs": 1, "lr": 0.1}, experiment=" ")


def test_kf_train_experiment_option_and_cell_params(shell):
    shell.run_cell("epochs = 2\nlr = 0.1")
    result = shell.run_cell("%%kf_train --name magic --experiment exp-magic --out job\n" + CELL.lstrip())
    assert result.success, result.error_in_exec
    run = tracking.get_run(shell.user_ns["job"].id)
    assert run.experiment == "exp-magic" and run.params["lr"] == 0.1 and run.params["epochs"] == 2


def _seed_runs(rows):
    """Job + run records straight into the store (what a search reads), no processes."""
    from kfjupyter.jobs import new_run
    from kfjupyter.store.models import JobRecord
    from kfjupyter.store.workspace import get_workspace

    jobs, runs = [], []
    for i, (kind, metrics) in enumerate(rows):
        jid = f"seed-{i:03d}"
        jobs.append(JobRecord(id=jid, name="seed", kind=kind, backend="local", status="Succeeded", workers=1,
                              spec={"name": "seed", "workers": 1}, backend_info={}))  # fmt: skip
        run = new_run(jid, None, "seeded", {"lr": 0.1 * (i + 1)})
        run.metrics = metrics
        runs.append(run)
    with get_workspace().session() as s, s.begin():
        s.add_all(jobs)
        s.add_all(runs)
    return [j.id for j in jobs]


def test_metric_and_param_filters_and_kind_run_in_sql_and_agree_with_the_grammar(workdir):
    """The database drops the runs a metric or param clause or ``kind=`` rules out (so a search over
    10,000 runs decodes only what may match); what it keeps is judged by the grammar's own
    rules, so odd values (NaN, text, booleans, a missing key) give the same answer."""
    import gc

    from sqlalchemy import event

    from kfjupyter.store.workspace import get_workspace

    ids = _seed_runs([
        ("train", {"loss": 0.1}), ("train", {"loss": 0.9}), ("train", {"loss": float("nan")}),
        ("train", {"loss": "0.05"}), ("train", {"loss": True}), ("train", {}), ("notebook", {"loss": 0.2}),
    ])  # fmt: skip
    statements: list[str] = []
    engine = get_workspace().engine
    listen = lambda conn, cursor, statement, *a: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        found, total = tracking.search_runs("seeded", filter="metrics.loss < 0.5")
        assert {r.run_id for r in found} == {ids[0], ids[3], ids[6]} and total == 3
        assert any("json_extract" in s.lower() for s in statements), statements
        found, _ = tracking.search_runs("seeded", filter="metrics.loss = 1")
        assert [r.run_id for r in found] == [ids[4]]  # True is 1, as the grammar says
        found, _ = tracking.search_runs("seeded", filter="metrics.loss >= 0.2", order_by="metrics.loss DESC")
        assert [r.run_id for r in found] == [ids[4], ids[1], ids[6]]  # True is 1; NaN is not >= 0.2
        found, _ = tracking.search_runs("seeded", filter="metrics.loss IS NULL")
        assert [r.run_id for r in found] == [ids[5]]
        assert tracking.search_runs("seeded", filter="metrics.`a\x00b` < 1 and params.`a\x00b` < 1") == ([], 0)
        assert gc.isenabled()  # paused only while a search builds its runs
        statements.clear()
        found, _ = tracking.search_runs("seeded", filter="params.lr < 0.25")  # the run's own params
        assert {r.run_id for r in found} == {ids[0], ids[1]}
        assert any("json_extract(runs.params" in s for s in statements), statements
        found, _ = tracking.search_runs("seeded", filter="params.workers >= 1 and params.lr >= 0.65")  # a spec option
        assert [r.run_id for r in found] == [ids[6]]
        statements.clear()
        found, total = tracking.search_runs("seeded", kind="notebook")
        assert [r.run_id for r in found] == [ids[6]] and total == 1
        assert any("jobs.kind = ?" in s for s in statements), statements
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    frame = kfjupyter.runs(experiment="seeded", filter="metrics.loss < 0.5", order_by="params.lr")
    assert list(frame["run_id"]) == [ids[0], ids[3], ids[6]]
    assert str(frame["created_at"].dtype).startswith("datetime64") or frame["created_at"].iloc[0].tzinfo is not None
