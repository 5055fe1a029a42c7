"""The file result store: diskcache in a folder, by default the home folder
(``.nbflow/`` or ``NBFLOW_HOME``), owner-only. Opened by a plain path or a
``file://`` URL (``nbflow.store.base.open_store``).

Every successful result is kept by default. A corrupt or unreadable entry is a miss
(warning, recompute); a value file's length and checksum are in its row. A read-only
store is read and not written (one warning a run); a full disk or a damaged database
turns caching off for the rest of the run with one warning. Writes are atomic
(diskcache writes the value file first and commits the row after), so two kernels and
the command line can share one store; a store deleted or repaired by another process
is created again at the next write.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pathlib
import pickle
import shutil
import sqlite3
import stat
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable
from typing import Any

import xxhash

from nbflow import settings
from nbflow.errors import NbflowError, NbflowWarning, user_stacklevel
from nbflow.store.base import ResultStore
from nbflow.store.home import (
    CACHE_DIR,
    UNTRUSTED_FILE,
    DamagedStoreError,
    UnsafeStoreError,
    check_own_file,
    check_permissions,
    home_path,
    is_damaged,
    mark_untrusted,
    prepare_home,
)
from nbflow.store.pools import hashing, pool

log = logging.getLogger("nbflow")

DEFAULT_SIZE = settings.DEFAULT_CACHE_SIZE
# Values whose pickle is at least this large go to files of their own.
FILE_THRESHOLD = 64 * 1024


class CacheWarning(NbflowWarning):
    """Something kept a result from being cached (the run itself is unaffected)."""


class DamagedEntryError(ValueError):
    """A value file whose length or checksum is not the one recorded with its entry."""


class UncheckedEntryError(ValueError):
    """A value file written before entries carried a checksum: it cannot be trusted."""


# A value kept in a file of its own has, in its database row, a tag, the file's length
# (8 bytes) and its digest. It guards against damage, not attack (see home.py for that):
# XXH3-128, which hashes about 25 GB/s on one core, so that writing or reading a large
# value is bound by its bytes, not by its checksum. Entries written before carry the
# tag of SHA-1 (about 2 GB/s) and are checked with it. The row's value column is empty
# for file entries in plain diskcache, so stores written before checksums still open:
# their file entries carry none and are read as misses (UncheckedEntryError).
_CHECK_TAG = b"nbf2"  # XXH3-128: what is written
_SHA1_TAG = b"nbf1"  # SHA-1: still read
_TAGS = (_CHECK_TAG, _SHA1_TAG)


_OVERLAP = 4 << 20  # bytes: a buffer this large is hashed while it is written


def _new_hash(tag: bytes = _CHECK_TAG, data: bytes = b"") -> Any:
    if tag == _SHA1_TAG:
        return hashlib.sha1(data, usedforsecurity=False)
    return xxhash.xxh3_128(data)


def _tag(checksum: Any) -> bytes:
    """The tag a row's checksum starts with: which hash made it."""
    return bytes(checksum[: len(_CHECK_TAG)])


def _checksum(length: int, digest: bytes, tag: bytes = _CHECK_TAG) -> Any:
    return sqlite3.Binary(tag + length.to_bytes(8, "little") + digest)


