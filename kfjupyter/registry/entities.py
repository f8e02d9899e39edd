"""What the registry hands back, whichever backend holds it (embedded store or Kubeflow).

The shapes follow Kubeflow Model Registry (RegisteredModel → ModelVersion →
ModelArtifact, LIVE/ARCHIVED, custom properties) with kfjupyter's additions: a version
*number* (1, 2, 3 … per model, never reused), metrics and parameters, lineage, aliases.
``to_dict()`` gives plain JSON-ready data (times as ISO strings with their UTC offset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from .errors import InvalidOptionError

LIVE = "LIVE"
ARCHIVED = "ARCHIVED"

FRAMEWORKS = ("sklearn", "pytorch", "onnx", "xgboost", "custom")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    return value


class _Dictable:
    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = [v.to_dict() if isinstance(v, _Dictable) else _iso(v) for v in value]
            elif isinstance(value, _Dictable):
                value = value.to_dict()
            out[f.name] = _iso(value)
        return out


@dataclass
class ModelArtifact(_Dictable):
    id: str
    name: str
    uri: str
    sha256: str | None
    size: int | None
    format: str
    format_version: str | None = None
    #: the file a loader opens, relative to the artifact's folder (``uri``)
    main_file: str | None = None
    state: str = LIVE
    properties: dict = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class ModelVersion(_Dictable):
    id: str
    model: str
    number: int | None
    name: str
    state: str
    framework: str
    framework_version: str | None = None
    description: str | None = None
    author: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    custom_properties: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    artifacts: list[ModelArtifact] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def ref(self) -> str:
        """``model:number`` (or ``model:name`` for a version without a number)."""
        return f"{self.model}:{self.number if self.number is not None else self.name}"

    @property
    def artifact(self) -> ModelArtifact | None:
        """The version's main artifact (the one named ``model``, else the first)."""
        for art in self.artifacts:
            if art.name == "model":
                return art
        return self.artifacts[0] if self.artifacts else None

    def load(self, **options: Any) -> Any:
        from . import load_model

        return load_model(self.model, version=self.number if self.number is not None else self.name, **options)

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["ref"] = self.ref
        return data

    def _repr_html_(self) -> str:
        from .display import VersionCard

        return VersionCard(self)._repr_html_()

    def __repr__(self) -> str:
        aliases = f" @{',@'.join(self.aliases)}" if self.aliases else ""
        return f"<ModelVersion {self.ref} {self.framework} {self.state}{aliases}>"


@dataclass
class RegisteredModel(_Dictable):
    id: str
    name: str
    state: str
    description: str | None = None
    owner: str | None = None
    latest_version: int | None = None
    version_count: int | None = None
    #: alias → version number
    aliases: dict[str, int | None] = field(default_factory=dict)
    frameworks: list[str] = field(default_factory=list)
    custom_properties: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __repr__(self) -> str:
        return f"<RegisteredModel {self.name} v{self.latest_version} {self.state} aliases={self.aliases}>"


@dataclass
class AliasEvent(_Dictable):
    """One move of an alias: set (``from_version`` None), moved, or removed (``to_version`` None)."""

    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    who: str | None
    at: datetime | None
    reason: str | None = None


T = TypeVar("T")


@dataclass
class Page(_Dictable, Generic[T]):
    """One page of a listing: ``items``, the ``total`` when the backend knows it, and where to go on."""

    items: list[T]
    total: int | None
    offset: int
    limit: int | None

    @property
    def next_offset(self) -> int | None:
        if self.limit is None:
            return None
        end = self.offset + len(self.items)
        if self.total is not None:
            return end if end < self.total else None
        return end if len(self.items) == self.limit else None

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def to_dict(self) -> dict:
        return {
            "items": [i.to_dict() if isinstance(i, _Dictable) else i for i in self.items],
            "total": self.total,
            "offset": self.offset,
            "limit": self.limit,
            "next_offset": self.next_offset,
        }


