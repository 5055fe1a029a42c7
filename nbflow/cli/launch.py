"""``nbflow run`` and ``nbflow retry``: start a notebook or a Python file's flow, follow
it with the progress view, print the summary and choose the exit status."""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from nbflow import settings
from nbflow.cli.progress import Board, Live, summary
from nbflow.cli.source import (
    UsageError,
    check_path,
    inject_parameters,
    load_module,
    notebook_home,
    parse_params,
    pick_flow,
    read_notebook,
    split_target,
    uses_nbflow,
)
from nbflow.errors import NbflowError
from nbflow.executor import executor_info
from nbflow.store.history import History, open_history
from nbflow.store.home import home_path, prepare_home

if TYPE_CHECKING:
    from nbflow.engine.archive import LoadedRun

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


def run_command(args: argparse.Namespace) -> int:
    """``nbflow run PATH ...``."""
    path, name = split_target(args.path)
    kind = check_path(path)
    params = parse_params(args.param)
    command = {
        "target": name,
        "params": list(args.param),
        "executor": args.executor,
        "jobs": args.jobs,
        "refresh": args.refresh,
        "store": args.store,
        "timeout": args.timeout,
        "output": str(pathlib.Path(args.output).resolve()) if args.output else None,
    }
    if kind == "notebook":
        if name is not None:
            raise UsageError(f"'{path}' is a notebook; ':{name}' applies to Python files only.")
        return run_notebook(path, params, command)
    if args.output:
        raise UsageError("--output writes an executed notebook; PATH is a Python file.")
    return run_python(path, name, params, command)


def retry_command(run_id: str, history: History, home: pathlib.Path) -> int:
    """``nbflow retry [RUN_ID|latest]``: the run's notebook or file, again (``history``
    is the store ``home``'s, opened by the command)."""
    loaded = past_run(history, home, run_id)
    found = history.source(loaded.id)
    if found is None:
        notebook = home.parent / f"{loaded.flow_name}.ipynb"
        if home.name == ".nbflow" and notebook.exists():
            found = ("notebook", str(notebook), {})
        else:
            raise UsageError(
                f"Run {loaded.id} of flow '{loaded.flow_name}' was not started by 'nbflow run', "
                "so the command line does not know its file. Retry it where it ran "
                "(%flow retry, or nbflow.load_run(...).retry()), or run the file again "
                "with nbflow run."
            )
    kind, source, command = found
    path = pathlib.Path(source)
    if not path.exists():
        raise UsageError(f"Run {loaded.id} came from '{path}', which no longer exists.")
    params = parse_params(command.get("params", []))
    if kind == "notebook":
        # Only what failed runs again: a --refresh was for the run it was given to.
        return run_notebook(path, params, {k: v for k, v in command.items() if k != "refresh"})
    if loaded.ok:
        _write([f"Run {loaded.id} of flow '{loaded.flow_name}' succeeded; nothing to retry."])
        return OK
    return run_python(path, loaded.flow_name, params, command, retry_of=loaded, home=home)


def past_run(history: History, home: pathlib.Path, run_id: str) -> LoadedRun:
    """The run ``run_id`` names, read from ``history`` (the store ``home``'s, already
    opened and checked: nothing is opened again)."""
    from nbflow.engine.archive import LoadedRun

    return LoadedRun(history, resolve_run(history, home, run_id), home)


def resolve_run(history: History, home: pathlib.Path, run_id: str) -> str:
    """The full id of ``run_id`` ("latest", an id or a unique prefix of one)."""
    found = history.resolve(run_id)
    if found is not None:
        return found
    if run_id != "latest" and len(history.runs_like(run_id)) > 1:
        raise UsageError(
            f"More than one run in '{home}' starts with '{run_id}'; give more of the id "
            "(see nbflow runs)."
        )
    raise UsageError(
        f"No run '{run_id}' in the history at '{home}'. See nbflow runs --path "
        f"'{home.parent if home.name == '.nbflow' else home}' for the runs recorded there."
    )


