"""The artifact store: model files addressed by URI, content-hashed, immutable once stored.

An artifact is a folder (a saved model is often several files). Its identity is the
SHA-256 of a manifest of its files (relative path, size and SHA-256 of each), and it is
stored once at ``<root>/sha256/<h[:2]>/<h>/``: registering the same bytes twice stores
them once, and nothing is ever written into a stored folder again. Files are made
read-only, and loading checks the hash again (``ArtifactIntegrityError`` if changed).

The root is ``KFJUPYTER_ARTIFACT_URI`` if set (``s3://bucket/prefix``, ``gs://…`` or any
fsspec URL: the filesystem's package must be installed), else
``file://<workspace>/registry/artifacts``. A ``file://`` store works on the disk
directly; any other goes through fsspec, with a local cache keyed by hash.

Serving a file (:meth:`ArtifactStore.resolve_file`) refuses any path that leaves the
artifact's folder (``..``, absolute paths) and any artifact outside the store. No link is
followed (:mod:`kfjupyter.files`): an artifact holding one is refused, naming it. Stored
files are readable by their user only (0400), in folders of the user's only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from ..files import files_under, path_under, private_dir
from .errors import ArtifactAccessError, ArtifactIntegrityError, InvalidOptionError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    sha256: str
    size: int


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return files_under(folder, what="artifact folder")


def tree_sha256(folder: Path) -> tuple[str, int]:
    """The folder's content hash (over relative paths, sizes and file hashes) and its size."""
    manifest = hashlib.sha256()
    total = 0
    for path in _files(folder):
        size = path.stat().st_size
        total += size
        rel = path.relative_to(folder).as_posix()
        manifest.update(f"{rel}\0{size}\0{file_sha256(path)}\n".encode())
    return manifest.hexdigest(), total


def uri_to_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise InvalidOptionError(f"not a local file URI: {uri!r}")
    return Path(url2pathname(unquote(parsed.path)))


def safe_relpath(relpath: str) -> PurePosixPath:
    """``relpath`` as a clean relative path, or ArtifactAccessError for anything that could leave."""
    if not isinstance(relpath, str) or not relpath or "\x00" in relpath or "\\" in relpath:
        raise ArtifactAccessError(f"path {relpath!r} refused")
    pure = PurePosixPath(relpath)
    if pure.is_absolute() or relpath.startswith("~") or any(part in ("..", "") for part in relpath.split("/")):
        raise ArtifactAccessError(f"path {relpath!r} refused: it leaves the artifact's folder")
    if any(part == "." for part in relpath.split("/")):
        raise ArtifactAccessError(f"path {relpath!r} refused")
    return pure


def default_root(home: Path) -> str:
    return os.environ.get("KFJUPYTER_ARTIFACT_URI") or (home / "registry" / "artifacts").as_uri()


