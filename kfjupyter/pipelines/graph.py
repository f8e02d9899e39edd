"""Tagged notebook → :class:`~kfjupyter.pipelines.model.Pipeline`.

The compiler reads the cells in order (tags per :mod:`kfjupyter.pipelines.tags`), groups
them into blocks, then builds the step graph:

* a step's **inputs** are the names it reads before assigning them
  (:func:`kfjupyter.capture.analysis.free_names`) that are not builtins, not bound by the
  ``imports``/``functions`` cells, each supplied by the nearest step
  that runs before it and assigns it: its nearest ancestor through ``prev:`` edges when
  one assigns it, else the nearest earlier step in execution order (a data edge); it is
  a pipeline parameter only when no earlier step assigns the name (in the notebook, a
  step's assignment would shadow the parameters cell too);
* IPython line magics and ``!shell`` lines become ``pass`` lines with a comment (a cell
  magic is an error: tag such a cell ``skip``);
* explicit ``prev:`` edges are always kept, data or not;
* steps run in a topological order of the explicit edges, ties in notebook order, so a
  data edge always points forwards and only ``prev:`` tags can make a cycle.

Every error is a :class:`PipelineError` whose ``cell`` is the index of the cell at fault
in the notebook's cell list (0-based, markdown cells counted) and whose message starts
with ``cell N``.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..capture.analysis import bindings, bound_names, changed_in_place, free_names
from ..errors import KFJupyterError
from . import codegen, tags as tagmod
from .model import Edge, Parameter, Pipeline, Step

#: Names a step program finds without anyone providing them (the step runtime sets
#: ``display`` to a print-based stand-in when IPython's is not imported).
RUNTIME_NAMES = frozenset(dir(builtins)) | {"display", "__file__"}

#: Bindings whose values cannot cross a step boundary, and why.
_CANNOT_CROSS = {
    "with": "it is bound by `with … as {name}` (a resource such as an open file, closed at the end of the block)",
    "file": "it is an open file (`{name} = open(…)`)",
    "generator": "it is a generator, which cannot be serialised",
    "import": "it is a module (`import …`); put the import in a cell tagged imports",
}


class PipelineError(KFJupyterError, ValueError):
    """The notebook does not compile to a pipeline; ``cell`` is the cell at fault (or None)."""

    def __init__(self, message: str, cell: int | None = None):
        # cells are counted as JupyterLab's status bar does: from 1, markdown cells included
        super().__init__(f"cell {cell + 1}: {message}" if cell is not None else message)
        self.cell = cell
        self.reason = message


# ---------------------------------------------------------------------------------------
# Reading the notebook
# ---------------------------------------------------------------------------------------


@dataclass
class _Block:
    """Consecutive cells of one kind (one step, the imports …)."""

    kind: str  # "step" or one of tags.KIND_TAGS
    cells: list[int]
    sources: list[str]  # as the analysis reads them (IPython lines as Python or comments)
    tags: tagmod.CellTags = field(default_factory=tagmod.CellTags)
    code: list[str] = field(default_factory=list)  # as the step runs them (plain Python)
    originals: list[str] = field(default_factory=list)  # as the notebook has them
    referenced: str | None = None  # the notebook:NAME reference the block comes from

    def __post_init__(self) -> None:
        self.originals = self.originals or list(self.sources)

    def add(self, cell: int, source: str) -> None:
        self.cells.append(cell)
        self.sources.append(source)
        self.originals.append(source)

    def prepare(self) -> None:
        """Turn IPython syntax into what the analysis reads and what the step runs."""
        self.code, views = [], []
        for cell, source in zip(self.cells, self.sources):
            if _is_ipython(source):
                try:
                    code = _ipython_python(source)
                    ast.parse(code)
                except SyntaxError as exc:
                    raise PipelineError(f"syntax error in the {self.label}, line {exc.lineno}: {exc.msg}", cell) from None
                views.append(_python_view(source))
            else:
                code = source
                views.append(source)
            self.code.append(code)
        self.sources = views
        for cell, source in zip(self.cells, self.sources):
            try:
                ast.parse(source)
            except SyntaxError as exc:
                raise PipelineError(f"syntax error in the {self.label}, line {exc.lineno}: {exc.msg}", cell) from None

    @property
    def label(self) -> str:
        return f"step {self.tags.name!r}" if self.kind == "step" else f"{self.kind} cell"


def _load(notebook: Any) -> tuple[dict[str, Any], str | None]:
    if isinstance(notebook, (str, os.PathLike)):
        path = Path(notebook)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PipelineError(f"cannot read notebook {str(path)!r}: {exc}") from None
        where: str | None = str(path)
    elif isinstance(notebook, Mapping):  # nbformat's NotebookNode is a dict
        data, where = dict(notebook), None
    else:
        raise TypeError(f"from_notebook takes a path, a NotebookNode or a dict, not {type(notebook).__name__}")
    if int(data.get("nbformat", 4)) < 4:
        import nbformat

        data = nbformat.convert(nbformat.from_dict(data), 4)
    if not isinstance(data.get("cells"), list):
        raise PipelineError("not a notebook: no cell list")
    return data, where


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


#: Magics whose argument is Python the step runs (``%time x = f()``): what it binds counts.
_CODE_MAGICS = frozenset({"time", "timeit", "prun", "capture"})


def _ipython_python(source: str) -> str:
    """``source`` with IPython syntax (``%magic``, ``!shell``, ``%%cell magic``) turned into
    the plain Python IPython itself runs (``get_ipython().run_line_magic(…)``); the step
    runtime provides ``get_ipython()`` to such a step, as Kale's kernel does."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _python_view(source: str) -> str:
    """The code of ``source`` as the analysis sees it: IPython lines as comments, except the
    Python that a ``%time``/``%timeit``/``%prun``/``%%time``/``%%capture`` runs."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic, _, args = lines[0].lstrip()[2:].partition(" ")
        body = lines[1:] if magic in _CODE_MAGICS else ["# " + ln for ln in lines[1:]]
        head = ["# " + lines[0].strip()]
        target = [a for a in args.split() if not a.startswith("-")]
        if magic == "capture" and target and target[0].isidentifier():
            head.append(f"{target[0]} = None  # what %%capture {target[0]} binds")
        return "\n".join(head + body)
    out = []
    for line in lines:
        if m := _MAGIC_ASSIGN.match(line):  # x = !ls, files = %sx ls
            out.append(f"{m[1]}{m[2]} = None  # {line.strip()}")
            continue
        m = _MAGIC_LINE.match(line)
        if not m:
            out.append(line)
            continue
        indent, text = m[1], m[2]
        if text.startswith("%") and not text.startswith("%%"):
            parts = text[1:].split(None, 1)
            if parts and parts[0] in _CODE_MAGICS and len(parts) == 2:
                args = parts[1]
                while args.startswith("-"):  # options such as %timeit -n1 -r1
                    args = args.split(None, 1)[1] if " " in args else ""
                out.append(indent + args)
                continue
        out.append(f"{indent}pass  # {text}")
    return "\n".join(out)


_MAGIC_LINE = re.compile(r"^(\s*)([%!].*)$")
_MAGIC_ASSIGN = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=\s*[%!].*$")


def _is_ipython(source: str) -> bool:
    try:
        ast.parse(source)
        return False
    except SyntaxError:
        return bool(_MAGIC_LINE.search(source) or re.search(r"^\s*%|^\s*!|=\s*[%!]", source, re.M))


def _blocks(cells: list[dict[str, Any]], where: str | None = None,
            reference: tuple[str, int] | None = None) -> tuple[list[_Block], list[int]]:
    """The blocks, and the untagged code cells before the first tagged one (not part of
    the pipeline, Kale's rule). Kale's rules: an untagged cell continues the last block
    before it, ``skip`` cells in between notwithstanding; a step name used again continues
    that step; tagged cells after ``pipeline-metrics`` are an error; a ``notebook:NAME``
    cell brings in the steps of another notebook (:func:`_reference`).

    ``where``: the notebook's path (references are relative to its folder); ``reference``:
    (NAME, the referencing cell) when these are the cells of a referenced notebook."""
    blocks: list[_Block] = []
    by_name: dict[str, _Block] = {}
    current: _Block | None = None
    pending: list[tuple[int, str]] | None = None  # untagged cells after a notebook: cell
    leading: list[int] = []
    any_tag = False
    units: list[list[_Block]] = []  # Kale's reading order: steps and references
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        at = reference[1] if reference else index
        source = _text(cell.get("source"))
        try:
            parsed = tagmod.parse_tags((cell.get("metadata") or {}).get("tags") or [])
        except tagmod.TagError as exc:
            raise _in_reference(PipelineError(str(exc), index), reference) from None
        any_tag = any_tag or parsed.kind is not None
        if parsed.kind == "skip":
            continue
        if parsed.kind is None:
            if not source.strip():
                continue
            if pending is not None:
                pending.append((at, source))
            elif current is None:
                leading.append(index)
            else:
                current.add(at, source)
            continue
        if current is not None and current.kind == "pipeline-metrics" and parsed.kind != "pipeline-metrics":
            raise _in_reference(PipelineError(
                f"the pipeline-metrics cell (cell {current.cells[0] + 1}) must be at the end of the "
                f"notebook, after every {parsed.kind} cell: pipeline metrics are the pipeline's "
                "results", index), reference)
        if parsed.kind == "notebook":
            if reference is not None:
                raise _in_reference(PipelineError(
                    f"notebook:{parsed.name} is inside a notebook that notebook:{reference[0]} references: "
                    "reference every notebook from the root notebook instead", index), reference)
            if pending:
                raise PipelineError("untagged code after a notebook: cell must be followed by a step: cell "
                                    "that owns it (found another notebook: cell first)", index)
            inner = _reference(parsed.name, cell, where, index)
            blocks += inner
            units.append([b for b in inner if b.kind == "step"])
            current, pending = None, []
            continue
        prefix = f"{reference[0]}_" if reference else ""
        if parsed.kind == "step":
            parsed.name = prefix + parsed.name
            parsed.prev = [prefix + p for p in parsed.prev]
        if parsed.kind == "step" and parsed.name in by_name:
            # Kale: a step name used again continues that step (its code is merged in)
            current = by_name[parsed.name]
            for held in pending or ():
                current.add(*held)
            current.add(at, source)
            _merge_options(current.tags, parsed)
            pending = None
            continue
        current = _Block(parsed.kind, [c for c, _ in pending or ()] + [at],
                         [s for _, s in pending or ()] + [source], parsed, referenced=reference and reference[0])
        pending = None
        blocks.append(current)
        if parsed.kind == "step":
            by_name[parsed.name] = current
            units.append([current])
    if pending:
        raise PipelineError("untagged code after a notebook: cell must be followed by a step: cell "
                            "that owns it (reached the end of the notebook)")
    if not any_tag:
        if reference:
            raise PipelineError(f"notebook:{reference[0]} references a notebook with no pipeline tags", reference[1])
        raise PipelineError(
            "this notebook has no pipeline tags: tag the cells of each step step:NAME (and "
            "prev:NAME for the steps it needs), the imports cells imports, the functions cells "
            "functions, the parameters cell pipeline-parameters (the Kubeflow sidebar's tag "
            "editor, or View › Cell Toolbar › Tags, writes them)")
    if reference is None and any(u and u[0].referenced for u in units):
        _reading_order(units)
    return blocks, leading


def _reference(name: str, cell: dict[str, Any], where: str | None, index: int) -> list[_Block]:
    """The blocks of the notebook a ``notebook:NAME`` cell references (its path, relative to
    this notebook's folder, in the cell's metadata ``notebook_path``): its steps become
    steps ``NAME_STEP`` of this pipeline; its imports, functions, parameters (this
    notebook's win) and metrics join this notebook's."""
    rel = (cell.get("metadata") or {}).get("notebook_path")
    if any(line.strip() and not line.strip().startswith("#") for line in _text(cell.get("source")).splitlines()):
        raise PipelineError(f"the notebook:{name} cell holds code; a cell that references a notebook holds "
                            "none: move the code to a step: cell of its own", index)
    if not rel:
        raise PipelineError(f"the notebook:{name} cell has no notebook_path in its metadata (the path of the "
                            "notebook it references, relative to this one)", index)
    folder = Path(where).parent if where else Path.cwd()
    path = (folder / str(rel)).resolve()
    if where and path == Path(where).resolve():
        raise PipelineError(f"notebook:{name} references this notebook itself", index)
    try:
        data, _ = _load(path)
    except PipelineError as exc:
        raise PipelineError(f"notebook:{name}: {exc.reason}", index) from None
    blocks, _leading = _blocks(data["cells"], str(path), (name, index))
    return blocks


def _in_reference(error: PipelineError, reference: tuple[str, int] | None) -> PipelineError:
    if reference is None:
        return error
    return PipelineError(f"in the notebook notebook:{reference[0]} references, {error}", reference[1])


def _reading_order(units: list[list[_Block]]) -> None:
    """Kale's order of a notebook that references others: a step runs after every step or
    reference above it; two references with nothing between them stay parallel. A
    notebook without references keeps its prev: tags as they are."""
    for i, later in enumerate(units):
        for earlier in units[:i]:
            if later and earlier and later[0].referenced and earlier[0].referenced:
                continue
            inside = {b.tags.name for b in later}
            for block in later:
                if not set(block.tags.prev) & inside:  # an entry step of the unit
                    block.tags.prev += [b.tags.name for b in earlier if b.tags.name not in block.tags.prev]


def _merge_options(into: tagmod.CellTags, more: tagmod.CellTags) -> None:
    """A later cell of a step adds its prev: steps; its other options override."""
    into.prev += [p for p in more.prev if p not in into.prev]
    into.image = more.image or into.image
    into.limits.update(more.limits)
    into.annotations.update(more.annotations)
    into.labels.update(more.labels)
    into.secrets.update(more.secrets)
    if more.cache is not None:
        into.cache = more.cache
    if more.report is not None:
        into.report = more.report


# ---------------------------------------------------------------------------------------
# Parameters and metrics cells
# ---------------------------------------------------------------------------------------


def _param_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def _json_ready(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def _parameters(block: _Block) -> dict[str, Parameter]:
    into: dict[str, Parameter] = {}
    for cell, source in zip(block.cells, block.sources):
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise PipelineError(f"syntax error in the pipeline-parameters cell, line {exc.lineno}: {exc.msg}", cell) from None
        for stmt in tree.body:
            code = ast.get_source_segment(source, stmt) or ast.unparse(stmt)
            problem = None
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                    target, value_node = stmt.target, stmt.value
                else:
                    problem = "is not a NAME = literal assignment"
            else:
                target, value_node = stmt.targets[0], stmt.value
            if problem is None:
                try:
                    value = ast.literal_eval(value_node)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    problem = "assigns something other than a literal"
            if problem is None:
                value = _json_ready(value)
                try:
                    json.dumps(value, allow_nan=False)
                    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
                        raise TypeError
                except (TypeError, ValueError):
                    problem = "assigns a literal that is not JSON (int, float, str, bool, list or dict of them)"
            if problem is not None:
                raise PipelineError(
                    f"the pipeline-parameters cell may only hold NAME = literal lines; line {stmt.lineno} "
                    f"`{code.splitlines()[0]}` {problem}",
                    cell,
                )
            into[target.id] = Parameter(target.id, _param_type(value), value)
    return into


def metric_names(source: str, cell: int | None = None) -> list[str]:
    """The variables a ``pipeline-metrics`` cell lists (a name per line, or ``print(a, b)``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise PipelineError(f"syntax error in the pipeline-metrics cell, line {exc.lineno}: {exc.msg}", cell) from None
    names: list[str] = []
    for stmt in tree.body:
        node = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print" and not node.keywords:
            args = node.args
        else:
            args = [node] if node is not None else []
        if not args or not all(isinstance(a, ast.Name) for a in args):
            raise PipelineError(
                f"the pipeline-metrics cell lists variable names (one per line, or print(name)); "
                f"line {stmt.lineno} is `{ast.unparse(stmt)}`",
                cell,
            )
        names += [a.id for a in args if a.id not in names]
    return names


def _metrics(block: _Block) -> list[tuple[str, int]]:
    names: list[tuple[str, int]] = []
    for cell, source in zip(block.cells, block.sources):
        names += [(n, cell) for n in metric_names(source, cell) if n not in [m for m, _ in names]]
    return names


# ---------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------


def _order(steps: dict[str, _Block]) -> list[str]:
    """Topological order of the explicit prev: edges, ties broken by notebook order."""
    names = list(steps)
    remaining = {n: set(steps[n].tags.prev) for n in names}
    order: list[str] = []
    while remaining:
        ready = [n for n in names if n in remaining and not (remaining[n] - set(order))]
        if not ready:
            cycle = _find_cycle(steps, remaining)
            raise PipelineError(
                f"the prev: tags make a cycle: {' → '.join(cycle)} (step {cycle[0]!r} starts here)",
                steps[cycle[0]].cells[0],
            )
        order.append(ready[0])
        del remaining[ready[0]]
    return order


def _find_cycle(steps: dict[str, _Block], remaining: dict[str, set[str]]) -> list[str]:
    """A cycle among the ``remaining`` steps, in running order, closed (``a → b → a``)."""
    names = [n for n in steps if n in remaining]
    node, path = names[0], [names[0]]
    while True:  # follow prev: links upstream until a step repeats
        node = next(p for p in steps[node].tags.prev if p in remaining)
        if node in path:
            loop = path[path.index(node):]  # each one's prev is the next
            break
        path.append(node)
    running = [loop[0]] + list(reversed(loop[1:]))
    first = min(running, key=names.index)
    i = running.index(first)
    running = running[i:] + running[:i]
    return running + [running[0]]


def _first_cell_reading(block: _Block, name: str) -> int:
    for cell, source in zip(block.cells, block.sources):
        try:
            if name in free_names(source):
                return cell
        except SyntaxError:
            continue
    return block.cells[0]


def _steps(blocks: list[_Block]) -> dict[str, _Block]:
    """The step blocks by name, their IPython syntax turned into Python, parsed."""
    steps: dict[str, _Block] = {}
    for block in blocks:
        if block.kind != "step":
            continue
        name = block.tags.name
        assert name is not None
        steps[name] = block
        block.prepare()
    if not steps:
        raise PipelineError("the notebook has no steps: tag the first cell of each step step:NAME")
    for name, block in steps.items():
        for target in block.tags.prev:
            if target == name:
                raise PipelineError(f"step {name!r} has prev:{target}, itself", block.cells[0])
            if target not in steps:
                raise PipelineError(
                    f"step {name!r} has prev:{target} but no step is named {target!r} (steps: {', '.join(steps)})",
                    block.cells[0],
                )
    return steps


def _shared_names(blocks: list[_Block]) -> set[str]:
    """Names bound by the imports and functions cells."""
    names: set[str] = set()
    for block in blocks:
        block.prepare()
        for source in block.sources:
            names.update(bound_names(source))
    return names


def _function_globals(blocks: list[_Block], shared: set[str]) -> dict[str, list[str]]:
    """For each function or class of the imports/functions cells, the notebook globals it
    reads when called (not builtins, not other shared names): a step calling it reads them."""
    out: dict[str, list[str]] = {}
    for block in blocks:
        for source in block.sources:
            for stmt in ast.parse(source).body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    segment = ast.get_source_segment(source, stmt) or ast.unparse(stmt)
                    reads = [n for n in free_names(segment) if n not in RUNTIME_NAMES and n != stmt.name]
                    out[stmt.name] = [n for n in reads if n not in shared] + [n for n in reads if n in shared]
    return out


def _reads(source: str, calls: dict[str, list[str]], shared: set[str]) -> dict[str, str | None]:
    """Names a step reads before assigning them → the shared function that reads it (or None)."""
    direct = free_names(source)
    reads: dict[str, str | None] = {name: None for name in direct}
    todo = [(name, name) for name in direct if name in calls]
    seen: set[str] = set()
    while todo:
        function, via = todo.pop(0)
        if function in seen:
            continue
        seen.add(function)
        for name in calls[function]:
            if name in shared:
                if name in calls:
                    todo.append((name, via))
            elif name not in reads and name not in bound_names(source):
                reads[name] = via
    return reads


@dataclass
class _Flow:
    """What the data-flow analysis found, per step."""

    inputs: dict[str, dict[str, str]]  # step → {name: supplier}
    parameters: dict[str, list[str]]  # step → parameters read
    binds: dict[str, set[str]]  # step → names assigned
    holds: dict[str, set[str]] = field(default_factory=dict)  # step → names assigned or received


def _data_flow(
    steps: dict[str, _Block],
    order: list[str],
    shared: set[str],
    parameters: dict[str, Parameter],
    calls: dict[str, list[str]],
    ignored: dict[str, int],
) -> _Flow:
    """Each step's inputs: the nearest ancestor (through ``prev:``) that assigns or
    receives the name, else the nearest earlier step that assigns it or may change it.

    "The next step sees what the notebook would have seen": a step passes on to its
    descendants every value it received (it may have changed it through any path, an
    alias, a function it called), as Kale's rule of the nearest ancestor naming it does;
    to a later step that is not its descendant, the values it assigns and the inputs it
    may change in place (:func:`~kfjupyter.capture.analysis.changed_in_place`:
    ``df['b'] = …``, ``model.fit(…)``, ``for d in [df1, df2]: d['b'] = …``), so that
    steps that only read a value still run side by side.
    """
    sources = {n: _joined(steps[n].sources) for n in order}
    binds = {n: set(bound_names(sources[n])) for n in order}
    provides = dict(binds)  # to any later step
    holds = dict(binds)  # to descendants
    ancestors: dict[str, set[str]] = {}
    flow = _Flow({}, {}, binds)
    for position, name in enumerate(order):
        block, earlier = steps[name], order[:position]
        explicit: set[str] = set()
        for p in block.tags.prev:
            explicit |= {p} | ancestors[p]
        reads = _reads(sources[name], calls, shared)
        mine, previous = explicit, None
        for _ in range(len(reads) + 2):  # until the suppliers settle: a data edge makes more ancestors
            wanted: dict[str, str] = {}
            used: list[str] = []
            for var, via in reads.items():
                if var in shared or (var in RUNTIME_NAMES and not any(var in binds[a] for a in earlier)):
                    continue
                supplier = next((a for a in reversed(earlier) if a in mine and var in holds[a]), None)
                if supplier is None:
                    supplier = next((a for a in reversed(earlier) if var in provides[a]), None)
                if supplier is None:
                    if var in parameters:
                        used.append(var)
                        continue
                    later = [a for a in order[position + 1:] if var in binds[a]]
                    hint = f" (step {later[0]!r} assigns it, but runs later)" if later else ""
                    if not later and var in ignored:
                        hint = (f" (cell {ignored[var] + 1} assigns it, but that cell is untagged and comes "
                                "before the first tagged cell, so it is not part of the pipeline: tag it "
                                "imports, functions or step:NAME)")
                    raise PipelineError(
                        f"step {name!r} reads {var!r}"
                        + (f" (through {via}() of the functions cells)" if via else "")
                        + ", which no step before it assigns and which is "
                        f"not a pipeline parameter, an import or a function{hint}",
                        _first_cell_reading(block, via or var),
                    )
                wanted[var] = supplier
            if wanted == previous:
                break
            previous = wanted
            mine = set(explicit)
            for supplier in wanted.values():
                mine |= {supplier} | ancestors[supplier]
        flow.inputs[name], flow.parameters[name], ancestors[name] = wanted, used, mine
        provides[name] = binds[name] | (changed_in_place(sources[name]) & set(wanted))
        holds[name] = binds[name] | set(wanted)
    flow.holds = holds
    return flow


def _metric_steps(metric_names: list[tuple[str, int]], order: list[str], flow: _Flow,
                  parameters: dict[str, Parameter]) -> dict[str, list[str]]:
    """Each pipeline metric is reported by the last step (in running order) that assigns or
    receives it: its value as the notebook has it at the end. A pipeline parameter no step
    assigns is reported by the last step reading it, else by the last step (Kale reports
    parameters too)."""
    out: dict[str, list[str]] = {n: [] for n in order}
    for metric, cell in metric_names:
        supplier = next((a for a in reversed(order) if metric in flow.holds[a]), None)
        if supplier is None and metric in parameters:
            supplier = next((a for a in reversed(order) if metric in flow.parameters[a]), order[-1])
            if metric not in flow.parameters[supplier]:
                flow.parameters[supplier].append(metric)
        if supplier is None:
            raise PipelineError(f"pipeline metric {metric!r} is not assigned by any step", cell)
        out[supplier].append(metric)
    return out


def _outputs(order: list[str], inputs: dict[str, dict[str, str]], metrics: dict[str, list[str]],
             parameters: dict[str, list[str]]) -> dict[str, list[str]]:
    """What each step saves: what later steps read from it, and the metrics it reports
    (but not a parameter it reports: that value is the run's already)."""
    outputs: dict[str, list[str]] = {n: [] for n in order}
    for target in order:
        for var, source in inputs[target].items():
            if var not in outputs[source]:
                outputs[source].append(var)
    for name in order:
        outputs[name] += [m for m in metrics[name] if m not in outputs[name] and m not in parameters[name]]
    return outputs


def _check_crossing(block: _Block, name: str, outputs: list[str], readers: dict[str, str]) -> None:
    """Refuse, at compile time, outputs whose binding shows they cannot be serialised."""
    for var in outputs:
        for cell, source in reversed(list(zip(block.cells, block.sources))):
            binding = bindings(source).get(var)
            if binding is None:
                continue
            if binding.kind in _CANNOT_CROSS:
                who = f"step {readers[var]!r}" if var in readers else "the pipeline metrics"
                raise PipelineError(
                    f"step {name!r} passes variable {var!r} to {who}, but "
                    + _CANNOT_CROSS[binding.kind].format(name=var)
                    + f" (line {binding.line}); pass the data it holds instead",
                    cell,
                )
            break


def _edges(order: list[str], steps: dict[str, _Block], inputs: dict[str, dict[str, str]]) -> list[Edge]:
    """One edge per (upstream, step): the names it supplies; explicit if a prev: tag says so."""
    edges: list[Edge] = []
    for target in order:
        prev = steps[target].tags.prev
        for source in sorted(set(inputs[target].values()) | set(prev), key=order.index):
            names = tuple(v for v, s in inputs[target].items() if s == source)
            edges.append(Edge(source, target, names, source in prev))
    return edges


def _joined(sources: list[str]) -> str:
    return "\n\n".join(s.strip("\n") for s in sources)


def from_notebook(notebook: str | os.PathLike[str] | Mapping[str, Any], name: str | None = None) -> Pipeline:
    """Compile a tagged notebook (a path, an nbformat NotebookNode or a dict) to a Pipeline.

    ``name`` overrides the pipeline's name (default: Kale's ``pipeline_name`` metadata,
    else the notebook file's stem). Raises :class:`PipelineError` naming the cell at fault.
    """
    data, path = _load(notebook)
    settings = tagmod.notebook_settings(data.get("metadata"))
    blocks, leading = _blocks(data["cells"], path)
    if leading:
        warnings.warn(
            f"cell{'s' if len(leading) > 1 else ''} {', '.join(str(c + 1) for c in leading)} "
            "(untagged, before the first tagged cell) are not part of the pipeline, as in Kale",
            PipelineWarning, stacklevel=2)
    shared_blocks = [b for b in blocks if b.kind == "imports"] + [b for b in blocks if b.kind == "functions"]
    parameters: dict[str, Parameter] = {}
    metric_names: list[tuple[str, int]] = []
    for block in sorted(blocks, key=lambda b: b.referenced is not None):
        if block.kind == "pipeline-parameters":  # this notebook's values win over a referenced one's
            for name_, parameter in _parameters(block).items():
                if block.referenced is None or name_ not in parameters:
                    parameters[name_] = parameter
        elif block.kind == "pipeline-metrics":
            metric_names += [m for m in _metrics(block) if m[0] not in [n for n, _ in metric_names]]

    steps = _steps(blocks)
    shared = _shared_names(shared_blocks)
    order = _order(steps)
    ignored = _ignored_bindings(data["cells"], leading)
    flow = _data_flow(steps, order, shared, parameters, _function_globals(shared_blocks, shared), ignored)
    metrics = _metric_steps(metric_names, order, flow, parameters)
    outputs = _outputs(order, flow.inputs, metrics, flow.parameters)
    for step_name in order:
        readers = {}
        for target in reversed(order):
            readers.update({v: target for v, s in flow.inputs[target].items() if s == step_name})
        _check_crossing(steps[step_name], step_name, outputs[step_name], readers)

    try:
        defaults = tagmod.parse_defaults(settings.get("steps_defaults") or [])
    except tagmod.TagError as exc:
        raise PipelineError(f"notebook metadata kubeflow_notebook.{exc}") from None
    default_image = settings.get("base_image") or settings.get("docker_image") or None
    pipeline = Pipeline(
        name=_pipeline_name(name, settings, path),
        steps={},
        edges=_edges(order, steps, flow.inputs),
        parameters=parameters,
        notebook=path,
        imports=_joined([s for b in shared_blocks if b.kind == "imports" for s in b.sources]),
        functions=_joined([s for b in shared_blocks if b.kind == "functions" for s in b.sources]),
        metrics=[m for m, _ in metric_names],
        description=str(settings.get("pipeline_description") or ""),
        experiment=settings.get("experiment_name") or None,
        volumes=_volumes(settings.get("volumes")),
        security_context=_security_context(settings.get("security_context")),
    )
    shared_sections = [codegen.Section(b.kind, c, s) for b in shared_blocks for c, s in zip(b.cells, b.code)]
    for step_name in order:
        block = steps[step_name]
        own, cache, report = block.tags, block.tags.cache, block.tags.report
        step = Step(
            name=step_name,
            cells=list(block.cells),
            source=_joined(block.originals),
            prev=list(own.prev),
            image=own.image or defaults.image or default_image,
            limits={**defaults.limits, **own.limits},
            cache=(cache if cache is not None else defaults.cache) is not False,
            annotations={**defaults.annotations, **own.annotations},
            labels={**defaults.labels, **own.labels},
            secrets={**defaults.secrets, **own.secrets},
            report=report if report is not None else defaults.report,
            inputs=flow.inputs[step_name],
            outputs=outputs[step_name],
            parameters=flow.parameters[step_name],
            metrics=metrics[step_name],
        )
        sections = [codegen.Section("step", c, s) for c, s in zip(block.cells, block.code)]
        step.program = codegen.step_program(pipeline, step, shared_sections + sections)
        pipeline.steps[step_name] = step
    return pipeline


def _security_context(value: Any) -> dict[str, Any] | None:
    """Kale's ``security_context`` metadata (``enabled`` false: none)."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise PipelineError("notebook metadata kubeflow_notebook.security_context must be an object "
                            "{run_as_user, run_as_group, run_as_non_root, enabled}")
    if value.get("enabled") is False:
        return None
    out = {"run_as_user": value.get("run_as_user", 65534), "run_as_group": value.get("run_as_group", 0),
           "run_as_non_root": value.get("run_as_non_root", True)}
    for key in ("run_as_user", "run_as_group"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 0:
            raise PipelineError(f"notebook metadata kubeflow_notebook.security_context.{key} must be a "
                                f"user or group id (an integer ≥ 0), not {out[key]!r}")
    if not isinstance(out["run_as_non_root"], bool):
        raise PipelineError("notebook metadata kubeflow_notebook.security_context.run_as_non_root must be true or false")
    return out


class PipelineWarning(UserWarning):
    """Something of the notebook the pipeline leaves out, as Kale does."""


def _ignored_bindings(cells: list[dict[str, Any]], leading: list[int]) -> dict[str, int]:
    """Names the ignored leading cells assign → the first such cell (for a hint)."""
    out: dict[str, int] = {}
    for index in leading:
        try:
            names = bound_names(_python_view(_text(cells[index].get("source"))))
        except SyntaxError:
            continue
        for n in names:
            out.setdefault(n, index)
    return out


def _volumes(value: Any) -> list[dict[str, Any]]:
    """Kale's ``volumes`` metadata, checked: a list of {"name", "mount_point", "type", …}."""
    if not value:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PipelineError("notebook metadata kubeflow_notebook.volumes must be a list of "
                            "{\"name\", \"mount_point\", \"type\"} objects")
    for i, volume in enumerate(value):
        missing = [k for k in ("name", "mount_point", "type") if not volume.get(k)]
        if missing:
            raise PipelineError(f"notebook metadata kubeflow_notebook.volumes[{i}] has no {', '.join(missing)}")
    return [dict(v) for v in value]


def _pipeline_name(name: str | None, settings: dict[str, Any], path: str | None) -> str:
    if name:
        return name
    if settings.get("pipeline_name"):
        return str(settings["pipeline_name"])
    if path:
        stem = re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")
        return stem or "pipeline"
    return "pipeline"
