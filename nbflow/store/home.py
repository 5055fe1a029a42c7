"""The home folder: where runs keep their history, task cells their definitions, and
a live run its inbox of requests from other processes.

It is ``NBFLOW_HOME`` if set, else ``.nbflow`` in the working directory. The result
store is a separate concept (``nbflow.store.base``); by default it is a file store in
the same folder, which is why a home and a file store share one safety check.

The layout, kept as it has always been so that a home written before is read after::

    history.sqlite   the run history (nbflow.store.history) and the inbox tables
                     of paused tasks and resume requests (nbflow.store.inbox)
    cells.sqlite     task cell definitions (nbflow.store.cellstore)
    cache/           a file result store's diskcache (nbflow.store.file)
    UNTRUSTED        there only if the store was found writable by other users: it
                     is refused until cleared (``nbflow cache clear``)

>>> home_path("/srv/flows/.nbflow") / HISTORY_FILE
PosixPath('/srv/flows/.nbflow/history.sqlite')
"""

from __future__ import annotations

import os
import pathlib
import stat
import time
from collections.abc import Iterator

from nbflow import settings
from nbflow.errors import NbflowError

HISTORY_FILE = "history.sqlite"
CELLS_FILE = "cells.sqlite"
CACHE_DIR = "cache"
UNTRUSTED_FILE = "UNTRUSTED"


class UnsafeStoreError(NbflowError, PermissionError):
    """The store could be written by another user, so reading it is not safe."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class DamagedStoreError(NbflowError):
    """A database of the store (the cache's or the run history) is damaged."""


def is_damaged(exc: BaseException) -> bool:
    """Whether a sqlite error says the database file itself is damaged (not a database,
    or malformed), as opposed to locked, read-only or out of space."""
    import sqlite3  # here: the command line imports this module and starts without sqlite

    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    return type(exc) is sqlite3.DatabaseError


def home_path(path: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """The home folder: ``path``, else ``NBFLOW_HOME``, else ``./.nbflow``."""
    if path is not None:
        return pathlib.Path(path)
    return settings.home() or pathlib.Path.cwd() / ".nbflow"


def check_permissions(path: pathlib.Path, deep: bool = False) -> None:
    """Refuse a home (or file store) that another user owns or that group or others
    can write, or that was found so once (``UNTRUSTED``).

    Always checked: the folder, its entries and those of ``cache/``. With ``deep``,
    everything below ``cache/`` too, files included (a directory made owner-only
    again does not take back what someone else put in it meanwhile).

    A store found writable by others is marked ``UNTRUSTED``: making it owner-only
    again does not undo what may have been planted in it, so it is refused until it
    is cleared (``nbflow cache clear``) or deleted.
    """
    marker = path / UNTRUSTED_FILE
    if os.path.lexists(marker):
        try:
            why = marker.read_text(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError):
            why = "see its UNTRUSTED file"
        raise UnsafeStoreError(
            f"The nbflow store '{path}' was found writable by other users ({why}), so its "
            "results may have been replaced; nbflow no longer loads them. "
            f"{_CLEAR_IT.format(store=path)}",
            reason=why,
        )
    try:
        for p in _candidates(path):
            _check_one(path, p)
        cache_dir = path / CACHE_DIR
        if deep and cache_dir.is_dir():
            _check_tree(path, cache_dir)
    except UnsafeStoreError as exc:
        mark_untrusted(path, exc.reason)
        raise


def _candidates(path: pathlib.Path) -> Iterator[pathlib.Path]:
    yield path
    if not path.is_dir():
        return
    yield from path.iterdir()
    cache_dir = path / CACHE_DIR
    if cache_dir.is_dir():
        yield from cache_dir.iterdir()


def _check_tree(store: pathlib.Path, top: pathlib.Path) -> None:
    """Everything below ``top``, with scandir and one lstat an entry, since it runs at
    every open (about 30 ms a thousand value files; a value file is also checked,
    on the open file, when it is read)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    stack = [str(top)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except FileNotFoundError:  # removed meanwhile (eviction, a clear elsewhere)
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if (uid is not None and st.st_uid != uid) or st.st_mode & 0o022:
                    _check_stat(store, pathlib.Path(entry.path), st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)


_CLEAR_IT = "Clear it with: nbflow cache clear --path '{store}'  (or delete the folder)."


def mark_untrusted(path: pathlib.Path, why: str) -> None:
    """Remember that the store at ``path`` was found open to other users, so that it
    is refused until cleared (only a store of results, and only one of our own)."""
    try:
        if not (path / CACHE_DIR).is_dir() or path.lstat().st_uid != os.getuid():
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path / UNTRUSTED_FILE, flags, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{why}, on {stamp}\n")
    except OSError:  # a read-only store: it is refused now all the same
        pass


def check_own_file(store: pathlib.Path, p: str, st: os.stat_result) -> None:
    """Refuse a value file about to be loaded that is not ours alone."""
    _check_stat(store, pathlib.Path(p), st)


def _check_one(store: pathlib.Path, p: pathlib.Path) -> None:
    try:
        st = p.lstat()
    except FileNotFoundError:
        return
    _check_stat(store, p, st)


def _check_stat(store: pathlib.Path, p: pathlib.Path, st: os.stat_result) -> None:
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None and st.st_uid != uid:
        in_cache = (store / CACHE_DIR) in p.parents
        raise UnsafeStoreError(
            f"The nbflow store '{store}' holds '{p}', owned by another user (uid "
            f"{st.st_uid}); loading results from it could run their code. "
            + (
                _CLEAR_IT.format(store=store)
                if in_cache
                else "Delete the folder, or set NBFLOW_HOME to a directory of your own."
            ),
            reason=f"'{p}' was owned by uid {st.st_uid}",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStoreError(
            f"The nbflow store '{store}' can be written by other users ('{p}' is "
            "group- or world-writable); its results may have been replaced, so nbflow "
            f"does not load them. {_CLEAR_IT.format(store=store)}",
            reason=f"'{p}' was group- or world-writable",
        )


def prepare_home(path: pathlib.Path) -> pathlib.Path:
    """Create the folder owner-only (0700) if needed, and check it."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    check_permissions(path, deep=True)
    return path


__all__ = [
    "CACHE_DIR",
    "CELLS_FILE",
    "HISTORY_FILE",
    "UNTRUSTED_FILE",
    "DamagedStoreError",
    "UnsafeStoreError",
    "check_own_file",
    "check_permissions",
    "home_path",
    "is_damaged",
    "mark_untrusted",
    "prepare_home",
]
