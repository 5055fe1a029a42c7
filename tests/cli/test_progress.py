"""The progress board: fed by a real run's events or by real history rows, rendered
as plain lines or as a rich table."""

import io
import sqlite3

import pytest
from rich.console import Console

from nbflow import Flow, State, task
from nbflow.cli.progress import Board, clean, error_tail, summary
from nbflow.store.history import open_history


def _flow():
    @task
    def load():
        return [1, 2, 3]

    @task(retries=1, retry_delay=0)
    def boom(x):
        raise RuntimeError(f"cannot use {x}\nsecond line")

    @task
    def double(x):
        return 2 * x

    @task
    def after(x):
        return x

    with Flow("board") as flow:
        rows = load()
        double.map(rows)
        after(boom(rows))
    return flow


def test_a_board_fed_by_run_events_has_one_row_per_task_and_counts_children():
    board = Board("flow 'board'")
    run = _flow().run(executor="sequential", listeners=[board.on_event])
    assert not run.ok
    assert list(board.rows) == ["load", "double", "boom", "after"]
    double = board.rows["double"]
    assert (double.done, double.total, double.state) == (3, 3, State.SUCCESS)
    assert board.rows["boom"].attempts == 2
    assert board.counts() == {"success": 4, "failed": 1, "upstream_failed": 1}
    assert [r.name for r in board.failed()] == ["boom"]
    assert [r.name for r in board.blocked()] == ["after"]
    assert not board.ok()


def test_plain_lines_are_one_per_event_and_free_of_control_characters():
    board = Board()
    _flow().run(executor="sequential", listeners=[board.on_event])
    lines = board.drain()
    assert board.drain() == []  # drained once
    states = [line.split()[1] for line in lines]
    assert states.count("running") >= 6  # load, 3 children, boom twice... each started
    assert "retrying" in states
    failed = next(line for line in lines if line.split()[1] == "failed")
    assert failed.endswith("boom after 2 attempts: RuntimeError: cannot use [1, 2, 3]")
    for line in lines:
        assert clean(line) == line and "\n" not in line


def test_the_summary_lists_each_failed_task_with_the_end_of_its_traceback():
    board = Board()
    _flow().run(executor="sequential", listeners=[board.on_event])
    text = "\n".join(summary(board, "run x", 1.5))
    assert text.startswith("run x: 1 failed, 4 success, 1 upstream_failed in 1.50s")
    assert "  boom failed after 2 attempts:" in text
    assert "    RuntimeError: cannot use [1, 2, 3]" in text
    assert "Did not run (upstream failed or cancelled): after" in text


def test_error_tail_keeps_the_last_lines_of_a_traceback():
    tb = "Traceback (most recent call last):\n" + "".join(f"  line {i}\n" for i in range(20))
    assert error_tail("E: x", tb, lines=3) == ["  line 17", "  line 18", "  line 19"]
    assert error_tail("ValueError: bad", None) == ["ValueError: bad"]
    assert error_tail(None, None) == []


def test_a_board_fed_by_history_rows_shows_what_another_process_recorded(tmp_path):
    home = tmp_path / "store"
    home.mkdir(mode=0o700)
    _flow().run(executor="sequential", store=home)
    history = open_history(home)
    history.flush()
    with sqlite3.connect(str(home / "history.sqlite")) as conn:
        (pid, start) = conn.execute("SELECT pid, start FROM runs").fetchone()
    board = Board()
    runs, rows = history.activity(pid, start)
    assert [r["flow"] for r in runs] == ["board"]
    for row in rows:
        board.on_history_row(row)
    assert board.rows["double"].done == 3
    assert board.rows["double"].state is State.SUCCESS
    assert board.rows["boom"].state is State.FAILED
    assert "RuntimeError: cannot use" in board.rows["boom"].traceback
    assert board.counts() == {"success": 4, "failed": 1, "upstream_failed": 1}
    # Polling again from the last row seen gives nothing new.
    _, again = history.activity(pid, start, after=max(r["rowid"] for r in rows))
    assert again == []
    assert history.activity(pid + 1, start) == ([], [])


def test_the_live_table_shows_states_in_the_palettes_colours_and_the_mapped_count():
    board = Board("flow 'board'")
    _flow().run(executor="sequential", listeners=[board.on_event])
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=100)
    console.print(board.render())
    screen = out.getvalue()
    assert "flow 'board'" in screen
    assert "3/3" in screen
    assert "upstream_failed" in screen
    assert "4 success" in screen
    plain = Console(file=io.StringIO(), width=100)
    plain.print(board.render(max_rows=2))
    text = plain.file.getvalue()
    assert "… and 2 more tasks" in text
    assert "boom" in text and "after" in text  # what went wrong is kept in view


@pytest.mark.parametrize("bad", ["", "x", "-1", "3z", "inf"])
def test_parse_age_refuses_what_is_not_an_age(bad):
    from nbflow.cli.source import UsageError, parse_age

    with pytest.raises(UsageError, match="Expected an age like 7d"):
        parse_age(bad)


def test_expected_tasks_are_shown_pending_but_count_only_once_they_report():
    board = Board()
    board.expect(["load", "total"])
    assert [(r.name, r.state) for r in board.rows.values()] == [
        ("load", State.PENDING),
        ("total", State.PENDING),
    ]
    assert board.counts() == {} and board.ok()
    board.update("load", State.SUCCESS, attempts=1, start=1.0, end=2.0)
    assert board.rows["load"].state is State.SUCCESS
    assert board.counts() == {"success": 1}
