"""Ready-made failure notifications: hooks to pass as ``on_failure=`` and friends."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from nbflow.errors import NbflowError

log = logging.getLogger("nbflow")


def summary(obj: Any, run: Any) -> dict[str, Any]:
    """A JSON-ready summary of a task run (hook on a task) or a flow run (hook on a flow)."""
    if hasattr(run, "task_runs"):  # a FlowRun
        return {
            "kind": "flow",
            "flow": run.flow.name,
            "run_id": run.id,
            "state": run.state.value,
            "duration": run.duration,
            "counts": run.counts(),
            "failed": [
                {"task": r.name, "state": r.state.value, "error": _error_text(r.error)}
                for r in run.failed
            ],
        }
    return {
        "kind": "task",
        "task": run.name,
        "state": run.state.value,
        "attempts": run.attempts,
        "duration": run.duration,
        "error": _error_text(run.error),
        "traceback": run.traceback,
    }


def _error_text(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def webhook(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Callable[[Any, Any], None]:
    """A hook that POSTs a JSON summary of the task run or flow run to ``url``.

    Use it on tasks (``@task(on_failure=webhook(url))``) or flows
    (``Flow(..., on_failure=webhook(url))``). Standard library only.

    >>> hook = webhook("http://127.0.0.1:9/hook")
    >>> callable(hook)
    True
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise NbflowError(f"webhook() needs an http:// or https:// URL, but got {url!r}.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise NbflowError(f"Expected timeout to be a number of seconds > 0, but got {timeout!r}.")
    all_headers = {"Content-Type": "application/json", "User-Agent": "nbflow"}
    all_headers.update(headers or {})

    def post(obj: Any, run: Any) -> None:
        body = json.dumps(summary(obj, run), default=str).encode()
        request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()

    post.__qualname__ = f"webhook({url!r})"
    return post