class _HashingWriter:
    """A file wrapper that hashes what is written (pickle writes straight into it)."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.hash = _new_hash()
        self.length = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.length += len(view)
        if len(view) < _OVERLAP:
            self.hash.update(view)
            return int(self.fh.write(view))
        # A large buffer (an array's data): hashed on another thread while it is written
        # here; both let go of the interpreter, so the two take the time of the longer.
        hashed = hashing().submit(self.hash.update, view)
        try:
            return int(self.fh.write(view))
        finally:
            hashed.result()  # the buffer is the caller's again only once it is hashed

    def checksum(self) -> Any:
        return _checksum(self.length, self.hash.digest())


class _HashingReader:
    """A file wrapper that hashes what pickle reads, then checks it against the row."""

    def __init__(self, fh: Any, tag: bytes) -> None:
        self.fh = fh
        self.hash = _new_hash(tag)
        self.length = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.fh.read(size)
        self.hash.update(data)
        self.length += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n: int = self.fh.readinto(buffer)
        view = memoryview(buffer).cast("B")[:n]
        self.hash.update(view)
        self.length += n
        return n

    def readline(self) -> bytes:
        data: bytes = self.fh.readline()
        self.hash.update(data)
        self.length += len(data)
        return data

    def verify(self, expected: Any, filename: str) -> None:
        while self.read(1 << 20):  # trailing bytes count too
            pass
        _verify(expected, self.length, self.hash.digest(), filename)


def _verify(expected: Any, length: int, digest: bytes, filename: str) -> None:
    recorded = bytes(expected)
    if recorded != bytes(_checksum(length, digest, _tag(recorded))):
        want = int.from_bytes(recorded[4:12], "little") if len(recorded) >= 12 else -1
        raise DamagedEntryError(
            f"its value file '{filename}' has {length} bytes"
            + (" whose checksum does not match" if want == length else f", not {want}")
        )


class ForeignFileError(ValueError):
    """A value file that someone else could have written (carries the UnsafeStoreError;
    not an OSError, which diskcache would take for a file deleted meanwhile)."""

    def __init__(self, unsafe: UnsafeStoreError) -> None:
        super().__init__(str(unsafe))
        self.unsafe = unsafe


def _check_owner(cache_dir: str, path: str, fh: Any) -> None:
    """Refuse the opened file unless it is ours and only we can write it (checked on
    the open file, so that it cannot be swapped after the check)."""
    try:
        check_own_file(pathlib.Path(cache_dir).parent, path, os.fstat(fh.fileno()))
    except UnsafeStoreError as exc:
        raise ForeignFileError(exc) from None


def _is_checked(value: Any) -> bool:
    return value is not None and _tag(value) in _TAGS


def _make_disk() -> Any:
    import diskcache

    modes = (diskcache.core.MODE_BINARY, diskcache.core.MODE_TEXT, diskcache.core.MODE_PICKLE)

    class ResultDisk(diskcache.Disk):  # type: ignore[misc]
        """Pickles with protocol 5; large values are written straight into their file,
        with their length and checksum in the row, so that a truncated or overwritten
        file is a miss and never a wrong result."""

        def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
            kind = type(value)
            if (
                read
                or kind in (int, float)
                or (kind in (bytes, str) and len(value) < FILE_THRESHOLD)
            ):
                return super().store(value, read, key=key)
            if kind is bytes or kind is str:
                data = value if kind is bytes else value.encode("utf-8")
                mode = diskcache.core.MODE_BINARY if kind is bytes else diskcache.core.MODE_TEXT
                return self._write_file(key, value, mode, lambda fh: fh.write(data))
            if _looks_large(value):
                return self._write_file(
                    key,
                    value,
                    diskcache.core.MODE_PICKLE,
                    lambda fh: pickle.dump(value, fh, protocol=5),
                )
            data = pickle.dumps(value, protocol=5)
            if len(data) < FILE_THRESHOLD:
                return 0, diskcache.core.MODE_PICKLE, None, sqlite3.Binary(data)
            return self._write_file(
                key, value, diskcache.core.MODE_PICKLE, lambda fh: fh.write(data)
            )

        def _write_file(self, key: Any, value: Any, mode: int, write: Any) -> Any:
            filename, full_path = self.filename(key, value)
            with _open_new(full_path) as fh:
                writer = _HashingWriter(fh)
                write(writer)
            return writer.length, mode, filename, writer.checksum()

        def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
            if filename is None or read or mode not in modes:
                return super().fetch(mode, filename, value, read)
            if not _is_checked(value):
                raise UncheckedEntryError(f"its value file '{filename}' has no checksum")
            path = os.path.join(self._directory, filename)
            if mode == diskcache.core.MODE_PICKLE:
                with open(path, "rb", buffering=1 << 20) as fh:
                    _check_owner(self._directory, path, fh)
                    reader = _HashingReader(fh, _tag(value))
                    try:
                        result = pickle.load(reader)
                    except Exception as exc:
                        reader.verify(value, filename)  # a damaged file says so first
                        raise exc
                    reader.verify(value, filename)
                    return result
            with open(path, "rb") as fh:
                _check_owner(self._directory, path, fh)
                data = fh.read()
            _verify(value, len(data), _new_hash(_tag(value), data).digest(), filename)
            return data if mode == diskcache.core.MODE_BINARY else data.decode("utf-8")

    return ResultDisk


_INSERT_HEAD = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, "
    "size, mode, filename, value) VALUES"
)
_ROW = "(?, 1, ?, ?, ?, 0, ?, ?, ?, ?, ?)"  # 9 parameters
_ROWS_PER_INSERT = 100  # 900 parameters: within SQLite's oldest limit (999)
_INSERT_MANY: dict[int, str] = {}  # the statement for n rows, made once


def _by_keys(cache: Any, sql: str, keys: list[str], *params: Any) -> list[Any]:
    """The rows of ``sql`` (a statement whose WHERE clause goes on) ``AND key IN`` each run
    of at most _CHUNK of ``keys``, within SQLite's limit on parameters; ``params`` are
    the statement's own, before the keys."""
    rows: list[Any] = []
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows += cache._sql(f"{sql} AND key IN ({marks})", (*params, *chunk)).fetchall()
    return rows


