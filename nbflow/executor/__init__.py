"""Where attempts run. One small protocol: ``submit(attempt) -> Future``, ``shutdown()``
(``nbflow.executor.base``), and executors by name (``nbflow.executor.registry``).

``ProcessExecutor`` needs joblib and ``DaskExecutor`` distributed: both are imported
only when asked for, so importing this package stays light.
"""

from __future__ import annotations

from typing import Any

from nbflow.executor.base import Executor, OutcomeFuture, RemoteValues
from nbflow.executor.local import SequentialExecutor, ThreadExecutor
from nbflow.executor.registry import (
    ExecutorInfo,
    executor_info,
    executor_names,
    register_executor,
    resolve_executor,
    unregister_executor,
)

__all__ = [
    "DaskExecutor",
    "Executor",
    "ExecutorInfo",
    "OutcomeFuture",
    "ProcessExecutor",
    "RemoteValues",
    "SequentialExecutor",
    "ThreadExecutor",
    "executor_info",
    "executor_names",
    "register_executor",
    "resolve_executor",
    "unregister_executor",
]


def __getattr__(name: str) -> Any:
    # The processes executor needs joblib, the Dask one distributed: imported when asked for.
    if name == "ProcessExecutor":
        from nbflow.executor.processes import ProcessExecutor

        return ProcessExecutor
    if name == "DaskExecutor":
        from nbflow.executor.dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(name)
