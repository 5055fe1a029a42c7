"""Tests of the option table that ``@task(...)`` and ``%%task --flag`` share."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest
from IPython.core.error import UsageError

from nbflow import Task, task
from nbflow.cells.definitions import CellOptions
from nbflow.cells.line import parse_task_line
from nbflow.errors import TaskDefinitionError
from nbflow.graph import options


def test_task_takes_exactly_the_table_options_in_order_with_the_table_defaults():
    params = list(inspect.signature(Task.__init__).parameters.values())[2:]  # self, fn
    assert [p.name for p in params] == list(options.NAMES)
    for param in params:
        assert param.default == options.OPTIONS[param.name].default, param.name


def test_a_task_cell_has_the_defaults_of_task_for_the_options_its_flags_set():
    cell = CellOptions()
    for option in options.FLAGGED:
        assert getattr(cell, option.name) == option.default


def test_every_flag_has_a_spelling_and_help():
    spellings = [o.flag.spelling for o in options.FLAGGED if o.flag is not None]
    assert spellings == ["--retries", "--retry-delay", "--timeout", "--trigger", "--no-cache"]
    assert all(o.flag is not None and o.flag.help for o in options.FLAGGED)


def test_a_line_and_a_decorator_give_a_task_the_same_options():
    _, cell = parse_task_line("load --retries 2 --retry-delay 0.5 --timeout 30 --no-cache")

    @task(retries=2, retry_delay=0.5, timeout=30, cache=False)
    def load():
        return 1

    from_line = Task(load.fn, name="load", **cell.run_options())
    assert {k: getattr(from_line, k) for k in options.NAMES} == {
        k: getattr(load, k) for k in options.NAMES
    }


def test_check_normalises_timedeltas_and_tags():
    assert options.check("cache_expire", dt.timedelta(hours=1)) == 3600.0
    assert options.check("tags", "etl") == ("etl",)
    assert options.check("retry_on", OSError) == (OSError,)


@pytest.mark.parametrize("option", ["retry_delay", "timeout", "cache_expire"])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), 10**400])
def test_seconds_that_are_not_finite_are_refused_when_the_task_is_defined(option, bad):
    with pytest.raises(
        TaskDefinitionError,
        match=rf"^Task 'load': expected {option} to be a finite number of seconds, but got ",
    ):

        @task(**{option: bad})
        def load():
            return 1


def test_an_endless_timeout_says_how_to_have_no_limit():
    with pytest.raises(TaskDefinitionError, match=r"For no limit, use timeout=None\.$"):
        task(timeout=float("inf"))(lambda: 1)


def test_an_endless_retry_backoff_is_refused():
    with pytest.raises(
        TaskDefinitionError, match=r"expected retry_backoff to be a finite number >= 1"
    ):
        task(retry_backoff=float("inf"))(lambda: 1)


@pytest.mark.parametrize("bad", ["nan", float("nan")])
def test_a_nan_retry_jitter_is_refused(bad):
    with pytest.raises(TaskDefinitionError, match=r"expected retry_jitter to be a fraction"):
        task(retry_jitter=bad)(lambda: 1)


def test_with_options_refuses_an_endless_retry_delay_too():
    @task
    def load():
        return 1

    with pytest.raises(TaskDefinitionError, match=r"retry_delay to be a finite number"):
        load.with_options(retry_delay=float("inf"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "load --timeout inf",
            r"^%%task load: expected --timeout to be a finite number of seconds, but got inf\. "
            r"For no limit, leave --timeout out\.$",
        ),
        ("--timeout 1e400", r"^%%task: expected --timeout to be a finite number of seconds"),
        ("--timeout nan", r"expected --timeout to be a finite number of seconds, but got nan"),
        ("--retry-delay inf", r"expected --retry-delay to be a finite number of seconds"),
        ("--retry-delay -1", r"expected --retry-delay to be >= 0 seconds, but got -1\.0\.$"),
        ("--timeout 0", r"expected --timeout to be > 0 seconds, but got 0\.0\.$"),
        ("--timeout soon", r"expected --timeout to be a number of seconds, but got 'soon'\.$"),
        ("--retries 1.5", r"expected --retries to be an int >= 0, but got '1\.5'\.$"),
        ("--retries -1", r"expected --retries to be an int >= 0, but got -1\.$"),
        ("--trigger all_sucessful", r"unknown trigger 'all_sucessful'\. Did you mean"),
    ],
)
def test_a_task_line_refuses_what_task_refuses_as_a_usage_error(line, message):
    with pytest.raises(UsageError, match=message):
        parse_task_line(line)


def test_flags_left_out_take_the_table_defaults():
    name, cell = parse_task_line("report --lazy")
    assert name == "report"
    assert cell == CellOptions(lazy=True)
