"""The task cells of a notebook as definitions and a graph (``CellGraph``).

Cells are in notebook order (the order they were first defined). A cell reads the
version of a name bound by the nearest task cell above it, as when reading the
notebook top to bottom; rebinding a name is normal. A cell that mutates a name it
reads produces a new version of it (and of the names of the cell it came from, which
may share its object: ``ax`` of ``fig``), and works on a copy so the version it read
stays as it was. A cell's upstream cells are the producers of the versions it reads,
plus its ``--after`` cells. Nothing here runs anything (see ``nbflow.cells.notebook``).
"""

from __future__ import annotations

import ast
import graphlib
import os
import pathlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nbflow import settings
from nbflow.cells import function as cellcode
from nbflow.cells.analysis import (
    CellAnalysis,
    CellSyntaxError,
    analyse,
    default_name,
    normalised,
    parse,
    private,
)
from nbflow.engine.records import TaskRun
from nbflow.errors import NbflowError, did_you_mean
from nbflow.graph import hashing
from nbflow.graph.options import FLAGGED, OPTIONS
from nbflow.state import State

FORMAT = "2"  # bump when the compiled form of cells changes what a cached result means


class CellError(NbflowError, ValueError):
    """A task cell cannot be defined or run as written (the front end shows it plainly);
    ``cell`` names the cell at fault when it is known."""

    def __init__(self, message: str, cell: str | None = None) -> None:
        super().__init__(message)
        self.cell = cell


def flow_name() -> str:
    """The notebook's flow name: ``NBFLOW_NOTEBOOK``'s stem, else ``JPY_SESSION_NAME``'s,
    else ``"notebook"``.

    >>> import os
    >>> os.environ[settings.NOTEBOOK] = "/work/analysis/sales.ipynb"
    >>> flow_name()
    'sales'
    >>> del os.environ[settings.NOTEBOOK]
    """
    # JPY_SESSION_NAME is Jupyter's (the notebook a JupyterLab kernel serves), not ours.
    for value in (settings.notebook(), os.environ.get("JPY_SESSION_NAME")):
        if value:
            stem = pathlib.PurePath(value).stem
            if stem:
                return stem
    return "notebook"


@dataclass(frozen=True)
class CellOptions:
    """The options of a ``%%task`` line: the task's run options its flags set (with
    ``@task``'s defaults, from ``nbflow.graph.options``) and what only a cell has.

    >>> CellOptions.from_json(CellOptions(retries=2, after=("load",)).to_json()).after
    ('load',)
    """

    retries: int = OPTIONS["retries"].default
    retry_delay: float = OPTIONS["retry_delay"].default
    timeout: float | None = OPTIONS["timeout"].default
    cache: bool = OPTIONS["cache"].default
    after: tuple[str, ...] = ()
    map_var: str | None = None
    map_expr: str | None = None
    trigger: str = OPTIONS["trigger"].default
    lazy: bool = False

    def run_options(self) -> dict[str, Any]:
        """The task options of the cell, as keywords for ``Task``.

        >>> CellOptions(retries=2).run_options()["retries"]
        2
        """
        return {o.name: getattr(self, o.name) for o in FLAGGED}

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
    # The inputs it passes to functions that may change them (not a library's),
    # decided when the cell is defined and kept with its definition: a new kernel,
    # without the notebook's functions, must see the same versions.
    changes: tuple[str, ...] = ()

    @property
    def reads(self) -> tuple[str, ...]:
        """Inputs of the cell and of its ``--map`` expression."""
        extra = self.map_analysis.inputs if self.map_analysis else ()
        return tuple(dict.fromkeys((*self.analysis.inputs, *extra)))


@dataclass
class Versions:
    """Which cell's version of each name every cell reads (see the module docstring).

    ``sources[cell][name]`` is the cell whose version of ``name`` the cell takes (the
    names it reads, the builtin names a cell above binds, and the names it carries
    along with one it mutates); ``exports[cell]`` the names it produces;
    ``copies[cell]`` the inputs it works on copies of (it mutates them or their
    siblings).
    """

    sources: dict[str, dict[str, str]]
    exports: dict[str, tuple[str, ...]]
    copies: dict[str, tuple[str, ...]]


