"""``FlowRun``: the handle of one run of a flow (results, states, retry, cancel)."""

from __future__ import annotations

import logging
import secrets
import threading
import time
import warnings
from functools import partial
from typing import TYPE_CHECKING, Any

from nbflow import settings
from nbflow.engine.display import presenter, start_shown
from nbflow.engine.records import TaskRun
from nbflow.engine.scheduler import Engine, cancelled_error
from nbflow.errors import NbflowWarning, RunError, UpstreamFailedError
from nbflow.events import RUN_FINISHED, RUN_STARTED, Event, EventBus, Listener, process_listeners
from nbflow.executor import SequentialExecutor, resolve_executor
from nbflow.graph.flow import Call, Flow, Node
from nbflow.graph.task import Task
from nbflow.state import IN_PROGRESS, NOT_OK, State
from nbflow.store.base import ResultStore, open_store
from nbflow.store.file import home_of
from nbflow.store.history import open_history
from nbflow.store.home import DamagedStoreError

if TYPE_CHECKING:
    import graphviz
    import pandas as pd

_RUN_OPTIONS = ("executor", "max_workers", "background", "listeners", "refresh", "store")


def new_run_id() -> str:
    """A readable, unique, sortable run id: ``20261122-101500-3fa2c1``."""
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class FlowRun:
    """One run of a flow: its state, the run of each task, their results.

    >>> from nbflow import Flow, task
    >>> @task(cache=False)
    ... def half(x):
    ...     return x / 2
    >>> with Flow("doc-run") as flow:
    ...     h = half(3)
    >>> run = flow.run()
    >>> run.ok, run.result(h), run[h].state.value
    (True, 1.5, 'success')
    """

    def __init__(
        self, flow: Flow, engine: Engine, executor_spec: Any, max_workers: int | None
    ) -> None:
        self.flow = flow
        self.id = engine.run_id
        self._engine = engine
        self._executor_spec = executor_spec
        self._max_workers = max_workers
        self._thread: threading.Thread | None = None
        self._source_flow = flow
        self.parameters: dict[str, Any] = {}

    # -- overall -----------------------------------------------------------------
    @property
    def executor_spec(self) -> Any:
        """The executor as the run was asked for it: a name such as ``"threads"``, or
        an executor object (``retry()`` reuses it)."""
        return self._executor_spec

    @property
    def state(self) -> State:
        """``running`` until the end (``paused`` while only tasks waiting for
        ``resume`` are left); then ``success``, ``failed`` or ``cancelled``."""
        return self._engine.state

    @property
    def ok(self) -> bool:
        """True when the run succeeded: each of the flow's reference tasks (by default
        its terminal tasks) ended success, cached or skipped, unless its
        ``terminal_state_handler`` decided otherwise. ``failed`` lists every task run
        that did not succeed, whatever the run's state."""
        return self._engine.state is State.SUCCESS

    @property
    def done(self) -> bool:
        return self._engine.closed.is_set()

    @property
    def start(self) -> float | None:
        return self._engine.start

    @property
    def end(self) -> float | None:
        return self._engine.end

    @property
    def duration(self) -> float | None:
        e = self._engine
        if e.start is None:
            return None
        return (e.end or time.time()) - e.start

    @property
    def background(self) -> bool:
        """True when the run was started with ``background=True`` (it can be cancelled)."""
        return self._thread is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background run to end; True if it has ended."""
        return self._engine.closed.wait(timeout)

    def cancel(self) -> None:
        """Cancel the run: pending tasks become cancelled; running process tasks are
        terminated; running threads finish but their results are discarded."""
        self._engine.cancel()

    def resume(self, ref: Node | Task[Any, Any] | str) -> FlowRun:
        """Let a task with ``trigger="manual_only"`` run. A foreground run that stopped
        with only such tasks left continues here, in the calling thread."""
        self._engine.resume(self[ref].name)
        return self

    @property
    def paused(self) -> list[TaskRun]:
        """The task runs waiting for ``resume``."""
        return [r for r in self.task_runs if r.state is State.PAUSED]

    def subscribe(self, listener: Listener) -> Any:
        """Call ``listener(event)`` for each later event of this run."""
        return self._engine.bus.subscribe(listener)

    # -- per task -----------------------------------------------------------------
    def __getitem__(self, ref: Node | Task[Any, Any] | str) -> TaskRun:
        """The ``TaskRun`` of a node (or of a task that is in the flow once, or a name)."""
        if isinstance(ref, str) and ref.endswith("]") and "[" in ref:
            base, _, index = ref[:-1].rpartition("[")
            parent = self[base]
            if parent.children is None or not index.isdigit() or int(index) >= len(parent.children):
                raise RunError(f"Run of flow '{self.flow.name}' has no task run '{ref}'.")
            return parent.children[int(index)]
        return self._engine.runs[self.flow.node(ref)]

    def get(self, node: Node) -> TaskRun | None:
        """The ``TaskRun`` of ``node``, or None if this run has none (yet)."""
        return self._engine.runs.get(node)

    @property
    def task_runs(self) -> list[TaskRun]:
        """Every task run, mapped children in place of their parent."""
        out: list[TaskRun] = []
        for run in self._engine.runs.values():
            if run.children is not None:
                out.extend(run.children)
            else:
                out.append(run)
        return out

    @property
    def failed(self) -> list[TaskRun]:
        """The task runs that did not succeed (failed, timed out, upstream failed, cancelled)."""
        return [r for r in self.task_runs if r.state in NOT_OK]

    def result(self, ref: Node | Task[Any, Any] | str) -> Any:
        """The value of a task; raises the task's own error if it failed.

        A mapped task gives the list of its children's values; a skipped task gives None.
        """
        run = self[ref]
        # Values an executor left on its workers (Dask) come here now, in one round trip.
        return self._engine.fetch(self._result_of(run))

    def _result_of(self, run: TaskRun) -> Any:
        state = run.state
        if state.is_successful:
            if run.children is not None:
                return [self._result_of(c) for c in run.children]
            return run.value
        if state is State.SKIPPED:
            if run.children:
                return [self._result_of(c) for c in run.children]
            return None
        if state in IN_PROGRESS:
            raise RunError(
                f"Task '{run.name}' has not finished (it is {state.value}); "
                "wait for the run with run.wait() first."
            )
        if state is State.CANCELLED:
            raise cancelled_error(run)
        if run.children:
            for child in run.children:
                if not child.state.is_ok:
                    return self._result_of(child)
        if run.error is not None and state is not State.UPSTREAM_FAILED:
            raise run.error
        raise UpstreamFailedError(
            f"Task '{run.name}' did not run: {run.reason}. See run.failed for the cause."
        )

    def counts(self) -> dict[str, int]:
        """How many task runs are in each state."""
        out: dict[str, int] = {}
        for run in self.task_runs:
            out[run.state.value] = out.get(run.state.value, 0) + 1
        return out

    def to_pandas(self) -> pd.DataFrame:
        """One row per task run (mapped children included)."""
        import pandas as pd

        rows = [
            {
                "task": self.flow.name_of(r.node),
                "name": r.name,
                "map_index": r.map_index,
                "state": r.state.value,
                "attempts": r.attempts,
                "start": pd.to_datetime(r.start, unit="s") if r.start else None,
                "end": pd.to_datetime(r.end, unit="s") if r.end else None,
                "duration": r.duration,
                "cached": r.cached,
                "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}",
            }
            for r in self.task_runs
        ]
        columns = [
            "task",
            "name",
            "map_index",
            "state",
            "attempts",
            "start",
            "end",
            "duration",
            "cached",
            "error",
        ]
        return pd.DataFrame(rows, columns=columns)

    def retry(self, flow: Flow | None = None, show: bool | None = None, **options: Any) -> FlowRun:
        """A new run where only failed, cancelled and upstream-failed tasks (and what
        depends on them) run again; every other result is reused. ``show`` as in
        ``flow.run()``: in a notebook the new run's live widget is displayed."""
        if not self.done:
            raise RunError("This run has not ended yet; wait for it (run.wait()) before retrying.")
        prior: dict[str, TaskRun] = {}
        for run in self._engine.runs.values():
            prior[run.name] = run
            for child in run.children or ():
                prior[child.name] = child
        options.setdefault("executor", self._executor_spec)
        if options["executor"] == self._executor_spec:
            options.setdefault("max_workers", self._max_workers)
        options.setdefault("parameters", self.parameters)
        target = flow or self._source_flow
        return start_shown(target, show, partial(start_run, target, prior=prior), options)

    @property
    def dashboard_link(self) -> str | None:
        """Where the executor shows the run live (the Dask dashboard), if it has one."""
        link = getattr(self._engine.executor, "dashboard_link", None)
        return link if isinstance(link, str) and link else None

    def visualize(self) -> graphviz.Digraph:
        """The flow drawn with this run's states."""
        return self.flow.visualize(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        # In a notebook, a run on its own shows the widget in its current state.
        return presenter().mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))
        took = f", {self.duration:.2f}s" if self.duration is not None else ""
        link = self.dashboard_link
        dashboard = f", dashboard {link}" if link else ""
        return (
            f"<FlowRun '{self.flow.name}' {self.state.value}: {counts or 'no tasks'}{took}"
            f"{dashboard}>"
        )


