"""The pipeline model: what a tagged notebook compiles to.

A :class:`Pipeline` is plain data (steps, edges, parameters, the generated program of
every step); the compiler (:mod:`kfjupyter.pipelines.graph`) builds it, the engines
(local runner, Kubeflow Pipelines) only read it. ``to_dict``/``from_dict`` round-trip
it through JSON, so a run keeps the exact pipeline it ran and any process can load it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Parameter types a pipeline parameter may have (the Python literal's type).
PARAM_TYPES = ("int", "float", "str", "bool", "json")


@dataclass
class Parameter:
    """A pipeline parameter from the ``pipeline-parameters`` cell (``name = literal``)."""

    name: str
    type: str  # one of PARAM_TYPES
    default: Any  # the literal's value (JSON-ready)


@dataclass(frozen=True)
class Edge:
    """``source`` runs before ``target``: it supplies ``names`` and/or is an explicit ``prev:``."""

    source: str
    target: str
    names: tuple[str, ...] = ()
    explicit: bool = False


@dataclass
class Step:
    """One pipeline step: one or more notebook cells run as one program."""

    name: str
    cells: list[int]  # indexes (in the notebook's cell list) of the cells making the step
    source: str  # the step's own code: its cells joined
    prev: list[str] = field(default_factory=list)  # explicit ``prev:`` targets, in tag order
    image: str | None = None
    limits: dict[str, str] = field(default_factory=dict)  # cpu, memory, nvidia.com/gpu
    cache: bool = True
    annotations: dict[str, str] = field(default_factory=dict)  # the step pod's (``annotation:K:V``)
    labels: dict[str, str] = field(default_factory=dict)  # the step pod's (``label:K:V``)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # env var → {"name", "key"} of a Secret
    report: bool | None = None  # Kale's ``report:enabled|disabled`` (an HTML report of the step)
    inputs: dict[str, str] = field(default_factory=dict)  # name read → the step supplying it
    outputs: list[str] = field(default_factory=list)  # names downstream steps (or metrics) read
    parameters: list[str] = field(default_factory=list)  # pipeline parameters the step reads
    metrics: list[str] = field(default_factory=list)  # ``pipeline-metrics`` names it reports
    program: str = ""  # the generated program (imports, functions, the step's code)


@dataclass
class Pipeline:
    name: str
    steps: dict[str, Step]  # in execution (topological, then notebook) order
    edges: list[Edge]
    parameters: dict[str, Parameter]
    notebook: str | None = None  # the notebook's path, when compiled from a file
    imports: str = ""  # source of the ``imports`` cells
    functions: str = ""  # source of the ``functions`` cells
    metrics: list[str] = field(default_factory=list)  # names listed by ``pipeline-metrics``
    description: str = ""  # Kale's ``pipeline_description``
    experiment: str | None = None  # Kale's ``experiment_name``
    #: Kale's ``volumes``: [{"name": PVC, "mount_point": PATH, "type": "pvc", ...}], mounted on
    #: every step (on Kubeflow Pipelines through kfp-kubernetes ``mount_pvc``)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    #: Kale's ``security_context``: {"run_as_user", "run_as_group", "run_as_non_root"} of
    #: every step's pod (None: the cluster's defaults)
    security_context: dict[str, Any] | None = None

    def upstream(self, step: str) -> list[str]:
        """Steps that must finish before ``step`` runs (data and explicit edges)."""
        return sorted({e.source for e in self.edges if e.target == step}, key=list(self.steps).index)

    def downstream(self, step: str) -> list[str]:
        return sorted({e.target for e in self.edges if e.source == step}, key=list(self.steps).index)

    def parameter_values(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with ``overrides`` applied (unknown names are the caller's error to raise)."""
        values = {name: p.default for name, p in self.parameters.items()}
        values.update(overrides or {})
        return values

    def _repr_html_(self) -> str:
        """Jupyter shows a Pipeline as its DAG and its steps table (see
        :mod:`kfjupyter.pipelines.render`), not the steps' programs."""
        from .render import steps_table, to_svg

        return f"<div class='kf-pipeline'>{to_svg(self)}{steps_table(self)._repr_html_()}</div>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The DAG for the extension's renderer (:data:`~.render.PIPELINE_MIME`), with
        :meth:`_repr_html_` beside it for every other front end."""
        from .render import PIPELINE_MIME, mime_payload

        return {PIPELINE_MIME: mime_payload(self.to_dict()), "text/html": self._repr_html_(), "text/plain": repr(self)}

    def _repr_svg_(self) -> str:
        """The DAG alone (see :mod:`kfjupyter.pipelines.render`)."""
        from .render import to_svg

        return to_svg(self)

    def __repr__(self) -> str:
        """The steps table as text (each step's program: ``pipeline.steps[NAME].program``)."""
        from .render import steps_table

        return repr(steps_table(self))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["edges"] = [dict(asdict(e), names=list(e.names)) for e in self.edges]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Pipeline":
        return cls(
            name=data["name"],
            steps={k: Step(**v) for k, v in data["steps"].items()},
            edges=[Edge(e["source"], e["target"], tuple(e.get("names", ())), e.get("explicit", False)) for e in data["edges"]],
            parameters={k: Parameter(**v) for k, v in data["parameters"].items()},
            notebook=data.get("notebook"),
            imports=data.get("imports", ""),
            functions=data.get("functions", ""),
            metrics=list(data.get("metrics", [])),
            description=data.get("description", ""),
            experiment=data.get("experiment"),
            volumes=list(data.get("volumes", [])),
            security_context=data.get("security_context"),
        )
