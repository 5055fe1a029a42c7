"""Driving a real kernel as JupyterLab does: cells sent with their cell id, the
messages of the ``nbflow`` comm collected."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path
from typing import Any


def kernel_messages(
    folder: Path,
    cells: list[tuple[str, str]],
    *,
    env: dict[str, str] | None = None,
    settle: float = 3.0,
    probe: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Run ``(cell_id, code)`` cells in a new kernel started in ``folder`` (a cell with
    no id is sent silently, as the extension's own requests are); return the iopub
    messages of the ``nbflow`` comm that arrive within ``settle`` seconds of the last
    reply, and the ``text/plain`` value of the expression ``probe`` evaluated last."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(folder), env={**os.environ, **(env or {})})
    kc = km.client()
    kc.start_channels()
    comm: list[dict[str, Any]] = []
    value = None
    try:
        kc.wait_for_ready(timeout=60)
        for cell_id, code in cells:
            content = {
                "code": code,
                "silent": cell_id == "",
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": False,
            }
            msg = kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
            kc.shell_channel.send(msg)
            while (
                kc.get_shell_msg(timeout=60)["parent_header"].get("msg_id")
                != (msg["header"]["msg_id"])
            ):
                pass
        deadline = time.monotonic() + settle  # the last batch leaves within an interval
        while time.monotonic() < deadline:
            try:
                m = kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if m["msg_type"] in ("comm_open", "comm_msg"):
                comm.append(m)
        if probe is not None:
            reply = kc.execute_interactive("pass", user_expressions={"probe": probe}, timeout=30)
            value = reply["content"]["user_expressions"]["probe"]["data"]["text/plain"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return comm, value
