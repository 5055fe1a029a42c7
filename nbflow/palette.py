"""The one palette of task states, shared by the widget, ``visualize`` and the CLI."""

from __future__ import annotations

from nbflow.state import State

# Fill colours (CSS hex), readable on light and dark backgrounds with dark text.
COLOURS: dict[State, str] = {
    State.PENDING: "#d9d9d9",
    State.RUNNING: "#8ec5ff",
    State.RETRYING: "#ffd166",
    State.PAUSED: "#c9b6ff",
    State.SUCCESS: "#7bd389",
    State.CACHED: "#b5e8c0",
    State.FAILED: "#ff7b7b",
    State.TIMED_OUT: "#ff9f68",
    State.SKIPPED: "#eeeeee",
    State.UPSTREAM_FAILED: "#f4b6b6",
    State.CANCELLED: "#bdbdbd",
}

# One symbol per state, so states read without colour too. Each is in the common
# fonts (DejaVu Sans included), so no state shows as a missing-glyph box.
ICONS: dict[State, str] = {
    State.PENDING: "·",
    State.RUNNING: "▶",
    State.RETRYING: "↻",
    State.PAUSED: "‖",
    State.SUCCESS: "✓",
    State.CACHED: "◆",
    State.FAILED: "✗",
    State.TIMED_OUT: "◷",
    State.SKIPPED: "↷",
    State.UPSTREAM_FAILED: "⊘",
    State.CANCELLED: "■",
}

# Names of the colours for terminals (rich styles).
TERMINAL: dict[State, str] = {
    State.PENDING: "grey50",
    State.RUNNING: "bright_blue",
    State.RETRYING: "yellow",
    State.PAUSED: "medium_purple",
    State.SUCCESS: "green",
    State.CACHED: "green4",
    State.FAILED: "red",
    State.TIMED_OUT: "dark_orange",
    State.SKIPPED: "grey62",
    State.UPSTREAM_FAILED: "indian_red",
    State.CANCELLED: "grey42",
}
