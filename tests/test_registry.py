"""The model registry's contract, the same on every backend: the embedded store on SQLite
and on PostgreSQL, and Kubeflow Model Registry (v1 and v1alpha3, through the fake server
that validates each request against the OpenAPI description)."""

from __future__ import annotations

import json

import pytest

import kfjupyter
import kfjupyter.registry as registry
from kfjupyter.errors import InvalidOptionError
from kfjupyter.registry import ModelNotFoundError, RegistryConflictError

from registry_support import backend, finished_job, iris_model, local_backend, write  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def test_a_registered_sklearn_model_is_version_1_and_loads_back_predicting_the_same(backend):
    clf, x, y = iris_model()
    v = kfjupyter.register_model("iris", clf, metrics={"accuracy": clf.score(x, y)}, description="first try")
    assert (v.model, v.number, v.name, v.state, v.framework) == ("iris", 1, "1", "LIVE", "sklearn")
    assert v.ref == "iris:1" and v.description == "first try"
    assert v.metrics == {"accuracy": pytest.approx(clf.score(x, y))}
    (art,) = v.artifacts
    assert art.name == "model" and art.format == "sklearn" and art.main_file == "model.joblib"
    assert len(art.sha256) == 64 and art.size > 0 and art.uri.startswith("file://")
    loaded = kfjupyter.load_model("iris")
    assert type(loaded) is type(clf)
    assert (loaded.predict(x) == clf.predict(x)).all()


def test_versions_are_numbered_1_2_3_per_model_and_a_name_labels_a_version_without_renumbering(backend):
    clf, _, _ = iris_model()
    numbers = [registry.register_model("iris", clf).number for _ in range(2)]
    labelled = registry.register_model("iris", clf, version="2.0-rc1")
    other = registry.register_model("wine", clf)
    assert numbers == [1, 2] and (labelled.number, labelled.name) == (3, "2.0-rc1") and other.number == 1
    assert registry.get_version("iris", version="2.0-rc1").number == 3
    assert registry.get_model("iris").latest_version == 3 and registry.get_model("iris").version_count == 3
    with pytest.raises(RegistryConflictError, match="already has a version named '2.0-rc1'"):
        registry.register_model("iris", clf, version="2.0-rc1")
    with pytest.raises(InvalidOptionError, match="numbers are given by the registry"):
        registry.register_model("iris", clf, version=7)
    with pytest.raises(InvalidOptionError, match="all digits"):
        registry.register_model("iris", clf, version="7")
    # a refused registration spends no number
    assert registry.register_model("iris", clf).number == 4


def test_a_version_is_found_by_number_name_alias_or_as_the_latest_live_one(backend):
    clf, _, _ = iris_model()
    for label in (None, "v2", None):
        registry.register_model("iris", clf, version=label)
    registry.set_alias("iris", "production", 2)
    assert registry.get_version("iris").number == 3
    assert registry.get_version("iris:1").number == 1
    assert registry.get_version("iris", version=1).number == 1
    assert registry.get_version("iris:v2").number == 2
    assert registry.get_version("iris@production").number == 2
    assert registry.get_version("iris", alias="production").number == 2
    assert registry.get_version("models:/iris/1").number == 1
    assert registry.get_version("models:/iris@production").number == 2
    assert kfjupyter.load_model("iris", version=3) is not None
    for ref, message in [
        ("iris:9", "has no version 9"),
        ("iris@staging", "has no alias 'staging'"),
        ("iris:nope", "has no version named 'nope'"),
        ("rose", "no registered model 'rose'"),
    ]:
        with pytest.raises(ModelNotFoundError, match=message):
            registry.get_version(ref)
    with pytest.raises(InvalidOptionError):
        registry.get_version("iris@production", version=1)


