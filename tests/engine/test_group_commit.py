"""Results written in batches: a process killed half-way has lost no result it reported
finished, and a retry computes only what it did not report (a result made durable in
the last moments before the kill, whose history row was not written yet, is read back).

A real flow in a real process, killed with SIGKILL; the history and the store on disk
are what the next process finds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from nbflow import State

FLOW = textwrap.dedent(
    """
    import os, time
    from nbflow import Flow, task

    @task
    def work(i):
        with open(os.environ["WORK_LOG"], "a") as fh:
            fh.write(f"{i}\\n")
        time.sleep(0.01)
        return i * i

    with Flow("killed") as flow:
        nodes = [work(i) for i in range(300)]

    if __name__ == "__main__":
        flow.run(executor="threads", max_workers=2)
    """
)


def _finished(home: Path) -> set[str]:
    """Task runs the history reports finished (successfully) for the latest run."""
    with sqlite3.connect(home / "history.sqlite") as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY start DESC LIMIT 1").fetchone()
        rows = db.execute(
            "SELECT name FROM task_rows WHERE run_id = ? AND state = 'success'", (run_id,)
        ).fetchall()
    return {name for (name,) in rows}


def test_a_run_killed_half_way_lost_nothing_it_reported_and_a_retry_runs_only_the_rest(
    tmp_path, monkeypatch
):
    home = tmp_path / "home"
    log = tmp_path / "log"
    script = tmp_path / "killed.py"
    script.write_text(FLOW)
    env = dict(os.environ, NBFLOW_HOME=str(home), WORK_LOG=str(log))
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = len(log.read_text().split()) if log.exists() else 0
            if done >= 120:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the run did not get half-way in 60 s")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    ran_first = log.read_text().split()
    assert 120 <= len(ran_first) < 300  # killed half-way
    reported = _finished(home)
    assert 0 < len(reported) <= len(ran_first)

    # A new process: its retry reads every reported result back and runs the rest.
    log.unlink()
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    monkeypatch.setenv("WORK_LOG", str(log))
    namespace: dict[str, object] = {"__name__": "killed_flow"}
    exec(compile(FLOW, str(script), "exec"), namespace)
    from nbflow import load_run

    retry = load_run("latest").retry(flow=namespace["flow"], executor="threads")
    assert retry.ok
    ran_again = set(log.read_text().split())  # the indices of the tasks that ran
    nodes: list = namespace["nodes"]  # type: ignore[assignment]
    index_of = {retry[n].name: str(i) for i, n in enumerate(nodes)}
    again = {name for name, i in index_of.items() if i in ran_again}
    assert again.isdisjoint(reported)  # nothing reported finished was lost
    # Everything else ran, but results made durable in the last moments, whose history
    # rows the kill took, which are read back from the store.
    for name in set(index_of) - reported - again:
        assert retry[name].state is State.CACHED, name
    assert again, "the kill left work to do"
    assert [retry.result(n) for n in nodes] == [i * i for i in range(300)]
