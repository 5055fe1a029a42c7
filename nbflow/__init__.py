"""nbflow: notebook workflows that survive failure.

``import nbflow`` is light: heavy libraries load where first needed.
"""

from __future__ import annotations

from nbflow import context, events
from nbflow.engine.display import register_presenter
from nbflow.errors import FAIL, LOOP, RETRY, SKIP, SUCCESS, NbflowError, NbflowWarning
from nbflow.graph.control import Parameter, case, flatten, ifelse, merge, switch
from nbflow.graph.flow import Flow, Node
from nbflow.graph.runner import register_runner
from nbflow.graph.task import Task, task, unmapped
from nbflow.graph.triggers import some_failed, some_successful
from nbflow.logs import get_logger
from nbflow.state import State
from nbflow.version import __version__

# The two seams, wired by path: the engine and the widget load at the first run.
register_runner("nbflow.engine.run:RUNNER")
register_presenter("nbflow.widget:PRESENTER")


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (used by ``jupyter labextension``)."""
    return [{"src": "labextension", "dest": "jupyter-nbflow"}]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext nbflow``: register the ``%%task`` and ``%flow`` magics."""
    from nbflow.jupyter.magics import load

    load(ipython)  # type: ignore[arg-type]


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext nbflow`` (and ``%reload_ext``): remove the magics' hooks."""
    from nbflow.jupyter.magics import unload

    unload(ipython)


def __getattr__(name: str) -> object:
    # Past runs and the cache need pandas and diskcache: loaded on first use.
    if name in ("load_run", "runs", "cache_info", "clear_cache"):
        from nbflow.engine import archive

        return getattr(archive, name)
    raise AttributeError(f"module 'nbflow' has no attribute '{name}'")


__all__ = [
    "FAIL",
    "LOOP",
    "RETRY",
    "SKIP",
    "SUCCESS",
    "Flow",
    "NbflowError",
    "NbflowWarning",
    "Node",
    "Parameter",
    "State",
    "Task",
    "__version__",
    "cache_info",
    "case",
    "clear_cache",
    "context",
    "events",
    "flatten",
    "get_logger",
    "ifelse",
    "load_run",
    "merge",
    "runs",
    "some_failed",
    "some_successful",
    "switch",
    "task",
    "unmapped",
]
