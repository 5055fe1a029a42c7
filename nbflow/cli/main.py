"""The ``nbflow`` command: run notebooks and flows headless; look at past runs and the cache.

Exit status: 0 every task succeeded, 1 a task (or a notebook cell) failed, 2 a usage
error (one line on stderr starting ``nbflow: error:``), 130 interrupted. Start-up is
kept light: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from nbflow import settings
from nbflow.cli.source import UsageError, parse_age
from nbflow.errors import NbflowError
from nbflow.state import FAILED_STATES, State
from nbflow.store.home import CACHE_DIR, HISTORY_FILE


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``nbflow: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("nbflow").strip()
        hint = f"nbflow {command} --help" if command else "nbflow --help"
        self.exit(2, f"nbflow: error: {message} (see {hint})\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, but got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, but got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nbflow`` and its commands.

    >>> args = build_parser().parse_args(["run", "flows.py:etl", "--param", "n=3", "--jobs", "2"])
    >>> args.command, args.path, args.param, args.jobs, args.executor
    ('run', 'flows.py:etl', ['n=3'], 2, None)
    """
    parser = _Parser(
        prog="nbflow",
        description="Run notebooks and flows headless, with live progress, sharing the "
        "notebook's cache and run history (.nbflow/ beside the notebook, or NBFLOW_HOME).",
        epilog="Exit status: 0 every task succeeded, 1 a task or a notebook cell failed, "
        "2 a usage error, 130 interrupted. See nbflow COMMAND --help.",
    )
    from nbflow.version import __version__

    parser.add_argument("--version", action="version", version=f"nbflow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run a notebook or the flow of a Python file",
        description="Run a notebook (.ipynb, in a kernel, its %%task cells as in "
        "JupyterLab) or a flow of a Python file (file.py or file.py:flow_name).",
    )
    run.add_argument("path", metavar="PATH", help="notebook.ipynb, file.py or file.py:flow")
    from nbflow.executor import executor_info, executor_names

    kinds = [executor_info(name) for name in executor_names()]
    run.add_argument(
        "--executor",
        choices=[kind.name for kind in kinds],
        help="where tasks run (default: threads). "
        + "; ".join(f"{k.name}: {k.summary}" if k.summary else k.name for k in kinds),
    )
    run.add_argument("--jobs", type=_positive, metavar="N", help="at most N tasks at a time")
    run.add_argument("--refresh", action="store_true", help="recompute every task (no cache)")
    _store_option(run)
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter (a Python literal, else a string); repeat for more",
    )
    run.add_argument(
        "--output",
        metavar="OUT.ipynb",
        help="write the executed notebook here (also when interrupted: the cells that ran)",
    )
    run.add_argument("--timeout", type=_seconds, metavar="S", help="stop the run after S seconds")
    run.set_defaults(handler=_run)

    retry = commands.add_parser(
        "retry",
        help="re-run only what failed in a past run",
        description="Run a past run's notebook or flow again: tasks whose results are "
        "cached are not re-executed, so only what failed (and its downstream) runs.",
    )
    retry.add_argument("run_id", nargs="?", default="latest", metavar="RUN_ID|latest")
    _path_option(retry)
    retry.set_defaults(handler=_retry)

    runs = commands.add_parser("runs", help="list past runs", description="List past runs.")
    _path_option(runs)
    runs.add_argument("--limit", type=_positive, default=20, metavar="N", help="default 20")
    runs.set_defaults(handler=_runs)

    show = commands.add_parser(
        "show",
        help="show the tasks of a run",
        description="The tasks of a run, and the logs and errors of those that failed.",
    )
    show.add_argument("run_id", metavar="RUN_ID|latest")
    _path_option(show)
    show.set_defaults(handler=_show)

    resume = commands.add_parser(
        "resume",
        help="let a paused task of a running run go on",
        description="Resume a task with trigger='manual_only' that waits in a run going on "
        "in another process (a notebook's kernel, a script); the run picks the request up "
        "within about half a second.",
    )
    resume.add_argument("run_id", metavar="RUN_ID|latest")
    resume.add_argument("task", metavar="TASK")
    _path_option(resume)
    resume.set_defaults(handler=_resume)

    cache = commands.add_parser(
        "cache", help="inspect or clear the result cache", description="The result cache."
    )
    cache.add_argument("action", choices=("info", "clear"))
    cache.add_argument("--task", metavar="NAME", help="clear only this task's results")
    cache.add_argument(
        "--older-than", metavar="AGE", help="clear only results older than AGE (7d, 12h, 30m)"
    )
    _path_option(cache)
    _store_option(cache)
    cache.set_defaults(handler=_cache)

    draw = commands.add_parser(
        "visualize",
        help="draw the graph of a flow or of a notebook's task cells",
        description="Draw the graph of a Python file's flow (file.py or file.py:flow), or "
        "of a notebook's %%task cells coloured by their latest states.",
    )
    draw.add_argument("path", metavar="PATH")
    draw.add_argument("-o", "--output", required=True, metavar="dag.svg|dag.png")
    draw.set_defaults(handler=_visualize)
    return parser


