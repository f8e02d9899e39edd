"""The self-contained program sent to the ranks, as a directory on disk.

A bundle directory holds::

    program.py        imports, captured functions/classes, the cell body
    values.pkl        the values of the variables the cell reads (pickle/cloudpickle)
    modules/…         content-hashed snapshot of the local modules it imports
    kf_bootstrap.py   the rank entry point (standard library only)
    manifest.json     names of the values, module files and their sha256, the bundle hash

The local backend runs it in place; the Kubernetes backend ships the same files in a
ConfigMap. Paths in :meth:`Bundle.files` are POSIX and relative to the bundle root.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

PROGRAM = "program.py"
VALUES = "values.pkl"
MODULES = "modules"
BOOTSTRAP = "kf_bootstrap.py"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Bundle:
    root: Path

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / MANIFEST).read_text())

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    @property
    def program(self) -> str:
        return (self.root / PROGRAM).read_text()

    def files(self) -> dict[str, bytes]:
        """Every file of the bundle: relative POSIX path → content."""
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }

    def size(self) -> int:
        return sum(len(b) for b in self.files().values())


def content_hash(files: dict[str, bytes]) -> str:
    """A hash of a set of files that depends on their paths and contents only."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


def copy_with_values(src: Path, dest: Path, changed: dict[str, bytes]) -> Bundle:
    """Copy the bundle at ``src`` to ``dest`` with the values ``changed`` (name → pickled
    value) in place of its own, and a manifest that says so: the same program run again
    with other values (``job.rerun(lr=0.05)``)."""
    import pickle
    import shutil

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", MANIFEST))
    values_path = dest / VALUES
    values = pickle.loads(values_path.read_bytes()) if values_path.exists() else {}
    values.update(changed)
    values_path.write_bytes(pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL))
    manifest = json.loads((src / MANIFEST).read_text())
    bundle = Bundle(dest)
    manifest["sha256"] = content_hash(bundle.files())
    manifest["values"] = sorted(values)
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return bundle
