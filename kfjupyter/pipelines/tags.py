"""The cell-tag grammar of pipeline notebooks (Kale 2.3's vocabulary, and its older one), in one place.

A code cell's ``metadata.tags`` say what the cell is. The rules are Kale's (its notebook
processor is the oracle of ``tests/test_kale_conformance.py``):

=========================  ==================================================================
``imports``                code prepended to every step (imports)
``functions``              code prepended to every step, after the imports
``pipeline-parameters``    ``NAME = literal`` lines: the pipeline's parameters
``pipeline-metrics``       ``print(name)`` lines (or bare names): the pipeline's metrics; must
                           be the last tagged cells of the notebook
``skip``                   not part of the pipeline; the cells after it continue what came
                           before it
``step:NAME``              starts step NAME, or continues it when NAME was used before (the
                           code is merged into that step); ``step:`` with no name is an
                           untagged cell. ``block:NAME`` is Kale's older spelling
``prev:NAME``              NAME runs before this step (several allowed; needs ``step:``)
``image:IMAGE``            the step's container image
``limit:KEY:VALUE``        a resource limit (``limit:cpu:2``, ``limit:nvidia.com/gpu:1``)
``annotation:KEY:VALUE``   an annotation on the step's pod
``label:KEY:VALUE``        a label on the step's pod
``secret:NAME:KEY:ENV``    the key KEY of the Kubernetes Secret NAME as the env var ENV
``cache:enabled|disabled`` whether the step may be taken from the cache (also ``true|false``)
``report:enabled|disabled``  Kale's per-step HTML report (read, kept on the step)
=========================  ==================================================================

* The first of ``skip``, ``imports``, ``functions``, ``pipeline-parameters`` and
  ``pipeline-metrics`` on a cell decides it: the cell's other tags are not read (so
  ``skip`` wins over ``step:`` and ``prev:``).
* An untagged code cell continues whatever the previous non-skipped code cell was (a step,
  the imports, the parameters …). Untagged cells before the first tagged cell are not part
  of the pipeline (Kale's rule; :func:`~kfjupyter.pipelines.graph.from_notebook` warns).
* ``prev:``, ``image:``, ``limit:``, ``annotation:``, ``label:``, ``secret:``, ``cache:`` and
  ``report:`` need a ``step:NAME`` on the same cell.
* Any other tag is an error naming it (a typo never silently changes the pipeline), except
  the tags other Jupyter tools own (:data:`FOREIGN_TAGS`: papermill's ``parameters``, the
  display tags of nbconvert and Jupyter Book), which Kale refuses and kfjupyter ignores.

Kale's notebook metadata ``metadata.kubeflow_notebook`` is read by :func:`notebook_settings`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

# ---------------------------------------------------------------------------------------
# The patterns
# ---------------------------------------------------------------------------------------

#: A step name: Kale's ``[_a-z][_a-z0-9]*``, or kfjupyter's older DNS-like names
#: (``load-data``, ``2nd_pass``: letters, digits, '-' and '_', starting and ending with a
#: letter or digit), which Kale refuses.
STEP_NAME = re.compile(r"^(?:[_a-z][_a-z0-9]*|[a-z0-9](?:[-a-z0-9_]*[a-z0-9])?)$")

#: ``step:NAME`` / ``block:NAME``; an empty NAME makes the cell an untagged one.
STEP = re.compile(r"^(?:step|block):(?P<name>.*)$")

#: ``prev:NAME`` - an explicit upstream step.
PREV = re.compile(r"^prev:(?P<name>.*)$")

#: ``image:IMAGE`` - any non-blank image reference (registry/repo:tag@digest …).
IMAGE = re.compile(r"^image:(?P<image>\S+)$")

#: ``limit:KEY:VALUE`` - Kale's shape: KEY of ``_a-z-./``, VALUE of ``_a-zA-Z0-9.``.
LIMIT = re.compile(r"^limit:(?P<key>[_a-z\-./]+):(?P<value>[_a-zA-Z0-9.]+)$")

#: What Kubernetes then accepts (checked here, where Kale leaves it to the cluster): KEY
#: cpu, memory, ephemeral-storage or a vendor resource (nvidia.com/gpu); VALUE a quantity
#: (2, 500m, 1.5, 4Gi, 1e3 …).
RESOURCE = re.compile(
    r"^(?:cpu|memory|ephemeral-storage|[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/[a-z0-9](?:[-a-z0-9._]*[a-z0-9])?)$")
QUANTITY = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+|[numkMGTPE]i?|Ki)?$")

#: A Kubernetes annotation or label key: ``[prefix/]name``, segments of letters, digits and
#: ``-_.``, starting and ending with a letter or digit.
_SEGMENT = r"[a-zA-Z0-9]+(?:[a-zA-Z0-9\-_.]*[a-zA-Z0-9])?"
_K8S_KEY = rf"{_SEGMENT}(?:/{_SEGMENT})?"

#: ``annotation:KEY:VALUE`` / ``label:KEY:VALUE`` - VALUE is the rest of the tag.
ANNOTATION = re.compile(rf"^annotation:(?P<key>{_K8S_KEY}):(?P<value>.*)$")
LABEL = re.compile(rf"^label:(?P<key>{_K8S_KEY}):(?P<value>.*)$")

#: ``secret:SECRET:KEY:ENV`` - a Secret's (DNS-1123) name, a key in it, an env var name.
SECRET = re.compile(
    r"^secret:(?P<secret>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)"
    r":(?P<key>[-._a-zA-Z0-9]+):(?P<env>[a-zA-Z_][a-zA-Z0-9_]*)$"
)

#: ``cache:enabled|disabled`` (Kale 2.3) or ``cache:true|false`` (kfjupyter's, any case).
CACHE = re.compile(r"^cache:(?P<value>enabled|disabled|true|false)$", re.IGNORECASE)

#: ``report:enabled|disabled``.
REPORT = re.compile(r"^report:(?P<value>enabled|disabled)$")

#: ``notebook:NAME`` - Kale's sub-pipeline reference (its path in the cell's metadata).
NOTEBOOK = re.compile(r"^notebook:(?P<name>.*)$")

#: Tags that make the whole cell one kind of block.
KIND_TAGS = ("imports", "functions", "pipeline-parameters", "pipeline-metrics", "skip")

#: Tags of other Jupyter tools, ignored (Kale refuses them): papermill's parameters cells,
#: and the display tags of nbconvert's TagRemovePreprocessor and Jupyter Book.
FOREIGN_TAGS = frozenset({
    "parameters", "injected-parameters",
    "remove-cell", "remove-input", "remove-output", "remove_cell", "remove_input", "remove_output",
    "hide-cell", "hide-input", "hide-output", "hide_input", "hide_output",
    "raises-exception", "skip-execution", "thebe-init", "full-width", "margin",
})

#: What each parameterised tag looks like, for the message about a tag that does not parse.
EXAMPLES = {
    "step": "step:train", "block": "block:train", "prev": "prev:prepare", "image": "image:python:3.11",
    "limit": "limit:cpu:2, limit:nvidia.com/gpu:1", "annotation": "annotation:team.io/owner:ana",
    "label": "label:team:vision", "secret": "secret:db-creds:password:DB_PASSWORD",
    "cache": "cache:disabled", "report": "report:disabled", "notebook": "notebook:features",
}


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------


class TagError(ValueError):
    """A cell's tags do not parse (the compiler adds the cell to the message)."""


