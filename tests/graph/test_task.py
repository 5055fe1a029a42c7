"""Tests of ``@task``: defining tasks, validating their options, immutability, pickling,
and calling a task outside a flow (it runs at once)."""

from __future__ import annotations

import datetime as dt
import pickle
import re

import pytest

from nbflow import Task, task, unmapped
from nbflow.errors import TaskDefinitionError


@task(cache=False, retries=2, retry_delay=0.25, tags=("io",), trigger="all_finished")
def double(x):
    """Twice x."""
    return 2 * x


def plain_add(x, y):
    return x + y


# -- defining tasks ----------------------------------------------------------------------


def test_bare_decorator_makes_a_task_with_default_options():
    @task
    def inc(x):
        """Add one."""
        return x + 1

    assert isinstance(inc, Task)
    assert inc.name == "inc"
    assert inc.retries == 0
    assert inc.retry_delay == 0.0
    assert inc.timeout is None
    assert inc.trigger == "all_successful"
    assert inc.cache is True
    assert inc.tags == ()
    assert inc.__name__ == "inc"
    assert inc.__doc__ == "Add one."
    assert inc.__wrapped__ is inc.fn


def test_decorator_with_options_keeps_every_option():
    def hook(task, task_run):
        return None

    @task(
        name="load",
        retries=3,
        retry_delay=0.5,
        retry_backoff=2.0,
        retry_jitter=0.1,
        retry_on=(OSError,),
        timeout=30,
        trigger="any_failed",
        cache=False,
        cache_expire=60,
        cache_version=2,
        tags=("io", "slow"),
        log_prints=False,
        on_failure=hook,
        on_retry=[hook, hook],
        on_success=None,
    )
    def load(path):
        return path

    assert load.name == "load"
    assert load.retries == 3
    assert load.retry_delay == 0.5
    assert load.retry_backoff == 2.0
    assert load.retry_jitter == 0.1
    assert load.retry_on == (OSError,)
    assert load.timeout == 30.0
    assert load.trigger == "any_failed"
    assert load.cache is False
    assert load.cache_expire == 60.0
    assert load.cache_version == "2"
    assert load.tags == ("io", "slow")
    assert load.log_prints is False
    assert load.on_failure == (hook,)
    assert load.on_retry == (hook, hook)
    assert load.on_success == ()


def test_task_called_as_a_function_wraps_without_replacing_the_function():
    add = task(plain_add, retries=2, cache=False)

    assert isinstance(add, Task)
    assert add.name == "plain_add"
    assert add.retries == 2
    assert add.fn is plain_add
    assert plain_add(1, 2) == 3
    assert add(1, 2) == 3


def test_name_option_renames_the_task():
    @task(name="load_csv", cache=False)
    def load(path):
        return path.upper()

    assert load.name == "load_csv"
    assert load("a.csv") == "A.CSV"


def test_a_single_exception_type_is_accepted_as_retry_on():
    @task(retry_on=OSError)
    def load(path):
        return path

    assert load.retry_on == (OSError,)


def test_timedelta_is_accepted_for_retry_delay_cache_expire_and_timeout():
    @task(
        retry_delay=dt.timedelta(milliseconds=500),
        cache_expire=dt.timedelta(hours=1),
        timeout=dt.timedelta(minutes=2),
    )
    def load(path):
        return path

    assert load.retry_delay == 0.5
    assert load.cache_expire == 3600.0
    assert load.timeout == 120.0


# -- options are validated when the decorator runs ----------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_retries_that_are_not_a_non_negative_int_are_refused_naming_the_task(bad):
    with pytest.raises(
        TaskDefinitionError,
        match=rf"Task 'load': expected retries to be an int >= 0, but got {bad!r}\.",
    ):

        @task(retries=bad)
        def load(path):
            return path


def test_negative_retry_delay_is_refused_naming_the_task():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load': expected retry_delay to be >= 0 seconds, but got -1\.",
    ):

        @task(retry_delay=-1)
        def load(path):
            return path


def test_negative_timedelta_retry_delay_is_refused():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load': expected retry_delay to be >= 0 seconds, but got -2\.0\.",
    ):

        @task(retry_delay=dt.timedelta(seconds=-2))
        def load(path):
            return path


