"""MLflow's search syntax for runs: ``filter`` and ``order_by`` of :func:`kfjupyter.runs`.

A filter is clauses joined by ``AND``: ``metrics.val_loss < 0.2 and params.lr = '0.1'
and tags.team = 'a' and attributes.status = 'FINISHED'``. An identifier is
``metrics.KEY``, ``params.KEY``, ``tags.KEY`` or ``attributes.NAME`` (``metric``,
``param``, ``tag``, ``attribute``, ``attr`` and ``run`` too; a bare name is an
attribute); a key with spaces is quoted: ``metrics.`val loss```, ``params."my lr"``.
Comparators: ``= != < <= > >=`` for every kind, ``LIKE ILIKE`` (``%`` and ``_``
wildcards) and ``IN (…) / NOT IN (…)`` for params, tags and text attributes, ``IS NULL``
/ ``IS NOT NULL``. A run lacking the key does not match (except ``IS NULL``).

``order_by`` is a list of ``IDENTIFIER [ASC|DESC]``; runs lacking the key come last.

MLflow's own parser lives in the mlflow package (with its server's dependencies), which
a kernel need not have; this grammar is MLflow's as its documentation states it, plus
numeric comparison of params (kfjupyter keeps a param's type: ``params.lr < 0.05``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import InvalidOptionError

#: MLflow's prefixes → the kind of key.
PREFIXES = {
    "metrics": "metrics", "metric": "metrics", "params": "params", "param": "params", "parameters": "params",
    "tags": "tags", "tag": "tags", "attributes": "attributes", "attribute": "attributes", "attr": "attributes",
    "run": "attributes",
}  # fmt: skip

#: Attribute names, with MLflow's spellings.
ATTRIBUTES = {
    "run_id": "run_id", "id": "run_id", "run_name": "name", "name": "name", "status": "status", "kind": "kind",
    "experiment": "experiment", "job_id": "job_id", "start_time": "started_at", "started_at": "started_at",
    "end_time": "finished_at", "finished_at": "finished_at", "created": "created_at", "created_at": "created_at",
    "duration": "duration_s", "duration_s": "duration_s", "source_run": "source_run", "parent_run": "parent_run",
    "notebook": "notebook",
}  # fmt: skip

#: MLflow's run statuses → kfjupyter's (a filter may use either).
MLFLOW_STATUS = {"RUNNING": "Running", "SCHEDULED": "Pending", "FINISHED": "Succeeded", "FAILED": "Failed",
                 "KILLED": "Cancelled"}  # fmt: skip

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)(?![\w.])
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<lp>\() | (?P<rp>\)) | (?P<comma>,)
    | (?P<ident>(?:[A-Za-z_][\w\-/]*)(?:\.(?:`[^`]+`|"[^"]+"|'[^']+'|[\w\-/.:]+))?|`[^`]+`)
    )""",
    re.VERBOSE,
)


class SearchSyntaxError(InvalidOptionError):
    """A filter or an order_by that is not MLflow's search syntax; the message says where."""


@dataclass(frozen=True)
class Key:
    kind: str  # metrics | params | tags | attributes
    name: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass(frozen=True)
class Clause:
    key: Key
    op: str  # = != < <= > >= LIKE ILIKE IN NOT IN, IS NULL, IS NOT NULL
    value: Any = None


def _tokens(text: str, what: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise SearchSyntaxError(f"invalid {what} {text!r}: unexpected {text[pos:].strip()[:20]!r} at position {pos}")
        kind = match.lastgroup
        out.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def parse_key(text: str, what: str = "filter") -> Key:
    """``metrics.val_loss`` → Key("metrics", "val_loss"); a bare name is an attribute."""
    if text.startswith("`"):
        return _attribute(_unquote(text), what)
    prefix, dot, rest = text.partition(".")
    if dot and prefix.lower() in PREFIXES:
        kind = PREFIXES[prefix.lower()]
        name = _unquote(rest)
        if not name:
            raise SearchSyntaxError(f"invalid {what}: {text!r} names no key")
        return _attribute(name, what) if kind == "attributes" else Key(kind, name)
    if dot:
        raise SearchSyntaxError(
            f"invalid {what}: unknown prefix {prefix!r} in {text!r}; use metrics., params., tags. or attributes."
        )
    return _attribute(text, what)


def _attribute(name: str, what: str) -> Key:
    known = ATTRIBUTES.get(name.lower())
    if known is None:
        raise SearchSyntaxError(
            f"invalid {what}: unknown attribute {name!r}; attributes: {', '.join(sorted(set(ATTRIBUTES)))}"
        )
    return Key("attributes", known)


def parse_filter(text: str | None) -> list[Clause]:
    """The clauses of a filter (joined by AND); a syntax error names where it is."""
    if text is None or not text.strip():
        return []
    tokens = _tokens(text, "filter")
    clauses: list[Clause] = []
    i = 0

    def expect(kinds: tuple[str, ...], what: str) -> tuple[str, str, int]:
        nonlocal i
        if i >= len(tokens):
            raise SearchSyntaxError(f"invalid filter {text!r}: expected {what} at the end")
        token = tokens[i]
        if token[0] not in kinds:
            raise SearchSyntaxError(f"invalid filter {text!r}: expected {what} at position {token[2]}, not {token[1]!r}")
        i += 1
        return token

    def word(value: str) -> bool:
        return i < len(tokens) and tokens[i][0] == "ident" and tokens[i][1].upper() == value

    def literal() -> Any:
        kind, value, _ = expect(("num", "str"), "a number or a quoted string")
        return float(value) if kind == "num" else _unquote(value)

    while True:
        _, ident, _ = expect(("ident",), "an identifier (metrics.KEY, params.KEY, tags.KEY, attributes.NAME)")
        key = parse_key(ident)
        if i < len(tokens) and tokens[i][0] == "op":
            op = {"==": "=", "<>": "!="}.get(tokens[i][1], tokens[i][1])
            i += 1
            clauses.append(Clause(key, op, literal()))
        elif word("IS"):
            i += 1
            negate = word("NOT")
            if negate:
                i += 1
            if not word("NULL"):
                raise SearchSyntaxError(f"invalid filter {text!r}: expected NULL after IS")
            i += 1
            clauses.append(Clause(key, "IS NOT NULL" if negate else "IS NULL"))
        else:
            negate = word("NOT")
            if negate:
                i += 1
            if word("LIKE") or word("ILIKE"):
                if negate:
                    raise SearchSyntaxError(f"invalid filter {text!r}: NOT LIKE is not MLflow's syntax")
                op = tokens[i][1].upper()
                i += 1
                value = literal()
                if not isinstance(value, str):
                    raise SearchSyntaxError(f"invalid filter {text!r}: {op} needs a quoted pattern")
                clauses.append(Clause(key, op, value))
            elif word("IN"):
                i += 1
                expect(("lp",), "'('")
                values = [literal()]
                while i < len(tokens) and tokens[i][0] == "comma":
                    i += 1
                    values.append(literal())
                expect(("rp",), "')'")
                clauses.append(Clause(key, "NOT IN" if negate else "IN", tuple(values)))
            else:
                expect(("op",), "a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL)")
        if i >= len(tokens):
            return clauses
        if not word("AND"):
            if word("OR"):
                raise SearchSyntaxError(f"invalid filter {text!r}: OR is not supported (MLflow's syntax joins with AND)")
            raise SearchSyntaxError(f"invalid filter {text!r}: expected AND at position {tokens[i][2]}")
        i += 1


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    return str(value)


def _like(pattern: str, flags: int = 0) -> re.Pattern:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts) + r"\Z", flags | re.DOTALL)


