"""The engine contract: what every kind of job implements on every backend.

A job is one record in the workspace store (kind, spec, status, ``backend_info``) plus an
*engine* that does the work somewhere and answers for it afterwards. Engines keep no
state between calls: what they need to find a job again is the ``backend_info`` dict
that :meth:`Engine.submit` returns (stored in the record), so any process — a restarted
kernel, the CLI, the Jupyter server — re-attaches to any job from its record alone.

What a job prints and reports travels on named *channels*: its log channels (one per
rank, worker, server … and one per child task: ``step/prep``, ``trial/3``) and its
metric channels. Every client reads them the same way, through :meth:`Engine.read_log`
(read, tail, follow) and :meth:`Engine.read_metrics`.

What an engine offers beyond that is declared in :attr:`Engine.features`, never probed.
Engines are registered by (kind, backend) in :mod:`kfjupyter.backends`.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator, Protocol, runtime_checkable

from ..errors import InvalidOptionError
from ..status import Observation, SupervisorLost
from ..validation import check_job_name

__all__ = [
    "Channel",
    "Channels",
    "Engine",
    "Features",
    "JobSpec",
    "Observation",
    "SupervisorLost",
    "UnknownChannelError",
]


@dataclass(frozen=True)
class Features:
    """What an engine offers beyond submit, observe, cancel and its log channels."""

    #: the job survives the process that started it, and any process re-attaches to it
    reattach: bool = True
    #: log channels can be followed while the job runs (not only read afterwards)
    follow: bool = True
    #: the job reports metrics (``kfjupyter.report``) on metric channels
    metrics: bool = False
    #: the job has child tasks (pipeline steps, trials, sweep runs, servers) in the store
    children: bool = False
    #: a detached local supervisor runs the job (see :mod:`kfjupyter.runtime.detached`)
    supervised: bool = False
    #: how a follower learns that the job changed: ``"poll"`` (observe it every poll: a
    #: local job, cheap), ``"watch"`` (:meth:`Engine.changes` wakes it: a Kubernetes watch),
    #: ``"backoff"`` (a remote API that cannot be watched: observe at growing intervals)
    changes: str = "poll"

    def to_dict(self) -> dict[str, bool | str]:
        return asdict(self)


@dataclass(frozen=True)
class Channel:
    """One stream of a job: lines of a log, or rows of metrics.

    ``name`` is what clients pass back (``rank-0``, ``worker-1``, ``step/prep``);
    ``rank`` the index that ``Job.logs(rank=…)`` and the REST API's ``rank`` select it by
    (None for a child's channel); ``child`` the child task it belongs to, if any.
    """

    name: str
    label: str
    rank: int | None = None
    child: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Channels:
    """A job's own channels (its children's are listed with the children)."""

    logs: tuple[Channel, ...] = ()
    metrics: tuple[Channel, ...] = ()

    def to_dict(self) -> dict[str, list[dict]]:
        return {"logs": [c.to_dict() for c in self.logs], "metrics": [c.to_dict() for c in self.metrics]}

    def log(self, rank: int) -> Channel | None:
        return next((c for c in self.logs if c.rank == rank), None)

    def metric(self, rank: int) -> Channel | None:
        return next((c for c in self.metrics if c.rank == rank), None)


def ranked(prefix: str, label: str, count: int, start: int = 0) -> tuple[Channel, ...]:
    """``count`` channels ``prefix-0`` … labelled ``label 0`` …, selected by rank."""
    return tuple(Channel(f"{prefix}-{i}", f"{label} {i}", rank=i) for i in range(start, start + count))


def child_channel(kind: str, name: str) -> str:
    """The log channel of a child task: ``step/prep``, ``trial/3``, ``run/2``, ``server/primary``."""
    return f"{kind}/{name}"


class UnknownChannelError(InvalidOptionError):
    """A job has no channel by that name (or no channel of that rank)."""


# -- specs --------------------------------------------------------------------------------------
#: A job id is the name plus a dash and 5 random hex digits; the id must itself be a
#: DNS-1123 label of at most 63 characters (it names Kubernetes objects).
ID_SUFFIX_LEN = 6
MAX_NAME_LENGTH = 63 - ID_SUFFIX_LEN


@dataclass(frozen=True)
class JobSpec:
    """What a job asks for: the base of every kind's typed spec (``TrainSpec``,
    ``TuneSpec``, ``PipelineSpec``, ``NotebookSpec``, ``SweepSpec``, ``EndpointSpec``).

    A spec is checked when it is made (``__post_init__``): an invalid one raises
    :class:`~kfjupyter.errors.InvalidOptionError` before anything exists. ``backend`` must
    be one the engine registry knows for the spec's kind.
    """

    kind: ClassVar[str] = ""
    #: the longest name the kind allows (its id adds 6 characters)
    max_name_length: ClassVar[int] = MAX_NAME_LENGTH

    name: str = "job"
    backend: str = "local"

    def __post_init__(self) -> None:
        self.check_name()
        from ..backends import check_backend

        check_backend(self.kind, self.backend)

    def check_name(self) -> None:
        """Job names are DNS-1123 labels that start with a letter (they name Kubernetes objects)."""
        check_job_name(self.name, "job name", self.max_name_length)

    def new_job_id(self) -> str:
        return f"{self.name}-{secrets.token_hex(ID_SUFFIX_LEN // 2)[: ID_SUFFIX_LEN - 1]}"

    @property
    def workers(self) -> int:
        """What the record's ``workers`` column shows: processes working at once."""
        return 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# -- the protocol -------------------------------------------------------------------------------
