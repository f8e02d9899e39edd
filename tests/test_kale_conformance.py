"""kfjupyter reads a Kale notebook as Kale does: Kale's own notebook processor (kubeflow-kale
2.3, installed with the test extras) is the oracle.

One small notebook per rule of Kale's tag language; for each, the DAG Kale makes of it
(steps and their cells, explicit edges, parameters, each step's inputs and parameters,
which step reports each metric, the pod settings) and the DAG kfjupyter makes are equal.
Where kfjupyter deliberately differs (README, "Where kfjupyter differs from Kale"), the
test says so and holds kfjupyter's side of it.
"""

from __future__ import annotations

import pytest

from kfjupyter.pipelines import PipelineError, from_notebook

from kale_oracle import ancestors, code, kale_dag, kfjupyter_dag, markdown, write

pytest.importorskip("kale", reason="kubeflow-kale is one of the test extras")

#: name → (cells, Kale metadata): each a rule of Kale's, both readers must agree on.
RULES = {
    # an untagged code cell continues the last step before it, skipped cells in between
    "untagged_after_skip_continues_the_step": [
        code("a = 1", "step:load"),
        code("import matplotlib.pyplot as plt\nplt.plot([a])", "skip"),
        code("a = a + 10"),
        code("b = a * 2", "step:use", "prev:load"),
    ],
    # step: with an empty name is an untagged cell: it continues the step above
    "empty_step_name_continues": [
        code("x = 1", "step:first"),
        code("x += 1", "step:"),
        code("y = x", "step:second", "prev:first"),
    ],
    # skip wins over prev: (and over step:)
    "skip_wins_over_prev": [
        code("x = 1", "step:first"),
        code("print('debug')", "skip", "prev:first"),
        code("print('more debug')", "step:nothing", "skip"),
        code("y = x", "step:second", "prev:first"),
    ],
    # a pipeline-metrics name that is a pipeline parameter is reported
    "metric_that_is_a_parameter": [
        code("lr = 0.1\nepochs = 3", "pipeline-parameters"),
        code("loss = lr * epochs", "step:train"),
        code("print(loss)\nprint(lr)", "pipeline-metrics"),
    ],
    # a step name used again on a later cell merges its code into that step
    "step_name_used_again_merges": [
        code("x = 1", "step:a"),
        code("y = x + 1", "step:b", "prev:a"),
        code("x = x * 100", "step:a"),
        code("z = x + y", "step:c", "prev:b"),
    ],
    # step names Kale accepts: a leading or trailing underscore
    "underscore_step_names": [
        code("x = 1", "step:_load"),
        code("y = x", "step:train_", "prev:_load"),
    ],
    # annotation: and label: tags go on the step's pod; secret: becomes an env var
    "pod_annotations_labels_secrets": [
        code("x = 1", "step:a", "annotation:team.io/owner:ana", "label:team:vision",
             "secret:db-creds:password:DB_PASSWORD"),
        code("y = x", "step:b", "prev:a", "label:tier:gpu"),
    ],
    # Kale 2.3's cache:enabled|disabled and report:, image:, limit:
    "cache_report_image_limit": [
        code("x = 1", "step:a", "cache:disabled", "report:disabled", "image:python:3.12-slim", "limit:cpu:2"),
        code("y = x", "step:b", "prev:a", "cache:enabled"),
    ],
    # imports, functions and parameters cells take the untagged cells after them
    "continuations_of_imports_functions_parameters": [
        markdown("# A notebook"),
        code("import math", "imports"),
        code("import json"),
        code("def double(v):\n    return 2 * v", "functions"),
        code("def half(v):\n    return v / 2"),
        code("n = 4", "pipeline-parameters"),
        code("m = 'x'"),
        code("a = double(n) + math.pi", "step:a"),
        code("b = half(a)\ns = json.dumps(m)", "step:b", "prev:a"),
    ],
    # the first kind tag decides the cell
    "first_kind_tag_decides": [
        code("import os", "imports", "skip"),
        code("x = os.sep", "step:a"),
        code("print(x)", "skip", "imports"),
        code("y = x", "step:b", "prev:a"),
    ],
    # a value comes from the nearest ancestor that names it; parallel branches keep their own
    "nearest_ancestor_supplies": [
        code("data = list(range(10))", "step:load"),
        code("data = [d * 2 for d in data]", "step:clean", "prev:load"),
        code("m1 = sum(data)", "step:model_a", "prev:clean"),
        code("m2 = max(data)", "step:model_b", "prev:clean"),
        code("best = max(m1, m2)", "step:results", "prev:model_a", "prev:model_b"),
        code("print(best)", "pipeline-metrics"),
    ],
    # untagged cells before the first tagged cell are not part of the pipeline
    "leading_untagged_cells_are_left_out": [
        code("print('setup')"),
        code("x = 1", "step:a"),
        code("y = x", "step:b", "prev:a"),
    ],
    # the volumes and steps_defaults of the notebook metadata
    "volumes_and_steps_defaults": [
        code("x = 1", "step:a", "label:owner:me"),
        code("y = x", "step:b", "prev:a"),
    ],
}

