"""The local tuning engine: an Optuna study run by trial workers under a detached supervisor
(:mod:`kfjupyter.tuning.supervisor`).

Channels: one log per trial worker (``worker-N``, ``rank`` N), one per trial
(``trial/N``: its part of its worker's log, or its ranks' logs when distributed), and one
metric channel ``trials`` (a row per finished trial: ``step`` is the trial number, plus
its objective). The trials are the study's child tasks (the supervisor keeps them in the
store as the journal changes).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

from .. import status as st
from ..runtime.detached import DetachedEngine
from ..runtime.engine import Channel, Channels, Features, UnknownChannelError, ranked
from ..runtime.logs import follow_file, read_span
from ..runtime.processes import cpu_threads
from ..store.workspace import get_workspace
from .spec import TuneSpec
from .supervisor import trial_dir, worker_log

TRIAL = "trial"
TRIALS_CHANNEL = Channel("trials", "trials", rank=0)


def study_name(job_id: str) -> str:
    return job_id


class LocalTuneEngine(DetachedEngine):
    kind = "tune"
    supervisor = "kfjupyter.tuning.supervisor"
    what = "the study's tuning supervisor"
    features = Features(supervised=True, metrics=True, children=True)
    cancel_timeout = 10.0

    def submit(self, job_id: str, spec: TuneSpec, job_dir: Path) -> dict:
        from . import engine

        job_dir.mkdir(parents=True, exist_ok=True)
        engine.create_study(job_dir, study_name(job_id), spec)  # a resumed study's is loaded
        return {**super().submit(job_id, spec, job_dir), "study": study_name(job_id)}

    def launch(self, job_id: str, spec: TuneSpec, job_dir: Path) -> dict:
        from ..capture.bundle import Bundle

        threads = max(1, (os.cpu_count() or 1) // max(1, spec.parallel * spec.workers_per_trial))
        return {
            "study_name": study_name(job_id),
            "spec": spec.to_dict(),
            "env": spec.env,
            "threads": cpu_threads(spec.cpu) or threads,
            "workdir": Bundle(job_dir / "bundle").manifest.get("workdir"),
        }

    def tidy(self, job_id: str, info: dict, reason: str) -> None:
        """No trial stays RUNNING once nothing runs it (the supervisor normally does this)."""
        from . import engine

        job_dir = Path(info["job_dir"])
        if (job_dir / engine.JOURNAL).exists():
            storage = engine.open_storage(job_dir)
            name = info.get("study", job_dir.name)
            engine.end_running_trials(storage, name, reason)
            engine.sync_trial_children(job_id, storage, name)

    def backfill_children(self, job_id: str, info: dict) -> None:
        from . import engine

        job_dir = Path(info["job_dir"])
        if (job_dir / engine.JOURNAL).exists():
            engine.sync_trial_children(job_id, _storage(job_dir), info.get("study", job_id))

    # -- channels
    def _spec(self, job_id: str) -> TuneSpec:
        return TuneSpec.from_dict(get_workspace().get_job(job_id).spec)

    def channels(self, job_id: str, info: dict) -> Channels:
        parallel = int(get_workspace().get_job(job_id).spec.get("parallel") or 1)
        return Channels(logs=ranked("worker", "worker", parallel), metrics=(TRIALS_CHANNEL,))

    def log_path(self, job_id: str, job_dir: Path, channel: str) -> Path | None:
        prefix, _, number = channel.partition("-")
        if prefix == "worker" and number.isdigit():
            return worker_log(job_dir, int(number))
        return None

    def read_log(self, job_id: str, info: dict, channel: str, *, tail: int | None = None, follow: bool = False,
                 stop: threading.Event | None = None) -> Iterator[str]:  # fmt: skip
        kind, _, number = channel.partition("/")
        if kind != TRIAL:
            return super().read_log(job_id, info, channel, tail=tail, follow=follow, stop=stop)
        if not number.isdigit():
            raise self.unknown_channel(job_id, channel)
        return self._trial_log(job_id, info, int(number), tail, follow, stop)

    def _trial(self, job_id: str, info: dict, number: int):
        for trial in self._all_trials(job_id, info):
            if trial.number == number:
                return trial
        return None

    def _trial_log(self, job_id, info, number, tail, follow, stop) -> Iterator[str]:
        """A trial's output: its ranks' logs if it was distributed, else its part of its
        worker's log (followed while it runs)."""
        from . import engine

        job_dir = Path(info["job_dir"])
        ranks = sorted((trial_dir(job_dir, number) / "logs").glob("rank-*.log"))
        trial = self._trial(job_id, info, number)
        if trial is None and not ranks:
            raise UnknownChannelError(f"study {job_id} has no trial {number}")

        def ended() -> bool:
            now = self._trial(job_id, info, number)
            return now is None or now.state.is_finished() or self.observe(job_id, info).status in st.TERMINAL

        if ranks:
            if follow:
                return follow_file(ranks[0], ended, tail, stop=stop)
            text = "\n".join(f"--- {p.stem} ---\n{p.read_text(errors='replace')}" for p in ranks)
            lines = text.splitlines()
            return iter(lines[-tail:] if tail else lines)
        worker, span = trial.user_attrs.get(engine.ATTR_WORKER), trial.user_attrs.get(engine.ATTR_LOG)
        if worker is None or not span:
            return iter(())
        path = worker_log(job_dir, worker)
        if follow:
            def end() -> int | None:
                now = self._trial(job_id, info, number)
                return (now.user_attrs.get(engine.ATTR_LOG) or [None, None])[1] if now is not None else None

            return follow_file(path, ended, stop=stop, start=span[0], end=end)
        lines = read_span(path, span[0], span[1]).splitlines()
        return iter(lines[-tail:] if tail else lines)

    def run_metric_files(self, job_id: str, job_dir: Path) -> dict[str | None, list[tuple[int, Path]]]:
        """Each trial's reports (a trial in a worker: one file; a distributed trial: its ranks')."""
        out: dict[str | None, list[tuple[int, Path]]] = {}
        for folder in sorted((job_dir / "trials").glob("*")):
            if folder.name.isdigit():
                ranked = sorted((folder / "metrics").glob("rank-*.jsonl"))
                files = [(int(p.stem.split("-")[1]), p) for p in ranked] or [(0, folder / "metrics.jsonl")]
                out[folder.name] = files
        return out

    def read_metrics(self, job_id: str, info: dict, channel: str | None = None) -> list[dict]:
        """One row per finished trial: ``step`` is the trial number, plus its objective."""
        if channel not in (None, TRIALS_CHANNEL.name):
            return []
        from .study import trial_metrics

        return trial_metrics(self.trials(job_id, info), self._spec(job_id).objective)

    # -- the Study view
    def _all_trials(self, job_id: str, info: dict):
        from . import engine

        job_dir = Path(info["job_dir"])
        if not (job_dir / engine.JOURNAL).exists():
            return []
        storage = _storage(job_dir)
        try:
            study_id = storage.get_study_id_from_name(info.get("study", job_id))
        except KeyError:
            return []
        return storage.get_all_trials(study_id, deepcopy=False)

    def trials(self, job_id: str, info: dict) -> list[dict]:
        from . import engine

        return [engine.trial_row(t) for t in self._all_trials(job_id, info)]

    def best(self, job_id: str, info: dict, spec: TuneSpec) -> dict | None:
        from .study import best_of

        return best_of(self.trials(job_id, info), spec.direction)


_storages: dict[str, object] = {}


def _storage(job_dir: Path):
    """One storage per journal and process: it replays only what was appended since."""
    from . import engine

    key = str(job_dir)
    if key not in _storages:
        _storages[key] = engine.open_storage(job_dir)
    return _storages[key]


__all__ = ["LocalTuneEngine", "study_name"]
