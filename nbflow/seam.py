"""A seam: one registered implementation of a protocol, given as an object or as a
``"module:attribute"`` path that is imported the first time it is asked for (so the
package face can wire heavy parts without loading them).

>>> seam: Seam[list[int]] = Seam("numbers")
>>> seam.get()
Traceback (most recent call last):
...
nbflow.errors.NbflowError: No numbers is registered; import nbflow to register the default one.
>>> seam.register("builtins:list") is None
True
>>> seam.get() is list
True
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar, cast

from nbflow.errors import NbflowError

T = TypeVar("T")


class Seam(Generic[T]):
    """Holds the implementation registered for one concern (see the module doc)."""

    def __init__(self, what: str, default: T | str | None = None) -> None:
        self.what = what
        self._registered: T | str | None = default

    def register(self, implementation: T | str | None) -> T | str | None:
        """Make ``implementation`` the one used from now on; returns the previous one."""
        previous, self._registered = self._registered, implementation
        return previous

    def get(self) -> T:
        """The registered implementation, imported now if it was registered by path."""
        found: Any = self._registered
        if found is None:
            raise NbflowError(
                f"No {self.what} is registered; import nbflow to register the default one."
            )
        if isinstance(found, str):
            import pkgutil  # here, not at import: it loads importlib.util

            found = self._registered = pkgutil.resolve_name(found)
        return cast(T, found)


class Registry(Generic[T]):
    """Implementations registered by name (executors by name, result stores by URL
    scheme): thread-safe, in registration order, each name once unless replaced.

    >>> shapes: Registry[int] = Registry()
    >>> shapes.add("square", 4, replace=False, taken="'square' is taken.")
    >>> shapes.add("square", 5, replace=False, taken="'square' is taken.")
    Traceback (most recent call last):
    ...
    nbflow.errors.NbflowError: 'square' is taken.
    >>> shapes.names(), shapes.get("square"), shapes.get("circle")
    (('square',), 4, None)
    """

    def __init__(self, initial: dict[str, T] | None = None) -> None:
        self._items: dict[str, T] = dict(initial or {})
        self._lock = threading.Lock()

    def add(self, name: str, value: T, *, replace: bool, taken: str) -> None:
        """Register ``value`` as ``name``; if ``name`` is taken and not ``replace``,
        raise ``NbflowError(taken)``."""
        with self._lock:
            if name in self._items and not replace:
                raise NbflowError(taken)
            self._items[name] = value

    def remove(self, name: str, *, missing: str) -> None:
        """Forget ``name``; if it was not registered, raise ``NbflowError(missing)``."""
        with self._lock:
            if self._items.pop(name, None) is None:
                raise NbflowError(missing)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        with self._lock:
            return tuple(self._items)

    def get(self, name: str) -> T | None:
        """What ``name`` is registered as, or None."""
        with self._lock:
            return self._items.get(name)


def check_factory(value: object, message: str) -> None:
    """Refuse a factory that is neither callable nor a ``"module:attribute"`` path."""
    if not (callable(value) or (isinstance(value, str) and ":" in value)):
        raise NbflowError(message)