def start_run(
    flow: Flow,
    executor: Any = None,
    max_workers: int | None = None,
    background: bool = False,
    listeners: list[Listener] | tuple[Listener, ...] = (),
    prior: dict[str, TaskRun] | None = None,
    echo: bool = False,
    refresh: bool | None = None,
    store: Any = None,
    parameters: dict[str, Any] | None = None,
    **unknown: Any,
) -> FlowRun:
    """Start a run of ``flow`` (what ``flow.run()`` calls)."""
    executor, max_workers, refresh = _defaults(executor, max_workers, refresh)
    declared = flow.parameters()
    values = dict(parameters or {})
    for key, value in unknown.items():
        if key not in declared:
            from nbflow.errors import did_you_mean

            names = (*_RUN_OPTIONS, *declared)
            known = f" The flow's parameters: {', '.join(declared)}." if declared else ""
            raise RunError(
                f"flow.run() got an unexpected option '{key}'.{did_you_mean(key, names)}{known}"
            )
        values[key] = value
    source_flow = flow
    if declared or values:
        flow = _with_parameters(flow, declared, values)
    if not isinstance(background, bool):
        raise RunError(f"Expected background to be True or False, but got {background!r}.")
    if not isinstance(refresh, bool):
        raise RunError(f"Expected refresh to be True or False, but got {refresh!r}.")
    results: ResultStore | None = (
        None if store is False else store if isinstance(store, ResultStore) else open_store(store)
    )
    if results is not None:
        results.begin_run()
    exe = resolve_executor(executor, max_workers)
    bus = EventBus()
    for listener in (*process_listeners(), *listeners):
        bus.subscribe(listener)
    if flow.state_handlers:
        bus.subscribe(_StateHandlers(source_flow, flow.state_handlers))
    if flow.on_state_change:
        # Also the flow's own transitions: hook(flow, flow_run, old, new).
        bus.subscribe(_StateHandlers(source_flow, flow.on_state_change, with_run=True))
    if flow is not source_flow and flow.terminal_state_handler is not None:
        # The run's copy of the flow (its parameters' values) hands the handler the flow
        # it was given to, as the state handlers and hooks do.
        flow.terminal_state_handler = partial(_terminal, source_flow, flow.terminal_state_handler)
    engine = Engine(
        flow,
        exe,
        new_run_id(),
        bus=bus,
        prior=prior,
        echo=echo,
        # The scheduler's annotation still names the file store; it calls the protocol's
        # methods, and reads .path only to poll the inbox of a run with paused tasks.
        store=results,  # type: ignore[arg-type]
        refresh=refresh,
    )
    flush = getattr(results, "flush", None)
    if callable(flush):
        # A store that writes in the background (a bucket) has everything when the run
        # has finished: the event is emitted before flow.run() returns.
        def flushed(event: Event) -> None:
            if event.kind == RUN_FINISHED:
                flush()

        bus.subscribe(flushed, ends_only=True)
    if results is not None and not echo:
        home: Any = "the home folder"
        try:
            home = home_of(results)
            bus.subscribe(open_history(home).record, ends_only=True)
        except Exception as exc:  # a read-only or broken store: run without history
            warnings.warn(
                # nbflow's own errors already say where and how to fix it.
                f"{exc} This run is not recorded."
                if isinstance(exc, DamagedStoreError)
                else f"nbflow cannot record this run in '{home}' ({exc}); "
                "it will not be in the run history.",
                NbflowWarning,
                stacklevel=3,
            )
    engine.background = background
    run = FlowRun(flow, engine, executor, max_workers)
    run._source_flow = source_flow
    run.parameters = values
    engine.owner = run
    if background:
        thread = threading.Thread(
            target=engine.drive, name=f"nbflow-run-{engine.run_id}", daemon=True
        )
        run._thread = thread
        thread.start()
    else:
        engine.drive()
    return run