@dataclass
class CellStatus:
    """How a cell's last run in this kernel ended."""

    state: State
    task_run: TaskRun | None
    fingerprint: str | None = None
    error: BaseException | None = None


def digest(*parts: str) -> str:
    """``hashing.digest`` of text parts (the cell's version key)."""
    return hashing.digest(*(p.encode() for p in parts))


class CellGraph:
    """The task cells of one notebook, by task name, and the edges between them.

    >>> graph = CellGraph()
    >>> _ = graph.define(None, "xs = [1, 2]", CellOptions(), "<a>")
    >>> _ = graph.define(None, "total = sum(xs)", CellOptions(), "<b>")
    >>> graph.upstream_of(graph.cells["total"])
    ['xs']
    """

    def __init__(self) -> None:
        self.cells: dict[str, CellDef] = {}
        self.status: dict[str, CellStatus] = {}
        self.cell_ids: dict[str, str] = {}
        self._positions = 0
        self._by_text: dict[tuple[str, CellOptions, str], str] = {}
        self._versions: tuple[tuple[int, ...], Versions] | None = None

    def is_module(self, name: str) -> bool:
        """Whether a notebook variable (not a task cell's) holds a module or a library's
        function or class: calling it (``np.mean(x)``, ``len(x)``) changes nothing the
        notebook can see as a name of its own. The notebook flow knows."""
        return False

    def versions(self, cells: dict[str, CellDef] | None = None) -> Versions:
        """Who reads which version of each name (worked out once per set of cells)."""
        cells = self.cells if cells is None else cells
        shape = tuple(id(c) for c in cells.values())
        if cells is self.cells and self._versions is not None and self._versions[0] == shape:
            return self._versions[1]
        current: dict[str, str] = {}  # name -> the cell of its latest version so far
        modules: set[str] = set()  # names whose latest version was bound by an import
        found = Versions({}, {}, {})
        for cell in sorted(cells.values(), key=lambda c: c.position):
            a = cell.analysis
            reads = (*cell.reads, *a.builtins)
            src = {n: current[n] for n in reads if n in current and not private(n)}

            mutated = [n for n in cell.changes if n not in modules]
            carried: dict[str, str] = {}
            for n in mutated:
                up = src.get(n)
                if up is None:
                    continue
                for sib in found.exports.get(up, ()):
                    if current.get(sib) == up and sib not in src and sib not in modules:
                        carried[sib] = up
            src.update(carried)
            froms = {src[n] for n in mutated if n in src}
            copies = [n for n in src if src[n] in froms and n not in modules]
            exports = list(a.outputs)
            if not cell.options.map_var:  # a mapped cell's outputs are lists
                exports += [n for n in (*mutated, *carried) if n not in exports]
            found.sources[cell.name] = src
            found.copies[cell.name] = tuple(dict.fromkeys(copies))
            found.exports[cell.name] = tuple(exports)
            for n in exports:
                current[n] = cell.name
                if n in a.imported:
                    modules.add(n)
                else:
                    modules.discard(n)
        if cells is self.cells:
            self._versions = (shape, found)
        return found

    def sources(self, cell: CellDef) -> dict[str, str]:
        """The cell each name ``cell`` takes comes from (its upstream versions)."""
        return self.versions().sources.get(cell.name, {})

    def exports(self, cell: CellDef) -> tuple[str, ...]:
        """The names ``cell`` produces: its outputs and the inputs it mutates."""
        return self.versions().exports.get(cell.name, cell.analysis.outputs)

    def _changes(self, analysis: CellAnalysis, position: int) -> tuple[str, ...]:
        """The inputs the cell changes: those it mutates that are not modules, and
        those it passes to a function that is not a module's or library's (a task
        cell above imported it, or the notebook's value of it says so)."""
        above = [c for c in self.cells.values() if c.position < position]

        def library(name: str) -> bool:
            binders = [c for c in above if name in c.analysis.outputs]
            if not binders:
                return self.is_module(name)
            return name in max(binders, key=lambda c: c.position).analysis.imported

        out = [n for n in analysis.mutated if not library(n)]
        for f, n in analysis.passed:
            changing = f in analysis.outputs or not library(f)
            if changing and n not in out and not library(n):
                out.append(n)
        return tuple(out)

    def _default_name(self, analysis: CellAnalysis, previous: str | None) -> str:
        """The first public output, unless another cell has that name; else ``cell N``
        (N counts task cells in notebook order)."""
        first = default_name(analysis.outputs, analysis.imported)
        if first is not None and (first not in self.cells or first == previous):
            return first
        if first is not None and not self.cell_ids:
            return first  # no cell ids (a terminal): the same name is the same cell
        old = self.cells.get(previous) if previous else None
        number = (old.position if old else self._positions) + 1
        return f"cell {number}"

    def define(
        self,
        name: str | None,
        source: str,
        options: CellOptions,
        filename: str,
        cell_id: str | None = None,
        changes: tuple[str, ...] | None = None,
    ) -> CellDef:
        """Add or replace a task cell. Raises ``CellError`` naming the cells involved.
        ``changes``: what the cell's function calls change, as decided before."""
        same = self._by_text.get((source, options, filename))
        if (
            same in self.cells
            and self.cells[same].source == source
            and name in (None, same)
            and (not cell_id or self.cell_ids.get(cell_id) in (None, same))
        ):
            # The very cell run again: its analysis and checks still hold.
            if cell_id:
                self.cell_ids[cell_id] = same
            return self.cells[same]
        try:
            tree = parse(source)
            bound = (options.map_var,) if options.map_var else ()
            analysis = analyse(tree, bound)
            map_analysis = analyse(parse(options.map_expr)) if options.map_expr else None
        except CellSyntaxError as exc:
            raise CellError(f"%%task {name or ''}: {exc}".replace("  ", " ")) from None
        previous_name = self.cell_ids.get(cell_id) if cell_id else None
        if name is None:
            name = self._default_name(analysis, previous_name)
        owner = next((c for c, n in self.cell_ids.items() if n == name), None)
        if cell_id and owner is not None and owner != cell_id and name != previous_name:
            raise CellError(
                f"Another cell already defines task '{name}'. Give this cell its own name "
                f"(%%task other_name), or, if that cell was deleted, forget it first with "
                f"%flow clear {name}."
            )
        replacing = {name} | ({previous_name} if previous_name else set())
        others = [c for c in self.cells.values() if c.name not in replacing]
        known = {c.name for c in others}
        for up in options.after:
            if up not in known:
                raise CellError(
                    f"%%task {name}: --after names '{up}', which is not a task cell."
                    f"{did_you_mean(up, known)} Task cells: {', '.join(sorted(known)) or 'none'}."
                )
        # What the cell computes: its code and what it maps over, not how it is run
        # (retries, timeout, --lazy ...), as for @task options.
        version = digest(FORMAT, normalised(tree), options.map_var or "", options.map_expr or "")
        if analysis.shared:  # its functions' globals became the cell's own names
            version = digest(version, "shared", *analysis.shared)
        old = self.cells.get(name) or (self.cells.get(previous_name) if previous_name else None)
        position = old.position if old else self._positions
        if old is None:
            self._positions += 1
        cell = CellDef(
            name, source, options, filename, position, tree, analysis, map_analysis, version
        )
        cell.changes = self._changes(analysis, position) if changes is None else changes
        if old is not None and old.version == version and old.filename == filename:
            cell.codes = old.codes
        candidate = {c.name: c for c in others}
        candidate[name] = cell
        # A cell reads only from cells above it: only --after can close a cycle.
        if options.after or any(c.options.after for c in others):
            self._check_cycle(candidate)
        if previous_name and previous_name != name:
            self.cells.pop(previous_name, None)
            self.status.pop(previous_name, None)
        self.cells[name] = cell
        if cell_id:
            self.cell_ids[cell_id] = name
        self._by_text[(source, options, filename)] = name
        return cell

    def snapshot(self) -> Callable[[], None]:
        """A function that puts the definitions back as they are now (a cell rejected
        when it first runs must not stay defined)."""
        cells, status = dict(self.cells), dict(self.status)
        cell_ids, by_text = dict(self.cell_ids), dict(self._by_text)

        def undo() -> None:
            self.cells.clear()
            self.cells.update(cells)
            self.status.clear()
            self.status.update(status)
            self.cell_ids.clear()
            self.cell_ids.update(cell_ids)
            self._by_text.clear()
            self._by_text.update(by_text)

        return undo

    def upstream_of(self, cell: CellDef, cells: dict[str, CellDef] | None = None) -> list[str]:
        """The cells ``cell`` depends on: producers of its inputs, then ``--after`` cells."""
        return _upstream(cell, self.versions(cells).sources.get(cell.name, {}))

    def upstream_map(self, cells: dict[str, CellDef] | None = None) -> dict[str, list[str]]:
        """``upstream_of`` every cell, by name (the versions are worked out once)."""
        cells = self.cells if cells is None else cells
        sources = self.versions(cells).sources
        return {name: _upstream(cell, sources.get(name, {})) for name, cell in cells.items()}

    def _check_cycle(self, cells: dict[str, CellDef]) -> None:
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for name, ups in self.upstream_map(cells).items():
            sorter.add(name, *(u for u in ups if u in cells))
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
        upstream = self.upstream_map()
        seen: dict[str, None] = {}
        stack = list(names)
        while stack:
            n = stack.pop()
            if n in seen or n not in self.cells:
                continue
            seen[n] = None
            stack.extend(upstream[n])
        return self._sorted(seen, upstream)

    def descendants(self, names: Iterable[str]) -> list[str]:
        """``names`` and every cell that depends on them."""
        upstream = self.upstream_map()
        out = set(names)
        changed = True
        while changed:
            changed = False
            for name, ups in upstream.items():
                if name not in out and any(u in out for u in ups):
                    out.add(name)
                    changed = True
        return self._sorted(out, upstream)

    def _sorted(self, names: Iterable[str], upstream: dict[str, list[str]]) -> list[str]:
        wanted = set(names)
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for n in sorted(wanted, key=lambda n: self.cells[n].position):
            sorter.add(n, *(u for u in upstream[n] if u in wanted))
        return list(sorter.static_order())

    def arguments(self, cell: CellDef, ups: list[str]) -> list[str]:
        """The names of the arguments that carry the upstream cells' results."""
        taken = {cell.options.map_var} if cell.options.map_var else set()
        taken.update(cell.analysis.shared)  # globals of the cell's function
        return cellcode.arguments(ups, taken)

    def takes(self, cell: CellDef) -> dict[str, str]:
        """The names the cell's code takes from upstream cells, and from which (what
        its ``--map`` expression reads goes to the cell listing its items)."""
        src = self.sources(cell)
        mapped_only = set(cell.reads) - set(cell.analysis.inputs)
        return {n: up for n, up in src.items() if n not in mapped_only}

    def data_upstream(self, cell: CellDef) -> list[str]:
        """The cells whose outputs ``cell`` reads, in the order it reads them."""
        return [u for u in dict.fromkeys(self.takes(cell).values()) if u != cell.name]

    def table(self) -> Any:
        """The task cells with their inputs, outputs, upstream cells, options and state."""
        import pandas as pd

        rows = []
        upstream = self.upstream_map()
        defaults = CellOptions().to_json()
        for cell in self.cells.values():
            opts = {k: v for k, v in cell.options.to_json().items() if v != defaults[k]}
            status = self.status.get(cell.name)
            rows.append(
                {
                    "task": cell.name,
                    "inputs": ", ".join(cell.reads),
                    "outputs": ", ".join(self.exports(cell)),
                    "upstream": ", ".join(upstream[cell.name]),
                    "notebook inputs": ", ".join(
                        n for n in cell.reads if n not in self.sources(cell)
                    ),
                    "options": ", ".join(f"{k}={v}" for k, v in opts.items()),
                    "state": status.state.value if status else "",
                }
            )
        columns = ["task", "inputs", "outputs", "upstream", "notebook inputs", "options", "state"]
        return pd.DataFrame(rows, columns=columns)


def _upstream(cell: CellDef, sources: dict[str, str]) -> list[str]:
    ups = [up for up in sources.values() if up != cell.name]
    return list(dict.fromkeys([*ups, *cell.options.after]))
