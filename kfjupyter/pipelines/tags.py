"""The cell-tag grammar of pipeline notebooks (Kale's vocabulary), in one place.

A code cell's ``metadata.tags`` say what the cell is:

====================  =====================================================================
``imports``           code prepended to every step (imports)
``functions``         code prepended to every step (functions, classes, constants)
``pipeline-parameters``  ``NAME = literal`` lines: the pipeline's parameters
``pipeline-metrics``  names (one per line, or ``print(name)``) reported as pipeline metrics
``skip``              not part of the pipeline
``step:NAME``         starts step NAME (``block:NAME`` is Kale's older spelling)
``prev:NAME``         NAME runs before this step (several allowed; needs ``step:``)
``image:IMAGE``       the step's container image (needs ``step:``)
``limit:KEY:VALUE``   a resource limit, KEY one of cpu, memory, nvidia.com/gpu … (needs ``step:``)
``cache:false``       never take this step from the cache (``cache:true`` is the default)
====================  =====================================================================

An untagged code cell continues whatever the previous code cell was (a step, the imports
…). Tags outside this vocabulary (``parameters`` for papermill, Kale's ``annotation:`` and
``label:``, a user's own) are ignored; a tag that starts like ours but does not parse is an
error, so a typo never silently changes the pipeline.

Kale's notebook metadata ``metadata.kubeflow_notebook`` is read by :func:`notebook_settings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

# ---------------------------------------------------------------------------------------
# The patterns
# ---------------------------------------------------------------------------------------

#: A step name: lower-case DNS-1123-ish (it names directories, KFP tasks and components).
#: Starts and ends with a letter or digit; '-' and '_' inside.
STEP_NAME = re.compile(r"^[a-z0-9](?:[-a-z0-9_]*[a-z0-9])?$")

#: ``step:NAME`` or Kale's older ``block:NAME``. NAME is checked against STEP_NAME after.
STEP = re.compile(r"^(?:step|block):(?P<name>.*)$")

#: ``prev:NAME`` - an explicit upstream step (NAME checked against STEP_NAME after).
PREV = re.compile(r"^prev:(?P<name>.*)$")

#: ``image:IMAGE`` - any non-blank image reference (registry/repo:tag@digest …).
IMAGE = re.compile(r"^image:(?P<image>\S+)$")

#: ``limit:KEY:VALUE`` - KEY a Kubernetes resource name (cpu, memory, ephemeral-storage,
#: or a vendor resource such as nvidia.com/gpu), VALUE a Kubernetes quantity (2, 500m,
#: 1.5, 4Gi, 1e3 …).
LIMIT = re.compile(
    r"^limit:"
    r"(?P<key>cpu|memory|ephemeral-storage|[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)"
    r":(?P<value>[0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+|[numkMGTPE]i?|Ki)?)$"
)

#: ``cache:true`` / ``cache:false`` (any case).
CACHE = re.compile(r"^cache:(?P<value>true|false)$", re.IGNORECASE)

#: Tags that make the whole cell one kind of block.
KIND_TAGS = ("imports", "functions", "pipeline-parameters", "pipeline-metrics", "skip")

#: Prefixes of our parameterised tags: a tag starting with one of them must parse.
PREFIXES = ("step:", "block:", "prev:", "image:", "limit:", "cache:")


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------


class TagError(ValueError):
    """A cell's tags do not parse (the compiler adds the cell to the message)."""


@dataclass
class CellTags:
    """What one cell's tags say. ``kind`` is None for an untagged (continuation) cell."""

    kind: str | None = None  # "step" or one of KIND_TAGS
    name: str | None = None  # the step name, for kind "step"
    prev: list[str] = field(default_factory=list)
    image: str | None = None
    limits: dict[str, str] = field(default_factory=dict)
    cache: bool | None = None


def valid_step_name(name: str) -> bool:
    return bool(STEP_NAME.match(name))


def _check_name(name: str, tag: str) -> str:
    if not valid_step_name(name):
        raise TagError(
            f"invalid step name {name!r} in tag {tag!r}: use lower-case letters, digits, "
            "'-' and '_', starting and ending with a letter or digit"
        )
    return name


def parse_tags(tags: Iterable[str]) -> CellTags:
    """Parse a cell's tags; raise :class:`TagError` naming the offending tag."""
    out = CellTags()
    kinds: list[str] = []
    step_options: list[str] = []
    for raw in tags:
        tag = str(raw).strip()
        if tag in KIND_TAGS:
            kinds.append(tag)
        elif m := STEP.match(tag):
            name = _check_name(m["name"], tag)
            if out.name is not None and out.name != name:
                raise TagError(f"a cell has two step names: {out.name!r} and {name!r}")
            out.name = name
            kinds.append("step")
        elif m := PREV.match(tag):
            name = _check_name(m["name"], tag)
            if name not in out.prev:
                out.prev.append(name)
            step_options.append(tag)
        elif m := IMAGE.match(tag):
            out.image = m["image"]
            step_options.append(tag)
        elif m := LIMIT.match(tag):
            out.limits[m["key"]] = m["value"]
            step_options.append(tag)
        elif m := CACHE.match(tag):
            out.cache = m["value"].lower() == "true"
            step_options.append(tag)
        elif tag.startswith(PREFIXES):
            raise TagError(f"malformed tag {tag!r} (expected e.g. step:train, prev:prepare, "
                           "image:python:3.11, limit:cpu:2, limit:nvidia.com/gpu:1, cache:false)")
        # any other tag belongs to someone else (papermill's "parameters", Kale's "annotation:" …)
    distinct = list(dict.fromkeys(kinds))
    if len(distinct) > 1:
        raise TagError(f"a cell can be only one of {', '.join(distinct)}")
    out.kind = distinct[0] if distinct else None
    if step_options and out.kind != "step":
        raise TagError(f"tag {step_options[0]!r} needs a step:NAME tag on the same cell")
    return out


def notebook_settings(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Kale's ``metadata.kubeflow_notebook`` (pipeline_name, docker_image, experiment_name …)."""
    settings = (metadata or {}).get("kubeflow_notebook") or {}
    return dict(settings) if isinstance(settings, dict) else {}


def format_tags(tags: CellTags) -> list[str]:
    """The tags that :func:`parse_tags` reads back as ``tags`` (canonical spelling)."""
    if tags.kind is None:
        return []
    if tags.kind != "step":
        return [tags.kind]
    out = [f"step:{tags.name}"] + [f"prev:{p}" for p in tags.prev]
    if tags.image:
        out.append(f"image:{tags.image}")
    out += [f"limit:{k}:{v}" for k, v in tags.limits.items()]
    if tags.cache is not None:
        out.append(f"cache:{str(tags.cache).lower()}")
    return out
