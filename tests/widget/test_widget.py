"""The widget's Python side: synced state, batching, layout, buttons, display rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import warnings

import pytest

from nbflow import Flow, NbflowError, NbflowWarning, case, get_logger, task
from nbflow.palette import COLOURS, ICONS
from nbflow.state import State
from nbflow.widget import in_frontend, live_listener, show_run
from nbflow.widget import layout as layout_module
from nbflow.widget.model import FlowWidget
from nbflow.widget.summary import CHILDREN_PAGE


def decoded(state: dict) -> dict:
    """A widget state with its JSON-text parts (``nodes_json``, ``graph_json``) parsed."""
    out = dict(state)
    for key in ("nodes", "graph"):
        if f"{key}_json" in out:
            out[key] = json.loads(out.pop(f"{key}_json"))
    return out


class Recorder:
    """Counts the comm messages a widget sends, serialised as a kernel would (JSON)."""

    def __init__(self, widget: FlowWidget) -> None:
        self.updates: list[dict] = []
        self.bytes = 0
        self._lock = threading.Lock()
        publish = widget.comm.publish_msg

        def record(msg_type, data=None, metadata=None, buffers=None, **keys):
            text = json.dumps(data)
            with self._lock:
                if msg_type == "comm_msg" and data and data.get("method") == "update":
                    self.updates.append(decoded(data["state"]))
                    self.bytes += len(text)
            return publish(msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

        widget.comm.publish_msg = record


def frontend_message(widget: FlowWidget, content: dict) -> None:
    """Deliver a message as the page's ``model.send(content)`` does, through the comm."""
    widget._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@task(retries=2, retry_delay=0)
def flaky_once(x, _seen=[]):  # noqa: B006 - the list remembers the first attempt
    if not _seen:
        _seen.append(1)
        raise OSError("first attempt fails")
    return x


@task
def double(x):
    get_logger().info("doubling %s", x)
    return 2 * x


@task(cache=False)
def boom(x):
    raise ValueError(f"cannot use {x}")


def test_after_a_run_the_synced_state_holds_every_node_with_its_state_attempts_and_cache_flag():
    with Flow("widget-final") as flow:
        a = double(1)
        b = flaky_once(a)
        xs = double.map([1, 2, 3])
        c = boom(b)
        double(c)
    first = FlowWidget(flow.run(show=False))
    assert set(first.nodes) == {"double", "flaky_once", "double-2", "boom", "double-3"}
    assert first.nodes["double"] == {
        "state": "success",
        "attempts": 1,
        "retries": 0,
        "duration": first.nodes["double"]["duration"],
        "cached": False,
    }
    assert first.nodes["flaky_once"]["attempts"] == 2
    assert first.nodes["flaky_once"]["retries"] == 2
    assert first.nodes["boom"]["state"] == "failed"
    assert first.nodes["double-3"]["state"] == "upstream_failed"
    assert first.nodes["double-2"]["total"] == 3
    assert first.nodes["double-2"]["done"] == 3
    assert first.nodes["double-2"]["breakdown"] == {"success": 3}
    assert first.header["state"] == "failed"
    assert first.header["counts"] == {"success": 5, "failed": 1, "upstream_failed": 1}
    assert first.header["can_retry"] is True
    assert first.header["can_cancel"] is False
    again = FlowWidget(flow.run(show=False))
    assert again.nodes["double"]["state"] == "cached"
    assert again.nodes["double"]["cached"] is True
    assert again.nodes["double-2"]["cached"] is True
    assert xs is not None


def test_palette_state_comes_from_the_one_palette_module():
    widget = FlowWidget()
    assert widget.palette["failed"] == {
        "colour": COLOURS[State.FAILED],
        "icon": "✗",
        "label": "failed",
    }
    assert {s: p["icon"] for s, p in widget.palette.items()} == {s.value: ICONS[s] for s in State}


