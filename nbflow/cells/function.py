"""A ``%%task`` cell as a function that runs anywhere (main thread, threads, processes).

The cell's body is compiled once per shape into a factory::

    def factory(take, show, capture, copy, timed, __nbflow_ns_a, ...):  # namespace inputs
        def cell(__nbflow_up_0, ..., item):                  # upstream cells' results
            global g                                          # a name its functions share
            with capture() as out:
                a = __nbflow_ns_a                             # the prologue binds inputs
                x = take(__nbflow_up_0, 'x', False)
                (m, n) = copy((m, n))                         # inputs the cell mutates
                <the cell's own statements, at their own line numbers>
            return out.result(locals(), ('y', ...))
        return cell

Namespace values are closure values, so the task fingerprint follows them exactly
as it follows a ``@task``'s globals (helpers by source, values by hash). The result
is a ``CellResult``: the outputs plus the cell's stdout and rich outputs, cached
together so a cache hit looks the same as a run.

A name that a function of the cell declares ``global`` is a global of the cell
function too (the notebook's namespace, as for a plain cell): the function sees what
the cell binds during the run, and what it binds is taken from there.
"""

from __future__ import annotations

import ast
import linecache
import pickle
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nbflow import logs
from nbflow.cells.analysis import TIMED, CellAnalysis

NS = "__nbflow_ns_"
UP = "__nbflow_up_"
_HELPERS = ("__nbflow_take", "__nbflow_show", "__nbflow_capture", "__nbflow_copy", TIMED)

_local = threading.local()
# Set by the magics in the kernel: rich output is recorded and shown live there.
live = False


class CellResult:
    """What a cell run produced: its output ``values``, ``stdout`` and ``displays``
    (``(data, metadata)`` pairs), and the ``seconds`` its code took (kept with the
    result: a cache hit can say what computing it took; None when not known).
    Pickled with cloudpickle, so functions and classes a cell defines are cached and
    travel between processes too.

    >>> import pickle
    >>> result = CellResult({"square": lambda v: v * v}, "hello", [])
    >>> pickle.loads(pickle.dumps(result)).values["square"](4)
    16
    """

    __slots__ = ("displays", "seconds", "stdout", "values")

    def __init__(
        self,
        values: dict[str, Any],
        stdout: str,
        displays: list[tuple[Any, Any]],
        seconds: float | None = None,
    ) -> None:
        self.values = values
        self.stdout = stdout
        self.displays = displays
        self.seconds = seconds

    @property
    def nbytes(self) -> int:
        """Roughly how large the outputs are (arrays and frames), so that the store
        writes a large result straight into its own file."""
        total = 0
        for value in self.values.values():
            size = getattr(value, "nbytes", None)
            if isinstance(size, int):
                total += size
            elif hasattr(value, "memory_usage") and hasattr(value, "columns"):
                try:
                    total += int(value.memory_usage(deep=False).sum())
                except Exception:
                    continue
        return total

    def __reduce__(self) -> tuple[Any, ...]:
        import cloudpickle

        values = cloudpickle.dumps(self.values, protocol=5)
        return (_load, (values, self.stdout, self.displays, self.seconds))

    def __repr__(self) -> str:
        return f"<CellResult {sorted(self.values)}>"


def _load(
    data: bytes, stdout: str, displays: list[tuple[Any, Any]], seconds: float | None = None
) -> CellResult:
    # Results cached before they kept their seconds have three arguments.
    return CellResult(pickle.loads(data), stdout, displays, seconds)


def computed_seconds(value: Any) -> float | None:
    """What computing a cell's result took (a mapped cell's: its children's in all),
    as kept with it; None when not known.

    >>> computed_seconds(CellResult({}, "", [], 1.5)), computed_seconds(42)
    (1.5, None)
    >>> computed_seconds([CellResult({}, "", [], 1.0), CellResult({}, "", [], 0.5)])
    1.5
    """
    if isinstance(value, list):
        parts = [computed_seconds(v) for v in value]
        return None if not parts or None in parts else sum(p for p in parts if p is not None)
    return value.seconds if isinstance(value, CellResult) else None


class _Output(logs.Capture):
    """A cell's prints, kept as text (and as log records of its task run)."""

    __slots__ = ("began", "displays", "suspended", "text")

    def __init__(self, name: str, tee: bool) -> None:
        super().__init__(name, True, tee)
        self.text: list[str] = []
        self.displays: list[tuple[Any, Any]] = []
        self.suspended = False
        self.began = time.perf_counter()

    def write(self, text: str) -> None:
        if not self.suspended:
            self.text.append(text)
            super().write(text)

    def result(
        self,
        scope: dict[str, Any],
        names: tuple[str, ...],
        shared: dict[str, Any] | None = None,
        shared_names: tuple[str, ...] = (),
    ) -> CellResult:
        values = {n: scope[n] for n in names if n in scope}
        if shared is not None:  # the cell's names that are globals (its functions share them)
            values.update({n: shared[n] for n in shared_names if n in shared})
        took = time.perf_counter() - self.began
        return CellResult(values, "".join(self.text), self.displays, took)