def _equal(have: Any, want: Any, key: Key) -> bool:
    if key == Key("attributes", "status") and isinstance(want, str):
        want = MLFLOW_STATUS.get(want.upper(), want)
        return str(have).lower() == want.lower()
    if isinstance(want, float):
        number = _number(have)
        return number is not None and number == want
    if isinstance(have, (int, float)) and not isinstance(have, bool):
        number = _number(want)
        return (number is not None and float(have) == number) or _text(have) == want
    return _text(have) == want


def matches(clause: Clause, value: Any) -> bool:
    """Whether a run whose value of the clause's key is ``value`` (None: it has none) matches."""
    op = clause.op
    if op == "IS NULL":
        return value is None
    if op == "IS NOT NULL":
        return value is not None
    if value is None:
        return False
    want = clause.value
    if op == "=":
        return _equal(value, want, clause.key)
    if op == "!=":
        return not _equal(value, want, clause.key)
    if op in ("IN", "NOT IN"):
        found = any(_equal(value, w, clause.key) for w in want)
        return found if op == "IN" else not found
    if op in ("LIKE", "ILIKE"):
        return _like(want, re.IGNORECASE if op == "ILIKE" else 0).match(_text(value)) is not None
    a, b = _number(value), _number(want)
    if a is None or b is None:  # text order (times, names)
        a, b = _text(value), _text(want)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def compile_filter(text: str | None, value_of: Callable[[Any, Key], Any]) -> Callable[[Any], bool]:
    """A predicate over runs: ``value_of(run, key)`` reads a run's value of a key."""
    clauses = parse_filter(text)
    return lambda run: all(matches(c, value_of(run, c.key)) for c in clauses)


def parse_order_by(order_by: str | Iterable[str] | None) -> list[tuple[Key, bool]]:
    """``["metrics.val_loss ASC", "params.lr DESC"]`` → [(key, descending), …]."""
    if order_by is None:
        return []
    items = [order_by] if isinstance(order_by, str) else list(order_by)
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise SearchSyntaxError(f"invalid order_by {item!r}: expected 'IDENTIFIER [ASC|DESC]'")
        tokens = _tokens(item, "order_by")
        if not tokens or tokens[0][0] != "ident" or len(tokens) > 2:
            raise SearchSyntaxError(f"invalid order_by {item!r}: expected 'IDENTIFIER [ASC|DESC]'")
        direction = tokens[1][1].upper() if len(tokens) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise SearchSyntaxError(f"invalid order_by {item!r}: expected ASC or DESC, not {tokens[1][1]!r}")
        out.append((parse_key(tokens[0][1], "order_by"), direction == "DESC"))
    return out


def sort_runs(runs: list, order: list[tuple[Key, bool]], value_of: Callable[[Any, Key], Any]) -> list:
    """``runs`` sorted by ``order`` (stable; runs lacking a key last, whatever the direction)."""
    for key, descending in reversed(order):
        values = [value_of(r, key) for r in runs]  # each run's value read once
        present = [(v, r) for v, r in zip(values, runs) if v is not None]
        missing = [r for v, r in zip(values, runs) if v is None]
        numeric = all(isinstance(v, (int, float)) for v, _ in present)
        present.sort(key=(lambda p: float(p[0])) if numeric else (lambda p: _text(p[0])), reverse=descending)
        runs = [r for _, r in present] + missing
    return runs
