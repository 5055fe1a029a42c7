"""The task cells of one kernel as one flow: compiled, run, recorded, published.

``NotebookFlow`` is what the ``%%task`` and ``%flow`` magics drive; it knows nothing
of IPython beyond the namespace dict it publishes outputs to. Each run builds a
``Flow`` (named after the notebook) of the cells it needs and runs it like any other
flow, so it lands in the run history under that name with the cells' task names.
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from nbflow.cells import function as cellcode
from nbflow.cells.analysis import analyse, parse
from nbflow.cells.definitions import (
    CellDef,
    CellError,
    CellGraph,
    CellOptions,
    CellStatus,
    digest,
    flow_name,
)
from nbflow.engine.records import TaskRun
from nbflow.engine.run import FlowRun, refresh_default, start_run
from nbflow.errors import FAIL, NbflowError, NbflowWarning
from nbflow.graph.flow import Flow, Node
from nbflow.graph.task import Task
from nbflow.state import ERRORED_OR_CANCELLED, NOT_OK, State
from nbflow.store.cellstore import StoredCell, open_cells
from nbflow.store.home import HISTORY_FILE


def _stored_result(home: str, key: str, cell: str) -> Any:
    """A cell's result as recorded by an earlier kernel (its inputs are gone here)."""
    from nbflow.store.base import open_store

    missing = object()
    value = open_store(home).get(key, missing)
    if value is missing:
        raise NbflowError(
            f"Cell '{cell}' needs notebook variables this kernel does not have, and its "
            f"earlier result is no longer in the store '{home}'. Run the cells that define "
            "its inputs, then run it again."
        )
    return value


def _failed_earlier(message: str, traceback: str | None = None) -> None:
    error = FAIL(message)
    # What the history and ``nbflow show`` give for this cell is the traceback of the
    # failure it stands for, not this function's.
    error.user_traceback = traceback
    raise error


def error_of(tr: TaskRun) -> BaseException | None:
    """A task run's error; for a mapped task, its first failed child's."""
    if tr.error is not None:
        return tr.error
    return next((c.error for c in tr.children or () if c.error is not None), None)


def stand_in(task: Any) -> str | None:
    """What a stand-in task in a cell's place means (None for a real cell).

    >>> stand_in(Task(_failed_earlier, name="x")), stand_in(Task(len, name="n"))
    ('failed earlier in this kernel, not run again', None)
    """
    fn = getattr(task, "fn", None)
    if fn is _failed_earlier:
        return "failed earlier in this kernel, not run again"
    if fn is _stored_result:
        return "its result from an earlier kernel"
    return None