def _defaults(
    executor: Any, max_workers: int | None, refresh: bool | None
) -> tuple[Any, Any, bool]:
    """Options the caller left out, from the environment (``nbflow run`` passes its
    command-line options to a notebook's kernel this way), else the built-in ones."""
    if executor is None:
        executor = settings.executor() or "threads"
        if max_workers is None:
            try:
                max_workers = settings.max_workers()
            except settings.SettingError as exc:
                raise RunError(str(exc)) from None
    if refresh is None:
        refresh = refresh_default()
    return executor, max_workers, refresh


def refresh_default() -> bool:
    """Whether runs that leave ``refresh`` unset recompute everything: ``NBFLOW_REFRESH``
    (what ``nbflow run --refresh`` sets for a notebook's kernel) is set and not 0."""
    return settings.refresh()


log = logging.getLogger("nbflow")


class _StateHandlers:
    """Calls a flow's ``state_handlers`` (Prefect 1's ``handler(flow, old, new)``), or with
    ``with_run`` its ``on_state_change`` hooks (``hook(flow, flow_run, old, new)``), when
    the run starts and when it ends. A handler's return value is ignored and one that
    raises is logged: neither changes the run."""

    def __init__(self, flow: Flow, handlers: tuple[Any, ...], with_run: bool = False) -> None:
        self.flow = flow
        self.handlers = handlers
        self.with_run = with_run

    def __call__(self, event: Event) -> None:
        if event.kind == RUN_STARTED:
            old, new = State.PENDING, State.RUNNING
        elif event.kind == RUN_FINISHED:
            old, new = State.RUNNING, event.state
        else:
            return
        for handler in self.handlers:
            try:
                if self.with_run:
                    handler(self.flow, event.run, old, new)
                else:
                    handler(self.flow, old, new)
            except Exception:
                log.exception(
                    "nbflow: state handler %r of flow '%s' failed", handler, self.flow.name
                )


