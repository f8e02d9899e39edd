"""The local tuning backend: an Optuna study run by trial workers under a detached supervisor.

It answers for tune jobs the way the local training backend answers for training jobs
(same supervisor pid bookkeeping, the same cancel), with logs per trial worker
(``rank`` is the worker's index) and metrics as one row per finished trial.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


from .. import status as st
from ..capture.bundle import Bundle
from ..status import Observation
from ..store.workspace import get_workspace
from ..runtime.processes import start_detached
from ..training.local import LocalTrainBackend, read_lines
from .spec import TuneSpec
from .supervisor import LAUNCH, worker_log


def study_name(job_id: str) -> str:
    return job_id


class LocalTuneBackend(LocalTrainBackend):
    name = "local"

    def submit(self, job_id: str, spec: TuneSpec, bundle: Bundle, job_dir: Path) -> dict:  # type: ignore[override]
        from . import engine

        engine.create_study(job_dir, study_name(job_id), spec)
        return self.start(job_id, spec, bundle, job_dir)

    def start(self, job_id: str, spec: TuneSpec, bundle: Bundle, job_dir: Path) -> dict:
        """Write the launch file and start the supervisor (also used to resume a study)."""
        threads = max(1, (os.cpu_count() or 1) // max(1, spec.parallel * spec.workers_per_trial))
        if spec.cpu:
            from ..training.local import _threads

            threads = _threads(spec.cpu) or threads
        launch = {
            "job_id": job_id,
            "study_name": study_name(job_id),
            "spec": spec.to_dict(),
            "env": spec.env,
            "threads": threads,
            "workdir": bundle.manifest.get("workdir"),
        }
        (job_dir / LAUNCH).write_text(json.dumps(launch, indent=1))
        env = {**os.environ, "KFJUPYTER_HOME": str(get_workspace().home)}
        info = start_detached("kfjupyter.tuning.supervisor", job_dir, env)
        return {**info, "study": study_name(job_id)}

    def observe(self, job_id: str, info: dict) -> Observation:
        seen = super().observe(job_id, info)
        if seen.status == st.FAILED and "supervisor process ended unexpectedly" in (seen.error or ""):
            self._sweep(info, "the study's supervisor process ended unexpectedly")
        return seen

    def cancel(self, job_id: str, info: dict, timeout: float = 10.0) -> None:
        try:
            super().cancel(job_id, info, timeout=timeout)
        finally:
            self._sweep(info, "cancelled by the user")

    def _sweep(self, info: dict, reason: str) -> None:
        """No trial stays RUNNING once nothing runs it (the supervisor normally does this)."""
        from . import engine

        job_dir = Path(info["job_dir"])
        if (job_dir / engine.JOURNAL).exists():
            engine.end_running_trials(engine.open_storage(job_dir), info.get("study", job_dir.name), reason)

    def _rank_file(self, info: dict, rank: int, kind: str) -> Path:
        return worker_log(Path(info["job_dir"]), rank)

    def metrics(self, job_id: str, info: dict) -> list[dict]:
        """One row per finished trial: ``step`` is the trial number, plus its objective."""
        spec = TuneSpec.from_dict(get_workspace().get_job(job_id).spec)
        rows = []
        for trial in self.trials(job_id, info):
            if trial["value"] is not None:
                rows.append({"rank": 0, "step": trial["number"], "time": None, spec.objective: trial["value"]})
        return rows

    # -- the Study view

    def trials(self, job_id: str, info: dict) -> list[dict]:
        from . import engine

        job_dir = Path(info["job_dir"])
        if not (job_dir / engine.JOURNAL).exists():
            return []
        storage = _storage(job_dir)
        try:
            study_id = storage.get_study_id_from_name(info.get("study", job_id))
        except KeyError:
            return []
        return [engine.trial_row(t) for t in storage.get_all_trials(study_id, deepcopy=False)]

    def trial_log(self, job_id: str, info: dict, number: int) -> str:
        """The output of one trial (its span of its worker's log; its ranks' logs if distributed)."""
        from . import engine

        job_dir = Path(info["job_dir"])
        ranks = sorted((job_dir / "trials" / str(number) / "logs").glob("rank-*.log"))
        if ranks:
            return "\n".join(f"--- {p.stem} ---\n{p.read_text(errors='replace')}" for p in ranks)
        storage = _storage(job_dir)
        study_id = storage.get_study_id_from_name(info.get("study", job_id))
        for trial in storage.get_all_trials(study_id, deepcopy=False):
            if trial.number == number:
                worker, span = trial.user_attrs.get(engine.ATTR_WORKER), trial.user_attrs.get(engine.ATTR_LOG)
                if worker is None or not span:
                    return ""
                with open(worker_log(job_dir, worker), "rb") as fh:
                    fh.seek(span[0])
                    return fh.read(span[1] - span[0]).decode(errors="replace")
        raise KeyError(f"no trial {number} in study {job_id}")

    def worker_logs(self, info: dict) -> list[str]:
        return [str(p) for p in sorted((Path(info["job_dir"]) / "logs").glob("worker-*.log"))]


_storages: dict[str, object] = {}


def _storage(job_dir: Path):
    """One storage per journal and process: it replays only what was appended since."""
    from . import engine

    key = str(job_dir)
    if key not in _storages:
        _storages[key] = engine.open_storage(job_dir)
    return _storages[key]


__all__ = ["LocalTuneBackend", "read_lines"]
