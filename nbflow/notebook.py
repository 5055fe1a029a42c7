"""The task cells of one kernel as one flow: definitions, edges, runs, statuses.

``NotebookFlow`` is what the ``%%task`` and ``%flow`` magics drive; it knows nothing
of IPython beyond the namespace dict it publishes outputs to. Each run builds a
``Flow`` (named after the notebook) of the cells it needs and runs it like any other
flow, so it lands in the run history under that name with the cells' task names.
"""

from __future__ import annotations

import ast
import graphlib
import hashlib
import os
import pathlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nbflow import cellcode
from nbflow.cells import CellAnalysis, analyse, normalised, parse
from nbflow.cellstore import StoredCell, open_cells
from nbflow.errors import FAIL, NbflowError
from nbflow.flow import Flow, Node
from nbflow.records import TaskRun
from nbflow.run import FlowRun, start_run
from nbflow.state import State
from nbflow.task import Task

_FAILED = (State.FAILED, State.TIMED_OUT, State.CANCELLED)
FORMAT = "1"  # bump when the compiled form of cells changes what a cached result means


class CellError(NbflowError, ValueError):
    """A task cell cannot be defined or run as written (the front end shows it plainly)."""


def flow_name() -> str:
    """The notebook's flow name: ``NBFLOW_NOTEBOOK``'s stem, else ``JPY_SESSION_NAME``'s,
    else ``"notebook"``."""
    for var in ("NBFLOW_NOTEBOOK", "JPY_SESSION_NAME"):
        value = os.environ.get(var)
        if value:
            stem = pathlib.PurePath(value).stem
            if stem:
                return stem
    return "notebook"


@dataclass(frozen=True)
class CellOptions:
    """The options of a ``%%task`` line."""

    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    cache: bool = True
    after: tuple[str, ...] = ()
    map_var: str | None = None
    map_expr: str | None = None
    trigger: str = "all_successful"
    lazy: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "after" in known:
            known["after"] = tuple(known["after"])
        return cls(**known)


@dataclass
class CellDef:
    """One task cell: its source, analysis, options and compiled forms."""

    name: str
    source: str
    options: CellOptions
    filename: str
    position: int
    tree: ast.Module
    analysis: CellAnalysis
    map_analysis: CellAnalysis | None
    version: str
    codes: dict[Any, Any] = field(default_factory=dict)

    @property
    def reads(self) -> tuple[str, ...]:
        """Inputs of the cell and of its ``--map`` expression."""
        extra = self.map_analysis.inputs if self.map_analysis else ()
        return tuple(dict.fromkeys((*self.analysis.inputs, *extra)))


@dataclass
class CellStatus:
    """How a cell's last run in this kernel ended."""

    state: State
    task_run: TaskRun | None
    fingerprint: str | None = None
    error: BaseException | None = None


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def _failed_earlier(message: str) -> None:
    raise FAIL(message)


