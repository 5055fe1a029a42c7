"""Manual pauses: task runs waiting for ``resume`` (``manual_only``), and the inbox poller.

Every method but the poller's thread runs with the scheduler's lock held; the poller
takes that lock (given to it) to read which tasks wait.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from nbflow.engine.plan import NodePlan
from nbflow.engine.records import TaskRun
from nbflow.errors import NbflowError
from nbflow.store.cache import ResultStore

log = logging.getLogger("nbflow")


class Pauses:
    """The task runs of one run waiting to be resumed, and those already resumed.

    While some wait and there is an ``inbox`` store, a thread polls the store's inbox for
    ``nbflow resume`` requests and calls ``resume(name)`` for each, in a thread of its
    own (resuming a stopped foreground run drives it there).
    """

    __slots__ = (
        "_finished",
        "_lock",
        "_poller",
        "_resume",
        "_run_id",
        "_store",
        "resumed",
        "waiting",
    )

    def __init__(
        self,
        run_id: str,
        inbox: ResultStore | None,
        lock: AbstractContextManager[Any],
        finished: threading.Event,
        resume: Callable[[str], None],
    ) -> None:
        self._run_id = run_id
        # The store whose inbox receives `nbflow resume` requests; None: none to poll.
        self._store = inbox
        self._lock = lock
        self._finished = finished
        self._resume = resume
        self._poller: threading.Thread | None = None  # reads `nbflow resume` requests
        self.waiting: dict[str, tuple[NodePlan, TaskRun]] = {}
        self.resumed: set[str] = set()

    def reason(self, name: str) -> str:
        """What a paused task run shows: how to resume it."""
        return (
            f"waiting: resume it with run.resume('{name}'), the widget's Resume "
            f"button or nbflow resume {self._run_id} '{name}'"
        )

    def hold(self, plan: NodePlan, unit: TaskRun) -> None:
        """Keep ``unit`` waiting until it is resumed."""
        self.waiting[unit.name] = (plan, unit)
        if self._poller is None and self._store is not None:
            self._poller = threading.Thread(
                target=self._poll_inbox, name=f"nbflow-inbox-{self._run_id}", daemon=True
            )
            self._poller.start()

    def release(self, name: str) -> tuple[NodePlan, TaskRun]:
        """The waiting task run ``name``, now resumed (raises if it is not waiting)."""
        found = self.waiting.pop(name, None)
        if found is None:
            waiting = ", ".join(f"'{n}'" for n in self.waiting) or "none"
            raise NbflowError(
                f"Task '{name}' is not waiting to be resumed in this run "
                f"(tasks waiting: {waiting})."
            )
        self.resumed.add(name)
        return found

    def _poll_inbox(self) -> None:
        from nbflow.store.inbox import POLL_INTERVAL, Inbox

        assert self._store is not None
        try:
            inbox = Inbox(self._store.path, self._run_id)
        except Exception:
            log.exception("nbflow: cannot list the paused tasks of run %s", self._run_id)
            with self._lock:
                self._poller = None
            return
        try:
            while True:
                with self._lock:
                    paused = list(self.waiting)
                    if not paused or self._finished.is_set():
                        self._poller = None
                        return
                for name in inbox.sync(paused):
                    threading.Thread(
                        target=self._resume_requested, args=(name,), daemon=True
                    ).start()
                self._finished.wait(POLL_INTERVAL)
        except Exception:
            log.exception("nbflow: reading resume requests for run %s failed", self._run_id)
            with self._lock:
                self._poller = None
        finally:
            inbox.close()

    def _resume_requested(self, name: str) -> None:
        try:
            self._resume(name)
        except NbflowError as exc:  # resumed meanwhile by another way
            log.info("nbflow: %s", exc)