def test_a_thousand_task_run_sends_a_few_batched_messages_and_always_the_final_state():
    @task(cache=False)
    def nap(i):
        time.sleep(0.002)
        return i

    with Flow("widget-batching") as flow:
        for i in range(1000):
            nap(i)
    widget = FlowWidget(flow)
    recorder = Recorder(widget)
    start = time.monotonic()
    run = flow.run(show=False, listeners=[widget.listener], max_workers=4)
    took = time.monotonic() - start
    assert run.ok
    # At most ~10 a second (plus the graph and the final state), never one per event.
    assert len(recorder.updates) <= took * 10 + 4, (len(recorder.updates), took)
    final = recorder.updates[-1]
    assert final["header"]["done"] is True
    assert final["header"]["counts"] == {"success": 1000}
    assert len(final["nodes"]) == 1000
    assert all(n["state"] == "success" for n in final["nodes"].values())
    # The layout went out when the widget was made; the run only changes states.
    assert widget.graph["engine"] == "dot"
    assert not any("graph" in u for u in recorder.updates)


def test_running_state_is_sent_while_the_run_is_still_going():
    release = threading.Event()

    @task(cache=False)
    def hold():
        release.wait(10)
        return 1

    with Flow("widget-live") as flow:
        hold()
    widget = FlowWidget(flow)
    recorder = Recorder(widget)
    run = flow.run(show=False, background=True, listeners=[widget.listener])
    wait_until(
        lambda: any(
            u.get("nodes", {}).get("hold", {}).get("state") == "running" for u in recorder.updates
        )
    )
    assert widget.header["can_cancel"] is True
    release.set()
    run.wait(10)
    wait_until(lambda: widget.header.get("done") is True)
    assert widget.nodes["hold"]["state"] == "success"
    assert widget.header["can_cancel"] is False


def test_a_ten_thousand_element_map_is_one_node_with_a_breakdown_and_paged_children():
    @task(cache=False)
    def keep_even(i):
        if i % 2:
            raise ValueError(f"{i} is odd")
        return i

    with Flow("widget-big-map") as flow:
        keep_even.map(range(10_000))
    widget = FlowWidget(flow)
    recorder = Recorder(widget)
    flow.run(show=False, listeners=[widget.listener])
    assert list(widget.nodes) == ["keep_even"]
    node = widget.nodes["keep_even"]
    assert (node["done"], node["total"]) == (10_000, 10_000)
    assert node["breakdown"] == {"success": 5_000, "failed": 5_000}
    assert recorder.bytes < 200_000  # no per-child entries in any message
    frontend_message(widget, {"type": "select", "node": "keep_even", "page": 3})
    assert widget.detail["pages"] == 10_000 // CHILDREN_PAGE
    assert [c["index"] for c in widget.detail["children"]][:2] == [150, 151]
    assert len(widget.detail["children"]) == CHILDREN_PAGE
    frontend_message(widget, {"type": "select", "node": "keep_even", "child": 151})
    assert widget.detail["name"] == "keep_even[151]"
    assert widget.detail["page"] == 3  # where its Back button returns
    assert widget.detail["error"] == "ValueError: 151 is odd"


def test_selecting_a_node_shows_its_logs_traceback_and_attempts():
    with Flow("widget-detail") as flow:
        b = boom(double(4))
        flaky_once(b)
    widget = FlowWidget(flow.run(show=False))
    frontend_message(widget, {"type": "select", "node": "double"})
    assert widget.detail["logs"][0].endswith("INFO doubling 4")
    frontend_message(widget, {"type": "select", "node": "boom"})
    assert widget.detail["state"] == "failed"
    assert "ValueError: cannot use 8" in widget.detail["traceback"]
    assert widget.detail["history"] == [
        {
            "number": 1,
            "state": "failed",
            "duration": widget.detail["history"][0]["duration"],
            "error": "ValueError: cannot use 8",
        }
    ]
    frontend_message(widget, {"type": "select", "node": None})
    assert widget.detail == {}


def test_rerun_failed_button_retries_in_the_background_and_the_widget_follows_the_new_run(
    tmp_path,
):
    switch = tmp_path / "switch.txt"
    switch.write_text("off")

    @task(cache=False)
    def read_switch():
        value = switch.read_text()
        if value != "on":
            raise RuntimeError(f"switch is {value}")
        return value

    with Flow("widget-retry") as flow:
        double(read_switch())
    first = flow.run(show=False)
    widget = FlowWidget(first)
    assert widget.header["can_retry"] is True
    switch.write_text("on")
    frontend_message(widget, {"type": "retry"})
    wait_until(lambda: widget.header["run_id"] != first.id)
    assert widget.header["run_id"] == widget.run.id
    wait_until(lambda: widget.header.get("done") is True)
    assert widget.run.ok
    assert widget.header["run_id"] == widget.run.id != first.id
    assert widget.nodes["read_switch"]["state"] == "success"
    assert widget.nodes["double"]["state"] == "success"
    assert widget.header["can_retry"] is False