class NotebookFlow:
    """The task cells of one kernel (``%%task``), run as one flow named ``name``."""

    def __init__(
        self, user_ns: dict[str, Any], name: str | None = None, home: str | None = None
    ) -> None:
        self.user_ns = user_ns
        self.name = name or flow_name()
        self.home = home
        self.cells: dict[str, CellDef] = {}
        self.status: dict[str, CellStatus] = {}
        self.cell_ids: dict[str, str] = {}
        self.parameters: dict[str, Any] = {}
        self.last_run: FlowRun | None = None
        self._saved: dict[str, str] = {}
        self._positions = 0

    # -- definitions ----------------------------------------------------------------
    def producers(self, cells: Iterable[CellDef] | None = None) -> dict[str, str]:
        """Which cell binds each output name."""
        out: dict[str, str] = {}
        for cell in self.cells.values() if cells is None else cells:
            for name in cell.analysis.outputs:
                out[name] = cell.name
        return out

    def define(
        self,
        name: str | None,
        source: str,
        options: CellOptions,
        filename: str,
        cell_id: str | None = None,
        persist: bool = True,
    ) -> CellDef:
        """Add or replace a task cell. Raises ``CellError`` naming the cells involved."""
        from nbflow.cells import CellSyntaxError, default_name

        try:
            tree = parse(source)
            bound = (options.map_var,) if options.map_var else ()
            analysis = analyse(tree, bound)
            map_analysis = analyse(parse(options.map_expr)) if options.map_expr else None
        except CellSyntaxError as exc:
            raise CellError(f"%%task {name or ''}: {exc}".replace("  ", " ")) from None
        if name is None:
            if not analysis.outputs:
                raise CellError(
                    "%%task needs at least one name it defines (e.g. 'df = ...'), or a task "
                    "name for a cell run for its side effects: %%task save_report"
                )
            name = default_name(analysis.outputs)
        previous_name = self.cell_ids.get(cell_id) if cell_id else None
        replacing = {name} | ({previous_name} if previous_name else set())
        others = [c for c in self.cells.values() if c.name not in replacing]
        claimed = self.producers(others)
        for out in analysis.outputs:
            if out in claimed:
                raise CellError(
                    f"Cells '{claimed[out]}' and '{name}' both define '{out}'. A name must come "
                    f"from one task cell: rename it in one of them, or remove cell "
                    f"'{claimed[out]}' with %flow clear {claimed[out]}."
                )
        known = {c.name for c in others}
        for up in options.after:
            if up not in known:
                from nbflow.errors import did_you_mean

                raise CellError(
                    f"%%task {name}: --after names '{up}', which is not a task cell."
                    f"{did_you_mean(up, known)} Task cells: {', '.join(sorted(known)) or 'none'}."
                )
        version = _digest(FORMAT, normalised(tree), repr(sorted(options.to_json().items())))
        old = self.cells.get(name)
        position = old.position if old else self._positions
        self._positions += 1
        cell = CellDef(
            name, source, options, filename, position, tree, analysis, map_analysis, version
        )
        if old is not None and old.version == version:
            cell.codes = old.codes
        candidate = {c.name: c for c in others}
        candidate[name] = cell
        self._check_cycle(candidate)
        if previous_name and previous_name != name:
            self.cells.pop(previous_name, None)
            self.status.pop(previous_name, None)
        self.cells[name] = cell
        if cell_id:
            self.cell_ids[cell_id] = name
        if persist and self._saved.get(name) != version + filename:
            stored = StoredCell(name, source, options.to_json(), filename, position)
            open_cells(self.store_home()).save(self.name, stored)
            self._saved[name] = version + filename
        return cell

    def upstream_of(self, cell: CellDef, cells: dict[str, CellDef] | None = None) -> list[str]:
        """The cells ``cell`` depends on: producers of its inputs, then ``--after`` cells."""
        producers = self.producers((cells or self.cells).values())
        ups = [producers[n] for n in cell.reads if n in producers and producers[n] != cell.name]
        return list(dict.fromkeys([*ups, *cell.options.after]))

    def _check_cycle(self, cells: dict[str, CellDef]) -> None:
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for cell in cells.values():
            sorter.add(cell.name, *(u for u in self.upstream_of(cell, cells) if u in cells))
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            path = " -> ".join(exc.args[1][::-1])
            raise CellError(
                f"Task cells would form a cycle: {path}. A cell cannot depend on a cell that "
                "depends on it; remove one of these inputs or --after dependencies."
            ) from None

    def ancestors(self, names: Iterable[str]) -> list[str]:
        """``names`` and every cell they depend on, upstream first."""
        seen: dict[str, None] = {}
        stack = list(names)
        while stack:
            n = stack.pop()
            if n in seen or n not in self.cells:
                continue
            seen[n] = None
            stack.extend(self.upstream_of(self.cells[n]))
        return self._sorted(seen)

    def descendants(self, names: Iterable[str]) -> list[str]:
        """``names`` and every cell that depends on them."""
        out = set(names)
        changed = True
        while changed:
            changed = False
            for cell in self.cells.values():
                if cell.name not in out and any(u in out for u in self.upstream_of(cell)):
                    out.add(cell.name)
                    changed = True
        return self._sorted(out)

    def _sorted(self, names: Iterable[str]) -> list[str]:
        wanted = set(names)
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for n in sorted(wanted, key=lambda n: self.cells[n].position):
            sorter.add(n, *(u for u in self.upstream_of(self.cells[n]) if u in wanted))
        return list(sorter.static_order())

    def store_home(self) -> pathlib.Path:
        from nbflow.cache import open_store

        return open_store(self.home).path

    # -- building a flow ------------------------------------------------------------
    def cell_function(
        self, cell: CellDef, ups: list[str], mapped: set[str], returns: str | None = None
    ) -> tuple[Callable[..., Any], list[str]]:
        """The cell's function for these upstream cells; and the namespace inputs it
        reads (those defined in the notebook now)."""
        producers = self.producers()
        params = self.arguments(cell, ups)
        index = dict(zip(ups, params, strict=True))
        upstream = {
            n: (index[producers[n]], producers[n] in mapped)
            for n in cell.analysis.inputs
            if n in producers and producers[n] in index
        }
        namespace = tuple(
            n for n in cell.analysis.inputs if n not in upstream and n in self.user_ns
        )
        shape = (tuple(sorted(upstream.items())), namespace, tuple(params), returns)
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
            )
            cell.codes[shape] = code
        values = tuple(self.user_ns[n] for n in namespace)
        return cellcode.build(code, self.user_ns, values), list(namespace)

    def build(
        self, names: list[str], *, keep_failed: Iterable[str] = (), drawing: bool = False
    ) -> tuple[Flow, dict[str, Node]]:
        """A flow of ``names`` and their upstream cells. An upstream cell that failed in
        this kernel and has not changed since is not run again: a stand-in fails with
        a message that says so (cells in ``keep_failed`` run again)."""
        flow = Flow(self.name, _register=False)
        nodes: dict[str, Node] = {}
        order = self.ancestors(names)
        targets = set(names) | set(keep_failed)
        mapped = {n for n in order if self.cells[n].options.map_var}
        for name in order:
            cell = self.cells[name]
            ups = self.data_upstream(cell)
            fn, _ = self.cell_function(cell, ups, mapped)
            stale = self._failed_unchanged(name, fn) if name not in targets else None
            if stale is not None:
                task: Task[Any, Any] = Task(_failed_earlier, name=name, cache=False)
                node = flow.add_task(task)
                flow.set_dependencies(node, keyword_tasks={"message": stale})
                nodes[name] = node
                continue
            opts = cell.options
            task = Task(
                fn,
                name=name,
                retries=opts.retries,
                retry_delay=opts.retry_delay,
                timeout=opts.timeout,
                trigger=opts.trigger,
                cache=opts.cache,
                cache_version=cell.version,
            )
            node = flow.add_task(task)
            nodes[name] = node
            for up, param in zip(ups, self.arguments(cell, ups), strict=True):
                flow.add_edge(nodes[up], node, key=param)
            for up in opts.after:
                if up in nodes and up not in ups:
                    flow.add_edge(nodes[up], node)
            if opts.map_var:
                self._map_input(flow, cell, node, nodes, mapped, drawing)
        return flow, nodes

    def arguments(self, cell: CellDef, ups: list[str]) -> list[str]:
        """The names of the arguments that carry the upstream cells' results."""
        taken = {cell.options.map_var} if cell.options.map_var else set()
        return cellcode.arguments(ups, taken)

    def data_upstream(self, cell: CellDef) -> list[str]:
        """The cells whose outputs ``cell`` reads, in the order it reads them."""
        producers = self.producers()
        ups = [producers[n] for n in cell.analysis.inputs if n in producers]
        return [u for u in dict.fromkeys(ups) if u != cell.name]

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
        producers = self.producers()
        ups = [producers[n] for n in cell.map_analysis.inputs if n in producers]
        if not ups and drawing:
            flow.set_dependencies(node, keyword_tasks={var: []}, mapped=True)
            return
        if not ups:
            try:
                items = list(eval(expr, self.user_ns))
            except Exception as exc:
                raise CellError(
                    f"%%task {cell.name}: --map {var}={expr} could not be evaluated: "
                    f"{type(exc).__name__}: {exc}"
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
            _digest(cell.version, "items"),
            cell.codes.setdefault("items", {}),
        )
        ups = list(dict.fromkeys(ups))
        fn, _ = self.cell_function(items_cell, ups, mapped, returns="__nbflow_items")
        helper: Task[Any, Any] = Task(fn, name=items_cell.name, cache_version=items_cell.version)
        items_node = flow.add_task(helper)
        for up, param in zip(ups, self.arguments(items_cell, ups), strict=True):
            flow.add_edge(nodes[up], items_node, key=param)
        flow.add_edge(items_node, node, key=var, mapped=True)

    def _failed_unchanged(self, name: str, fn: Callable[..., Any]) -> str | None:
        status = self.status.get(name)
        if status is None or status.state not in _FAILED:
            return None
        from nbflow.hashing import Unhashable, fingerprint

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
        executor: Any = "sequential",
        jobs: int | None = None,
        background: bool = False,
        refresh: bool = False,
        keep_failed: Iterable[str] = (),
        listeners: tuple[Callable[[Any], Any], ...] = (),
    ) -> tuple[FlowRun, dict[str, Node]]:
        """Run ``names`` (and what they need); publish outputs when the run ends."""
        flow, nodes = self.build(names, keep_failed=keep_failed)
        prior: dict[str, TaskRun] = {}
        if not refresh:
            for name, status in self.status.items():
                tr = status.task_run
                if name in nodes and tr is not None and tr.state.is_successful:
                    prior[name] = tr
        finish = self._finisher(nodes)
        run = start_run(
            flow,
            executor=executor,
            max_workers=jobs,
            background=background,
            refresh=refresh,
            prior=prior,
            store=self.home,
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
        from nbflow.hashing import Unhashable, fingerprint

        for name, node in nodes.items():
            if node.task.fn is _failed_earlier:
                continue
            tr = run[node]
            fp = None
            if tr.state in _FAILED:
                try:
                    fp = fingerprint(node.task.fn, node.task.cache_version)
                except Unhashable:
                    fp = None
            error = tr.error
            if tr.children:
                error = next((c.error for c in tr.children if c.error is not None), error)
            self.status[name] = CellStatus(tr.state, tr, fp, error)
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
        bad = (*_FAILED, State.UPSTREAM_FAILED)
        return [n for n, s in self.status.items() if s.state in bad and n in self.cells]

    def restore(self) -> list[str]:
        """Define the cells stored for this flow that this kernel does not have; return
        the names of cells whose latest recorded run did not succeed."""
        for stored in open_cells(self.store_home()).load(self.name):
            if stored.name not in self.cells:
                try:
                    self.define(
                        stored.name,
                        stored.source,
                        CellOptions.from_json(stored.options),
                        stored.filename,
                        persist=False,
                    )
                except CellError:
                    continue  # superseded by a cell defined in this kernel
                cellcode.register_source(stored.filename, stored.source)
        return [n for n, state in self.recorded_states().items() if not state.is_ok]

    def recorded_states(self, limit: int = 200) -> dict[str, State]:
        """Each cell's state in the latest recorded run that included it."""
        from nbflow.history import open_history

        home = self.store_home()
        if not (home / "history.sqlite").exists():
            return {}
        history = open_history(home)
        states: dict[str, State] = {}
        for row in history.runs(limit):
            if row["flow"] != self.name:
                continue
            for t in history.load(row["id"])[1]:
                if t["map_index"] is None and t["name"] in self.cells:
                    states.setdefault(t["name"], State(t["state"]))
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

    def unpicklable_input(self, name: str, error: BaseException) -> str | None:
        """Why cell ``name`` could not travel to a worker process, naming the input."""
        text = f"{type(error).__name__}: {error}".lower()
        if "pickl" not in text:
            return None
        import cloudpickle

        for n in self.cells[name].analysis.inputs:
            if n not in self.user_ns:
                continue
            try:
                cloudpickle.dumps(self.user_ns[n])
            except Exception as exc:
                return (
                    f"Cell '{name}' cannot run in a worker process: its input '{n}' (a "
                    f"{type(self.user_ns[n]).__name__}) cannot be sent there ({exc}). Open "
                    "files, locks and connections cannot travel: create it inside the cell, "
                    "or run with --executor threads."
                )
        return None

    def explain_warning(self, message: str) -> str:
        """A cache warning about a cell's closure value, said in terms of its inputs."""
        import re

        found = re.match(r"Task '(.+?)' is not cached: its closure value (\d+) is (.*)", message)
        if found is None or found.group(1) not in self.cells:
            return message
        name = found.group(1)
        code = self.cells[name].codes
        for factory in code.values():
            if not hasattr(factory, "co_consts"):
                continue
            inner = next(c for c in factory.co_consts if hasattr(c, "co_freevars"))
            free = inner.co_freevars
            index = int(found.group(2))
            if index < len(free) and free[index].startswith(cellcode.NS):
                var = free[index][len(cellcode.NS) :]
                return (
                    f"Cell '{name}' is not cached: its input '{var}' is "
                    f"{found.group(3).split(' that ')[0]} that cannot be hashed. Create it "
                    "inside the cell, or make it picklable."
                )
        return message

    def table(self) -> Any:
        """The task cells with their inputs, outputs, upstream cells, options and state."""
        import pandas as pd

        rows = []
        producers = self.producers()
        for cell in self.cells.values():
            opts = {
                k: v for k, v in cell.options.to_json().items() if v != CellOptions().to_json()[k]
            }
            status = self.status.get(cell.name)
            rows.append(
                {
                    "task": cell.name,
                    "inputs": ", ".join(cell.reads),
                    "outputs": ", ".join(cell.analysis.outputs),
                    "upstream": ", ".join(self.upstream_of(cell)),
                    "notebook inputs": ", ".join(n for n in cell.reads if n not in producers),
                    "options": ", ".join(f"{k}={v}" for k, v in opts.items()),
                    "state": status.state.value if status else "",
                }
            )
        columns = ["task", "inputs", "outputs", "upstream", "notebook inputs", "options", "state"]
        return pd.DataFrame(rows, columns=columns)

    def with_parameter(self, name: str, value: Any) -> None:
        """Set a notebook variable read by task cells (``%flow run --param``)."""
        self.parameters[name] = value
        self.user_ns[name] = value


__all__ = ["CellDef", "CellError", "CellOptions", "NotebookFlow", "flow_name"]
