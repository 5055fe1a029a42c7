"""A kernel killed in the middle of ``%flow run``: a new kernel's ``%flow retry`` runs
the cells that never finished (a real kernel, killed with SIGKILL)."""

from __future__ import annotations

import os
import queue
import signal
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext nbflow",
    "%%task --lazy\nx = 1",
    "%%task --lazy\nimport pathlib, time\npathlib.Path('started').write_text('1')\n"
    "while not pathlib.Path('go').exists():\n    time.sleep(0.05)\ny = x + 1",
    "%%task --lazy\nz = y * 10",
]


class Kernel:
    """A real python3 kernel in ``folder`` with its own nbflow store."""

    def __init__(self, folder: Path) -> None:
        from jupyter_client.manager import KernelManager

        env = {**os.environ, "NBFLOW_HOME": str(folder / "store")}
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(folder), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def send(self, code: str) -> str:
        return self.kc.execute(code, stop_on_error=False)

    def run(self, code: str, timeout: float = 120) -> str:
        """Execute ``code``; return its stdout and error text."""
        msg_id = self.send(code)
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m: dict[str, Any] = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = m["msg_type"], m["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                out.append(f"{content['ename']}: {content['evalue']}")
            elif kind in ("display_data", "execute_result"):
                out.append(content["data"].get("text/plain", ""))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
        raise TimeoutError(f"no reply to {code!r}")

    def close(self, kill: bool = False) -> None:
        self.kc.stop_channels()
        if kill:
            self.km.signal_kernel(signal.SIGKILL)
        self.km.shutdown_kernel(now=True)


def test_retry_after_the_kernel_was_killed_mid_run_reruns_the_unfinished_cells(tmp_path):
    first = Kernel(tmp_path)
    try:
        for code in CELLS:
            first.run(code)
        first.send("%flow run --executor sequential")
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline, "the slow cell never started"
            time.sleep(0.05)
        time.sleep(0.5)  # the finished cell 'x' reaches the history
    finally:
        first.close(kill=True)

    (tmp_path / "go").write_text("1")
    second = Kernel(tmp_path)
    try:
        second.run("%load_ext nbflow")
        out = second.run("%flow retry --executor sequential")
        assert "Nothing to retry" not in out, out
        assert second.run("print(x, y, z)").split() == ["1", "2", "20"]
    finally:
        second.close()
