"""Tuning on Kubernetes: Katib Experiments, checked by the product and by the fake API server.

The fake (tests/fake_k8s.py) validates every Experiment with its own code (jsonschema on
the copied katib-swagger.json, and Katib's webhook rules). No Katib controller runs: the
tests play it — they pick each trial's assignments and let the fake run the trial's
workload, then read the Study back.
"""

from __future__ import annotations

import copy
import re

import pytest
from fake_k8s import ApiError, ExperimentValidator, TrainJobValidator, fake_k8s, fake_k8s_manual  # noqa: F401
from kubernetes.client.exceptions import ApiException

import kfjupyter
from conftest import wait_for
from kfjupyter import status as st
from kfjupyter.errors import InvalidOptionError
from kfjupyter.k8s.client import connect
from kfjupyter.k8s.schema import ManifestError
from kfjupyter.tuning import katib
from kfjupyter.tuning.space import ParamSpec, SearchSpace
from kfjupyter.tuning.spec import TuneSpec

pytestmark = pytest.mark.timeout(120)

SPACE = SearchSpace(
    lr=ParamSpec.declare("lr", 1e-4, 1e-1, log=True),
    layers=ParamSpec.declare("layers", 1, 4),
    dropout=ParamSpec.declare("dropout", 0.0, 0.5, step=0.1),
    optimizer=ParamSpec.declare("optimizer", choices=["sgd", "adam"]),
    batch=ParamSpec.declare("batch", choices=[32, 64, 128]),
)
ITEMS = [{"key": "program.py", "path": "program.py"}, {"key": "kf_bootstrap.py", "path": "kf_bootstrap.py"}]


def spec(**changes) -> TuneSpec:
    fields = dict(objective="val_loss", space=SPACE, trials=12, parallel=3, backend="kubernetes")
    fields.update(changes)
    return TuneSpec(**fields)


SPECS = {
    "batch job, tpe": spec(),
    "distributed trials (TrainJob)": spec(workers_per_trial=2, cpu="2", memory="4Gi"),
    "grid, maximize, median stopping": spec(
        algorithm="grid", direction="maximize", early_stopping="median",
        space=SearchSpace({n: p for n, p in SPACE.items() if n != "lr"}),
    ),
    "seeded cmaes with a gpu and an image": spec(algorithm="cmaes", seed=7, gpus=1, image="ghcr.io/me/img:1"),
    "sobol, latest value": spec(algorithm="sobol", strategy="latest", env={"MY_FLAG": "1"}),
}


@pytest.mark.parametrize("tune_spec", SPECS.values(), ids=SPECS.keys())
def test_experiments_validate_against_the_katib_schema_in_the_product_and_the_fake(tune_spec):
    manifest = katib.experiment_manifest("study-a1b2c", "team-a", tune_spec, ITEMS)
    katib.validate_experiment(manifest)
    ExperimentValidator(TrainJobValidator()).admit(manifest)  # independent check
    spec_ = manifest["spec"]
    assert spec_["parallelTrialCount"] <= spec_["maxTrialCount"]
    for p in spec_["parameters"]:  # one to one with the declared space, values as text
        declared = tune_spec.space[p["name"]]
        assert p["parameterType"] == declared.type
        assert all(isinstance(v, str) for v in p["feasibleSpace"].values() if not isinstance(v, list))
        assert all(isinstance(v, str) for v in p["feasibleSpace"].get("list", []))
    assert spec_["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    names = {t["name"] for t in spec_["trialTemplate"]["trialParameters"]}
    assert set(re.findall(r"\$\{trialParameters\.(\w+)\}", str(spec_["trialTemplate"]["trialSpec"]))) == names


def test_the_search_space_maps_one_to_one_onto_katib_parameters():
    params = {p["name"]: p for p in katib.experiment_manifest("s-a1b2c", "ns", spec(), ITEMS)["spec"]["parameters"]}
    assert params["lr"] == {"name": "lr", "parameterType": "double",
                            "feasibleSpace": {"min": "0.0001", "max": "0.1", "distribution": "logUniform"}}  # fmt: skip
    assert params["layers"] == {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "4"}}
    assert params["dropout"]["feasibleSpace"] == {"min": "0.0", "max": "0.5", "step": "0.1"}
    assert params["optimizer"] == {"name": "optimizer", "parameterType": "categorical",
                                   "feasibleSpace": {"list": ["sgd", "adam"]}}  # fmt: skip
    assert params["batch"]["parameterType"] == "discrete" and params["batch"]["feasibleSpace"] == {"list": ["32", "64", "128"]}


