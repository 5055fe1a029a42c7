"""Every ``NBFLOW_*`` environment variable: its name, meaning, parsing and default.

Other modules read these variables only through the functions here, and set them
for a notebook's kernel only through ``environment``. Each read looks at
``os.environ`` afresh (nothing is cached), so a variable set while a process runs
takes effect at the next read. An empty value counts as unset.

Standard library only: ``import nbflow`` must stay light.

>>> import os
>>> os.environ[MAX_WORKERS] = "4"
>>> max_workers()
4
>>> del os.environ[MAX_WORKERS]
>>> max_workers() is None
True
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

HOME = "NBFLOW_HOME"
EXECUTOR = "NBFLOW_EXECUTOR"
MAX_WORKERS = "NBFLOW_MAX_WORKERS"
REFRESH = "NBFLOW_REFRESH"
NOTEBOOK = "NBFLOW_NOTEBOOK"
CACHE_SIZE = "NBFLOW_CACHE_SIZE"
STORE = "NBFLOW_STORE"
SIGNING_KEY = "NBFLOW_SIGNING_KEY"
TRUSTED_KEYS = "NBFLOW_TRUSTED_KEYS"

DEFAULT_CACHE_SIZE = 8 * 2**30
"""The store's size limit in bytes when ``NBFLOW_CACHE_SIZE`` is unset (8 GiB)."""


class SettingError(ValueError):
    """An ``NBFLOW_*`` variable holds a value that cannot work (the message names it)."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, what it means and what applies when unset."""

    name: str
    meaning: str
    unset: str


VARIABLES = (
    Variable(
        HOME,
        "the store directory: results cache, run history, task cells",
        "./.nbflow (a notebook run by `nbflow run`: .nbflow beside the notebook)",
    ),
    Variable(
        EXECUTOR,
        "the executor of runs that name none: threads, processes, sequential or dask",
        "threads (a %%task cell: the kernel's main thread)",
    ),
    Variable(
        MAX_WORKERS,
        "the workers of runs that name no executor, a whole number >= 1",
        "the executor's own default",
    ),
    Variable(
        REFRESH,
        "when set and not 0, runs that leave refresh unset recompute every task",
        "off",
    ),
    Variable(
        NOTEBOOK,
        "the path of the notebook a kernel runs; its stem names the flow of its task cells",
        "JPY_SESSION_NAME's stem, else 'notebook'",
    ),
    Variable(CACHE_SIZE, "the result store's size limit in bytes (LRU eviction)", "8 GiB"),
    Variable(
        STORE,
        "the result store of runs that name none: a folder or a URL such as s3://bucket/prefix "
        "(the home folder then keeps a local copy of what is read or written)",
        "the home folder",
    ),
    Variable(
        SIGNING_KEY,
        "this writer's key for entries on a remote store, NAME:SECRET (secret >= 16 characters)",
        "none: a remote store cannot be written",
    ),
    Variable(
        TRUSTED_KEYS,
        "the writers' keys whose remote entries are read, NAME:SECRET,NAME:SECRET (besides "
        "this writer's own)",
        "only NBFLOW_SIGNING_KEY",
    ),
)
"""Every variable nbflow reads, in the order the README lists them."""


def _get(name: str) -> str | None:
    return os.environ.get(name) or None


def _whole(name: str, text: str, low: int, what: str) -> int:
    if not text.strip().isdigit() or int(text) < low:
        raise SettingError(f"Expected {name} to be {what}, but got {text!r}.")
    return int(text)


def home() -> pathlib.Path | None:
    """``NBFLOW_HOME``: the store directory, or None to use the caller's default."""
    value = _get(HOME)
    return pathlib.Path(value) if value else None


def executor() -> str | None:
    """``NBFLOW_EXECUTOR``: the executor name for runs that name none, or None."""
    return _get(EXECUTOR)


def max_workers() -> int | None:
    """``NBFLOW_MAX_WORKERS``: the workers for runs that name no executor, or None.

    Raises ``SettingError`` when it is not a whole number >= 1.
    """
    text = _get(MAX_WORKERS)
    if text is None:
        return None
    return _whole(MAX_WORKERS, text, 1, "a whole number >= 1")