class NotebookFlow(CellGraph):
    """The task cells of one kernel (``%%task``), run as one flow named ``name``.

    >>> namespace = {"scale": 10}
    >>> cells = NotebookFlow(namespace, name="doc-notebook")
    >>> _ = cells.define(None, "xs = [1, 2, 3]", CellOptions(), "<xs>")
    >>> _ = cells.define(None, "total = sum(xs) * scale", CellOptions(), "<total>")
    >>> run, _ = cells.run(["total"])
    >>> run.ok, namespace["total"], cells.upstream_of(cells.cells["total"])
    (True, 60, ['xs'])
    """

    def __init__(
        self, user_ns: dict[str, Any], name: str | None = None, home: str | None = None
    ) -> None:
        super().__init__()
        self.user_ns = user_ns
        self.name = name or flow_name()
        self.home = home
        self.parameters: dict[str, Any] = {}
        self.last_run: FlowRun | None = None
        self._saved: dict[str, str] = {}
        self._keys: dict[str, str] | None = None
        # Successful runs of the helper tasks that list a mapped cell's items: reused
        # like the cells themselves, so the cell's children can be reused too.
        self._helpers: dict[str, TaskRun] = {}
        self.flow: Flow | None = None
        self._restored = False
        # The cell ids of the saved notebook, when known: a stored cell with an id that
        # is not among them was deleted, and is not restored.
        self.saved_ids: set[str] | None = None

    def is_module(self, name: str) -> bool:
        import types

        value = self.user_ns.get(name)
        if isinstance(value, types.ModuleType):
            return True
        # A library's function or class (imported in a plain cell): not the notebook's.
        # Instances are not: a library's model (torch, sklearn) is changed by .fit().
        plain = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)
        module = getattr(value, "__module__", None) if isinstance(value, plain) else None
        return isinstance(module, str) and module != "__main__"

    def define(
        self,
        name: str | None,
        source: str,
        options: CellOptions,
        filename: str,
        cell_id: str | None = None,
        changes: tuple[str, ...] | None = None,
        persist: bool = True,
    ) -> CellDef:
        """Add or replace a task cell, and keep its definition in the store."""
        if persist and not self._restored:
            # A fresh kernel: the cells this notebook defined before are known again,
            # so a cell's upstream comes from their cached results (or runs, if stale).
            self._restored = True
            try:
                self.restore_definitions()
            except Exception as exc:  # an unreadable store: the cell still runs
                warnings.warn(
                    f"nbflow cannot read the task cells kept in the store ({exc}).",
                    NbflowWarning,
                    stacklevel=2,
                )
        cell = super().define(name, source, options, filename, cell_id, changes)
        if persist and self._saved.get(cell.name) != cell.version + filename + (cell_id or ""):
            kept = {**options.to_json(), "changes": list(cell.changes)}
            stored = StoredCell(cell.name, source, kept, filename, cell.position, cell_id)
            try:
                open_cells(self.store_home()).save(self.name, stored)
            except Exception as exc:  # a read-only store: the cell still runs
                warnings.warn(
                    f"nbflow cannot keep the definition of cell '{cell.name}' in the store "
                    f"({exc}); %flow retry after a restart will not know it.",
                    NbflowWarning,
                    stacklevel=2,
                )
            self._saved[cell.name] = cell.version + filename + (cell_id or "")
        return cell

    def snapshot(self) -> Callable[[], None]:
        """A function that puts the cells back as they are now, in this kernel and in
        the store (a cell rejected when it first runs must not come back after a restart)."""
        undo_graph = super().snapshot()
        cells, saved, cell_ids = dict(self.cells), dict(self._saved), dict(self.cell_ids)

        def undo() -> None:
            changed = [name for name, cell in self.cells.items() if cells.get(name) is not cell]
            undo_graph()
            self._saved.clear()
            self._saved.update(saved)
            if not changed:
                return
            try:
                store = open_cells(self.store_home())
                for name in changed:
                    old = cells.get(name)
                    if old is None:
                        store.delete(self.name, [name])
                    else:
                        store.save(
                            self.name,
                            StoredCell(
                                name,
                                old.source,
                                {**old.options.to_json(), "changes": list(old.changes)},
                                old.filename,
                                old.position,
                                next((i for i, n in cell_ids.items() if n == name), None),
                            ),
                        )
            except Exception as exc:  # a read-only store: this kernel is right anyway
                warnings.warn(
                    f"nbflow cannot take back the definition of cell(s) {', '.join(changed)} "
                    f"in the store ({exc}); forget them with %flow clear {' '.join(changed)}.",
                    NbflowWarning,
                    stacklevel=2,
                )

        return undo

    def reorder(self, names: list[str]) -> None:
        """Put the cells ``names`` in this order (the notebook document's), before any
        other cell: a cell reads the names bound by the nearest task cell above it in
        the document, whatever order the cells were run in."""
        first = [self.cells[n] for n in names if n in self.cells]
        rest = sorted(
            (c for n, c in self.cells.items() if n not in set(names)), key=lambda c: c.position
        )
        ids = {name: cell_id for cell_id, name in self.cell_ids.items()}
        moved = []
        for position, cell in enumerate([*first, *rest]):
            if cell.position != position:
                # A new object: the versions worked out for the old order are not reused.
                self.cells[cell.name] = dataclasses.replace(cell, position=position)
                moved.append(self.cells[cell.name])
        if not moved:
            return
        try:
            store = open_cells(self.store_home())
            for cell in moved:
                kept = {**cell.options.to_json(), "changes": list(cell.changes)}
                store.save(
                    self.name,
                    StoredCell(
                        cell.name,
                        cell.source,
                        kept,
                        cell.filename,
                        cell.position,
                        ids.get(cell.name),
                    ),
                )
        except Exception as exc:  # a read-only store: this kernel has the right order
            warnings.warn(
                f"nbflow cannot keep the order of the task cells in the store ({exc}).",
                NbflowWarning,
                stacklevel=2,
            )

    def store_home(self) -> pathlib.Path:
        """The notebook's home folder, created and checked (its file store's folder)."""
        from nbflow.store.file import open_file_store

        return open_file_store(self.home).path

    # -- building a flow ------------------------------------------------------------
    def cell_function(
        self, cell: CellDef, ups: list[str], mapped: set[str], returns: str | None = None
    ) -> tuple[Callable[..., Any], list[str]]:
        """The cell's function for these upstream cells, and its parameters: one per
        upstream cell, in the order of ``ups``."""
        versions = self.versions()
        takes = versions.sources.get(cell.name, {}) if returns is None else {}
        if returns is not None:  # the helper listing a mapped cell's items
            owner = cell.name.rpartition(":")[0]
            takes = {n: up for n, up in versions.sources.get(owner, {}).items() if n in cell.reads}
        mapped_only = set(cell.reads) - set(cell.analysis.inputs)
        params = self.arguments(cell, ups)
        index = dict(zip(ups, params, strict=True))
        upstream = {
            n: (index[up], up in mapped)
            for n, up in takes.items()
            if up in index and n not in mapped_only
        }
        namespace = tuple(
            n for n in cell.analysis.inputs if n not in upstream and n in self.user_ns
        )
        outputs = versions.exports.get(cell.name) if returns is None else (returns,)
        copies = versions.copies.get(cell.name, ()) if returns is None else ()
        shape = (
            tuple(sorted(upstream.items())),
            namespace,
            tuple(params),
            returns,
            outputs,
            copies,
        )
        code = cell.codes.get(shape)
        if code is None:
            code = cellcode.make_factory(
                cell.tree,
                cell.analysis,
                cell.filename,
                cellcode.identifier(cell.name),
                upstream,
                namespace,
                cell.options.map_var,
                params,
                returns,
                outputs,
                copies,
            )
            cell.codes[shape] = code
        values = tuple(self.user_ns[n] for n in namespace)
        return cellcode.build(code, self.user_ns, values), params

    def build(
        self, names: list[str], *, keep_failed: Iterable[str] = (), drawing: bool = False
    ) -> tuple[Flow, dict[str, Node]]:
        """A flow of ``names`` and their upstream cells. An upstream cell that failed in
        this kernel and has not changed since is not run again: a stand-in fails with
        a message that says so (cells in ``keep_failed`` run again)."""
        # A flow of every cell is registered under the notebook's name, so that
        # nbflow.load_run(...).retry() in this kernel finds it.
        whole = set(names) >= set(self.cells)
        flow = Flow(self.name, _register=whole and not drawing)
        if whole and not drawing:
            self.flow = flow
        nodes: dict[str, Node] = {}
        order = self.ancestors(names)
        targets = set(names) | set(keep_failed)
        mapped = {n for n in order if self.cells[n].options.map_var}
        for name in order:
            cell = self.cells[name]
            ups = self.data_upstream(cell)
            fn, params = self.cell_function(cell, ups, mapped)
            missing = name not in targets and self._inputs_missing(cell)
            recorded = self.recorded_keys().get(name) if missing else None
            if recorded:
                # A fresh kernel retrying: this cell succeeded before, but the notebook
                # variables it read are not defined here. Its recorded result stands in.
                helper: Task[Any, Any] = Task(_stored_result, name=name, cache=False)
                node = flow.add_task(helper)
                home = str(self.store_home())
                inputs = {"home": home, "key": recorded, "cell": name}
                flow.set_dependencies(node, keyword_tasks=inputs)
                nodes[name] = node
                continue
            stale = self._failed_unchanged(name, fn) if name not in targets else None
            if stale is not None:
                task: Task[Any, Any] = Task(_failed_earlier, name=name, cache=False)
                node = flow.add_task(task)
                failed = self.status[name].task_run
                earlier = failed.traceback if failed is not None else None
                flow.set_dependencies(node, keyword_tasks={"message": stale, "traceback": earlier})
                nodes[name] = node
                continue
            opts = cell.options
            task = Task(fn, name=name, cache_version=cell.version, **opts.run_options())
            node = flow.add_task(task)
            nodes[name] = node
            for up, param in zip(ups, params, strict=True):
                flow.add_edge(nodes[up], node, key=param)
            for up in opts.after:
                if up in nodes and up not in ups:
                    flow.add_edge(nodes[up], node)
            if opts.map_var:
                self._map_input(flow, cell, node, nodes, mapped, drawing)
        return flow, nodes

    def _map_input(
        self,
        flow: Flow,
        cell: CellDef,
        node: Node,
        nodes: dict[str, Node],
        mapped: set[str],
        drawing: bool = False,
    ) -> None:
        assert cell.options.map_var and cell.options.map_expr and cell.map_analysis
        var, expr = cell.options.map_var, cell.options.map_expr
        sources = self.sources(cell)
        ups = [sources[n] for n in cell.map_analysis.inputs if n in sources]
        if not ups and drawing:
            flow.set_dependencies(node, keyword_tasks={var: []}, mapped=True)
            return
        if not ups:
            try:
                items = list(eval(expr, self.user_ns))
            except Exception as exc:
                raise CellError(
                    f"%%task {cell.name}: --map {var}={expr} could not be evaluated: "
                    f"{type(exc).__name__}: {exc}.",
                    cell=cell.name,
                ) from None
            flow.set_dependencies(node, keyword_tasks={var: items}, mapped=True)
            return
        source = f"__nbflow_items = list({expr})"
        items_cell = CellDef(
            f"{cell.name}:{var}",
            source,
            CellOptions(),
            cell.filename,
            cell.position,
            parse(source),
            analyse(source),
            None,
            digest(cell.version, "items"),
            cell.codes.setdefault("items", {}),
        )
        ups = list(dict.fromkeys(ups))
        fn, params = self.cell_function(items_cell, ups, mapped, returns="__nbflow_items")
        helper: Task[Any, Any] = Task(fn, name=items_cell.name, cache_version=items_cell.version)
        items_node = flow.add_task(helper)
        for up, param in zip(ups, params, strict=True):
            flow.add_edge(nodes[up], items_node, key=param)
        flow.add_edge(items_node, node, key=var, mapped=True)

    def _inputs_missing(self, cell: CellDef) -> bool:
        sources = self.sources(cell)
        return any(n not in sources and n not in self.user_ns for n in cell.reads)

    def _failed_unchanged(self, name: str, fn: Callable[..., Any]) -> str | None:
        status = self.status.get(name)
        if status is None or status.state not in ERRORED_OR_CANCELLED:
            return None
        from nbflow.graph.hashing import Unhashable, fingerprint

        try:
            now = fingerprint(fn, self.cells[name].version)
        except Unhashable:
            return None
        if now != status.fingerprint:
            return None
        error = status.error
        what = f" ({type(error).__name__}: {error})" if error is not None else ""
        return (
            f"cell '{name}' failed earlier in this kernel{what} and has not changed since; "
            f"fix cell '{name}' and re-run it, or use %flow retry"
        )

    # -- running --------------------------------------------------------------------
    def run(
        self,
        names: list[str],
        *,
        executor: Any = None,
        jobs: int | None = None,
        background: bool = False,
        refresh: bool | None = None,
        keep_failed: Iterable[str] = (),
        listeners: tuple[Callable[[Any], Any], ...] = (),
        store: str | None = None,
    ) -> tuple[FlowRun, dict[str, Node]]:
        """Run ``names`` (and what they need); publish outputs when the run ends.

        ``executor`` and ``refresh`` left as None take the environment defaults
        (``NBFLOW_EXECUTOR``, ``NBFLOW_REFRESH``), as ``flow.run()`` does. A refresh
        asked for here recomputes every cell; one from the environment (a kernel
        started by ``nbflow run --refresh``) reuses what this kernel has computed
        since, which was computed afresh, so each cell runs once. ``store`` (a folder or
        URL such as ``s3://bucket/prefix``) replaces the notebook's home folder as the
        result store of this run."""
        keep_failed = list(keep_failed)
        flow, nodes = self.build(names, keep_failed=keep_failed)
        prior: dict[str, TaskRun] = {}
        if refresh is None:
            refresh, reuse = refresh_default(), True
        else:
            reuse = not refresh
        if reuse:
            for name, status in self.status.items():
                tr = status.task_run
                if name in nodes and tr is not None and tr.state.is_successful:
                    cell = self.cells.get(name)
                    if cell is not None and not cell.options.cache and not keep_failed:
                        continue  # --no-cache: runs whenever it is run (a retry reuses it)
                    prior[name] = tr
                    for child in tr.children or ():
                        prior[child.name] = child  # mapped children are reused one by one
            prior.update(self._helpers)
        finish = self._finisher(nodes)
        run = start_run(
            flow,
            executor=executor,
            max_workers=jobs,
            background=background,
            refresh=refresh,
            prior=prior,
            store=store or self.home,
            listeners=(*listeners, finish),
        )
        self.last_run = run
        if not background:
            finish(None)
        return run, nodes

    def _finisher(self, nodes: dict[str, Node]) -> Callable[[Any], None]:
        done: list[bool] = []

        def finish(event: Any) -> None:
            if done or (event is not None and event.kind != "run_finished"):
                return
            run = self.last_run if event is None else event.run
            if run is None:
                return
            done.append(True)
            self._record(run, nodes)

        return finish

    def _record(self, run: FlowRun, nodes: dict[str, Node]) -> None:
        from nbflow.graph.hashing import Unhashable, fingerprint

        cells = {id(node) for node in nodes.values()}
        for node in run.flow.tasks:
            tr = run[node]
            if id(node) not in cells:
                if tr.state.is_successful:
                    self._helpers[tr.name] = tr
                else:
                    self._helpers.pop(tr.name, None)

        for name, node in nodes.items():
            if node.task.fn is _failed_earlier:
                continue
            tr = run[node]
            fp = None
            if tr.state in ERRORED_OR_CANCELLED:
                try:
                    fp = fingerprint(node.task.fn, node.task.cache_version)
                except Unhashable:
                    fp = None
            self.status[name] = CellStatus(tr.state, tr, fp, error_of(tr))
            if tr.state.is_successful:
                self.publish(name, run.result(node))

    def publish(self, name: str, result: Any) -> None:
        """Put a cell's outputs into the notebook namespace (lists for a mapped cell)."""
        cell = self.cells[name]
        if isinstance(result, list):
            for out in cell.analysis.outputs:
                self.user_ns[out] = [r.values.get(out) for r in result]
        elif isinstance(result, cellcode.CellResult):
            self.user_ns.update(result.values)

    def failed(self) -> list[str]:
        """Cells whose last run in this kernel did not succeed."""
        return [n for n, s in self.status.items() if s.state in NOT_OK and n in self.cells]

    @property
    def restored(self) -> bool:
        """Whether the stored definitions were read in this kernel."""
        return self._restored

    def restore_definitions(self) -> None:
        """Define the cells stored for this flow that this kernel does not have."""
        self._restored = True
        for stored in open_cells(self.store_home()).load(self.name):
            if stored.name in self.cells or (stored.cell_id and stored.cell_id in self.cell_ids):
                continue
            if self.saved_ids is not None and stored.cell_id not in (None, *self.saved_ids):
                continue
            try:
                self.define(
                    stored.name,
                    stored.source,
                    CellOptions.from_json(stored.options),
                    stored.filename,
                    stored.cell_id,
                    persist=False,
                    changes=(
                        tuple(stored.options["changes"]) if "changes" in stored.options else None
                    ),
                )
            except CellError:
                continue  # superseded by a cell defined in this kernel
            cellcode.register_source(stored.filename, stored.source)
            self._saved[stored.name] = (
                self.cells[stored.name].version + stored.filename + (stored.cell_id or "")
            )
        self._keys = None

    def restore(self) -> list[str]:
        """Define the cells stored for this flow that this kernel does not have; return
        the names of cells whose latest recorded run did not succeed."""
        self.restore_definitions()
        recorded = self.recorded()
        self._keys = {n: key for n, (state, key) in recorded.items() if state.is_successful and key}
        return [n for n, (state, _) in recorded.items() if not state.is_ok]

    def recorded_keys(self) -> dict[str, str]:
        """The result key of each cell's latest recorded success (read once, when a cell
        needs notebook variables this kernel does not have)."""
        if self._keys is None:
            recorded = self.recorded()
            self._keys = {
                n: key for n, (state, key) in recorded.items() if state.is_successful and key
            }
        return self._keys

    def recorded(self, limit: int = 200) -> dict[str, tuple[State, str | None]]:
        """Each cell's state (and result key) in the latest recorded run that had it."""
        from nbflow.store.history import open_history

        home = self.store_home()
        if not (home / HISTORY_FILE).exists():
            return {}
        history = open_history(home)
        states: dict[str, tuple[State, str | None]] = {}
        for row in history.runs(limit):
            if row["flow"] != self.name:
                continue
            for t in history.load(row["id"])[1]:
                if t["map_index"] is None and t["name"] in self.cells:
                    states.setdefault(t["name"], (State(t["state"]), t["key"]))
            # A cell that run meant to run but never finished (its kernel was killed)
            # is not done, whatever older runs say.
            for name in history.unfinished(row["id"]):
                if name in self.cells:
                    states.setdefault(name, (State.CANCELLED, None))
            if len(states) == len(self.cells):
                break  # older runs cannot change a cell's latest state
        return states

    def forget(self, names: list[str] | None = None) -> list[str]:
        """Remove cells (all if ``names`` is None) from this kernel and the store."""
        gone = list(self.cells) if names is None else names
        for n in gone:
            self.cells.pop(n, None)
            self.status.pop(n, None)
            self._saved.pop(n, None)
        self.cell_ids = {k: v for k, v in self.cell_ids.items() if v not in gone}
        open_cells(self.store_home()).delete(self.name, None if names is None else gone)
        return gone

    def with_parameter(self, name: str, value: Any) -> None:
        """Set a notebook variable read by task cells (``%flow run --param``)."""
        self.parameters[name] = value
        self.user_ns[name] = value


__all__ = ["CellDef", "CellError", "CellOptions", "NotebookFlow", "flow_name"]
