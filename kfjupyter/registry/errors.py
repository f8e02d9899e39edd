"""Errors of the model registry (all :class:`~kfjupyter.errors.KFJupyterError`)."""

from __future__ import annotations

from ..errors import BackendError, InvalidOptionError, KFJupyterError

__all__ = [
    "ArtifactAccessError",
    "ArtifactIntegrityError",
    "InvalidOptionError",
    "ModelNotFoundError",
    "RegistryBackendError",
    "RegistryConflictError",
]


class ModelNotFoundError(KFJupyterError, LookupError):
    """No registered model, version or alias by that name."""


class RegistryConflictError(KFJupyterError):
    """The change contradicts the registry's state (a version label taken, an alias on an
    archived version, archiving a version an alias points at …)."""


class ArtifactAccessError(KFJupyterError, PermissionError):
    """A path or URI outside the artifact store was asked for (path traversal); refused."""


class ArtifactIntegrityError(KFJupyterError):
    """An artifact's content no longer matches the hash it was registered with."""


class RegistryBackendError(BackendError):
    """The remote Model Registry refused or failed a request."""
