"""The workspace store (SQLAlchemy): job records and child tasks shared by kernels, the CLI
and the server. It imports no capability: each keeps its own tables on :class:`Base`."""

from .models import Base, ChildRecord, JobRecord
from .runs import DEFAULT_EXPERIMENT, RunRecord, run_id, split_run_id
from .workspace import ChildNotFoundError, Workspace, get_workspace

__all__ = [
    "Base", "ChildNotFoundError", "ChildRecord", "DEFAULT_EXPERIMENT", "JobRecord", "RunRecord", "Workspace",
    "get_workspace", "run_id", "split_run_id",
]
