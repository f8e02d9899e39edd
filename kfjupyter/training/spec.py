"""What a training job asks for, validated once for every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import InvalidOptionError
from ..runtime.engine import MAX_NAME_LENGTH, JobSpec
from ..validation import check_placement

__all__ = ["MAX_NAME_LENGTH", "TrainSpec"]


@dataclass(frozen=True)
class TrainSpec(JobSpec):
    """Resources and placement of one distributed training job.

    ``cpu``, ``memory`` and ``gpus`` are per worker (per node on Kubernetes).
    """

    kind: ClassVar[str] = "train"

    name: str = "train"
    workers: int = 1
    gpus: int = 0
    cpu: str | None = None
    memory: str | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    namespace: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidOptionError(f"invalid workers {self.workers!r}: expected an integer >= 1")
        super().__post_init__()
        check_placement(self)
