"""Analysis and follow-ups of a study: parameter importances, retraining with the best params."""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter.errors import InvalidOptionError
from kfjupyter.tuning.spec import TuneSpec
from kfjupyter.tuning.space import SearchSpace
from kfjupyter.tuning.study import param_importances

pytestmark = pytest.mark.timeout(120)

CELL = """
x = kfjupyter.param("x", low=-3.0, high=3.0)
noise = kfjupyter.param("noise", low=0.0, high=0.01)
kfjupyter.report(step=0, loss=(x - 1.0) ** 2 + noise)
print("params", x, noise)
"""


def _spec() -> TuneSpec:
    space = SearchSpace.from_dict({
        "x": {"name": "x", "type": "double", "low": -3.0, "high": 3.0},
        "noise": {"name": "noise", "type": "double", "low": 0.0, "high": 0.01},
    })  # fmt: skip
    return TuneSpec(objective="loss", space=space)


def _trial(n, x, noise, state="COMPLETE"):
    return {"number": n, "state": state, "value": (x - 1) ** 2 + noise if state == "COMPLETE" else None,
            "params": {"x": x, "noise": noise}}  # fmt: skip


def test_importances_name_the_param_that_drives_the_objective():
    xs = [-3, -2, -1, 0, 0.5, 1, 1.5, 2, 2.5, 3]
    trials = [_trial(i, x, (i % 3) * 0.003) for i, x in enumerate(xs)]
    trials.append(_trial(10, 0.0, 0.0, state="PRUNED"))
    out = param_importances(trials, _spec())
    assert out["message"] is None and out["trials"] == 10
    assert list(out["importances"]) == ["x", "noise"]  # most important first
    assert out["importances"]["x"] > 0.8
    assert sum(out["importances"].values()) == pytest.approx(1.0)


def test_importances_with_too_few_trials_say_why_instead_of_failing():
    out = param_importances([_trial(0, 1.0, 0.0), _trial(1, 2.0, 0.0, state="FAIL")], _spec())
    assert out["importances"] == {}
    assert "at least 3 complete trials" in out["message"] and "has 1" in out["message"]


def test_a_real_study_gives_importances_and_retrains_with_its_best_params(workdir):
    study = kfjupyter.tune(CELL, "loss", trials=6, parallel=2, algorithm="random", seed=1, wait=True)
    assert study.status == st.SUCCEEDED, study.error
    out = study.param_importances()
    assert out["trials"] == 6 and set(out["importances"]) == {"x", "noise"}
    best = study.best_params
    job = study.retrain_best(wait=True)
    assert job.kind == "train" and job.status == st.SUCCEEDED, job.error
    # the cell ran once more with kfjupyter.param(...) returning the best trial's values
    printed = job.logs()
    assert f"params {best['x']!r} {best['noise']!r}" in printed, printed
    assert job.metrics()[-1]["loss"] == pytest.approx(study.best_value)
    from kfjupyter.tracking.model import get_run

    run = get_run(job.id)
    assert best.items() <= run.params.items() and run.source_run == study.id


def test_retrain_before_any_complete_trial_is_refused(workdir):
    study = kfjupyter.tune("kfjupyter.param('x', low=0.0, high=1.0)\nraise SystemExit(3)\nkfjupyter.report(loss=1)",
                           "loss", trials=1, max_failed=0, wait=False)  # fmt: skip
    study.wait(raise_on_failure=False)
    with pytest.raises(InvalidOptionError, match="no complete trial"):
        study.retrain_best()


SAVING_CELL = """
import json, os
x = kfjupyter.param("x", low=-3.0, high=3.0)
with open(os.path.join(kfjupyter.output_dir(), "model.json"), "w") as fh:
    json.dump({"x": x}, fh)
kfjupyter.report(step=0, loss=(x - 1.0) ** 2)
"""


def test_register_the_best_registers_what_the_best_trial_saved_with_its_params_and_lineage(workdir):
    import json

    study = kfjupyter.tune(SAVING_CELL, "loss", trials=4, parallel=2, algorithm="random", seed=3, name="saver",
                           wait=True)  # fmt: skip
    assert study.status == st.SUCCEEDED, study.error
    best = study.best_trial
    version = study.register_best()
    assert (version.model, version.number) == ("saver", 1)
    assert version.params == best["params"] and version.metrics == {"loss": pytest.approx(best["value"])}
    assert version.lineage["study_id"] == study.id and version.custom_properties["trial"] == best["number"]
    # the very file the best trial wrote, not another trial's
    path = kfjupyter.load_model("saver")  # a file of no known format loads as its path
    assert path.name == "model.json" and json.loads(path.read_text()) == {"x": best["params"]["x"]}
    # a study whose trials saved nothing is told what to do instead
    bare = kfjupyter.tune(CELL, "loss", trials=1, algorithm="random", seed=1, wait=True)
    with pytest.raises(InvalidOptionError, match=r"saved no files to kfjupyter.output_dir\(\).*retrain with the best"):
        bare.register_best("bare")


def test_the_views_send_the_extension_its_mime_bundle_with_a_plain_fallback(workdir):
    """A study's display and its widget's charts: the MIME renderer's JSON and plain HTML
    (an SVG with axes) beside it; a finished job's or study's widget shows no Cancel."""
    from kfjupyter.widgets.job_view import JOB_MIME, WidgetJobView
    from kfjupyter.widgets.study_view import STUDY_MIME, WidgetStudyView, headline

    study = kfjupyter.tune(CELL, "loss", trials=3, algorithm="random", seed=2, name="bundle", user_ns={}, wait=True)
    bundle = study._repr_mimebundle_()
    assert bundle[STUDY_MIME]["id"] == study.id and len(bundle[STUDY_MIME]["trials"]) == 3
    assert bundle[STUDY_MIME]["space"]["x"]["type"] == "double"
    html = bundle["text/html"]
    assert "<svg" in html and 'class="xtick"' in html and 'class="legend"' in html and ">trial<" in html
    assert "3/3 trials done (3 complete), 0 running" in html
    assert bundle["text/plain"].startswith("study ")
    assert "3/3 trials done (3 complete), 0 running" in headline(study, study.trials)

    view = WidgetStudyView(study)
    view.refresh()
    (out,) = view.chart.outputs
    assert out["data"][STUDY_MIME]["status"] == st.SUCCEEDED and "<svg" in out["data"]["text/html"]
    assert view.cancel_button.layout.display == "none"

    job = study.retrain_best(wait=True)
    jview = WidgetJobView(job)
    jview.refresh()
    (out,) = jview.chart.outputs
    payload = out["data"][JOB_MIME]
    assert payload["id"] == job.id and payload["metrics"][-1]["loss"] == pytest.approx(study.best_value)
    assert payload["channels"] and payload["channels"][0]["rank"] == 0
    assert 'class="ytick"' in out["data"]["text/html"] and "<polyline" not in out["data"]["text/html"]  # one point: a dot
    assert jview.cancel_button.layout.display == "none"
