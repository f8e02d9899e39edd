"""The workspace store (SQLAlchemy): job records shared by kernels, the CLI and the server."""

from .models import JobRecord
from .workspace import Workspace, get_workspace

__all__ = ["JobRecord", "Workspace", "get_workspace"]
