"""Where the workspace lives, found the same way by every process.

The kernel runs in the notebook's folder and the server in its root, so nothing here
depends on the working directory: ``KFJUPYTER_HOME`` if set, else a ``kfjupyter`` folder
in Jupyter's user data directory. The workspace store's database is
``KFJUPYTER_DB_URL`` if set, else a SQLite file in the workspace.

Defaults that a Jupyter server's ``c.KFJupyter.*`` settings also set (the server puts them
in its environment, which the kernels it starts inherit): ``KFJUPYTER_BACKEND``,
``KFJUPYTER_NAMESPACE``, ``KFJUPYTER_IMAGE``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import private_dir


def workspace_home() -> Path:
    """The workspace folder: made if missing, and private (0700, see :mod:`kfjupyter.files`)."""
    env = os.environ.get("KFJUPYTER_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        from jupyter_core.paths import jupyter_data_dir

        home = Path(jupyter_data_dir()) / "kfjupyter"
    return private_dir(home).resolve()


def database_url(home: Path | None = None) -> str:
    return os.environ.get("KFJUPYTER_DB_URL") or f"sqlite:///{(home or workspace_home()) / 'kfjupyter.db'}"


def default_backend() -> str:
    return os.environ.get("KFJUPYTER_BACKEND", "local")


def default_image() -> str | None:
    """Container image of training and tuning jobs on Kubernetes when none is given
    (``KFJUPYTER_IMAGE``; None: the training runtime's own image)."""
    return os.environ.get("KFJUPYTER_IMAGE") or None