METADATA = {
    "volumes_and_steps_defaults": dict(
        volumes=[{"name": "workspace-pvc", "mount_point": "/home/jovyan", "type": "pvc", "annotations": [],
                  "size": 1, "size_type": "Gi"}],
        steps_defaults=["label:team:vision", "annotation:owner:ana", "limit:memory:1Gi"],
        base_image="python:3.11-slim",
        security_context={"enabled": True, "run_as_user": 1000, "run_as_group": 100, "run_as_non_root": True},
    ),
}


def _compare(kale: dict, ours: dict) -> None:
    for key in ("steps", "edges", "parameters", "inputs", "metrics", "volumes"):
        assert ours[key] == kale[key], key
    # a step gets the parameters it reads; Kale also hands it those of an ancestor whose
    # functions it calls (a difference the README lists)
    for step, names in kale["step_parameters"].items():
        assert ours["step_parameters"][step] <= names, step
    for step, pod in kale["pods"].items():
        mine = ours["pods"][step]
        assert mine["labels"] == pod["labels"] and mine["annotations"] == pod["annotations"], step
        assert mine["secrets"] == pod["secrets"] and mine["cache"] == pod["cache"], step
        if pod["image"]:
            assert mine["image"] == pod["image"], step
    # kfjupyter also draws data edges; each is an order Kale's prev: edges already give
    assert ours["data_edges"] <= ancestors(kale["edges"])


@pytest.mark.parametrize("rule", sorted(RULES))
def test_kfjupyter_reads_the_notebook_as_kale_does(rule, tmp_path):
    path = write(tmp_path, rule, RULES[rule], **METADATA.get(rule, {}))
    _compare(kale_dag(path), kfjupyter_dag(path))


def test_a_notebook_cell_brings_in_another_notebook_as_kale_composes_it(tmp_path):
    """``notebook:NAME`` (Kale 2.3's sub-pipelines): the referenced notebook's steps run
    where the cell stands, in reading order; its parameters give way to this notebook's.
    kfjupyter flattens it into steps NAME_STEP; the order of every pair of steps is Kale's."""
    write(tmp_path, "features", [code("import math", "imports"), code("k = 3", "pipeline-parameters"),
                                 code("feat = [math.sqrt(v) * k for v in raw]", "step:featurize"),
                                 code("norm = [f / max(feat) for f in feat]", "step:normalise", "prev:featurize")])
    reference = code("# the features notebook", "notebook:features")
    reference.metadata["notebook_path"] = "features.ipynb"
    path = write(tmp_path, "composed", [code("k = 2", "pipeline-parameters"), code("raw = [1.0, 4.0, 9.0]", "step:load"),
                                        reference, code("total = sum(norm)", "step:report")])
    kale, ours = kale_dag(path), kfjupyter_dag(path)
    assert ours["steps"] == kale["steps"]
    assert ours["inputs"] == kale["inputs"] and ours["parameters"] == kale["parameters"] == {"k": 2}
    assert ancestors(ours["data_edges"]) == ancestors(kale["edges"])


