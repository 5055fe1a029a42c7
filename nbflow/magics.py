"""The notebook front end: ``%%task`` cells and the ``%flow`` commands (IPython magics).

``%load_ext nbflow`` calls ``load_ipython_extension``, which registers them. Usage
errors raise IPython's ``UsageError`` (shown without a traceback); a failing cell
raises its own error with a traceback of the cell's own lines. Live status goes
through ``_display_run`` alone, so the DAG widget can take over there.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display as _ipython_display

from nbflow import cellcode
from nbflow.errors import NbflowError, UpstreamFailedError, did_you_mean
from nbflow.magicargs import COMMANDS, flow_parser, parse_param, parse_task_line, split
from nbflow.notebook import CellError, NotebookFlow
from nbflow.run import FlowRun
from nbflow.state import State

_MARK = {
    "success": "✓",
    "cached": "✓",
    "skipped": "-",
    "failed": "✗",
    "timed_out": "✗",
    "upstream_failed": "✗",
    "cancelled": "✗",
    "running": "…",
    "retrying": "↻",
    "pending": "·",
    "paused": "‖",
}
_BAD = (State.FAILED, State.TIMED_OUT, State.UPSTREAM_FAILED, State.CANCELLED)


def display(*objs: Any, **kwargs: Any) -> Any:
    """IPython's ``display`` (typed here: IPython's is not)."""
    return _ipython_display(*objs, **kwargs)  # type: ignore[no-untyped-call]


def _status_line(name: str, tr: Any) -> str:
    state = tr.state.value
    parts = [f"{_MARK.get(state, '?')} {name}: {state}"]
    if tr.children is not None:
        done = sum(c.state.is_finished for c in tr.children)
        parts.append(f"{done}/{len(tr.children)} mapped")
    attempts = tr.attempts if tr.children is None else sum(c.attempts for c in tr.children)
    if attempts:
        parts.append(f"{attempts} attempt{'s' if attempts != 1 else ''}")
    if tr.duration is not None:
        parts.append(f"{tr.duration:.3f}s" if tr.duration < 10 else f"{tr.duration:.1f}s")
    if tr.children is not None and tr.children and all(c.cached for c in tr.children):
        parts.append("cached")
    if tr.reason and state in ("upstream_failed", "skipped"):
        parts.append(tr.reason)
    return ", ".join(parts)


def _status_text(run: FlowRun, focus: str | None) -> str:
    lines = []
    for node in run.flow.tasks:
        name = run.flow.name_of(node)
        tr = run[node]
        # Running one cell: its upstream cells matter only when they did something.
        if focus is not None and name != focus and tr.state is State.CACHED:
            continue
        lines.append(_status_line(name, tr))
    return "\n".join(lines) or f"{run!r}"


def _display_run(run: FlowRun, focus: str | None = None) -> None:
    """Show a run's status, one line per cell run (updated live while it runs);
    with ``focus`` (the cell being run), upstream cells reused from the cache are
    left out.

    The one place that shows runs: the live DAG widget plugs in here.
    """
    names = focus
    handle = display({"text/plain": _status_text(run, names)}, raw=True, display_id=True)
    if run.done or handle is None:
        return
    last = [0.0]
    lock = threading.Lock()

    def update(event: Any) -> None:
        now = time.monotonic()
        final = event.kind == "run_finished"
        with lock:
            if not final and now - last[0] < 0.2:
                return
            last[0] = now
        handle.update({"text/plain": _status_text(run, names)}, raw=True)

    run.subscribe(update)
    if run.done:
        update(type("Done", (), {"kind": "run_finished"})())


def _user_traceback(exc: BaseException, filenames: set[str]) -> BaseException:
    """``exc`` with its traceback cut to start at the cell's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename not in filenames:
        tb = tb.tb_next
    return exc.with_traceback(tb) if tb is not None else exc


