"""Durable run history: every run and task run, recorded as it happens (SQLite, WAL).

A background thread writes in batches, so recording costs a run about a microsecond
per event. A run whose process ended before it finished (a killed kernel) is marked
interrupted the next time the history is read; its unfinished tasks have no row,
or a row that is not finished, and count as interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import pathlib
import queue
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from nbflow.events import RUN_FINISHED, RUN_STARTED, TASK_STATE, Event
from nbflow.state import FAILED_STATES, FINISHED, State
from nbflow.store.home import HISTORY_FILE, DamagedStoreError, is_damaged

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, flow TEXT NOT NULL, start REAL, end REAL, state TEXT NOT NULL,
    pid INTEGER, host TEXT, executor TEXT, interrupted INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS task_runs (
    run_id TEXT NOT NULL, name TEXT NOT NULL, node TEXT NOT NULL, map_index INTEGER,
    mapped INTEGER NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
    error_type TEXT, error TEXT, traceback TEXT, logs TEXT, history TEXT,
    start REAL, end REAL, key TEXT, cached INTEGER NOT NULL, reason TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start);
CREATE INDEX IF NOT EXISTS task_runs_by_run ON task_runs (run_id);
CREATE TABLE IF NOT EXISTS run_sources (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, path TEXT NOT NULL, command TEXT
);
CREATE TABLE IF NOT EXISTS run_plans (run_id TEXT PRIMARY KEY, tasks TEXT NOT NULL);
"""
# task_rows: every task run, one row each; read it rather than task_runs. Plain task
# runs recorded one after another (ended ok in one clean attempt or as a cache hit, no
# logs, no reason) are written as one row of task_runs, mapped = 2 and map_index = -1,
# whose ``history`` is a JSON list of entries [name, key, node, map_index, state,
# attempts, start, end, cached], start and end in whole microseconds after the row's
# start (a float costs three times an int to write as JSON). Trailing fields may be
# left out: their defaults describe a cache hit at the row's start, the node is the
# task's name unless given (a mapped child names its node). A run of 1,000 such tasks
# writes a row or a few, not 1,000 (a commit and an index entry cost far more than a
# row of JSON). The view expands them; ``row_id`` and ``seq`` order its rows as recorded.
VIEW = """
CREATE VIEW task_rows AS
    SELECT rowid AS row_id, 0 AS seq, run_id, name, node, map_index, mapped, state,
        attempts, error_type, error, traceback, logs, history, start, end, key, cached, reason
    FROM task_runs WHERE mapped < 2
    UNION ALL
    SELECT t.rowid, h.key, t.run_id, json_extract(h.value, '$[0]'),
        COALESCE(json_extract(h.value, '$[2]'), json_extract(h.value, '$[0]')),
        json_extract(h.value, '$[3]'), 0,
        COALESCE(json_extract(h.value, '$[4]'), 'cached'),
        COALESCE(json_extract(h.value, '$[5]'), 0), NULL, NULL, NULL, NULL, NULL,
        t.start + COALESCE(json_extract(h.value, '$[6]'), 0) / 1e6,
        t.start + COALESCE(json_extract(h.value, '$[7]'), 0) / 1e6,
        json_extract(h.value, '$[1]'), COALESCE(json_extract(h.value, '$[8]'), 1), NULL
    FROM task_runs t, json_each(t.history) h WHERE t.mapped = 2"""
# run_plans: the tasks a run set out to run (a JSON list of names), written when it
# starts. A task of a run whose process was killed has no row in task_runs; the plan
# tells it apart from a task the run never meant to run, so a retry runs it again.
# run_sources: which file a run came from and how it was started (``nbflow run``), so
# ``nbflow retry`` can start it again. A table of its own keeps older history files
# readable by this code and this file readable by older code.

log = logging.getLogger("nbflow")
_RETRY_EVERY = 1.0  # seconds between tries while the history cannot be written
_KEEP_AT_MOST = 100_000  # records kept for a later try; the oldest go first
_GATHER = 0.05  # seconds the writer waits for more records before it writes a batch

