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

import pkgutil
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
            found = self._registered = pkgutil.resolve_name(found)
        return cast(T, found)
