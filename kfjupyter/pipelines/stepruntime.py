"""Entry point of one pipeline step: load inputs, run the step's program, save outputs.

STANDARD LIBRARY ONLY at import time (numpy, pandas, torch, joblib, cloudpickle are
imported only when a value needs them), so the same file runs a step locally and inside
any Kubeflow Pipelines image that has Python. Run it as a script or a module::

    python stepruntime.py --program step.py --step train \\
        --param lr float 0.1 --param msg str "any text at all" \\
        --input X /runs/1/prepare/X --output model /runs/1/train/model --metric accuracy

``--param NAME TYPE VALUE``  TYPE int|float|str|bool|json; VALUE as text (bool: true/false)
``--input NAME PATH``        a value directory written by an upstream ``--output``
``--output NAME PATH``       after the program, save its global NAME to directory PATH
``--metric NAME``            after the program, ``kfjupyter.report(NAME=float(NAME))``

Parameters and inputs become the program's globals (``runpy`` ``init_globals``): data,
never source. ``kfjupyter.report`` works inside the program: the real package when the
image has it, else the stand-in of ``bootstrap.py`` when that file lies next to this one
(the Kubeflow Pipelines component ships both), else a minimal stand-in.

A value directory holds ``meta.json`` ({"name", "format", "type"}; keras: "library" too)
and ``data.<ext>``;
formats, tried in this order:

===============  ===========  =====================================================================
format           file         for
===============  ===========  =====================================================================
numpy            data.npy     numpy arrays without object dtype (``np.save``, no pickle)
pandas           data.pkl     pandas DataFrame / Series (``pandas.to_pickle``)
keras            data.keras   Keras models (Keras 3, ``tf_keras``; ``model.save``). Layers and
                              other parts whose class the step defines travel by value beside it
                              (``custom.pkl``, cloudpickle) and load as ``custom_objects``
torch_tensor     data.pt      torch tensors (``torch.save``; loads with ``weights_only``)
torch_module     data.pt      torch ``nn.Module``: the whole module with its state, saved with
                              ``torch.save(pickle_module=cloudpickle)`` so a class defined in
                              the notebook travels by value
xgboost_dmatrix  data.buffer  xgboost ``DMatrix`` (``save_binary``: data, labels, weights,
                              feature names; cloudpickle cannot carry one)
xgboost_booster  data.json    xgboost ``Booster`` (``save_model``: loads in other xgboost versions)
sklearn          data.joblib  scikit-learn estimators (``joblib.dump``), xgboost's scikit-learn
                              models among them (a pickle keeps their hyperparameters, which
                              ``XGBModel.save_model`` does not)
json             data.json    None, bool, int, float, str, and lists / str-keyed dicts of them
cloudpickle      data.pkl     anything else cloudpickle can serialise (lambdas, local classes)
pickle           data.pkl     the same when cloudpickle is not installed
===============  ===========  =====================================================================

A format that fails on a value (a DataFrame holding a notebook-defined class, say)
falls back to cloudpickle; an open file or stream is refused. An output that is also an
input of the step and serialises to the very bytes it was loaded from is not written
again: its data file is a hard link to the input's (a copy where links are refused).

A program that calls ``get_ipython()`` (the compiler turns ``%magic``, ``%%cell magic``
and ``!shell`` lines into such calls, as IPython itself does) gets an IPython
``InteractiveShell`` whose user namespace is the program's globals, made at the first
call; a program that does not pays nothing (IPython is never imported). Exit status: 0 success;
1 the program failed (its traceback, from the program's own frames, and the notebook
cells of those frames, on stderr and in KFJUPYTER_ERROR_FILE when set) or a value could
not be loaded or saved ("step STEP: variable NAME (TYPE) cannot be passed to the next
step: REASON", then the notebook cell that last assigned it and what to do instead).
Cells are numbered as JupyterLab's status bar does: 1 is the notebook's first cell.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import re
import runpy
import shutil
import sys
import traceback
import types
from pathlib import Path
from typing import Any

PARAM_TYPES = ("int", "float", "str", "bool", "json")

_EXT = {
    "numpy": "npy",
    "pandas": "pkl",
    "torch_tensor": "pt",
    "torch_module": "pt",
    "sklearn": "joblib",
    "xgboost_dmatrix": "buffer",
    "xgboost_booster": "json",
    "keras": "keras",
    "json": "json",
    "cloudpickle": "pkl",
    "pickle": "pkl",
}


class StepValueError(Exception):
    """A value could not be saved or loaded (the message says which and why)."""


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------


def _type_name(value):
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_plain_json(value, depth=0):
    if depth > 100:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return type(value) in (type(None), bool, int, str)
    if type(value) is float:
        return True
    if type(value) is list:
        return all(_is_plain_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain_json(v, depth + 1) for k, v in value.items())
    return False


def _detect(value):
    """The format to try first for ``value`` (libraries looked up only if already imported)."""
    np = sys.modules.get("numpy")
    if np is not None and type(value) is np.ndarray and not value.dtype.hasobject:
        return "numpy"
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
        return "pandas"
    if _keras_library(value):  # before torch: a Keras model on the torch backend is an nn.Module
        return "keras"
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return "torch_tensor"
        if isinstance(value, torch.nn.Module):
            return "torch_module"
    xgb = sys.modules.get("xgboost.core")
    if xgb is not None:
        if isinstance(value, xgb.DMatrix):
            return "xgboost_dmatrix"
        if isinstance(value, xgb.Booster):
            return "xgboost_booster"
    base = sys.modules.get("sklearn.base")
    if base is not None and isinstance(value, base.BaseEstimator):
        return "sklearn"
    if _is_plain_json(value):
        return "json"
    return "cloudpickle"


#: The Keras packages whose models the keras format saves (``tensorflow.keras`` is one of them).
_KERAS = ("keras", "tf_keras")


def _keras_library(value):
    """``keras`` or ``tf_keras`` when ``value`` is a model of that package, else None
    (from its classes' module names: nothing is imported)."""
    for cls in type(value).__mro__:
        root = cls.__module__.split(".")[0]
        if root in _KERAS and cls.__name__ == "Model":
            return root
    return None


def _keras_custom_classes(value):
    """The classes of the model's parts (layers, and the model itself) that no module
    holds (defined by the step): Keras loads them only when given as ``custom_objects``."""
    parts = getattr(value, "_flatten_layers", None)
    layers = list(parts(include_self=True, recursive=True)) if parts else [value, *value.layers]
    custom = {}
    for layer in layers:
        cls = type(layer)
        if cls.__module__ == "__main__" or cls.__module__ not in sys.modules:
            custom[cls.__name__] = cls
    return custom


def _cloudpickle():
    try:
        import cloudpickle

        return cloudpickle
    except ImportError:
        return None


#: The formats whose writer takes a binary file object (see :class:`_Unchanged`).
_STREAMED = ("numpy", "pandas", "torch_tensor", "torch_module", "sklearn", "json", "cloudpickle", "pickle")


def _write(fmt, value, data, fh=None):
    """Serialise ``value`` as ``fmt`` into the file ``data`` (into ``fh``, a binary file
    object, instead when given: only for the formats of ``_STREAMED``)."""
    if fmt == "xgboost_dmatrix":
        value.save_binary(str(data))
        return
    if fmt == "xgboost_booster":
        value.save_model(str(data))
        return
    if fmt == "keras":
        custom = _keras_custom_classes(value)
        if custom:
            with open(data.with_name("custom.pkl"), "wb") as out:
                (_cloudpickle() or pickle).dump(custom, out, protocol=pickle.HIGHEST_PROTOCOL)
        value.save(str(data))
        return
    if fh is None:
        with open(data, "wb") as out:
            _write(fmt, value, data, out)
        return
    if fmt == "numpy":
        import numpy as np

        np.save(fh, value, allow_pickle=False)
    elif fmt == "pandas":
        value.to_pickle(fh)
    elif fmt == "torch_tensor":
        import torch

        torch.save(value, fh)
    elif fmt == "torch_module":
        import torch

        cp = _cloudpickle()
        torch.save(value, fh, pickle_module=cp or pickle)
    elif fmt == "sklearn":
        import joblib

        joblib.dump(value, fh)
    elif fmt == "json":
        text = io.TextIOWrapper(fh, encoding="utf-8", write_through=True)
        json.dump(value, text)
        text.detach()
    else:
        cp = _cloudpickle() if fmt == "cloudpickle" else None
        (cp or pickle).dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)


