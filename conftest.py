"""Every test (and doctest) gets its own result store, so tests never share results."""

import pytest


@pytest.fixture(autouse=True)
def _private_store(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("nbflow-home")
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    # A remote store or keys set where the tests run must not reach them.
    for name in ("NBFLOW_STORE", "NBFLOW_SIGNING_KEY", "NBFLOW_TRUSTED_KEYS"):
        monkeypatch.delenv(name, raising=False)
    return home
