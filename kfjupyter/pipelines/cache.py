"""The step cache of the local runner.

A step's result is keyed by the sha256 of its *fingerprint*: the sha256 of the step's
generated program (:func:`program_hash`), the names of the values it hands on, the
content hash (:func:`stepruntime.content_hash`) of every input it reads, and the value of
every pipeline parameter it reads. Images and resource limits
do not change what a step computes locally, so they are not part of the key.

A finished step's results (the value directories it passed on, the files it saved to
``kfjupyter.output_dir()``, its reported metrics and its log) are kept in the workspace
under ``pipeline-cache/KEY/`` (hard links where the file system allows, copies
otherwise); a later step with the same key links them into its own run instead of
running. ``entry.json`` says which run produced them and the hashes of its outputs, so
nothing is hashed again on a cache hit.

Every step of every run says why it was or was not taken from the cache
(:func:`explain_miss` compares the fingerprint with the step's last run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

ENTRY = "entry.json"

#: reasons the runner writes (the stable beginnings; details follow)
CACHED = "cached"
NOT_CACHED = "not cached"


def program_hash(program: str) -> str:
    """sha256 of what the step runs (:func:`codegen.cache_text`: without the generated
    comments, so inserting a markdown cell, which renumbers the cells, changes nothing)."""
    from .codegen import cache_text

    return hashlib.sha256(cache_text(program).encode("utf-8")).hexdigest()


def local_module_files(program: str, workdir: str | os.PathLike | None) -> dict[str, list[Path]]:
    """The files of each module of the notebook's folder ``workdir`` that the step imports
    (``helpers.py``, or every ``.py`` file of a ``helpers/`` package), by module name."""
    from ..capture.analysis import import_statements

    root = Path(workdir or ".")
    out: dict[str, list[Path]] = {}
    for module in sorted({stmt.module for stmt in import_statements(program, top_level_only=False)}):
        files = [root / f"{module}.py"] if (root / f"{module}.py").is_file() else sorted((root / module).rglob("*.py"))
        if files:
            out[module] = files
    return out


def local_modules(program: str, workdir: str | os.PathLike | None) -> dict[str, str]:
    """sha256 of each module of the notebook's folder that the step imports
    (:func:`local_module_files`): editing one changes the step."""
    root = Path(workdir or ".")
    out: dict[str, str] = {}
    for module, files in local_module_files(program, workdir).items():
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        out[module] = digest.hexdigest()
    return out


def data_files(program: str, workdir: str | os.PathLike) -> list[str]:
    """Relative paths that the step's code spells out (string literals: ``open("data.csv")``,
    ``pd.read_csv("data/iris.csv")``) and that name a file of the notebook's folder
    ``workdir``, other than its Python modules: what the step reads from there."""
    import ast

    try:
        tree = ast.parse(program)
    except SyntaxError:
        return []
    root = Path(workdir)
    found: list[str] = []
    for node in ast.walk(tree):
        text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
        if not text or len(text) > 255 or "\n" in text or "://" in text or text.strip("./") == "":
            continue
        path = Path(text)
        if path.is_absolute() or path.suffix == ".py" or text in found:
            continue
        try:
            is_file = (root / path).is_file()
        except (OSError, ValueError):
            continue
        if is_file:
            found.append(text)
    return found


def fingerprint(step, input_hashes: dict[str, str], parameters: dict[str, Any], modules: dict[str, str] | None = None) -> dict[str, Any]:
    """What a step's result depends on (JSON-ready; stored with the step): its code and the
    local modules it imports, the values it hands on (a result without one a later step
    now needs cannot be reused), its inputs' content hashes and its parameters' values.
    Files the step reads are not in it: tag such a step ``cache:false``."""
    return {
        "program": program_hash(step.program),
        "modules": dict(sorted((modules or {}).items())),
        "outputs": sorted(step.outputs),
        "metrics": sorted(step.metrics),
        "inputs": dict(sorted(input_hashes.items())),
        "parameters": dict(sorted(parameters.items())),
    }


def cache_key(fp: dict[str, Any]) -> str:
    text = json.dumps(fp, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_root(home: Path) -> Path:
    return home / "pipeline-cache"


def usage(home: Path) -> tuple[int, int]:
    """How many results the cache keeps, and the bytes they hold (each file counted once,
    however many runs link to it)."""
    root, entries, seen, size = cache_root(home), 0, set(), 0
    if not root.exists():
        return 0, 0
    for folder in root.iterdir():
        if not (folder / ENTRY).exists():
            continue
        entries += 1
        for path in folder.rglob("*"):
            if path.is_file():
                st = path.stat()
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    size += st.st_size
    return entries, size


def clear(home: Path, older_than_s: float | None = None) -> int:
    """Forget cached results (those stored more than ``older_than_s`` seconds ago, or all);
    how many were removed. Runs keep their own results (runs link them, not the cache)."""
    import time

    root, removed = cache_root(home), 0
    if not root.exists():
        return 0
    now = time.time()
    for folder in root.iterdir():
        entry = folder / ENTRY
        if not entry.exists() or (older_than_s is not None and now - entry.stat().st_mtime <= older_than_s):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def link_tree(src: Path, dst: Path) -> None:
    """Mirror ``src`` at ``dst`` with hard links (copies where links are refused)."""
    if not src.exists():
        return
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            source, dest = Path(root) / name, target / name
            if dest.exists():
                dest.unlink()
            try:
                os.link(source, dest)
            except OSError:
                shutil.copy2(source, dest)


def lookup(home: Path, key: str) -> dict[str, Any] | None:
    """The cache entry of ``key`` (``entry.json`` plus its ``dir``), or None."""
    folder = cache_root(home) / key
    try:
        entry = json.loads((folder / ENTRY).read_text())
    except (OSError, ValueError):
        return None
    entry["dir"] = str(folder)
    return entry


def store(home: Path, key: str, entry: dict[str, Any], step_dir: Path, files_dir: Path) -> None:
    """Keep a finished step's results under ``key`` (first writer wins; atomic)."""
    root = cache_root(home)
    final = root / key
    if final.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=root))
    try:
        link_tree(step_dir / "outputs", tmp / "outputs")
        link_tree(files_dir, tmp / "files")
        for name in ("metrics.jsonl", "log"):
            if (step_dir / name).exists():
                shutil.copy2(step_dir / name, tmp / name)
        (tmp / ENTRY).write_text(json.dumps(entry, indent=1))
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise


def restore(source_dir: Path, step_dir: Path, files_dir: Path, *, from_run: bool = False) -> None:
    """Link a cached (or an earlier run's) results into a step of this run.

    ``source_dir`` is a cache entry, or with ``from_run`` the step folder of an earlier
    run (whose ``kfjupyter.output_dir()`` files are in ``RUN/outputs/STEP``).
    """
    link_tree(source_dir / "outputs", step_dir / "outputs")
    if from_run:
        link_tree(source_dir.parent.parent / "outputs" / source_dir.name, files_dir)
    else:
        link_tree(source_dir / "files", files_dir)
    if (source_dir / "metrics.jsonl").exists():
        shutil.copy2(source_dir / "metrics.jsonl", step_dir / "metrics.jsonl")


def explain_miss(previous: dict[str, Any] | None, current: dict[str, Any], failed_in: str | None = None) -> str:
    """Why a step with fingerprint ``current`` is not in the cache: its last run failed (in
    run ``failed_in``), or what changed since its last run's fingerprint ``previous``."""
    if failed_in:
        return f"{NOT_CACHED}: its last run failed (run {failed_in})"
    if not previous:
        return f"{NOT_CACHED}: first run"
    changes = []
    if previous.get("program") != current["program"]:
        changes.append("code changed")
    for what in ("outputs", "metrics"):
        if "code changed" not in changes and previous.get(what) != current[what]:
            names = ", ".join(current[what]) or "none"
            changes.append(f"{'hands on' if what == 'outputs' else 'reports'} different values (now {names})")
    modules = sorted(n for n, h in current.get("modules", {}).items() if previous.get("modules", {}).get(n) != h)
    if modules and "code changed" not in changes:
        changes.append(f"local module{'s' if len(modules) > 1 else ''} {', '.join(modules)} changed")
    before, now = previous.get("inputs", {}), current["inputs"]
    inputs = sorted(n for n in now if n in before and before[n] != now[n])
    if inputs:
        changes.append(f"input{'s' if len(inputs) > 1 else ''} {', '.join(inputs)} changed")
    before, now = previous.get("parameters", {}), current["parameters"]
    params = sorted(n for n in now if n in before and before[n] != now[n])
    if params:
        changes.append(f"parameter{'s' if len(params) > 1 else ''} {', '.join(params)} changed")
    if not changes:
        return f"{NOT_CACHED}: no cached result (the last one was removed or not kept)"
    return f"{NOT_CACHED}: " + ", ".join(changes)
