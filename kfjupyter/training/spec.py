"""What a training job asks for, validated once for every backend."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidOptionError
from ..validation import check_job_name, check_placement

BACKENDS = ("local", "kubernetes")

#: A job id is the name plus a dash and 5 random hex digits; the id must itself be a
#: DNS-1123 label of at most 63 characters (it names the TrainJob on Kubernetes).
_ID_SUFFIX_LEN = 6
MAX_NAME_LENGTH = 63 - _ID_SUFFIX_LEN


@dataclass(frozen=True)
class TrainSpec:
    """Resources and placement of one distributed training job.

    ``cpu``, ``memory`` and ``gpus`` are per worker (per node on Kubernetes).
    """

    name: str = "train"
    workers: int = 1
    gpus: int = 0
    cpu: str | None = None
    memory: str | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    backend: str = "local"
    namespace: str | None = None

    def __post_init__(self) -> None:
        check_job_name(self.name, "job name", MAX_NAME_LENGTH)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidOptionError(f"invalid workers {self.workers!r}: expected an integer >= 1")
        if self.backend not in BACKENDS:
            raise InvalidOptionError(
                f"unknown backend {self.backend!r}: choose one of {', '.join(BACKENDS)}"
            )
        check_placement(self)

    def new_job_id(self) -> str:
        return f"{self.name}-{secrets.token_hex(_ID_SUFFIX_LEN // 2)[: _ID_SUFFIX_LEN - 1]}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSpec":
        return cls(**data)
