"""What an endpoint serves (the spec of an ``endpoint`` job)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

from ..runtime.engine import JobSpec
from ..validation import check_dns1123_label

#: Endpoint names are DNS-1123 labels of at most this many characters (KServe's own limit
#: leaves room for the revision and component suffixes it adds).
MAX_ENDPOINT_NAME = 45
#: what request logging records of each request (KServe's logger modes)
LOG_MODES = ("all", "request", "response")


@dataclass(frozen=True, kw_only=True)
class EndpointSpec(JobSpec):
    """A deployment: ``model`` (the reference asked for) resolved to ``version`` (format,
    artifact, ref …), an optional ``canary`` taking ``canary_percent`` of the traffic,
    ``previous`` (what a rollback returns to), and where it runs: a fixed local ``port``,
    or a ``namespace``, ``resources``, replicas and KServe ``deployment_mode`` on Kubernetes."""

    kind: ClassVar[str] = "endpoint"

    name: str = "model"
    model: str = ""
    version: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    canary_percent: int = 0
    previous: dict[str, Any] | None = None
    port: int | None = None
    namespace: str | None = None
    resources: dict[str, Any] | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    deployment_mode: str | None = None
    #: the components in front of the predictor, from notebook code (captured like a training
    #: cell: ``{"label", "kind", "bundle"}``) or ready-made (an explainer ``{"kind": "shap"}``)
    transformer: dict[str, Any] | None = None
    explainer: dict[str, Any] | None = None
    #: request logging: ``"all"``, ``"request"`` or ``"response"`` (None: off), the share of
    #: requests logged, and (on Kubernetes) the sink URL KServe's logger sends CloudEvents to
    log: str | None = None
    log_sample: float = 1.0
    log_sink: str | None = None
    #: request batching (KServe's batcher on Kubernetes, the local server's batching)
    max_batch_size: int | None = None
    max_latency_ms: int | None = None
    #: the image of a transformer or explainer from notebook code on Kubernetes
    image: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..errors import InvalidOptionError

        if self.log not in (None, *LOG_MODES):
            raise InvalidOptionError(f"log must be one of {', '.join(map(repr, LOG_MODES))} (or None), got {self.log!r}")
        if isinstance(self.log_sample, bool) or not isinstance(self.log_sample, (int, float)) or not 0 < self.log_sample <= 1:
            raise InvalidOptionError(f"log_sample must be a share of the requests in (0, 1], got {self.log_sample!r}")
        for field, value in (("max_batch_size", self.max_batch_size), ("max_latency_ms", self.max_latency_ms)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidOptionError(f"{field} must be a whole number >= 1, got {value!r}")

    def check_name(self) -> None:
        check_dns1123_label(self.name, "endpoint name", max_length=MAX_ENDPOINT_NAME)

    def new_job_id(self) -> str:
        return f"{self.name}-{secrets.token_hex(4)}"
