"""Cell + notebook state → a self-contained program, with the preflight checks.

What a cell needs from the notebook is found from the names it reads
(:func:`~kfjupyter.capture.analysis.free_names`), resolved against the kernel's
namespace and its input history:

* modules and imported names → the import statement from the history (or one built
  from the object's ``__module__``);
* functions and classes defined in the notebook → their source, and, recursively,
  what *they* read;
* anything else → its value, serialised (pickle, cloudpickle for what pickle can't);
* local modules (files of the working directory that the program imports) → a
  content-hashed snapshot shipped beside the program.

Every problem found on the way is collected and raised as one :class:`PreflightError`
before anything is written or started.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import json
import os
import pickle
import sys
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cloudpickle

from ..errors import PreflightError
from . import analysis
from .provenance import plain_scalars
from .bundle import BOOTSTRAP, MANIFEST, MODULES, PROGRAM, VALUES, Bundle, content_hash

#: Names every program may use without the notebook defining them.
IMPLICIT = {"kfjupyter": "import kfjupyter"}


@dataclass
class Program:
    """What the ranks will run. Built by :func:`capture`, written by :func:`write_bundle`."""

    body: str
    imports: list[str] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)
    values: dict[str, bytes] = field(default_factory=dict)  # name → cloudpickled value
    modules: dict[str, bytes] = field(default_factory=dict)  # relative path → content
    workdir: str = ""
    #: the plain scalars among the values (``epochs = 20``, ``lr = 0.1``): the run's params
    params: dict[str, Any] = field(default_factory=dict)

    def source(self, header: str = "") -> str:
        parts = [f"# {line}".rstrip() for line in header.splitlines()]
        if self.values:
            parts.append(f"# Values read from the notebook (values.pkl): {', '.join(sorted(self.values))}")
        parts += self.imports
        for definition in self.definitions:
            parts += ["", "", definition.rstrip()]
        parts += ["", "", "# --- the cell ---", self.body.rstrip(), ""]
        return "\n".join(parts)

    def payload_size(self) -> int:
        return len(self.source()) + sum(map(len, self.values.values())) + sum(map(len, self.modules.values()))


def _is_notebook_defined(obj: Any) -> bool:
    return (
        isinstance(obj, (types.FunctionType, type))
        and getattr(obj, "__module__", None) == "__main__"
    )


def _importable_name(obj: Any) -> tuple[str, str] | None:
    """(module, qualname) if ``obj`` can be imported by name in a fresh process."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    if not isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) and not callable(obj):
        return None
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return (module, qualname) if target is obj else None


def _source_in_history(obj: Any, history: list[str]) -> str | None:
    """The last top-level ``def``/``class`` of ``obj``'s name in the notebook's history.

    ``inspect`` finds a function's cell through its code object, but a class defined
    in a notebook has no file to be found in, so classes are looked up here.
    """
    kinds = (ast.ClassDef,) if isinstance(obj, type) else (ast.FunctionDef, ast.AsyncFunctionDef)
    for cell in reversed(history):
        try:
            tree = ast.parse(cell)
        except SyntaxError:
            continue
        for node in reversed(tree.body):
            if isinstance(node, kinds) and node.name == obj.__name__:
                lines = cell.splitlines()
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                return "\n".join(lines[first - 1 : node.end_lineno]) + "\n"
    return None


def _definition_source(obj: Any, name: str, history: list[str]) -> str | None:
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        source = _source_in_history(obj, history)
    if source is None:
        return None
    if obj.__name__ != name:
        source += f"\n{name} = {obj.__name__}\n"
    return source


def _serialise(name: str, value: Any) -> bytes:
    # cloudpickle writes plain pickle for importable objects and data, and pickles what
    # only exists in the notebook (``__main__``) by value, which plain pickle can't.
    try:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise PreflightError(
            f"the value of {name!r} ({type(value).__module__}.{type(value).__qualname__}) "
            f"cannot be serialised to send it to the ranks: {exc}. Create it inside the cell instead.",
            culprit=name,
        ) from None