# The task states counted as failed in `runs()`, as SQL literals (enum values, not input).
_FAILED_SQL = ", ".join(f"'{s.value}'" for s in sorted(FAILED_STATES))
_INSERT_TASK = "INSERT INTO task_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_GROUP = 2  # task_runs.mapped of a row that holds several plain task runs
_open: weakref.WeakValueDictionary[str, History] = weakref.WeakValueDictionary()
_open_lock = threading.Lock()


def _connect(path: pathlib.Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    found = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'task_rows'").fetchone()
    if found is None or found[0] != VIEW.strip():
        # Made, or made again as this version reads the table, in one transaction:
        # another process reading the view never finds it missing.
        conn.executescript(f"BEGIN IMMEDIATE; DROP VIEW IF EXISTS task_rows; {VIEW}; COMMIT;")
    return conn


def _open_file(path: pathlib.Path) -> tuple[sqlite3.Connection, int]:
    """A connection to the history file (owner-only when it is created) and its inode."""
    old = os.umask(0o077)
    try:
        conn = _connect(path)
    except sqlite3.DatabaseError as exc:
        if is_damaged(exc):
            raise _damaged(path, exc) from None
        raise
    finally:
        os.umask(old)
    return conn, os.stat(path).st_ino


def _damaged(path: pathlib.Path, exc: BaseException) -> DamagedStoreError:
    return DamagedStoreError(
        f"The nbflow run history '{path}' is damaged ({exc}). Delete it to start a new "
        f"one: rm '{path}'*  (this removes its -wal and -shm files too; the runs recorded "
        "in it are lost, the cached results are kept)."
    )


_Result = TypeVar("_Result")
_Params = ParamSpec("_Params")


def _reading(
    method: Callable[Concatenate[History, _Params], _Result],
) -> Callable[Concatenate[History, _Params], _Result]:
    """A read of the history that says which file is damaged, and how to fix it, instead
    of raising sqlite's DatabaseError."""

    def read(self: History, /, *args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if is_damaged(exc):
                raise _damaged(self.path, exc) from None
            raise

    read.__name__, read.__doc__ = method.__name__, method.__doc__
    return read


def _as_row(item: Any) -> Any:
    """A queued record as it is written: a finished task becomes its row at once (a
    plain one, its entry in a group), so a record kept for a later try holds no task
    run or result."""
    if item[0] == "task":
        _, run_id, tr, run = item
        state = tr.state
        if (
            (state is State.SUCCESS or state is State.CACHED)
            and tr.children is None
            and tr.attempts <= 1
            and tr.error is None
            and not (tr.logs or tr.reason or tr.traceback)
            and (not tr.history or (len(tr.history) == 1 and tr.history[0].error is None))
        ):
            index = tr.map_index
            node = None  # an unmapped task run is named as its node
            if index is not None:
                node = run.flow.name_of(tr.node) if run is not None else tr.node.name
            entry = (tr.name, tr.key, node, index, state, tr.attempts, tr.start, tr.end)
            return ("plain", run_id, (*entry, tr.cached))
        return ("row", _task_row(run_id, tr, run))
    return item


# A flow's task names as run_plans keeps them, while the flow lives and is unchanged: a
# cached re-run of the same flow does not list and encode its tasks again.
_plans: weakref.WeakKeyDictionary[Any, tuple[int, str]] = weakref.WeakKeyDictionary()


def _plan_of(flow: Any) -> str:
    found = _plans.get(flow)
    if found is not None and found[0] == flow.version:
        return found[1]
    plan = json.dumps([flow.name_of(node) for node in flow.tasks])
    _plans[flow] = (flow.version, plan)
    return plan


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if pid is None or host != socket.gethostname():
        return True  # cannot tell: assume it still runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class History:
    """The run history in ``<store>/history.sqlite``."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(home) / HISTORY_FILE
        self._conn, self._inode = _open_file(self.path)
        self._failing = False
        self._lock = threading.Lock()
        self._conn_lock = threading.Lock()
        # Records wait in ``_items`` (a plain list: appending costs little) until the
        # writer thread takes them, or a caller of ``flush`` writes them itself; taking
        # and writing happen under ``_writing``, so rows are written in the order they
        # were recorded. ``_wake`` tells the writer that records are waiting.
        self._items: list[Any] = []
        self._items_lock = threading.Lock()
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._writing = threading.Lock()
        # Records that could not be written (a full disk, a read-only or vanished
        # folder), as plain rows, tried again with the next batch or within a second.
        self._pending: list[Any] = []
        self._thread: threading.Thread | None = None

    # -- recording ------------------------------------------------------------------
    def record(self, event: Event) -> None:
        """An event listener: queue what should be written (about a microsecond)."""
        kind = event.kind
        if kind == TASK_STATE:
            if event.state in FINISHED:
                self._put(("task", event.run_id, event.task_run, event.run))
            return
        if kind == RUN_STARTED:
            run = event.run
            flow = run.flow
            plan = _plan_of(flow)
            item: Any = ("start", event.run_id, flow.name, run.start, _executor_name(run), plan)
        elif kind == RUN_FINISHED:
            item = ("end", event.run_id, event.run.end, event.state.value)
        else:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._write_loop, name="nbflow-history", daemon=True
                    )
                    self._thread.start()
        self._put(item)
        if kind == RUN_FINISHED:
            self.flush()

    def _put(self, item: Any) -> None:
        with self._items_lock:
            self._items.append(item)
            first = len(self._items) == 1
        if first:
            self._wake.put(None)

    def flush(self, timeout: float = 30) -> None:
        """Write everything recorded so far, in this thread (waiting at most ``timeout``
        seconds for a batch the writer thread is writing)."""
        if self._thread is None:
            return
        if self._writing.acquire(timeout=timeout):
            try:
                self._write_waiting()
            finally:
                self._writing.release()

    def _write_loop(self) -> None:
        while True:
            with contextlib.suppress(queue.Empty):  # a second passed: try pending again
                self._wake.get(timeout=_RETRY_EVERY if self._pending else None)
            # Records that come within _GATHER go in the same transaction: a commit costs
            # far more than a row, and tasks of a microsecond or two each finish many
            # to a millisecond. The end of a run writes at once (``flush``).
            time.sleep(_GATHER)
            with self._writing:
                self._write_waiting()

    def _write_waiting(self) -> None:
        """``_writing`` held: write the records waiting, and those kept from a failed
        write; one warning says when writing fails, and one more when it works again."""
        with self._items_lock:
            batch, self._items = self._items, []
        if not batch and not self._pending:
            return
        items = self._pending + [_as_row(item) for item in batch]
        # Drop references now: a batch holds task runs, their runs and results, which
        # must not outlive the run while this waits for the next one.
        del batch
        try:
            self._reopen_if_gone()
            self._write(items)
        except Exception as exc:
            self._pending = items[-_KEEP_AT_MOST:]
            if not self._failing:
                self._failing = True
                log.warning(
                    "nbflow: could not write the run history %s (%s: %s); keeping its "
                    "records in memory and trying again every %gs.",
                    self.path,
                    type(exc).__name__,
                    exc,
                    _RETRY_EVERY,
                )
        else:
            self._pending = []
            if self._failing:
                self._failing = False
                log.warning("nbflow: the run history %s is written again.", self.path)

    def _reopen_if_gone(self) -> None:
        """Open the file again if it was deleted or replaced since it was opened (writes
        to the old one would go to a file nobody can read)."""
        try:
            same = os.stat(self.path).st_ino == self._inode
        except FileNotFoundError:
            same = False
        if same:
            return
        with self._conn_lock:
            self._conn.close()
            if not self.path.exists():
                # The whole folder may have gone (removed by hand): make it again.
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # A journal left by the vanished file must not be replayed into the new one.
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{self.path}{suffix}")
            self._conn, self._inode = _open_file(self.path)

    def _write(self, batch: list[Any]) -> None:
        if not batch:
            return
        with self._conn_lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                tasks: list[tuple[Any, ...]] = []
                for item in batch:
                    if item[0] == "row":
                        tasks.append(item[1])
                        continue
                    if item[0] == "plain":
                        last = tasks[-1] if tasks else None
                        if last is not None and len(last) == 2 and last[0] == item[1]:
                            last[1].append(item[2])  # the group the run's last row began
                        else:
                            tasks.append((item[1], [item[2]]))
                        continue
                    if tasks:  # keep the order of starts, tasks and ends
                        conn.executemany(_INSERT_TASK, _rows(tasks))
                        tasks = []
                    if item[0] == "start":
                        _, run_id, flow, start, executor, plan = item
                        conn.execute(
                            "INSERT OR REPLACE INTO runs (id, flow, start, state, pid, host, "
                            "executor) VALUES (?,?,?,?,?,?,?)",
                            (
                                run_id,
                                flow,
                                start,
                                "running",
                                os.getpid(),
                                socket.gethostname(),
                                executor,
                            ),
                        )
                        conn.execute(
                            "INSERT OR REPLACE INTO run_plans VALUES (?,?)", (run_id, plan)
                        )
                    else:
                        _, run_id, end, state = item
                        conn.execute(
                            "UPDATE runs SET end = ?, state = ? WHERE id = ?", (end, state, run_id)
                        )
                if tasks:
                    conn.executemany(_INSERT_TASK, _rows(tasks))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- reading --------------------------------------------------------------------
    def _mark_interrupted(self) -> None:
        with self._conn_lock:
            rows = self._conn.execute(
                "SELECT id, pid, host FROM runs WHERE state = 'running'"
            ).fetchall()
            for run_id, pid, host in rows:
                if pid == os.getpid() and host == socket.gethostname():
                    continue
                if not _pid_alive(pid, host):
                    self._conn.execute(
                        "UPDATE runs SET state = 'cancelled', interrupted = 1 WHERE id = ?",
                        (run_id,),
                    )

    @_reading
    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Past runs, newest first, with counts per task state, the process that made
        each (``pid``, ``host``) and the kind of file it came from (``source``: a
        notebook's cell runs under ``nbflow run`` say ``notebook``), or None."""
        self.flush()
        self._mark_interrupted()
        sql = (
            "SELECT r.id, r.flow, r.start, r.end, r.state, r.interrupted, r.executor, "
            "(SELECT COALESCE(SUM(CASE t.mapped WHEN 0 THEN 1 ELSE json_array_length(t.history) "
            "END), 0) "
            "FROM task_runs t WHERE t.run_id = r.id AND t.mapped IN (0, 2)), "
            "(SELECT COUNT(*) FROM task_runs t WHERE t.run_id = r.id AND t.mapped = 0 AND "
            f"t.state IN ({_FAILED_SQL})), r.pid, r.host, "
            "(SELECT s.kind FROM run_sources s WHERE s.run_id = r.id) "
            "FROM runs r ORDER BY r.start DESC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._conn_lock:
            rows = self._conn.execute(sql).fetchall()
        keys = (
            "id",
            "flow",
            "start",
            "end",
            "state",
            "interrupted",
            "executor",
            "tasks",
            "failed",
            "pid",
            "host",
            "source",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    @_reading
    def last_states(self, run_ids: list[str]) -> dict[str, str]:
        """Each task of the runs ``run_ids`` (mapped children left out) with its state in
        the last of them that ran it (the cells of one notebook run)."""
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        with self._conn_lock:
            rows = self._conn.execute(
                "SELECT t.name, t.state FROM task_rows t JOIN runs r ON r.id = t.run_id "
                f"WHERE t.run_id IN ({marks}) AND t.map_index IS NULL "
                "ORDER BY r.start, t.row_id, t.seq",
                run_ids,
            ).fetchall()
        return dict(rows)

    @_reading
    def computed(self, keys: list[str]) -> dict[str, float]:
        """For results ``keys``, the seconds their latest recorded computation took (a
        task run that was not a cache hit); keys computed in no recorded run are left out."""
        keys = [k for k in dict.fromkeys(keys) if k]
        found: dict[str, float] = {}
        with self._conn_lock:
            for i in range(0, len(keys), 500):  # within SQLite's limit on parameters
                part = keys[i : i + 500]
                rows = self._conn.execute(
                    "SELECT key, end - start FROM task_rows WHERE key IN "
                    f"({','.join('?' * len(part))}) AND cached = 0 AND state = 'success' "
                    "AND start IS NOT NULL AND end IS NOT NULL ORDER BY end",
                    part,
                ).fetchall()
                found.update(rows)
        return found

    @_reading
    def resolve(self, run_id: str) -> str | None:
        """The id of ``run_id`` ("latest", a full id or a unique prefix), or None."""
        self.flush()
        with self._conn_lock:
            if run_id == "latest":
                row = self._conn.execute(
                    "SELECT id FROM runs ORDER BY start DESC LIMIT 1"
                ).fetchone()
                return row[0] if row else None
            rows = self._conn.execute(
                "SELECT id FROM runs WHERE id LIKE ? LIMIT 2", (run_id + "%",)
            ).fetchall()
        return rows[0][0] if len(rows) == 1 else None

    @_reading
    def latest_states(self, flow: str) -> dict[str, str]:
        """Each task of ``flow`` (mapped children left out) with its latest state."""
        with self._conn_lock:
            rows = self._conn.execute(
                "SELECT t.name, t.state FROM task_rows t JOIN runs r ON r.id = t.run_id "
                "WHERE r.flow = ? AND t.map_index IS NULL ORDER BY r.start, t.row_id, t.seq",
                (flow,),
            ).fetchall()
        return dict(rows)

    @_reading
    def runs_like(self, prefix: str) -> list[str]:
        """The ids of the runs that start with ``prefix``."""
        with self._conn_lock:
            rows = self._conn.execute(
                "SELECT id FROM runs WHERE id LIKE ?", (prefix.replace("%", "") + "%",)
            ).fetchall()
        return [row[0] for row in rows]

    @_reading
    def load(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The run row and its task rows."""
        self._mark_interrupted()
        with self._conn_lock:
            run = _dicts(self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)))[0]
            tasks = _dicts(
                self._conn.execute(
                    "SELECT * FROM task_rows WHERE run_id = ? ORDER BY start, row_id, seq",
                    (run_id,),
                )
            )
        return run, tasks

    @_reading
    def unfinished(self, run_id: str) -> list[str]:
        """The tasks ``run_id`` set out to run that never finished: its process was
        killed before they did (empty for runs recorded before plans were kept). Read
        as written so far: callers list the runs first with ``runs()``, which flushes."""
        with self._conn_lock:
            row = self._conn.execute(
                "SELECT tasks FROM run_plans WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return []
            done = {
                name
                for (name,) in self._conn.execute(
                    "SELECT name FROM task_rows WHERE run_id = ? AND map_index IS NULL",
                    (run_id,),
                )
            }
        return [name for name in json.loads(row[0]) if name not in done]

    @_reading
    def record_source(self, run_ids: list[str], kind: str, path: str, command: Any) -> None:
        """Remember that ``run_ids`` came from ``path`` (a ``kind`` of file), started
        with ``command`` (JSON-able options, e.g. the parameters)."""
        rows = [(run_id, kind, path, json.dumps(command)) for run_id in run_ids]
        with self._conn_lock:
            self._conn.executemany("INSERT OR REPLACE INTO run_sources VALUES (?,?,?,?)", rows)

    @_reading
    def source(self, run_id: str) -> tuple[str, str, Any] | None:
        """``(kind, path, command)`` of a run started from a file, or None."""
        with self._conn_lock:
            row = self._conn.execute(
                "SELECT kind, path, command FROM run_sources WHERE run_id = ?", (run_id,)
            ).fetchone()
        if row is None:
            return None
        return row[0], row[1], json.loads(row[2]) if row[2] else {}

    @_reading
    def activity(
        self, pid: int, since: float, after: int = 0
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The runs recorded by process ``pid`` that started at or after ``since``, and
        their task rows written after row ``after`` (``rowid`` is in each task row).
        What a front end polls to follow runs that another process (a kernel) makes."""
        host = socket.gethostname()
        with self._conn_lock:
            runs = _dicts(
                self._conn.execute(
                    "SELECT * FROM runs WHERE pid = ? AND host = ? AND start >= ? ORDER BY start",
                    (pid, host, since),
                )
            )
            if not runs:
                return runs, []
            marks = ",".join("?" * len(runs))
            tasks = _dicts(
                self._conn.execute(
                    f"SELECT row_id AS rowid, * FROM task_rows WHERE row_id > ? AND run_id IN "
                    f"({marks}) ORDER BY row_id, seq",
                    (after, *(r["id"] for r in runs)),
                )
            )
        return runs, tasks


def _rows(tasks: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows of task_runs: task rows as they are, and each group of plain task runs
    recorded one after another (``(run_id, [entry, ...])``) as one row."""
    rows = []
    for row in tasks:
        if len(row) == 2:
            run_id, group = row
            if len(group) == 1:
                name, key, node, index, state, attempts, start, end, cached = group[0]
                row = (run_id, name, node if node is not None else name, index, 0, state.value)
                row += (attempts, None, None, None, None, None, start, end, key, int(bool(cached)))
                row += (None,)
            else:
                base = min([e[6] for e in group if e[6] is not None], default=0.0)
                row = (run_id, "", "", -1, _GROUP, "", 0, None, None, None, None)
                row += (json.dumps([_entry(e, base) for e in group]), base, None, None, 0, None)
        rows.append(row)
    return rows


def _entry(e: tuple[Any, ...], base: float) -> list[Any]:
    """A plain task run's entry in a group row, with what it shares with a cache hit at
    ``base`` left out (see SCHEMA)."""
    name, key, node, index, state, attempts, start, end, cached = e
    if (
        state is State.CACHED
        and not attempts
        and start == base
        and end == base
        and cached
        and index is None
        and node is None
    ):
        return [name, key]
    return [
        name,
        key,
        node,
        index,
        _VALUES[state],
        attempts,
        None if start is None else round((start - base) * 1e6),
        None if end is None else round((end - base) * 1e6),
        int(bool(cached)),
    ]


_VALUES = {state: state.value for state in State}  # without the enum's descriptor call


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The rows of a query, each as a dict by column name."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _executor_name(run: Any) -> str:
    """What the history records as a run's executor: its name, or its class's name."""
    spec = run.executor_spec
    return spec if isinstance(spec, str) else type(spec).__name__


def _task_row(run_id: str, tr: Any, run: Any) -> tuple[Any, ...]:
    error = tr.error
    logs = json.dumps([[r.time, r.level, r.message] for r in tr.logs]) if tr.logs else None
    attempts = tr.history
    if not attempts or (len(attempts) == 1 and attempts[0].error is None):
        history = None  # one clean attempt: rebuilt from the row's own start, end and state
    else:
        history = json.dumps(
            [
                [a.number, a.start, a.end, a.state.value, None if a.error is None else str(a.error)]
                for a in attempts
            ]
        )
    node_name = run.flow.name_of(tr.node) if run is not None else tr.node.name
    return (
        run_id,
        tr.name,
        node_name,
        tr.map_index,
        int(tr.children is not None),
        tr.state.value,
        tr.attempts,
        None if error is None else type(error).__name__,
        None if error is None else str(error),
        tr.traceback,
        logs,
        history,
        tr.start,
        tr.end,
        tr.key,
        int(bool(tr.cached)),
        tr.reason,
    )


def open_history(home: str | os.PathLike[str]) -> History:
    """The history of the store at ``home``, opened once per process."""
    key = str(pathlib.Path(home).resolve())
    with _open_lock:
        found = _open.get(key)
        if found is None:
            found = History(home)
            _open[key] = found
            _keep.append(found)
        return found


_keep: list[History] = []


@atexit.register
def _flush_all() -> None:
    for history in _keep:
        history.flush(timeout=10)


def state_of(value: str) -> State:
    return State(value)
