"""The options of ``%%task`` and ``%flow`` lines: parsed, checked, explained.

Every mistake raises IPython's ``UsageError`` (shown without a traceback) with what
to write instead.
"""

from __future__ import annotations

import argparse
import ast
import functools
import shlex
from typing import Any

from IPython.core.error import UsageError

from nbflow.cells.definitions import CellOptions
from nbflow.errors import did_you_mean
from nbflow.executor import executor_names
from nbflow.graph import options as task_options
from nbflow.graph.control import parameter_value

COMMANDS = ("run", "retry", "show", "status", "runs", "list", "clear")


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` with a hint instead of exiting."""

    def error(self, message: str) -> Any:
        if "unrecognized arguments:" in message:
            word = message.split(":", 1)[1].split()[0]
            options = [o for a in self._actions for o in a.option_strings if o != "-h"]
            hint = did_you_mean(word, options) if word.startswith("-") else ""
            raise UsageError(
                f"{self.prog}: unknown option '{word}'.{hint} Options: {', '.join(options)}."
            )
        raise UsageError(f"{self.prog}: {message}. Usage: {self.format_usage().strip()}")


@functools.lru_cache(maxsize=1)  # building a parser costs half a millisecond
def _task_parser() -> _Parser:
    p = _Parser(prog="%%task", add_help=False)
    p.add_argument("name", nargs="?")
    task_options.add_flags(p)  # the run options, shared with @task
    # What only a cell has: its place among the other cells, and how it is defined.
    p.add_argument("--after", default="", metavar="A,B", help="run after these task cells")
    p.add_argument("--map", default=None, metavar="VAR=ITERABLE", help="run once per element")
    p.add_argument("--lazy", action="store_true", help="only define the cell, do not run it")
    return p


def flow_parser() -> _Parser:
    """The parser of ``%flow`` lines, its ``--executor`` choices the registered executors."""
    return _flow_parser(executor_names())


@functools.lru_cache(maxsize=4)  # keyed by the executor names: one registered later shows up
def _flow_parser(executors: tuple[str, ...]) -> _Parser:
    p = _Parser(prog="%flow", add_help=False)
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("names", nargs="*")
    # Left unset (None), the executor and refresh come from the environment defaults
    # that `nbflow run NOTEBOOK --executor/--jobs/--refresh` sets for the kernel.
    p.add_argument("--executor", default=None, choices=executors)
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--background", action="store_true")
    p.add_argument("--refresh", action="store_true", default=None)
    p.add_argument("--store", default=None)
    p.add_argument("--cache", action="store_true")
    p.add_argument("--param", action="append", default=[])
    return p


def split(line: str, prog: str) -> list[str]:
    # Not POSIX mode: quotes inside a token (--map x='abc') are Python's, and stay.
    try:
        words = shlex.split(line, posix=False)
    except ValueError as exc:
        raise UsageError(f"{prog}: cannot read the options '{line}': {exc}.") from None
    return [w[1:-1] if len(w) > 1 and w[0] == w[-1] and w[0] in "'\"" else w for w in words]


def _complete(expr: str) -> bool:
    try:
        ast.parse(expr.partition("=")[2].strip(), mode="eval")
    except SyntaxError:
        return False
    return True


def _join_map(words: list[str]) -> list[str]:
    """Put a ``--map`` expression that has spaces (``x=range(1, 4)``) back together."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        out.append(word)
        i += 1
        if word == "--map" and i < len(words):
            value = words[i]
            i += 1
            while not _complete(value) and i < len(words) and not words[i].startswith("--"):
                value += " " + words[i]
                i += 1
            out.append(value)
    return out


def parse_task_line(line: str) -> tuple[str | None, CellOptions]:
    """The task name and options of a ``%%task`` line (raises ``UsageError``).

    >>> name, options = parse_task_line("load --retries 2 --map path=paths[:3]")
    >>> name, options.retries, options.map_var, options.map_expr
    ('load', 2, 'path', 'paths[:3]')
    """
    args = _task_parser().parse_args(_join_map(split(line, "%%task")))
    name = args.name
    if name is not None and (name.startswith("-") or not name.strip()):
        raise UsageError(f"%%task: expected a task name, but got '{name}'.")
    where = f"%%task {name}" if name else "%%task"
    try:
        run_options = task_options.from_flags(args, name or "task")
    except task_options.OptionError as exc:
        raise UsageError(f"{where}: {exc}") from None
    map_var = map_expr = None
    if args.map is not None:
        var, eq, expr = args.map.partition("=")
        if not eq or not var.strip().isidentifier() or not expr.strip():
            raise UsageError(
                f"%%task: --map expects VAR=ITERABLE (e.g. --map path=paths), but got '{args.map}'."
            )
        map_var, map_expr = var.strip(), expr.strip()
        try:
            ast.parse(map_expr, mode="eval")
        except SyntaxError:
            raise UsageError(
                f"%%task: the iterable of --map {map_var}=... is not an expression: '{map_expr}'."
            ) from None
    after = tuple(a.strip() for a in args.after.split(",") if a.strip())
    options = CellOptions(
        **run_options, after=after, map_var=map_var, map_expr=map_expr, lazy=args.lazy
    )
    return name, options


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``: the value read as a Python literal, else as a string.

    >>> parse_param("n=3"), parse_param("city=Paris")
    (('n', 3), ('city', 'Paris'))
    """
    parsed = parameter_value(text)
    if parsed is None:
        raise UsageError(f"%flow run: --param expects NAME=VALUE (e.g. --param n=3), got '{text}'.")
    return parsed
