"""The file result store: diskcache in a folder, by default the home folder
(``.nbflow/`` or ``NBFLOW_HOME``), owner-only. Opened by a plain path or a
``file://`` URL (``nbflow.store.base.open_store``).

Every successful result is kept by default. A corrupt or unreadable entry is a miss
(warning, recompute); a full disk or read-only store turns caching off for the rest
of the run with one warning. Writes are atomic (diskcache writes the value file
first and commits the row after), so two kernels and the command line can share one
store.
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
import pickle
import sqlite3
import threading
import time
import urllib.parse
import urllib.request
import warnings
from typing import Any

from nbflow import settings
from nbflow.errors import NbflowError, NbflowWarning
from nbflow.store.base import ResultStore
from nbflow.store.home import CACHE_DIR, check_permissions, home_path, prepare_home

log = logging.getLogger("nbflow")

DEFAULT_SIZE = settings.DEFAULT_CACHE_SIZE
# Values whose pickle is at least this large go to files of their own.
FILE_THRESHOLD = 64 * 1024


class CacheWarning(NbflowWarning):
    """Something kept a result from being cached (the run itself is unaffected)."""


def _make_disk() -> Any:
    import diskcache

    class ResultDisk(diskcache.Disk):  # type: ignore[misc]
        """Pickles with protocol 5; large values are written straight into their file."""

        def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
            if read or type(value) in (bytes, str, int, float):
                return super().store(value, read, key=key)
            if _looks_large(value):
                filename, full_path = self.filename(key, value)
                with _open_new(full_path) as fh:
                    pickle.dump(value, fh, protocol=5)
                    size = fh.tell()
                return size, diskcache.core.MODE_PICKLE, filename, None
            data = pickle.dumps(value, protocol=5)
            if len(data) < FILE_THRESHOLD:
                return 0, diskcache.core.MODE_PICKLE, None, sqlite3.Binary(data)
            filename, full_path = self.filename(key, value)
            with _open_new(full_path) as fh:
                fh.write(data)
            return len(data), diskcache.core.MODE_PICKLE, filename, None

        def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
            if mode == diskcache.core.MODE_PICKLE and filename is not None and not read:
                with open(os.path.join(self._directory, filename), "rb") as fh:
                    return pickle.load(io.BufferedReader(fh, 1 << 20))
            return super().fetch(mode, filename, value, read)

    return ResultDisk


def _open_new(full_path: str) -> Any:
    """Open a new value file, creating its directory (another process may remove it)."""
    for attempt in range(10):
        os.makedirs(os.path.dirname(full_path), mode=0o700, exist_ok=True)
        try:
            return open(full_path, "xb", buffering=1 << 20)
        except FileNotFoundError:
            if attempt == 9:
                raise
    raise AssertionError("unreachable")


def _looks_large(value: Any) -> bool:
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes >= FILE_THRESHOLD
    memory_usage = getattr(value, "memory_usage", None)
    if callable(memory_usage) and hasattr(value, "columns"):
        try:
            return int(memory_usage(deep=False).sum()) >= FILE_THRESHOLD
        except Exception:
            return False
    return False


_MISS = object()
_open: dict[str, FileStore] = {}
_open_lock = threading.Lock()


def open_file_store(path: str | os.PathLike[str] | None = None) -> FileStore:
    """The file store at ``path`` (a folder or a ``file://`` URL; default: the home
    folder, ``NBFLOW_HOME`` or ``./.nbflow``), opened once per process and checked for
    safe permissions each time it is asked for."""
    where = home_path(_folder_of(path)).resolve()
    with _open_lock:
        store = _open.get(str(where))
        if store is None or not where.is_dir():
            store = _open[str(where)] = FileStore(where)
        else:
            check_permissions(where)
        return store


def _folder_of(path: str | os.PathLike[str] | None) -> str | os.PathLike[str] | None:
    """The folder a ``file://`` URL names; a plain path as it is."""
    if not isinstance(path, str) or not path.lower().startswith("file:"):
        return path
    url = urllib.parse.urlsplit(path)
    if url.netloc not in ("", "localhost") or not url.path:
        raise NbflowError(
            f"Cannot open the result store '{path}': a file:// URL names a folder on this "
            "machine, as in 'file:///home/me/results' (three slashes, an absolute path)."
        )
    return urllib.request.url2pathname(url.path)


def home_of(store: ResultStore) -> pathlib.Path:
    """Where the runs that use ``store`` keep their history and inbox: a file store's
    own folder (as it always was, so a store written before is read the same way),
    any other store's the home folder (``NBFLOW_HOME`` or ``./.nbflow``)."""
    if isinstance(store, FileStore):
        return store.path
    return prepare_home(home_path().resolve())