class _Unchanged(io.RawIOBase):
    """A file to serialise into that, while what is written equals the bytes of the
    file ``previous``, writes nothing: the first difference writes the equal part and
    goes on writing. ``finish()`` says whether the bytes were ``previous``'s, all of them."""

    def __init__(self, data, previous):
        super().__init__()
        self._data = data
        self._previous = open(previous, "rb")
        self._out = None
        self._same = 0  # bytes equal to previous's so far (none written)
        self._buf = bytearray()  # previous's next bytes (reused: no new pages per write)

    def writable(self):
        return True

    def write(self, b):
        n = memoryview(b).nbytes
        if self._out is None:
            if len(self._buf) != n:
                self._buf = bytearray(n)
            if self._previous.readinto(self._buf) == n and self._buf == b:  # bytearray ==: memcmp
                self._same += n
                return n
            self._diverge()
        self._out.write(b)
        return n

    def _diverge(self):
        self._out = open(self._data, "wb")
        self._previous.seek(0)
        left = self._same
        while left:
            chunk = self._previous.read(min(left, 1 << 20))
            self._out.write(chunk)
            left -= len(chunk)

    def finish(self):
        same = self._out is None and self._previous.read(1) == b""
        if self._out is None and not same:  # a prefix of previous: write it
            self._diverge()
        self.close()
        return same

    def close(self):
        if self._out is not None:
            self._out.close()
        self._previous.close()
        super().close()


