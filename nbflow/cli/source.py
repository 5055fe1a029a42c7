"""What ``nbflow run`` runs: a notebook, or the flows of a Python file, with parameters.

Reading and checking only: nothing here executes a notebook or starts a run.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from typing import TYPE_CHECKING, Any

from nbflow import settings
from nbflow.errors import NbflowError
from nbflow.graph.control import parameter_value
from nbflow.graph.flow import Flow

if TYPE_CHECKING:
    import types


class UsageError(NbflowError, ValueError):
    """The command line was given something it cannot run (exit status 2)."""


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as papermill reads it: a Python literal, else the string itself.

    >>> parse_param("n=10"), parse_param("day=2026-11-22"), parse_param("xs=[1, 2]")
    (('n', 10), ('day', '2026-11-22'), ('xs', [1, 2]))
    """
    parsed = parameter_value(text)
    if parsed is None:
        raise UsageError(
            f"Expected --param NAME=VALUE with NAME a Python name (e.g. --param n=10), "
            f"but got {text!r}."
        )
    return parsed


def parse_params(texts: list[str]) -> dict[str, Any]:
    """Every ``--param``, in order (a later one wins)."""
    return dict(parse_param(t) for t in texts)


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or a number of seconds, in seconds.

    >>> parse_age("7d"), parse_age("90"), parse_age("1.5h")
    (604800.0, 90.0, 5400.0)
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = text.strip().lower()
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale is not None else raw
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise UsageError(
            f"Expected an age like 7d, 12h, 30m, 45s or a number of seconds, but got {text!r}."
        )
    return value


def split_target(text: str) -> tuple[pathlib.Path, str | None]:
    """``file.py:flow_name`` into the path and the name (None when not given)."""
    head, sep, tail = text.rpartition(":")
    if sep and head.endswith(".py") and tail and "/" not in tail:
        return pathlib.Path(head), tail
    return pathlib.Path(text), None


def check_path(path: pathlib.Path) -> str:
    """``"notebook"`` or ``"python"``, or a usage error saying what is wrong."""
    if not path.exists():
        raise UsageError(f"No such file: '{path}'. Check the path (nbflow run PATH).")
    if path.is_dir():
        raise UsageError(f"'{path}' is a directory; give a notebook (.ipynb) or a Python file.")
    if path.suffix == ".ipynb":
        return "notebook"
    if path.suffix == ".py":
        return "python"
    raise UsageError(
        f"'{path}' is neither a notebook (.ipynb) nor a Python file (.py); "
        "nbflow runs one of those."
    )


# -- Python files -------------------------------------------------------------------
def load_module(path: pathlib.Path) -> types.ModuleType:
    """Import a Python file as a module named after its stem (its folder on sys.path,
    as ``python -m`` would do), so its flows register themselves."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem if path.stem.isidentifier() else "nbflow_target"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"Cannot import '{path}' as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def flows_of(module: types.ModuleType) -> dict[str, Flow]:
    """The flows a module defines, by flow name (each flow once)."""
    found: dict[str, Flow] = {}
    for value in vars(module).values():
        if isinstance(value, Flow) and all(f is not value for f in found.values()):
            found[value.name] = value
    return found


def pick_flow(module: types.ModuleType, path: pathlib.Path, name: str | None) -> Flow:
    """The flow ``name`` (a flow name or a variable name), or the only flow of the file."""
    found = flows_of(module)
    listing = ", ".join(f"'{n}'" for n in found)
    if name is not None:
        value = vars(module).get(name)
        if isinstance(value, Flow):
            return value
        if name in found:
            return found[name]
        raise UsageError(
            f"'{path}' defines no flow named '{name}'. Its flows: {listing or 'none'}."
        )
    if not found:
        raise UsageError(
            f"'{path}' defines no Flow at module level. Build one with 'with Flow(...) as flow:'."
        )
    if len(found) > 1:
        first = next(iter(found))
        raise UsageError(
            f"'{path}' defines several flows ({listing}); choose one, e.g. "
            f"nbflow run {path}:{first}"
        )
    return next(iter(found.values()))


# -- notebooks ----------------------------------------------------------------------
def read_notebook(path: pathlib.Path) -> Any:
    """The notebook at ``path`` (nbformat 4), or a usage error if it is not one."""
    import nbformat
    from nbformat.reader import NotJSONError

    try:
        book = nbformat.read(str(path), as_version=4)  # type: ignore[no-untyped-call]
        nbformat.validate(book)
    except (NotJSONError, json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(
            f"'{path}' is not a notebook: it is not valid JSON. Check that it was saved "
            "completely, or open it in JupyterLab to see what is wrong."
        ) from None
    except Exception as exc:  # nbformat's validation and reader errors have no common base
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"'{path}' is not a valid notebook: {first}") from None
    return book


def notebook_home(path: pathlib.Path) -> pathlib.Path:
    """The store of the notebook at ``path``: ``NBFLOW_HOME``, else ``.nbflow`` beside it
    (its kernel runs in the notebook's folder, as in JupyterLab)."""
    return settings.home() or path.resolve().parent / ".nbflow"


def is_task_cell(cell: Any) -> bool:
    """A ``%%task`` cell."""
    return bool(cell.cell_type == "code" and cell.source.lstrip().startswith("%%task"))


def uses_nbflow(book: Any) -> bool:
    """True when some code cell is a ``%%task`` cell, uses ``%flow`` or imports nbflow."""
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        if is_task_cell(cell) or "%flow" in cell.source or "nbflow" in cell.source:
            return True
    return False


def inject_parameters(book: Any, params: dict[str, Any]) -> None:
    """Papermill's way: a cell tagged ``injected-parameters`` after the cell tagged
    ``parameters`` (or first), replacing one injected before."""
    import nbformat

    cells = [c for c in book.cells if not is_injected(c)]
    if not params:
        book.cells = cells
        return
    lines = ["# Parameters (nbflow run --param)"]
    lines += [f"{name} = {value!r}" for name, value in params.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))  # type: ignore[no-untyped-call]
    cell.metadata["tags"] = ["injected-parameters"]
    at = next((i + 1 for i, c in enumerate(cells) if "parameters" in _tags(c)), 0)
    cells.insert(at, cell)
    book.cells = cells


def is_injected(cell: Any) -> bool:
    """The parameters cell that ``inject_parameters`` added."""
    return "injected-parameters" in _tags(cell)


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))
