"""Task cell definitions, kept in the store beside the cache (``cells.sqlite``).

One row per (flow, task name): the cell's source, its options (JSON), the file
name its tracebacks use and the notebook's id of the cell, when known. A fresh kernel
(or the command line) rebuilds the notebook's task cells from here, so running a
cell, or ``%flow retry``, works after a restart.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import threading
import time
from typing import Any, NamedTuple

from nbflow.store.home import CELLS_FILE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    flow TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL, options TEXT NOT NULL,
    filename TEXT NOT NULL, position INTEGER NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (flow, name)
);
"""


class StoredCell(NamedTuple):
    """A task cell definition as stored."""

    name: str
    source: str
    options: dict[str, Any]
    filename: str
    position: int
    cell_id: str | None = None


class CellStore:
    """The definitions of task cells in ``<store>/cells.sqlite``.

    >>> import tempfile
    >>> store = CellStore(tempfile.mkdtemp())
    >>> store.save("demo", StoredCell("df", "df = 1", {"retries": 2}, "<cell>", 0))
    >>> [c.options for c in store.load("demo")]
    [{'retries': 2}]
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(home) / CELLS_FILE
        old = os.umask(0o077)
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=30, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(cells)")}
            if "cell_id" not in columns:  # a store written before cell ids were kept
                self._conn.execute("ALTER TABLE cells ADD COLUMN cell_id TEXT")
        finally:
            os.umask(old)
        self._lock = threading.Lock()

    def save(self, flow: str, cell: StoredCell) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO cells "
                "(flow, name, source, options, filename, position, updated, cell_id) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    flow,
                    cell.name,
                    cell.source,
                    json.dumps(cell.options),
                    cell.filename,
                    cell.position,
                    time.time(),
                    cell.cell_id,
                ),
            )

    def load(self, flow: str) -> list[StoredCell]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, source, options, filename, position, cell_id FROM cells "
                "WHERE flow = ? ORDER BY position, updated",
                (flow,),
            ).fetchall()
        return [StoredCell(n, s, json.loads(o), f, p, c) for n, s, o, f, p, c in rows]

    def delete(self, flow: str, names: list[str] | None = None) -> None:
        """Forget the cells ``names`` of ``flow`` (all of them when None)."""
        with self._lock:
            if names is None:
                self._conn.execute("DELETE FROM cells WHERE flow = ?", (flow,))
            else:
                self._conn.executemany(
                    "DELETE FROM cells WHERE flow = ? AND name = ?", [(flow, n) for n in names]
                )


_open: dict[str, CellStore] = {}
_open_lock = threading.Lock()


def open_cells(home: pathlib.Path) -> CellStore:
    """The cell store of a result store directory, opened once per process."""
    with _open_lock:
        found = _open.get(str(home))
        if found is None or not found.path.exists():
            found = _open[str(home)] = CellStore(home)
        return found