#: Notebooks both readers refuse: (cells, what kfjupyter's message says).
REFUSED = {
    "unknown_tag": ([code("x = 1", "step:a"), code("y = x", "stpe:b")], "unknown tag 'stpe:b'; did you mean 'step:b'?"),
    "another_unknown_tag": ([code("x = 1", "step:a", "foo:bar")], "unknown tag 'foo:bar'"),
    "two_step_names": ([code("x = 1", "step:a", "step:b")], "2 step tags"),
    "prev_without_step": ([code("x = 1", "step:a"), code("y = x", "prev:a")], "needs a step:NAME tag"),
    "label_without_step": ([code("x = 1", "step:a"), code("y = x", "label:a:b")], "needs a step:NAME tag"),
    "step_after_metrics": ([code("x = 1", "step:a"), code("print(x)", "pipeline-metrics"),
                            code("y = 2", "step:b")], "must be at the end of the notebook"),
    "capitalised_step_name": ([code("x = 1", "step:Train")], "invalid step name 'Train'"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_both_refuse_the_same_notebooks(case, tmp_path):
    cells, message = REFUSED[case]
    path = write(tmp_path, case, cells)
    with pytest.raises(Exception):
        kale_dag(path)
    with pytest.raises(PipelineError, match=message.replace("?", r"\?").replace("(", r"\(")):
        from_notebook(path)


# ---------------------------------------------------------------------------------------
# The deliberate differences (README: "Where kfjupyter differs from Kale")
# ---------------------------------------------------------------------------------------


def test_difference_a_notebook_without_tags_is_an_error_that_says_how_to_tag(tmp_path):
    path = write(tmp_path, "untagged", [code("x = 1"), code("y = x")])
    assert kale_dag(path)["steps"] == {}  # Kale: an empty pipeline
    with pytest.raises(PipelineError, match="this notebook has no pipeline tags: tag the cells of each step step:NAME"):
        from_notebook(path)


def test_difference_a_value_from_a_step_that_is_no_ancestor_makes_a_data_edge(tmp_path):
    """Kale leaves the value out (a NameError in the pod); kfjupyter runs the step after
    the one that assigns it."""
    path = write(tmp_path, "data_edge", [code("x = 1", "step:a"), code("y = x + 1", "step:b")])
    assert kale_dag(path)["inputs"]["b"] == set()
    ours = kfjupyter_dag(path)
    assert ours["inputs"]["b"] == {"x"} and ours["data_edges"] == {("a", "b")}


def test_difference_other_tools_tags_are_ignored(tmp_path):
    """papermill's parameters and the display tags of nbconvert / Jupyter Book: Kale refuses them."""
    path = write(tmp_path, "foreign", [code("n = 1", "pipeline-parameters", "parameters"),
                                       code("x = n", "step:a", "hide-input")])
    with pytest.raises(Exception):
        kale_dag(path)
    assert kfjupyter_dag(path)["steps"] == {"a": "x = n"}


def test_difference_the_older_generation_block_and_docker_image_still_read(tmp_path):
    path = write(tmp_path, "legacy", [code("x = 1", "block:a"), code("y = x", "block:b", "prev:a")],
                 docker_image="python:3.10")
    with pytest.raises(Exception):
        kale_dag(path)  # Kale 2.3 refuses block: and docker_image
    p = from_notebook(path)
    assert list(p.steps) == ["a", "b"] and p.steps["a"].image == "python:3.10"


def test_difference_prev_may_name_a_later_step(tmp_path):
    path = write(tmp_path, "later_prev", [code("y = x", "step:b", "prev:a"), code("x = 1", "step:a")])
    with pytest.raises(Exception):
        kale_dag(path)  # "Step a does not exist"
    assert list(from_notebook(path).steps) == ["a", "b"]


def test_difference_a_steps_own_tag_wins_over_steps_defaults(tmp_path):
    """Kale's docstring says a step keeps its own value; its code lets the default win."""
    path = write(tmp_path, "defaults", [code("x = 1", "step:a", "label:team:own")], steps_defaults=["label:team:vision"])
    assert kale_dag(path)["pods"]["a"]["labels"] == {"team": "vision"}
    assert from_notebook(path).steps["a"].labels == {"team": "own"}


def test_difference_a_step_gets_only_the_parameters_it_reads(tmp_path):
    path = write(tmp_path, "params", [code("def half(v):\n    return v / 2", "functions"), code("n = 4", "pipeline-parameters"),
                                      code("a = n", "step:a"), code("b = half(a)", "step:b", "prev:a")])
    assert kale_dag(path)["step_parameters"]["b"] == {"n"}
    assert from_notebook(path).steps["b"].parameters == []


def test_difference_limits_are_checked_as_kubernetes_checks_them(tmp_path):
    path = write(tmp_path, "limits", [code("x = 1", "step:a", "limit:memory:2GB")])
    kale_dag(path)  # Kale accepts it; the cluster would refuse the pod
    with pytest.raises(PipelineError, match="'2GB' is not a Kubernetes quantity"):
        from_notebook(path)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_compiled_ir_of_each_conformance_notebook_loads_in_the_kfp_sdk(rule, tmp_path):
    """Kubeflow Pipelines output: the IR loads back in the kfp SDK; pipeline metrics are
    ``system.Metrics``; labels, annotations, secrets and volumes are in the Kubernetes
    platform spec, where kfp-kubernetes puts them."""
    pytest.importorskip("kfp")
    import warnings

    import yaml
    from kfp import components

    from kfjupyter.pipelines import compile_kfp

    path = write(tmp_path, rule, RULES[rule], **METADATA.get(rule, {}))
    pipeline = from_notebook(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = compile_kfp(pipeline)
    components.load_component_from_text(text)
    docs = list(yaml.safe_load_all(text))
    spec, platform = docs[0], (docs[1] if len(docs) > 1 else {})
    outputs = [c.get("outputDefinitions", {}).get("artifacts", {}) for c in spec["components"].values()]
    reporting = [a for a in outputs if any(x["artifactType"]["schemaTitle"] == "system.Metrics" for x in a.values())]
    assert len(reporting) == sum(bool(step.metrics) for step in pipeline.steps.values())
    assert not any("metrics" in k and x["artifactType"]["schemaTitle"] == "system.Artifact" for a in outputs for k, x in a.items())
    executors = (platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {}))
    labels = {k: v for e in executors.values() for k, v in (e.get("podMetadata", {}).get("labels") or {}).items()}
    annotations = {k: v for e in executors.values() for k, v in (e.get("podMetadata", {}).get("annotations") or {}).items()}
    for step in pipeline.steps.values():
        assert step.labels.items() <= labels.items() and step.annotations.items() <= annotations.items()
        for env, secret in step.secrets.items():
            assert any(s.get("secretName") == secret["name"] or s.get("secretNameParameter")
                       for e in executors.values() for s in e.get("secretAsEnv", [])), env
    for volume in pipeline.volumes:
        assert any(m.get("mountPath") == volume["mount_point"] for e in executors.values() for m in e.get("pvcMount", []))
    if pipeline.security_context:  # Kale's security_context, on every step's pod
        assert len(executors) == len(pipeline.steps)
        assert all(e.get("securityContext") == {"runAsUser": "1000", "runAsGroup": "100", "runAsNonRoot": True}
                   or e.get("securityContext", {}).get("runAsUser") in (1000, "1000") for e in executors.values()), executors


def test_compiling_a_step_with_magics_warns_that_its_image_needs_ipython(tmp_path):
    pytest.importorskip("kfp")
    from kfjupyter.pipelines import compile_kfp
    from kfjupyter.pipelines.kfp import KFPCompileWarning

    path = write(tmp_path, "magics", [code("%time x = 1", "step:a"), code("y = x", "step:b", "prev:a")])
    with pytest.warns(KFPCompileWarning, match=r"step a: it runs IPython magics .* needs ipython") as record:
        compile_kfp(from_notebook(path))
    assert not any("step b" in str(w.message) for w in record)
