"""``%flow run --store URL`` in a real IPython shell (in process), on moto's server."""

from __future__ import annotations

import pytest

globalipapp = pytest.importorskip("IPython.testing.globalipapp")


def test_flow_run_store_keeps_the_cells_results_in_the_bucket(s3, tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from nbflow.jupyter import magics as nbmagics

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBFLOW_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shell = globalipapp.get_ipython() or InteractiveShell.instance()
    nbmagics.load(shell)
    try:
        with capture_output():
            assert shell.run_cell("%%task\nbase = 20\n").success
            assert shell.run_cell("%%task\nplus = base + 1\n").success
            # --refresh: the cells ran when they were defined, in the local store.
            result = shell.run_cell(f"%flow run --store {s3.url} --refresh")
        assert result.success, result.error_in_exec
        listed = s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents", [])
        tasks = sorted(o["Key"].split("/")[2] for o in listed if o["Key"].startswith("results/t/"))
        assert len(tasks) == 2
        assert shell.user_ns["plus"] == 21
    finally:
        nbmagics.unload(shell)
        for name in ("base", "plus"):
            shell.user_ns.pop(name, None)
