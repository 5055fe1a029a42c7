"""The notebook front end: ``%%task`` cells and the ``%flow`` commands (IPython magics).

``%load_ext nbflow`` calls ``load_ipython_extension``, which registers them. Usage
errors raise IPython's ``UsageError`` (shown without a traceback); a failing cell
raises its own error with a traceback of the cell's own lines. Live status goes
through ``_display_run`` alone, so the DAG widget can take over there.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from nbflow import settings
from nbflow.cells import function as cellcode
from nbflow.cells.line import COMMANDS, flow_parser, parse_param, parse_task_line, split
from nbflow.cells.notebook import CellError, NotebookFlow, error_of, stand_in
from nbflow.engine.run import FlowRun
from nbflow.errors import NbflowError, RunError, UpstreamFailedError, did_you_mean
from nbflow.jupyter.lab import LabChannel
from nbflow.jupyter.magicio import (
    cell_id_in_file,
    cell_ids_in_file,
    cell_number,
    display,
    install_display_capture,
    raise_in_cell,
    replay,
    rewarn,
    shown_from,
    unpicklable_input,
    user_traceback,
)
from nbflow.palette import ICONS
from nbflow.state import NOT_OK, State
from nbflow.widget import settle, show_run


def cell_executor() -> str | None:
    """Where a ``%%task`` cell's own run goes: the kernel's main thread (as any cell
    runs, so its prints, plots and widgets behave as usual), unless ``NBFLOW_EXECUTOR``
    is set (``nbflow run NOTEBOOK --executor``); then None lets the run take that
    default, and ``NBFLOW_MAX_WORKERS`` with it."""
    return None if settings.executor() else "sequential"


def _status_line(name: str, tr: Any) -> str:
    state = tr.state.value
    note = stand_in(tr.task)
    if note is not None and tr.state.is_finished:
        return f"{ICONS[tr.state]} {name}: {note}"
    parts = [f"{ICONS[tr.state]} {name}: {state}"]
    if tr.children is not None:
        done = sum(c.state.is_finished for c in tr.children)
        parts.append(f"{done}/{len(tr.children)} mapped")
    attempts = tr.attempts if tr.children is None else sum(c.attempts for c in tr.children)
    if attempts:
        parts.append(f"{attempts} attempt{'s' if attempts != 1 else ''}")
    if tr.duration is not None:
        parts.append(_seconds(tr.duration))
    if tr.children is not None and tr.children and all(c.cached for c in tr.children):
        parts.append("cached")
    if tr.cached and tr.state.is_finished:
        took = cellcode.computed_seconds(tr.value)
        if took is not None:  # the time above is the hit's; this, what computing it took
            parts.append(f"computed in {_seconds(took)}")
    if tr.reason and state in ("upstream_failed", "skipped"):
        parts.append(tr.reason)
    return ", ".join(parts)


def _seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"


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

    The one place that shows runs. A whole-notebook run (``%flow run``, ``%flow
    retry``) shows the live DAG widget in a notebook; a cell's own run, and any run
    outside a notebook front end, the compact text status.
    """
    if focus is None and show_run(run) is not None:
        return
    handle = display({"text/plain": _status_text(run, focus)}, raw=True, display_id=True)
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
        handle.update({"text/plain": _status_text(run, focus)}, raw=True)

    run.subscribe(update)
    if run.done:
        update(type("Done", (), {"kind": "run_finished"})())


