"""Requests to a run from other processes: ``nbflow resume RUN_ID TASK``.

Two tables beside the run history, in ``<store>/history.sqlite`` (SQLite, WAL):
``paused_tasks`` lists the tasks a live run has waiting under ``manual_only``;
``resume_requests`` holds what another process asked for. A run polls about twice a
second, and only while it has paused tasks (the scheduler's side, ``Inbox``); the
command writes a request and waits until the task is no longer listed as paused
(``request_resume``). Tables of their own keep the history readable by older code.

>>> import tempfile
>>> home = tempfile.mkdtemp()
>>> inbox = Inbox(home, "run-1")
>>> inbox.sync(["approve"])
[]
>>> paused_tasks(home, "run-1")
['approve']
>>> request_resume(home, "run-1", "approve", timeout=0)
False
>>> inbox.sync(["approve"])
['approve']
>>> inbox.close()
>>> paused_tasks(home, "run-1")
[]
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import time
from collections.abc import Collection

from nbflow.errors import NbflowError
from nbflow.store.home import HISTORY_FILE

SCHEMA = """
CREATE TABLE IF NOT EXISTS paused_tasks (
    run_id TEXT NOT NULL, task TEXT NOT NULL, PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS resume_requests (
    run_id TEXT NOT NULL, task TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (run_id, task)
);
"""
POLL_INTERVAL = 0.5


def _connect(home: str | os.PathLike[str]) -> sqlite3.Connection:
    path = pathlib.Path(home) / HISTORY_FILE
    old = os.umask(0o077)  # as the history itself: readable by its owner only
    try:
        conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    finally:
        os.umask(old)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


class Inbox:
    """A run's side: publish its paused tasks, take the resume requests for them."""

    def __init__(self, home: str | os.PathLike[str], run_id: str) -> None:
        self.run_id = run_id
        self._conn = _connect(home)
        self._listed: list[str] | None = None

    def sync(self, paused: Collection[str]) -> list[str]:
        """List ``paused`` as the run's waiting tasks; return (and remove) the requests
        to resume any of them. Writes only when something changed: the history's own
        writer shares the database."""
        conn = self._conn
        names = sorted(paused)
        if names != self._listed:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM paused_tasks WHERE run_id = ?", (self.run_id,))
                conn.executemany(
                    "INSERT INTO paused_tasks VALUES (?, ?)", [(self.run_id, n) for n in names]
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._listed = names
        rows = conn.execute(
            "SELECT task FROM resume_requests WHERE run_id = ? ORDER BY at", (self.run_id,)
        ).fetchall()
        if rows:
            conn.executemany(
                "DELETE FROM resume_requests WHERE run_id = ? AND task = ?",
                [(self.run_id, task) for (task,) in rows],
            )
        return [task for (task,) in rows if task in paused]

    def close(self) -> None:
        """The run has no paused task left (or ended): list none."""
        try:
            self._conn.execute("DELETE FROM paused_tasks WHERE run_id = ?", (self.run_id,))
        finally:
            self._conn.close()


def paused_tasks(home: str | os.PathLike[str], run_id: str) -> list[str]:
    """The tasks of run ``run_id`` that wait to be resumed, as the run last listed them."""
    conn = _connect(home)
    try:
        return _paused(conn, run_id)
    finally:
        conn.close()


def _paused(conn: sqlite3.Connection, run_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT task FROM paused_tasks WHERE run_id = ? ORDER BY task", (run_id,)
    ).fetchall()
    return [task for (task,) in rows]


def request_resume(
    home: str | os.PathLike[str], run_id: str, task: str, timeout: float = 10.0
) -> bool:
    """Ask run ``run_id`` (in whichever process runs it) to resume ``task``; wait up to
    ``timeout`` seconds for it to do so. True once the task is no longer paused."""
    conn = _connect(home)  # one connection for the whole wait, not one per look
    try:
        waiting = _paused(conn, run_id)
        if task not in waiting:
            listed = ", ".join(f"'{n}'" for n in waiting) or "none"
            raise NbflowError(
                f"Task '{task}' of run '{run_id}' is not waiting to be resumed (tasks waiting: "
                f"{listed}). Only a task with trigger='manual_only' whose upstream tasks "
                "succeeded waits, in a run that is still going."
            )
        conn.execute(
            "INSERT OR REPLACE INTO resume_requests VALUES (?, ?, ?)", (run_id, task, time.time())
        )
        deadline = time.monotonic() + timeout
        while True:
            if task not in _paused(conn, run_id):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
    finally:
        conn.close()


__all__ = ["POLL_INTERVAL", "Inbox", "paused_tasks", "request_resume"]