class ArtifactStore:
    def __init__(self, root_uri: str, cache_dir: Path):
        self.root_uri = root_uri.rstrip("/")
        self.cache_dir = cache_dir
        self.local = urlparse(self.root_uri).scheme in ("", "file")
        if self.local:
            if "://" not in self.root_uri:
                self.root_uri = Path(self.root_uri).expanduser().resolve().as_uri()
            # made private; a store root of the user's own choosing keeps its mode
            self.root = private_dir(uri_to_path(self.root_uri), tighten=False).resolve()

    # -- fsspec ----------------------------------------------------------------------
    def _fs(self, uri: str):
        try:
            import fsspec
        except ImportError:  # pragma: no cover - fsspec ships with the test set-up
            raise InvalidOptionError(
                f"artifact URI {uri!r} needs fsspec (pip install fsspec and the filesystem's package)"
            ) from None
        fs, path = fsspec.core.url_to_fs(uri)
        return fs, path

    # -- writing ---------------------------------------------------------------------
    @contextmanager
    def stage(self) -> Iterator[Path]:
        """An empty local folder to build an artifact in (removed afterwards)."""
        if self.local:
            path = private_dir(self.root / ".staging") / uuid.uuid4().hex
            path.mkdir(mode=0o700)
        else:
            path = Path(tempfile.mkdtemp(prefix="kfjupyter-artifact-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def commit(self, staged: Path) -> StoredArtifact:
        """Store the staged folder under its content hash (once; never overwritten)."""
        if not _files(staged):
            raise InvalidOptionError("an artifact needs at least one file")
        digest, size = tree_sha256(staged)
        rel = f"sha256/{digest[:2]}/{digest}"
        if self.local:
            final = self.root / rel
            if not final.exists():
                private_dir(final.parent)
                for path in _files(staged):
                    path.chmod(stat.S_IRUSR)
                try:
                    os.rename(staged, final)
                except OSError:
                    if not final.exists():  # not a concurrent commit of the same bytes
                        raise
            return StoredArtifact(final.as_uri(), digest, size)
        uri = f"{self.root_uri}/{rel}"
        fs, path = self._fs(uri)
        marker = path + ".complete"
        if not fs.exists(marker):
            for file in _files(staged):
                fs.put_file(str(file), f"{path}/{file.relative_to(staged).as_posix()}")
            fs.pipe_file(marker, digest.encode())
        return StoredArtifact(uri, digest, size)

    # -- reading ---------------------------------------------------------------------
    def contains(self, uri: str) -> bool:
        if self.local:
            try:
                path = uri_to_path(uri).resolve()
            except InvalidOptionError:
                return False
            return path == self.root or self.root in path.parents
        return uri == self.root_uri or uri.startswith(self.root_uri + "/")

    def local_dir(self, uri: str, sha256: str | None = None, verify: bool = True) -> Path:
        """The artifact's folder on this machine (downloaded to the cache if remote), checked."""
        if urlparse(uri).scheme in ("", "file"):
            path = uri_to_path(uri) if "://" in uri else Path(uri)
            if not path.exists():
                raise ArtifactIntegrityError(f"artifact {uri} is missing from the artifact store")
            if verify and sha256:
                self._verify(path, sha256, uri)
            return path
        key = sha256 or hashlib.sha256(uri.encode()).hexdigest()
        cached = self.cache_dir / key
        if cached.exists():
            if verify and sha256:
                self._verify(cached, sha256, uri)
            return cached
        private_dir(self.cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=self.cache_dir))
        try:
            fs, path = self._fs(uri)
            if fs.isdir(path):
                for remote in fs.find(path):
                    rel = remote[len(path.rstrip("/")) + 1:]
                    target = tmp / safe_relpath(rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(remote, str(target))
            else:
                fs.get_file(path, str(tmp / PurePosixPath(path).name))
            if sha256:
                self._verify(tmp, sha256, uri)
            try:
                os.rename(tmp, cached)
            except OSError:
                if not cached.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cached

    @staticmethod
    def _verify(path: Path, sha256: str, uri: str) -> None:
        digest, _ = tree_sha256(path) if path.is_dir() else (None, 0)
        if digest != sha256:
            raise ArtifactIntegrityError(
                f"artifact {uri} changed since it was registered (sha256 {digest} != {sha256}); refusing to load it"
            )

    def list_files(self, uri: str, sha256: str | None = None) -> list[dict]:
        folder = self.local_dir(uri, sha256, verify=False)
        return [
            {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size} for p in _files(folder)
        ]

    def resolve_file(self, uri: str, relpath: str, sha256: str | None = None) -> Path:
        """A file of an artifact, for serving: inside the artifact's folder and the store, or refused."""
        rel = safe_relpath(relpath)
        if not self.contains(uri):
            raise ArtifactAccessError(f"artifact {uri} is outside the artifact store; refused")
        folder = self.local_dir(uri, sha256, verify=False).resolve()
        try:
            target = path_under(folder, str(rel), "artifact file")
        except InvalidOptionError as exc:  # a link on its way (or a name the disk refuses)
            raise ArtifactAccessError(f"{exc}; refused") from None
        if not target.is_file():
            raise ArtifactAccessError(f"no file {relpath!r} in artifact {uri}")
        return target
