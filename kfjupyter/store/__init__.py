"""The workspace store (SQLAlchemy): job records shared by kernels, the CLI and the server."""

from .models import JobRecord
from .workspace import Workspace, get_workspace

# the model registry's tables live in the same database: registered on Base before any
# get_workspace() runs create_all
from ..registry import tables as _registry_tables  # noqa: E402,F401

__all__ = ["JobRecord", "Workspace", "get_workspace"]