def _path_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--path",
        metavar="DIR",
        help="the folder whose .nbflow/ store to use, or the store itself "
        "(default: NBFLOW_HOME, else ./.nbflow)",
    )


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the result store: a folder or a URL such as s3://bucket/prefix, with the "
        "local .nbflow/ in front of it (default: NBFLOW_STORE, else the local store)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse, dispatch, turn errors into exit statuses.

    >>> import contextlib, io, tempfile
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     main(["runs", "--path", tempfile.mkdtemp()])
    2
    >>> err.getvalue().startswith("nbflow: error: There is no nbflow run history in")
    True
    """
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("nbflow: interrupted\n")
        return 130
    except (UsageError, NbflowError) as exc:
        sys.stderr.write(f"nbflow: error: {' '.join(str(exc).split())}\n")
        return 2
    return status


# -- commands -----------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    from nbflow.cli.launch import run_command

    return run_command(args)


def _retry(args: argparse.Namespace) -> int:
    from nbflow.cli.launch import retry_command

    home = store_dir(args.path)
    return retry_command(args.run_id, _history(home), home)


def store_dir(path: str | None) -> pathlib.Path:
    """The store ``--path`` names: the folder's ``.nbflow/``, or the store itself.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> store_dir(folder).name
    '.nbflow'
    """
    from nbflow.store.home import home_path

    if path is None:
        return home_path()
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise UsageError(f"--path '{path}' is not a directory.")
    if (folder / HISTORY_FILE).exists() or (folder / CACHE_DIR).is_dir():
        return folder
    return folder / ".nbflow"


def _history(home: pathlib.Path) -> Any:
    from nbflow.store.history import open_history
    from nbflow.store.home import check_permissions

    if not (home / HISTORY_FILE).exists():
        raise UsageError(
            f"There is no nbflow run history in '{home}'. Point to the folder of the notebook "
            "or store with --path DIR (or set NBFLOW_HOME)."
        )
    check_permissions(home)
    return open_history(home)


def _write(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _took(start: float | None, end: float | None) -> str:
    return f"{end - start:.2f}s" if start is not None and end is not None else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in (header, *rows)
    ]


def _runs(args: argparse.Namespace) -> int:
    history = _history(store_dir(args.path))
    groups = _run_groups(history, args.limit)
    if not groups:
        _write(["No runs recorded yet."])
        return 0
    table = []
    for group in groups:
        if len(group) == 1:
            table.append(_run_row(group[0]))
            continue
        # The cell runs of one notebook run (one kernel): one row, its runs inside.
        states = history.last_states([r["id"] for r in group])
        failed = sum(State(v) in FAILED_STATES for v in states.values())
        start = min(r["start"] for r in group if r["start"] is not None)
        ends = [r["end"] for r in group]
        end = None if None in ends else max(ends)
        notebook = all(r["source"] == "notebook" for r in group)
        label = "notebook run" if notebook else f"process {group[0]['pid']}"
        table.append(
            (
                f"{label} ({len(group)} runs)",
                group[0]["flow"],
                _group_state(group, failed),
                _when(start),
                _took(start, end),
                str(len(states)),
                str(failed),
            )
        )
        table += [("  " + row[0], *row[1:]) for row in map(_run_row, reversed(group))]
    _write(_table(("run", "flow", "state", "start", "duration", "tasks", "failed"), table))
    return 0


def _run_row(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["id"],
        r["flow"],
        r["state"] + (" (interrupted)" if r["interrupted"] else ""),
        _when(r["start"]),
        _took(r["start"], r["end"]),
        str(r["tasks"]),
        str(r["failed"]),
    )


def _run_groups(history: Any, limit: int) -> list[list[dict[str, Any]]]:
    """The ``limit`` newest runs, newest first, the runs of one notebook run together.

    A notebook records one run per cell it runs (and per ``%flow run``); the runs one
    process made of one flow, one after the other, are one notebook run.
    """
    fetch = limit * 10
    while True:
        rows = history.runs(fetch)
        groups: list[list[dict[str, Any]]] = []
        for row in rows:
            last = groups[-1][-1] if groups else None
            if (
                last is not None
                and row["pid"] is not None
                and all(row[k] == last[k] for k in ("flow", "pid", "host"))
            ):
                groups[-1].append(row)
            else:
                groups.append([row])
        if len(rows) < fetch or len(groups) > limit:
            return groups[:limit]
        fetch *= 4


def _group_state(group: list[dict[str, Any]], failed: int) -> str:
    """The state of a notebook run: running while one of its runs is, else failed
    when the last run of one of its tasks failed, else that of its last run."""
    if any(r["state"] == "running" for r in group):
        return "running"
    if failed:
        return "failed"
    interrupted = any(r["interrupted"] for r in group)
    return str(group[0]["state"]) + (" (interrupted)" if interrupted else "")


def _show(args: argparse.Namespace) -> int:
    from nbflow.cli.launch import past_run
    from nbflow.cli.progress import clean

    home = store_dir(args.path)
    history = _history(home)
    run = past_run(history, home, args.run_id)
    lines = [
        f"run {run.id} of flow '{run.flow_name}': {run.state.value}"
        + (" (interrupted)" if run.interrupted else ""),
        f"started {_when(run.start)}, took {_took(run.start, run.end)}",
    ]
    source = history.source(run.id)
    if source is not None:
        lines.append(f"from {source[0]} '{source[1]}'")
    lines.append("")
    # A cached task's duration is the time of the hit; what computing its result took
    # is that of the run that computed it, when the history has it.
    computed = history.computed([t.key for t in run.task_runs if t.cached and t.key])
    rows = [
        (
            t.name,
            t.state.value,
            str(t.attempts),
            f"{t.duration:.2f}s" if t.duration is not None else "-",
            _cached(t.cached, computed.get(t.key) if t.key else None),
        )
        for t in run.task_runs
    ]
    lines += _table(("task", "state", "attempts", "duration", "cached"), rows)
    for t in run.failed:
        if t.error is None and not t.logs:
            if t.reason:
                lines += ["", f"{t.name}: {t.state.value}: {clean(t.reason)}"]
            continue
        lines += ["", f"── {t.name}: {t.state.value} after {t.attempts} attempt(s) ──"]
        if t.logs:
            lines.append("logs:")
            lines += ["  " + clean(str(record)) for record in t.logs]
        if t.traceback:
            lines += [line.rstrip() for line in t.traceback.rstrip().splitlines()]
        elif t.error is not None:
            lines.append(str(t.error))
    _write(lines)
    return 0


def _cached(cached: bool, computed: float | None) -> str:
    """The cached column of ``nbflow show``.

    >>> _cached(True, 2.5), _cached(True, None), _cached(False, None)
    ('yes, computed in 2.50s', 'yes', '')
    """
    if not cached:
        return ""
    return "yes" if computed is None else f"yes, computed in {computed:.2f}s"


def _resume(args: argparse.Namespace) -> int:
    from nbflow.cli.launch import resolve_run
    from nbflow.store.inbox import request_resume

    home = store_dir(args.path)
    history = _history(home)
    run_id = resolve_run(history, home, args.run_id)
    state = history.load(run_id)[0]["state"]
    if state != "running":
        raise UsageError(f"Run '{run_id}' has ended ({state}); nothing in it waits to be resumed.")
    if not request_resume(home, run_id, args.task):
        raise UsageError(
            f"Run '{run_id}' did not take the request to resume '{args.task}' within 10s; it "
            "stays asked. Is the process running it still alive (see nbflow runs)?"
        )
    _write([f"Resumed task '{args.task}' of run {run_id}."])
    return 0


def _cache(args: argparse.Namespace) -> int:
    from nbflow.engine.archive import cache_info, clear_cache

    url = args.store or (None if args.path else settings.store())
    if url and args.path:
        raise UsageError("Give --store URL or --path DIR, not both.")
    where: Any = url or store_dir(args.path)
    if url is None and not (where / CACHE_DIR).is_dir():
        raise UsageError(
            f"There is no nbflow cache in '{where}'. Point to the folder of the notebook or "
            "store with --path DIR (or set NBFLOW_HOME)."
        )
    if args.action == "info":
        if args.task or args.older_than:
            raise UsageError("--task and --older-than apply to 'nbflow cache clear' only.")
        info = cache_info(where)
        lines = [
            f"store {info['path']}: {info['entries']} results, {_size(info['bytes'])}",
        ]
        if info.get("oldest") is not None:  # a remote store dates its entries
            lines.append(f"created from {_when(info['oldest'])} to {_when(info['newest'])}")
        if "local" in info:
            local = info["local"]
            lines.append(
                f"local copy {local['path']}: {local['entries']} results, {_size(local['bytes'])}"
            )
        if info["per_task"]:
            lines += _table(
                ("task", "results"),
                [(name, str(n)) for name, n in sorted(info["per_task"].items())],
            )
        _write(lines)
        return 0
    older = parse_age(args.older_than) if args.older_than is not None else None
    removed = clear_cache(task=args.task, older_than=older, path=where)
    what = f" of task '{args.task}'" if args.task else ""
    age = f" older than {args.older_than}" if args.older_than else ""
    _write([f"removed {removed} cached results{what}{age} from {where}"])
    return 0


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _visualize(args: argparse.Namespace) -> int:
    from nbflow.cli.source import check_path, load_module, pick_flow, split_target

    path, name = split_target(args.path)
    kind = check_path(path)
    out = pathlib.Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise UsageError(f"-o must end with .svg, .png, .pdf or .dot, but got '{out}'.")
    if not out.parent.is_dir():
        raise UsageError(f"The folder of -o '{out}' does not exist.")
    if kind == "notebook":
        dot = _notebook_drawing(path)
    else:
        dot = pick_flow(load_module(path), path, name).visualize()
    if fmt == "dot":
        out.write_text(dot.source)
    else:
        from nbflow.cli.launch import render_graph

        render_graph(dot, out, fmt)
    _write([f"wrote {out}"])
    return 0


def _notebook_drawing(path: pathlib.Path) -> Any:
    """The notebook's task cells, coloured by their latest states in its history."""
    from nbflow.cli.sketch import cell_graph, draw_cells
    from nbflow.cli.source import notebook_home, read_notebook
    from nbflow.state import State

    graph = cell_graph(read_notebook(path), f"'{path}'")
    home = notebook_home(path)
    states: dict[str, State] = {}
    if (home / HISTORY_FILE).exists():
        found = _history(home).latest_states(path.stem)
        states = {name: State(value) for name, value in found.items()}
    return draw_cells(graph, path.stem, states)
