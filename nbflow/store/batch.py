"""Group commit: results written in batches, one transaction per batch, on a thread of
their own, with a callback once each batch is durable.

A run hands each result to the writer and goes on (a downstream task may start on the
value in memory); it reports the task finished only when the writer says its batch is
written, so a process killed at any moment has lost no result it reported. While one
batch is written the next results queue up, so the batch size follows the rate at
which tasks finish: one transaction for a chain's step, one for a hundred results of
a wide graph.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nbflow")

Item = tuple[str, Any, str, "float | None"]  # key, value, task name, expiry


def write_many(store: Any, items: list[Item]) -> list[bool]:
    """Write ``items`` in one transaction if the store can (``set_many``), else one by
    one; whether each was kept."""
    set_many = getattr(store, "set_many", None)
    if set_many is not None:
        return list(set_many(items))
    return [store.set(key, value, task=task, expire=expire) for key, value, task, expire in items]


class GroupWriter:
    """Writes results to ``store`` in batches; calls ``durable(tokens)`` after each."""

    __slots__ = ("_durable", "_lock", "_name", "_queue", "_thread", "store")

    def __init__(
        self, store: Any, durable: Callable[[list[Any]], None], name: str = "writer"
    ) -> None:
        self.store = store
        self._durable = durable
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, item: Item, token: Any) -> None:
        """Queue ``item``; ``token`` is handed to ``durable`` once it is written."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name=f"nbflow-{self._name}", daemon=True
                    )
                    self._thread.start()
        self._queue.put((item, token))

    def drain(self) -> None:
        """Wait until everything queued so far is written (and reported durable)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait()

    def close(self) -> None:
        """Write what is queued, then stop the thread (a later ``put`` starts another)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join()

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items: list[Item] = []
            tokens: list[Any] = []
            for entry in batch:
                if type(entry) is tuple:
                    items.append(entry[0])
                    tokens.append(entry[1])
                elif entry is None:
                    stop = True
            if items:
                try:
                    write_many(self.store, items)
                except Exception:  # a store never raises for a value; this is a bug
                    log.exception("nbflow: writing %d results failed", len(items))
                try:
                    self._durable(tokens)
                except Exception:
                    log.exception("nbflow: reporting %d written results failed", len(tokens))
            for entry in batch:
                if isinstance(entry, threading.Event):
                    entry.set()
            del batch, items, tokens  # values must not outlive their batch here
