"""The outbox on its own: events and hook calls delivered in the order recorded, a
failing hook logged and nothing else changed."""

from __future__ import annotations

import logging
import threading

from nbflow.engine.outbox import Outbox, call_hook
from nbflow.events import TASK_STATE, Event, EventBus
from nbflow.state import State


def _event(n: int) -> Event:
    return Event(TASK_STATE, "run", float(n), State.RUNNING)


def test_events_then_hooks_are_delivered_in_the_order_recorded_and_only_once():
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(lambda e: seen.append(e.time))
    outbox = Outbox(bus, threading.RLock())
    outbox.events.extend([_event(1), _event(2)])
    outbox.hooks.append((seen.append, ("hook",)))
    outbox.events.append(_event(3))
    outbox.flush()
    assert seen == [1.0, 2.0, 3.0, "hook"]
    outbox.flush()
    assert seen == [1.0, 2.0, 3.0, "hook"]
    assert (outbox.events, outbox.hooks) == ([], [])


def test_a_hook_that_raises_is_logged_and_the_next_one_still_runs(caplog):
    def broken() -> None:
        raise ValueError("oops")

    called: list[str] = []
    outbox = Outbox(EventBus(), threading.RLock())
    outbox.hooks.extend([(broken, ()), (called.append, ("after",))])
    with caplog.at_level(logging.ERROR, logger="nbflow"):
        outbox.flush()
    assert called == ["after"]
    assert "<locals>.broken' raised; the run's outcome is unchanged" in caplog.text


def test_call_hook_passes_its_arguments():
    got: list[tuple[int, int]] = []
    call_hook(lambda a, b: got.append((a, b)), 1, 2)
    assert got == [(1, 2)]


def test_a_listener_of_ends_only_hears_runs_and_the_states_task_runs_end_in():
    """The history subscribes for ends only: it hears no state a task run passes
    through (running, retrying), while a listener of every state hears them all."""
    from nbflow import Flow, task
    from nbflow.engine.scheduler import Engine
    from nbflow.events import RUN_FINISHED, RUN_STARTED
    from nbflow.executor.local import SequentialExecutor

    @task(retries=1, log_prints=False)
    def flaky(calls: list[int]) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("once")
        return len(calls)

    def run(bus: EventBus) -> None:
        with Flow("ends-only") as flow:
            flaky([])
        engine = Engine(flow, SequentialExecutor(), "r1", bus=bus)
        engine.drive()
        assert engine.state is State.SUCCESS

    ends: list[tuple[str, str]] = []
    every: list[tuple[str, str]] = []
    bus = EventBus()
    unsubscribe = bus.subscribe(lambda e: ends.append((e.kind, e.state.value)), ends_only=True)
    assert bus.every_state == ()
    run(bus)
    assert ends == [(RUN_STARTED, "running"), (TASK_STATE, "success"), (RUN_FINISHED, "success")]
    bus.subscribe(lambda e: every.append((e.kind, e.state.value)))
    ends.clear()
    run(bus)
    assert [s for k, s in every if k == TASK_STATE] == ["running", "retrying", "running", "success"]
    assert ends == [(RUN_STARTED, "running"), (TASK_STATE, "success"), (RUN_FINISHED, "success")]
    unsubscribe()
    assert len(bus.listeners) == len(bus.every_state) == 1
