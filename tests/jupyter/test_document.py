"""The notebook document as JupyterLab's commands send it: task cells defined from
their sources (not only from what the kernel executed), and badges sent again when a
page connects. A real IPython shell, in process."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output
from kernelhelp import kernel_messages

from nbflow.jupyter import lab
from nbflow.jupyter import magics as nbmagics
from nbflow.jupyter.lab import LabChannel


def _shell() -> InteractiveShell:
    return globalipapp.get_ipython() or InteractiveShell.instance()


class Sink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(message)


def _fresh(shell: InteractiveShell) -> nbmagics.NbflowMagics:
    """A new kernel: fresh magics (same store), the namespace emptied."""
    for name in list(shell.user_ns):
        if not name.startswith("_") and name not in ("In", "Out", "get_ipython", "exit", "quit"):
            shell.user_ns.pop(name, None)
    magics = nbmagics.load(shell)
    assert magics.channel is None  # not a kernel: give it a channel that records
    magics.channel = LabChannel(magics.cell_of, send=Sink())
    return magics


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBFLOW_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "doc.ipynb"))
    monkeypatch.delenv("NBFLOW_NOTEBOOK", raising=False)
    shell = _shell()
    shell.nbflow = _fresh(shell)
    yield shell
    shell.nbflow.channel.close()
    nbmagics.unload(shell)
    for name in list(shell.user_ns):
        if not name.startswith("_") and name not in ("In", "Out", "get_ipython", "exit", "quit"):
            shell.user_ns.pop(name, None)


def _encoded(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _command(ip: InteractiveShell, cells: list[tuple[str, str]], line: str) -> Any:
    """What a JupyterLab command runs: the document's task cells, then a %flow line."""
    doc = [{"id": i, "source": s} for i, s in cells]
    code = (
        f'__import__("nbflow.jupyter.magics", fromlist=["use_document"])'
        f'.use_document(get_ipython(), "{_encoded(doc)}")\n%flow {line}'
    )
    with capture_output() as out:
        result = ip.run_cell(code)
    return result, out


DOC = [
    ("c-rows", "%%task\nrows = list(range(5))"),
    ("c-total", "%%task\ntotal = sum(rows)"),
    ("c-double", "%%task report\ndoubled = total * 2"),
]


def test_run_flow_on_a_freshly_opened_notebook_runs_every_task_cell_of_the_document(ip):
    result, out = _command(ip, DOC, "run")
    assert result.success, out.stdout + str(result.error_in_exec)
    assert (ip.user_ns["rows"], ip.user_ns["total"], ip.user_ns["doubled"]) == (
        [0, 1, 2, 3, 4],
        10,
        20,
    )
    run = ip.nbflow.notebook.last_run
    assert sorted(run.flow.name_of(n) for n in run.flow.tasks) == ["report", "rows", "total"]
    assert ip.nbflow.notebook.cell_ids == {
        "c-rows": "rows",
        "c-total": "total",
        "c-double": "report",
    }


def test_after_a_partial_run_all_run_flow_runs_the_cells_not_executed_yet(ip):
    with capture_output():
        ip.run_cell(DOC[0][1], cell_id=DOC[0][0])  # Run All stopped after the first cell
    result, out = _command(ip, DOC, "run")
    assert result.success, out.stdout
    assert ip.user_ns["doubled"] == 20
    run = ip.nbflow.notebook.last_run
    assert {run.flow.name_of(n): run[n].state.value for n in run.flow.tasks} == {
        "rows": "cached",
        "total": "success",
        "report": "success",
    }


def test_rerun_failed_runs_the_edited_source_of_a_cell_not_executed_since(ip):
    broken = ("c-total", "%%task\ntotal = sum(rows) / 0")
    with capture_output():
        ip.run_cell(DOC[0][1], cell_id=DOC[0][0])
        failed = ip.run_cell(broken[1], cell_id=broken[0])
    assert isinstance(failed.error_in_exec, ZeroDivisionError)
    # The user fixes the cell in the editor and, without running it, asks to re-run failed.
    result, out = _command(ip, DOC, "retry")
    assert result.success, out.stdout + str(result.error_in_exec)
    assert ip.user_ns["total"] == 10 and ip.user_ns["doubled"] == 20
    assert ip.nbflow.notebook.cells["total"].source == "\ntotal = sum(rows)\n"


def test_the_document_order_decides_which_cell_a_name_comes_from(ip):
    # Executed bottom-up: the cell that reads x ran before the one that binds it.
    cells = [("c-x", "%%task\nx = 2"), ("c-y", "%%task\ny = x * 10")]
    with capture_output():
        ip.run_cell("%%task --lazy\ny = x * 10", cell_id="c-y")
        ip.run_cell("%%task --lazy\nx = 2", cell_id="c-x")
    result, out = _command(ip, cells, "run")
    assert result.success, out.stdout + str(result.error_in_exec)
    nb = ip.nbflow.notebook
    assert nb.upstream_of(nb.cells["y"]) == ["x"]
    assert ip.user_ns["y"] == 20