class FileStore:
    """Task results on disk, by cache key (diskcache in ``<folder>/cache``).

    >>> import tempfile
    >>> store = FileStore(tempfile.mkdtemp())
    >>> store.set("k", {"answer": 42}, task="demo")
    True
    >>> store.get("k")
    {'answer': 42}
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = prepare_home(home_path(path))
        self._cache: Any = None
        self._lock = threading.Lock()
        self.disabled: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"FileStore('{self.path}')"

    @property
    def cache(self) -> Any:
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    import diskcache

                    size = settings.cache_size()
                    old = os.umask(0o077)
                    try:
                        self._cache = diskcache.Cache(
                            str(self.path / CACHE_DIR),
                            size_limit=size,
                            cull_limit=10,
                            eviction_policy="least-recently-used",
                            disk=_make_disk(),
                            disk_min_file_size=FILE_THRESHOLD,
                            statistics=False,
                        )
                    finally:
                        os.umask(old)
        return self._cache

    def _disable(self, why: str) -> None:
        if self.disabled is None:
            self.disabled = why
            warnings.warn(
                f"nbflow could not use its result store '{self.path}' ({why}); results "
                "are not cached for the rest of this run.",
                CacheWarning,
                stacklevel=2,
            )

    def get(self, key: str, default: Any = _MISS) -> Any:
        """The value stored under ``key``, or ``default`` (a corrupt entry is a miss)."""
        if self.disabled:
            return default
        try:
            return self.cache.get(key, default=default, retry=True)
        except (sqlite3.Error, OSError) as exc:  # the store itself is unusable
            self._disable(f"{type(exc).__name__}: {exc}")
            return default
        except Exception as exc:  # unpickling a damaged entry can raise almost anything
            warnings.warn(
                f"nbflow: the cached result '{key}' in '{self.path}' could not be read "
                f"({type(exc).__name__}: {exc}); it is recomputed.",
                CacheWarning,
                stacklevel=2,
            )
            self.delete(key)
            return default

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The values of those ``keys`` that are stored, read in one transaction."""
        if self.disabled or not keys:
            return {}
        found: dict[str, Any] = {}
        try:
            with self.cache.transact(retry=True):
                for key in keys:
                    value = self.get(key)
                    if value is not _MISS:
                        found[key] = value
        except Exception as exc:
            self._disable(f"{type(exc).__name__}: {exc}")
        return found

    def sizes(self, keys: list[str]) -> dict[str, int]:
        """For each of ``keys`` stored and not expired: the size of its value's own file,
        or 0 for a small value kept in the database. Reads no value."""
        if self.disabled or not keys:
            return {}
        found: dict[str, int] = {}
        sql = (
            "SELECT size FROM Cache WHERE key = ? AND raw = 1"
            " AND (expire_time IS NULL OR expire_time > ?)"
        )
        try:
            cache = self.cache
            now = time.time()
            with cache.transact(retry=True):
                for key in keys:
                    row = cache._sql(sql, (key, now)).fetchone()
                    if row is not None:
                        found[key] = int(row[0] or 0)
        except Exception as exc:
            self._disable(f"{type(exc).__name__}: {exc}")
        return found

    def set(self, key: str, value: Any, *, task: str, expire: float | None = None) -> bool:
        """Store ``value``; False (with a warning) if it cannot be pickled or stored."""
        if self.disabled:
            return False
        try:
            self.cache.set(key, value, expire=expire, retry=True, tag=task)
        except (sqlite3.Error, OSError) as exc:  # full disk, read-only store, locked database
            self._disable(f"{type(exc).__name__}: {exc}")
            return False
        except Exception as exc:  # pickling the value failed, whatever the exception type
            self.delete(key)
            warnings.warn(
                f"Task '{task}' returned a {type(value).__name__} that cannot be pickled "
                f"({type(exc).__name__}: {exc}); it stays in memory for this run but is not "
                "cached.",
                CacheWarning,
                stacklevel=2,
            )
            return False
        return True

    def begin_run(self) -> None:
        """A new run tries the store again, even if it failed during an earlier one."""
        self.disabled = None

    def delete(self, key: str) -> None:
        try:
            self.cache.delete(key, retry=True)
        except Exception:
            log.debug("nbflow: could not delete cache entry %s", key, exc_info=True)

    def info(self) -> dict[str, Any]:
        """Entries, bytes on disk and entries per task."""
        cache = self.cache
        per_task: dict[str, int] = {}
        with cache.transact(retry=True):
            rows = cache._sql("SELECT tag, COUNT(*), SUM(size) FROM Cache GROUP BY tag").fetchall()
        entries = 0
        for tag, count, _ in rows:
            per_task[tag or "?"] = count
            entries += count
        return {
            "path": str(self.path),
            "entries": entries,
            "bytes": cache.volume(),
            "per_task": per_task,
        }

    def clear(self, task: str | None = None, older_than: float | None = None) -> int:
        """Remove entries (of one task, and/or stored more than ``older_than`` s ago)."""
        cache = self.cache
        if task is None and older_than is None:
            return int(cache.clear(retry=True))
        clauses: list[str] = []
        params: list[Any] = []
        if task is not None:
            clauses.append("tag = ?")
            params.append(task)
        if older_than is not None:
            clauses.append("store_time < ?")
            params.append(time.time() - older_than)
        sql = "SELECT key FROM Cache WHERE " + " AND ".join(clauses)
        keys = [row[0] for row in cache._sql(sql, params).fetchall()]
        for key in keys:
            self.delete(key)
        return len(keys)


__all__ = ["CacheWarning", "FileStore", "home_of", "open_file_store"]