def _write_unless_unchanged(fmt, value, data, previous):
    """:func:`_write`, but when the bytes are those of ``previous`` (a data file), ``data``
    becomes a hard link to it (a copy where links are refused) instead of a second write."""
    sink = _Unchanged(data, previous)
    try:
        fh = io.BufferedWriter(sink, buffer_size=1 << 20)
        _write(fmt, value, data, fh)
        fh.detach()  # flushes into sink, leaves it open
        same = sink.finish()
    finally:
        sink.close()
    if same:
        try:
            os.link(previous, data)
        except OSError:
            shutil.copyfile(previous, data)


def save_value(value: Any, path: str | os.PathLike[str], name: str | None = None,
               previous: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Save ``value`` into the value directory ``path``; return its meta dict.

    ``previous``: the value directory ``value`` was loaded from, if any; when ``value``
    serialises to the same bytes, its data file is linked from there, not written again.
    Raises :class:`StepValueError` (saying why) when no format can serialise it.
    """
    path = Path(path)
    if isinstance(value, io.IOBase):
        # cloudpickle would turn a readable file into a StringIO of what is left of it
        raise StepValueError("it is an open file or stream; pass its contents or its path instead")
    before = _previous_format(previous, path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    fmt = _detect(value)
    tried = []
    candidates = [fmt] if fmt in ("cloudpickle", "json") else [fmt, "cloudpickle"]
    for candidate in candidates:
        if candidate == "cloudpickle" and _cloudpickle() is None:
            candidate = "pickle"
        data = path / f"data.{_EXT[candidate]}"
        try:
            if before and before[0] == candidate and candidate in _STREAMED:
                _write_unless_unchanged(candidate, value, data, before[1])
            else:
                _write(candidate, value, data)
        except Exception as exc:  # noqa: BLE001 - any failure means "try the next format"
            tried.append(f"{candidate}: {type(exc).__name__}: {exc}")
            for leftover in path.iterdir():
                leftover.unlink()
            continue
        meta = {"name": name, "format": candidate, "type": _type_name(value)}
        if candidate == "keras":
            meta["library"] = _keras_library(value)
        (path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        return meta
    shutil.rmtree(path, ignore_errors=True)
    raise StepValueError("; ".join(tried))


def _previous_format(previous, path):
    """(format, data file) of the value directory ``previous``, or None (none, the same
    directory as ``path``, or unreadable)."""
    if previous is None:
        return None
    previous = Path(previous)
    try:
        if previous.resolve() == path.resolve():
            return None
        fmt = json.loads((previous / "meta.json").read_text(encoding="utf-8"))["format"]
        data = previous / f"data.{_EXT[fmt]}"
        return (fmt, data) if data.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_value(path: str | os.PathLike[str]) -> Any:
    """Load the value saved by :func:`save_value` in directory ``path``."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    fmt = meta["format"]
    data = path / f"data.{_EXT[fmt]}"
    if fmt == "numpy":
        import numpy as np

        return np.load(data, allow_pickle=False)
    if fmt == "pandas":
        import pandas as pd

        return pd.read_pickle(data)
    if fmt == "torch_tensor":
        import torch

        return torch.load(data, weights_only=True, map_location=_map_location(torch))
    if fmt == "torch_module":
        import torch

        return torch.load(data, weights_only=False, map_location=_map_location(torch))
    if fmt == "sklearn":
        import joblib

        return joblib.load(data)
    if fmt == "xgboost_dmatrix":
        import xgboost

        return xgboost.DMatrix(str(data))
    if fmt == "xgboost_booster":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(data))
        return booster
    if fmt == "keras":
        import importlib

        library = meta.get("library") or "keras"
        custom = None
        if (path / "custom.pkl").is_file():
            with open(path / "custom.pkl", "rb") as fh:
                custom = pickle.load(fh)
        return importlib.import_module(library).models.load_model(str(data), custom_objects=custom)
    if fmt == "json":
        with open(data, encoding="utf-8") as fh:
            return json.load(fh)
    with open(data, "rb") as fh:  # cloudpickle output loads with pickle (cloudpickle importable)
        return pickle.load(fh)


