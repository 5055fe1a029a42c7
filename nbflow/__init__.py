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
    "get_logger",
    "task",
    "unmapped",
]
