"""Trigger objects over lists of upstream states: met or not, why, and what follows."""

from __future__ import annotations

import pickle

import pytest

from nbflow import State, some_failed
from nbflow.errors import TaskDefinitionError
from nbflow.graph.triggers import NAMED, TRIGGERS, SomeFailed, Trigger, as_trigger

S, C, K = State.SUCCESS, State.CACHED, State.SKIPPED
F, T, U, X = State.FAILED, State.TIMED_OUT, State.UPSTREAM_FAILED, State.CANCELLED

TABLE = [
    ("all_successful", [S, C, K], True),
    ("all_successful", [S, F], False),
    ("all_finished", [F, T, U], True),
    ("any_failed", [S, T], True),
    ("any_failed", [S, K], False),
    ("all_failed", [F, U, T], True),
    ("all_failed", [F, S], False),
    ("any_successful", [F, C], True),
    ("any_successful", [F, K], True),  # a skipped upstream counts, as in Prefect 1
    ("any_successful", [F, F], False),
    ("manual_only", [S, C], True),
    ("manual_only", [S, U], False),
]


@pytest.mark.parametrize(("name", "states", "met"), TABLE)
def test_each_named_trigger_is_met_by_the_states_of_the_table(name, states, met):
    assert NAMED[name].met(states) is met


@pytest.mark.parametrize("name", TRIGGERS)
def test_every_trigger_is_met_when_there_are_no_upstream_tasks(name):
    assert NAMED[name].met([])
    assert some_failed(at_least=1).met([])


def test_the_names_accepted_are_the_seven_named_triggers_in_their_order():
    assert TRIGGERS == (
        "all_successful",
        "all_finished",
        "any_failed",
        "all_failed",
        "any_successful",
        "not_all_skipped",
        "manual_only",
    )
    assert all(str(NAMED[n]) == n for n in TRIGGERS)


def test_only_triggers_that_wait_for_success_blame_the_upstream_when_unmet():
    blaming = {n for n in TRIGGERS if NAMED[n].on_unmet is State.UPSTREAM_FAILED}
    assert blaming == {"all_successful", "manual_only"}
    assert all(NAMED[n].on_unmet is State.SKIPPED for n in TRIGGERS if n not in blaming)
    assert some_failed().on_unmet is State.SKIPPED


def test_only_manual_only_pauses():
    assert [n for n in TRIGGERS if NAMED[n].pauses] == ["manual_only"]
    assert not some_failed().pauses


def test_an_unmet_trigger_says_why():
    assert NAMED["any_failed"].why_not([S]) == "no upstream task failed"
    assert NAMED["all_failed"].why_not([S]) == "not every upstream task failed"
    assert NAMED["any_successful"].why_not([F]) == "no upstream task succeeded"


def test_some_failed_counts_and_fractions_bound_the_failures():
    assert some_failed(at_least=2).met([F, F, S])
    assert not some_failed(at_least=2).met([F, S, S])
    assert some_failed(at_least=2).why_not([F, S, S]) == (
        "1 of 3 upstream tasks failed, fewer than 2"
    )
    assert not some_failed(at_most=0.5).met([F, F, S])
    assert some_failed(at_most=0.5).why_not([F, F, S]) == (
        "2 of 3 upstream tasks failed, more than 0.5"
    )
    assert some_failed(at_least=0.5, at_most=0.5).met([F, S])
    assert some_failed(at_least=1, at_most=1).why_not([F, S]) == ""


def test_some_failed_is_a_plain_value_that_travels():
    trigger = some_failed(at_least=1, at_most=0.5)
    assert isinstance(trigger, Trigger)
    assert trigger == SomeFailed("some_failed(at_least=1, at_most=0.5)", 1, 0.5)
    assert str(trigger) == "some_failed(at_least=1, at_most=0.5)"
    assert pickle.loads(pickle.dumps(trigger)) == trigger
    assert pickle.loads(pickle.dumps(NAMED["manual_only"])) == NAMED["manual_only"]


def test_as_trigger_resolves_names_and_passes_objects_through():
    trigger = some_failed()
    assert as_trigger(trigger) is trigger
    assert as_trigger("any_failed") is NAMED["any_failed"]
    with pytest.raises(TaskDefinitionError, match="unknown trigger 'sometimes'"):
        as_trigger("sometimes")