def _insert_rows(con: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (``_ROW``'s parameters) into Cache, many to a statement: each
    statement is one step for SQLite and one release of the GIL, where ``executemany``
    takes one of each per row (twice the time, and a writer thread that keeps handing
    the GIL back and forth with the tasks running beside it)."""
    i = 0
    while i < len(rows):
        left = len(rows) - i
        # 100 rows to a statement, the rest in powers of two: a few statements in all,
        # each prepared once by the connection's statement cache.
        n = _ROWS_PER_INSERT if left >= _ROWS_PER_INSERT else 1 << (left.bit_length() - 1)
        sql = _INSERT_MANY.get(n)
        if sql is None:
            sql = _INSERT_MANY[n] = f"{_INSERT_HEAD} {','.join([_ROW] * n)}"
        con.execute(sql, [value for row in rows[i : i + n] for value in row])
        i += n


def _insert_new(cache: Any, items: list[tuple[str, Any, str, float | None]]) -> list[bool]:
    """In ``cache``'s open transaction: store ``items``, whether each was kept. Keys not
    stored yet (a run's new results) go in with one statement, as ``cache.set`` would
    write them (diskcache's triggers count entries and bytes); a key already stored,
    or twice in ``items``, is set the usual way, which removes its old value file."""
    keys = [item[0] for item in items]
    stored = {key for (key,) in _by_keys(cache, "SELECT key FROM Cache WHERE raw = 1", keys)}
    disk = cache._disk
    now = time.time()
    rows: list[tuple[Any, ...]] = []
    files: list[str] = []
    later: list[int] = []
    kept: list[bool] = []
    for i, (key, value, task, expire) in enumerate(items):
        if key in stored or type(key) is not str:
            later.append(i)
            kept.append(True)
            continue
        stored.add(key)
        try:
            size, mode, filename, db_value = disk.store(value, False, key=key)
        except (sqlite3.Error, OSError):
            raise
        except Exception as exc:  # this value cannot be pickled
            _warn_unpicklable(task, value, exc)
            kept.append(False)
            continue
        if filename is not None:
            files.append(filename)
        expire_time = None if expire is None else now + expire
        rows.append((key, now, expire_time, now, task, size, mode, filename, db_value))
        kept.append(True)
    try:
        _insert_rows(cache._con, rows)
    except BaseException:
        for filename in files:  # written for rows that are not
            disk.remove(filename)
        raise
    for i in later:
        key, value, task, expire = items[i]
        try:
            cache.set(key, value, expire=expire, retry=True, tag=task)
        except (sqlite3.Error, OSError):
            raise
        except Exception as exc:
            _warn_unpicklable(task, value, exc)
            kept[i] = False
    return kept


def _open_new(full_path: str) -> Any:
    """Open a new value file, creating its directory (another process may remove it)."""
    for attempt in range(10):
        _make_private_dirs(os.path.dirname(full_path))
        try:
            return open(full_path, "xb", buffering=1 << 20)
        except FileNotFoundError:
            if attempt == 9:
                raise
    raise AssertionError("unreachable")


def _make_private_dirs(path: str) -> None:
    """Create ``path`` and any missing parent, each readable by its owner only
    (``os.makedirs`` gives the parents the default mode: a store removed by another
    process while a value is written would come back open to others)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)


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


class _Rows(list[Any]):
    """Rows already fetched, read as a cursor is."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


class _ReadOnlyCache:
    """What the file store needs of a diskcache, for a store it cannot write: entries are
    read with a read-only connection (and the value files through ``ResultDisk``),
    nothing is written, access times included."""

    def __init__(self, directory: pathlib.Path) -> None:
        db = directory / "cache.db"
        self._lock = threading.RLock()
        self._disk = _make_disk()(str(directory))
        self._conn = _connect_read_only(db)

    def _sql(self, sql: str, params: Any = ()) -> _Rows:
        with self._lock:  # one connection for all threads: fetched before it is let go
            return _Rows(self._conn.execute(sql, params).fetchall())

    def transact(self, retry: bool = False) -> Any:
        return contextlib.nullcontext()

    def get(self, key: str, default: Any = None, retry: bool = False) -> Any:
        row = self._sql(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1"
            " AND (expire_time IS NULL OR expire_time > ?)",
            (key, time.time()),
        ).fetchone()
        if row is None:
            return default
        try:
            return self._disk.fetch(row[0], row[1], row[2], False)
        except OSError:  # the file is gone: a miss, as diskcache has it
            return default

    def delete(self, key: str, retry: bool = False) -> bool:
        return False

    def volume(self) -> int:
        pages = self._sql("PRAGMA page_count").fetchone()[0]
        page_size = self._sql("PRAGMA page_size").fetchone()[0]
        row = self._sql("SELECT value FROM Settings WHERE key = 'size'").fetchone()
        return int(pages * page_size + (row[0] if row else 0))

    def clear(self, retry: bool = False) -> int:
        raise NbflowError(
            f"Cannot clear the result store in '{self._disk._directory}': it is read-only. "
            "Make it writable first."
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _warn_unpicklable(task: str, value: Any, exc: BaseException) -> None:
    warnings.warn(
        f"Task '{task}' returned a {type(value).__name__} that cannot be pickled "
        f"({type(exc).__name__}: {exc}); it stays in memory for this run but is not "
        "cached.",
        CacheWarning,
        stacklevel=user_stacklevel(),
    )


def _inode_of(path: str | pathlib.Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _connect_read_only(db: pathlib.Path) -> sqlite3.Connection:
    """A read-only connection. A database in WAL mode needs its -shm file, which a
    read-only folder cannot get, so it is then opened as immutable (nobody can write it
    through this folder anyway)."""
    uri = db.absolute().as_uri()
    failure: sqlite3.Error | None = None
    for options in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + options, uri=True, check_same_thread=False)
        try:
            conn.execute("SELECT COUNT(*) FROM Cache WHERE rowid = 0").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            failure = exc
            continue
        return conn
    assert failure is not None
    raise failure


_MISS = object()
# Keys per statement of a lookup: under SQLite's oldest limit of 999 parameters.
_CHUNK = 900
_TOUCH_EVERY = 60.0  # seconds: a hit settled unread is marked used at most this often
_TOUCHED_KEPT = 1_000_000  # keys whose last marking is remembered
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
            # Every time, and deep: a kernel opens its store once per run for days,
            # and a file someone else put in it may be anywhere below cache/.
            check_permissions(where, deep=True)
        return store


def reset_file_store(path: str | os.PathLike[str] | None = None) -> int:
    """Remove every result of the file store at ``path``, also of one that nbflow
    refuses because others could write it: the cache folder goes, what is left is
    made owner-only and the store is trusted again. The number of value files removed
    (those of small results kept in the database are not counted)."""
    where = home_path(_folder_of(path)).resolve()
    with _open_lock:
        old = _open.pop(str(where), None)
    if old is not None and old._cache is not None:
        with contextlib.suppress(Exception):
            old._cache.close()
    cache_dir = where / CACHE_DIR
    removed = sum(1 for _ in cache_dir.rglob("*.val")) if cache_dir.is_dir() else 0
    if cache_dir.is_dir():
        shutil.rmtree(cache_dir)
    if where.is_dir():
        for p in [where, *where.iterdir()]:
            if not p.is_symlink() and p.lstat().st_uid == os.getuid():
                os.chmod(p, stat.S_IMODE(p.lstat().st_mode) & ~0o077)
        (where / UNTRUSTED_FILE).unlink(missing_ok=True)
    open_file_store(where)  # checked again: what is not ours is still refused
    return removed


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
        self._warned_read_only = False
        self._inode: int | None = None
        self._db = str(self.path / CACHE_DIR / "cache.db")
        self._culled = 0.0  # when the store last dropped entries over its size limit
        # When this process last marked each key used (``present``): marked again only
        # after _TOUCH_EVERY seconds, eviction needs no finer order than that.
        self._touched: dict[str, float] = {}

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
                    self._cache = self._open_cache()
                    self._inode = _inode_of(self._db)
        return self._cache

    def _current(self) -> Any:
        """The cache, opened again (its folders created again) if its database was
        removed or replaced since it was opened: another process deleted or repaired
        the store. Writes to the old one would be lost, and a thread's first connection
        to it would fail. One stat, about a microsecond."""
        cache = self.cache
        if not isinstance(cache, _ReadOnlyCache) and self._gone():
            with self._lock:
                if self._cache is cache:
                    with contextlib.suppress(Exception):
                        cache.close()
                    self._cache = None
            cache = self.cache
        return cache

    def _gone(self) -> bool:
        return _inode_of(self._db) != self._inode

    def _open_cache(self) -> Any:
        import diskcache

        cache_dir = self.path / CACHE_DIR
        old = os.umask(0o077)
        try:
            return diskcache.Cache(
                str(cache_dir),
                size_limit=settings.cache_size(),
                # Culled by ``_cull`` at most once a second, not on every write.
                cull_limit=0,
                eviction_policy="least-recently-used",
                disk=_make_disk(),
                disk_min_file_size=FILE_THRESHOLD,
                statistics=False,
            )
        except (sqlite3.OperationalError, OSError):
            # diskcache writes when it opens (its tables, its settings), so a store on a
            # read-only mount, or without write permission, is read without it.
            if not (cache_dir / "cache.db").is_file() or os.access(cache_dir, os.W_OK):
                raise
            return _ReadOnlyCache(cache_dir)
        finally:
            os.umask(old)

    @property
    def read_only(self) -> bool:
        """Whether the store can only be read (a read-only mount or folder)."""
        return isinstance(self.cache, _ReadOnlyCache)

    def _disable(self, exc: BaseException) -> None:
        if self.disabled is None:
            self.disabled = f"{type(exc).__name__}: {exc}"
            if is_damaged(exc):
                why = self._damage(exc, "; this run goes on without caching")
            elif isinstance(exc, NbflowError):  # says what and how to fix it already
                why = f"{exc} This run goes on without caching."
            else:
                why = (
                    f"nbflow could not use its result store '{self.path}' ({self.disabled}); "
                    "results are not cached for the rest of this run."
                )
            warnings.warn(why, CacheWarning, stacklevel=user_stacklevel())

    def _damage(self, exc: BaseException, meanwhile: str = "") -> str:
        """What to say about a damaged cache database: which file, and how to fix it."""
        db = self.path / CACHE_DIR / "cache.db"
        return (
            f"The nbflow result store's database '{db}' is damaged ({exc}){meanwhile}. Fix it "
            f"with: nbflow cache clear --path '{self.path}'  (or "
            f"nbflow.clear_cache(path='{self.path}'); its cached results are lost, the run "
            "history is kept)."
        )

    def get(self, key: str, default: Any = _MISS) -> Any:
        """The value stored under ``key``, or ``default`` (a corrupt entry is a miss)."""
        if self.disabled:
            return default
        return self._read(self._current(), key, default)

    def _read(self, cache: Any, key: str, default: Any) -> Any:
        try:
            return cache.get(key, default=default, retry=True)
        except (sqlite3.Error, OSError) as exc:  # the store itself is unusable
            self._disable(exc)
            return default
        except ForeignFileError as exc:  # planted, or open to others: trust nothing more
            mark_untrusted(self.path, exc.unsafe.reason)
            self._disable(exc.unsafe)
            return default
        except UncheckedEntryError:  # written by an older nbflow: recomputed once, quietly
            log.debug("nbflow: cache entry %s has no checksum; it is recomputed", key)
            self.delete(key)
            return default
        except Exception as exc:  # unpickling a damaged entry can raise almost anything
            task = self._task_of(key)
            warnings.warn(
                f"nbflow: the cached result of task '{task}' (key {key}) in '{self.path}' "
                f"could not be read ({type(exc).__name__}: {exc}); it is recomputed.",
                CacheWarning,
                stacklevel=user_stacklevel(),
            )
            self.delete(key)
            return default

    def _task_of(self, key: str) -> str:
        """The task an entry belongs to (its tag), for messages; '?' if unknown."""
        try:
            row = self.cache._sql("SELECT tag FROM Cache WHERE key = ?", (key,)).fetchone()
        except Exception:
            return "?"
        return str(row[0]) if row is not None and row[0] is not None else "?"

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The values of those ``keys`` that are stored, read in one transaction."""
        if self.disabled or not keys:
            return {}
        found: dict[str, Any] = {}
        try:
            cache = self._current()
            with cache.transact(retry=True):
                for key in keys:
                    value = self._read(cache, key, _MISS)
                    if value is not _MISS:
                        found[key] = value
        except Exception as exc:
            self._disable(exc)
        return found

    # ``present`` lists every key stored: one it leaves out needs no lookup later.
    present_is_complete = True

    def present(self, keys: list[str], tasks: Iterable[str] = ()) -> set[str]:
        """Those of ``keys`` stored and not expired, without reading a value: a cache
        hit can be settled on this, its value read when needed (a value found damaged
        then is a miss, computed again). The entries found are marked used, as a read
        would mark them, in the background."""
        found = set(self.sizes(keys))
        now = time.monotonic()
        touched = self._touched
        stale = [k for k in found if now - touched.get(k, -_TOUCH_EVERY) >= _TOUCH_EVERY]
        if stale:
            if len(touched) > _TOUCHED_KEPT:
                touched.clear()
            for key in stale:
                touched[key] = now
            # One thread marks them (a run does not wait for it).
            pool("touch", 1).submit(self._touch, stale)
        return found

    def _touch(self, keys: list[str]) -> None:
        """Mark ``keys`` used now: entries are evicted least recently used first, and a
        hit settled without being read is in use as much as one that was read."""
        try:
            cache = self._current()
            if isinstance(cache, _ReadOnlyCache):
                return
            now = time.time()
            with cache.transact(retry=True):
                _by_keys(cache, "UPDATE Cache SET access_time = ? WHERE raw = 1", keys, now)
        except Exception:  # only the eviction order is at stake
            log.debug("nbflow: could not mark cache hits used in %s", self.path, exc_info=True)

    def sizes(self, keys: list[str]) -> dict[str, int]:
        """For each of ``keys`` stored and not expired: the size of its value's own file,
        or 0 for a small value kept in the database. Reads no value: one statement per
        ``_CHUNK`` keys, so a whole graph's keys cost a millisecond or two."""
        if self.disabled or not keys:
            return {}
        found: dict[str, int] = {}
        try:
            cache = self._current()
            now = time.time()
            # Plain reads, no transaction: one would take the store's write lock, and
            # wait for (or hold up) a writer, for a question each statement answers.
            sql = (
                "SELECT key, size FROM Cache WHERE raw = 1"
                " AND (expire_time IS NULL OR expire_time > ?)"
            )
            for key, size in _by_keys(cache, sql, keys, now):
                found[key] = int(size or 0)
        except Exception as exc:
            self._disable(exc)
        return found

    def set(self, key: str, value: Any, *, task: str, expire: float | None = None) -> bool:
        """Store ``value``; False (with a warning) if it cannot be pickled or stored."""
        if self.disabled:
            return False
        try:
            cache = self._current()
            if isinstance(cache, _ReadOnlyCache):
                self._warn_read_only()
                return False
            try:
                cache.set(key, value, expire=expire, retry=True, tag=task)
            except (sqlite3.Error, OSError):
                if not self._gone():
                    raise
                # Removed between the check and the write: once more, in a new one.
                cache = self._current()
                cache.set(key, value, expire=expire, retry=True, tag=task)
            self._cull(cache, every=1.0)
        except (sqlite3.Error, OSError) as exc:  # full disk, read-only store, locked database
            self._disable(exc)
            return False
        except Exception as exc:  # pickling the value failed, whatever the exception type
            self.delete(key)
            _warn_unpicklable(task, value, exc)
            return False
        return True

    def set_many(self, items: list[tuple[str, Any, str, float | None]]) -> list[bool]:
        """Store ``(key, value, task, expire)`` items in one transaction (a commit costs
        more than a small write); whether each was kept. A value that cannot be pickled
        is left out with a warning, the others are kept."""
        if self.disabled or not items:
            return [False] * len(items)
        kept: list[bool] = []
        try:
            cache = self._current()
            if isinstance(cache, _ReadOnlyCache):
                self._warn_read_only()
                return [False] * len(items)
            with cache.transact(retry=True):
                kept = _insert_new(cache, items)
        except (sqlite3.Error, OSError) as exc:
            if not self._gone():
                self._disable(exc)
                return [False] * len(items)
        else:
            if not self._gone():
                self._cull(cache, every=1.0)
                return kept
        # Removed before or while the batch was written (it went nowhere): each once
        # more, in a new one.
        return [self.set(k, v, task=t, expire=e) for k, v, t, e in items]

    def _cull(self, cache: Any, every: float) -> None:
        """Drop the least recently used entries while the store is over its size limit
        (``NBFLOW_CACHE_SIZE``), at most once per ``every`` seconds: checking the size
        costs more than a write, so it is not done on each."""
        now = time.monotonic()
        if now - self._culled < every:
            return
        self._culled = now
        try:
            cache.cull(retry=True)
        except Exception:  # a full disk or a locked database: tried again later
            log.debug("nbflow: culling the store %s failed", self.path, exc_info=True)

    def _warn_read_only(self) -> None:
        if not self._warned_read_only:
            self._warned_read_only = True
            warnings.warn(
                f"nbflow's result store '{self.path}' is read-only: results cached in it "
                "are used, new ones are not written. Make it writable, or give the run "
                "another store (NBFLOW_HOME or flow.run(store=...)).",
                CacheWarning,
                stacklevel=user_stacklevel(),
            )

    def begin_run(self) -> None:
        """A new run tries the store again, even if it failed during an earlier one
        (a store read-only before is opened again: it may be writable now)."""
        self.disabled = None
        self._warned_read_only = False
        if isinstance(self._cache, _ReadOnlyCache):
            with self._lock:
                self._cache.close()
                self._cache = None
        elif self._cache is not None and time.monotonic() - self._culled >= 1.0:
            # In the background (dropping what is over the size limit, and expired, takes
            # milliseconds, and a run needs nothing of it), at most once a second, as
            # after writes: a cell re-run in a loop does not check the size each time.
            pool("cull", 1).submit(self._cull, self._cache, 1.0)

    def delete(self, key: str) -> None:
        try:
            self.cache.delete(key, retry=True)
        except Exception:
            log.debug("nbflow: could not delete cache entry %s", key, exc_info=True)

    def info(self) -> dict[str, Any]:
        """Entries, bytes on disk and entries per task."""
        try:
            cache = self.cache
            with cache.transact(retry=True):
                # The lengths of lists kept beside their entries are not entries.
                rows = cache._sql(
                    "SELECT tag, COUNT(*), SUM(size) FROM Cache WHERE key NOT LIKE '%:len' "
                    "GROUP BY tag"
                ).fetchall()
            volume = cache.volume()
        except sqlite3.DatabaseError as exc:
            if is_damaged(exc):
                raise DamagedStoreError(self._damage(exc)) from None
            raise
        per_task: dict[str, int] = {}
        entries = 0
        for tag, count, _ in rows:
            per_task[tag or "?"] = count
            entries += count
        return {"path": str(self.path), "entries": entries, "bytes": volume, "per_task": per_task}

    def clear(self, task: str | None = None, older_than: float | None = None) -> int:
        """Remove entries (of one task, and/or stored more than ``older_than`` s ago).

        Clearing everything also repairs a damaged database: the cache folder is
        removed and started anew (its entries cannot be read anyway)."""
        try:
            return self._clear(task, older_than)
        except sqlite3.DatabaseError as exc:
            if not is_damaged(exc):
                raise
            if task is not None or older_than is not None:
                raise DamagedStoreError(
                    self._damage(exc, "; it can only be cleared as a whole")
                ) from None
            return self._start_over(exc)

    def _clear(self, task: str | None, older_than: float | None) -> int:
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

    def _start_over(self, exc: BaseException) -> int:
        """Remove a damaged cache folder and create an empty one; the number of value
        files removed (the entries kept in the database cannot be counted)."""
        cache_dir = self.path / CACHE_DIR
        with self._lock:
            if self._cache is not None:
                with contextlib.suppress(Exception):
                    self._cache.close()
                self._cache = None
            removed = sum(1 for _ in cache_dir.rglob("*.val"))
            shutil.rmtree(cache_dir)
        self.disabled = None
        self.cache  # noqa: B018 (creates the new, empty database now)
        log.warning(
            "nbflow: the damaged result store database %s (%s) was removed with its %d value "
            "files; the store starts empty.",
            cache_dir / "cache.db",
            exc,
            removed,
        )
        return removed


__all__ = ["CacheWarning", "FileStore", "home_of", "open_file_store", "reset_file_store"]
