"""``kfjupyter.train``: capture, preflight, record, submit."""

from __future__ import annotations

from typing import Any, Callable

from ..capture.program import MAX_PAYLOAD, capture_cell, write_bundle
from ..config import default_backend, default_image
from ..jobs import Job, create
from .spec import TrainSpec


def train(
    fn_or_source: Callable[[], Any] | str,
    workers: int = 1,
    name: str | None = None,
    *,
    backend: str | None = None,
    gpus: int = 0,
    cpu: str | None = None,
    memory: str | None = None,
    image: str | None = None,
    env: dict[str, str] | None = None,
    namespace: str | None = None,
    wait: bool = False,
    user_ns: dict[str, Any] | None = None,
    history: list[str] | None = None,
    workdir: str | None = None,
    max_payload: int | None = None,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
) -> Job:
    """Run ``fn_or_source`` as ``workers`` torch.distributed ranks and return its :class:`Job`.

    ``fn_or_source`` is a zero-argument function or the source of a cell; the names it
    reads are resolved in ``user_ns`` (default: the IPython namespace, or the caller's
    globals). Options are checked and the program is captured and preflighted before
    anything starts: a refusal (:class:`~kfjupyter.errors.InvalidOptionError`,
    :class:`~kfjupyter.errors.PreflightError`) leaves nothing behind; a backend that fails
    to start the job leaves it Failed, saying why.

    The job is a run of ``experiment`` (default: the notebook's name) whose params are its
    options and the plain scalars the cell reads from the notebook (see
    :mod:`kfjupyter.tracking`); ``tags`` are the run's tags.
    """
    spec = TrainSpec(
        name=name or "train",
        workers=workers,
        gpus=gpus,
        cpu=cpu,
        memory=memory,
        image=image or default_image(),
        env=env or {},
        backend=backend or default_backend(),
        namespace=namespace,
    )
    program = capture_cell(fn_or_source, user_ns, history, workdir)
    limit = max_payload if max_payload is not None else MAX_PAYLOAD.get(spec.backend, MAX_PAYLOAD["kubernetes"])

    def prepare(job_id, job_dir) -> None:
        header = f"kfjupyter program of job {job_id} ({spec.workers} worker(s))"
        write_bundle(program, job_dir / "bundle", header=header, max_bytes=limit)

    job = create(spec, prepare=prepare, cell=program.body, experiment=experiment, params=program.params, tags=tags)
    return job.wait() if wait else job
