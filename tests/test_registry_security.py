"""The artifact store: content-addressed and immutable, and it never hands out a file
outside itself (path traversal, symlinks, foreign URIs are refused)."""

from __future__ import annotations

import os
import stat

import pytest

import kfjupyter
import kfjupyter.registry as registry
from kfjupyter.errors import InvalidOptionError
from kfjupyter.files import LinkRefusedError
from kfjupyter.registry import ArtifactAccessError, ArtifactIntegrityError

from registry_support import backend, iris_model, write  # noqa: F401

pytestmark = pytest.mark.timeout(120)

TRAVERSALS = [
    "../kfjupyter.db",
    "../../../../etc/passwd",
    "/etc/passwd",
    "model.joblib/../../x",
    "a/../../b",
    "..",
    ".",
    "./model.joblib",
    "",
    "~root/.bashrc",
    "..\\..\\etc\\passwd",
    "model.joblib\x00.txt",
    "sub//../../x",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_a_path_that_leaves_the_artifact_is_refused(path):
    clf, _, _ = iris_model()
    kfjupyter.register_model("iris", clf)
    with pytest.raises(ArtifactAccessError):
        registry.artifact_file("iris:1", path)


def test_files_inside_the_artifact_are_served(tmp_path):
    folder = tmp_path / "m"
    write(folder / "weights" / "w.bin", b"\x01\x02")
    write(folder / "config.json", b"{}")
    kfjupyter.register_model("m", folder)
    assert registry.artifact_file("m:1", "weights/w.bin").read_bytes() == b"\x01\x02"
    with pytest.raises(ArtifactAccessError, match="no file"):
        registry.artifact_file("m:1", "weights")  # a folder is not a file
    with pytest.raises(ArtifactAccessError, match="no file"):
        registry.artifact_file("m:1", "missing.txt")


def test_a_symlink_planted_in_the_store_does_not_lead_out_of_it(tmp_path):
    secret = write(tmp_path / "secret.txt", b"password")
    clf, _, _ = iris_model()
    v = kfjupyter.register_model("iris", clf)
    folder = registry.local_path("iris:1", verify=False)
    os.symlink(secret, folder / "leak.txt")
    os.symlink(tmp_path, folder / "outside")
    for path in ("leak.txt", "outside/secret.txt"):
        with pytest.raises(ArtifactAccessError):
            registry.artifact_file("iris:1", path)
    assert v.artifact.sha256


def test_registering_a_folder_holding_a_link_is_refused_naming_the_link(tmp_path):
    """Links are refused everywhere (kfjupyter.files): neither their target's content nor
    the link is stored, whichever framework is named."""
    target = write(tmp_path / "elsewhere" / "weights.bin", b"w")
    folder = tmp_path / "model"
    write(folder / "config.json", b"{}")
    os.symlink(target, folder / "weights.bin")
    for framework in (None, "custom"):
        with pytest.raises(LinkRefusedError, match=r"'weights.bin' is a symbolic link \(to .*elsewhere/weights.bin\)"):
            kfjupyter.register_model("linked", folder, framework=framework)
    os.remove(folder / "weights.bin")
    os.symlink(tmp_path / "elsewhere", folder / "sub")  # a linked folder too
    with pytest.raises(LinkRefusedError, match="'sub' is a symbolic link"):
        kfjupyter.register_model("linked", folder)
    assert registry.list_models().total == 0


def test_registering_a_folder_holding_a_fifo_is_refused_not_blocked_on(tmp_path):
    folder = tmp_path / "model"
    write(folder / "config.json", b"{}")
    os.mkfifo(folder / "pipe")
    with pytest.raises(InvalidOptionError, match="'pipe' is not a regular file"):
        kfjupyter.register_model("piped", folder, framework="custom")


LINKING_RANK = """
import os
out = kfjupyter.output_dir()
(out / "model.txt").write_text("mine")
os.symlink(SECRET, out / LINK)
"""


@pytest.mark.parametrize("link", ["leak.txt", "leaked-folder"])
def test_a_job_that_links_a_file_or_folder_into_its_outputs_gets_nothing_registered(tmp_path, link):
    secret = write(tmp_path / "secret" / "passwd", b"root:x:0:0")
    source = (secret if link == "leak.txt" else secret.parent).as_posix()
    job = kfjupyter.train(f"SECRET = {source!r}\nLINK = {link!r}\n" + LINKING_RANK, workers=1, name="linker", user_ns={})
    job.wait(120, raise_on_failure=False)
    assert job.status == "Succeeded", job.error
    with pytest.raises(LinkRefusedError, match=f"job output .*'{link}' is a symbolic link"):
        job.outputs
    with pytest.raises(LinkRefusedError, match=f"'{link}' is a symbolic link"):
        job.register_model("stolen")
    assert registry.list_models().total == 0


def test_an_artifact_whose_uri_points_outside_the_store_is_not_served(backend, tmp_path):
    clf, _, _ = iris_model()
    kfjupyter.register_model("iris", clf)
    outside = tmp_path / "outside"
    write(outside / "model.joblib", b"not yours")
    if backend.fake is not None:  # somebody registered it by hand in Kubeflow's registry
        for art in backend.fake.store.artifacts.values():
            art["uri"] = outside.as_uri()
    else:
        from sqlalchemy import update

        from kfjupyter.registry.tables import ModelArtifactRow
        from kfjupyter.store import get_workspace

        with get_workspace().session() as s, s.begin():
            s.execute(update(ModelArtifactRow).values(uri=outside.as_uri()))
    with pytest.raises(ArtifactAccessError, match="outside the artifact store"):
        registry.artifact_file("iris:1", "model.joblib")


def test_model_names_that_could_be_paths_are_refused():
    for name in ("../iris", "a/b", "a\\b", ".hidden", "", "-x", "iris@prod", "iris:1", "x" * 129):
        with pytest.raises(InvalidOptionError):
            kfjupyter.register_model(name, b"x")


def test_the_same_bytes_are_stored_once_read_only_and_never_rewritten():
    clf, _, _ = iris_model()
    first = kfjupyter.register_model("iris", clf)
    folder = registry.local_path("iris:1")
    stored = folder / "model.joblib"
    before = stored.stat()
    second = kfjupyter.register_model("copy-of-iris", clf)
    assert second.artifact.uri == first.artifact.uri and second.artifact.sha256 == first.artifact.sha256
    assert stored.stat().st_mtime_ns == before.st_mtime_ns and stored.stat().st_ino == before.st_ino
    assert stat.S_IMODE(stored.stat().st_mode) & 0o222 == 0
    assert folder.name == first.artifact.sha256 and folder.parent.name == first.artifact.sha256[:2]
    assert not list((folder.parent.parent.parent / ".staging").iterdir())  # nothing left half-written


def test_an_artifact_changed_after_registration_is_refused_at_load():
    clf, _, _ = iris_model()
    kfjupyter.register_model("iris", clf)
    stored = registry.local_path("iris:1") / "model.joblib"
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactIntegrityError, match="changed since it was registered"):
        kfjupyter.load_model("iris:1")


def test_an_fsspec_artifact_store_round_trips_through_the_local_cache(monkeypatch, workspace):
    fsspec = pytest.importorskip("fsspec")
    root = f"memory://kfjupyter-{os.getpid()}-{id(workspace)}"
    monkeypatch.setenv("KFJUPYTER_ARTIFACT_URI", root)
    clf, x, _ = iris_model()
    v = kfjupyter.register_model("iris", clf)
    assert v.artifact.uri == f"{root}/sha256/{v.artifact.sha256[:2]}/{v.artifact.sha256}"
    fs, path = fsspec.core.url_to_fs(v.artifact.uri)
    assert fs.exists(f"{path}/model.joblib") and fs.exists(f"{path}.complete")
    assert (kfjupyter.load_model("iris").predict(x) == clf.predict(x)).all()
    cached = registry.local_path("iris")
    assert cached.parent == workspace.resolve() / "registry" / "cache"
    assert registry.artifact_file("iris:1", "model.joblib").parent == cached
    with pytest.raises(ArtifactAccessError):
        registry.artifact_file("iris:1", "../x")
    fs.rm(path, recursive=True)
    fs.rm(f"{path}.complete")
