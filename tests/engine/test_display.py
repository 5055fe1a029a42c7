"""The presenter seam: how runs are shown is asked of the registered presenter."""

import pytest

from nbflow import Flow, NbflowError, task
from nbflow.engine import display


@task(cache=False)
def one():
    return 1


class Recording:
    def __init__(self):
        self.shown = []

    def start_shown(self, flow, show, start, options):
        run = start(**options)
        self.shown.append((flow.name, show, run.ok))
        return run

    def mimebundle(self, run, include, exclude):
        return {"text/plain": f"shown {run.flow.name}"}


@pytest.fixture
def recording():
    presenter = Recording()
    previous = display.register_presenter(presenter)
    yield presenter
    display.register_presenter(previous)


def test_runs_and_retries_are_started_through_the_registered_presenter(recording):
    with Flow("shown") as flow:
        one()
    run = flow.run(show=None)
    again = run.retry(show=False)
    assert recording.shown == [("shown", None, True), ("shown", False, True)]
    assert again.ok and run._repr_mimebundle_() == {"text/plain": "shown shown"}


def test_the_plain_presenter_runs_without_showing_and_displays_text():
    with Flow("plain") as flow:
        one()
    previous = display.register_presenter(display.Plain())
    try:
        run = flow.run()
        assert run.ok and run._repr_mimebundle_() == {"text/plain": repr(run)}
    finally:
        display.register_presenter(previous)


def test_show_must_be_a_bool_or_none_whatever_the_presenter(recording):
    with Flow("bad") as flow:
        one()
    with pytest.raises(NbflowError, match="Expected show to be True, False or None"):
        flow.run(show="yes")
    assert recording.shown == []
