"""Write ``style/palette.css`` from ``nbflow/palette.py``: one palette for Python and the lab.

Run by ``npm run build:palette`` (part of ``build:prod``); needs only the standard
library and the ``nbflow`` source next to this folder.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from nbflow.palette import COLOURS, ICONS  # noqa: E402


def css() -> str:
    lines = [
        "/* Generated from nbflow/palette.py by scripts/palette_css.py: do not edit. */",
        ":root {",
    ]
    lines += [f"  --nbflow-state-{s.value}: {c};" for s, c in COLOURS.items()]
    lines.append("}")
    for state in COLOURS:
        badge = f".nbflow-cell-badge.nbflow-state-{state.value}"
        lines.append(f"{badge} {{ background: var(--nbflow-state-{state.value}); }}")
        lines.append(f'{badge}::before {{ content: "{ICONS[state]} "; }}')
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    out = HERE.parent / "style" / "palette.css"
    text = css()
    if not out.exists() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")
