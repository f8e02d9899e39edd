"""The Kubernetes training backend, against a fake API server that really runs the pods.

`fake_k8s` (tests/fake_k8s.py) speaks the Kubernetes REST API to the official client,
validates TrainJobs with jsonschema on the upstream CRD independently of the product's
validator, and plays Trainer + JobSet + kubelet by running each node's command as a
local process with the PET_* environment of the torch runtime.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import signal
import textwrap
import time
from pathlib import Path

import pytest

import kfjupyter
from fake_k8s import ApiError, TrainJobValidator, fake_k8s, fake_k8s_manual, validate_configmap  # noqa: F401
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

import kfjupyter.runtime.bootstrap
from kfjupyter import status
from kfjupyter.capture.bundle import Bundle, content_hash
from kfjupyter.errors import BackendError, InvalidOptionError, PreflightError
from kfjupyter.k8s import schema
from kfjupyter.k8s.client import connect
from kfjupyter.training.kubernetes import (
    BUNDLE_DIR,
    KubernetesTrainBackend,
    bundle_configmap,
    parse_metric_line,
    trainjob_manifest,
)
from kfjupyter.training.spec import TrainSpec

pytestmark = pytest.mark.timeout(60)
NS = "team-a"  # the namespace of the fake's kubeconfig context
TRAINJOBS = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs"
CONFIGMAPS = "/api/v1/namespaces/team-a/configmaps"


def make_bundle(root: Path, program: str, values: dict | None = None, modules: dict | None = None,
                extra: dict[str, bytes] | None = None) -> Bundle:  # fmt: skip
    """A bundle laid out as the capture code lays it out."""
    root.mkdir(parents=True)
    (root / "program.py").write_text(textwrap.dedent(program))
    shutil.copy(kfjupyter.runtime.bootstrap.__file__, root / "kf_bootstrap.py")
    if values is not None:
        # one pickle per variable, in a pickled dict (the bootstrap's format)
        (root / "values.pkl").write_bytes(pickle.dumps({k: pickle.dumps(v) for k, v in values.items()}))
    for rel, text in {**{f"modules/{k}": v for k, v in (modules or {}).items()}}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    for rel, data in (extra or {}).items():
        (root / rel).write_bytes(data)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    (root / "manifest.json").write_text(json.dumps({"sha256": content_hash(files)}))
    return Bundle(root)


def job_with_bundle(job_dir: Path, program: str) -> Path:
    """A job folder holding a bundle of ``program`` (where the engine looks for it)."""
    make_bundle(job_dir / "bundle", program)
    return job_dir


def unchecked(spec: TrainSpec, **changes) -> TrainSpec:
    """``spec`` with fields changed behind TrainSpec's own validation (as from a stale record)."""
    for key, value in changes.items():
        object.__setattr__(spec, key, value)
    return spec


def api_paths(fake) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in fake.requests]


TRAIN = """
    import torch
    import torch.distributed as dist
    import kfjupyter
    from helpers.maths import halve          # modules/helpers/maths.py: a nested module path

    dist.init_process_group()                # gloo on CPU; rank and world from torchrun's env
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    print(f"rank {rank} of {world}: all_reduce gave {total.item()}, lr {lr}", flush=True)
    for step in range(epochs):
        kfjupyter.report(step=step, loss=halve(1.0) ** step)
    (kfjupyter.output_dir() / f"rank{rank}.txt").write_text("done")
    dist.destroy_process_group()
"""


# --------------------------------------------------------------------------- end to end