def _mutate(path: str, value):
    def apply(manifest):
        node = manifest
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
        return manifest

    return apply


BROKEN = {
    "name over 40 characters": _mutate("metadata.name", "a" * 41),
    "parallel over max trials": _mutate("spec.parallelTrialCount", 13),
    "a feasibleSpace number that is not text": _mutate("spec.parameters.0.feasibleSpace.min", 0.0001),
    "an unknown parameter type": _mutate("spec.parameters.0.parameterType", "float"),
    "a placeholder no trial parameter fills": _mutate("spec.trialTemplate.trialSpec.spec.backoffLimit", "${trialParameters.nope}"),
    "a batch Job field Katib cannot convert": _mutate("spec.trialTemplate.trialSpec.spec.template.spec.containers.0.comand", ["x"]),
    "an unknown objective type": _mutate("spec.objective.type", "minimise"),
}


@pytest.mark.parametrize("mutation", BROKEN.values(), ids=BROKEN.keys())
def test_the_product_and_the_fake_reject_the_same_broken_experiments(mutation):
    manifest = mutation(katib.experiment_manifest("study-a1b2c", "team-a", spec(), ITEMS))
    with pytest.raises(ManifestError):
        katib.validate_experiment(manifest)
    with pytest.raises(ApiError) as refused:
        ExperimentValidator(TrainJobValidator()).admit(manifest)
    assert refused.value.code == 422


def test_the_fake_api_server_answers_an_invalid_experiment_with_422(fake_k8s):
    manifest = katib.experiment_manifest("study-a1b2c", "team-a", spec(), ITEMS)
    manifest["spec"]["parallelTrialCount"] = 20
    clients = connect()
    with pytest.raises(ApiException) as refused:
        clients.custom.create_namespaced_custom_object("kubeflow.org", "v1beta1", "team-a", "experiments", manifest)
    assert refused.value.status == 422 and "parallelTrialCount" in refused.value.body


CELL = """import time
x = kfjupyter.param("x", low=-3.0, high=3.0)
opt = kfjupyter.param("opt", choices=["sgd", "adam"])
for epoch in range(3):
    kfjupyter.report(step=epoch, loss=(x - 1) ** 2 + (opt == "sgd") + 1.0 / (epoch + 1))
"""


def test_a_study_on_the_fake_cluster_is_mapped_back_to_the_study_view(fake_k8s, workdir):
    study = kfjupyter.tune(CELL, "loss", trials=3, parallel=2, backend="kubernetes", name="remote", user_ns={})
    assert study.status == st.PENDING
    experiment = fake_k8s.get("experiments", "team-a", study.id)
    assert experiment["spec"]["maxTrialCount"] == 3
    # Katib's part, played here: three suggestions, each trial run as its batch Job
    for x, opt in (("0.5", "adam"), ("1.0", "sgd"), ("2.5", "adam")):
        trial = fake_k8s.run_trial("team-a", study.id, {"x": x, "opt": opt})
        assert [c["type"] for c in trial["status"]["conditions"]][-1] == "Succeeded"
    assert study.status == st.SUCCEEDED
    # trials are numbered by creation time (ties, within a second, by name)
    rows = sorted(study.trials, key=lambda r: r["params"]["x"])
    assert [(r["params"]["x"], r["params"]["opt"], r["state"]) for r in rows] == [
        (0.5, "adam", "COMPLETE"), (1.0, "sgd", "COMPLETE"), (2.5, "adam", "COMPLETE")]  # fmt: skip
    assert sorted(r["number"] for r in rows) == [0, 1, 2]
    # the objective is the min of the reported values (Katib's metricStrategies "min")
    assert rows[0]["value"] == pytest.approx(0.25 + 1 / 3)
    assert study.best_params == {"x": 0.5, "opt": "adam"}  # currentOptimalTrial
    assert study.best_value == pytest.approx(0.25 + 1 / 3)
    assert sorted(study.trials_dataframe()["params_opt"]) == ["adam", "adam", "sgd"]
    # what the trial printed: Katib's collector read timestamped name=value lines
    log = study.trial_log(rows[0]["number"])
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z step=2 loss=", log, re.M), log