@contextmanager
def capture(name: str) -> Iterator[_Output]:
    """Capture a cell's prints and rich outputs (in this thread only)."""
    out = _Output(name, tee=live)
    previous = logs.push(out)
    outer = getattr(_local, "output", None)
    _local.output = out
    try:
        yield out
    finally:
        _local.output = outer
        logs.end(out, previous)
        if previous is not None:
            previous.records.extend(out.records)  # the task run keeps them as its logs


def current_output() -> Any:
    """The output capture of the cell running in this thread, or None."""
    return getattr(_local, "output", None)


def take(upstream: Any, name: str, mapped: bool) -> Any:
    """An input of a cell from an upstream cell's result (a list of them if mapped).

    >>> take([CellResult({"x": 1}, "", []), CellResult({"x": 2}, "", [])], "x", True)
    [1, 2]
    """
    if mapped:
        return [take(r, name, False) for r in upstream]
    if isinstance(upstream, BaseException):  # a trigger let the cell run anyway
        return upstream
    try:
        return upstream.values[name]
    except KeyError:
        raise NameError(
            f"name '{name}' is not defined: the cell that defines it did not bind it "
            "in its last run (was it assigned inside an if?)"
        ) from None


def copy_inputs(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Copies of the inputs a cell mutates, made together so that objects they share
    stay shared (``fig`` and its ``ax``); modules are not copied. What cannot be
    copied is shared, with a warning: the version the cell read may change.

    >>> xs = [1]; ys, = copy_inputs((xs,)); ys.append(2); xs
    [1]
    """
    import copy
    import warnings

    memo: dict[int, Any] = {id(v): v for v in values if isinstance(v, types.ModuleType)}
    try:
        return tuple(copy.deepcopy(values, memo))
    except Exception:
        pass
    out = []
    for value in values:
        try:
            out.append(copy.deepcopy(value, dict(memo)))
        except Exception as exc:
            from nbflow.errors import NbflowWarning

            warnings.warn(
                f"nbflow cannot copy a {type(value).__name__} the cell changes in place "
                f"({type(exc).__name__}: {exc}); the cell above that made it sees the "
                "change too. Rebind instead (x = f(x)) to keep each version.",
                NbflowWarning,
                stacklevel=2,
            )
            out.append(value)
    return tuple(out)


@contextmanager
def timed() -> Iterator[None]:
    """``%time STATEMENT`` in a cell: the statement runs in the cell, and its times are
    printed as IPython's ``%time`` prints them.

    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()) as out, timed():
    ...     _ = sum(range(10))
    >>> out.getvalue().startswith("CPU times: user ")
    True
    """
    import os
    import sys

    before, wall = os.times(), time.perf_counter()
    yield
    wall, after = time.perf_counter() - wall, os.times()
    user, system = after.user - before.user, after.system - before.system
    sys.stdout.write(
        f"CPU times: user {_seconds(user)}, sys: {_seconds(system)}, "
        f"total: {_seconds(user + system)}\nWall time: {_seconds(wall)}\n"
    )


def _seconds(value: float) -> str:
    """A duration as IPython's ``%time`` writes it.

    >>> _seconds(0.0123), _seconds(2.5), _seconds(0.0)
    ('12.3 ms', '2.5 s', '0 ns')
    """
    if value >= 1:
        return f"{value:.3g} s"
    for unit, scale in (("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
        if value * scale >= 1 or unit == "ns":
            return f"{value * scale:.3g} {unit}"
    return f"{value} s"  # pragma: no cover - the loop always returns


def show(value: Any) -> None:
    """Show a cell's last expression, as a notebook does (``display`` in a kernel)."""
    if value is None:
        return
    if live:
        from IPython.display import display

        display(value)  # type: ignore[no-untyped-call]
    else:
        import sys

        sys.stdout.write(f"{value!r}\n")  # the cell's own output, captured as its stdout