def refresh() -> bool:
    """``NBFLOW_REFRESH``: True when set and not ``0`` (``nbflow run --refresh``)."""
    return _get(REFRESH) not in (None, "0")


def notebook() -> str | None:
    """``NBFLOW_NOTEBOOK``: the path of the notebook this kernel runs, or None."""
    return _get(NOTEBOOK)


def cache_size() -> int:
    """``NBFLOW_CACHE_SIZE``: the store's size limit in bytes, default 8 GiB.

    Raises ``SettingError`` when it is not a whole number.
    """
    text = _get(CACHE_SIZE)
    if text is None:
        return DEFAULT_CACHE_SIZE
    return _whole(CACHE_SIZE, text, 0, "a whole number of bytes (e.g. 2000000000)")


def store() -> str | None:
    """``NBFLOW_STORE``: the result store (folder or URL) of runs that name none, or None."""
    return _get(STORE)


MIN_SECRET = 16
"""The shortest secret a signing key may have (characters)."""


def _key(name: str, text: str) -> tuple[str, bytes]:
    ident, sep, secret = text.strip().partition(":")
    if not sep or not ident or not ident.isprintable() or len(ident) > 64:
        raise SettingError(
            f"Expected each key in {name} to be NAME:SECRET (a name of at most 64 characters, "
            f"then the secret), but got one starting {text.strip()[:8]!r}."
        )
    if len(secret) < MIN_SECRET:
        raise SettingError(
            f"The secret of key '{ident}' in {name} is shorter than {MIN_SECRET} characters; "
            'make one with: python -c "import secrets; print(secrets.token_hex(32))".'
        )
    return ident, secret.encode()


def signing_key() -> tuple[str, bytes] | None:
    """``NBFLOW_SIGNING_KEY``: this writer's key (name, secret) for remote entries, or None.

    Raises ``SettingError`` when it is not ``NAME:SECRET`` with a long enough secret.

    >>> os.environ[SIGNING_KEY] = "alice:0123456789abcdef"
    >>> signing_key()
    ('alice', b'0123456789abcdef')
    >>> del os.environ[SIGNING_KEY]
    """
    text = _get(SIGNING_KEY)
    return None if text is None else _key(SIGNING_KEY, text)


def trusted_keys() -> dict[str, bytes]:
    """``NBFLOW_TRUSTED_KEYS`` and ``NBFLOW_SIGNING_KEY``: the secrets of the writers whose
    remote entries are read, by key name.

    Raises ``SettingError`` for a key that is not ``NAME:SECRET``, or a name given
    twice with different secrets.
    """
    keys: dict[str, bytes] = {}
    own = signing_key()
    pairs = [own] if own else []
    text = _get(TRUSTED_KEYS)
    if text is not None:
        pairs += [_key(TRUSTED_KEYS, part) for part in text.split(",") if part.strip()]
    for ident, secret in pairs:
        if keys.get(ident, secret) != secret:
            raise SettingError(
                f"The key name '{ident}' has two different secrets in {SIGNING_KEY} and "
                f"{TRUSTED_KEYS}; give each writer's key one name."
            )
        keys[ident] = secret
    return keys


def environment(
    *,
    executor: str | None = None,
    max_workers: int | None = None,
    refresh: bool = False,
    notebook: str | None = None,
    store: str | None = None,
) -> dict[str, str]:
    """The variables that pass these run defaults to a child process (a notebook's
    kernel): only those given, as the functions above read them back.

    >>> environment(executor="processes", max_workers=4, refresh=True)
    {'NBFLOW_EXECUTOR': 'processes', 'NBFLOW_MAX_WORKERS': '4', 'NBFLOW_REFRESH': '1'}
    """
    env: dict[str, str] = {}
    if executor:
        env[EXECUTOR] = executor
    if max_workers:
        env[MAX_WORKERS] = str(max_workers)
    if refresh:
        env[REFRESH] = "1"
    if notebook:
        env[NOTEBOOK] = notebook
    if store:
        env[STORE] = store
    return env
