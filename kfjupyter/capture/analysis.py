"""Static analysis of cell source: which names it reads, which modules it imports.

``free_names`` answers "which names must come from the notebook?": a name is free when
the code reads it before binding it. Module-level statements are walked in execution
order (a ``for`` target is bound before its body runs, an assignment's value is read
before its targets are bound). Reads inside functions, classes, lambdas and
comprehensions happen later or in their own scope; for those the compiler's symbol
table says which names are globals, and such a name is free unless the module level
binds it somewhere.
"""

from __future__ import annotations

import ast
import symtable
from dataclasses import dataclass

_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


class _Bound(dict):
    """An ordered set of bound names (``add`` like a set, iteration in binding order)."""

    def add(self, name: str) -> None:
        self.setdefault(name)


class _Flow:
    def __init__(self) -> None:
        self.bound: _Bound = _Bound()
        self.free: dict[str, None] = {}  # ordered set

    # -- primitives -------------------------------------------------------------
    def load(self, name: str) -> None:
        if name not in self.bound:
            self.free.setdefault(name)

    def expr(self, node: ast.AST | None) -> None:
        """Reads of an expression, in evaluation order (nested scopes excluded)."""
        if node is None:
            return
        if isinstance(node, ast.Lambda):
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
                self.expr(default)
            return
        if isinstance(node, _SCOPES):
            # a comprehension's first iterable is evaluated here, the rest in its own scope
            self.expr(node.generators[0].iter)
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.load(node.id)
            else:
                self.bound.add(node.id)
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.bound.add(node.target.id)
            return
        for child in ast.iter_child_nodes(node):
            self.expr(child)

    def target(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.bound.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        else:  # attribute or subscript: reads its object and index
            self.expr(node)

    # -- statements ---------------------------------------------------------------
    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.stmt(stmt)

    def stmt(self, s: ast.stmt) -> None:
        if isinstance(s, ast.Assign):
            self.expr(s.value)
            for t in s.targets:
                self.target(t)
        elif isinstance(s, ast.AugAssign):
            self.expr(s.target if not isinstance(s.target, ast.Name) else ast.Name(s.target.id, ast.Load()))
            self.expr(s.value)
            self.target(s.target)
        elif isinstance(s, ast.AnnAssign):
            self.expr(s.annotation)
            if s.value is not None:
                self.expr(s.value)
                self.target(s.target)
        elif isinstance(s, (ast.For, ast.AsyncFor)):
            self.expr(s.iter)
            self.target(s.target)
            self.block(s.body)
            self.block(s.orelse)
        elif isinstance(s, (ast.While, ast.If)):
            self.expr(s.test)
            self.block(s.body)
            self.block(s.orelse)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            for item in s.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            self.block(s.body)
        elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
            self.block(s.body)
            for handler in s.handlers:
                self.expr(handler.type)
                if handler.name:
                    self.bound.add(handler.name)
                self.block(handler.body)
            self.block(s.orelse)
            self.block(s.finalbody)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in s.decorator_list:
                self.expr(d)
            for default in s.args.defaults + [d for d in s.args.kw_defaults if d is not None]:
                self.expr(default)
            self.bound.add(s.name)
        elif isinstance(s, ast.ClassDef):
            for d in s.decorator_list + s.bases + [k.value for k in s.keywords]:
                self.expr(d)
            self.bound.add(s.name)
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            for alias in s.names:
                if alias.name != "*":
                    self.bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(s, (ast.Global, ast.Nonlocal, ast.Pass, ast.Break, ast.Continue)):
            pass
        elif isinstance(s, ast.Delete):
            for t in s.targets:
                if not isinstance(t, ast.Name):
                    self.expr(t)
        else:
            self.expr(s)


def _nested_global_reads(table: symtable.SymbolTable) -> list[str]:
    """Globals read inside functions, classes, lambdas and comprehensions."""
    names: list[str] = []
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_referenced() and sym.is_global() and not (
                sym.is_declared_global() and sym.is_assigned()
            ):
                names.append(sym.get_name())
        names.extend(_nested_global_reads(child))
    return names


def free_names(source: str) -> list[str]:
    """Names ``source`` reads that it does not bind first, in order of first use."""
    tree = ast.parse(source)
    flow = _Flow()
    flow.block(tree.body)
    module_bound = set(flow.bound)
    free = dict(flow.free)
    for name in _nested_global_reads(symtable.symtable(source, "<cell>", "exec")):
        if name not in module_bound:
            free.setdefault(name)
    return list(free)


def bound_names(source: str) -> list[str]:
    """Names ``source`` binds at module level (assignments, imports, defs …), in binding order."""
    flow = _Flow()
    flow.block(ast.parse(source).body)
    return list(flow.bound)


@dataclass(frozen=True)
class Binding:
    """The last module-level binding of a name, and what kind of value it binds.

    ``kind`` is one of ``import`` (``import x``: a module), ``with`` (``with … as x``: a
    context manager's resource, typically an open file), ``file`` (``x = open(…)``),
    ``generator`` (a generator expression, or a call of a generator function defined in
    the same source), ``function``, ``class``, ``value`` (anything else).
    """

    name: str
    kind: str
    line: int


def _is_generator_function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    todo: list[ast.AST] = list(node.body)
    while todo:
        child = todo.pop()
        if isinstance(child, (ast.Yield, ast.YieldFrom)):
            return True
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(child))
    return False


