"""One run of one flow: the state machine and its driver.

All state changes happen here, in the scheduler's process, under one lock. Workers
return outcomes; completing an outcome's future calls back into the engine, which
records it, works out what became ready and submits it, from whichever thread
delivered the outcome (so a chain continues on the thread that finished its
upstream). Propagation uses a work list, never recursion, so long chains are safe.

The engine composes pieces that each hold one concern and set no state: ``gate``
(triggers, inputs), ``keys`` (cache keys), ``mapping`` (children of mapped tasks),
``dispatch`` (store lookups, submits, retry timers), ``outcome`` (an attempt's
verdict), ``pause`` (waiting for ``resume``), ``reuse`` (a prior run's results) and
``outbox`` (events and hooks, delivered outside the lock).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from nbflow.engine.dispatch import Dispatcher
from nbflow.engine.gate import all_succeeded, blocked, inputs
from nbflow.engine.keys import Keys, children_key
from nbflow.engine.lookahead import LAZY, Lookahead
from nbflow.engine.mapping import Lengths, Mapper, Unmappable, parent_state
from nbflow.engine.outbox import Outbox, call_hook
from nbflow.engine.outcome import SUCCEEDED, flow_state, retry_wait, verdict
from nbflow.engine.pause import Pauses
from nbflow.engine.plan import NodePlan, compile_plan
from nbflow.engine.records import DEFERRED, AttemptRecord, Lazy, LazyItems, TaskRun
from nbflow.engine.reuse import Reuse
from nbflow.errors import SUCCESS, CancelledError, WorkerDiedError
from nbflow.events import RUN_FINISHED, RUN_STARTED, TASK_STATE, Event, EventBus
from nbflow.executor import Executor
from nbflow.executor.worker import Outcome
from nbflow.graph.flow import Flow, Node
from nbflow.graph.triggers import ALL_SUCCESSFUL
from nbflow.logs import LogRecord
from nbflow.state import FINISHED, State
from nbflow.store.cache import ResultStore

_SUCCESS = State.SUCCESS


class Engine:
    """Runs one flow once. Created and driven by ``FlowRun``; not public API."""

    def __init__(
        self,
        flow: Flow,
        executor: Executor,
        run_id: str,
        *,
        bus: EventBus | None = None,
        prior: dict[str, TaskRun] | None = None,
        echo: bool = False,
        owner: Any = None,
        store: ResultStore | None = None,
        refresh: bool = False,
    ) -> None:
        self.flow = flow
        self.plans = compile_plan(flow)
        self.executor = executor
        self.run_id = run_id
        self.bus = bus if bus is not None else EventBus()
        self.prior = prior or {}
        self.echo = echo
        self.owner = owner  # the FlowRun, handed to hooks and events
        self.store = store
        self.refresh = refresh
        self._dispatcher = Dispatcher(
            executor,
            store,
            self._on_outcome,
            durable=self._durable,
            refresh=refresh,
            echo=echo,
            name=run_id,
        )
        self.runs: dict[Node, TaskRun] = {}
        self._keys = Keys(self.runs)
        self._reuse = Reuse(
            self.prior, self.runs, self._dispatcher.lookup if store is not None else None
        )
        self._lengths = Lengths(store) if store is not None and not refresh else None
        self._mapper = Mapper(self.runs, self._dispatcher.fetch, self._lengths)
        self._plan_of: dict[Node, NodePlan] = {p.node: p for p in self.plans}
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._outbox = Outbox(self.bus, self._lock)
        self._ready: deque[TaskRun] = deque()
        self._work: deque[Callable[[], None]] = deque()
        self._dispatching = False
        self._remaining = len(self.plans)
        self._driver: threading.Thread | None = None
        self.finished = threading.Event()  # every task has ended
        self._over = False  # finished.is_set(), read without a call on the hot path
        self.closed = threading.Event()  # and hooks ran, the executor is shut down
        self.cancelled = False
        self.background = False
        self._pauses = Pauses(
            run_id, store if not echo else None, self._lock, self.finished, self.resume
        )
        self._inflight = 0
        self._local = threading.local()  # .following: submitting an attempt from _on_outcome
        self._retries_waiting = 0
        self._stalled = False
        self.state = State.PENDING
        self.start: float | None = None
        self.end: float | None = None
        for plan in self.plans:
            run = TaskRun(plan.node, plan.name)
            run._waiting = len(plan.whole) + len(plan.elementwise)
            self.runs[plan.node] = run

    # -- driving ---------------------------------------------------------------
    def drive(self) -> None:
        """Run the flow in this thread (the driver) until it ends, or, for a foreground
        run, until only tasks waiting for ``resume`` are left."""
        self._driver = threading.current_thread()
        with self._lock:
            self.state = State.RUNNING
            self.start = time.time()
            self._emit_run(RUN_STARTED, State.RUNNING)
            if not self.plans:
                self._finish_run()
            elif self.store is not None and not self.refresh and not self.prior:
                self._settle_cached()
            for plan in self.plans:  # those that wait for nothing (settling queued the rest)
                if (
                    not (plan.whole or plan.elementwise)
                    and self.runs[plan.node].state not in FINISHED
                ):
                    self._work.append(partial(self._activate, plan))
            self._drain()
            self._check_stall()
        self._outbox.flush()
        self._wait()

    def _wait(self) -> None:
        try:
            while True:
                self._dispatch()
                with self._cond:
                    while not (
                        self.finished.is_set()
                        or (self._stalled and not self.background)
                        or (self.executor.inline and self._ready)
                    ):
                        self._cond.wait()
                    if self.finished.is_set() and not self._ready:
                        break
                    if self._stalled and not self.background and not self._ready:
                        return  # paused: run.resume(...) continues
        except BaseException:
            self.cancel()
            self._close()
            raise
        self._close()

    def resume(self, name: str) -> None:
        """Let a task waiting under the ``manual_only`` trigger run."""
        with self._lock:
            found = self._pauses.release(name)
            found[1].reason = None  # no longer waiting
            self._stalled = False
            self.state = State.RUNNING
            self._gate(*found)
            self._drain()
            self._check_stall()
            self._cond.notify_all()
        self._outbox.flush()
        driving = (
            self._driver is not None
            and self._driver.is_alive()
            and (self._driver is not threading.current_thread())
        )
        if self.background and driving:
            self._kick()
            return
        self._driver = threading.current_thread()
        self._wait()

    def _check_stall(self) -> None:
        """Lock held: note when nothing can move but tasks waiting for ``resume``."""
        stalled = bool(
            self._pauses.waiting
            and not self._inflight
            and not self._retries_waiting
            and not self._ready
            and not self._work
            and not self.finished.is_set()
        )
        if stalled and not self._stalled:
            self._stalled = True
            self.state = State.PAUSED
            self._cond.notify_all()

    def _close(self) -> None:
        if self.closed.is_set():
            return
        self._dispatcher.drain()  # every result reported is written before the run ends
        self._outbox.flush()
        self._dispatcher.close(self.cancelled)
        flow = self.flow
        hooks = flow.on_success if self.state is State.SUCCESS else flow.on_failure
        if self.state is not State.CANCELLED or flow.on_failure:
            for hook in hooks:
                call_hook(hook, flow, self.owner)
        if self.bus.listeners:
            self.bus.emit(Event(RUN_FINISHED, self.run_id, time.time(), self.state, run=self.owner))
        self.closed.set()

    def cancel(self) -> None:
        """Cancel every task that has not finished; running ones are abandoned."""
        with self._lock:
            if self.finished.is_set():
                return
            self.cancelled = True
            now = time.time()
            for run in self.runs.values():
                for unit in run.children or ():
                    if unit.state not in FINISHED:
                        self._set(unit, State.CANCELLED, now, "the run was cancelled")
                if run.state not in FINISHED:
                    self._set(run, State.CANCELLED, now, "the run was cancelled")
            self._ready.clear()
            self._work.clear()
            self._pauses.waiting.clear()
            self._finish_run()
        self._outbox.flush()

    # -- state changes (lock held) -----------------------------------------------
    def _emit_run(self, kind: str, state: State) -> None:
        if self.bus.listeners:
            self._outbox.events.append(Event(kind, self.run_id, time.time(), state, run=self.owner))

    def _set(self, unit: TaskRun, state: State, now: float, reason: str | None = None) -> None:
        old = unit.state
        unit.state = state
        task = unit.node.task
        if task.on_state_change or self.flow.on_state_change:
            for hook in (*task.on_state_change, *self.flow.on_state_change):
                self._outbox.hooks.append((hook, (task, unit, old, state)))
        if reason is not None:
            unit.reason = reason
        if state in FINISHED:
            unit.end = now
            unit._inputs = None  # do not keep inputs alive once they cannot be needed
            if unit.start is None:
                unit.start = now
        bus = self.bus
        if bus.every_state if state not in FINISHED else bus.listeners:
            self._outbox.events.append(Event(TASK_STATE, self.run_id, now, state, unit, self.owner))

    def _drain(self) -> None:
        work = self._work
        while work:
            work.popleft()()

    def _gate(self, plan: NodePlan, unit: TaskRun) -> None:
        """Decide whether a unit whose upstreams are done runs, and set its inputs."""
        now = time.time()
        if plan.flat is not None:  # an element of a flatten: ends as its origin did
            unit._value, unit.key, state, reason = self._mapper.element(plan, unit.map_index)
            self._end_unit(plan, unit, state, now, reason)
            return
        trigger = plan.trigger
        if not (
            trigger is ALL_SUCCESSFUL and unit.map_index is None and all_succeeded(plan, self.runs)
        ):
            stop = blocked(plan, self.runs, unit.map_index, trigger)
            if stop is not None:
                self._end_unit(plan, unit, stop[0], now, stop[1])
                return
        sources = self._mapper.values
        if plan.sources and any(
            type(sources[up]) is LazyItems and not sources[up].loaded for up in plan.sources
        ):
            # A cached list not read: the unit may be a cache hit, which needs no item.
            unit._inputs = DEFERRED
        elif not self._build_inputs(plan, unit, now):
            return
        if trigger.pauses and unit.name not in self._pauses.resumed:
            self._set(unit, State.PAUSED, now, self._pauses.reason(unit.name))
            self._pauses.hold(plan, unit)
            return
        if self.store is not None:
            unit.key = self._keys.key(plan, unit.map_index)
        if self.prior:
            prior = self._reuse.prior_of(plan, unit)
            if prior is not None:
                state, reason = self._reuse.take(unit, prior)
                self._end_unit(plan, unit, state, now, reason)
                return
        self._ready.append(unit)

    def _build_inputs(self, plan: NodePlan, unit: TaskRun, now: float) -> bool:
        """Set ``unit``'s inputs; False when they cannot be built (then it has failed)."""
        try:
            unit._inputs = inputs(plan, self.runs, self._mapper.values, unit.map_index)
        except Exception as exc:  # an upstream value that cannot be indexed, etc.
            unit.error = exc
            self._end_unit(plan, unit, State.FAILED, now, f"could not build its inputs: {exc}")
            return False
        return True

    def _settle_cached(self) -> None:
        """End, before anything runs, every task whose cached result stands (one store
        query for the whole graph; values are read only where a task that runs needs
        them, the rest on first use)."""
        assert self.store is not None
        lookahead = Lookahead(
            self.plans, self.runs, self._keys, self.store, self._dispatcher.lookup, self._lengths
        )
        found = lookahead.settle()
        self._dispatcher.absent = lookahead.absent
        if not found:
            return
        now = time.time()
        runs = self.runs
        load = lookahead.load
        cached = State.CACHED
        # What _set does, without its checks: a pending task becomes cached, with no
        # reason; hooks on state changes take the long way.
        events = self._outbox.events if self.bus.listeners else None
        hooked = bool(self.flow.on_state_change)
        for plan in self.plans:  # upstream first, as a run that went task by task
            hit = found.get(plan.node)
            if hit is None:
                continue
            run = runs[plan.node]
            run.key, value = hit
            run._value = Lazy(run, load) if value is LAZY else value
            run.cached = True
            if hooked or plan.node.task.on_state_change:
                self._set(run, cached, now)
            else:
                run.state = cached
                run.start = run.end = now
                run._inputs = None
                if events is not None:
                    events.append(Event(TASK_STATE, self.run_id, now, cached, run, self.owner))
            for consumer in plan.consumers:
                if consumer.node in found:
                    runs[consumer.node]._waiting -= 1  # settled here too
                else:
                    self._decrement(consumer)
        self._remaining -= len(found)
        if self._remaining == 0:
            self._finish_run()

    def _activate(self, plan: NodePlan) -> None:
        """Every upstream of ``plan`` is done: run it, or expand it into children."""
        run = self.runs[plan.node]
        if not plan.mapped:
            self._gate(plan, run)
            return
        now = time.time()
        found = self._mapper.count(plan)
        if isinstance(found, Unmappable):
            if found.error is not None:
                run.error = found.error
            self._end_node(plan, run, found.state, now, found.reason)
            return
        children = self._mapper.expand(plan, run, found)
        run.start = now
        self._set(run, State.RUNNING, now)
        for unit in children:
            if unit._waiting == 0:
                self._gate(plan, unit)
        for consumer in plan.elem_consumers:
            self._decrement(consumer)
        if not children:
            run._value = []
            self._end_node(plan, run, State.SUCCESS, now)

    def _decrement(self, plan: NodePlan) -> None:
        run = self.runs[plan.node]
        run._waiting -= 1
        if run._waiting == 0 and run.state not in FINISHED:
            if (
                plan.plain
                and not self._work  # nothing before it: taking it now keeps the order
                and not self.prior
                and all_succeeded(plan, self.runs)
            ):
                # Gated at once: a plain node whose upstream tasks all succeeded is not
                # blocked, so it becomes ready (or fails, if its inputs cannot be built:
                # its own consumers then go through the work list, never recursion).
                self._gate(plan, run)
                return
            self._work.append(partial(self._activate, plan))

    def _end_unit(
        self, plan: NodePlan, unit: TaskRun, state: State, now: float, reason: str | None = None
    ) -> None:
        """A unit (a plain task run or a mapped child) has ended."""
        if unit.map_index is None:
            self._end_node(plan, unit, state, now, reason)
            return
        self._set(unit, state, now, reason)
        all_ended = self._mapper.child_ended(plan.node)
        i = unit.map_index
        for consumer in plan.elem_consumers:
            crun = self.runs[consumer.node]
            if crun.children is not None:
                child = crun.children[i]
                child._waiting -= 1
                if child._waiting == 0 and child.state not in FINISHED:
                    self._work.append(partial(self._gate, consumer, child))
        parent = self.runs[plan.node]
        if all_ended and parent.state not in FINISHED:
            self._end_node(plan, parent, parent_state(parent.children or []), now)

    def _end_node(
        self, plan: NodePlan, run: TaskRun, state: State, now: float, reason: str | None = None
    ) -> None:
        """A node has ended as a whole: release the nodes that wait for it."""
        children = run.children
        if children is not None:  # a mapped task that expanded
            key = children_key(children)
            if key is not None:
                run.key = key
            if children:
                run.start = min((c.start for c in children if c.start), default=run.start)
                run.attempts = sum(c.attempts for c in children)
                run.cached = all(c.cached for c in children)
            self._reuse.node_ended(plan, run)
        self._set(run, state, now, reason)
        if run.children is None and plan.mapped:
            # Ended before expanding: its element-wise consumers cannot expand either.
            for consumer in plan.elem_consumers:
                self._decrement(consumer)
        for consumer in plan.consumers:
            self._decrement(consumer)
        self._remaining -= 1
        if self._remaining == 0:
            self._finish_run()

    def _finish_run(self) -> None:
        if self.finished.is_set():
            return
        self.end = time.time()
        self.state = flow_state(self.flow, self.cancelled, self.runs)
        self._over = True
        self.finished.set()
        self._cond.notify_all()

    # -- dispatch and outcomes -----------------------------------------------------
    def _kick(self) -> None:
        if self.executor.inline and threading.current_thread() is not self._driver:
            with self._cond:
                self._cond.notify_all()
            return
        self._dispatch()
        if self._pauses.waiting:
            with self._cond:
                self._cond.notify_all()

    def _dispatch(self) -> None:
        """Submit ready units (cache hits end at once). One thread dispatches at a time,
        until nothing is ready (it looks, and stops, under the lock)."""
        with self._lock:
            if self._dispatching or not self._ready:
                return
            self._dispatching = True
        try:
            while True:
                with self._lock:
                    if not self._ready:
                        self._dispatching = False
                        return
                    batch = list(self._ready)
                    self._ready.clear()
                hits = self._dispatcher.hits(batch)
                attempts = []
                with self._lock:
                    now = time.time()
                    for unit in batch:
                        if unit.state in FINISHED:
                            continue
                        if unit.key in hits and unit.attempts == 0 and unit.node.task.cache:
                            unit._value = hits[unit.key]
                            unit.cached = True
                            self._end_unit(self._plan_of[unit.node], unit, State.CACHED, now)
                            continue
                        if unit._inputs is DEFERRED and not self._build_inputs(
                            self._plan_of[unit.node], unit, now
                        ):
                            continue
                        unit.attempts += 1
                        self._set(unit, State.RUNNING, now)
                        attempt = self._dispatcher.attempt(unit)
                        if unit._loop is not None:  # a LOOP goes on where it failed
                            attempt = attempt._replace(loop=unit._loop)
                        attempts.append((unit, attempt))
                    self._inflight += len(attempts)
                    if self._work:
                        self._drain()
                    if self._pauses.waiting:
                        self._check_stall()
                self._outbox.flush()
                self._dispatcher.submit(attempts)
        except BaseException:
            with self._lock:
                self._dispatching = False
            raise

    def _durable(self, units: list[Any]) -> None:
        """The group writer has written these task runs' results: tell their ends."""
        self._outbox.release(units)
        self._outbox.flush()

    def _on_outcome(self, unit: TaskRun, outcome: Outcome, held: bool = False) -> None:
        """An attempt ended (called by the dispatcher in the thread that completed it;
        ``held``: its result is being written, so its end is told once it is)."""
        plan = self._plan_of[unit.node]
        task = unit.node.task
        follow = None  # the attempt of a unit this makes ready, submitted from here
        with self._lock:
            self._inflight -= 1
            if unit.state in FINISHED or self._over:
                return
            if outcome.logs:
                unit.logs.extend(outcome.logs)
            if outcome.lost:
                self._record_lost(unit, outcome.lost)
            if unit.start is None:
                unit.start = outcome.start  # the first attempt's start, not its wait for a worker
            error = outcome.error
            unit._loop = outcome.loop  # LOOP: where a retry goes on
            now = outcome.end or time.time()
            # A success needs no judging (the common case costs no call).
            judged = (
                SUCCEEDED
                if error is None
                else verdict(error, outcome.timed_out, unit.attempts, task)
            )
            state = judged.state
            if error is None:
                unit._value = outcome.value
                unit.error = None
                unit.traceback = None
                if held:
                    self._outbox.holding.add(id(unit))
            elif isinstance(error, SUCCESS):
                unit._value = error.result
                error = None  # a signal, not an error: the attempt succeeded
            elif judged.attempt is not State.SKIPPED:
                unit.error = error
                unit.traceback = outcome.traceback
            unit.history.append(
                AttemptRecord(unit.attempts, outcome.start, now, judged.attempt, error)
            )
            if state is State.RETRYING:
                self._set(unit, state, now, judged.reason)
                self._hook(task.on_retry, unit)
                self._schedule_retry(
                    unit,
                    retry_wait(judged.delay, task.retry_backoff, task.retry_jitter, unit.attempts),
                )
            else:
                waited = len(self._ready)
                self._end_unit(plan, unit, state, now, judged.reason)
                if state is _SUCCESS:
                    if task.on_success:
                        self._hook(task.on_success, unit)
                    if waited == 0 and len(self._ready) == 1 and not self.executor.inline:
                        follow = self._follow()
                elif state is not State.SKIPPED:
                    self._hook(task.on_failure, unit)
            if self._work:
                self._drain()
            if self._pauses.waiting:
                self._check_stall()
        self._outbox.flush()
        if follow is not None:
            # An executor that ran the attempt here, against its word (not ``inline``),
            # would come back in: then this thread takes no further attempt this way.
            local = self._local
            local.following = True
            try:
                self._dispatcher.submit([follow])
            finally:
                local.following = False
        if (self._ready and not self._dispatching) or self._pauses.waiting:
            # (Nothing ready: nothing to dispatch. A thread dispatching takes what became
            # ready: it looks again before it stops, and the outcome of an attempt run
            # inline comes within its dispatch.)
            self._kick()

    def _follow(self) -> tuple[TaskRun, Any] | None:
        """Lock held, one unit ready and nothing else waiting: its attempt, to submit
        from here at once, as ``_dispatch`` would (a chain goes on without a dispatch
        round), when there is nothing for ``_dispatch`` to decide: it is a first
        attempt with its inputs and the store has nothing to look up for it. Only for
        an executor that runs attempts elsewhere (not ``inline``: the caller checks).
        None: ``_dispatch`` takes it."""
        unit = self._ready[0]
        if (
            getattr(self._local, "following", False)
            or unit.attempts
            or unit._inputs is DEFERRED
            or unit._loop is not None
            or self._dispatcher.looks_up(unit)
        ):
            return None
        self._ready.clear()
        unit.attempts = 1
        self._set(unit, State.RUNNING, time.time())
        self._inflight += 1
        return unit, self._dispatcher.attempt(unit)

    def _record_lost(self, unit: TaskRun, lost: list[tuple[float, float, str]]) -> None:
        """Lock held: runs of an attempt lost with their worker count as failed attempts."""
        for start, end, why in lost:
            if unit.start is None:
                unit.start = start
            error = WorkerDiedError(why)
            unit.history.append(AttemptRecord(unit.attempts, start, end, State.FAILED, error))
            unit.logs.append(LogRecord(end, "WARNING", why))
            unit.attempts += 1

    def fetch(self, value: Any) -> Any:
        """``value`` itself, or, for a handle the executor left its value behind, that
        value (a list is fetched element by element, in one round trip)."""
        return self._dispatcher.fetch(value)

    def _schedule_retry(self, unit: TaskRun, wait: float) -> None:
        if wait <= 0:
            self._ready.append(unit)
            return

        def due() -> None:
            with self._lock:
                self._retries_waiting -= 1
                if unit.state is not State.RETRYING or self.finished.is_set():
                    return
                self._ready.append(unit)
            self._kick()

        self._retries_waiting += 1
        self._dispatcher.call_later(wait, due)

    def _hook(self, hooks: tuple[Callable[..., Any], ...], unit: TaskRun) -> None:
        for hook in hooks:
            self._outbox.hooks.append((hook, (unit.node.task, unit)))


def cancelled_error(run: TaskRun) -> CancelledError:
    return CancelledError(
        f"Task '{run.name}' was cancelled: {run.reason or 'the run was cancelled'}."
    )
