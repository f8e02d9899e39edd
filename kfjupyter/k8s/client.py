"""Kubernetes API clients, built with the official ``kubernetes`` package.

Configuration comes from a kubeconfig (``$KUBECONFIG``, which may list several files,
else ``~/.kube/config``) or, inside a pod, from the service account. The namespace is the
first of: the explicit argument, ``$KFJUPYTER_NAMESPACE``, the kubeconfig context's
namespace, the pod's service-account namespace, ``default``.

The global configuration of the ``kubernetes`` package is never touched, so two
clients for two clusters can live in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import BackendError

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class K8sClients:
    api_client: object  # kubernetes.client.ApiClient
    namespace: str
    context: str | None  # kubeconfig context name; None in-cluster
    server: str

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @property
    def custom(self):
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    @property
    def batch(self):
        from kubernetes import client

        return client.BatchV1Api(self.api_client)


def kubeconfig_files() -> str | None:
    """The kubeconfig path(s) in use, as the ``kubernetes`` package accepts them, or None.

    Read at call time (the ``kubernetes`` package reads ``$KUBECONFIG`` once, at import).
    """
    env = os.environ.get("KUBECONFIG")
    if env:
        return env
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.exists() else None


def connect(namespace: str | None = None, context: str | None = None) -> K8sClients:
    """API clients and the namespace to use; raise :class:`BackendError` if unconfigured."""
    from kubernetes import client, config

    files = kubeconfig_files()
    if files:
        try:
            contexts, current = config.list_kube_config_contexts(config_file=files)
            chosen = current
            if context is not None:
                chosen = next((c for c in contexts if c["name"] == context), None)
                if chosen is None:
                    raise BackendError(f"no context {context!r} in kubeconfig {files}")
            api_client = config.new_client_from_config(config_file=files, context=chosen["name"])
        except config.ConfigException as exc:
            raise BackendError(f"cannot load kubeconfig {files}: {exc}") from exc
        ns = (
            namespace
            or os.environ.get("KFJUPYTER_NAMESPACE")
            or (chosen.get("context") or {}).get("namespace")
            or "default"
        )
        return K8sClients(api_client, ns, chosen["name"], api_client.configuration.host)
    try:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as exc:
        raise BackendError(
            "no Kubernetes configuration found: set KUBECONFIG, create ~/.kube/config, "
            f"or run inside a pod ({exc})"
        ) from exc
    ns = namespace or os.environ.get("KFJUPYTER_NAMESPACE")
    if not ns and SERVICE_ACCOUNT_NAMESPACE.exists():
        ns = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return K8sClients(client.ApiClient(configuration), ns or "default", None, configuration.host)


def merge_patch(method, *args, **kwargs):
    """Call a ``patch_*`` method of the ``kubernetes`` client with a JSON merge patch.

    Clients from v31 take ``_content_type``; v30 (what ``kfp`` 2.x pins) refuses that
    keyword, and sends a dict body as ``application/merge-patch+json`` to custom objects
    (their only patch type) and as a strategic merge patch to built-in kinds (a superset
    of a merge patch for the metadata fields kfjupyter patches).
    """
    from kubernetes.client.exceptions import ApiTypeError

    try:
        return method(*args, _content_type="application/merge-patch+json", **kwargs)
    except ApiTypeError as exc:
        if "_content_type" not in str(exc):
            raise
    return method(*args, **kwargs)


def stream_lines(resp, stop=None) -> Iterator[str]:
    """Lines (without newline) of a streamed (``follow``) log response, until the server
    ends it; the response is closed when the reader stops, or as soon as ``stop`` (a
    ``threading.Event``) is set (a reader whose client left)."""
    import threading

    done = threading.Event()
    if stop is not None:

        def close_on_stop() -> None:
            while not done.wait(0.2):
                if stop.is_set():
                    resp.close()
                    return

        threading.Thread(target=close_on_stop, daemon=True, name="kfjupyter-log-stop").start()
    buffer = b""
    try:
        for chunk in resp.stream(amt=None, decode_content=False):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace").rstrip("\r")
        if buffer:
            yield buffer.decode("utf-8", errors="replace")
    except Exception:
        if stop is None or not stop.is_set():
            raise  # a stream closed because its reader left just ends
    finally:
        done.set()
        resp.close()
