"""``kfjupyter.train``: capture, preflight, record, submit."""

from __future__ import annotations

import inspect
import os
import shutil
from typing import Any, Callable

from .. import status as st
from ..capture.program import Program, capture, capture_function, write_bundle
from ..config import default_backend, default_image
from ..errors import InvalidOptionError, PreflightError
from ..jobs import Job, start_job
from ..store.models import JobRecord
from ..store.workspace import get_workspace
from .backends import get_backend
from .spec import TrainSpec

#: Largest program (source + values + modules) each backend accepts; a ConfigMap holds 1 MiB.
MAX_PAYLOAD = {"local": 512 * 2**20, "kubernetes": 1000 * 2**10}


def _ipython_state() -> tuple[dict[str, Any] | None, list[str]]:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None, []
    shell = get_ipython()
    if shell is None:
        return None, []
    return shell.user_ns, [c for c in shell.user_ns.get("In", []) if isinstance(c, str)]


def _program(fn_or_source, namespace, history, workdir) -> Program:
    if isinstance(fn_or_source, str):
        if namespace is None:
            namespace, ipy_history = _ipython_state()
            if namespace is None:  # plain Python: the caller's globals
                namespace = inspect.stack()[2].frame.f_globals
            history = ipy_history if history is None else history
        return capture(fn_or_source, namespace, history=history, workdir=workdir)
    if callable(fn_or_source):
        return capture_function(fn_or_source, namespace, history=history, workdir=workdir)
    raise InvalidOptionError(f"train() needs a function or the source of a cell, not {type(fn_or_source).__name__}")


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
) -> Job:
    """Run ``fn_or_source`` as ``workers`` torch.distributed ranks and return its :class:`Job`.

    ``fn_or_source`` is a zero-argument function or the source of a cell; the names it
    reads are resolved in ``user_ns`` (default: the IPython namespace, or the caller's
    globals). Options are checked and the program is captured and preflighted before
    anything starts; a :class:`~kfjupyter.errors.KFJupyterError` means nothing was left
    behind.
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
    program = _program(fn_or_source, user_ns, history, workdir)
    ws = get_workspace()
    job_id = spec.new_job_id()
    job_dir = ws.job_dir(job_id)
    limit = max_payload if max_payload is not None else MAX_PAYLOAD[spec.backend]
    try:
        bundle = write_bundle(
            program,
            job_dir / "bundle",
            header=f"kfjupyter program of job {job_id} ({spec.workers} worker(s))",
            max_bytes=limit,
        )
    except PreflightError:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    ws.add_job(
        JobRecord(
            id=job_id,
            name=spec.name,
            kind="train",
            backend=spec.backend,
            status=st.PENDING,
            workers=spec.workers,
            spec=spec.to_dict(),
            backend_info={},
            notebook=os.environ.get("JPY_SESSION_NAME"),
            cell=program.body,
        )
    )
    start_job(
        job_id,
        lambda: get_backend(spec.backend).submit(job_id, spec, bundle, job_dir),
        lambda info: get_backend(spec.backend).cancel(job_id, info),
    )
    job = Job(job_id)
    return job.wait() if wait else job

