"""Former home of the result store, kept so that its names still import.

The file store is ``nbflow.store.file`` (``ResultStore`` here is its class,
``FileStore``), the protocol and ``open_store`` are ``nbflow.store.base``, and the home
folder (``store_path``, its permission checks) is ``nbflow.store.home``.
"""

from __future__ import annotations

from nbflow.store.base import open_store
from nbflow.store.file import (
    DEFAULT_SIZE,
    FILE_THRESHOLD,
    CacheWarning,
    FileStore,
)
from nbflow.store.home import UnsafeStoreError, check_permissions, prepare_home
from nbflow.store.home import home_path as store_path

# The concrete class under its old name: code that builds one (ResultStore(path)) and
# annotations that name it keep working.
ResultStore = FileStore

__all__ = [
    "DEFAULT_SIZE",
    "FILE_THRESHOLD",
    "CacheWarning",
    "ResultStore",
    "UnsafeStoreError",
    "check_permissions",
    "open_store",
    "prepare_home",
    "store_path",
]
