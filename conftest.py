"""Every test (and doctest) gets its own result store, so tests never share results."""

import pytest


@pytest.fixture(autouse=True)
def _private_store(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("nbflow-home")
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    return home
