"""What a tuning job asks for, validated once for every backend."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from ..errors import InvalidOptionError
from ..runtime.engine import ID_SUFFIX_LEN, JobSpec
from ..validation import check_placement
from .space import SearchSpace

#: Katib's names for the algorithms both backends run.
ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "cmaes", "sobol")
#: Early stopping: ``median`` is Katib's ``medianstop``; ``hyperband`` runs locally only.
EARLY_STOPPING = ("median", "hyperband")
DIRECTIONS = ("minimize", "maximize")
#: How a trial's reported values become its objective (Katib's metricStrategies):
#: ``best`` is the min (minimize) or max (maximize) of the reported values, ``latest`` the last.
STRATEGIES = ("best", "latest")
#: Katib limits Experiment names to 40 characters; the id adds a dash and 5 hex digits.
MAX_NAME_LENGTH = 40 - ID_SUFFIX_LEN
#: Katib's medianstop defaults, used by both backends.
MEDIAN_MIN_TRIALS = 3
MEDIAN_START_STEP = 4
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidOptionError(f"invalid {what} {value!r}: expected an integer >= {minimum}")
    return value


@dataclass(frozen=True, kw_only=True)
class TuneSpec(JobSpec):
    """A hyperparameter search: objective, budget, algorithm, and each trial's resources.

    ``trials`` is the study's whole budget (finished trials, whatever their end);
    ``parallel`` trials run at once; ``max_failed`` failed trials are tolerated, one more
    fails the study (Katib's ``maxFailedTrialCount``). ``workers_per_trial`` > 1 runs each
    trial as a distributed training job of that many ranks.
    """

    kind: ClassVar[str] = "tune"
    max_name_length: ClassVar[int] = MAX_NAME_LENGTH

    objective: str = ""
    space: SearchSpace = field(default_factory=SearchSpace)
    direction: str = "minimize"
    trials: int = 10
    parallel: int = 1
    algorithm: str = "tpe"
    early_stopping: str | None = None
    workers_per_trial: int = 1
    max_failed: int = 3
    strategy: str = "best"
    name: str = "tune"
    gpus: int = 0
    cpu: str | None = None
    memory: str | None = None
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    namespace: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.objective, str) or not _METRIC.match(self.objective) or self.objective in ("step", "time"):
            raise InvalidOptionError(
                f"invalid objective {self.objective!r}: name a metric the cell reports, "
                "e.g. --objective val_loss with kfjupyter.report(val_loss=…)"
            )
        if self.direction not in DIRECTIONS:
            raise InvalidOptionError(f"invalid direction {self.direction!r}: choose minimize or maximize")
        _positive_int(self.trials, "trials")
        _positive_int(self.parallel, "parallel")
        _positive_int(self.workers_per_trial, "workers per trial")
        _positive_int(self.max_failed, "max failed trials", minimum=0)
        if self.algorithm not in ALGORITHMS:
            raise InvalidOptionError(f"unknown algorithm {self.algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
        if self.early_stopping not in (None, *EARLY_STOPPING):
            raise InvalidOptionError(
                f"unknown early stopping {self.early_stopping!r}: choose one of {', '.join(EARLY_STOPPING)}"
            )
        if self.strategy not in STRATEGIES:
            raise InvalidOptionError(f"invalid strategy {self.strategy!r}: choose best or latest")
        super().__post_init__()
        if self.backend == "kubernetes" and self.early_stopping == "hyperband":
            raise InvalidOptionError(
                "early stopping 'hyperband' runs on the local backend only: Katib's early stopping "
                "is 'median' (medianstop)"
            )
        check_placement(self)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidOptionError(f"invalid seed {self.seed!r}: expected an integer")
        env = self.env
        for key in env:
            if key.startswith("KFJUPYTER_"):
                raise InvalidOptionError(f"environment variable {key} is reserved: kfjupyter sets it")
        object.__setattr__(self, "env", env)
        space = self.space if isinstance(self.space, SearchSpace) else SearchSpace(self.space)
        object.__setattr__(self, "space", space)
        if not space:
            raise InvalidOptionError("the search space is empty: declare parameters with kfjupyter.param(...) or --param")
        trials = self.trials
        if self.algorithm == "grid":
            size = space.grid_size()  # raises for a continuous parameter
            trials = min(trials, size)  # a grid has no more points than that
        object.__setattr__(self, "trials", trials)
        # Katib: parallelTrialCount <= maxTrialCount, maxFailedTrialCount <= maxTrialCount
        object.__setattr__(self, "parallel", min(self.parallel, trials))
        object.__setattr__(self, "max_failed", min(self.max_failed, trials))

    @property
    def workers(self) -> int:
        return self.parallel

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["space"] = self.space.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TuneSpec":
        data = dict(data)
        data["space"] = SearchSpace.from_dict(data.get("space") or {})
        return cls(**data)

    def with_changes(self, **changes: Any) -> "TuneSpec":
        return replace(self, **changes)
