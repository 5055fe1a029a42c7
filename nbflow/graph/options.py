"""The run options of a task, declared once for ``@task(...)`` and ``%%task --flag``.

One ``Option`` per option: its name, default, meaning, the check that accepts (and
normalises) a value or says what was expected, and, for the options a ``%%task``
line can set, the flag's spelling, how its text becomes a value and its help. Both
front ends read this table, so they accept the same values and refuse the rest in
the same words; each puts its own prefix before the message (``Task 'load': ``,
``%%task load: ``) and raises its own error type.

>>> OPTIONS["retries"].flag.spelling
'--retries'
>>> check("timeout", 90)
90.0
>>> check("retries", -1)
Traceback (most recent call last):
    ...
nbflow.graph.options.OptionError: expected retries to be an int >= 0, but got -1.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbflow.errors import did_you_mean
from nbflow.graph.triggers import TRIGGERS, Trigger

if TYPE_CHECKING:
    import argparse

Hook = Callable[[Any, Any], Any]


class OptionError(ValueError):
    """A value an option cannot take. The message starts with ``expected`` or
    ``unknown`` and reads after a prefix naming the task (``Task 'load': ...``)."""


@dataclass(frozen=True)
class Where:
    """Where a value is checked: how the option is spelled there (``retry_delay`` in
    Python, ``--retry-delay`` on a ``%%task`` line), the task it is for, and whether
    the value came from the text of a ``%%task`` line."""

    label: str
    task: str
    line: bool = False


Check = Callable[[Any, Where], Any]


@dataclass(frozen=True)
class Flag:
    """How a ``%%task`` line sets an option.

    ``parse`` turns the flag's text into the value the option's check sees (text it
    cannot read is passed on as is, so the check's message names it); a flag
    without ``parse`` is a switch that sets ``value``.
    """

    spelling: str
    help: str
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    value: Any = None


@dataclass(frozen=True)
class Option:
    """One run option of a task: name, default, meaning, check and ``%%task`` flag."""

    name: str
    default: Any
    help: str
    check: Check
    flag: Flag | None = None


# -- checks ------------------------------------------------------------------------------


def _int_at_least(low: int, why: str = "", *, optional: bool = False) -> Check:
    def check(value: Any, where: Where) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            meaning = why.format(task=where.task)
            raise OptionError(
                f"expected {where.label} to be an int >= {low}{meaning}, but got {value!r}."
            )
        return value

    return check


def _seconds(*, allow_zero: bool, optional: bool = False, none: float | None = None) -> Check:
    def check(value: Any, where: Where) -> float | None:
        if value is None and optional:
            return None
        if value is None and none is not None:
            return none
        if isinstance(value, _dt.timedelta):
            value = value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kinds = "a number of seconds" + ("" if where.line else " or a datetime.timedelta")
            raise OptionError(f"expected {where.label} to be {kinds}, but got {value!r}.")
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float: as endless as inf
            seconds = math.inf
        if not math.isfinite(seconds):
            # inf or nan would reach the scheduler's timers and fail there, far from here.
            hint = ""
            if optional and where.line:
                hint = f" For no limit, leave {where.label} out."
            elif optional:
                hint = f" For no limit, use {where.label}=None."
            raise OptionError(
                f"expected {where.label} to be a finite number of seconds, but got {value!r}.{hint}"
            )
        if seconds < 0 or (seconds == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise OptionError(f"expected {where.label} to be {bound} seconds, but got {value!r}.")
        return seconds

    return check


def _flag(value: Any, where: Where) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"expected {where.label} to be True or False, but got {value!r}.")
    return value


def _name(value: Any, where: Where) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OptionError(f"expected {where.label} to be a non-empty string, but got {value!r}.")
    return value


def _backoff(value: Any, where: Where) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(f"expected {where.label} to be a number >= 1, but got {value!r}.")
    finite = "" if math.isfinite(value) else "finite "
    if finite or value < 1:
        raise OptionError(
            f"expected {where.label} to be a {finite}number >= 1 (the factor by which each "
            f"retry delay grows), but got {value!r}."
        )
    return float(value)


def _jitter(value: Any, where: Where) -> float:
    # nan fails both comparisons, so it is refused here with the rest.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise OptionError(
            f"expected {where.label} to be a fraction between 0 and 1, but got {value!r}."
        )
    return float(value)


def _exception_types(value: Any, where: Where) -> tuple[type[BaseException], ...]:
    types = (value,) if isinstance(value, type) else value
    if isinstance(types, (set, frozenset)):  # Prefect 1 takes a set; keep a stable order
        types = sorted(types, key=lambda t: f"{getattr(t, '__module__', '')}.{t!r}")
    if not isinstance(types, (tuple, list)) or not all(
        isinstance(e, type) and issubclass(e, BaseException) for e in types
    ):
        raise OptionError(
            f"expected {where.label} to be an exception type or a tuple of exception types "
            f"(e.g. {where.label}=(OSError,)), but got {value!r}."
        )
    return tuple(types)


def _trigger(value: Any, where: Where) -> Any:
    if not isinstance(value, Trigger) and value not in TRIGGERS:
        raise OptionError(
            f"unknown trigger {value!r}.{did_you_mean(str(value), TRIGGERS)}"
            f" Choose one of: {', '.join(TRIGGERS)}."
        )
    return value


def _version(value: Any, where: Where) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, int)):
        raise OptionError(f"expected {where.label} to be a string or an int, but got {value!r}.")
    return str(value)


def _tags(value: Any, where: Where) -> tuple[str, ...]:
    try:
        tags = (value,) if isinstance(value, str) else tuple(value)
    except TypeError:  # not iterable
        tags = (value,)
    if not all(isinstance(t, str) for t in tags):
        raise OptionError(f"expected {where.label} to be strings, but got {value!r}.")
    return tags


def hooks(value: Any, label: str, signature: str) -> tuple[Hook, ...]:
    """``value`` (None, a callable or a list of them) as a tuple of hooks, or
    ``OptionError`` naming the first one that is not callable.

    >>> hooks(None, "on_failure", "hook(task, task_run)")
    ()
    """
    if value is None:
        return ()
    found = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for hook in found:
        if not callable(hook):
            raise OptionError(
                f"expected {label} to be a callable {signature} or a list of them, "
                f"but got {hook!r}."
            )
    return found


def check_hooks(
    owner: str, option: str, value: Any, signature: str, error: type[Exception]
) -> tuple[Hook, ...]:
    """``hooks`` for the hooks of ``owner`` (``"Flow 'etl'"``), raising ``error``."""
    try:
        return hooks(value, option, signature)
    except OptionError as exc:
        raise error(f"{owner}: {exc}") from None


def _hooks(signature: str) -> Check:
    def check(value: Any, where: Where) -> tuple[Hook, ...]:
        return hooks(value, where.label, signature)

    return check


# -- the text of %%task flags --------------------------------------------------------------


def _int_text(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text  # the check says what was expected, naming the text


def _float_text(text: str) -> float | str:
    try:
        return float(text)  # "inf" and "1e400" read as inf, which the check refuses
    except ValueError:
        return text


# -- the table ------------------------------------------------------------------------------

_TABLE = (
    Option("name", None, "the task's name (default: the function's name)", _name),
    Option(
        "retries",
        0,
        "how many times a failed attempt is retried",
        _int_at_least(0),
        Flag("--retries", "retry a failed attempt N times", "N", _int_text),
    ),
    Option(
        "retry_delay",
        0.0,
        "seconds (or a timedelta) to wait before the first retry; None: no wait",
        _seconds(allow_zero=True, none=0.0),
        Flag("--retry-delay", "wait S seconds before retrying", "S", _float_text),
    ),
    Option("retry_backoff", 1.0, "the factor by which each retry delay grows", _backoff),
    Option("retry_jitter", 0.0, "a random fraction (0 to 1) added to each delay", _jitter),
    Option("retry_on", (Exception,), "the exception types that are retried", _exception_types),
    Option(
        "timeout",
        None,
        "seconds (or a timedelta) an attempt may run; None: no limit",
        _seconds(allow_zero=False, optional=True),
        Flag("--timeout", "stop an attempt after S seconds", "S", _float_text),
    ),
    Option(
        "trigger",
        "all_successful",
        f"when the task runs, given its upstream states: {', '.join(TRIGGERS)}",
        _trigger,
        Flag("--trigger", f"when to run: {', '.join(TRIGGERS)}", "T", str),
    ),
    Option(
        "cache",
        True,
        "whether results are cached by their inputs and code",
        _flag,
        Flag("--no-cache", "always run, never use or store a cached result", value=False),
    ),
    Option(
        "cache_expire",
        None,
        "seconds (or a timedelta) a cached result stays valid; None: forever",
        _seconds(allow_zero=False, optional=True),
    ),
    Option("cache_version", None, "a version (str or int) that is part of the key", _version),
    Option("tags", (), "labels for filtering and display", _tags),
    Option("log_prints", True, "whether print() output is captured as logs", _flag),
    Option("on_failure", None, "hooks called when the task fails", _hooks("hook(task, task_run)")),
    Option("on_retry", None, "hooks called before each retry", _hooks("hook(task, task_run)")),
    Option(
        "on_success", None, "hooks called when the task succeeds", _hooks("hook(task, task_run)")
    ),
    Option(
        "on_state_change",
        None,
        "hooks called on every state change",
        _hooks("hook(task, task_run, old_state, new_state)"),
    ),
    Option(
        "skip_on_upstream_skip",
        True,
        "whether the task is skipped when an upstream task is skipped",
        _flag,
    ),
    Option(
        "nout",
        None,
        "how many values the task returns, to unpack them from a call",
        _int_at_least(
            1,
            " (how many values the task returns, to unpack a, b = {task}(...))",
            optional=True,
        ),
    ),
)

OPTIONS: Mapping[str, Option] = {o.name: o for o in _TABLE}
"""Every run option of a task, by name, in the order ``Task`` takes them."""

NAMES = tuple(OPTIONS)
"""The option names, for "unknown option" messages and for copying a task."""

FLAGGED = tuple(o for o in _TABLE if o.flag is not None)
"""The options a ``%%task`` line can set."""


def check(name: str, value: Any, task: str = "task") -> Any:
    """``value`` for option ``name``, checked and normalised (``OptionError`` if not).

    >>> import datetime
    >>> check("retry_delay", datetime.timedelta(minutes=1))
    60.0
    """
    return OPTIONS[name].check(value, Where(name, task))


def check_all(values: Mapping[str, Any], task: str) -> dict[str, Any]:
    """Every option of ``values`` checked and normalised, in table order.

    >>> check_all({"tags": "etl", "retries": 1}, "load")
    {'retries': 1, 'tags': ('etl',)}
    """
    return {
        o.name: o.check(values[o.name], Where(o.name, task)) for o in _TABLE if o.name in values
    }


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``FLAGGED`` to a ``%%task`` parser. Their values stay text
    (or None when left out) until ``from_flags`` checks them."""
    for option in FLAGGED:
        flag = option.flag
        assert flag is not None
        if flag.parse is None:
            parser.add_argument(
                flag.spelling,
                dest=option.name,
                action="store_const",
                const=flag.value,
                help=flag.help,
            )
        else:
            parser.add_argument(
                flag.spelling, dest=option.name, metavar=flag.metavar, help=flag.help
            )


def from_flags(args: argparse.Namespace, task: str) -> dict[str, Any]:
    """The checked values of the flagged options of a parsed ``%%task`` line (the
    table's defaults for the flags left out); ``OptionError`` names the flag.
    """
    values: dict[str, Any] = {}
    for option in FLAGGED:
        flag = option.flag
        assert flag is not None
        given = getattr(args, option.name)
        if given is None:
            values[option.name] = option.default
            continue
        value = given if flag.parse is None else flag.parse(given)
        values[option.name] = option.check(value, Where(flag.spelling, task, line=True))
    return values


def unknown(options: Mapping[str, Any]) -> str | None:
    """The first name in ``options`` that is not an option, or None."""
    return next((k for k in options if k not in OPTIONS), None)