@magics_class
class NbflowMagics(Magics):
    """``%%task`` and ``%flow``."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.notebook = NotebookFlow(shell.user_ns)
        self.cell_id: str | None = None

    # -- %%task -------------------------------------------------------------------
    @cell_magic
    def task(self, line: str, cell: str) -> None:
        """Define a task cell and run it now (``--lazy``: only define it)."""
        __tracebackhide__ = True
        name, options = parse_task_line(line)
        filename = self._filename(line, cell)
        assert self.shell is not None
        # IPython syntax inside the cell (!ls, %time) becomes Python, line for line.
        body = cell
        if "!" in cell or "%" in cell:
            body = self.shell.transform_cell(cell)  # type: ignore[no-untyped-call]
        source = "\n" + body  # line 1 is the %%task line: keep the cell's line numbers
        try:
            cell_def = self.notebook.define(name, source, options, filename, self.cell_id)
        except CellError as exc:
            raise UsageError(str(exc)) from None
        assert self.shell is not None
        _install_display_capture(self.shell)  # capture_output() may have swapped it
        if options.lazy:
            display({"text/plain": f"· {cell_def.name}: defined (--lazy)"}, raw=True)
            return
        self._run([cell_def.name], executor="sequential", target=cell_def.name)

    def _filename(self, line: str, cell: str) -> str:
        assert self.shell is not None
        raw = f"%%task {line}\n{cell}"
        try:
            number = self.shell.execution_count
            filename: str = self.shell.compile.cache(raw, number, raw)
        except Exception:  # an older IPython: our own name, registered below
            filename = f"<cell {abs(hash(raw))}>"
        cellcode.register_source(filename, raw)
        return filename

    def _run(self, names: list[str], target: str | None = None, **options: Any) -> FlowRun:
        __tracebackhide__ = True
        notebook = self.notebook
        if options.get("background"):
            run, nodes = self._start(names, target, **options)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run, nodes = self._start(names, target, **options)
            _rewarn(caught, notebook)
        if not run.done:
            return run
        if target is not None:
            tr = run[nodes[target]]
            if tr.state is State.CACHED or (tr.children and all(c.cached for c in tr.children)):
                _replay(run.result(nodes[target]))
        failed = [n for n in nodes if run[nodes[n]].state in _BAD]
        if failed:
            error = self._failure(run, nodes, target or failed[0], failed)
            if isinstance(error, (UsageError, NbflowError)) and target is not None:
                _raise_in_cell(error, notebook.cells[target].filename)
            raise error
        return run

    def _start(
        self, names: list[str], focus: str | None = None, **options: Any
    ) -> tuple[FlowRun, dict[str, Any]]:
        once = threading.Lock()  # the status is shown once, by whoever comes first

        def first_event(event: Any) -> None:
            if event.kind == "run_started" and event.run is not None and once.acquire(False):
                _display_run(event.run, focus)

        try:
            run, nodes = self.notebook.run(names, listeners=(first_event,), **options)
        except CellError as exc:
            raise UsageError(str(exc)) from None
        if once.acquire(False):
            _display_run(run, focus)
        return run, nodes

    def _failure(
        self, run: FlowRun, nodes: dict[str, Any], target: str, failed: list[str]
    ) -> BaseException:
        tr = run[nodes[target]]
        cells = self.notebook.cells
        filenames = {c.filename for c in cells.values()}
        if tr.state is State.UPSTREAM_FAILED or tr.state not in _BAD:
            culprit = next(
                (n for n in failed if run[nodes[n]].state is not State.UPSTREAM_FAILED), None
            )
            if culprit is None:
                return UpstreamFailedError(f"Cell '{target}' did not run: {tr.reason}.")
            error = _error_of(run[nodes[culprit]])
            if error is not None and "failed earlier in this kernel" in str(error):
                return UpstreamFailedError(f"Cell '{target}' did not run: {error}.")
            new = UpstreamFailedError(
                f"Cell '{target}' did not run: upstream cell '{culprit}' failed "
                f"({type(error).__name__}: {error}). Fix cell '{culprit}' and re-run it, "
                "or use %flow retry."
            )
            if error is not None:
                new.__cause__ = _user_traceback(error, filenames)
            return new
        error = _error_of(tr)
        if error is None:
            return NbflowError(f"Cell '{target}' ended {tr.state.value}: {tr.reason}.")
        why = self.notebook.unpicklable_input(target, error)
        if why is not None:
            return UsageError(why)
        error = _user_traceback(error, filenames)
        if error.__traceback__ is None and tr.traceback and hasattr(error, "add_note"):
            # From a worker process: its traceback came back as text.
            error.add_note(f"Traceback in the worker process:\n{tr.traceback.rstrip()}")
        return error

    # -- %flow --------------------------------------------------------------------
    @line_magic
    def flow(self, line: str) -> Any:
        """``%flow run|retry|show|status|runs|list|clear`` (see the README)."""
        __tracebackhide__ = True
        words = split(line, "%flow")
        if not words:
            raise UsageError(
                "%flow needs a command: run, retry, show, status, runs, list or clear "
                "(e.g. %flow run --executor threads)."
            )
        if words[0] not in COMMANDS:
            raise UsageError(
                f"%flow: unknown command '{words[0]}'.{did_you_mean(words[0], COMMANDS)} "
                f"Commands: {', '.join(COMMANDS)}."
            )
        args = flow_parser().parse_args(words)
        if args.jobs is not None and args.jobs < 1:
            raise UsageError(f"%flow: expected --jobs to be an int >= 1, but got {args.jobs}.")
        nb = self.notebook
        if args.command in ("run", "retry"):
            for text in args.param:
                nb.with_parameter(*parse_param(text))
            opts = {
                "executor": args.executor,
                "jobs": args.jobs,
                "background": args.background,
            }
            if args.command == "run":
                names = args.names or list(nb.cells)
                self._check_names(names)
                if not names:
                    raise UsageError(
                        "%flow run: there are no task cells yet; define one with %%task."
                    )
                self._run(names, refresh=args.refresh, **opts)
                return None
            failed = nb.failed() or nb.restore()
            if not failed:
                display(
                    {"text/plain": f"Nothing to retry: no task cell of '{nb.name}' failed."},
                    raw=True,
                )
                return None
            targets = nb.descendants(failed)
            self._run(targets, keep_failed=failed, **opts)
            return None
        if args.command == "clear":
            self._check_names(args.names)
            gone = nb.forget(args.names or None)
            if args.cache:
                from nbflow.cache import open_store

                store = open_store(nb.home)
                for name in gone:
                    store.clear(task=name)
            display(
                {
                    "text/plain": f"Forgot {len(gone)} task cell(s)"
                    + (" and their cache" if args.cache else "")
                },
                raw=True,
            )
            return None
        return self._inspect(args.command)

    def _check_names(self, names: list[str]) -> None:
        for n in names:
            if n not in self.notebook.cells:
                raise UsageError(
                    f"%flow: there is no task cell '{n}'.{did_you_mean(n, self.notebook.cells)}"
                )

    def _inspect(self, command: str) -> Any:
        nb = self.notebook
        if command == "show":
            if not nb.cells:
                raise UsageError("%flow show: there are no task cells yet; define one with %%task.")
            try:
                flow, _ = nb.build(list(nb.cells), keep_failed=list(nb.cells), drawing=True)
            except CellError as exc:
                raise UsageError(str(exc)) from None
            run = nb.last_run
            return flow.visualize(
                run if run is not None and run.flow.name == flow.name and _same(run, flow) else None
            )
        if command == "status":
            if nb.last_run is None:
                raise UsageError("%flow status: nothing has run in this kernel yet.")
            return nb.last_run.to_pandas()
        if command == "runs":
            from nbflow.archive import runs
            from nbflow.errors import RunError

            try:
                frame = runs(nb.home)
            except RunError as exc:
                raise UsageError(f"%flow runs: {exc}") from None
            return frame[frame["flow"] == nb.name].reset_index(drop=True)
        return nb.table()

    # -- hooks --------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        self.cell_id = getattr(info, "cell_id", None)


def _same(run: FlowRun, flow: Any) -> bool:
    names = {run.flow.name_of(n) for n in run.flow.tasks}
    return all(flow.name_of(n) in names for n in flow.tasks)


def _raise_in_cell(error: BaseException, filename: str) -> None:
    """Raise nbflow's own error from the cell's first line, not from nbflow's code."""
    __tracebackhide__ = True
    code = compile("raise __nbflow_error", filename, "exec")
    exec(code, {"__nbflow_error": error})