def test_cancel_button_cancels_a_background_run():
    release = threading.Event()

    @task(cache=False)
    def wait_long(i=0):
        release.wait(10)

    with Flow("widget-cancel") as flow:
        wait_long()
        wait_long.map(range(3))
    run = flow.run(show=False, background=True, max_workers=1)
    widget = FlowWidget(run)
    frontend_message(widget, {"type": "cancel"})
    release.set()
    assert run.wait(10)
    wait_until(lambda: widget.header.get("done") is True)
    assert run.state is State.CANCELLED
    assert widget.header["state"] == "cancelled"


def test_case_conditions_are_drawn_as_their_own_kind_of_node():
    with Flow("widget-branches") as flow:
        x = double(1)
        with case(x, 2):
            double(10)
    kinds = {n["id"]: n["kind"] for n in FlowWidget(flow).graph["nodes"]}
    assert kinds == {"double": "task", "case(double == 2)": "case", "double-2": "task"}


def test_layout_uses_dot_once_per_graph_shape():
    with Flow("widget-layout") as flow:
        double(double(1))
    first = layout_module.layout(flow)
    assert first["engine"] == "dot"
    assert layout_module.layout(flow) is first  # cached: dot is not run again
    by_id = {n["id"]: n for n in first["nodes"]}
    assert by_id["double"]["y"] < by_id["double-2"]["y"]
    assert len(first["edges"]) == 1 and len(first["edges"][0]["points"]) >= 4


