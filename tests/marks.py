"""Counting executions: task functions append their name to a log file, tests read it."""

from __future__ import annotations

from pathlib import Path


def mark(log: Path, name: str) -> None:
    """Note that ``name`` ran (one line appended to ``log``)."""
    with open(log, "a") as fh:
        fh.write(f"{name}\n")


def executed(log: Path, *, ordered: bool = False) -> list[str]:
    """The names marked since the last call, sorted unless ``ordered`` (the log is
    emptied)."""
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines if ordered else sorted(lines)