@runtime_checkable
class Engine(Protocol):
    """The engine of one kind of job on one backend (registered in :mod:`kfjupyter.backends`)."""

    kind: ClassVar[str]
    name: ClassVar[str]
    features: ClassVar[Features]

    def submit(self, job_id: str, spec: JobSpec, job_dir: Path) -> dict:
        """Start the job; return its ``backend_info``. Raise
        :class:`~kfjupyter.errors.InvalidOptionError` before creating anything if refused."""

    def observe(self, job_id: str, info: dict) -> Observation:
        """The job's current state as the backend sees it."""

    def cancel(self, job_id: str, info: dict) -> None:
        """Stop everything the job runs and mark it Cancelled. Idempotent."""

    def channels(self, job_id: str, info: dict) -> Channels:
        """The job's own log and metric channels."""

    def read_log(
        self,
        job_id: str,
        info: dict,
        channel: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Lines (without newline) of a log channel (the job's or a child's); with
        ``follow``, until that channel's producer ends (or ``stop`` is set)."""

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        """Reported metrics (of one metric channel, or all): dicts with ``rank``,
        ``step``, ``time`` and the values."""

    def on_supervisor_lost(self, job_id: str, info: dict, reason: SupervisorLost) -> None:
        """Tidy what the job keeps (trials, steps, runs) when its supervisor is gone."""

    def backfill_children(self, job_id: str, info: dict) -> None:
        """Give a job recorded by an earlier kfjupyter (without child tasks in the store)
        the children it has: from its journal, its spec, its old tables. Idempotent."""

    def changes(self, job_id: str, info: dict) -> Any:
        """With ``features.changes == "watch"``: an object whose ``wait(timeout)`` returns
        True when what :meth:`observe` reads changed, ``pending()`` says so without
        waiting, and ``close()`` ends (see :class:`kfjupyter.k8s.observe.Changes`)."""


class EngineBase:
    """Defaults every engine may inherit: no metrics, no children, nothing to tidy."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    features: ClassVar[Features] = Features()

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        return []

    def on_supervisor_lost(self, job_id: str, info: dict, reason: SupervisorLost) -> None:
        pass

    def backfill_children(self, job_id: str, info: dict) -> None:
        pass

    def changes(self, job_id: str, info: dict) -> Any:
        raise NotImplementedError(f"the {self.kind} engine {self.name!r} does not watch (features.changes)")

    @staticmethod
    def unknown_channel(job_id: str, channel: str, known: Channels | None = None) -> UnknownChannelError:
        names = ", ".join(c.name for c in known.logs) if known else ""
        return UnknownChannelError(
            f"job {job_id} has no log channel {channel!r}" + (f" (its channels: {names})" if names else "")
        )