def bindings(source: str) -> dict[str, Binding]:
    """The last module-level binding of every name ``source`` binds (see :class:`Binding`)."""
    out: dict[str, Binding] = {}
    generator_functions: set[str] = set()

    def names(target: ast.AST) -> list[str]:
        if isinstance(target, ast.Name):
            return [target.id]
        if isinstance(target, (ast.Tuple, ast.List)):
            return [n for elt in target.elts for n in names(elt)]
        if isinstance(target, ast.Starred):
            return names(target.value)
        return []

    def value_kind(value: ast.AST | None) -> str:
        if isinstance(value, ast.GeneratorExp):
            return "generator"
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            if value.func.id == "open":
                return "file"
            if value.func.id in generator_functions:
                return "generator"
        return "value"

    def bind(targets: list[ast.AST], kind: str, line: int) -> None:
        for target in targets:
            for name in names(target):
                out[name] = Binding(name, kind, line)

    def visit(body: list[ast.stmt]) -> None:
        for s in body:
            if isinstance(s, ast.Assign):
                single = len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
                bind(s.targets, value_kind(s.value) if single else "value", s.lineno)
            elif isinstance(s, (ast.AnnAssign, ast.AugAssign)) and s.value is not None:
                bind([s.target], value_kind(s.value) if isinstance(s, ast.AnnAssign) else "value", s.lineno)
            elif isinstance(s, (ast.For, ast.AsyncFor)):
                bind([s.target], "value", s.lineno)
                visit(s.body)
                visit(s.orelse)
            elif isinstance(s, (ast.While, ast.If)):
                visit(s.body)
                visit(s.orelse)
            elif isinstance(s, (ast.With, ast.AsyncWith)):
                bind([i.optional_vars for i in s.items if i.optional_vars is not None], "with", s.lineno)
                visit(s.body)
            elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
                visit(s.body)
                for handler in s.handlers:
                    visit(handler.body)
                visit(s.orelse)
                visit(s.finalbody)
            elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _is_generator_function(s):
                    generator_functions.add(s.name)
                out[s.name] = Binding(s.name, "function", s.lineno)
            elif isinstance(s, ast.ClassDef):
                out[s.name] = Binding(s.name, "class", s.lineno)
            elif isinstance(s, ast.Import):
                for alias in s.names:
                    name = alias.asname or alias.name.split(".")[0]
                    out[name] = Binding(name, "import", s.lineno)
            elif isinstance(s, ast.ImportFrom):
                for alias in s.names:
                    if alias.name != "*":
                        name = alias.asname or alias.name
                        out[name] = Binding(name, "value", s.lineno)

    visit(ast.parse(source).body)
    return out