def test_a_cell_deleted_from_the_document_is_forgotten(ip):
    with capture_output():
        ip.run_cell("%%task --lazy\nold = 1", cell_id="c-old")
    result, _ = _command(ip, DOC, "run")
    assert result.success
    assert "old" not in ip.nbflow.notebook.cells
    assert "c-old" not in ip.nbflow.notebook.cell_ids


def test_a_broken_task_line_in_the_document_names_its_cell(ip):
    result, out = _command(ip, [DOC[0], ("c-bad", "%%task --retries lots\nz = 1")], "run")
    assert not result.success
    assert "Task cell 2 of the notebook" in out.stdout + out.stderr + str(result.error_in_exec)


def _reconnected(magics: nbmagics.NbflowMagics) -> dict[str, dict[str, Any]]:
    sink = magics.channel._send
    assert isinstance(sink, Sink)
    assert sink.messages[-2] == {"type": "reset"}  # a new comm: the page shows these alone
    return {c["cell_id"]: c for c in sink.messages[-1]["cells"]}


def test_a_connecting_page_gets_the_latest_states_of_its_cells(ip):
    broken = ("c-total", "%%task\ntotal = sum(rows) / 0")
    with capture_output():
        ip.run_cell(DOC[0][1], cell_id=DOC[0][0])
        ip.run_cell(broken[1], cell_id=broken[0])
    ip.nbflow.channel.flush()
    lab.resend(ip, _encoded(["c-rows", "c-total", "c-double", "c-unknown"]))
    states = _reconnected(ip.nbflow)
    assert {k: v["state"] for k, v in states.items()} == {"c-rows": "success", "c-total": "failed"}
    assert states["c-total"]["task"] == "total"


def test_after_a_restart_the_states_come_from_the_run_history(ip):
    with capture_output():
        ip.run_cell(DOC[0][1], cell_id=DOC[0][0])
        ip.run_cell("%%task\ntotal = sum(rows) / 0", cell_id="c-total")
    from nbflow.store.history import _flush_all

    _flush_all()
    ip.nbflow.channel.close()
    ip.nbflow = _fresh(ip)  # a new kernel: nothing has run in it
    lab.resend(ip, _encoded(["c-rows", "c-total", "c-double"]))
    states = _reconnected(ip.nbflow)
    assert {k: v["state"] for k, v in states.items()} == {"c-rows": "success", "c-total": "failed"}
    assert states["c-rows"]["duration"] is not None
    assert states["c-total"]["attempts"] == 1


def test_rerun_failed_runs_a_failed_cell_whose_edit_changed_its_task_name(ip):
    with capture_output():
        ip.run_cell(DOC[0][1], cell_id=DOC[0][0])
        ip.run_cell("%%task\ntotal = sum(rows) / 0", cell_id="c-total")
    edited = [DOC[0], ("c-total", "%%task\ngrand_total = sum(rows)")]
    result, out = _command(ip, edited, "retry")
    assert result.success, out.stdout + str(result.error_in_exec)
    assert ip.user_ns["grand_total"] == 10
    assert "total" not in ip.nbflow.notebook.cells


def test_a_new_kernel_sends_the_recorded_states_without_loading_the_magics(tmp_path):
    """What a reopened notebook's page gets: a fresh kernel, nothing executed in it."""
    env = {
        "NBFLOW_HOME": str(tmp_path / "store"),
        "JPY_SESSION_NAME": str(tmp_path / "reopened.ipynb"),
    }

    def kernel(cells: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], str | None]:
        return kernel_messages(
            tmp_path,
            cells,
            env=env,
            settle=2,
            probe="'nbflow.jupyter.magics' in __import__('sys').modules",
        )

    kernel(
        [
            ("c-load", "%load_ext nbflow"),
            ("c-rows", "%%task\nrows = [1, 2]"),
            ("c-bad", "%%task bad\nz = sum(rows) / 0"),
        ]
    )
    ids = _encoded(["c-rows", "c-bad", "c-other"])
    code = f'__import__("nbflow.jupyter.lab", fromlist=["resend"]).resend(get_ipython(), "{ids}")'
    messages, magics = kernel([("", code)])
    assert magics == "False"  # nothing heavy loaded in a kernel that only shows badges
    opened = [m for m in messages if m["msg_type"] == "comm_open"]
    assert [m["content"]["data"] for m in opened] == [{"type": "reset"}]
    (sent,) = [m["content"]["data"] for m in messages if m["msg_type"] == "comm_msg"]
    assert {c["cell_id"]: (c["task"], c["state"]) for c in sent["cells"]} == {
        "c-rows": ("rows", "success"),
        "c-bad": ("bad", "failed"),
    }
