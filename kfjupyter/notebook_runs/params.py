"""Checks made before a notebook run starts: the notebook, its parameters, the sweep grid.

Everything here raises :class:`~kfjupyter.errors.InvalidOptionError` (a
``KFJupyterError``) naming what is wrong, and nothing is recorded or started when it does.

Parameters the notebook does not declare are **refused**, where papermill only warns
("Passed unknown parameter"): a misspelt name would otherwise run the notebook — or a
whole sweep — with the defaults. A notebook with no cell tagged ``parameters`` takes no
parameters for the same reason (papermill would inject them as the first cell), unless it
is a Kale notebook: its ``pipeline-parameters`` cell is its parameters cell (see
:func:`parameters_cell`; a run's copy tags it ``parameters`` for papermill).
"""

from __future__ import annotations

import ast
import itertools
import json
import keyword
from pathlib import Path
from typing import Any

from ..errors import InvalidOptionError

#: The cell tag papermill injects parameters after.
PARAMETERS_TAG = "parameters"
#: Kale's tag of the cell holding a pipeline's parameters (``NAME = literal`` lines).
KALE_PARAMETERS_TAG = "pipeline-parameters"
#: The tag of the cell papermill injects (ignored when counting a notebook's own cells).
INJECTED_TAG = "injected-parameters"
DEFAULT_KERNEL = "python3"


class _Node(dict):
    """A notebook JSON object with attribute access, like nbformat's NotebookNode."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _node(value):
    if isinstance(value, dict):
        return _Node((k, _node(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_node(v) for v in value]
    return value


def load_notebook(path: str | Path, data: bytes | None = None):
    """The notebook at ``path`` (read only; the file is untouched), as nbformat v4 JSON.

    Plain JSON for v4 notebooks: importing nbformat costs seconds (jsonschema's format
    checkers), which ``kfjupyter run`` and a kernel need not pay to check a notebook.
    Older formats are converted with nbformat. Cell sources are joined into strings.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidOptionError(f"notebook not found: {p}")
    try:
        raw = json.loads(p.read_bytes() if data is None else data)
        if not isinstance(raw, dict) or not isinstance(raw.get("cells", []), list):
            raise ValueError("no notebook JSON object with a list of cells")
        if raw.get("nbformat") != 4:
            import nbformat

            raw = json.loads(nbformat.writes(nbformat.reads(json.dumps(raw), as_version=4)))
    except Exception as exc:  # malformed JSON, not a notebook …
        raise InvalidOptionError(f"{p} is not a readable notebook: {exc}") from None
    nb = _node(raw)
    nb.setdefault("metadata", _Node())
    for cell in nb.setdefault("cells", []):
        if not isinstance(cell, dict):
            raise InvalidOptionError(f"{p} is not a readable notebook: a cell is not an object")
        source = cell.get("source", "")
        cell["source"] = "".join(source) if isinstance(source, list) else str(source or "")
        cell.setdefault("cell_type", "code")
        cell.setdefault("metadata", _Node())
    return nb


def parameters_cell(nb) -> tuple[int, Any, str] | None:
    """(index, cell, tag) of the notebook's parameters cell, or None: the first cell tagged
    ``parameters``, else (a Kale notebook) the first tagged ``pipeline-parameters``."""
    for tag in (PARAMETERS_TAG, KALE_PARAMETERS_TAG):
        for index, cell in enumerate(nb.cells):
            if tag in (cell.get("metadata", {}).get("tags") or []):
                return index, cell, tag
    return None


def with_parameters_tag(data: bytes) -> bytes:
    """The notebook (its bytes), its parameters cell (:func:`parameters_cell`) tagged
    ``parameters`` so that papermill injects after it; the bytes as they are when it
    already is, or has none."""
    nb = json.loads(data)
    found = parameters_cell(_node(nb))
    if found is None or found[2] == PARAMETERS_TAG:
        return data
    metadata = nb["cells"][found[0]].setdefault("metadata", {})
    metadata["tags"] = [*(metadata.get("tags") or []), PARAMETERS_TAG]
    return json.dumps(nb, indent=1).encode()


def declared_parameters(nb) -> dict[str, str] | None:
    """Names the ``parameters`` cell assigns → their source text, or None if it cannot be read.

    IPython magics and shell lines (``%…``, ``!…``) are skipped; a cell that still is not
    Python (another kernel's language) gives None, and then parameters are not checked.
    """
    found = parameters_cell(nb)
    if found is None:
        return {}
    source = "\n".join(
        line for line in found[1].source.splitlines() if not line.lstrip().startswith(("%", "!"))
    )
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        value = ast.get_source_segment(source, node.value) if node.value is not None else ""
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names[sub.id] = value or ""
    return names


#: jupyter_client's alias: a kernel named ``python`` is its native ``python3`` (papermill runs it)
KERNEL_ALIASES = {"python": DEFAULT_KERNEL}


