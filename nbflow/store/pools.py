"""Thread pools of the stores, made on first use and shared by the whole process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_pools: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The pool called ``name`` (its threads are named ``nbflow-<name>``), made with
    ``workers`` threads the first time it is asked for.

    >>> pool("doc", 1) is pool("doc", 1)
    True
    """
    with _lock:
        found = _pools.get(name)
        if found is None:
            found = _pools[name] = ThreadPoolExecutor(workers, thread_name_prefix=f"nbflow-{name}")
        return found


def hashing() -> ThreadPoolExecutor:
    """Threads that hash large values while their bytes are written or arrive (hashlib
    and xxhash let go of the interpreter): a value file's checksum, a remote entry's
    signature."""
    return pool("hash", 4)