def test_without_dot_one_warning_says_how_to_install_it_and_a_layered_layout_is_drawn(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no graphviz on this PATH
    monkeypatch.setattr(layout_module, "_warned", False)
    monkeypatch.setattr(layout_module, "_cache", type(layout_module._cache)())
    with Flow("widget-no-dot") as flow:
        a = double(1)
        double(a)
        double(a)
    with pytest.warns(
        NbflowWarning, match="apt-get install graphviz.*conda install graphviz"
    ) as caught:
        graph = FlowWidget(flow).graph
    assert caught[0].filename == __file__  # points at the caller's line, not nbflow's
    assert graph["engine"] == "layered"
    rows = sorted({n["y"] for n in graph["nodes"]})
    assert len(rows) == 2
    with Flow("widget-no-dot-2") as other:
        double(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layout_module.layout(other)["engine"] == "layered"  # warned once only


def test_outside_a_notebook_nothing_is_displayed_even_with_show_true():
    with Flow("widget-plain") as flow:
        double(3)
    assert in_frontend() is False
    assert live_listener(flow) is None
    run = flow.run(show=True)
    assert run.ok
    assert show_run(run) is None
    assert run._repr_mimebundle_() == {"text/plain": repr(run)}


def test_a_run_outside_a_notebook_does_not_load_the_widget_libraries():
    code = (
        "import sys, nbflow\n"
        "@nbflow.task(cache=False)\n"
        "def one():\n"
        "    return 1\n"
        "with nbflow.Flow('light') as flow:\n"
        "    one()\n"
        "assert flow.run().ok\n"
        "print(sorted(m for m in ('anywidget', 'ipywidgets', 'IPython') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_terminal_ipython_is_not_a_notebook():
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    assert shell is not None
    assert in_frontend() is False


def test_entry_points_refuse_wrong_arguments_with_a_clear_message():
    with Flow("widget-errors") as flow:
        double(1)
    with pytest.raises(NbflowError, match="Expected show to be True, False or None, but got 'yes'"):
        flow.run(show="yes")
    with pytest.raises(NbflowError, match="Expected show to be True, False or None, but got 1"):
        flow.run(show=False).retry(show=1)
    with pytest.raises(NbflowError, match="FlowWidget shows a flow or a run"):
        FlowWidget(42)
    with pytest.raises(NbflowError, match="interval to be a number of seconds >= 0"):
        FlowWidget(flow, interval=-1)
    with pytest.raises(NbflowError, match=r"follow\(\) needs a FlowRun"):
        FlowWidget(flow).follow(flow)
    with pytest.raises(NbflowError, match=r"show_run\(\) needs a FlowRun"):
        show_run(flow)


def test_follow_switches_to_another_run_and_its_graph_and_the_sender_thread_ends():
    release = threading.Event()

    @task(cache=False)
    def gate():
        release.wait(10)
        return 1

    with Flow("widget-follow-a") as first_flow:
        double(5)
    with Flow("widget-follow-b") as second_flow:
        boom(gate())
    widget = FlowWidget(first_flow.run(show=False))
    assert widget.header["flow"] == "widget-follow-a"
    frontend_message(widget, {"type": "select", "node": "double"})
    assert widget.detail["name"] == "double"
    second = second_flow.run(show=False, background=True)
    assert widget.follow(second) is widget
    assert widget.run is second
    assert widget.header["run_id"] == second.id  # the page leaves the first run at once
    assert {n["id"] for n in widget.graph["nodes"]} == {"gate", "boom"}
    assert widget.detail == {}  # the selected node is not in this flow
    wait_until(lambda: widget.nodes.get("gate", {}).get("state") == "running")
    senders = [t for t in threading.enumerate() if t.name == f"nbflow-widget-{second.id}"]
    assert len(senders) == 1
    release.set()
    wait_until(lambda: widget.header.get("done") is True)
    assert widget.nodes["boom"]["state"] == "failed"
    senders[0].join(timeout=5)
    assert not senders[0].is_alive()


@task(cache=False, trigger="manual_only")
def approve(x):
    return x + 1


@pytest.mark.parametrize("background", [True, False])
def test_resume_button_of_a_paused_node_lets_it_run_and_the_widget_shows_the_end(background):
    with Flow("widget-resume") as flow:
        approve(double(1))
    run = flow.run(show=False, background=background)
    widget = FlowWidget(run)
    wait_until(lambda: widget.nodes.get("approve", {}).get("state") == "paused")
    frontend_message(widget, {"type": "select", "node": "double"})
    assert widget.detail["can_resume"] is False
    frontend_message(widget, {"type": "select", "node": "approve"})
    assert widget.detail["can_resume"] is True
    assert "Resume" in widget.detail["reason"]
    frontend_message(widget, {"type": "resume", "task": "approve"})
    assert run.wait(20)
    assert run.ok and run.result("approve") == 3
    wait_until(lambda: widget.header.get("done") is True)
    assert widget.nodes["approve"]["state"] == "success"
    assert widget.detail["state"] == "success" and widget.detail["can_resume"] is False
    assert widget.detail["reason"] is None  # no longer "waiting: resume it ..."
    assert widget.message == ""


def test_resume_of_a_task_that_does_not_wait_shows_why_in_the_widget():
    with Flow("widget-resume-wrong") as flow:
        approve(double(1))
    run = flow.run(show=False, background=True)
    widget = FlowWidget(run)
    wait_until(lambda: widget.nodes.get("approve", {}).get("state") == "paused")
    frontend_message(widget, {"type": "resume", "task": "double"})
    wait_until(lambda: widget.message != "")
    assert widget.message.startswith("Resume failed: Task 'double' is not waiting")
    run.cancel()
    assert run.wait(20)


@task(cache=False)
def talkative(x: int) -> int:
    print(f"processing {x}")
    print("  indented, as printed")
    get_logger().warning("careful with %s", x)
    return x


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
def test_the_detail_panel_shows_printed_lines_as_printed_and_log_records_with_time_and_level(
    executor,
):
    with Flow("widget-prints") as flow:
        talkative(3)
    widget = FlowWidget(flow.run(show=False, executor=executor))
    frontend_message(widget, {"type": "select", "node": "talkative"})
    printed, indented, logged = widget.detail["logs"]
    assert (printed, indented) == ("processing 3", "  indented, as printed")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} WARNING careful with 3", logged)
