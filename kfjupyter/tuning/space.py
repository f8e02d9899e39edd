"""The search space: parameters declared where they are used, known before any trial starts.

A cell declares its hyperparameters with ``kfjupyter.param(...)`` calls; their arguments
must be literals, so the space is read from the source without running it
(:func:`space_from_source`). ``--param NAME=SPEC`` options declare or override
parameters the same way (:func:`parse_param_option`).

Every parameter maps one to one onto a Katib ``ParameterSpec``:

=====================================================  ============  ==========================
declaration                                            Katib type    Optuna distribution
=====================================================  ============  ==========================
``param("lr", low=1e-4, high=1e-1, log=True)``         double        FloatDistribution(log)
``param("dropout", low=0.0, high=0.5, step=0.1)``      double        FloatDistribution(step)
``param("layers", low=1, high=4)`` (ints, int step)    int           IntDistribution
``param("opt", choices=["sgd", "adam"])``              categorical   CategoricalDistribution
``param("batch", choices=[32, 64, 128])`` (numbers)    discrete      CategoricalDistribution
=====================================================  ============  ==========================

``log=True`` is Katib's ``distribution: logUniform``; values in ``feasibleSpace`` are text.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from ..errors import InvalidOptionError

#: Parameter names: they name environment variables (KFJUPYTER_PARAM_<name>) and Katib
#: trial parameters (``${trialParameters.<name>}``).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TYPES = ("double", "int", "categorical", "discrete")
#: Largest grid the grid algorithm enumerates.
MAX_GRID = 100_000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> str:
    """A value as Katib writes it in feasibleSpace and parameter assignments."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: a numeric range (double/int) or a list of choices."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple | None = None

    # -- construction and checks ----------------------------------------------------

    @classmethod
    def declare(
        cls,
        name: Any,
        low: Any = None,
        high: Any = None,
        *,
        step: Any = None,
        log: Any = False,
        choices: Any = None,
        where: str = "",
    ) -> "ParamSpec":
        """Check a declaration as the user wrote it; raise :class:`InvalidOptionError`."""
        at = f" ({where})" if where else ""
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidOptionError(
                f"invalid parameter name {name!r}{at}: use letters, digits and '_', "
                "starting with a letter or '_' (at most 63 characters)"
            )
        what = f"parameter {name!r}{at}"
        if not isinstance(log, bool):
            raise InvalidOptionError(f"{what}: log must be True or False, not {log!r}")
        if choices is not None:
            if low is not None or high is not None or step is not None or log:
                raise InvalidOptionError(f"{what}: give either choices or a range (low, high, step, log), not both")
            if not isinstance(choices, (list, tuple)) or not choices:
                raise InvalidOptionError(f"{what}: choices must be a non-empty list, got {choices!r}")
            for choice in choices:
                if not (choice is None or isinstance(choice, (str, bool)) or _is_number(choice)):
                    raise InvalidOptionError(
                        f"{what}: choice {choice!r} is not a string, number, bool or None"
                    )
                if isinstance(choice, float) and not math.isfinite(choice):
                    raise InvalidOptionError(f"{what}: choice {choice!r} is not a finite number")
                if isinstance(choice, str) and any(c in choice for c in '"\\\n\r\t') :
                    raise InvalidOptionError(f"{what}: choice {choice!r} may not hold quotes, backslashes or line breaks")
            texts = [_text(c) for c in choices]
            if len(set(texts)) != len(texts):
                dup = next(t for t in texts if texts.count(t) > 1)
                raise InvalidOptionError(f"{what}: choice {dup!r} is given twice")
            kind = "discrete" if all(_is_number(c) for c in choices) else "categorical"
            return cls(name, kind, choices=tuple(choices))
        if low is None or high is None:
            raise InvalidOptionError(f"{what}: give both low and high (a range), or choices")
        for label, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and (not _is_number(value) or not math.isfinite(value)):
                raise InvalidOptionError(f"{what}: {label} must be a finite number, got {value!r}")
        if low == high:
            raise InvalidOptionError(f"{what}: empty range: low and high are both {low!r}")
        if low > high:
            raise InvalidOptionError(f"{what}: inverted range: low {low!r} is greater than high {high!r}")
        if step is not None:
            if step <= 0:
                raise InvalidOptionError(f"{what}: step must be positive, got {step!r}")
            if step > high - low:
                raise InvalidOptionError(f"{what}: step {step!r} is larger than the range {low!r}..{high!r}")
            if log:
                raise InvalidOptionError(f"{what}: log and step cannot be combined")
        if log and low <= 0:
            raise InvalidOptionError(f"{what}: a log range needs low > 0, got {low!r}")
        if _is_int(low) and _is_int(high) and (step is None or _is_int(step)):
            return cls(name, "int", int(low), int(high), int(step) if step is not None else None, log)
        return cls(name, "double", float(low), float(high), float(step) if step is not None else None, log)

    # -- views ---------------------------------------------------------------------------

    @property
    def is_range(self) -> bool:
        return self.type in ("double", "int")

    def describe(self) -> str:
        if not self.is_range:
            return f"{self.name} in {list(self.choices)}"
        extra = (f" step {self.step}" if self.step is not None else "") + (" log" if self.log else "")
        return f"{self.name} in [{self.low}, {self.high}] ({self.type}{extra})"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["choices"] = list(self.choices) if self.choices is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ParamSpec":
        data = dict(data)
        if data.get("choices") is not None:
            data["choices"] = tuple(data["choices"])
        return cls(**data)

    def distribution(self):
        """The Optuna distribution of this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "double":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return CategoricalDistribution(list(self.choices))

    def grid(self) -> list | None:
        """The values of a grid search, or None for a continuous range (double without step)."""
        if not self.is_range:
            return list(self.choices)
        if self.step is None and self.type == "double":
            return None
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        if count > MAX_GRID:
            raise InvalidOptionError(
                f"the grid of parameter {self.name!r} has {count} points, more than {MAX_GRID}: use a larger step"
            )
        if self.type == "int":
            return list(range(self.low, self.high + 1, step))
        return [round(self.low + i * step, 12) for i in range(count)]

    def feasible_space(self) -> dict:
        """Katib's ``feasibleSpace``: every value is text."""
        if not self.is_range:
            return {"list": [_text(c) for c in self.choices]}
        space = {"min": _text(self.low), "max": _text(self.high)}
        if self.step is not None:
            space["step"] = _text(self.step)
        if self.log:
            space["distribution"] = "logUniform"
        return space

    def to_katib(self) -> dict:
        return {"name": self.name, "parameterType": self.type, "feasibleSpace": self.feasible_space()}

    def text(self, value: Any) -> str:
        """A value of this parameter as Katib's assignments carry it."""
        return _text(value)

    def parse(self, raw: str) -> Any:
        """A Katib assignment (text) → the value."""
        if self.type == "double":
            return float(raw)
        if self.type == "int":
            return int(float(raw))
        for choice in self.choices:
            if _text(choice) == raw or (self.type == "discrete" and _is_float(raw) and float(raw) == float(choice)):
                return choice
        return raw


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class SearchSpace(dict):
    """Parameter name → :class:`ParamSpec`, in declaration order."""

    def to_dict(self) -> dict:
        return {name: spec.to_dict() for name, spec in self.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        return cls((name, ParamSpec.from_dict(spec)) for name, spec in data.items())

    def distributions(self) -> dict:
        return {name: spec.distribution() for name, spec in self.items()}

    def env_json(self) -> str:
        """What ranks and pods read (KFJUPYTER_TUNE_SPACE): types and choices."""
        return json.dumps(
            {n: {"name": n, "type": s.type, "choices": list(s.choices) if s.choices else None} for n, s in self.items()},
            separators=(",", ":"),
        )

    def grid(self) -> dict[str, list]:
        """Values of every parameter for a grid search; raises for a continuous parameter."""
        out: dict[str, list] = {}
        for name, spec in self.items():
            values = spec.grid()
            if values is None:
                raise InvalidOptionError(
                    f"the grid algorithm cannot search the continuous parameter {name!r} "
                    f"({spec.describe()}): give it a step, or choices"
                )
            out[name] = values
        return out

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def describe(self) -> str:
        return "; ".join(spec.describe() for spec in self.values())


# --------------------------------------------------------------------------- --param


def _literal(token: str) -> Any:
    token = token.strip()
    for cast in (int, float):
        try:
            return cast(token)
        except ValueError:
            pass
    lowered = token.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    return token


def parse_param_option(text: str) -> ParamSpec:
    """``NAME=LOW:HIGH[:STEP][:log]`` (a range) or ``NAME=A,B,C`` (choices) → ParamSpec."""
    name, sep, value = text.partition("=")
    usage = "expected NAME=LOW:HIGH[:STEP][:log] or NAME=CHOICE,CHOICE,…"
    if not sep or not name.strip() or not value.strip():
        raise InvalidOptionError(f"invalid --param {text!r}: {usage}")
    name, value = name.strip(), value.strip()
    where = f"--param {text}"
    if ":" in value:
        parts = value.split(":")
        log = parts[-1].strip().lower() == "log"
        if log:
            parts = parts[:-1]
        if len(parts) not in (2, 3) or any(not p.strip() for p in parts):
            raise InvalidOptionError(f"invalid --param {text!r}: {usage}")
        numbers = [_literal(p) for p in parts]
        for n in numbers:
            if not _is_number(n):
                raise InvalidOptionError(f"invalid --param {text!r}: {n!r} is not a number")
        low, high = numbers[:2]
        step = numbers[2] if len(numbers) == 3 else None
        return ParamSpec.declare(name, low, high, step=step, log=log, where=where)
    return ParamSpec.declare(name, choices=[_literal(c) for c in value.split(",")], where=where)


def as_param_spec(name: str, value: Any) -> ParamSpec:
    """A ``params=`` entry of :func:`kfjupyter.tune`: a ParamSpec, a dict of keywords, a list of
    choices or a ``--param`` text."""
    if isinstance(value, ParamSpec):
        return value
    if isinstance(value, dict):
        try:
            return ParamSpec.declare(name, **value, where="params=")
        except TypeError as exc:
            raise InvalidOptionError(f"parameter {name!r} (params=): {exc}") from None
    if isinstance(value, (list, tuple)):
        return ParamSpec.declare(name, choices=list(value), where="params=")
    if isinstance(value, str):
        return parse_param_option(f"{name}={value}")
    raise InvalidOptionError(f"parameter {name!r}: expected a dict of low/high/step/log/choices, got {value!r}")


# --------------------------------------------------------------------------- static analysis


class _Aliases:
    """How the source refers to kfjupyter's ``param`` and ``report``."""

    def __init__(self, tree: ast.AST):
        self.modules = {"kfjupyter"}
        self.functions: dict[str, str] = {}  # local name → "param" | "report"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "kfjupyter":
                        self.modules.add(alias.asname or "kfjupyter")
            elif isinstance(node, ast.ImportFrom) and node.module == "kfjupyter" and not node.level:
                for alias in node.names:
                    if alias.name in ("param", "report"):
                        self.functions[alias.asname or alias.name] = alias.name

    def which(self, call: ast.Call) -> str | None:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in self.modules:
            return func.attr if func.attr in ("param", "report") else None
        if isinstance(func, ast.Name):
            return self.functions.get(func.id)
        return None


_PARAM_ARGS = ("name", "low", "high")
_PARAM_KWARGS = ("name", "low", "high", "step", "log", "choices", "default")


@dataclass
class SourceFacts:
    """What static analysis found: the declared space, and the metrics ``report`` is given."""

    space: SearchSpace
    dynamic: list[tuple[str | None, int, str]]  # (name or None, line, why)
    reported: set[str] | None  # None: a report call passes **kwargs (anything may be reported)
    report_calls: int


def analyse_source(sources: Iterable[str]) -> SourceFacts:
    """Find ``kfjupyter.param`` declarations and ``kfjupyter.report`` metrics in ``sources``.

    Raises :class:`InvalidOptionError` for an invalid or contradictory declaration.
    """
    space = SearchSpace()
    dynamic: list[tuple[str | None, int, str]] = []
    reported: set[str] | None = set()
    report_calls = 0
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        aliases = _Aliases(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kind = aliases.which(node)
            if kind == "report":
                report_calls += 1
                for kw in node.keywords:
                    if kw.arg is None:
                        reported = None
                    elif reported is not None and kw.arg != "step":
                        reported.add(kw.arg)
                continue
            if kind != "param":
                continue
            line = node.lineno
            args: dict[str, Any] = {}
            why = None
            try:
                if len(node.args) > len(_PARAM_ARGS) or any(isinstance(a, ast.Starred) for a in node.args):
                    raise ValueError("too many positional arguments")
                for key, value in zip(_PARAM_ARGS, node.args):
                    args[key] = ast.literal_eval(value)
                for kw in node.keywords:
                    if kw.arg is None or kw.arg not in _PARAM_KWARGS:
                        raise ValueError(f"unknown argument {kw.arg or '**'}")
                    args[kw.arg] = ast.literal_eval(kw.value)
            except ValueError as exc:
                why = str(exc) if "argument" in str(exc) else "its arguments are not all literals"
            name = args.get("name")
            if not isinstance(name, str):
                name_node = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
                name = name_node.value if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str) else None
            if why is not None or name is None:
                dynamic.append((name, line, why or "its name is not a literal string"))
                continue
            args.pop("name")
            args.pop("default", None)
            spec = ParamSpec.declare(name, **args, where=f"kfjupyter.param at line {line}")
            if name in space and space[name] != spec:
                raise InvalidOptionError(
                    f"parameter {name!r} is declared twice with different ranges: "
                    f"{space[name].describe()} and {spec.describe()} (line {line})"
                )
            space[name] = spec
    return SourceFacts(space, dynamic, reported, report_calls)


def build_space(sources: Iterable[str], options: dict[str, ParamSpec]) -> tuple[SearchSpace, SourceFacts]:
    """The search space of a program: its literal declarations, overridden by ``options``."""
    facts = analyse_source(sources)
    space = SearchSpace(facts.space)
    for name, spec in options.items():
        space[name] = spec
    for name, line, why in facts.dynamic:
        if name is None or name not in options:
            label = f"kfjupyter.param({name!r}, …)" if name else "kfjupyter.param(…)"
            raise InvalidOptionError(
                f"{label} at line {line}: {why}, so the search space cannot be known before the "
                "trials start: write literal values, or declare it with --param NAME=LOW:HIGH (params=)"
            )
    if not space:
        raise InvalidOptionError(
            "the search space is empty: declare parameters in the cell with "
            "kfjupyter.param('lr', low=1e-4, high=1e-1, log=True) or with --param lr=1e-4:1e-1:log"
        )
    return space, facts
