"""The local training engine: ranks as processes on this machine, under a detached supervisor
(:mod:`kfjupyter.training.supervisor`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..capture.bundle import Bundle
from ..errors import InvalidOptionError
from ..runtime.detached import DetachedEngine
from ..runtime.engine import Channel, Channels, Features, ranked
from ..runtime.processes import cpu_threads
from ..runtime.ranks import base_env, rank_paths
from ..runtime.supervisor import LAUNCH
from ..store.workspace import get_workspace
from .spec import TrainSpec


def local_gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


class LocalTrainEngine(DetachedEngine):
    """Training jobs on this machine; one log and one metric channel per rank (``rank-N``)."""

    kind = "train"
    supervisor = "kfjupyter.training.supervisor"
    what = "the job's training supervisor"
    features = Features(supervised=True, metrics=True)
    #: a warm parent has torch (with what its first optimizer step imports: torch._dynamo)
    #: and the supervisor loaded; the supervisor forks the ranks
    warm_modules = ("torch", "torch.distributed", "torch.nn.parallel", "torch.optim", "torch._dynamo", "kfjupyter",
                    "kfjupyter.runtime.bootstrap", "kfjupyter.training.supervisor", "kfjupyter.store.workspace",
                    "kfjupyter.tracking.follow")  # fmt: skip

    def warm_env(self, job_dir: Path, env: dict[str, str]) -> dict[str, str] | None:
        """The ranks' environment (less what is set per rank); None (cold) with GPUs."""
        launch = json.loads((job_dir / LAUNCH).read_text())
        if launch.get("gpus"):
            return None
        return base_env(env, workers=launch["workers"], env=launch.get("env"), threads=launch.get("threads"))

    def launch(self, job_id: str, spec: TrainSpec, job_dir: Path) -> dict:
        if spec.gpus:
            have = local_gpu_count()
            if have < spec.gpus * spec.workers:
                raise InvalidOptionError(
                    f"{spec.workers} workers × {spec.gpus} GPUs asked for, this machine has {have} GPU(s)"
                )
        return {
            "workers": spec.workers,
            "env": spec.env,
            "gpus": spec.gpus,
            "threads": cpu_threads(spec.cpu),
            "workdir": Bundle(job_dir / "bundle").manifest.get("workdir"),
        }

    def _workers(self, job_id: str) -> int:
        return int(get_workspace().get_job(job_id).spec.get("workers") or 1)

    def channels(self, job_id: str, info: dict) -> Channels:
        n = self._workers(job_id)
        return Channels(logs=ranked("rank", "rank", n), metrics=ranked("rank", "rank", n))

    def log_path(self, job_id: str, job_dir: Path, channel: str) -> Path | None:
        rank = _rank_of(channel)
        if rank is None or rank >= self._workers(job_id):
            return None
        return rank_paths(job_dir, rank)["log"]

    def metric_paths(self, job_id: str, job_dir: Path) -> list[tuple[Channel, Path]]:
        return [(c, rank_paths(job_dir, c.rank)["metrics"]) for c in self.channels(job_id, {}).metrics]


def _rank_of(channel: str) -> int | None:
    prefix, _, number = channel.partition("-")
    return int(number) if prefix == "rank" and number.isdigit() else None
