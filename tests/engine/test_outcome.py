"""The verdict on an attempt: which state each outcome leads to, as a table."""

from __future__ import annotations

import pytest

from nbflow import FAIL, RETRY, SKIP, SUCCESS, State, task
from nbflow.engine.outcome import SUCCEEDED, Verdict, retry_wait, run_state, verdict
from nbflow.errors import TaskTimeoutError


def _fn() -> None:
    return None


plain = task(_fn)
retried = task(retries=2, retry_delay=5.0)(_fn)
only_os = task(retries=2, retry_on=OSError)(_fn)

TABLE = [
    # error, timed out, attempt, task -> recorded attempt state, new state
    (None, False, 1, plain, State.SUCCESS, State.SUCCESS),
    (SKIP("later"), False, 1, retried, State.SKIPPED, State.SKIPPED),
    (SUCCESS("done early", result=3), False, 1, retried, State.SUCCESS, State.SUCCESS),
    (ValueError("bad"), False, 1, plain, State.FAILED, State.FAILED),
    (ValueError("bad"), False, 1, retried, State.FAILED, State.RETRYING),
    (ValueError("bad"), False, 2, retried, State.FAILED, State.RETRYING),
    (ValueError("bad"), False, 3, retried, State.FAILED, State.FAILED),
    (ValueError("bad"), False, 1, only_os, State.FAILED, State.FAILED),
    (OSError("disk"), False, 1, only_os, State.FAILED, State.RETRYING),
    (FAIL("give up"), False, 1, retried, State.FAILED, State.FAILED),
    (RETRY("again"), False, 1, plain, State.FAILED, State.FAILED),
    (RETRY("again"), False, 1, only_os, State.FAILED, State.RETRYING),
    (TaskTimeoutError("slow"), False, 1, plain, State.TIMED_OUT, State.TIMED_OUT),
    (RuntimeError("killed"), True, 1, plain, State.TIMED_OUT, State.TIMED_OUT),
    (TaskTimeoutError("slow"), False, 1, retried, State.TIMED_OUT, State.RETRYING),
]


@pytest.mark.parametrize(("error", "timed_out", "attempt", "t", "recorded", "state"), TABLE)
def test_each_outcome_becomes_the_state_of_the_table(error, timed_out, attempt, t, recorded, state):
    judged = verdict(error, timed_out, attempt, t)
    assert (judged.attempt, judged.state) == (recorded, state)


def test_a_success_is_the_shared_verdict_with_no_reason():
    assert verdict(None, False, 1, plain) is SUCCEEDED
    assert SUCCEEDED.reason is None


def test_signals_give_their_message_as_the_reason():
    assert verdict(SKIP("not today"), False, 1, plain).reason == "not today"
    assert verdict(SKIP(), False, 1, plain).reason == "raised SKIP"
    assert verdict(SUCCESS("early"), False, 1, plain).reason == "early"
    assert verdict(SUCCESS(), False, 1, plain).reason is None


def test_a_failure_names_the_error_type_and_a_retry_names_the_attempt():
    assert verdict(ValueError("bad"), False, 1, plain).reason == "ValueError: bad"
    assert verdict(ValueError("bad"), False, 2, retried) == Verdict(
        State.FAILED, State.RETRYING, "attempt 2 failed: bad", 5.0
    )


def test_a_retry_the_task_asked_for_does_not_wait_the_retry_delay():
    retry_os = task(retries=1, retry_delay=5.0, retry_on=OSError)(_fn)
    assert verdict(RETRY("now"), False, 1, retry_os).delay == 0.0
    assert verdict(OSError("disk"), False, 1, retry_os).delay == 5.0


def test_retry_wait_grows_by_the_backoff_and_spreads_by_the_jitter():
    assert retry_wait(1.0, 2.0, 0.0, 1) == 1.0
    assert retry_wait(1.0, 2.0, 0.0, 3) == 4.0
    assert retry_wait(0.0, 2.0, 0.5, 3) == 0.0
    assert retry_wait(2.0, 1.0, 0.5, 1, uniform=lambda lo, hi: hi) == 3.0
    assert retry_wait(2.0, 1.0, 0.5, 1, uniform=lambda lo, hi: lo) == 1.0


@pytest.mark.parametrize(
    ("cancelled", "states", "state"),
    [
        (False, [State.SUCCESS, State.CACHED, State.SKIPPED], State.SUCCESS),
        (False, [], State.SUCCESS),
        (False, [State.SUCCESS, State.UPSTREAM_FAILED], State.FAILED),
        (False, [State.SUCCESS, State.CANCELLED], State.FAILED),
        (True, [State.SUCCESS], State.CANCELLED),
    ],
)
def test_a_run_succeeds_only_when_every_deciding_task_ended_ok(cancelled, states, state):
    assert run_state(cancelled, states) is state
