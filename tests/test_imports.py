"""``import nbflow`` stays light, and library code does not print."""

import ast
import json
import pathlib
import subprocess
import sys

HEAVY = [
    "pandas",
    "joblib",
    "IPython",
    "ipywidgets",
    "anywidget",
    "graphviz",
    "diskcache",
    "numpy",
    "dask",
    "distributed",
]
PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "nbflow"


def test_import_nbflow_loads_no_heavy_library():
    code = (
        f"import sys, json, nbflow\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_library_code_never_calls_print():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
