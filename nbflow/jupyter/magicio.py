"""The notebook side of a cell run: rich output captured and replayed, errors raised
with the user's own lines, cache warnings said in terms of cell inputs."""

from __future__ import annotations

import contextlib
import sys
import warnings
from types import TracebackType
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display as _ipython_display

from nbflow.cells import function as cellcode
from nbflow.cells.notebook import NotebookFlow

_books: dict[str, tuple[float, list[tuple[str, str]]]] = {}


def cell_id_in_file(path: str, raw_cell: str, taken: set[str]) -> str | None:
    """The id of the cell of the notebook file ``path`` whose source is ``raw_cell``.

    A front end that sends no cell id (nbclient, papermill, ``nbflow run``) still runs
    a saved notebook: its cells' ids tell two cells binding the same name apart.
    Identical cells: the first id not in ``taken``. None when the file cannot be read.
    """
    cells = _code_cells(path)
    if cells is None:
        return None
    wanted = raw_cell.strip()
    ids = [cid for cid, text in cells if text.strip() == wanted]
    return next((cid for cid in ids if cid not in taken), ids[0] if ids else None)


def cell_ids_in_file(path: str) -> set[str] | None:
    """The ids of the code cells of the notebook file ``path`` (None: unreadable)."""
    cells = _code_cells(path)
    return None if cells is None else {cid for cid, _ in cells}


def _code_cells(path: str) -> list[tuple[str, str]] | None:
    """(id, source) of each code cell of a notebook file, read again when it changes."""
    import json
    import os

    try:
        mtime = os.stat(path).st_mtime
        found = _books.get(path)
        if found is None or found[0] != mtime:
            with open(path, encoding="utf-8") as fh:
                book = json.load(fh)
            cells = []
            for c in book.get("cells", []):
                if c.get("cell_type") == "code" and c.get("id"):
                    text = c.get("source", "")
                    cells.append((c["id"], "".join(text) if isinstance(text, list) else text))
            found = _books[path] = (mtime, cells)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return found[1]


def display(*objs: Any, **kwargs: Any) -> Any:
    """IPython's ``display`` (typed here: IPython's is not)."""
    return _ipython_display(*objs, **kwargs)  # type: ignore[no-untyped-call]


def user_traceback(exc: BaseException, filenames: set[str]) -> BaseException:
    """``exc`` with its traceback cut to start at the cell's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename not in filenames:
        tb = tb.tb_next
    return exc.with_traceback(tb) if tb is not None else exc


def cell_number(shell: InteractiveShell) -> int:
    """The execution count of the cell running now (the one IPython shows as In[N])."""
    names = getattr(shell.compile, "_filename_map", {})
    frame = sys._getframe(1)
    while frame is not None:
        number = names.get(frame.f_code.co_filename)
        if isinstance(number, int):
            return number
        frame = frame.f_back  # type: ignore[assignment]
    return int(shell.execution_count)


def raise_in_cell(error: BaseException, filename: str, shell: Any) -> None:
    """Raise nbflow's own error from the cell's first line, not from nbflow's code."""
    __tracebackhide__ = True
    code = compile("raise __nbflow_error", filename, "exec")
    try:
        exec(code, {"__nbflow_error": error})
    except BaseException as exc:
        tb = exc.__traceback__
        raise shown_from(exc, tb.tb_next if tb is not None else None, shell) from None


def shown_from(error: BaseException, tb: TracebackType | None, shell: Any) -> BaseException:
    """``error``, which IPython shows with the traceback ``tb`` (the cell's own lines
    first) rather than from the ``%%task`` line that ran the cell: IPython renders an
    exception with a ``_render_traceback_`` method that way. It renders it once."""

    def render() -> list[str]:
        with contextlib.suppress(AttributeError):
            del error._render_traceback_  # type: ignore[attr-defined]
        stb: list[str] = shell.InteractiveTB.structured_traceback(
            type(error), error, tb, tb_offset=0
        )
        return stb

    error._render_traceback_ = render  # type: ignore[attr-defined]
    return error


def replay(result: Any) -> None:
    """Show a cached cell's stdout and rich outputs again."""
    results = result if isinstance(result, list) else [result]
    for r in results:
        if not isinstance(r, cellcode.CellResult):
            continue
        if r.stdout:
            sys.stdout.write(r.stdout)
            sys.stdout.flush()
        for data, metadata in r.displays:
            display(data, metadata=metadata, raw=True)


def rewarn(caught: list[warnings.WarningMessage], notebook: NotebookFlow) -> None:
    for w in caught:
        text = str(w.message)
        cell = notebook.cells.get(text.split("'")[1]) if text.startswith("Task '") else None
        if cell is not None and not cell.options.cache and "is not cached" in text:
            continue  # --no-cache: not being cached is what the cell asked for
        message = explain_warning(notebook, text)
        warnings.warn_explicit(message, w.category, w.filename, w.lineno)


def install_display_capture(shell: InteractiveShell) -> None:
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


def unpicklable_input(notebook: NotebookFlow, name: str, error: BaseException) -> str | None:
    """Why cell ``name`` could not travel to a worker process, naming the input."""
    text = f"{type(error).__name__}: {error}".lower()
    if "pickl" not in text:
        return None
    import cloudpickle

    for n in notebook.cells[name].analysis.inputs:
        if n not in notebook.user_ns:
            continue
        try:
            cloudpickle.dumps(notebook.user_ns[n])
        except Exception as exc:
            return (
                f"Cell '{name}' cannot run in a worker process: its input '{n}' (a "
                f"{type(notebook.user_ns[n]).__name__}) cannot be sent there ({exc}). Open "
                "files, locks and connections cannot travel: create it inside the cell, "
                "or run with --executor threads."
            )
    return None


def explain_warning(notebook: NotebookFlow, message: str) -> str:
    """A cache warning about a cell's closure value, said in terms of its inputs."""
    import re

    found = re.match(r"Task '(.+?)' is not cached: its closure value (\d+) is (.*)", message)
    if found is None or found.group(1) not in notebook.cells:
        return message
    name = found.group(1)
    code = notebook.cells[name].codes
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