@dataclass
class CellTags:
    """What one cell's tags say. ``kind`` is None for an untagged (continuation) cell."""

    kind: str | None = None  # "step", "notebook" or one of KIND_TAGS
    name: str | None = None  # the step (or referenced notebook) name
    prev: list[str] = field(default_factory=list)
    image: str | None = None
    limits: dict[str, str] = field(default_factory=dict)
    cache: bool | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # env → {"name", "key"}
    report: bool | None = None


def valid_step_name(name: str) -> bool:
    return bool(STEP_NAME.match(name))


def _check_name(name: str, tag: str) -> str:
    if not valid_step_name(name):
        raise TagError(
            f"invalid step name {name!r} in tag {tag!r}: use lower-case letters, digits and '_' "
            "(Kale's names, e.g. load_data), or '-' inside"
        )
    return name


def _unknown(tag: str) -> TagError:
    head = tag.split(":", 1)[0]
    if head in EXAMPLES:
        return TagError(f"malformed tag {tag!r} (expected e.g. {EXAMPLES[head]})")
    vocabulary = list(KIND_TAGS) + list(EXAMPLES)
    guess = difflib.get_close_matches(head, vocabulary, n=1, cutoff=0.75)
    hint = f"; did you mean {guess[0] + (':' + tag.split(':', 1)[1] if ':' in tag else '')!r}?" if guess else ""
    return TagError(
        f"unknown tag {tag!r}{hint} (pipeline tags: {', '.join(KIND_TAGS)}, "
        + ", ".join(f"{k}:…" for k in EXAMPLES) + ")"
    )


