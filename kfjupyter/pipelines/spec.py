"""What a pipeline run asks for (the spec of a ``pipeline`` job)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import InvalidOptionError
from ..runtime.engine import JobSpec


def new_run_id(pipeline_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", pipeline_name.lower()).strip("-")[:50].strip("-") or "pipeline"
    return f"{slug}-{secrets.token_hex(3)[:5]}"


@dataclass(frozen=True, kw_only=True)
class PipelineSpec(JobSpec):
    """A run of a compiled pipeline: the pipeline (``Pipeline.to_dict()``), the parameter
    values, steps at once, whether the step cache answers, the run it resumes, and the
    folder its steps run in (the notebook's)."""

    kind: ClassVar[str] = "pipeline"

    name: str = "pipeline"
    pipeline: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    max_parallel: int = 2
    cache: bool = True
    resume: str | None = None
    workdir: str | None = None

    def check_name(self) -> None:
        # a pipeline's own name (any text); the run's id is made DNS-safe from it
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 63:
            raise InvalidOptionError(f"invalid pipeline name {self.name!r}: 1 to 63 characters")

    def new_job_id(self) -> str:
        return new_run_id(self.name)

    def launch(self, job_dir: Path) -> dict[str, Any]:
        """What the local supervisor reads (launch.json, besides the job id)."""
        return {
            "pipeline": self.pipeline, "parameters": self.parameters, "max_parallel": self.max_parallel,
            "cache": self.cache, "resume": self.resume, "workdir": self.workdir, "env": {},
        }  # fmt: skip
