"""The JupyterLab extension's contract with the Python side: states, palette, install."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

from nbflow import _jupyter_labextension_paths
from nbflow.palette import COLOURS, ICONS
from nbflow.state import State

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAB = ROOT / "labextension"


def _load_palette_script() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("palette_css", LAB / "scripts" / "palette_css.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_badge_model_knows_exactly_the_python_state_names() -> None:
    source = (LAB / "src" / "model.ts").read_text(encoding="utf-8")
    block = re.search(r"export const STATES = \[(.*?)\] as const", source, re.S)
    assert block is not None
    names = re.findall(r"'([a-z_]+)'", block.group(1))
    assert names == [s.value for s in State]


def test_lab_palette_is_generated_from_the_python_palette() -> None:
    css = _load_palette_script().css()  # type: ignore[attr-defined]
    for state, colour in COLOURS.items():
        assert f"--nbflow-state-{state.value}: {colour};" in css
        assert f'.nbflow-state-{state.value}::before {{ content: "{ICONS[state]} "; }}' in css
    built = LAB / "style" / "palette.css"
    assert built.read_text(encoding="utf-8") == css, "run: make labextension"


def test_prebuilt_extension_sits_where_the_python_package_says() -> None:
    (entry,) = _jupyter_labextension_paths()
    assert entry == {"src": "labextension", "dest": "jupyter-nbflow"}
    built = ROOT / "nbflow" / entry["src"]
    meta = json.loads((built / "package.json").read_text(encoding="utf-8"))
    assert meta["name"] == entry["dest"]
    assert meta["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert (built / meta["jupyterlab"]["_build"]["load"]).is_file()


def test_jupyterlab_lists_the_extension_as_enabled() -> None:
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    out = subprocess.run(
        [str(jupyter), "labextension", "list"], capture_output=True, text=True, timeout=120
    )
    text = out.stdout + out.stderr
    line = next((x for x in text.splitlines() if "jupyter-nbflow" in x), "")
    assert "enabled" in line and "OK" in line, text