def test_aliases_point_at_versions_and_every_move_is_kept_with_who_when_from_and_to(backend):
    clf, _, _ = iris_model()
    registry.register_model("iris", clf, aliases=["staging"])
    registry.register_model("iris", clf)
    registry.register_model("iris", clf)
    assert registry.set_alias("iris", "production", 1, who="ana", reason="first release").aliases == ["production", "staging"]
    registry.set_alias("iris", "production", 3, who="ben")
    registry.set_alias("iris", "production", 3, who="ben")  # already there: not a move
    registry.set_alias("iris", "staging", "iris:2", who="ana")
    registry.delete_alias("iris", "staging", who="cy", reason="no staging any more")
    assert registry.get_model("iris").aliases == {"production": 3}
    assert kfjupyter.load_model("iris@production") is not None
    history = registry.alias_history("iris")
    moves = [(e.alias, e.from_version, e.to_version, e.who, e.reason) for e in history]
    assert moves == [
        ("staging", None, 1, moves[0][3], "set at registration"),
        ("production", None, 1, "ana", "first release"),
        ("production", 1, 3, "ben", None),
        ("staging", 1, 2, "ana", None),
        ("staging", 2, None, "cy", "no staging any more"),
    ]
    assert moves[0][3]  # the registering user
    times = [e.at for e in history]
    assert all(t is not None and t.tzinfo is not None for t in times) and times == sorted(times)
    assert [e.to_version for e in registry.alias_history("iris", "production")] == [1, 3]
    assert history[2].to_dict()["at"].endswith("+00:00")
    with pytest.raises(ModelNotFoundError):
        registry.set_alias("iris", "production", 9)
    with pytest.raises(ModelNotFoundError):
        registry.delete_alias("iris", "staging")
    with pytest.raises(InvalidOptionError, match="invalid alias"):
        registry.set_alias("iris", "Prod!", 1)


def test_archiving_hides_a_version_from_latest_and_is_refused_while_an_alias_points_at_it(backend):
    clf, _, _ = iris_model()
    for _ in range(3):
        registry.register_model("iris", clf)
    registry.set_alias("iris", "production", 3)
    with pytest.raises(RegistryConflictError, match="alias\\(es\\) production point"):
        registry.archive("iris:3")
    assert registry.archive("iris:2").state == "ARCHIVED"
    with pytest.raises(RegistryConflictError, match="ARCHIVED"):
        registry.set_alias("iris", "staging", 2)
    archived = registry.archive("iris", version=3, force=True)
    assert archived.state == "ARCHIVED" and archived.aliases == []
    assert registry.alias_history("iris", "production")[-1].to_version is None
    assert registry.get_version("iris").number == 1  # the latest LIVE one
    assert registry.get_version("iris:3").state == "ARCHIVED"  # still there by number
    assert [v.number for v in registry.search_versions(model="iris", state="LIVE")] == [1]
    assert registry.restore("iris:3").state == "LIVE"
    assert registry.get_version("iris").number == 3


def test_an_archived_model_takes_no_new_versions_until_restored(backend):
    clf, _, _ = iris_model()
    registry.register_model("iris", clf)
    assert registry.archive_model("iris").state == "ARCHIVED"
    with pytest.raises(RegistryConflictError, match="archived"):
        registry.register_model("iris", clf)
    assert [m.name for m in registry.list_models(state="ARCHIVED")] == ["iris"]
    assert registry.restore_model("iris").state == "LIVE"
    assert registry.register_model("iris", clf).number == 2


def test_metrics_params_and_custom_properties_round_trip_and_can_be_updated(backend):
    clf, _, _ = iris_model()
    v = registry.register_model(
        "iris", clf,
        metrics={"accuracy": 0.93, "loss": 1},
        params={"C": 0.5, "solver": "lbfgs", "layers": [4, 8], "warm": True, "max_iter": 200},
        custom_properties={"team": "vision", "reviewed": False},
    )
    again = registry.get_version("iris:1")
    for got in (v, again):
        assert got.metrics == {"accuracy": 0.93, "loss": 1.0}
        assert got.params == {"C": 0.5, "solver": "lbfgs", "layers": [4, 8], "warm": True, "max_iter": 200}
        # (and the signature the model knows of: see the signature test)
        assert got.custom_properties == {"signature": "4 features: [-1, 4]", "team": "vision", "reviewed": False}
        assert got.author
    updated = registry.update_version("iris:1", description="the good one", custom_properties={"reviewed": True})
    assert updated.description == "the good one" and updated.custom_properties == {
        "signature": "4 features: [-1, 4]", "team": "vision", "reviewed": True}  # fmt: skip
    model = registry.update_model("iris", description="Iris classifier", custom_properties={"domain": "flowers"})
    assert model.description == "Iris classifier" and model.custom_properties == {"domain": "flowers"}
    data = registry.get_version("iris:1").to_dict()
    assert data["ref"] == "iris:1" and data["metrics"]["accuracy"] == 0.93 and data["artifacts"][0]["sha256"]