def _map_location(torch: Any) -> str | None:
    """GPU tensors saved by a GPU step load on the CPU in a step without a GPU."""
    return None if torch.cuda.is_available() else "cpu"


def content_hash(path: str | os.PathLike[str]) -> str:
    """sha256 hex of a value directory's format and data bytes (the cache keys on it)."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256(meta["format"].encode() + b"\0")
    with open(path / f"data.{_EXT[meta['format']]}", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_param(type_: str, text: str) -> Any:
    """A parameter's value from its text (``--param NAME TYPE VALUE``)."""
    if type_ == "int":
        return int(text)
    if type_ == "float":
        return float(text)
    if type_ == "bool":
        low = text.strip().lower()
        if low not in ("true", "false"):
            raise ValueError(f"not a bool: {text!r} (use true or false)")
        return low == "true"
    if type_ == "json":
        return json.loads(text)
    if type_ == "str":
        return text
    raise ValueError(f"unknown parameter type {type_!r} (one of {', '.join(PARAM_TYPES)})")


# ---------------------------------------------------------------------------------------
# kfjupyter.report inside the step
# ---------------------------------------------------------------------------------------


def _kfjupyter():
    """What gives the program ``kfjupyter.report``: the real package's rank runtime, else
    the bootstrap beside this file (its stand-in installed as ``kfjupyter``), else a minimal
    one. The bootstrap also starts a pod's MLflow tracker (``pod_tracker``)."""
    try:
        from kfjupyter.runtime import bootstrap

        return bootstrap
    except ImportError:
        pass
    boot = Path(__file__).resolve().with_name("bootstrap.py")
    if boot.is_file():
        module = types.ModuleType("kfjupyter_bootstrap")
        module.__file__ = str(boot)
        exec(compile(boot.read_text(encoding="utf-8"), str(boot), "exec"), module.__dict__)
        module._install_standin()
        return module

    def report(step=None, **metrics):  # the minimal stand-in: bootstrap.report's file format
        import time

        record = {"time": time.time(), "step": step}
        record.update({k: float(v) for k, v in metrics.items()})
        target = os.environ.get("KFJUPYTER_METRICS_FILE")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        return record

    module = types.ModuleType("kfjupyter")
    module.report = report
    sys.modules["kfjupyter"] = module
    return module


def _display(*objs, **_kwargs):
    """``display`` outside IPython: print each object."""
    for obj in objs:
        print(obj)


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


#: codegen.MARKER, repeated here: this file runs on its own (no package around it on KFP).
_MARKER = re.compile(r"^# ---- .*: cell (\d+) ----$")


