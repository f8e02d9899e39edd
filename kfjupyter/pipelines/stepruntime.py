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

A value directory holds ``meta.json`` ({"name", "format", "type"}) and ``data.<ext>``;
formats, tried in this order:

=============  ========  =============================================================
format         file      for
=============  ========  =============================================================
numpy          data.npy  numpy arrays without object dtype (``np.save``, no pickle)
pandas         data.pkl  pandas DataFrame / Series (``pandas.to_pickle``)
torch_tensor   data.pt   torch tensors (``torch.save``; loads with ``weights_only``)
torch_module   data.pt   torch ``nn.Module``: the whole module with its state, saved with
                         ``torch.save(pickle_module=cloudpickle)`` so a class defined in
                         the notebook travels by value
sklearn        data.joblib  scikit-learn estimators (``joblib.dump``)
json           data.json  None, bool, int, float, str, and lists / str-keyed dicts of them
cloudpickle    data.pkl  anything else cloudpickle can serialise (lambdas, local classes)
pickle         data.pkl  the same when cloudpickle is not installed
=============  ========  =============================================================

A format that fails on a value (a DataFrame holding a notebook-defined class, say)
falls back to cloudpickle; an open file or stream is refused. Exit status: 0 success;
1 the program failed (its traceback, from the program's own frames, and the notebook
cells of those frames, on stderr and in KFJUPYTER_ERROR_FILE when set) or a value could
not be loaded or saved ("step STEP: variable NAME (TYPE) cannot be passed to the next
step: REASON").
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
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return "torch_tensor"
        if isinstance(value, torch.nn.Module):
            return "torch_module"
    base = sys.modules.get("sklearn.base")
    if base is not None and isinstance(value, base.BaseEstimator):
        return "sklearn"
    if _is_plain_json(value):
        return "json"
    return "cloudpickle"


def _cloudpickle():
    try:
        import cloudpickle

        return cloudpickle
    except ImportError:
        return None


def _write(fmt, value, data):
    if fmt == "numpy":
        import numpy as np

        with open(data, "wb") as fh:
            np.save(fh, value, allow_pickle=False)
    elif fmt == "pandas":
        value.to_pickle(data)
    elif fmt == "torch_tensor":
        import torch

        torch.save(value, data)
    elif fmt == "torch_module":
        import torch

        cp = _cloudpickle()
        torch.save(value, data, pickle_module=cp or pickle)
    elif fmt == "sklearn":
        import joblib

        joblib.dump(value, data)
    elif fmt == "json":
        with open(data, "w", encoding="utf-8") as fh:
            json.dump(value, fh)
    else:
        cp = _cloudpickle() if fmt == "cloudpickle" else None
        with open(data, "wb") as fh:
            (cp or pickle).dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)


def save_value(value: Any, path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
    """Save ``value`` into the value directory ``path``; return its meta dict.

    Raises :class:`StepValueError` (saying why) when no format can serialise it.
    """
    path = Path(path)
    if isinstance(value, io.IOBase):
        # cloudpickle would turn a readable file into a StringIO of what is left of it
        raise StepValueError("it is an open file or stream; pass its contents or its path instead")
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
            _write(candidate, value, data)
        except Exception as exc:  # noqa: BLE001 - any failure means "try the next format"
            tried.append(f"{candidate}: {type(exc).__name__}: {exc}")
            if data.exists():
                data.unlink()
            continue
        meta = {"name": name, "format": candidate, "type": _type_name(value)}
        (path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        return meta
    shutil.rmtree(path, ignore_errors=True)
    raise StepValueError("; ".join(tried))


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
    """What gives the program ``kfjupyter.report``: the real package's (its rank runtime),
    else the bootstrap's stand-in, else a minimal one."""
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
        return sys.modules["kfjupyter"]

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
    try:
        lines = Path(program).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    places = []
    for line in linenos:  # outermost (the step's cell) to innermost (where it raised)
        for index in range(min(line, len(lines)) - 1, -1, -1):
            m = _MARKER.match(lines[index])
            if m:
                places.append(f"notebook cell {m[1]} line {line - index - 1}")
                break
    if places:
        text += "(in " + " → ".join(dict.fromkeys(places)) + ")\n"
    return text


def _fail(text):
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()
    error_file = os.environ.get("KFJUPYTER_ERROR_FILE")
    if error_file:
        Path(error_file).write_text(text, encoding="utf-8")
    sys.exit(1)


def _parser():
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
    kfj = _kfjupyter()
    try:
        result = runpy.run_path(args.program, init_globals=init, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            _fail(f"step {step}: the program exited with status {exc.code}")
        result = None
    except BaseException:
        _fail(_program_traceback(args.program))
    if result is None:  # sys.exit(0) inside the program: nothing to save
        if args.output or args.metric:
            _fail(f"step {step}: the program called sys.exit() before its outputs were assigned")
        return 0
    for name, path in args.output:
        if name not in result:
            _fail(f"step {step}: variable {name} was not assigned, but a later step or the metrics need it")
        value = result[name]
        try:
            save_value(value, path, name=name)
        except StepValueError as exc:
            _fail(
                f"step {step}: variable {name} ({_type_name(value)}) cannot be passed to the next step: {exc}"
            )
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
