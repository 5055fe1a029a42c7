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

>>> home_path("/srv/flows/.nbflow") / HISTORY_FILE
PosixPath('/srv/flows/.nbflow/history.sqlite')
"""

from __future__ import annotations

import os
import pathlib
import stat

from nbflow import settings
from nbflow.errors import NbflowError

HISTORY_FILE = "history.sqlite"
CELLS_FILE = "cells.sqlite"
CACHE_DIR = "cache"


class UnsafeStoreError(NbflowError, PermissionError):
    """The store could be written by another user, so reading it is not safe."""


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
    can write.

    Always checked: the folder, its entries and those of ``cache/``. With ``deep``,
    every directory below too: when no directory can be written by others, no
    other user can put a file there.
    """
    candidates = [path, *(p for p in path.iterdir())] if path.is_dir() else [path]
    cache_dir = path / CACHE_DIR
    if cache_dir.is_dir():
        candidates.extend(cache_dir.iterdir())
        if deep:
            for root, dirs, _ in os.walk(cache_dir):
                candidates.extend(pathlib.Path(root, d) for d in dirs)
    for p in candidates:
        _check_one(path, p)


def _check_one(store: pathlib.Path, p: pathlib.Path) -> None:
    try:
        st = p.lstat()
    except FileNotFoundError:
        return
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None and st.st_uid != uid:
        raise UnsafeStoreError(
            f"The nbflow store '{store}' holds '{p}', owned by another user (uid "
            f"{st.st_uid}); loading results from it could run their code. Use a store "
            "of your own: set NBFLOW_HOME to another directory."
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStoreError(
            f"The nbflow store '{store}' can be written by other users ('{p}' is "
            f"group- or world-writable); loading results from it could run their code. "
            f"Fix it with: chmod -R go-w '{store}'  (or set NBFLOW_HOME to another directory)."
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
    "DamagedStoreError",
    "UnsafeStoreError",
    "check_permissions",
    "home_path",
    "is_damaged",
    "prepare_home",
]