@magics_class
class NbflowMagics(Magics):
    """``%%task`` and ``%flow``."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.notebook = NotebookFlow(shell.user_ns)
        self.cell_id: str | None = None
        self.raw_cell: str | None = None
        self.channel: LabChannel | None = None
        # The notebook's task cells as the JupyterLab extension sent them for the
        # command it runs next (``use_document``): the next %flow line defines them.
        self.document: list[dict[str, str]] | None = None

    def cell_of(self, flow: str, task: str) -> str | None:
        """The JupyterLab cell id of the task cell named ``task`` (for the lab badges)."""
        if flow != self.notebook.name:
            return None
        return next((c for c, name in self.notebook.cell_ids.items() if name == task), None)

    # -- %%task -------------------------------------------------------------------
    @cell_magic
    def task(self, line: str, cell: str) -> None:
        """Define a task cell and run it now (``--lazy``: only define it).

        ``%%task [NAME] [--retries N] [--retry-delay S] [--timeout S] [--no-cache]
        [--after A,B] [--map VAR=ITERABLE] [--trigger T] [--lazy]``

        The cell's outputs are the names it binds (and the inputs it changes in
        place); its inputs the names it reads. An input bound by a task cell above
        (the nearest one) makes that cell run first when stale; other inputs
        (constants, helpers) are part of the cell's cache key. NAME defaults to the
        first output, else ``cell N``.
        """
        __tracebackhide__ = True
        name, options = parse_task_line(line)
        filename = self._filename(line, cell)
        source = self._python(cell)
        path = self._notebook_file()
        if path is not None and not self.notebook.restored:
            # Cells deleted from the saved notebook are not brought back from the store.
            self.notebook.saved_ids = cell_ids_in_file(path)
        undo = self.notebook.snapshot()
        try:
            cell_def = self.notebook.define(name, source, options, filename, self._cell_id())
        except CellError as exc:
            raise UsageError(str(exc)) from None
        assert self.shell is not None
        install_display_capture(self.shell)  # capture_output() may have swapped it
        if options.lazy:
            display({"text/plain": f"· {cell_def.name}: defined (--lazy)"}, raw=True)
            return
        self._run([cell_def.name], executor=cell_executor(), target=cell_def.name, undo=undo)

    def _python(self, cell: str) -> str:
        """The cell's body as Python, with line 1 left for the ``%%task`` line (so the
        cell's line numbers hold); IPython syntax inside (``!ls``, ``%time``) becomes
        Python, line for line."""
        assert self.shell is not None
        body = cell
        if "!" in cell or "%" in cell:
            body = self.shell.transform_cell(cell)  # type: ignore[no-untyped-call]
        return "\n" + body

    def use_document(self, cells: list[dict[str, str]]) -> list[str]:
        """Define the task cells as the notebook document has them (``cells``: each
        ``%%task`` cell's JupyterLab ``id`` and ``source``, in notebook order), before a
        command of the JupyterLab extension runs: cells not executed yet, or edited
        since, count as written; cells deleted from the document are forgotten. Returns
        the task names in notebook order. (The next ``%flow`` line calls it with the
        document the extension sent just before.)"""
        nb = self.notebook
        ids = [c["id"] for c in cells]
        if not nb.restored:
            # Stored cells of this notebook that the document no longer has stay gone.
            nb.saved_ids = set(ids)
        deleted = [name for cid, name in nb.cell_ids.items() if cid not in set(ids)]
        if deleted:
            nb.forget(deleted)
        names = []
        for number, cell in enumerate(cells, start=1):
            try:
                line, body = split_task_cell(self.shell, cell["source"])
                name, options = parse_task_line(line)
                filename = self._filename(line, body, executed=False)
                before = nb.cell_ids.get(cell["id"])
                status = nb.status.get(before) if before else None
                defined = nb.define(name, self._python(body), options, filename, cell["id"])
                if status is not None and defined.name != before and status.state in NOT_OK:
                    # Edited so that its task name changed: still the cell that failed.
                    nb.status.setdefault(defined.name, status)
                names.append(defined.name)
            except (UsageError, CellError) as exc:
                raise UsageError(f"Task cell {number} of the notebook: {exc}") from None
        nb.reorder(names)
        return names

    def _cell_id(self) -> str | None:
        """The running cell's id: the front end's, else the saved notebook's
        (``NBFLOW_NOTEBOOK``, else ``JPY_SESSION_NAME``), else None."""
        if self.cell_id or not self.raw_cell:
            return self.cell_id
        path = self._notebook_file()
        if path is None:
            return None
        return cell_id_in_file(path, self.raw_cell, set(self.notebook.cell_ids))

    @staticmethod
    def _notebook_file() -> str | None:
        """The saved notebook this kernel runs, when it says (``NBFLOW_NOTEBOOK``, else
        Jupyter's ``JPY_SESSION_NAME``)."""
        import os

        path = settings.notebook() or os.environ.get("JPY_SESSION_NAME")
        return path if path and path.endswith(".ipynb") and os.path.isfile(path) else None

    def _filename(self, line: str, cell: str, executed: bool = True) -> str:
        """A file name for the cell's code, shown as ``Cell In[N]`` in tracebacks.

        The same text gets the same name (so its compiled code is reused), mapped to
        the execution count of its latest run (a cell read from the document and not
        executed keeps the count it had, if any: else its traceback names the file)."""
        assert self.shell is not None
        raw = f"%%task {line}\n{cell}"
        filename = f"<nbflow-cell {hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()}>"
        # Line 1 commented out: tracebacks parse the file, and %%task is not Python.
        cellcode.register_source(filename, "# " + raw)
        names = getattr(self.shell.compile, "_filename_map", None)
        if isinstance(names, dict) and executed:
            names[filename] = cell_number(self.shell)
        return filename

    def _run(
        self,
        names: list[str],
        target: str | None = None,
        undo: Callable[[], None] | None = None,
        **options: Any,
    ) -> FlowRun:
        """Run ``names``; ``undo`` takes back the definition of the cell ``target`` if the
        run cannot start because of that cell."""
        __tracebackhide__ = True
        notebook = self.notebook
        if options.get("background"):
            run, nodes = self._start(names, target, undo, **options)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run, nodes = self._start(names, target, undo, **options)
            rewarn(caught, notebook)
        if not run.done:
            return run
        settle(run)  # the widget's output keeps the final picture
        if target is not None:
            tr = run[nodes[target]]
            if tr.state is State.CACHED or (tr.children and all(c.cached for c in tr.children)):
                replay(run.result(nodes[target]))
        failed = [n for n in nodes if run[nodes[n]].state in NOT_OK]
        if failed:
            error = self._failure(run, nodes, target or failed[0], failed)
            if isinstance(error, (UsageError, NbflowError)) and target is not None:
                raise_in_cell(error, notebook.cells[target].filename, self.shell)
            # Shown from the user's own lines: not from the %%task line that ran them.
            raise shown_from(error, error.__traceback__, self.shell)
        return run

    def _start(
        self,
        names: list[str],
        focus: str | None = None,
        undo: Callable[[], None] | None = None,
        **options: Any,
    ) -> tuple[FlowRun, dict[str, Any]]:
        once = threading.Lock()  # the status is shown once, by whoever comes first

        def first_event(event: Any) -> None:
            if event.kind == "run_started" and event.run is not None and once.acquire(False):
                _display_run(event.run, focus)

        try:
            run, nodes = self.notebook.run(names, listeners=(first_event,), **options)
        except CellError as exc:
            message = str(exc)
            if exc.cell is not None and exc.cell == focus and undo is not None:
                # Rejected as it was first run: left defined, it would stop every later
                # %flow run until cleared.
                undo()
                message += f" Cell '{exc.cell}' was not defined; fix it and run it again."
            elif exc.cell is not None:
                message += (
                    f" Fix cell '{exc.cell}' and run it again, or forget it with "
                    f"%flow clear {exc.cell}."
                )
            raise UsageError(message) from None
        if once.acquire(False):
            _display_run(run, focus)
        return run, nodes

    def _failure(
        self, run: FlowRun, nodes: dict[str, Any], target: str, failed: list[str]
    ) -> BaseException:
        tr = run[nodes[target]]
        cells = self.notebook.cells
        filenames = {c.filename for c in cells.values()}
        if tr.state is State.UPSTREAM_FAILED or tr.state not in NOT_OK:
            culprit = next(
                (n for n in failed if run[nodes[n]].state is not State.UPSTREAM_FAILED), None
            )
            if culprit is None:
                return UpstreamFailedError(f"Cell '{target}' did not run: {tr.reason}.")
            error = error_of(run[nodes[culprit]])
            if error is not None and "failed earlier in this kernel" in str(error):
                return UpstreamFailedError(f"Cell '{target}' did not run: {error}.")
            new = UpstreamFailedError(
                f"Cell '{target}' did not run: upstream cell '{culprit}' failed "
                f"({type(error).__name__}: {error}). Fix cell '{culprit}' and re-run it, "
                "or use %flow retry."
            )
            if error is not None:
                new.__cause__ = user_traceback(error, filenames)
            return new
        error = error_of(tr)
        if error is None:
            return NbflowError(f"Cell '{target}' ended {tr.state.value}: {tr.reason}.")
        why = unpicklable_input(self.notebook, target, error)
        if why is not None:
            return UsageError(why)
        error = user_traceback(error, filenames)
        if error.__traceback__ is None and tr.traceback and hasattr(error, "add_note"):
            # From a worker process: its traceback came back as text.
            error.add_note(f"Traceback in the worker process:\n{tr.traceback.rstrip()}")
        return error

    # -- %flow --------------------------------------------------------------------
    @line_magic
    def flow(self, line: str) -> Any:
        """Run and inspect the notebook's task cells.

        ``%flow run [NAMES] [--executor NAME] [--jobs N] [--background] [--refresh]
        [--param NAME=VALUE] [--store URL]``: every task cell (or NAMES and their upstream) as one
        flow, on a registered executor (``nbflow.executor.executor_names()``: threads,
        processes, sequential, dask and any registered since); ``%flow retry``: only
        failed cells and their downstream (also after a restart); ``%flow show``: the
        DAG; ``%flow status``: the last run; ``%flow runs``: this notebook's run
        history; ``%flow list``: the task cells; ``%flow clear [NAMES] [--cache]``:
        forget cells (and results).
        """
        __tracebackhide__ = True
        document, self.document = self.document, None
        if document is not None:
            self.use_document(document)
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
        args = _parse_flow_line(words)
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
                "store": args.store,
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
                from nbflow.store.base import open_store

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
            from nbflow.widget.layout import layout
            from nbflow.widget.picture import FlowPicture

            return FlowPicture(flow.name, layout(flow), self._latest_nodes(flow))
        if command == "status":
            if nb.last_run is None:
                raise UsageError("%flow status: nothing has run in this kernel yet.")
            run = nb.last_run
            frame = run.to_pandas()
            # A cached cell's duration is the hit's; "computed" is what computing its
            # result took, as kept with it.
            frame["computed"] = [
                cellcode.computed_seconds(tr.value) if tr.cached else None for tr in run.task_runs
            ]
            # State and name first: a terminal's width keeps them when pandas elides columns.
            first = ["state", "name"]
            return frame[first + [c for c in frame.columns if c not in first]]
        if command == "runs":
            from nbflow.engine.archive import runs

            try:
                frame = runs(nb.home)
            except RunError as exc:
                raise UsageError(f"%flow runs: {exc}") from None
            return frame[frame["flow"] == nb.name].reset_index(drop=True)
        return nb.table()

    def _latest_nodes(self, flow: Any) -> dict[str, dict[str, Any]]:
        """Each cell's latest state, by task name: from its last run in this kernel,
        else from the run history; a cell's --map helper shows its cell's state."""
        from nbflow.jupyter.lab import recorded
        from nbflow.store.home import home_path
        from nbflow.widget.summary import node_summary

        nb = self.notebook
        out: dict[str, dict[str, Any]] = {}
        missing: dict[str, str] = {}
        names = [flow.name_of(node) for node in flow.tasks]
        # What the badges show first: a cell reused by a later run keeps how it was made.
        shown = self.channel.shown if self.channel is not None else {}
        badges = {nb.cell_ids[c]: b for c, b in shown.items() if c in nb.cell_ids}
        for name in names:
            status = nb.status.get(name)
            if name in badges:
                out[name] = badges[name]
            elif status is not None and status.task_run is not None:
                out[name] = node_summary(status.task_run)
            elif name in nb.cells:
                missing[name] = name
        for found in recorded(home_path(nb.home), nb.name, missing):
            out[found["cell_id"]] = found
        for name in names:
            owner = name.rpartition(":")[0]
            if name not in out and out.get(owner, {}).get("state") in ("success", "cached"):
                out[name] = {"state": out[owner]["state"]}
        return out

    # -- hooks --------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        self.cell_id = getattr(info, "cell_id", None)
        self.raw_cell = getattr(info, "raw_cell", None)


def split_task_cell(shell: Any, source: str) -> tuple[str, str]:
    """The ``%%task`` line and the body of a task cell's source, split exactly as
    IPython splits it when the cell is executed (so both give the same definition).

    >>> from IPython.core.inputtransformer2 import TransformerManager
    >>> class Shell:
    ...     transform_cell = TransformerManager().transform_cell
    >>> split_task_cell(Shell(), "%%task load --retries 2\\nx = 1")
    ('load --retries 2', 'x = 1\\n')
    """
    import ast

    code = shell.transform_cell(source)
    try:
        (statement,) = ast.parse(code).body
        assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
        magic, line, body = (ast.literal_eval(a) for a in statement.value.args)
    except (SyntaxError, ValueError, AssertionError):
        magic = None
    if magic != "task":
        raise UsageError(f"expected a cell that starts with %%task, but got {source[:40]!r}.")
    return str(line), str(body)


def use_document(shell: Any, encoded: str) -> None:
    """What the JupyterLab extension runs silently before a command's ``%flow`` line:
    ``encoded`` is the base64 of the JSON list of the notebook's task cells (``id``,
    ``source``), which that ``%flow`` line defines first (its errors show there, and
    the command's code stays one readable line). See ``NbflowMagics.use_document``."""
    import base64
    import json

    magics = _loaded.get(id(shell))
    if magics is None:
        shell.extension_manager.load_extension("nbflow")
        magics = _loaded[id(shell)]
    magics.document = json.loads(base64.b64decode(encoded).decode("utf-8"))


def _parse_flow_line(words: list[str]) -> Any:
    """The ``%flow`` line, its names also after options (``%flow clear --cache NAME``):
    argparse takes the positional names in one block, before the first option.
    (``parse_intermixed_args`` would, but fails to word its errors with a ``%`` in
    the program name.)"""
    parser = flow_parser()
    args, extra = parser.parse_known_args(words)
    unknown = [w for w in extra if w.startswith("-")]
    if unknown:
        parser.parse_args(words)  # raises the usual "unknown option" error
    args.names = [*args.names, *extra]
    return args


_loaded: dict[int, NbflowMagics] = {}


def unload(shell: Any) -> None:
    """Remove the cell-id hook of the magics loaded on ``shell`` (``%unload_ext``)."""
    previous = _loaded.pop(id(shell), None)
    if previous is not None:
        if previous.channel is not None:
            previous.channel.close()
        with contextlib.suppress(ValueError):  # already unregistered
            shell.events.unregister("pre_run_cell", previous.pre_run_cell)


def load(shell: InteractiveShell) -> NbflowMagics:
    """Register the magics on ``shell`` (what ``%load_ext nbflow`` does)."""
    if not isinstance(shell, InteractiveShell):
        raise TypeError(
            f"nbflow's magics need an IPython shell, but got {shell!r}. In a notebook, "
            "write %load_ext nbflow."
        )
    unload(shell)  # %reload_ext: one set of magics, one cell-id hook
    magics = NbflowMagics(shell)
    shell.register_magics(magics)
    shell.events.register("pre_run_cell", magics.pre_run_cell)
    if getattr(shell, "kernel", None) is not None:  # a kernel: JupyterLab may show badges
        magics.channel = LabChannel(magics.cell_of)
    _loaded[id(shell)] = magics
    install_display_capture(shell)
    cellcode.live = True
    return magics