# -- Python files -------------------------------------------------------------------
def run_python(
    path: pathlib.Path,
    name: str | None,
    params: dict[str, Any],
    command: dict[str, Any],
    retry_of: Any = None,
    home: pathlib.Path | None = None,
) -> int:
    """Import ``path``, run its flow (the one named, or the only one) and follow it."""
    given, path = path, path.resolve()
    try:
        module = load_module(path)
    except UsageError:
        raise
    except Exception:
        _write_err([f"nbflow: importing '{given}' raised an error:", traceback.format_exc()])
        return FAILED
    flow = pick_flow(module, given, name)
    executor = command.get("executor") or "threads"
    if executor_info(executor).other_processes:
        _pickle_by_value(module)
    board = Board(f"flow '{flow.name}'")
    board.expect([flow.name_of(node) for node in flow.sorted()])
    options: dict[str, Any] = {
        "executor": executor,
        "max_workers": command.get("jobs"),
        "background": True,
        "listeners": [board.on_event],
        "refresh": bool(command.get("refresh")),
        "parameters": params,
    }
    if command.get("store"):
        options["store"] = command["store"]
    begun = time.time()
    with _sigint_for_main_thread_only():
        run = retry_of.retry(flow=flow, **options) if retry_of is not None else flow.run(**options)
    with contextlib.suppress(Exception):  # the history is a convenience here, never fatal
        open_history(home or home_path()).record_source(
            [run.id], "python", str(path), {**command, "target": flow.name}
        )
    timeout = command.get("timeout")
    timed_out = False
    interrupted = False
    with _view(board) as tick:
        try:
            while not run.wait(0.1):
                tick()
                if timeout is not None and time.time() - begun > timeout and not timed_out:
                    timed_out = True
                    board.say(f"stopping the run: --timeout {timeout:g}s reached")
                    run.cancel()
        except KeyboardInterrupt:
            interrupted = True
            board.say("interrupted: cancelling the run")
            run.cancel()
            _wait_interrupted(run)
        tick()
    _finish(board, f"run {run.id} of flow '{flow.name}'", time.time() - begun, interrupted)
    if interrupted:
        return INTERRUPTED
    if timed_out:
        _write_err([f"nbflow: the run was stopped after --timeout {timeout:g}s."])
        return FAILED
    return OK if run.ok else FAILED


