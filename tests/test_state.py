"""Tests of the named groups of states in ``nbflow.state``."""

from __future__ import annotations

import pytest

from nbflow import state
from nbflow.state import State


@pytest.mark.parametrize("s", list(State))
def test_the_properties_of_a_state_agree_with_the_groups(s):
    assert s.is_finished == (s in state.FINISHED)
    assert s.is_successful == (s in state.SUCCEEDED)
    assert s.is_ok == (s in state.OK)
    assert s.is_failed == (s in state.FAILED_STATES)


def test_every_state_is_in_progress_paused_or_finished_and_only_one():
    groups = [state.IN_PROGRESS, {State.PAUSED}, state.FINISHED]
    for s in State:
        assert sum(s in g for g in groups) == 1, s


def test_a_finished_state_either_keeps_a_run_ok_or_makes_it_fail():
    assert state.OK | state.NOT_OK == state.FINISHED
    assert not state.OK & state.NOT_OK
    assert {
        State.FAILED,
        State.TIMED_OUT,
        State.UPSTREAM_FAILED,
        State.CANCELLED,
    } == state.NOT_OK


def test_a_failing_state_has_an_error_of_its_own_or_is_blocked():
    assert state.ERRORED | state.BLOCKED == state.NOT_OK
    assert not state.ERRORED & state.BLOCKED
    assert {State.FAILED, State.TIMED_OUT, State.CANCELLED} == state.ERRORED_OR_CANCELLED


def test_a_finished_state_that_did_not_run_has_no_value_and_no_error():
    assert {State.UPSTREAM_FAILED, State.SKIPPED, State.CANCELLED} == state.NOT_RUN
    assert not state.NOT_RUN & (state.SUCCEEDED | state.ERRORED)
    assert state.NOT_RUN | state.SUCCEEDED | state.ERRORED == state.FINISHED