def test_retry_delay_that_is_not_a_number_says_what_it_accepts():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load': expected retry_delay to be a number of seconds or a "
        r"datetime\.timedelta, but got '5s'\.",
    ):

        @task(retry_delay="5s")
        def load(path):
            return path


@pytest.mark.parametrize("bad", [0, -1, dt.timedelta(0)])
def test_timeout_that_is_not_positive_is_refused(bad):
    with pytest.raises(
        TaskDefinitionError, match=r"Task 'load': expected timeout to be > 0 seconds, but got"
    ):

        @task(timeout=bad)
        def load(path):
            return path


def test_cache_expire_of_zero_is_refused():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load': expected cache_expire to be > 0 seconds, but got 0\.",
    ):

        @task(cache_expire=0)
        def load(path):
            return path


def test_unknown_trigger_is_refused_with_a_suggestion_and_the_choices():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'report': unknown trigger 'all_succesful'\. Did you mean 'all_successful'\? "
        r"Choose one of: all_successful, all_finished, any_failed, all_failed, any_successful, "
        r"not_all_skipped, manual_only\.",
    ):

        @task(trigger="all_succesful")
        def report(x):
            return x


@pytest.mark.parametrize("bad", [ValueError("boom"), "OSError", (int,), (OSError, 3)])
def test_retry_on_that_is_not_exception_types_is_refused(bad):
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load': expected retry_on to be an exception type or a tuple of exception "
        r"types \(e\.g\. retry_on=\(OSError,\)\)",
    ):

        @task(retry_on=bad)
        def load(path):
            return path


def test_retry_backoff_below_one_is_refused():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load': expected retry_backoff to be a number >= 1 .*but got 0\.5\.",
    ):

        @task(retry_backoff=0.5)
        def load(path):
            return path


def test_hook_that_is_not_callable_is_refused():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load': expected on_failure to be a callable hook\(task, task_run\)",
    ):

        @task(on_failure="notify")
        def load(path):
            return path


@pytest.mark.parametrize("bad", [5, "not a function", None])
def test_decorating_something_that_is_not_callable_is_refused(bad):
    with pytest.raises(
        TaskDefinitionError,
        match=rf"@task needs a function, but got {bad!r} of type {type(bad).__name__}\.",
    ):
        Task(bad)


def test_task_given_a_non_callable_directly_is_refused():
    with pytest.raises(TaskDefinitionError, match=r"@task needs a function, but got 5 of type int"):
        task(5)


def test_decorating_a_task_again_says_to_use_with_options():
    @task
    def load(path):
        return path

    with pytest.raises(
        TaskDefinitionError,
        match=r"'load' is already a task\. To change its options, use "
        r"load\.with_options\(\.\.\.\) instead of decorating it again\.",
    ):
        task(load)
    with pytest.raises(TaskDefinitionError, match=r"load\.with_options\(\.\.\.\)"):
        task(retries=3)(load)


def test_unknown_option_is_refused_with_a_suggestion():
    with pytest.raises(
        TaskDefinitionError,
        match=r"@task got an unknown option 'retires'\. Did you mean 'retries'\? Options are: ",
    ):

        @task(retires=3)
        def load(path):
            return path


def test_unknown_option_given_with_the_function_names_the_task():
    # task(fn, ...) knows which function it is decorating: the error should say so.
    with pytest.raises(TaskDefinitionError, match=r"'plain_add'.*Did you mean 'retries'\?"):
        task(plain_add, retires=3)


def test_a_string_passed_to_task_says_to_use_name():
    with pytest.raises(
        TaskDefinitionError,
        match=r"@task got the string 'load' where a function was expected\. "
        r"To name a task, write @task\(name='load'\)\.",
    ):

        @task("load")
        def load(path):
            return path


def test_an_empty_name_is_refused():
    with pytest.raises(
        TaskDefinitionError, match=r"Task 'load': expected name to be a non-empty string"
    ):

        @task(name=" ")
        def load(path):
            return path


# -- immutability and with_options ------------------------------------------------------


def test_setting_an_option_on_a_task_is_refused_and_suggests_with_options():
    with pytest.raises(
        AttributeError,
        match=r"Task 'double' is immutable; use double\.with_options\(retries=\.\.\.\)",
    ):
        double.retries = 5
    assert double.retries == 2