def _local_module_files(module: str, workdir: Path) -> dict[str, bytes] | None:
    """Files of ``module`` if it lives in ``workdir``; ``{}`` if installed elsewhere; None if missing."""
    spec = None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        candidate = workdir / module
        if (workdir / f"{module}.py").is_file():
            return {f"{module}.py": (workdir / f"{module}.py").read_bytes()}
        if (candidate / "__init__.py").is_file():
            spec = importlib.util.spec_from_file_location(module, candidate / "__init__.py")
        else:
            return None
    origin = spec.origin
    if not origin or origin in ("built-in", "frozen"):
        return {}
    path = Path(origin).resolve()
    try:
        path.relative_to(workdir)
    except ValueError:
        return {}  # installed in the environment, not part of the snapshot
    if "site-packages" in path.parts or ".venv" in path.parts:
        return {}
    if path.name == "__init__.py":
        root = path.parent
        return {
            p.relative_to(workdir).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*.py"))
            if "__pycache__" not in p.parts
        }
    return {path.relative_to(workdir).as_posix(): path.read_bytes()}


def capture(
    body: str,
    namespace: dict[str, Any],
    history: list[str] | None = None,
    workdir: str | os.PathLike | None = None,
) -> Program:
    """Build the program that runs ``body`` away from ``namespace``.

    Raises :class:`PreflightError` listing every name that cannot be resolved, every
    value that cannot be serialised and every imported local module that is missing.
    """
    workdir = Path(workdir or os.getcwd()).resolve()
    line = analysis.uses_ipython(body)
    if line is not None:
        raise PreflightError(
            f"line {line} of the cell uses an IPython magic or shell command, which cannot run "
            "in the ranks: use plain Python there",
            culprit=f"line {line}",
        )
    history_imports: dict[str, str] = {}
    for cell in history or []:
        for stmt in analysis.import_statements(cell):
            for bound in stmt.binds:
                history_imports[bound] = stmt.source

    imports: dict[str, None] = {}
    definitions: list[str] = []
    values: dict[str, bytes] = {}
    problems: list[tuple[str, str]] = []
    visited: set[str] = set()

    def resolve(name: str, needed_by: str) -> None:
        if name in visited:
            return
        visited.add(name)
        if name not in namespace:
            if name in IMPLICIT:
                imports.setdefault(IMPLICIT[name])
            elif name in history_imports:
                imports.setdefault(history_imports[name])
            elif not hasattr(builtins, name):
                problems.append((name, f"name {name!r} used by {needed_by} is not defined in the notebook"))
            return
        obj = namespace[name]
        if isinstance(obj, types.ModuleType):
            stmt = history_imports.get(name)
            if stmt is None:
                stmt = f"import {obj.__name__}" if obj.__name__ == name else f"import {obj.__name__} as {name}"
            imports.setdefault(stmt)
            return
        if _is_notebook_defined(obj) and obj.__name__ != "<lambda>":
            source = _definition_source(obj, name, history or [])
            if source is not None:
                for dependency in analysis.free_names(source):
                    if dependency != obj.__name__:
                        resolve(dependency, f"{name}()" if callable(obj) else name)
                definitions.append(source)  # post-order: what it needs comes first
                return
        if name in history_imports and (callable(obj) or isinstance(obj, type)):
            imports.setdefault(history_imports[name])
            return
        importable = _importable_name(obj)
        if importable is not None:
            module, qualname = importable
            if "." not in qualname:
                imports.setdefault(
                    f"from {module} import {qualname}" + ("" if qualname == name else f" as {name}")
                )
                return
        try:
            values[name] = _serialise(name, obj)
        except PreflightError as exc:
            problems.append((name, str(exc)))

    for name in analysis.free_names(body):
        resolve(name, "the cell")

    # local modules: everything the program imports that lives in the working directory
    modules: dict[str, bytes] = {}
    sources = list(imports) + definitions + [body]
    seen_modules: set[str] = set()
    while sources:
        for stmt in analysis.import_statements(sources.pop(), top_level_only=False):
            if stmt.module in seen_modules or stmt.module in sys.builtin_module_names:
                continue
            seen_modules.add(stmt.module)
            files = _local_module_files(stmt.module, workdir)
            if files is None:
                problems.append(
                    (
                        stmt.module,
                        f"module {stmt.module!r} imported by the program cannot be found: it is "
                        f"neither in the working directory ({workdir}) nor installed",
                    )
                )
                continue
            for path, content in files.items():
                if path not in modules:
                    modules[path] = content
                    if path.endswith(".py"):
                        sources.append(content.decode("utf-8", "replace"))

    if problems:
        message = "preflight failed, nothing was started:\n" + "\n".join(f"  - {p}" for _, p in problems)
        raise PreflightError(message, culprit=problems[0][0])
    return Program(
        body=body,
        imports=list(imports),
        definitions=definitions,
        values=values,
        modules=modules,
        workdir=str(workdir),
        params=plain_scalars(namespace, values),
    )