def _error_of(tr: Any) -> BaseException | None:
    if tr.error is not None:
        return tr.error  # type: ignore[no-any-return]
    for child in tr.children or ():
        if child.error is not None:
            return child.error  # type: ignore[no-any-return]
    return None


def _replay(result: Any) -> None:
    """Show a cached cell's stdout and rich outputs again."""
    import sys

    results = result if isinstance(result, list) else [result]
    for r in results:
        if not isinstance(r, cellcode.CellResult):
            continue
        if r.stdout:
            sys.stdout.write(r.stdout)
            sys.stdout.flush()
        for data, metadata in r.displays:
            display(data, metadata=metadata, raw=True)


def _rewarn(caught: list[warnings.WarningMessage], notebook: NotebookFlow) -> None:
    for w in caught:
        text = str(w.message)
        cell = notebook.cells.get(text.split("'")[1]) if text.startswith("Task '") else None
        if cell is not None and not cell.options.cache and "is not cached" in text:
            continue  # --no-cache: not being cached is what the cell asked for
        message = notebook.explain_warning(text)
        warnings.warn_explicit(message, w.category, w.filename, w.lineno)


def _install_display_capture(shell: InteractiveShell) -> None:
    """Record what a running cell displays, so a cache hit can show it again."""
    pub = shell.display_pub
    if getattr(pub, "_nbflow_wrapped", False):
        return
    original = pub.publish

    def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        out = cellcode.current_output()
        if out is None or kwargs.get("update"):
            return original(data, metadata, *args, **kwargs)
        out.displays.append((data, metadata or {}))
        out.suspended = True  # a terminal shell prints displays: not the cell's stdout
        try:
            return original(data, metadata, *args, **kwargs)
        finally:
            out.suspended = False

    # Wrapping the instance's method is the one hook every display() goes through.
    setattr(pub, "publish", publish)  # noqa: B010
    setattr(pub, "_nbflow_wrapped", True)  # noqa: B010


def load(shell: InteractiveShell) -> NbflowMagics:
    """Register the magics on ``shell`` (what ``%load_ext nbflow`` does)."""
    if not isinstance(shell, InteractiveShell):
        raise TypeError(
            f"nbflow's magics need an IPython shell, but got {shell!r}. In a notebook, "
            "write %load_ext nbflow."
        )
    magics = NbflowMagics(shell)
    shell.register_magics(magics)
    shell.events.register("pre_run_cell", magics.pre_run_cell)
    _install_display_capture(shell)
    cellcode.live = True
    return magics