def _terminal(flow: Flow, handler: Any, _run_flow: Flow, state: State, runs: Any) -> Any:
    return handler(flow, state, runs)


def _with_parameters(flow: Flow, declared: dict[str, Any], values: dict[str, Any]) -> Flow:
    """A copy of ``flow`` whose parameter nodes are called with this run's values."""
    listing = ", ".join(declared) or "none"
    unknown = [k for k in values if k not in declared]
    if unknown:
        raise RunError(
            f"Flow '{flow.name}' has no parameter '{unknown[0]}'. Its parameters: {listing}."
        )
    missing = [n for n, p in declared.items() if p.required and n not in values]
    if missing:
        raise RunError(
            f"Flow '{flow.name}' needs a value for parameter '{missing[0]}'; pass it with "
            f"flow.run(parameters={{'{missing[0]}': ...}}). Its parameters: {listing}."
        )
    run_flow = flow.copy()
    for node in run_flow.tasks:
        name = node.task.name
        if declared.get(name) is not node.task:
            continue
        value = values[name] if name in values else declared[name].default
        run_flow.replace_call(node, Call((value,), {}, False))
    return run_flow


def run_now(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], mapped: bool
) -> Any:
    """Run a task called outside a flow, now, in this thread; return its value."""
    flow = Flow(task.name, _register=False)
    with flow:
        node = task.map(*args, **kwargs) if mapped else task(*args, **kwargs)
    run = start_run(flow, executor=SequentialExecutor(), echo=True)
    return run.result(node)


def on_event(listener: Listener) -> Listener:
    """Identity helper so listeners can be declared with a decorator."""
    return listener


__all__ = ["Event", "FlowRun", "refresh_default", "start_run"]


class EngineRunner:
    """The engine as the registered ``Runner`` (``nbflow.graph.runner``): what
    ``flow.run()`` and a task called outside a flow reach."""

    def start(self, flow: Flow, show: bool | None, options: dict[str, Any]) -> FlowRun:
        return start_shown(flow, show, partial(start_run, flow), options)

    def run_now(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], mapped: bool
    ) -> Any:
        return run_now(task, args, kwargs, mapped=mapped)


RUNNER = EngineRunner()
