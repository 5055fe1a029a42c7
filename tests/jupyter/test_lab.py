"""The kernel side of the JupyterLab extension: cell-level states, batched."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from kernelhelp import kernel_messages

from nbflow import Flow, task
from nbflow.jupyter.lab import INTERVAL, LabChannel


@task(cache=False)
def inc(x: int) -> int:
    return x + 1


@task(cache=False)
def total(xs: list[int]) -> int:
    return sum(xs)


@task(cache=False, retries=2)
def boom() -> None:
    raise ValueError("no")


class Recorder:
    """Collects what the channel delivers, with the time of each message."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), message))

    def last_states(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for _, message in self.messages:
            for cell in message["cells"]:
                out[cell["cell_id"]] = cell
        return out


def cells_of(flow_name: str):  # type: ignore[no-untyped-def]
    return lambda flow, name: f"cell:{name}" if flow == flow_name else None


@pytest.fixture(autouse=True)
def _store(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_HOME", str(tmp_path / "store"))


def test_a_thousand_task_run_sends_few_messages_and_every_final_state() -> None:
    sink = Recorder()
    channel = LabChannel(cells_of("lab-wide"), send=sink)
    try:
        with Flow("lab-wide") as flow:
            nodes = [inc(i) for i in range(1000)]
        start = time.monotonic()
        run = flow.run(executor="threads")
        took = time.monotonic() - start
        assert run.ok
    finally:
        channel.close()
    states = sink.last_states()
    assert len(states) == 1000
    assert {c["state"] for c in states.values()} == {"success"}
    assert all(c["duration"] is not None for c in states.values())
    assert states[f"cell:{flow.name_of(nodes[0])}"]["task"] == flow.name_of(nodes[0])
    # at most one message per interval (plus the final flush), never one per event
    assert len(sink.messages) <= took / INTERVAL + 3
    assert channel.messages == len(sink.messages)


def test_messages_are_at_least_an_interval_apart_except_the_final_one() -> None:
    @task(cache=False)
    def slow(i: int) -> int:
        time.sleep(0.02)
        return i

    sink = Recorder()
    channel = LabChannel(cells_of("lab-slow"), send=sink)
    try:
        with Flow("lab-slow") as flow:
            for i in range(30):
                slow(i)
        flow.run(executor="threads", max_workers=2)
    finally:
        channel.close()
    times = [t for t, _ in sink.messages]
    assert len(times) >= 3
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]
    assert all(g >= INTERVAL * 0.9 for g in gaps), gaps


def test_a_mapped_task_is_one_cell_with_its_children_counted() -> None:
    sink = Recorder()
    channel = LabChannel(cells_of("lab-map"), send=sink)
    try:
        with Flow("lab-map") as flow:
            m = inc.map(range(25))
            t = total(m)
        run = flow.run()
    finally:
        channel.close()
    states = sink.last_states()
    assert set(states) == {f"cell:{flow.name_of(m)}", f"cell:{flow.name_of(t)}"}
    mapped = states[f"cell:{flow.name_of(m)}"]
    assert (mapped["state"], mapped["done"], mapped["total"]) == ("success", 25, 25)
    assert states[f"cell:{flow.name_of(t)}"]["total"] is None
    assert run.result(t) == sum(range(1, 26))


def test_a_failed_task_reports_its_attempts_and_retries() -> None:
    sink = Recorder()
    channel = LabChannel(cells_of("lab-fail"), send=sink)
    try:
        with Flow("lab-fail") as flow:
            b = boom()
        run = flow.run(executor="sequential")
    finally:
        channel.close()
    final = sink.last_states()[f"cell:{flow.name_of(b)}"]
    assert not run.ok
    assert (final["state"], final["attempts"], final["retries"]) == ("failed", 3, 2)


def test_runs_of_other_flows_are_not_sent() -> None:
    sink = Recorder()
    channel = LabChannel(cells_of("lab-mine"), send=sink)
    try:
        with Flow("lab-other") as flow:
            inc(1)
        flow.run()
    finally:
        channel.close()
    assert sink.messages == []


def test_a_failing_sender_is_logged_and_the_run_is_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(message: dict[str, Any]) -> None:
        raise OSError("comm closed")

    channel = LabChannel(cells_of("lab-broken"), send=broken)
    try:
        with Flow("lab-broken") as flow:
            n = inc(1)
        run = flow.run()
    finally:
        channel.close()
    assert run.result(n) == 2
    assert "could not send task states" in caplog.text


def _kernel_messages(tmp_path: Any, cells: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Run ``(cell_id, code)`` cells in a real kernel as JupyterLab sends them; return
    the iopub messages of the ``nbflow`` comm."""
    messages, _ = kernel_messages(tmp_path, cells, env={"NBFLOW_HOME": str(tmp_path / "store")})
    return messages


def test_a_kernel_sends_task_states_by_jupyterlab_cell_id(tmp_path: Any) -> None:
    messages = _kernel_messages(
        tmp_path,
        [
            ("c-load", "%load_ext nbflow"),
            ("c-x", "%%task\nx = 2"),
            ("c-y", "%%task\ny = x * 10"),
            ("c-bad", "%%task bad\nz = y / 0"),
        ],
    )
    opened = [m for m in messages if m["msg_type"] == "comm_open"]
    assert len(opened) == 1
    assert opened[0]["content"]["target_name"] == "nbflow"
    final: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m["msg_type"] == "comm_msg":
            for cell in m["content"]["data"]["cells"]:
                final[cell["cell_id"]] = cell
    assert {k: v["state"] for k, v in final.items()} == {
        "c-x": "success",
        "c-y": "success",
        "c-bad": "failed",
    }
    assert final["c-bad"]["task"] == "bad"
    assert final["c-y"]["task"] == "y"