# -- names and references -------------------------------------------------------------


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidOptionError(
            f"invalid model name {name!r}: 1-128 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidOptionError(
            f"invalid alias {alias!r}: a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'"
        )
    return alias


def check_label(label: str) -> str:
    """A version's own name (``1.2.0``, ``v2-rc1``); digits alone are numbers, not labels."""
    if not isinstance(label, str) or not _NAME.match(label):
        raise InvalidOptionError(f"invalid version name {label!r}: letters, digits, '.', '_' or '-'")
    if label.isdigit():
        raise InvalidOptionError(
            f"version name {label!r} is all digits: numbers are given by the registry (1, 2, 3 …); "
            "a version's own name needs a letter or a dot, e.g. '1.0' or 'v3'"
        )
    return label


@dataclass(frozen=True)
class Ref:
    """A reference to one version: by number, by name (label), by alias, or the latest."""

    model: str
    number: int | None = None
    label: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.model}@{self.alias}"
        if self.number is not None:
            return f"{self.model}:{self.number}"
        if self.label:
            return f"{self.model}:{self.label}"
        return self.model


def parse_ref(ref: str, version: int | str | None = None, alias: str | None = None) -> Ref:
    """``iris`` (latest LIVE version), ``iris:3``, ``iris:1.2.0``, ``iris@production``;
    MLflow's ``models:/iris/3`` and ``models:/iris@production`` are accepted too."""
    if not isinstance(ref, str) or not ref:
        raise InvalidOptionError(f"invalid model reference {ref!r}")
    text = ref
    if text.startswith("models:/"):
        text = text[len("models:/"):].replace("/", ":", 1)
    model, ref_alias, ref_version = text, None, None
    if "@" in text:
        model, ref_alias = text.split("@", 1)
    elif ":" in text:
        model, ref_version = text.split(":", 1)
    check_model_name(model)
    given = [x for x in (ref_alias, ref_version, version, alias) if x is not None]
    if len(given) > 1:
        raise InvalidOptionError(f"{ref!r}: give a version or an alias, not both")
    alias = alias if alias is not None else ref_alias
    version = version if version is not None else ref_version
    if alias is not None:
        return Ref(model, alias=check_alias(alias))
    if version is None:
        return Ref(model)
    if isinstance(version, bool):
        raise InvalidOptionError(f"invalid version {version!r}")
    if isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
        number = int(version)
        if number < 1:
            raise InvalidOptionError(f"invalid version {version!r}: numbers start at 1")
        return Ref(model, number=number)
    return Ref(model, label=check_label(str(version)))


_METRIC = re.compile(r"^\s*([^<>=\s]+)\s*(>=|<=|=)\s*(\S+)\s*$")


def parse_metric_filters(filters: list[str] | tuple[str, ...] | str) -> dict[str, tuple[float | None, float | None]]:
    """``["accuracy>=0.9", "loss<=0.3", "f1=0.5..0.8"]`` → metric ranges (inclusive bounds)."""
    if isinstance(filters, str):
        filters = [filters]
    ranges: dict[str, tuple[float | None, float | None]] = {}
    for text in filters:
        m = _METRIC.match(text)
        if not m:
            raise InvalidOptionError(f"metric filter {text!r}: NAME>=X, NAME<=X or NAME=LOW..HIGH")
        name, op, value = m.groups()
        low, high = ranges.get(name, (None, None))
        try:
            if op == ">=":
                low = float(value)
            elif op == "<=":
                high = float(value)
            else:
                lo, sep, hi = value.partition("..")
                if not sep:
                    low = high = float(value)
                else:
                    low = float(lo) if lo else None
                    high = float(hi) if hi else None
        except ValueError:
            raise InvalidOptionError(f"metric filter {text!r}: {value!r} is not a number") from None
        ranges[name] = (low, high)
    return ranges
