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

    def check_name(self) -> None:
        check_dns1123_label(self.name, "endpoint name", max_length=MAX_ENDPOINT_NAME)

    def new_job_id(self) -> str:
        return f"{self.name}-{secrets.token_hex(4)}"
