"""nbflow: notebook workflows that survive failure.

``import nbflow`` is light: heavy libraries load where first needed.
"""

from __future__ import annotations

from nbflow.errors import FAIL, SKIP, NbflowError, NbflowWarning
from nbflow.flow import Flow, Node
from nbflow.logs import get_logger
from nbflow.state import State
from nbflow.task import Task, task, unmapped

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Past runs and the cache need pandas and diskcache: loaded on first use.
    if name in ("load_run", "runs", "cache_info", "clear_cache"):
        from nbflow import archive

        return getattr(archive, name)
    raise AttributeError(f"module 'nbflow' has no attribute '{name}'")


__all__ = [
    "FAIL",
    "SKIP",
    "Flow",
    "NbflowError",
    "NbflowWarning",
    "Node",
    "State",
    "Task",
    "__version__",
    "cache_info",
    "clear_cache",
    "get_logger",
    "load_run",
    "runs",
    "task",
    "unmapped",
]
