"""Tests of ``nbflow.settings``: the one place that reads ``NBFLOW_*`` variables."""

from __future__ import annotations

import ast
import pathlib
import re
import sys

import pytest

from nbflow import settings

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "nbflow"
README = PACKAGE.parent / "README.md"


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for variable in settings.VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)


def test_unset_variables_give_the_defaults():
    assert settings.home() is None
    assert settings.executor() is None
    assert settings.max_workers() is None
    assert settings.refresh() is False
    assert settings.notebook() is None
    assert settings.cache_size() == 8 * 2**30


@pytest.mark.parametrize("name", [v.name for v in settings.VARIABLES])
def test_an_empty_variable_counts_as_unset(monkeypatch, name):
    monkeypatch.setenv(name, "")
    assert settings.home() is None
    assert settings.executor() is None
    assert settings.max_workers() is None
    assert settings.refresh() is False
    assert settings.notebook() is None
    assert settings.cache_size() == settings.DEFAULT_CACHE_SIZE


def test_set_variables_are_read_and_parsed(monkeypatch, tmp_path):
    monkeypatch.setenv("NBFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("NBFLOW_EXECUTOR", "processes")
    monkeypatch.setenv("NBFLOW_MAX_WORKERS", "3")
    monkeypatch.setenv("NBFLOW_REFRESH", "1")
    monkeypatch.setenv("NBFLOW_NOTEBOOK", "/data/sales.ipynb")
    monkeypatch.setenv("NBFLOW_CACHE_SIZE", "1000")
    assert settings.home() == tmp_path
    assert settings.executor() == "processes"
    assert settings.max_workers() == 3
    assert settings.refresh() is True
    assert settings.notebook() == "/data/sales.ipynb"
    assert settings.cache_size() == 1000


def test_refresh_set_to_zero_is_off(monkeypatch):
    monkeypatch.setenv("NBFLOW_REFRESH", "0")
    assert settings.refresh() is False


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_a_bad_max_workers_is_refused_with_its_name_and_value(monkeypatch, bad):
    monkeypatch.setenv("NBFLOW_MAX_WORKERS", bad)
    with pytest.raises(
        settings.SettingError,
        match=rf"^Expected NBFLOW_MAX_WORKERS to be a whole number >= 1, but got '{bad}'\.$",
    ):
        settings.max_workers()


@pytest.mark.parametrize("bad", ["8GiB", "-5"])
def test_a_bad_cache_size_is_refused_with_its_name_and_value(monkeypatch, bad):
    monkeypatch.setenv("NBFLOW_CACHE_SIZE", bad)
    with pytest.raises(ValueError, match=r"^Expected NBFLOW_CACHE_SIZE to be a whole number"):
        settings.cache_size()


def test_environment_writes_what_the_readers_read_back(monkeypatch):
    env = settings.environment(
        executor="dask", max_workers=2, refresh=True, notebook="/data/a.ipynb"
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert settings.executor() == "dask"
    assert settings.max_workers() == 2
    assert settings.refresh() is True
    assert settings.notebook() == "/data/a.ipynb"


def test_environment_leaves_out_what_is_not_given():
    assert settings.environment() == {}
    assert settings.environment(refresh=False, max_workers=None) == {}


def test_settings_imports_only_the_standard_library():
    tree = ast.parse((PACKAGE / "settings.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


def test_no_other_module_names_an_nbflow_variable_in_code():
    # A string that is exactly a variable's name is a read or a write of it.
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and re.fullmatch(r"NBFLOW_[A-Z_]+", node.value):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_the_readme_lists_every_variable():
    text = README.read_text()
    for variable in settings.VARIABLES:
        assert f"| `{variable.name}` |" in text
