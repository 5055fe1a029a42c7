"""Manual pauses on their own (no inbox, so no poller thread): holding, releasing and
the messages shown."""

from __future__ import annotations

import threading

import pytest

from nbflow import Flow, task
from nbflow.engine.pause import Pauses
from nbflow.engine.plan import compile_plan
from nbflow.engine.records import TaskRun
from nbflow.errors import NbflowError


@task(trigger="manual_only")
def publish() -> None:
    return None


def _waiting_unit():
    with Flow("pause") as flow:
        node = publish()
    (plan,) = compile_plan(flow)
    return plan, TaskRun(node, "publish")


def _pauses(resumed: list[str] | None = None) -> Pauses:
    calls = resumed if resumed is not None else []
    return Pauses(
        "20261202-000000-abcdef", None, threading.RLock(), threading.Event(), calls.append
    )


def test_a_paused_task_says_every_way_to_resume_it():
    assert _pauses().reason("publish") == (
        "waiting: resume it with run.resume('publish'), the widget's Resume button or "
        "nbflow resume 20261202-000000-abcdef 'publish'"
    )


def test_a_held_task_waits_until_released_and_is_then_resumed():
    pauses = _pauses()
    plan, unit = _waiting_unit()
    pauses.hold(plan, unit)
    assert list(pauses.waiting) == ["publish"]
    assert "publish" not in pauses.resumed
    assert pauses.release("publish") == (plan, unit)
    assert pauses.waiting == {}
    assert pauses.resumed == {"publish"}


def test_releasing_a_task_that_does_not_wait_names_those_that_do():
    pauses = _pauses()
    with pytest.raises(NbflowError, match=r"Task 'load' is not waiting .*\(tasks waiting: none\)"):
        pauses.release("load")
    pauses.hold(*_waiting_unit())
    with pytest.raises(NbflowError, match=r"\(tasks waiting: 'publish'\)\.$"):
        pauses.release("load")
    pauses.release("publish")
    with pytest.raises(NbflowError, match="not waiting to be resumed"):
        pauses.release("publish")


def test_without_an_inbox_no_poller_is_started():
    before = threading.active_count()
    pauses = _pauses()
    pauses.hold(*_waiting_unit())
    assert threading.active_count() == before