def _root_name(node: ast.AST) -> str | None:
    """``df`` of ``df``, ``df['b']``, ``model.coef_``, ``a.b[0].c``; None for anything else."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def changed_in_place(source: str) -> set[str]:
    """Names whose value the code may change without rebinding them (at module level or in
    code it runs there): an item or attribute stored or deleted (``df['b'] = …``,
    ``cfg.lr = …``, ``del d[k]``, ``xs[0] += 1``), or a method called on it
    (``model.fit(…)``, ``xs.append(…)`` — conservatively, any method call).

    A change made through another name counts for the names it aliases: ``d`` of
    ``d = df1``, ``for d in [df1, df2]``, ``for d in frames``, ``a, b = df1, df2`` aliases
    the names on the right (conservatively, each target aliases each of them).

    A pipeline step that changes an input this way passes the changed value on.
    """
    changed: set[str] = set()
    aliases: dict[str, set[str]] = {}

    def alias(target: ast.AST, value: ast.AST | None) -> None:
        if value is None:
            return
        sources = {n.id for n in _alias_sources(value)}
        if not sources:
            return
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                aliases.setdefault(node.id, set()).update(sources - {node.id})

    def store(target: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                store(elt)
        elif isinstance(target, ast.Starred):
            store(target.value)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = _root_name(target)
            if root:
                changed.add(root)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                store(target)
                alias(target, node.value)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            store(node.target)
            alias(node.target, node.value)
        elif isinstance(node, ast.NamedExpr):
            alias(node.target, node.value)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                store(target)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            store(node.target)
            alias(node.target, node.iter)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            store(node.optional_vars)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            root = _root_name(node.func.value)
            if root:
                changed.add(root)
    todo = list(changed)
    while todo:  # a change through an alias changes what it aliases
        for name in aliases.get(todo.pop(), ()):
            if name not in changed:
                changed.add(name)
                todo.append(name)
    return changed


def _alias_sources(value: ast.AST) -> list[ast.Name]:
    """The names whose objects ``value`` hands on as they are: ``df``, ``[a, b]``,
    ``(a, *b)``, ``{"k": a}``, ``x if c else y``, ``zip(a, b)``, ``enumerate(a)``,
    ``d.values()``/``d.items()``."""
    if isinstance(value, ast.Name):
        return [value]
    if isinstance(value, ast.Starred):
        return _alias_sources(value.value)
    if isinstance(value, (ast.List, ast.Tuple, ast.Set)):
        return [n for elt in value.elts for n in _alias_sources(elt)]
    if isinstance(value, ast.Dict):
        return [n for v in value.values for n in _alias_sources(v)]
    if isinstance(value, ast.IfExp):
        return _alias_sources(value.body) + _alias_sources(value.orelse)
    if isinstance(value, ast.Call) and not value.keywords:
        func = value.func
        if isinstance(func, ast.Name) and func.id in ("zip", "enumerate", "reversed", "list", "tuple", "iter"):
            return [n for a in value.args for n in _alias_sources(a)]
        if isinstance(func, ast.Attribute) and func.attr in ("values", "items") and not value.args:
            return _alias_sources(func.value)
    return []


@dataclass(frozen=True)
class ImportStmt:
    source: str  # the statement as code, one line
    binds: tuple[str, ...]  # names it binds
    module: str  # the top-level module it imports from ("" for relative imports)


def import_statements(source: str, top_level_only: bool = True) -> list[ImportStmt]:
    """The absolute import statements of ``source`` (top-level ones by default)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: list[ImportStmt] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append(
                    ImportStmt(
                        ast.unparse(ast.Import(names=[alias])),
                        (alias.asname or alias.name.split(".")[0],),
                        alias.name.split(".")[0],
                    )
                )
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = tuple(a.asname or a.name for a in node.names if a.name != "*")
            out.append(ImportStmt(ast.unparse(node), names, node.module.split(".")[0]))
    return out


def uses_ipython(source: str) -> int | None:
    """Line of the first ``get_ipython()`` call (what magics and ``!cmd`` become), if any."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"
        ):
            return node.lineno
    return None
