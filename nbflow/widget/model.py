"""``FlowWidget``: the live DAG of a run, an anywidget fed by the run's events."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from nbflow.engine.records import TaskRun
from nbflow.engine.run import FlowRun
from nbflow.errors import NbflowError
from nbflow.events import RUN_FINISHED, Event
from nbflow.graph.flow import Flow, Node
from nbflow.state import State
from nbflow.widget import summary
from nbflow.widget.layout import layout

log = logging.getLogger("nbflow")

_STATIC = Path(__file__).with_name("static")
DEFAULT_INTERVAL = 0.1  # seconds between two updates: at most ~10 messages a second


class FlowWidget(anywidget.AnyWidget):
    """The live graph of a flow run: node states, attempts, durations, logs, buttons.

    ``FlowWidget(run)`` follows a run (live while it runs, its final state after);
    ``FlowWidget(flow)`` waits for a run of ``flow`` that is started with
    ``listeners=[widget.listener]``. ``follow(run)`` switches to another run. Updates
    are coalesced: at most one message every ``interval`` seconds, and the final state
    of a run is always sent.

    >>> from nbflow import Flow, task
    >>> @task(cache=False)
    ... def inc(x):
    ...     return x + 1
    >>> with Flow("widget-doc") as flow:
    ...     b = inc(inc(1))
    >>> widget = FlowWidget(flow.run(show=False))
    >>> widget.header["state"], widget.nodes["inc-2"]["state"]
    ('success', 'success')
    """

    _esm = (_STATIC / "widget.js").read_text(encoding="utf-8")
    _css = (_STATIC / "widget.css").read_text(encoding="utf-8")

    palette = traitlets.Dict().tag(sync=True)
    # The two large parts of the state travel as JSON text: ipywidgets walks a dict of
    # 1,000 small dicts looking for binary buffers (about 2.5 ms a message), a string not.
    graph_json = traitlets.Unicode("{}").tag(sync=True)
    nodes_json = traitlets.Unicode("{}").tag(sync=True)
    header = traitlets.Dict().tag(sync=True)
    detail = traitlets.Dict().tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self, source: Flow | FlowRun | None = None, *, interval: float = DEFAULT_INTERVAL
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
            raise NbflowError(
                f"Expected interval to be a number of seconds >= 0, but got {interval!r}."
            )
        if source is not None and not isinstance(source, Flow | FlowRun):
            raise NbflowError(
                f"FlowWidget shows a flow or a run (flow.run(...)), but got {source!r}."
            )
        super().__init__()
        self.interval = float(interval)
        self.palette = summary.palette()
        self._lock = threading.Lock()
        self._send_lock = threading.RLock()
        self._wake = threading.Event()
        self._run: FlowRun | None = None
        self._finished = False
        self._flow: Flow | None = None
        self._graph_of: tuple[int, int] | None = None
        self._names: dict[Node, str] = {}
        self._dirty: set[Node] = set()
        self._summaries: dict[str, dict[str, Any]] = {}
        self._task_runs: dict[Node, TaskRun] = {}
        self._since: dict[Node, float] = {}
        self._selected: tuple[str, int | None, int] | None = None
        self._sender: threading.Thread | None = None
        self._unsubscribe: Any = None
        self.display_handle: Any = None  # IPython's handle of the output showing it
        self.on_msg(self._on_frontend_message)
        if isinstance(source, FlowRun):
            self.follow(source)
        elif isinstance(source, Flow):
            self._bind_flow(source)
            self._send_update()

    # -- public ---------------------------------------------------------------------
    @property
    def graph(self) -> dict[str, Any]:
        """The layout shown: ``nodes`` (id, kind, x, y, w, h), ``edges``, ``engine``."""
        graph: dict[str, Any] = json.loads(self.graph_json)
        return graph

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        """The summary of each node last sent to the page, by node name."""
        nodes: dict[str, dict[str, Any]] = json.loads(self.nodes_json)
        return nodes

    @property
    def run(self) -> FlowRun | None:
        """The run shown (the latest one followed), or None before the first."""
        return self._run

    def follow(self, run: FlowRun) -> FlowWidget:
        """Show ``run`` from now on: live if it is still running, else its final state."""
        if not isinstance(run, FlowRun):
            raise NbflowError(
                f"follow() needs a FlowRun (what flow.run() returns), but got {run!r}."
            )
        if run is self._run:
            return self
        if self._unsubscribe is not None:
            self._unsubscribe()
        # Subscribe before reading the run's states, so no change falls in between.
        self._unsubscribe = run.subscribe(self.listener)
        self._bind_run(run)
        return self

    def listener(self, event: Event) -> None:
        """The event listener to pass as ``flow.run(listeners=[widget.listener])``."""
        if event.run is not self._run and event.run is not None:
            self._bind_run(event.run)  # a run started with our listener, or a retry
        task_run = event.task_run
        if task_run is not None:
            with self._lock:
                self._dirty.add(task_run.node)
            if event.state is State.RUNNING and task_run.map_index is None:
                # A task run's start is recorded when its first attempt ends; until then
                # the widget counts from the running event.
                self._since.setdefault(task_run.node, event.time)
        if event.kind == RUN_FINISHED:
            self._finished = True
            self._send_update()  # the final state, in this thread, before the run returns
            self._wake.set()  # and the sender stops
        elif not self._wake.is_set():
            self._wake.set()

    def text(self) -> str:
        """One line for plain-text front ends: the flow, the state and its counts."""
        from nbflow.widget.picture import legend

        head = self.header or {}
        state = str(head.get("state", "pending")).replace("_", " ")
        counts = legend(head.get("counts") or {})
        run = f" {head['run_id']}" if head.get("run_id") else ""
        return f"nbflow run{run} of '{head.get('flow', '')}': {state}" + (
            f" ({counts})" if counts else ""
        )

    def picture(self) -> str:
        """The HTML of a static drawing of what the widget shows now (an SVG of the
        graph coloured by node state): the output's fallback where the live widget
        cannot be drawn (a reopened notebook, GitHub, nbviewer)."""
        from nbflow.widget.picture import page

        return page(self.graph, self.nodes, self.header or {})

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, None)
        data = {**(data or {}), "text/plain": self.text(), "text/html": self.picture()}
        return data if metadata is None else (data, metadata)

    def settle(self) -> None:
        """Redraw the output that shows this widget with the final state in its
        fallback (a finished run's picture is what a saved notebook keeps). Called in
        the thread of the cell that displayed it, once the run is over."""
        if self.display_handle is None:
            return
        self._send_update()
        self.display_handle.update(self)

    def close(self) -> None:
        """Stop following the run and close the widget."""
        if hasattr(self, "_wake"):  # not when __init__ refused its arguments
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            self._run = None
            self._wake.set()
        super().close()

    # -- binding --------------------------------------------------------------------
    def _bind_flow(self, flow: Flow) -> None:
        self._flow = flow
        self._names = {node: flow.name_of(node) for node in flow.tasks}

    def _bind_run(self, run: FlowRun) -> None:
        sender = None
        with self._lock:
            if self._run is run:
                return  # follow() and the run's first event may both get here
            switching = self._run is not None
            self._run = run
            self._finished = run.done
            self._bind_flow(run.flow)
            self._summaries = {}
            self._task_runs = {}
            self._since = {}
            self._dirty = set(self._names)
            if self._selected is not None:
                self._selected = (self._selected[0], None, 0)  # the same node, in this run
            if not self._finished and self._sender is None:
                sender = self._sender = threading.Thread(
                    target=self._send_loop, name=f"nbflow-widget-{run.id}", daemon=True
                )
        if self._finished or switching:
            self._send_update()  # the page leaves the previous run at once
        if sender is not None:
            sender.start()
        if not self._finished:
            self._wake.set()

    # -- sending --------------------------------------------------------------------
    def _send_loop(self) -> None:
        # A trailing throttle: the first change opens a window of `interval` seconds and
        # everything that changes in it goes out in one message at its end. A run shorter
        # than that sends only its final state (from run_finished).
        while True:
            self._wake.wait()
            time.sleep(self.interval)
            with self._lock:  # _bind_run starts a new sender only once this one is gone
                if self._run is None or self._finished:
                    self._sender = None
                    return  # the final state went out with run_finished (or the widget closed)
            self._wake.clear()
            try:
                self._send_update()
            except Exception:
                log.exception("nbflow widget: sending an update failed")

    def _send_update(self) -> None:
        with self._send_lock:
            run, flow = self._run, self._flow
            if flow is None:
                return
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            shape = (id(flow), flow.version)
            if shape != self._graph_of:
                graph = layout(flow)
                self._graph_of = shape
            else:
                graph = None
            nodes = "{}"
            if run is not None:
                task_runs = self._task_runs
                for node in dirty:
                    name = self._names.get(node)
                    if name is None:
                        continue
                    task_run = task_runs.get(node)
                    if task_run is None:
                        task_run = task_runs[node] = run[node]
                    node_summary = summary.node_summary(task_run)
                    if node_summary["duration"] is None and node in self._since:
                        node_summary["duration"] = round(time.time() - self._since[node], 3)
                    self._summaries[name] = node_summary
                nodes = json.dumps(self._summaries, separators=(",", ":"))
            head = summary.header(run, flow.name, self._finished)
            selected = self._selected
            with self.hold_sync():
                if graph is not None:
                    self.graph_json = json.dumps(graph, separators=(",", ":"))
                self.nodes_json = nodes
                self.header = head
                if run is not None and selected is not None:
                    if selected[0] in self._summaries:
                        self.detail = summary.detail(run, *selected)
                    else:
                        self._selected = None  # that node is not in this run's flow
                        self.detail = {}

    # -- messages from the page -------------------------------------------------------
    def _on_frontend_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "select":
            self._select(content)
        elif kind == "retry":
            threading.Thread(target=self._retry, name="nbflow-widget-retry", daemon=True).start()
        elif kind == "resume":
            self._resume(content.get("task"))
        elif kind == "cancel":
            run = self._run
            if run is not None and run.background and not run.done:
                run.cancel()

    def _select(self, content: dict[str, Any]) -> None:
        node = content.get("node")
        run = self._run
        if not isinstance(node, str) or run is None or node not in self._summaries:
            self._selected = None
            self.detail = {}
            return
        child = content.get("child")
        page = content.get("page")
        self._selected = (
            node,
            child if isinstance(child, int) else None,
            page if isinstance(page, int) else 0,
        )
        self.detail = summary.detail(run, *self._selected)

    def _resume(self, name: Any) -> None:
        run = self._run
        if run is None or not isinstance(name, str):
            return
        self.message = ""

        def resume() -> None:
            # A foreground run that stopped paused goes on in the thread that resumes
            # it: not the kernel's, which must stay free to handle messages.
            try:
                run.resume(name)
            except Exception as exc:
                self.message = f"Resume failed: {exc}"

        threading.Thread(target=resume, name="nbflow-widget-resume", daemon=True).start()

    def _retry(self) -> None:
        run = self._run
        if run is None or not run.wait(timeout=10):
            return
        self.message = ""
        try:
            run.retry(background=True, listeners=[self.listener], show=False)
        except Exception as exc:
            log.exception("nbflow widget: re-running the failed tasks failed")
            self.message = f"Re-run failed could not start: {exc}"