def capture_function(fn: Callable[[], Any], namespace: dict[str, Any] | None = None, **kw: Any) -> Program:
    """Capture a zero-argument function: the program defines it and calls it."""
    if not callable(fn) or not hasattr(fn, "__name__"):
        raise PreflightError(f"{fn!r} is not a function", culprit=repr(fn))
    ns = dict(fn.__globals__) if namespace is None else dict(namespace)
    ns[fn.__name__] = fn
    return capture(f"{fn.__name__}()", ns, **kw)


#: Largest program (source + values + modules) each backend accepts; a ConfigMap holds 1 MiB.
MAX_PAYLOAD = {"local": 512 * 2**20, "kubernetes": 1000 * 2**10}


def _ipython_state() -> tuple[dict[str, Any] | None, list[str]]:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None, []
    shell = get_ipython()
    if shell is None:
        return None, []
    return shell.user_ns, [c for c in shell.user_ns.get("In", []) if isinstance(c, str)]


def capture_cell(
    fn_or_source: Callable[[], Any] | str,
    namespace: dict[str, Any] | None = None,
    history: list[str] | None = None,
    workdir: str | None = None,
    caller_depth: int = 2,
) -> Program:
    """The program of a cell's source or of a zero-argument function, what ``train`` and
    ``tune`` run. A source's names resolve in ``namespace`` (default: the IPython
    namespace, else the globals of the frame ``caller_depth`` levels up)."""
    from ..errors import InvalidOptionError

    if isinstance(fn_or_source, str):
        if namespace is None:
            namespace, ipy_history = _ipython_state()
            if namespace is None:  # plain Python: the caller's globals
                namespace = inspect.stack()[caller_depth].frame.f_globals
            history = ipy_history if history is None else history
        return capture(fn_or_source, namespace, history=history, workdir=workdir)
    if callable(fn_or_source):
        return capture_function(fn_or_source, namespace, history=history, workdir=workdir)
    raise InvalidOptionError(f"needs a function or the source of a cell, not {type(fn_or_source).__name__}")


def capture_object(obj: Any, name: str, history: list[str] | None = None, workdir: str | None = None) -> Program:
    """The program of a notebook object that something else calls (a function, a class or
    an instance: a model server's transformer or explainer): the same capture and
    preflight as a cell's, for a program that binds the object to ``name``. Its names
    resolve in the globals it was defined in (the notebook's), its classes' source in the
    IPython history."""
    namespace, ipy_history = _ipython_state()
    defined_in = getattr(obj, "__globals__", None)
    if defined_in is None:  # a class or an instance: its module's globals (a notebook's: the kernel's namespace)
        module = getattr(obj, "__module__", None) if isinstance(obj, type) else type(obj).__module__
        defined_in = namespace if module == "__main__" and namespace is not None else vars(sys.modules.get(module) or types)
    namespace = {**defined_in, name: obj}
    return capture(f"{name} = {name}", namespace, history=ipy_history if history is None else history, workdir=workdir)


def write_bundle(program: Program, dest: Path, header: str = "", max_bytes: int | None = None) -> Bundle:
    """Check the payload size, then write the program's files into ``dest``."""
    if max_bytes is not None:
        size = program.payload_size()
        if size > max_bytes:
            largest = max(program.values.items(), key=lambda kv: len(kv[1]), default=None)
            hint = (
                f"; the largest value is {largest[0]!r} ({len(largest[1]) / 2**20:.1f} MiB): "
                "load or create it inside the cell instead"
                if largest
                else ""
            )
            raise PreflightError(
                f"the program's payload is {size / 2**20:.1f} MiB, over the limit of "
                f"{max_bytes / 2**20:.1f} MiB{hint}",
                culprit=largest[0] if largest else "payload",
            )
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {PROGRAM: program.source(header).encode()}
    if program.values:
        files[VALUES] = pickle.dumps(program.values, protocol=pickle.HIGHEST_PROTOCOL)
    for path, content in program.modules.items():
        files[f"{MODULES}/{path}"] = content
    files[BOOTSTRAP] = Path(__file__).resolve().parent.parent.joinpath("runtime", "bootstrap.py").read_bytes()
    for path, content in files.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    manifest = {
        "sha256": content_hash(files),
        "values": sorted(program.values),
        "modules": {p: content_hash({p: c}) for p, c in program.modules.items()},
        "workdir": program.workdir,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return Bundle(dest)

