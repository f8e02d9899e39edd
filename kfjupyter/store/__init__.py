"""The workspace store (SQLAlchemy): job records and child tasks shared by kernels, the CLI
and the server. It imports no capability: each keeps its own tables on :class:`Base`."""

from .models import Base, ChildRecord, JobRecord
from .workspace import ChildNotFoundError, Workspace, get_workspace

__all__ = ["Base", "ChildNotFoundError", "ChildRecord", "JobRecord", "Workspace", "get_workspace"]