def _cell_at(lines, lineno):
    """(notebook cell, counted from 1 as JupyterLab does; line in that cell, from 1) of line ``lineno`` of
    the program whose ``lines`` are given, from the marker above it; None if unmarked."""
    for index in range(min(lineno, len(lines)) - 1, -1, -1):
        m = _MARKER.match(lines[index])
        if m:
            return int(m[1]), lineno - index - 1
    return None


def _program_lines(program):
    try:
        return Path(program).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def _program_traceback(program):
    """The current exception's traceback from the program's first frame on, and where the
    failing line is in the notebook (the generated program marks each cell's start)."""
    exc_type, exc, tb = sys.exc_info()
    program = os.path.abspath(program)
    first = tb
    while first is not None and os.path.abspath(first.tb_frame.f_code.co_filename) != program:
        first = first.tb_next
    text = "".join(traceback.format_exception(exc_type, exc, first or tb))
    linenos = [n for f, n in traceback.walk_tb(first) if os.path.abspath(f.f_code.co_filename) == program]
    lines = _program_lines(program)
    places = []
    for line in linenos:  # outermost (the step's cell) to innermost (where it raised)
        where = _cell_at(lines, line)
        if where:
            places.append(f"cell {where[0]} line {where[1]}")
    if places:
        text += "(in " + " → ".join(dict.fromkeys(places)) + ")\n"
    return text


def _last_assignment(lines, name):
    """The program line that last binds the global ``name`` (assignment, ``for``, ``with``,
    ``import``, ``def``, ``class`` …, not inside a function or class), or None."""
    import ast

    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if child.name == name:
                    found.append(child.lineno)
                continue  # their bodies bind their own names
            if isinstance(child, (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)):
                continue
            if isinstance(child, ast.Name) and child.id == name and isinstance(child.ctx, ast.Store):
                found.append(child.lineno)
            elif isinstance(child, ast.alias) and (child.asname or child.name.split(".")[0]) == name:
                found.append(node.lineno)
            elif isinstance(child, ast.ExceptHandler) and child.name == name:
                found.append(child.lineno)
            visit(child)

    visit(tree)
    return max(found) if found else None


#: What to do with a value that cannot cross to the next step.
_REMEDY = ("save it to a file in the step and pass the path, or recreate it in the next step, "
           "or tag the cell that makes it with the step that uses it")


def _unsaveable(step, name, value, reason, program):
    """The message for output ``name`` that no format can save: the step, the variable,
    its type, the notebook cell that last assigned it (1-based, as JupyterLab counts)."""
    text = f"step {step}: variable {name} ({_type_name(value)}) cannot be passed to the next step: {reason}."
    lines = _program_lines(program)
    lineno = _last_assignment(lines, name)
    where = _cell_at(lines, lineno) if lineno else None
    if where:
        text += f" {name} was last assigned in cell {where[0]} (line {where[1]})."
    return text + f" To pass it on, {_REMEDY}."


class IPythonMissing(ImportError):
    """The program calls ``get_ipython()`` and IPython is not installed."""


#: A program that mentions it gets ``get_ipython`` (no IPython import for the others).
_USES_IPYTHON = re.compile(r"\bget_ipython\b")


def _ipython_provider(step, program):
    """The program's ``get_ipython``: an IPython ``InteractiveShell`` whose user namespace
    is the program's globals, made at the first call (``%time x = 1`` binds x in the step)."""
    shell = None

    def get_ipython():
        nonlocal shell
        if shell is None:
            shell = _ipython_shell(step, program, sys._getframe(1))
        return shell

    return get_ipython


def _ipython_shell(step, program, caller):
    try:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
    except ImportError as exc:
        where = "the program"
        if os.path.abspath(caller.f_code.co_filename) == os.path.abspath(program):
            lines = _program_lines(program)
            cell = _cell_at(lines, caller.f_lineno)
            code = lines[caller.f_lineno - 1].strip() if caller.f_lineno <= len(lines) else ""
            where = (f"cell {cell[0] + 1} line {cell[1]}" if cell else f"line {caller.f_lineno}") + f" ({code})"
        raise IPythonMissing(
            f"step {step}: {where} runs an IPython magic or !shell line, but IPython cannot be "
            f"imported where the step runs ({exc}): install ipython in the step's image, or "
            "write the line as plain Python (subprocess.run for a shell command)"
        ) from None
    class StepShell(InteractiveShell):
        def enable_gui(self, gui=None):
            """A step has no GUI event loop to run (``%matplotlib inline`` asks for none)."""

    config = Config()
    config.HistoryManager.enabled = False  # no history database for a step
    namespace = caller.f_globals
    main = sys.modules.get("__main__")
    if main is not None and main.__dict__ is namespace:
        return StepShell.instance(config=config, user_module=main)
    return StepShell.instance(config=config, user_ns=namespace)