def test_a_version_records_its_signature_and_input_example_and_a_wrong_example_is_refused(backend):
    import pandas as pd

    clf, x, _ = iris_model()
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame = pd.DataFrame(x, columns=columns)
    v = registry.register_model("iris", clf, input_example=frame.head(10))
    again = registry.get_version("iris:1")  # as the registry keeps it
    assert again.custom_properties["signature"] == (
        "sepal_length: float64, sepal_width: float64, petal_length: float64, petal_width: float64 (4 columns)"
        f" -> {clf.predict(x[:3]).dtype}[-1]"
    )
    example = json.loads(again.custom_properties["input_example"])
    assert example == {"columns": columns, "data": x[:3].tolist()} == json.loads(v.custom_properties["input_example"])
    # an array; a training sample gives the inputs only; the model alone what it knows
    assert registry.register_model("iris", clf, input_example=x[:2]).custom_properties["signature"] == (
        f"float64[-1, 4] -> {clf.predict(x[:2]).dtype}[-1]")  # fmt: skip
    assert registry.register_model("iris", clf, training_sample=x[:50]).custom_properties == {
        "signature": "float64[-1, 4]"}  # fmt: skip
    assert registry.register_model("iris", clf).custom_properties == {"signature": "4 features: [-1, 4]"}
    # one's own wins
    own = registry.register_model("iris", clf, input_example=x[:2], custom_properties={"signature": "mine"})
    assert own.custom_properties["signature"] == "mine" and "input_example" in own.custom_properties
    # refused before anything is stored: no version number spent
    with pytest.raises(InvalidOptionError, match="predict failed on its input example: ValueError: X has 2 features"):
        registry.register_model("iris", clf, input_example=[[1.0, 2.0]])
    with pytest.raises(InvalidOptionError, match="input_example must be a non-empty table of rows"):
        registry.register_model("iris", clf, input_example="sepal")
    assert registry.register_model("iris", clf).number == 6


def test_models_are_listed_and_filtered_by_text_framework_alias_and_state_page_by_page(backend, tmp_path):
    clf, _, _ = iris_model()
    for name in ("iris-a", "iris-b", "wine"):
        registry.register_model(name, clf)
    registry.register_model("net", write(tmp_path / "w.pt", b"weights"), framework="pytorch")
    registry.set_alias("wine", "production", 1)
    registry.archive_model("iris-b")
    assert registry.list_models().total == 4
    assert sorted(m.name for m in registry.list_models("iris")) == ["iris-a", "iris-b"]
    assert [m.name for m in registry.list_models(framework="pytorch")] == ["net"]
    assert [m.name for m in registry.list_models(alias="production")] == ["wine"]
    assert [m.name for m in registry.list_models(state="LIVE", order_by="name", descending=False)] == ["iris-a", "net", "wine"]
    first = registry.list_models(order_by="name", descending=False, limit=3)
    assert [m.name for m in first] == ["iris-a", "iris-b", "net"] and first.next_offset == 3
    rest = registry.list_models(order_by="name", descending=False, limit=3, offset=first.next_offset)
    assert [m.name for m in rest] == ["wine"] and rest.next_offset is None
    registry.update_model("wine", description="Vin rouge, servi au café")
    assert [m.name for m in registry.list_models("café")] == ["wine"]  # description too, not only ASCII
    assert [m.name for m in registry.list_models("ROUGE")] == ["wine"]
    wine = registry.list_models("wine").items[0]
    assert (wine.latest_version, wine.aliases, wine.frameworks) == (1, {"production": 1}, ["sklearn"])


