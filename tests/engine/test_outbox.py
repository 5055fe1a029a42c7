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