def test_cancel_deletes_the_experiment_and_its_configmap(fake_k8s_manual, workdir):
    study = kfjupyter.tune(CELL, "loss", trials=4, backend="kubernetes", name="stop-me", user_ns={})
    fake_k8s_manual.add_trial("team-a", study.id, {"x": "1.0", "opt": "adam"}, "Running")
    fake_k8s_manual.update_experiment("team-a", study.id)
    assert study.status == st.RUNNING
    study.cancel()  # a foreground delete: Cancelling until the garbage collector is done
    wait_for(lambda: study.status == st.CANCELLED, timeout=10)
    assert fake_k8s_manual.get("experiments", "team-a", study.id) is None
    assert fake_k8s_manual.get("configmaps", "team-a", f"{study.id}-bundle") is None
    assert fake_k8s_manual.list("trials") == []  # owned by the Experiment: collected


def test_trial_states_and_failures_map_back(fake_k8s_manual, workdir):
    fake = fake_k8s_manual
    study = kfjupyter.tune(CELL, "loss", trials=4, max_failed=1, backend="kubernetes", name="states", user_ns={})
    exp = study.id
    fake.add_trial("team-a", exp, {"x": "1.0", "opt": "adam"}, name=f"{exp}-a", condition="Succeeded", metrics={"loss": ("0.33", "1.0", "0.33")})
    fake.add_trial("team-a", exp, {"x": "2.0", "opt": "sgd"}, name=f"{exp}-b", condition="EarlyStopped", metrics={"loss": ("2.5", "3.0", "2.5")})
    fake.add_trial("team-a", exp, {"x": "0.0", "opt": "sgd"}, name=f"{exp}-c", condition="Running")
    fake.update_experiment("team-a", exp)
    assert study.status == st.RUNNING
    assert [r["state"] for r in study.trials] == ["COMPLETE", "PRUNED", "RUNNING"]
    fake.add_trial("team-a", exp, {"x": "0.1", "opt": "sgd"}, name=f"{exp}-d", condition="MetricsUnavailable", metrics={"loss": ("unavailable",) * 3})
    fake.add_trial("team-a", exp, {"x": "0.2", "opt": "sgd"}, name=f"{exp}-e", condition="Failed", message="pod OOMKilled")
    fake.update_experiment("team-a", exp)
    assert study.status == st.FAILED
    rows = study.trials
    assert "the objective 'loss' was never reported" in rows[3]["error"]
    assert rows[4]["state"] == "FAIL" and rows[4]["error"] == "pod OOMKilled"
    assert study.best_params == {"x": 1.0, "opt": "adam"} and study.best_value == pytest.approx(0.33)


def test_local_only_options_are_refused_for_kubernetes(fake_k8s_manual, workdir):
    with pytest.raises(InvalidOptionError, match="hyperband"):
        kfjupyter.tune(CELL, "loss", early_stopping="hyperband", backend="kubernetes", user_ns={})
    assert fake_k8s_manual.list("experiments") == [] and kfjupyter.jobs.count() == 0


def test_the_experiment_is_validated_before_any_request(fake_k8s_manual, workdir, monkeypatch):
    original = katib.experiment_manifest

    def broken(*args, **kwargs):
        manifest = copy.deepcopy(original(*args, **kwargs))
        manifest["spec"]["maxFailedTrialCount"] = 99
        return manifest

    monkeypatch.setattr(katib, "experiment_manifest", broken)
    before = len(fake_k8s_manual.requests)
    with pytest.raises(ManifestError, match="maxFailedTrialCount"):
        kfjupyter.tune(CELL, "loss", trials=3, backend="kubernetes", user_ns={})
    assert len(fake_k8s_manual.requests) == before
    assert kfjupyter.jobs.count() == 0