def _kernel_spec(name: str):
    """The installed kernelspec of ``name`` (an alias resolved as jupyter_client does), or None."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        return KernelSpecManager().get_kernel_spec(KERNEL_ALIASES.get(name, name))
    except NoSuchKernel:
        return None


def notebook_kernel(nb, kernel: str | None) -> str:
    """The kernel a run uses: ``kernel``, else the notebook's kernelspec, else ``python3``.

    Checked against the installed kernelspecs (``python`` is ``python3``, as jupyter_client
    and papermill have it), so a missing kernel fails before a run starts.
    """
    name = kernel or (nb.metadata.get("kernelspec") or {}).get("name") or DEFAULT_KERNEL
    if not isinstance(name, str) or not name:
        raise InvalidOptionError(f"invalid kernel {name!r}")
    if _kernel_spec(name) is None:
        hint = "" if kernel else " (named in the notebook's metadata; pass kernel='python3' to use another)"
        extra = " — install ipykernel" if KERNEL_ALIASES.get(name, name) == DEFAULT_KERNEL else ""
        raise InvalidOptionError(f"no Jupyter kernel named {name!r}{hint}{extra}")
    return name


def notebook_language(nb, language: str | None, kernel: str) -> str:
    """The language papermill writes the parameters in: ``language``, else the notebook's
    (``language_info``, then its kernelspec's, as papermill reads them), else the language
    of the kernel that runs it. Where papermill stops with "No language found in
    notebook", a run of a notebook without that metadata uses its kernel's language."""
    if language is not None and (not isinstance(language, str) or not language.strip()):
        raise InvalidOptionError(f"invalid language {language!r}")
    found = language or (nb.metadata.get("language_info") or {}).get("name") or (nb.metadata.get("kernelspec") or {}).get("language")
    if found:
        return found
    spec = _kernel_spec(kernel)
    if spec is None or not spec.language:
        raise InvalidOptionError(f"the notebook names no language (no kernelspec or language_info) and kernel {kernel!r} "
                                 "has none: pass language='python' (kfjupyter run --language python)")  # fmt: skip
    return spec.language


def code_cell_count(nb) -> int:
    """Code cells with source, not counting a cell papermill injected on an earlier run."""
    return sum(
        1
        for c in nb.cells
        if c.cell_type == "code" and c.source.strip() and INJECTED_TAG not in (c.get("metadata", {}).get("tags") or [])
    )


def check_parameters(parameters: dict[str, Any] | None, nb, notebook: Path, what: str = "parameter") -> dict[str, Any]:
    """``parameters`` as a plain dict, every name declared in the notebook and every value JSON."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidOptionError(f"parameters must be a dict of name → value, not {type(parameters).__name__}")
    out: dict[str, Any] = {}
    for name, value in parameters.items():
        check_name(name, what)
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise InvalidOptionError(
                f"{what} {name!r}: value {value!r} cannot be passed to a notebook ({exc}); "
                "use numbers, strings, booleans, None, or lists/dicts of them"
            ) from None
        out[name] = value
    if out:
        declared = declared_parameters(nb)
        if declared is not None:
            found = parameters_cell(nb)
            if found is None:
                raise InvalidOptionError(
                    f"{notebook} has no cell tagged {PARAMETERS_TAG!r} (or Kale's {KALE_PARAMETERS_TAG!r}), so it "
                    f"takes no parameters (got {', '.join(out)}): tag the cell that defines them"
                )
            unknown = [n for n in out if n not in declared]
            if unknown:
                known = ", ".join(declared) or "none"
                raise InvalidOptionError(
                    f"{what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} not in the "
                    f"{found[2]!r} cell of {notebook} (it defines: {known})"
                )
    return out


def check_name(name: Any, what: str = "parameter") -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise InvalidOptionError(f"invalid {what} name {name!r}: it must be a Python identifier")
    return name


def check_sweep(sweep: Any, fixed: dict[str, Any]) -> dict[str, list]:
    """``{name: [values…]}`` with non-empty lists, no name also given as a fixed parameter."""
    if not isinstance(sweep, dict):
        raise InvalidOptionError(f"sweep must be a dict of name → list of values, not {type(sweep).__name__}")
    if not sweep:
        raise InvalidOptionError("empty sweep grid: give at least one parameter and its values")
    out: dict[str, list] = {}
    for name, values in sweep.items():
        check_name(name, "sweep parameter")
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise InvalidOptionError(
                f"sweep values of {name!r} must be a list of values, not {values!r}"
            )
        values = list(values)
        if not values:
            raise InvalidOptionError(f"empty sweep grid: parameter {name!r} has no values")
        if name in fixed:
            raise InvalidOptionError(f"{name!r} is given both as a parameter and as a sweep")
        out[name] = values
    return out


def grid(fixed: dict[str, Any], sweep: dict[str, list]) -> list[dict[str, Any]]:
    """Every parameter set of the sweep (the product of its value lists, in order), fixed ones added."""
    names = list(sweep)
    return [{**dict(zip(names, combo)), **fixed} for combo in itertools.product(*(sweep[n] for n in names))]


# -- command-line values ------------------------------------------------------------

def parse_value(text: str) -> Any:
    """A command-line value exactly as papermill's ``-p`` reads it (``papermill.cli._resolve_type``):
    ``True``, ``False``, ``None`` (so spelled) are those; what ``int()`` reads (``1_000``,
    `` 7``) an int; what ``float()`` reads (``1e-3``, ``inf``, ``nan``) a float; anything else
    (``true``, ``null``, ``0.1.2``) stays a string."""
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_yaml_parameters(text: str | bytes, where: str = "YAML parameters") -> dict[str, Any]:
    """Parameters from YAML as papermill's ``-y``/``-f``/``-b`` read them: a mapping, with
    dates left as strings (papermill's ``NoDatesSafeLoader``)."""
    import yaml

    class NoDatesSafeLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = {
            k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    try:
        value = yaml.load(text, Loader=NoDatesSafeLoader)
    except yaml.YAMLError as exc:
        raise InvalidOptionError(f"{where} are not valid YAML: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidOptionError(f"{where} must be a mapping of name: value, not {type(value).__name__}")
    return value


def parse_sweep_args(items: list[str] | None) -> dict[str, list]:
    """``["lr=0.1,0.01", "layers=1,2"]`` → ``{"lr": [0.1, 0.01], "layers": [1, 2]}``.

    Values are comma-separated and each parsed with :func:`parse_value` (so a string
    value cannot contain a comma).
    """
    sweep: dict[str, list] = {}
    for item in items or []:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidOptionError(f"invalid --sweep {item!r}: expected NAME=V1,V2,…")
        check_name(name, "sweep parameter")
        if name in sweep:
            raise InvalidOptionError(f"invalid --sweep {item!r}: {name!r} is swept twice")
        parts = values.split(",")
        if not values.strip() or any(not p.strip() for p in parts):
            raise InvalidOptionError(f"invalid --sweep {item!r}: empty value in {values!r} (expected NAME=V1,V2,…)")
        sweep[name] = [parse_value(p.strip()) for p in parts]
    return sweep


# -- what a notebook takes (the "Run with parameters…" dialog) ---------------------

def _type_name(value: Any) -> str:
    """The JSON-ish type of a default: ``bool``, ``int``, ``float``, ``str``, ``None``, ``list``, ``dict``."""
    if value is None:
        return "None"
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return kind.__name__
    if isinstance(value, tuple):
        return "list"
    return type(value).__name__


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters the notebook at ``path`` takes, read from its parameters cell (the
    cell tagged ``parameters``, else Kale's ``pipeline-parameters``: :func:`parameters_cell`).

    ``{"notebook", "cell" (its index, None when there is none), "tag" (the tag found, or
    None), "readable" (False when the cell is not Python that can be read: any name is
    then accepted), "parameters": [{"name", "source" (the default's text), "value" (the
    default when it is a literal, else None), "type" (``int``, ``float``, ``str``,
    ``bool``, ``None``, ``list``, ``dict``; None when the default is not a literal)}]}``.
    """
    p = Path(path).expanduser().resolve()
    nb = load_notebook(p)
    found = parameters_cell(nb)
    declared = declared_parameters(nb)
    out = []
    for name, source in (declared or {}).items():
        try:
            value = ast.literal_eval(source) if source else None
            kind = _type_name(value) if source else None
            if isinstance(value, tuple):
                value = list(value)
            json.dumps(value, allow_nan=False)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value, kind = None, None
        out.append({"name": name, "source": source, "value": value, "type": kind})
    return {
        "notebook": str(p),
        "cell": found[0] if found else None,
        "tag": found[2] if found else None,
        "readable": declared is not None,
        "parameters": out,
    }


_NUMBER = ("int", "float")


def check_value_types(values: dict[str, Any], declared: dict[str, Any], what: str = "parameter") -> None:
    """Each of ``values`` of the type of the notebook's default for it (``declared``: the
    ``parameters`` of :func:`notebook_parameters`): a number for a number (an int for a
    float and back), a bool for a bool, a string for a string. A default that is no literal,
    None, a list or a dict takes any value. The error names the parameter and the value."""
    types = {p["name"]: p["type"] for p in declared.get("parameters") or []}
    for name, value in values.items():
        kind = types.get(name)
        if kind in _NUMBER:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            expected = "a number"
        elif kind == "bool":
            ok, expected = isinstance(value, bool), "True or False"
        elif kind == "str":
            ok, expected = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            default = next(p["source"] for p in declared["parameters"] if p["name"] == name)
            raise InvalidOptionError(
                f"{what} {name!r}: value {value!r} is not {expected} (the notebook's default is {default})"
            )
