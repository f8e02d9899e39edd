"""Can a version be served? ``kfjupyter.serving.api.servable`` (deploy's own preflight,
asked before trying) and what the registry records for it; the registry's change marker."""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter import registry, tracking
from kfjupyter.errors import InvalidOptionError
from kfjupyter.registry.formats import pytorch_file_kind
from kfjupyter.serving.api import servable


def test_a_state_dict_file_is_recorded_and_refused_before_trying(workspace, tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"  # what the quickstart's training cell saves
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    mv = registry.register_model("quick", str(path))
    assert mv.framework == "pytorch" and mv.artifact.properties["torch_kind"] == "state_dict"
    answer = servable("quick:1")
    assert answer["ok"] is False and answer["needs"] == "model_class"
    assert "PyTorch state dict" in answer["reason"] and "model_class=" in answer["reason"]
    assert servable("quick:1", model_class=True) == {"ok": True}
    # deploy says the same, from the same rule, and starts nothing
    with pytest.raises(InvalidOptionError) as refused:
        kfjupyter.deploy("quick:1", name="quick")
    assert str(refused.value) == answer["reason"]
    assert kfjupyter.jobs.count(kind="endpoint") == 0


def test_whole_modules_and_other_formats(workspace, tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Linear(3, 1))
    registry.register_model("whole", module)
    assert servable("whole:1") == {"ok": True}
    torch.save(module, tmp_path / "whole.pt")
    torch.jit.save(torch.jit.script(module), str(tmp_path / "script.pt"))
    (tmp_path / "odd.pt").write_bytes(b"not a zip")
    assert pytorch_file_kind(tmp_path / "whole.pt") == "module"
    assert pytorch_file_kind(tmp_path / "script.pt") == "torchscript"
    assert pytorch_file_kind(tmp_path / "odd.pt") is None  # unknown: not refused
    registry.register_model("scripted", str(tmp_path / "script.pt"))
    assert servable("scripted:1") == {"ok": True}
    registry.register_model("const", {"a": 1}, framework="custom")
    assert servable(registry.get_version("const:1")) == {"ok": True}  # a ModelVersion too


def test_no_kserve_and_unknown_models(workspace, monkeypatch):
    registry.register_model("const", {"a": 1}, framework="custom")
    import kfjupyter.serving.api as api

    real = api.importlib.util.find_spec
    monkeypatch.setattr(api.importlib.util, "find_spec", lambda name, *a: None if name == "kserve" else real(name, *a))
    answer = servable("const:1", backend="local")
    assert answer["ok"] is False and "kfjupyter[serving]" in answer["reason"]
    monkeypatch.undo()
    with pytest.raises(registry.ModelNotFoundError):
        servable("nope:1")


def test_the_change_marker_moves_with_every_change(workspace):
    seen = [registry.change_marker()]

    def changed() -> bool:
        marker = registry.change_marker()
        moved = marker != seen[-1]
        seen.append(marker)
        return moved

    assert not changed()  # reading twice: the same
    registry.register_model("m", {"a": 1}, framework="custom")
    assert changed()
    registry.register_model("m", {"a": 2}, framework="custom")
    assert changed()
    registry.set_alias("m", "production", 1)
    assert changed()
    registry.set_alias("m", "production", 2)
    assert changed()
    registry.archive("m", version=1)
    assert changed()
    registry.update_version("m", version=2, description="better")
    assert changed()
    assert not changed()


def test_a_version_names_the_run_that_produced_it(workspace):
    job = kfjupyter.train("print('training')", name="t", user_ns={})
    job.wait(60)
    mv = registry.register_model("m", {"a": 1}, framework="custom", job=job)
    run = tracking.version_run(mv)
    assert run is not None and run["name"] == "t" and run["params"]["workers"] == 1
    assert tracking.version_run(registry.register_model("m", {"a": 2}, framework="custom")) is None  # no job