def make_factory(
    tree: ast.Module,
    analysis: CellAnalysis,
    filename: str,
    func_name: str,
    upstream: dict[str, tuple[str, bool]],
    namespace: tuple[str, ...],
    map_var: str | None,
    params: list[str],
    returns: str | None = None,
    outputs: tuple[str, ...] | None = None,
    copies: tuple[str, ...] = (),
) -> types.CodeType:
    """Compile a cell into the code of its factory (see the module docstring).

    ``upstream`` maps a name the cell takes to (the argument holding its cell's
    result, mapped?); ``params`` are those arguments, one per upstream cell;
    ``namespace`` lists the inputs read from the notebook (closure values);
    ``outputs`` the names its result holds (its analysis's by default);
    ``copies`` the inputs it works on copies of (it changes them in place);
    ``returns`` makes the function return that one output as a list instead.
    """
    first = tree.body[0] if tree.body else None
    where = {"lineno": first.lineno if first else 1, "col_offset": 0}

    def parse_stmt(code: str) -> ast.stmt:
        stmt = ast.parse(code).body[0]
        for node in ast.walk(stmt):
            if "lineno" in node._attributes:
                node.lineno = node.end_lineno = where["lineno"]  # type: ignore[attr-defined]
                node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
        return stmt

    # Upstream results first, and an input named like an argument last: once every
    # input has been taken from the arguments, their names are free.
    prologue = []
    takes = sorted(upstream, key=lambda n: n in params)
    for name in takes:
        param, mapped = upstream[name]
        prologue.append(parse_stmt(f"{name} = __nbflow_take({param}, {name!r}, {mapped})"))
    for name in analysis.inputs:
        if name in namespace and name not in upstream:
            prologue.append(parse_stmt(f"{name} = {NS}{name}"))
    copied = [n for n in copies if n in upstream or n in namespace]
    if copied:
        names = ", ".join(copied)
        prologue.append(parse_stmt(f"({names},) = __nbflow_copy(({names},))"))
    # At the top of a notebook ``global x`` changes nothing; in the cell's function it
    # would (and after the prologue's ``x = ...`` it could not compile).
    body = [ast.copy_location(ast.Pass(), s) if isinstance(s, ast.Global) else s for s in tree.body]
    if analysis.last_expression and body:
        last = body[-1]
        assert isinstance(last, ast.Expr)
        call = ast.Call(ast.Name("__nbflow_show", ast.Load()), [last.value], [])
        body[-1] = ast.copy_location(ast.Expr(ast.copy_location(call, last.value)), last)
    params = [*params, *([map_var] if map_var else [])]
    outputs = tuple(analysis.outputs) if outputs is None else outputs
    shared = [n for n in analysis.shared if n not in params]
    in_globals = tuple(n for n in outputs if n in shared)
    result = f"__nbflow_out.result(locals(), {outputs!r})"
    if in_globals:
        result = f"__nbflow_out.result(locals(), {outputs!r}, globals(), {in_globals!r})"
    if returns is not None:
        result = f"list({result}.values[{returns!r}])"
    skeleton = parse_stmt(
        f"def __nbflow_factory({', '.join([*_HELPERS, *(NS + n for n in namespace)])}):\n"
        f"    def {func_name}({', '.join(params)}):\n"
        + (f"        global {', '.join(shared)}\n" if shared else "")
        + f"        with __nbflow_capture({func_name!r}) as __nbflow_out:\n"
        f"            pass\n"
        f"        return {result}\n"
        f"    return {func_name}\n"
    )
    assert isinstance(skeleton, ast.FunctionDef)
    inner = skeleton.body[0]
    assert isinstance(inner, ast.FunctionDef)
    with_stmt = next(s for s in inner.body if isinstance(s, ast.With))
    with_stmt.body = [*prologue, *body] or [ast.Pass()]
    module = ast.Module(body=[skeleton], type_ignores=[])
    ast.fix_missing_locations(module)
    code = compile(module, filename, "exec", dont_inherit=True)
    found = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def build(
    factory: types.CodeType, user_ns: dict[str, Any], values: tuple[Any, ...]
) -> Callable[..., CellResult]:
    """The cell function: ``factory`` run with the notebook's namespace as its globals."""
    make = types.FunctionType(factory, user_ns)
    fn: Callable[..., CellResult] = make(take, show, capture, copy_inputs, timed, *values)
    return fn


def register_source(filename: str, source: str) -> None:
    """Make a cell's source readable by tracebacks (``linecache``) under ``filename``."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)


def arguments(upstream_cells: list[str], taken: set[str]) -> list[str]:
    """The argument names of a cell function, one per upstream cell: the cell's name
    as an identifier (shown on the edges of the drawn flow) unless that is taken.

    >>> arguments(["raw data", "x"], {"x"})
    ['raw_data', '__nbflow_up_1']
    """
    out: list[str] = []
    for i, cell in enumerate(upstream_cells):
        name = identifier(cell)
        out.append(name if name not in taken and name not in out else f"{UP}{i}")
    return out


def identifier(name: str) -> str:
    """A Python identifier for a task name (the cell function's name in tracebacks).

    >>> identifier("clean data-2")
    'clean_data_2'
    """
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else f"cell_{out}"