def test_deleting_an_option_of_a_task_is_refused():
    @task(retries=2)
    def load(path):
        return path

    with pytest.raises(AttributeError, match=r"Task 'load' is immutable"):
        del load.retries
    assert load.retries == 2


def test_with_options_returns_a_copy_that_keeps_the_other_options():
    faster = double.with_options(retries=5, name="double_fast")

    assert faster is not double
    assert faster.retries == 5
    assert faster.name == "double_fast"
    assert faster.retry_delay == 0.25
    assert faster.tags == ("io",)
    assert faster.trigger == "all_finished"
    assert faster.cache is False
    assert faster.fn is double.fn
    # the original is unchanged
    assert double.retries == 2
    assert double.name == "double"
    assert faster(4) == 8


def test_with_options_validates_the_new_options():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'double': expected retries to be an int >= 0, but got -3\.",
    ):
        double.with_options(retries=-3)


def test_with_options_refuses_an_unknown_option_naming_the_task():
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'double': unknown option 'retry_delays'\. Did you mean 'retry_delay'\?",
    ):
        double.with_options(retry_delays=1)


def test_with_options_accepts_a_timedelta():
    slower = double.with_options(retry_delay=dt.timedelta(seconds=3))

    assert slower.retry_delay == 3.0
    assert double.retry_delay == 0.25


# -- pickling ---------------------------------------------------------------------------


def test_a_module_level_task_pickles_with_its_options():
    copy = pickle.loads(pickle.dumps(double))

    assert isinstance(copy, Task)
    assert copy.name == "double"
    assert copy.retries == 2
    assert copy.retry_delay == 0.25
    assert copy.tags == ("io",)
    assert copy.trigger == "all_finished"
    assert copy(21) == 42


def test_a_task_of_a_module_level_function_pickles():
    add = task(plain_add, retries=1, cache=False)

    copy = pickle.loads(pickle.dumps(add))

    assert copy.retries == 1
    assert copy.fn is plain_add
    assert copy(2, 3) == 5


# -- calling a task outside a flow runs it now ------------------------------------------


def test_task_called_outside_a_flow_runs_now_and_returns_the_value():
    calls = []

    @task(cache=False)
    def inc(x):
        calls.append(x)
        return x + 1

    assert inc(1) == 2
    assert inc(x=41) == 42
    assert calls == [1, 41]


def test_map_outside_a_flow_returns_the_list_of_results():
    @task(cache=False)
    def scale(x, factor):
        return x * factor

    assert scale.map([1, 2, 3], unmapped(10)) == [10, 20, 30]
    assert scale.map([1, 2], [3, 4]) == [3, 8]
    assert scale.map([], unmapped(2)) == []


def test_task_outside_a_flow_is_retried_per_its_options():
    attempts = []

    @task(retries=2, cache=False)
    def flaky(x):
        attempts.append(x)
        if len(attempts) < 3:
            raise OSError("not yet")
        return x * 10

    assert flaky(7) == 70
    assert attempts == [7, 7, 7]


def test_task_outside_a_flow_raises_its_own_error():
    @task(cache=False)
    def broken(x):
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match=r"bad 3"):
        broken(3)


def test_task_outside_a_flow_with_a_wrong_argument_suggests_the_right_one():
    @task(cache=False)
    def load(path):
        return path

    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load' got an unexpected argument 'pth'\. Did you mean 'path'\?",
    ):
        load(pth="a.csv")


def test_wait_for_outside_a_flow_is_refused():
    @task(cache=False)
    def load(path):
        return path

    with pytest.raises(
        TaskDefinitionError, match=r"Task 'load': wait_for= only orders tasks inside 'with Flow"
    ):
        load("a.csv", wait_for=[load])


@pytest.mark.parametrize("bad", [5, ["etl", 5]])
def test_tags_that_are_not_strings_are_refused_naming_the_task(bad):
    message = f"Task 'load': expected tags to be strings, but got {bad!r}."
    with pytest.raises(TaskDefinitionError, match=re.escape(message)):

        @task(tags=bad)
        def load():
            return 1