def _option(out: CellTags, tag: str) -> bool:
    """Read one step option into ``out``; False when ``tag`` is not a step option."""
    if m := PREV.match(tag):
        name = _check_name(m["name"], tag)
        if name not in out.prev:
            out.prev.append(name)
    elif m := IMAGE.match(tag):
        out.image = m["image"]
    elif m := LIMIT.match(tag):
        if not RESOURCE.match(m["key"]):
            raise TagError(f"tag {tag!r}: {m['key']!r} is not a Kubernetes resource (cpu, memory, "
                           "ephemeral-storage, or a vendor resource such as nvidia.com/gpu)")
        if not QUANTITY.match(m["value"]):
            raise TagError(f"tag {tag!r}: {m['value']!r} is not a Kubernetes quantity (2, 500m, 1.5, 4Gi …)")
        out.limits[m["key"]] = m["value"]
    elif m := ANNOTATION.match(tag):
        out.annotations[m["key"]] = m["value"]
    elif m := LABEL.match(tag):
        out.labels[m["key"]] = m["value"]
    elif m := SECRET.match(tag):
        out.secrets[m["env"]] = {"name": m["secret"], "key": m["key"]}
    elif m := CACHE.match(tag):
        out.cache = m["value"].lower() in ("enabled", "true")
    elif m := REPORT.match(tag):
        out.report = m["value"] == "enabled"
    else:
        return False
    return True


def parse_tags(tags: Iterable[Any]) -> CellTags:
    """Parse a cell's tags (Kale's rules, see the module's docstring); raise
    :class:`TagError` naming the offending tag."""
    out = CellTags()
    names: list[str] = []
    options: list[str] = []
    for raw in tags:
        if not isinstance(raw, str):
            raise TagError(f"a tag must be a string, not {type(raw).__name__} {raw!r}")
        tag = raw.strip()
        if tag in KIND_TAGS:
            return CellTags(kind=tag)  # the first kind tag decides the cell
        if tag in FOREIGN_TAGS:
            continue
        if m := STEP.match(tag):
            if m["name"]:
                names.append(_check_name(m["name"], tag))
            else:
                names.append("")  # `step:` alone: the cell is an untagged one
        elif m := NOTEBOOK.match(tag):
            if not m["name"] or not valid_step_name(m["name"]):
                raise _unknown(tag)
            out.kind, out.name = "notebook", m["name"]
        elif _option(out, tag):
            options.append(tag)
        else:
            raise _unknown(tag)
    if len(names) > 1:
        raise TagError(f"a cell has {len(names)} step tags ({', '.join(repr(n) for n in names)}); a cell belongs to one step")
    if out.kind == "notebook":
        if names or options:
            raise TagError(f"a notebook:{out.name} cell takes no step tags ({(names and 'step:' + names[0]) or options[0]!r})")
        return out
    if names and names[0]:
        out.kind, out.name = "step", names[0]
        return out
    if names:  # `step:` with an empty name: untagged, its options not read (Kale's rule)
        return CellTags()
    if options:
        raise TagError(f"tag {options[0]!r} needs a step:NAME tag on the same cell")
    return out


def parse_defaults(tags: Iterable[Any]) -> CellTags:
    """Kale's ``steps_defaults`` notebook metadata: step options applied to every step."""
    out = CellTags()
    for raw in tags or ():
        tag = str(raw).strip()
        if not _option(out, tag) or tag.startswith("prev:"):
            raise TagError(f"steps_defaults: {tag!r} is not a step option "
                           "(image:, limit:, annotation:, label:, secret:, cache:, report:)")
    return out


def notebook_settings(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Kale's ``metadata.kubeflow_notebook`` (pipeline_name, base_image or the older
    docker_image, experiment_name, pipeline_description, volumes, steps_defaults …)."""
    settings = (metadata or {}).get("kubeflow_notebook") or {}
    return dict(settings) if isinstance(settings, dict) else {}


def format_tags(tags: CellTags) -> list[str]:
    """The tags that :func:`parse_tags` reads back as ``tags`` (canonical spelling)."""
    if tags.kind is None:
        return []
    if tags.kind == "notebook":
        return [f"notebook:{tags.name}"]
    if tags.kind != "step":
        return [tags.kind]
    out = [f"step:{tags.name}"] + [f"prev:{p}" for p in tags.prev]
    if tags.image:
        out.append(f"image:{tags.image}")
    out += [f"limit:{k}:{v}" for k, v in tags.limits.items()]
    out += [f"annotation:{k}:{v}" for k, v in tags.annotations.items()]
    out += [f"label:{k}:{v}" for k, v in tags.labels.items()]
    out += [f"secret:{s['name']}:{s['key']}:{env}" for env, s in tags.secrets.items()]
    if tags.cache is not None:
        out.append(f"cache:{'enabled' if tags.cache else 'disabled'}")
    if tags.report is not None:
        out.append(f"report:{'enabled' if tags.report else 'disabled'}")
    return out
