"""The widget's static fallback: an SVG of the run's final state in the output, what a
saved notebook shows where the live widget cannot be drawn (GitHub, nbviewer,
nbconvert, a reopened notebook without widget state)."""

from __future__ import annotations

import re

import nbclient
import nbformat
import pytest

from nbflow import Flow, task
from nbflow.widget.model import FlowWidget
from nbflow.widget.picture import svg

WIDGET = "application/vnd.jupyter.widget-view+json"


@task(cache=False)
def one() -> int:
    return 1


@task(cache=False)
def broken(x: int) -> int:
    raise ValueError(f"broken at {x}")


@task(cache=False)
def after(x: int) -> int:
    return x


def _states(picture: str) -> dict[str, str]:
    return dict(re.findall(r'data-node="([^"]+)" data-state="([^"]+)"', picture))


def test_the_mimebundle_has_a_picture_of_the_states_and_a_line_of_text() -> None:
    with Flow("picture-flow") as flow:
        a = one()
        after(broken(a))
    run = flow.run(show=False)
    bundle = FlowWidget(run)._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle  # the view: in a kernel
    html = data["text/html"]
    assert _states(html) == {"one": "success", "broken": "failed", "after": "upstream_failed"}
    assert html.count("<svg") == 1 and "<style" not in html
    assert "#ff7b7b" in html  # the palette's failed colour, as an attribute
    assert data["text/plain"].startswith(f"nbflow run {run.id} of 'picture-flow': failed")
    assert "1 success" in data["text/plain"] and "object at" not in data["text/plain"]


def test_the_picture_fits_its_container_and_escapes_names() -> None:
    graph = {
        "nodes": [{"id": "a<b>", "kind": "mapped", "x": 80, "y": 33, "w": 150, "h": 58}],
        "edges": [],
        "width": 160,
        "height": 66,
    }
    picture = svg(graph, {"a<b>": {"state": "success", "total": 4, "done": 4}}, max_height="70vh")
    assert 'viewBox="-8 -8 176 82"' in picture
    assert "max-width:100%" in picture and "max-height:70vh" in picture
    assert "a&lt;b&gt;" in picture and "<b>" not in picture
    assert "4/4 done" in picture


@pytest.mark.slow
def test_a_saved_notebook_without_widget_state_keeps_the_final_picture(tmp_path) -> None:
    book = nbformat.v4.new_notebook()
    book.cells = [
        nbformat.v4.new_code_cell(src)
        for src in [
            "%load_ext nbflow",
            "%%task --lazy\nxs = [1, 2, 3]",
            "%%task --lazy\ntotal = sum(xs) / 0",
            "%flow run",
            (
                "from nbflow import Flow, task\n"
                "@task(cache=False)\n"
                "def inc(x):\n"
                "    return x + 1\n"
                "with Flow('saved-picture') as flow:\n"
                "    inc(inc(1))\n"
                "run = flow.run()"
            ),
        ]
    ]
    client = nbclient.NotebookClient(
        book,
        kernel_name="python3",
        timeout=120,
        allow_errors=True,
        store_widget_state=False,  # as JupyterLab saves by default
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    assert "widgets" not in book.metadata

    def shown(cell: nbformat.NotebookNode) -> dict[str, object]:
        (output,) = [o for o in cell.outputs if WIDGET in o.get("data", {})]
        return dict(output["data"])

    flow_run = shown(book.cells[3])
    assert _states(str(flow_run["text/html"])) == {"xs": "success", "total": "failed"}
    assert "failed" in str(flow_run["text/plain"])
    plain = shown(book.cells[4])
    assert _states(str(plain["text/html"])) == {"inc": "success", "inc-2": "success"}

    # GitHub and nbviewer render through nbconvert: the picture, not a Python repr.
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(book)
    assert page.count('class="nbflow-picture"') == 2
    assert 'data-node="total" data-state="failed"' in page
    assert "FlowWidget object at" not in page
