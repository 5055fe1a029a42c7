"""The ``nbflow`` command (``nbflow.cli:main``, ``python -m nbflow``)."""

from nbflow.cli.main import main

__all__ = ["main"]