@contextlib.contextmanager
def _sigint_for_main_thread_only() -> Iterator[None]:
    """Start a run with SIGINT blocked, so that the threads it starts, and the worker
    processes they spawn, inherit the block. Ctrl-C in a terminal signals the whole
    process group: only this process's main thread then sees it, cancels the run and
    terminates the workers, instead of each worker failing its task on its own."""
    if not hasattr(signal, "pthread_sigmask") or (
        threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _wait_interrupted(run: Any) -> None:
    # A second Ctrl-C must not leave the run half recorded: wait for its end anyway.
    while True:
        try:
            run.wait(30)
            return
        except KeyboardInterrupt:
            continue


def _pickle_by_value(module: Any) -> None:
    """Functions of a file imported by path cannot be imported by name in a worker:
    have cloudpickle ship them by value, as it does for a notebook's functions."""
    for name in ("joblib.externals.cloudpickle", "cloudpickle"):
        try:
            cloudpickle = __import__(name, fromlist=["register_pickle_by_value"])
        except ImportError:
            continue
        with contextlib.suppress(Exception):
            cloudpickle.register_pickle_by_value(module)


# -- notebooks ----------------------------------------------------------------------
def run_notebook(path: pathlib.Path, params: dict[str, Any], command: dict[str, Any]) -> int:
    """Execute the notebook in a kernel in its folder and follow its runs."""
    from nbflow.cli.headless import NotebookExecution, kernel_env

    book = read_notebook(path)
    given, path = path, path.resolve()
    if command.get("output"):
        # Found after the run, the executed notebook would be lost: check it first.
        _check_output(pathlib.Path(command["output"]))
    if not uses_nbflow(book):
        raise UsageError(
            f"'{given}' has no tasks: no %%task cell and no use of nbflow. Mark the cells to "
            "run as tasks with %%task (after %load_ext nbflow)."
        )
    inject_parameters(book, params)
    board = Board(f"notebook '{path.name}'")
    if _is_terminal():
        _expect_cells(board, book, given)
    history = open_history(prepare_home(notebook_home(path)))
    begun = time.time()
    extra = _kernel_options(command)
    interrupted = False
    execution = NotebookExecution(
        book,
        path.parent,
        kernel_env(path, extra),
        history,
        board,
        lambda: None,
        timeout=command.get("timeout"),
    )
    try:
        with _view(board) as tick:
            execution.tick = tick
            outcome = execution.execute()
    except KeyboardInterrupt:  # a second Ctrl-C while the kernel was shutting down
        interrupted = True
        outcome = execution.outcome
    _record(history, outcome.run_ids, path, command)
    interrupted = interrupted or outcome.interrupted
    _finish(board, f"notebook '{path.name}'", time.time() - begun, interrupted)
    raised = [] if interrupted else outcome.raised
    if raised and not board.failed():
        _write(["Cells that raised:", *(f"  {label}: {text}" for label, text in raised)])
    elif raised:
        plain = [(label, text) for label, text in raised if "%%task" not in label]
        if plain:
            _write(["Other cells that raised:", *(f"  {lb}: {text}" for lb, text in plain)])
    if command.get("output"):  # interrupted too: what ran, with the cell that was stopped
        _write_notebook(book, pathlib.Path(command["output"]))
    if interrupted:
        return INTERRUPTED
    if outcome.died:
        _write_err(
            [
                f"nbflow: the kernel died while running {outcome.died} of '{given}'; the "
                "cells after it did not run."
            ]
        )
        return FAILED
    if outcome.timed_out:
        _write_err([f"nbflow: the notebook was stopped after --timeout {command['timeout']:g}s."])
        return FAILED
    return FAILED if raised or not board.ok() else OK


def _check_output(out: pathlib.Path) -> None:
    """``--output``'s folder exists and the file can be written there."""
    if out.is_dir():
        raise UsageError(f"--output '{out}' is a directory; give a file name (OUT.ipynb).")
    if not out.parent.is_dir():
        raise UsageError(
            f"The folder of --output '{out}' does not exist. Create it first, or write "
            "the executed notebook elsewhere."
        )
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UsageError(f"--output '{out}' cannot be written: permission denied.")


def _expect_cells(board: Board, book: Any, given: pathlib.Path) -> None:
    """The live view lists the task cells from the start, analysed as the kernel will."""
    from nbflow.cli.sketch import cell_graph

    try:
        graph = cell_graph(book, f"'{given}'")
    except UsageError:
        return  # the kernel will say what is wrong with the cell, in its place
    board.expect([c.name for c in sorted(graph.cells.values(), key=lambda c: c.position)])


def _kernel_options(command: dict[str, Any]) -> dict[str, str]:
    """How the command's run options reach the kernel's runs: environment defaults."""
    return settings.environment(
        executor=command.get("executor"),
        max_workers=command.get("jobs"),
        refresh=bool(command.get("refresh")),
        store=command.get("store"),
    )


def _record(history: History, run_ids: list[str], path: pathlib.Path, command: Any) -> None:
    if run_ids:
        with contextlib.suppress(Exception):
            history.record_source(run_ids, "notebook", str(path), command)


def _write_notebook(book: Any, out: pathlib.Path) -> None:
    """The executed notebook, signed trusted so its widgets show when it is opened."""
    import nbformat
    from nbformat.sign import NotebookNotary

    # nbformat's signing and writing functions carry no type annotations.
    NotebookNotary().sign(book)  # type: ignore[no-untyped-call]
    nbformat.write(book, str(out))  # type: ignore[no-untyped-call]
    _write([f"wrote {out}"])


# -- output -------------------------------------------------------------------------
@contextlib.contextmanager
def _view(board: Board) -> Iterator[Callable[[], None]]:
    """A live table in a terminal; plain lines (no control characters) otherwise."""
    if _is_terminal():
        from rich.console import Console

        with Live(board, Console()):
            yield lambda: None
        return

    def tick() -> None:
        lines = board.drain()
        if lines:
            _write(lines)

    try:
        yield tick
    finally:
        tick()


def _is_terminal() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


def _finish(board: Board, title: str, took: float, interrupted: bool) -> None:
    lines = summary(board, title + (" (interrupted)" if interrupted else ""), took)
    _write(lines)


def _write(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _write_err(lines: list[str]) -> None:
    sys.stderr.write("".join(line.rstrip("\n") + "\n" for line in lines))
    sys.stderr.flush()


def render_graph(dot: Any, out: pathlib.Path, fmt: str) -> None:
    """Render a graphviz drawing to ``out`` (needs graphviz's ``dot``)."""
    try:
        data = dot.pipe(format=fmt)
    except Exception as exc:  # graphviz.ExecutableNotFound and rendering errors
        raise NbflowError(
            f"Could not draw the graph with graphviz ({exc}). Install graphviz "
            "(apt-get install graphviz, brew install graphviz), or write -o dag.dot."
        ) from None
    out.write_bytes(data)