def _fail(text):
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()
    error_file = os.environ.get("KFJUPYTER_ERROR_FILE")
    if error_file:
        Path(error_file).write_text(text, encoding="utf-8")
    sys.exit(1)


_PARSER = None


def _parser():
    """The command line's parser, built once per process (a supervisor builds it before
    it forks its steps: each fork parses with it at no cost)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = _new_parser()
    return _PARSER


def _new_parser():
    p = argparse.ArgumentParser(prog="stepruntime", description="Run one kfjupyter pipeline step.")
    p.add_argument("--program", required=True, help="the step's generated program")
    p.add_argument("--step", default="step", help="the step's name (for messages)")
    p.add_argument("--param", nargs=3, action="append", default=[], metavar=("NAME", "TYPE", "VALUE"))
    p.add_argument("--input", nargs=2, action="append", default=[], metavar=("NAME", "PATH"))
    p.add_argument("--output", nargs=2, action="append", default=[], metavar=("NAME", "PATH"))
    p.add_argument("--metric", action="append", default=[], metavar="NAME")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    # run as a script, sys.path[0] is this package's folder: its modules (graph, cache,
    # kubernetes …) must not shadow the program's imports. The working directory takes its place.
    if sys.path and sys.path[0] and os.path.abspath(sys.path[0]) == here:
        sys.path[0] = os.getcwd()
    step = args.step
    init = {"display": _display}
    for name, type_, text in args.param:
        try:
            init[name] = parse_param(type_, text)
        except ValueError as exc:
            _fail(f"step {step}: parameter {name} ({type_}): {exc}")
    for name, path in args.input:
        try:
            init[name] = load_value(path)
        except Exception as exc:  # noqa: BLE001
            _fail(f"step {step}: input {name} cannot be loaded from {path}: {type(exc).__name__}: {exc}")
    if _USES_IPYTHON.search("\n".join(_program_lines(args.program))):
        init["get_ipython"] = _ipython_provider(step, args.program)
    kfj = _kfjupyter()
    start_tracker = getattr(kfj, "pod_tracker", None)
    tracker = start_tracker(name=step, params={n: t for n, _, t in args.param},
                            artifacts={"program": args.program}) if start_tracker else None  # fmt: skip
    ok = False
    try:
        ok = _run(args, step, init, kfj) == 0
        return 0
    finally:
        if tracker is not None:
            tracker.finish(ok)


def _run(args, step, init, kfj) -> int:
    """The step itself: its program, then its outputs and metrics (exits 1 on a failure)."""
    try:
        result = runpy.run_path(args.program, init_globals=init, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            _fail(f"step {step}: the program exited with status {exc.code}")
        result = None
    except IPythonMissing as exc:
        _fail(str(exc))
    except BaseException:
        _fail(_program_traceback(args.program))
    if result is None:  # sys.exit(0) inside the program: nothing to save
        if args.output or args.metric:
            _fail(f"step {step}: the program called sys.exit() before its outputs were assigned")
        return 0
    inputs = dict(args.input)
    for name, path in args.output:
        if name not in result:
            _fail(f"step {step}: variable {name} was not assigned, but a later step or the metrics need it")
        value = result[name]
        try:
            save_value(value, path, name=name, previous=inputs.get(name))
        except StepValueError as exc:
            _fail(_unsaveable(step, name, value, exc, args.program))
    for name in args.metric:
        if name not in result:
            _fail(f"step {step}: metric {name} was not assigned")
        try:
            value = float(result[name])
        except (TypeError, ValueError) as exc:
            _fail(f"step {step}: metric {name} ({_type_name(result[name])}) is not a number: {exc}")
        kfj.report(**{name: value})
    return 0


if __name__ == "__main__":
    sys.exit(main())