def test_versions_are_searched_by_metric_ranges_text_and_alias_and_sorted_by_a_metric(backend):
    clf, _, _ = iris_model()
    for accuracy in (0.81, 0.95, 0.9, 0.7):
        registry.register_model("iris", clf, metrics={"accuracy": accuracy, "loss": 1 - accuracy})
    registry.register_model("wine", clf, metrics={"accuracy": 0.99}, description="red wine")
    registry.register_model("rose", clf)
    registry.set_alias("iris", "production", 3)
    good = registry.search_versions(metrics={"accuracy": (0.85, None)}, order_by="metric:accuracy")
    assert [(v.model, v.number) for v in good] == [("wine", 1), ("iris", 2), ("iris", 3)] and good.total == 3
    middle = registry.search_versions(metrics={"accuracy": (0.8, 0.92), "loss": (None, 0.15)})
    assert [v.ref for v in middle] == ["iris:3"]
    by_metric_asc = registry.search_versions(model="iris", order_by="metric:accuracy", descending=False)
    assert [v.number for v in by_metric_asc] == [4, 1, 3, 2]
    ranked = registry.search_versions(order_by="metric:accuracy")
    assert ranked.items[-1].model == "rose"  # no metric: last
    assert [v.ref for v in registry.search_versions("wine")] == ["wine:1"]
    assert [v.ref for v in registry.search_versions("RED")] == ["wine:1"]  # description, any case
    assert [v.ref for v in registry.search_versions(alias="production")] == ["iris:3"]
    assert [v.number for v in registry.search_versions(model="iris", order_by="number")] == [4, 3, 2, 1]
    page = registry.search_versions(model="iris", order_by="number", descending=False, limit=3, offset=2)
    assert [v.number for v in page] == [3, 4] and page.total == 4 and page.next_offset is None
    assert [v.number for v in registry.list_versions("iris")] == [4, 3, 2, 1]
    with pytest.raises(ModelNotFoundError):
        registry.list_versions("tulip")


def test_a_finished_job_registers_its_output_with_its_metrics_and_lineage_in_one_call(backend):
    clf, x, y = iris_model()
    import io

    import joblib

    buf = io.BytesIO()
    joblib.dump(clf, buf)
    job = finished_job(
        outputs={"model.joblib": buf.getvalue()},
        metrics=[{"time": 1.0, "step": 0, "accuracy": 0.5}, {"time": 2.0, "step": 1, "accuracy": 0.96, "loss": 0.1}],
        notebook="work/iris.ipynb",
        cell="clf.fit(x, y)\nkfjupyter.report(accuracy=...)",
    )
    v = job.register_model("iris", aliases="staging")
    assert (v.number, v.framework, v.aliases) == (1, "sklearn", ["staging"])
    assert v.metrics == {"accuracy": 0.96, "loss": 0.1}
    lineage = registry.get_version("iris@staging").lineage
    assert lineage["job_id"] == job.id and lineage["job_kind"] == "train" and lineage["job_name"] == "trainer"
    assert lineage["notebook"] == "work/iris.ipynb" and lineage["cell"].startswith("clf.fit(x, y)")
    assert (kfjupyter.load_model("iris@staging").predict(x) == clf.predict(x)).all()
    assert [v.ref for v in registry.search_versions(job_id=job.id)] == ["iris:1"]
    # explicit metrics win; a job id works as well as the handle
    v2 = registry.register_model("iris", "model.joblib", job=job.id, metrics={"accuracy": 1.0})
    assert v2.metrics == {"accuracy": 1.0} and v2.lineage["job_id"] == job.id


def test_a_job_without_outputs_says_what_to_pass(backend):
    job = finished_job(outputs={})
    with pytest.raises(InvalidOptionError, match="saved no outputs"):
        job.register_model("iris")
    with pytest.raises(InvalidOptionError, match="no file or folder"):
        registry.register_model("iris", "/nonexistent/model.pkl")
    with pytest.raises(InvalidOptionError, match="invalid model name"):
        registry.register_model("../iris", b"x")
    assert registry.list_models().total == 0


def test_registry_tables_are_created_wherever_the_workspace_is_opened(local_backend):
    from sqlalchemy import inspect

    from kfjupyter.store import get_workspace

    names = set(inspect(get_workspace().engine).get_table_names())
    assert {"jobs", "registry_models", "registry_versions", "registry_artifacts", "registry_metrics",
            "registry_aliases", "registry_alias_events"} <= names
