"""``job.rerun(lr=0.05)``: the same program again, some params changed; the new run links
to the one it came from (its ``source_run``)."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path
from typing import Any

from .. import jobs
from ..backends import spec_class
from ..capture.bundle import copy_with_values
from ..capture.provenance import is_plain_scalar
from ..errors import InvalidOptionError
from ..store.models import ChildRecord
from ..store.runs import RunRecord
from ..store.workspace import get_workspace
from .model import as_run_id, get_run

#: What a re-run copies from the job's folder, by kind (what its ``prepare`` wrote).
PREPARED = {"train": ["bundle"], "tune": ["bundle"], "notebook": ["input.ipynb"], "pipeline": ["steps/*/program.py"]}
#: Spec fields a re-run never changes.
FIXED = {"kind", "backend", "pipeline", "space", "runs", "grid", "resume", "sweep_id", "index"}


def rerun(ref: Any, wait: bool = False, **params: Any) -> jobs.Job:
    """Start the job of ``ref`` (a Job or a run id) again with ``params`` changed: the
    values its cell read (``lr=0.05``), a pipeline's or notebook run's parameters, or its
    options (``workers=1``). A name it does not know is refused, naming the ones it has."""
    run = get_run(as_run_id(ref))
    if run.child is not None:
        raise InvalidOptionError(f"run {run.run_id} is a {run.kind} of job {run.job_id}: re-run that job instead")
    old = jobs.get(run.job_id)
    record = old.record
    if record.kind not in PREPARED:
        raise InvalidOptionError(f"a {record.kind} job cannot be re-run; re-runnable: {', '.join(PREPARED)}")
    spec_dict = dict(record.spec)
    old_dir = get_workspace().job_dir(old.id)
    in_bundle = _bundle_values(old_dir) if record.kind in ("train", "tune") else set()
    with get_workspace().reader() as session:
        stored = session.get(RunRecord, old.id)
    captured = {k: v for k, v in ((stored.params or {}) if stored else {}).items() if k in in_bundle}
    option_names = {f.name for f in dataclasses.fields(spec_class(record.kind))} - FIXED
    values: dict[str, bytes] = {}
    new_params = dict(captured)
    for name, value in params.items():
        if name in in_bundle:
            if not is_plain_scalar(value):
                raise InvalidOptionError(f"rerun: {name}={value!r} is not a number, string or boolean")
            values[name] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            new_params[name] = value
        elif name in (spec_dict.get("parameters") or {}):
            spec_dict["parameters"] = {**spec_dict["parameters"], name: value}
        elif name in option_names:
            spec_dict[name] = value
        else:
            known = sorted(set(captured) | set(spec_dict.get("parameters") or {}) | option_names)
            raise InvalidOptionError(f"rerun: job {old.id} has no param {name!r}; its params: {', '.join(known)}")
    spec = spec_class(record.kind).from_dict(spec_dict)

    def prepare(job_id: str, job_dir: Path) -> None:
        for pattern in PREPARED[record.kind]:
            for src in sorted(old_dir.glob(pattern)):
                dest = job_dir / src.relative_to(old_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if src.name == "bundle":
                    copy_with_values(src, dest, values)
                elif src.is_dir():
                    shutil.copytree(src, dest)
                else:
                    shutil.copy2(src, dest)

    children = [ChildRecord(name=c.name, kind=c.kind, position=c.position, status="Pending", attrs={})
                for c in get_workspace().list_children(old.id)] if record.kind == "pipeline" else []  # fmt: skip
    job = jobs.create(spec, prepare=prepare, children=children, notebook=record.notebook, cell=record.cell,
                      experiment=run.experiment, params=new_params, tags=run.tags, source_run=run.run_id)  # fmt: skip
    return job.wait() if wait else job


def _bundle_values(job_dir: Path) -> set[str]:
    """The names of the values a job's bundle carries (what its cell read)."""
    path = job_dir / "bundle" / "values.pkl"
    return set(pickle.loads(path.read_bytes())) if path.exists() else set()
