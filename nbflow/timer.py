"""One background thread that calls functions at given times (retry delays, timeouts)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Timer:
    """Calls each scheduled function once its time has come, in one daemon thread.

    A waiting call holds no worker: this is how retries wait without blocking.

    >>> import threading
    >>> done = threading.Event()
    >>> timer = Timer("doctest")
    >>> timer.call_at(time.monotonic() + 0.01, done.set)
    >>> done.wait(2)
    True
    >>> timer.stop()
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn()`` at ``when`` (a ``time.monotonic()`` value)."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._counter), fn))
            if self._thread is None:
                self._stopped = False
                self._thread = threading.Thread(
                    target=self._loop, name=f"nbflow-timer-{self._name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        """Forget pending calls and end the thread."""
        with self._cond:
            self._heap.clear()
            self._stopped = True
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()
