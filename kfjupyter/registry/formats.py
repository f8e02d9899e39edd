"""Model formats: how an object becomes files in an artifact, and how the files load back.

=========  ===============================================  =================================
format     saved from                                        loaded as
=========  ===============================================  =================================
sklearn    any scikit-learn estimator/pipeline (joblib)      the estimator
pytorch    ``nn.Module`` (whole module; classes defined in   the module (on ``map_location``),
           the notebook travel by value), a state dict,      the state dict, the TorchScript
           a TorchScript module                              module
onnx       ``onnx.ModelProto`` or its bytes                  ``onnxruntime.InferenceSession``
                                                             (``onnx.ModelProto`` without it)
xgboost    ``Booster`` or a scikit-learn-style ``XGBModel``  the same class
custom     any picklable object (cloudpickle)                the object
           a file or folder                                  its local path
=========  ===============================================  =================================

The names are KServe's ``modelFormat`` names, so a registered version can be served as it is.
Loading runs pickle for sklearn/pytorch/custom objects: load only models you trust (the
artifact's hash is checked before loading, so what loads is what was registered).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import files_under
from .entities import FRAMEWORKS
from .errors import InvalidOptionError

#: a file's suffix → the format it most likely is
SUFFIXES = {
    ".onnx": "onnx",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".joblib": "sklearn",
    ".ubj": "xgboost",
    ".xgb": "xgboost",
}

#: the file each format saves (and looks for first in a registered folder)
MAIN_FILES = {
    "sklearn": ("model.joblib", ".joblib", ".pkl"),
    "pytorch": ("model.pt", ".pt", ".pth"),
    "onnx": ("model.onnx", ".onnx"),
    "xgboost": ("model.ubj", ".ubj", ".json", ".xgb", ".bst"),
    "custom": ("model.pkl", ".pkl"),
}


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _mro_modules(obj: Any) -> set[str]:
    return {c.__module__.split(".")[0] for c in type(obj).__mro__}


def detect(obj: Any) -> str:
    """The format of an in-memory model."""
    mods = _mro_modules(obj)
    if "xgboost" in mods:
        return "xgboost"
    if "torch" in mods:
        return "pytorch"
    if "onnx" in mods and type(obj).__name__ == "ModelProto":
        return "onnx"
    if "sklearn" in mods:
        return "sklearn"
    if isinstance(obj, dict) and obj and all(_module_of(v) == "torch" for v in obj.values()):
        return "pytorch"  # a state dict
    return "custom"


def detect_path(path: Path) -> str:
    if path.is_file():
        return SUFFIXES.get(path.suffix.lower(), "custom")
    found = {SUFFIXES.get(p.suffix.lower()) for p in files_under(path, what="model folder")} - {None}
    return found.pop() if len(found) == 1 else "custom"


#: modules a state dict's pickle may name (tensors, their storages, the dict itself);
#: anything else (``torch.nn.modules…``, a notebook class by value …) is a whole module
_STATE_DICT_MODULES = ("collections", "torch", "torch._utils", "torch.storage", "builtins", "numpy.core.multiarray")


def pytorch_file_kind(path: Path) -> str | None:
    """What a ``torch.save``/``torch.jit.save`` file holds, read without torch and without
    unpickling anything: ``"torchscript"`` (its archive has ``code/``), ``"state_dict"``
    (its pickle names only tensors and dicts), ``"module"`` (it names a class), or None
    (not a zip archive: a legacy file; unknown)."""
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if any("/code/" in n or n.endswith("constants.pkl") for n in names):
                return "torchscript"
            pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pkl is None:
                return None
            data = zf.read(pkl)
    except (OSError, zipfile.BadZipFile):
        return None
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                module = str(arg).split(" ", 1)[0]
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                module = strings[-2]
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if module not in _STATE_DICT_MODULES:
                return "module"
    except Exception:  # noqa: BLE001  (a truncated or odd pickle: unknown)
        return None
    return "state_dict"


def check_framework(framework: str) -> str:
    if framework not in FRAMEWORKS:
        raise InvalidOptionError(f"unknown framework {framework!r}: one of {', '.join(FRAMEWORKS)}")
    return framework


def main_file_in(folder: Path, framework: str) -> str | None:
    """The file a loader opens in a registered folder."""
    files = sorted(p.relative_to(folder).as_posix() for p in files_under(folder, what="model folder"))
    if len(files) == 1:
        return files[0]
    preferred, *suffixes = MAIN_FILES[framework]
    if preferred in files:
        return preferred
    for suffix in suffixes:
        matching = [f for f in files if f.endswith(suffix)]
        if len(matching) == 1:
            return matching[0]
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version({"sklearn": "scikit-learn"}.get(module, module))
    except Exception:
        return None


# -- saving -----------------------------------------------------------------------------


def save(obj: Any, framework: str, folder: Path) -> dict:
    """Write ``obj`` into ``folder``; returns main_file, format_version and properties."""
    saver = _SAVERS[framework]
    main_file, props = saver(obj, folder)
    return {"main_file": main_file, "format_version": props.pop("format_version", None), "properties": props}


def _save_sklearn(obj: Any, folder: Path):
    import joblib

    joblib.dump(obj, folder / "model.joblib")
    return "model.joblib", {"format_version": _version("sklearn"), "class": type(obj).__qualname__}


def _save_pytorch(obj: Any, folder: Path):
    import cloudpickle
    import torch

    version = torch.__version__.split("+")[0]
    if isinstance(obj, torch.jit.ScriptModule):
        torch.jit.save(obj, str(folder / "model.pt"))
        return "model.pt", {"format_version": version, "torch_kind": "torchscript"}
    if isinstance(obj, torch.nn.Module):
        # by value: a class defined in the notebook loads in any other process
        torch.save(obj, folder / "model.pt", pickle_module=cloudpickle)
        return "model.pt", {"format_version": version, "torch_kind": "module", "class": type(obj).__qualname__}
    torch.save(obj, folder / "model.pt")
    return "model.pt", {"format_version": version, "torch_kind": "state_dict"}


def _save_onnx(obj: Any, folder: Path):
    if isinstance(obj, (bytes, bytearray)):
        (folder / "model.onnx").write_bytes(bytes(obj))
        props: dict = {}
    else:
        import onnx

        onnx.save(obj, str(folder / "model.onnx"))
        props = {"opset": [int(o.version) for o in obj.opset_import if o.domain in ("", "ai.onnx")][:1]}
    return "model.onnx", {"format_version": _version("onnx"), **props}


def _save_xgboost(obj: Any, folder: Path):
    obj.save_model(str(folder / "model.ubj"))
    return "model.ubj", {"format_version": _version("xgboost"), "xgboost_class": type(obj).__name__}


def _save_custom(obj: Any, folder: Path):
    import cloudpickle

    with open(folder / "model.pkl", "wb") as fh:
        cloudpickle.dump(obj, fh)
    return "model.pkl", {"format_version": None, "class": type(obj).__qualname__, "pickled": True}


_SAVERS = {
    "sklearn": _save_sklearn,
    "pytorch": _save_pytorch,
    "onnx": _save_onnx,
    "xgboost": _save_xgboost,
    "custom": _save_custom,
}


# -- loading ----------------------------------------------------------------------------


def load(folder: Path, main_file: str | None, framework: str, properties: dict, **options: Any) -> Any:
    """The model in an artifact folder (see the table above). ``options`` go to the loader
    (``map_location`` for pytorch, ``providers`` for onnxruntime)."""
    if main_file is None:
        main_file = main_file_in(folder, framework)
    path = folder / main_file if main_file else folder
    if framework == "custom" and not properties.get("pickled"):
        return path
    if not path.is_file():
        raise InvalidOptionError(
            f"cannot tell which file of the artifact {folder} holds the {framework} model; "
            "register it with a single model file"
        )
    return _LOADERS[framework](path, properties, options)


def _load_sklearn(path: Path, props: dict, options: dict):
    import joblib

    return joblib.load(path)


def _load_pytorch(path: Path, props: dict, options: dict):
    import torch

    map_location = options.get("map_location", "cpu")
    if props.get("torch_kind") == "torchscript":
        return torch.jit.load(str(path), map_location=map_location)
    try:
        return torch.load(path, map_location=map_location, weights_only=props.get("torch_kind") == "state_dict")
    except RuntimeError:  # TorchScript saved by hand, registered as a file
        return torch.jit.load(str(path), map_location=map_location)


def _load_onnx(path: Path, props: dict, options: dict):
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None and options.get("runtime", True):
        providers = options.get("providers") or ["CPUExecutionProvider"]
        return onnxruntime.InferenceSession(str(path), providers=providers)
    import onnx

    return onnx.load(str(path))


def _load_xgboost(path: Path, props: dict, options: dict):
    import xgboost

    cls_name = props.get("xgboost_class", "Booster")
    cls = getattr(xgboost, cls_name, None)
    if cls is None or cls_name == "Booster":
        return xgboost.Booster(model_file=str(path))
    model = cls()
    model.load_model(str(path))
    return model


def _load_custom(path: Path, props: dict, options: dict):
    import pickle

    with open(path, "rb") as fh:
        return pickle.load(fh)


_LOADERS = {
    "sklearn": _load_sklearn,
    "pytorch": _load_pytorch,
    "onnx": _load_onnx,
    "xgboost": _load_xgboost,
    "custom": _load_custom,
}
