"""kfjupyter's jupyter-server extension: an authenticated REST API over kfjupyter's jobs.

Routes live under ``<base_url>kfjupyter/api/v1/`` and are described in
``server_ext/openapi.yaml``. Handlers are thin: they parse the request, call
:mod:`kfjupyter.jobs`, and serialise. Push updates come from one background watcher
(:mod:`kfjupyter_server.watcher`), fanned out to server-sent-event streams and to
jupyter_server's event bus.

Enabled by ``etc/jupyter/jupyter_server_config.d/kfjupyter.json`` (installed with the
wheel), or by hand: ``jupyter server extension enable --sys-prefix kfjupyter_server``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import KFJupyterApp

    return [{"module": "kfjupyter_server", "app": KFJupyterApp}]
