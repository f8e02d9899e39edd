"""What a run records about where it came from: the notebook's saved version, the git
commit of its folder, the Python version and a digest of the installed packages, and the
plain scalar values (numbers, strings, booleans) a cell read from the notebook."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Longest text value kept as a param (MLflow keeps at most 6000 characters of one).
MAX_PARAM_TEXT = 500


def is_plain_scalar(value: Any) -> bool:
    """A value a user reads as a setting: a bool, int, float or short str (not a container,
    array or object)."""
    if type(value) in (bool, int, float):
        return True
    return type(value) is str and len(value) <= MAX_PARAM_TEXT and "\n" not in value


def plain_scalars(namespace: dict[str, Any], names) -> dict[str, Any]:
    """The ``names`` whose values in ``namespace`` are plain scalars, sorted by name."""
    return {n: namespace[n] for n in sorted(names) if n in namespace and is_plain_scalar(namespace[n])}


@lru_cache(maxsize=1)
def packages_digest() -> str:
    """A digest of the installed distributions (name==version, sorted): two runs with the
    same digest ran with the same packages."""
    from importlib.metadata import distributions

    pins = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in distributions()})
    return "sha256:" + hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the repository holding ``folder``, or None."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def environment(notebook: str | None) -> dict[str, Any]:
    """The environment of a run started now from ``notebook`` (a path, or None)."""
    env: dict[str, Any] = {"python": platform.python_version(), "packages": packages_digest()}
    if notebook:
        path = Path(notebook)
        env["notebook"] = str(path)
        try:
            env["notebook_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            pass
        commit = git_commit(path.parent if path.parent.is_dir() else Path.cwd())
        if commit:
            env["git_commit"] = commit
    return env