def test_two_nodes_train_with_torch_distributed_and_succeed(fake_k8s, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", TRAIN, values={"lr": 0.1, "epochs": 3},
                         modules={"helpers/__init__.py": "", "helpers/maths.py": "def halve(x):\n    return x / 2\n"})  # fmt: skip
    backend = KubernetesTrainBackend()
    info = backend.submit("fit-a1b2c", TrainSpec(name="fit", workers=2, cpu="1", memory="1Gi"), tmp_path)

    assert info["namespace"] == NS and info["trainjob"] == "fit-a1b2c" and info["configmap"] == "fit-a1b2c-bundle"
    assert json.loads(json.dumps(info)) == info
    # The ConfigMap first, then the TrainJob, then the ConfigMap is handed to the TrainJob.
    assert api_paths(fake_k8s)[:3] == [("POST", CONFIGMAPS), ("POST", TRAINJOBS), ("PATCH", f"{CONFIGMAPS}/fit-a1b2c-bundle")]
    trainjob = fake_k8s.get("trainjobs", NS, "fit-a1b2c")
    configmap = fake_k8s.get("configmaps", NS, "fit-a1b2c-bundle")
    assert configmap["metadata"]["ownerReferences"] == [
        {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "name": "fit-a1b2c", "uid": trainjob["metadata"]["uid"]}
    ]
    assert "values.pkl" in configmap["binaryData"] and "program.py" in configmap["data"]
    assert trainjob["spec"]["trainer"]["numNodes"] == 2 and trainjob["spec"]["trainer"]["numProcPerNode"] == 1
    assert (tmp_path / "trainjob.json").exists()

    # Following rank 0's log streams it until the rank ends.
    rank0 = list(backend.read_log("fit-a1b2c", info, "rank-0", follow=True))
    assert "rank 0 of 2: all_reduce gave 3.0, lr 0.1" in rank0, "\n".join(rank0)

    final = backend.wait("fit-a1b2c", info, timeout=45)
    assert final.status == status.SUCCEEDED, final
    assert backend.observe("fit-a1b2c", info).status == status.SUCCEEDED
    rank1 = list(backend.read_log("fit-a1b2c", info, "rank-1"))
    assert "rank 1 of 2: all_reduce gave 3.0, lr 0.1" in rank1
    assert list(backend.read_log("fit-a1b2c", info, "rank-1", tail=2)) == rank1[-2:] == ["step=1 loss=0.5", "step=2 loss=0.25"]

    metrics = backend.read_metrics("fit-a1b2c", info)
    assert [(m["rank"], m["step"], m["loss"]) for m in metrics] == [
        (0, 0, 1.0), (0, 1, 0.5), (0, 2, 0.25), (1, 0, 1.0), (1, 1, 0.5), (1, 2, 0.25)
    ]  # fmt: skip
    assert all(abs(m["time"] - time.time()) < 120 for m in metrics)

    pods = fake_k8s.list("pods", NS, "jobset.sigs.k8s.io/jobset-name=fit-a1b2c")
    assert sorted(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1"]
    assert all(p["metadata"]["labels"]["kfjupyter.io/job-id"] == "fit-a1b2c" for p in pods)


def test_a_crashing_rank_fails_the_job_with_its_traceback(fake_k8s, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", """
        import torch, torch.distributed as dist
        dist.init_process_group()
        def explode():
            raise ValueError("rank 1 exploded")
        if dist.get_rank() == 1:
            explode()
        dist.all_reduce(torch.ones(1))       # rank 0 then loses its peer
    """)  # fmt: skip
    backend = KubernetesTrainBackend()
    info = backend.submit("crash-a1b2c", TrainSpec(name="crash", workers=2), tmp_path)

    final = backend.wait("crash-a1b2c", info, timeout=45)

    assert final.status == status.FAILED
    assert "jobset failed due to one or more job failures" in final.error
    assert "rank 1 (pod crash-a1b2c-node-0-1-" in final.error
    assert "Traceback (most recent call last)" in final.error and 'raise ValueError("rank 1 exploded")' in final.error
    assert final.error.rstrip().splitlines()[-1] in ("ValueError: rank 1 exploded", "(rank 0 failed too)")
    assert "ChildFailedError" not in final.error  # torchrun's own traceback is left out
    assert backend.observe("crash-a1b2c", info).status == status.FAILED


def test_cancel_deletes_the_trainjob_its_configmap_and_processes(fake_k8s, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", """
        import time
        print("ready", flush=True)
        time.sleep(300)
    """)
    backend = KubernetesTrainBackend()
    info = backend.submit("slow-a1b2c", TrainSpec(name="slow", workers=2), tmp_path)
    for line in backend.read_log("slow-a1b2c", info, "rank-1", follow=True):
        if line == "ready":
            break  # closing the stream early is fine
    deadline = time.monotonic() + 20
    while len(fake_k8s.processes()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend.observe("slow-a1b2c", info).status == status.RUNNING
    groups = [p.pid for p in fake_k8s.processes()]  # torchrun leads a process group with its worker
    assert len(groups) == 2

    backend.cancel("slow-a1b2c", info)

    assert fake_k8s.get("trainjobs", NS, "slow-a1b2c") is None
    assert fake_k8s.get("configmaps", NS, "slow-a1b2c-bundle") is None
    assert backend.observe("slow-a1b2c", info).status == status.CANCELLED
    assert backend.wait("slow-a1b2c", info, timeout=5).status == status.CANCELLED
    deadline = time.monotonic() + 15
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_group_alive(g) for g in groups), "torchrun or its workers survived the cancel"
    assert fake_k8s.list("pods", NS) == []
    backend.cancel("slow-a1b2c", info)  # idempotent


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_a_job_asking_for_gpus_the_cluster_lacks_stays_pending_with_the_reason(fake_k8s, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", "print('never runs')\n")
    backend = KubernetesTrainBackend()
    info = backend.submit("gpu-a1b2c", TrainSpec(name="gpu", workers=2, gpus=1), tmp_path)
    deadline = time.monotonic() + 10
    while (obs := backend.observe("gpu-a1b2c", info)).message is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert obs.status == status.PENDING
    assert "Insufficient nvidia.com/gpu" in obs.message
    assert list(backend.read_log("gpu-a1b2c", info, "rank-0")) == []
    limits = fake_k8s.get("trainjobs", NS, "gpu-a1b2c")["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert limits == {"nvidia.com/gpu": 1}


# --------------------------------------------------------------------------- refused before sending


@pytest.mark.parametrize(
    "job_id, changes, problem",
    [
        ("Bad_Name-a1b2c", {}, "invalid job id"),
        ("7up-a1b2c", {}, "metadata.name must match RFC 1035 DNS label format"),  # the CRD's CEL rule
        ("ok-a1b2c", {"env": {"PET_MASTER_PORT": "29500"}}, "spec.trainer.env[0].name: 'PET_MASTER_PORT' is reserved"),
        ("ok-a1b2c", {"memory": "4GB"}, "spec.trainer.resourcesPerNode.limits.memory: '4GB' does not match"),
        ("ok-a1b2c", {"workers": "2"}, "spec.trainer.numNodes: expected integer"),
    ],
)
def test_invalid_jobs_are_refused_before_any_request(fake_k8s, tmp_path, job_id, changes, problem):
    bundle = make_bundle(tmp_path / "bundle", "print('hi')\n")
    spec = unchecked(TrainSpec(name="ok"), **changes)
    with pytest.raises(InvalidOptionError) as refused:
        KubernetesTrainBackend().submit(job_id, spec, tmp_path)
    assert problem in str(refused.value)
    assert fake_k8s.requests == []


def test_train_spec_itself_refuses_reserved_env_and_bad_quantities():
    with pytest.raises(InvalidOptionError, match="PET_MASTER_PORT"):
        TrainSpec(env={"PET_MASTER_PORT": "1"})
    with pytest.raises(InvalidOptionError, match="memory"):
        TrainSpec(memory="lots")


def test_a_bundle_over_one_mebibyte_is_refused_before_sending(fake_k8s, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", "print('hi')\n", extra={"weights.bin": os.urandom(1_100_000)})
    with pytest.raises(PreflightError) as refused:
        KubernetesTrainBackend().submit("big-a1b2c", TrainSpec(name="big"), tmp_path)
    message = str(refused.value)
    assert "ConfigMap 'big-a1b2c-bundle'" in message and "1 MiB" in message and "weights.bin" in message
    assert f"{bundle.size()}" in message or "bytes" in message
    assert isinstance(refused.value, InvalidOptionError) and refused.value.culprit == "weights.bin"
    assert fake_k8s.requests == []


def test_a_failed_trainjob_create_leaves_nothing_behind(fake_k8s, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", "print('hi')\n")
    taken = trainjob_manifest("dup-a1b2c", NS, TrainSpec(name="dup"), [], None)
    taken["spec"]["suspend"] = True
    k8s.CustomObjectsApi(connect().api_client).create_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", taken)
    fake_k8s.requests.clear()

    with pytest.raises(BackendError, match="409.*already exists"):
        KubernetesTrainBackend().submit("dup-a1b2c", TrainSpec(name="dup"), tmp_path)

    assert api_paths(fake_k8s) == [("POST", CONFIGMAPS), ("POST", TRAINJOBS), ("DELETE", f"{CONFIGMAPS}/dup-a1b2c-bundle")]
    assert fake_k8s.list("configmaps", NS) == []


# --------------------------------------------------------------------------- manifests


SPECS = [
    TrainSpec(name="one"),
    TrainSpec(name="two", workers=2, cpu="500m", memory="512Mi"),
    TrainSpec(name="gpus", workers=4, gpus=2, cpu="8", memory="32Gi", image="ghcr.io/me/train:1.0",
              env={"LOG_LEVEL": "debug", "KFJUPYTER_BUNDLE": "/elsewhere"}),
]  # fmt: skip


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_built_manifests_validate_against_the_upstream_crd_twice(spec, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", "print('hi')\n", values={"x": 1},
                         modules={"pkg/__init__.py": "", "pkg/util.py": "X = 1\n", "top.py": ""})  # fmt: skip
    configmap, items = bundle_configmap(f"{spec.name}-a1b2c", NS, bundle.files(), bundle.sha256)
    trainjob = trainjob_manifest(f"{spec.name}-a1b2c", NS, spec, items, bundle.sha256)

    schema.validate_trainjob(trainjob)  # the product's validator
    schema.validate_configmap(configmap)
    stored, warnings = TrainJobValidator().admit(trainjob, strict=True)  # the fake's, independent
    validate_configmap(configmap, strict=True)
    assert warnings == [] and stored["spec"]["trainer"] == trainjob["spec"]["trainer"]

    trainer = trainjob["spec"]["trainer"]
    assert trainjob["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (spec.workers, 1)
    assert trainer["command"] == ["torchrun", f"{BUNDLE_DIR}/kf_bootstrap.py"]
    assert ("image" in trainer) == (spec.image is not None)
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["KFJUPYTER_PRINT_METRICS"] == "1" and env["KFJUPYTER_BUNDLE"] == BUNDLE_DIR
    assert not any(name.startswith("PET_") for name in env)
    # Flat ConfigMap keys; the volume's items put every file back at its path.
    pod = trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert sorted(i["path"] for i in volume["configMap"]["items"]) == sorted(bundle.files())
    assert all("/" not in i["key"] for i in volume["configMap"]["items"])
    keys = {**configmap.get("data", {}), **configmap.get("binaryData", {})}
    assert {i["key"] for i in volume["configMap"]["items"]} == set(keys)
    assert "values.pkl" in configmap["binaryData"]


def _good() -> dict:
    return trainjob_manifest("good-a1b2c", NS, TrainSpec(name="good", workers=2, cpu="1"), [], None)


def _trainer(change):
    def apply(m):
        change(m["spec"]["trainer"])
    return apply


BAD = {
    "numProcPerNode is an integer in v2.3.0": _trainer(lambda t: t.update(numProcPerNode="auto")),
    "reserved env": _trainer(lambda t: t["env"].append({"name": "PET_NODE_RANK", "value": "0"})),
    "duplicate env": _trainer(lambda t: t["env"].append(dict(t["env"][0]))),
    "bad quantity": _trainer(lambda t: t["resourcesPerNode"]["limits"].update(cpu="1 core")),
    "typo in a field": _trainer(lambda t: t.update(numNode=2)),
    "name too long": lambda m: m["metadata"].update(name="x" * 64),
    "name starts with a digit": lambda m: m["metadata"].update(name="1job"),
    "container without a name": lambda m: m["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0].pop("name"),
    "runtimeRef without a name": lambda m: m["spec"]["runtimeRef"].pop("name"),
}  # fmt: skip


@pytest.mark.parametrize("mutation", list(BAD), ids=list(BAD))
def test_the_product_validator_and_the_fake_server_reject_the_same_manifests(mutation):
    manifest = _good()
    BAD[mutation](manifest)
    with pytest.raises(schema.ManifestError):
        schema.validate_trainjob(manifest)
    with pytest.raises(ApiError) as rejected:
        TrainJobValidator().admit(manifest, strict=True)
    assert rejected.value.code in (400, 422)


def test_the_fake_server_answers_schema_invalid_trainjobs_with_422(fake_k8s):
    api = k8s.CustomObjectsApi(connect().api_client)
    create = lambda m, **kw: api.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", m, **kw)  # noqa: E731
    bad = _good()
    bad["spec"]["trainer"]["numProcPerNode"] = "auto"
    bad["spec"]["trainer"]["env"].append({"name": "PET_MASTER_PORT", "value": "1"})
    with pytest.raises(ApiException) as rejected:
        create(bad)
    body = json.loads(rejected.value.body)
    assert rejected.value.status == 422 and body["kind"] == "Status" and body["reason"] == "Invalid"
    fields = {c["field"] for c in body["details"]["causes"]}
    reserved = f"spec.trainer.env[{len(bad['spec']['trainer']['env']) - 1}].name"
    assert {"spec.trainer.numProcPerNode", reserved} <= fields, fields

    typo = _good()
    typo["spec"]["trainer"]["numNode"] = 2
    typo["spec"]["suspend"] = True
    with pytest.raises(ApiException) as rejected:
        create(typo, field_validation="Strict")
    assert rejected.value.status == 400
    assert json.loads(rejected.value.body)["message"] == 'strict decoding error: unknown field "spec.trainer.numNode"'
    assert fake_k8s.list("trainjobs") == []
    created = create(typo)  # without Strict the server drops the field, as a real one does
    assert "numNode" not in created["spec"]["trainer"]
    assert created["spec"]["runtimeRef"]["kind"] == "ClusterTrainingRuntime"

    core = k8s.CoreV1Api(connect().api_client)
    huge = {"metadata": {"name": "huge"}, "binaryData": {"blob": __import__("base64").b64encode(b"0" * (1024 * 1024 + 1)).decode()}}
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_config_map(NS, huge)
    assert rejected.value.status == 422 and "1048576" in rejected.value.body


def test_every_cel_rule_of_the_vendored_crd_is_understood():
    assert schema.unsupported_cel_rules(schema.load_crd_schema()) == []
    assert schema.TRAINJOB_CRD.exists() and (schema.SCHEMAS_DIR / "README.md").exists()


# --------------------------------------------------------------------------- status, logs, metrics


def test_trainjob_conditions_map_to_job_states(fake_k8s_manual, tmp_path):
    fake = fake_k8s_manual
    backend = KubernetesTrainBackend()
    info = backend.submit("obs-a1b2c", TrainSpec(name="obs", workers=2), job_with_bundle(tmp_path, "pass\n"))
    assert backend.observe("obs-a1b2c", info) == status.Observation(status.PENDING)
    fake.add_pod(NS, "obs-a1b2c", 0, "Running")
    assert backend.observe("obs-a1b2c", info).status == status.RUNNING
    fake.set_condition(NS, "obs-a1b2c", "Suspended", "True", "Suspended", "queued by Kueue")
    assert backend.observe("obs-a1b2c", info) == status.Observation(status.PENDING, message="suspended: queued by Kueue")
    fake.set_condition(NS, "obs-a1b2c", "Suspended", "False", "Resumed", "resumed")
    fake.set_condition(NS, "obs-a1b2c", "Complete", "True", "AllJobsCompleted", "jobset completed successfully")
    assert backend.observe("obs-a1b2c", info).status == status.SUCCEEDED


def test_the_error_of_a_failed_job_is_the_traceback_of_the_rank_that_failed_first(fake_k8s_manual, tmp_path):
    fake = fake_k8s_manual
    backend = KubernetesTrainBackend()
    info = backend.submit("tb-a1b2c", TrainSpec(name="tb", workers=2), job_with_bundle(tmp_path, "pass\n"))
    fake.add_pod(NS, "tb-a1b2c", 1, "Failed", exit_code=1, log=[
        "loading data", "Traceback (most recent call last):", '  File "program.py", line 3, in <module>',
        "KeyError: 'label'", "E1123 18:06:04.023000 42 torch/distributed/elastic/multiprocessing/api.py:1002] failed",
        "Traceback (most recent call last):", '  File "/usr/bin/torchrun", line 6', "ChildFailedError:"])  # fmt: skip
    time.sleep(0.01)
    fake.add_pod(NS, "tb-a1b2c", 0, "Failed", exit_code=1, log=[
        "Traceback (most recent call last):", "RuntimeError: Connection closed by peer"])  # fmt: skip
    fake.set_condition(NS, "tb-a1b2c", "Failed", "True", "FailedJobs", "jobset failed due to one or more job failures")

    obs = backend.observe("tb-a1b2c", info)

    assert obs.status == status.FAILED
    assert obs.error.splitlines()[0] == "jobset failed due to one or more job failures"
    assert "KeyError: 'label'" in obs.error and "rank 1 (pod tb-a1b2c-node-0-1-" in obs.error
    assert "ChildFailedError" not in obs.error and "Connection closed" not in obs.error
    assert obs.error.endswith("(rank 0 failed too)")


def test_metrics_are_the_name_value_lines_of_every_rank(fake_k8s_manual, tmp_path):
    fake = fake_k8s_manual
    backend = KubernetesTrainBackend()
    info = backend.submit("met-a1b2c", TrainSpec(name="met", workers=2), job_with_bundle(tmp_path, "pass\n"))
    fake.add_pod(NS, "met-a1b2c", 0, "Succeeded", exit_code=0,
                 log=["epoch 1 done", "step=1 loss=0.5 accuracy=0.75", "step=2 loss=nope", "loss=0.25"])  # fmt: skip
    fake.add_pod(NS, "met-a1b2c", 1, "Pending")
    metrics = backend.read_metrics("met-a1b2c", info)
    assert [{k: v for k, v in m.items() if k != "time"} for m in metrics] == [
        {"rank": 0, "step": 1, "loss": 0.5, "accuracy": 0.75},
        {"rank": 0, "step": None, "loss": 0.25},
    ]
    assert all(isinstance(m["time"], float) for m in metrics)
    assert list(backend.read_log("met-a1b2c", info, "rank-1")) == []  # not started yet
    with pytest.raises(InvalidOptionError, match="no log channel 'rank-2'"):
        list(backend.read_log("met-a1b2c", info, "rank-2"))


def test_parse_metric_line():
    assert parse_metric_line("step=3 loss=0.5") == {"step": 3, "loss": 0.5}
    assert parse_metric_line("val-acc=1e-3") == {"step": None, "val-acc": 0.001}
    assert parse_metric_line("step=3") is None
    assert parse_metric_line("rank 0: loss=0.5") is None


# --------------------------------------------------------------------------- configuration


def test_namespace_comes_from_argument_env_then_kubeconfig(fake_k8s, monkeypatch, tmp_path):
    assert (connect().namespace, connect().context) == (NS, "fake")
    monkeypatch.setenv("KFJUPYTER_NAMESPACE", "from-env")
    assert connect().namespace == "from-env"
    assert connect(namespace="explicit").namespace == "explicit"
    backend = KubernetesTrainBackend()
    info = backend.submit("ns-a1b2c", TrainSpec(name="ns", namespace="elsewhere", gpus=1), job_with_bundle(tmp_path, "pass\n"))
    assert info["namespace"] == "elsewhere" and fake_k8s.get("trainjobs", "elsewhere", "ns-a1b2c")
    backend.cancel("ns-a1b2c", info)
    assert fake_k8s.list("trainjobs") == [] and fake_k8s.list("configmaps") == []


def test_the_image_comes_from_the_argument_then_kfjupyter_image(fake_k8s, monkeypatch, workdir):
    """KFJUPYTER_IMAGE (which a server's c.KFJupyter.image also sets for its kernels) is the
    default image of jobs on Kubernetes; an explicit image wins."""
    monkeypatch.setenv("KFJUPYTER_IMAGE", "registry.example/team/train:2")
    jobs = [kfjupyter.train("pass", name=n, backend="kubernetes", user_ns={}, image=i)
            for n, i in (("default", None), ("explicit", "mine:1"))]  # fmt: skip
    images = [fake_k8s.get("trainjobs", NS, j.id)["spec"]["trainer"]["image"] for j in jobs]
    assert images == ["registry.example/team/train:2", "mine:1"]
    for job in jobs:
        job.cancel()


def test_no_configuration_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BackendError, match="no Kubernetes configuration found"):
        connect()
