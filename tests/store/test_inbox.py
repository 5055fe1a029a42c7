"""Resuming a paused task from another process: ``nbflow resume`` and the run's inbox."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
from clihelp import cli_env, nbflow, wait_for

from nbflow import Flow, NbflowError, State, task
from nbflow.store.cache import open_store
from nbflow.store.inbox import paused_tasks, request_resume


@task(cache=False)
def prepare():
    return 1


@task(cache=False, trigger="manual_only")
def deploy(x):
    return x + 1


def _paused_run():
    with Flow("gate") as flow:
        out = deploy(prepare())
    run = flow.run(background=True)
    home = open_store().path
    wait_for(lambda: paused_tasks(home, run.id) == ["deploy"], 20, "the task to be listed")
    return run, out, home


def test_a_request_in_the_store_resumes_a_paused_task_of_a_background_run():
    run, out, home = _paused_run()
    assert run.state is State.PAUSED
    assert "nbflow resume" in run["deploy"].reason
    assert request_resume(home, run.id, "deploy", timeout=20) is True
    assert run.wait(20) and run.ok and run.result(out) == 2
    assert paused_tasks(home, run.id) == []


def test_a_request_for_a_task_that_does_not_wait_names_those_that_do():
    run, _, home = _paused_run()
    try:
        with pytest.raises(NbflowError, match=r"'prepare' of run .*\(tasks waiting: 'deploy'\)"):
            request_resume(home, run.id, "prepare")
    finally:
        run.cancel()
    assert run.wait(20) and run["deploy"].state is State.CANCELLED
    wait_for(lambda: paused_tasks(home, run.id) == [], 20, "the list to be cleared")


def test_a_foreground_run_that_stopped_paused_is_driven_on_when_resumed_from_the_store():
    with Flow("gate-fg") as flow:
        out = deploy(prepare())
    run = flow.run(executor="sequential")
    assert run.state is State.PAUSED and not run.done
    home = open_store().path
    wait_for(lambda: paused_tasks(home, run.id) == ["deploy"], 20, "the task to be listed")
    assert request_resume(home, run.id, "deploy", timeout=20)
    assert run.wait(20) and run.result(out) == 2


SCRIPT = textwrap.dedent(
    """
    import sys
    from nbflow import Flow, task

    @task(cache=False)
    def prepare():
        return 20

    @task(cache=False, trigger="manual_only")
    def approve(x):
        return x + 1

    with Flow("approval") as flow:
        out = approve(prepare())
    run = flow.run(background=True, executor="processes")
    print(run.id, flush=True)
    run.wait(120)
    print(run.state.value, run.result(out), flush=True)
    """
)


def test_nbflow_resume_lets_a_paused_task_of_a_run_in_another_process_go_on(tmp_path):
    (tmp_path / "approval.py").write_text(SCRIPT)
    env = cli_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "approval.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        run_id = proc.stdout.readline().strip()
        home = tmp_path / ".nbflow"
        wait_for(lambda: paused_tasks(home, run_id) == ["approve"], 60, "the task to pause")
        shown = nbflow("show", run_id[:8], cwd=tmp_path, env=env)
        assert f"run {run_id} of flow 'approval': running" in shown.stdout
        wrong = nbflow("resume", run_id, "prepare", cwd=tmp_path, env=env)
        assert wrong.returncode == 2
        assert "Task 'prepare' of run" in wrong.stderr and "waiting: 'approve'" in wrong.stderr
        out = nbflow("resume", run_id[:8], "approve", "--path", tmp_path, cwd="/", env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"Resumed task 'approve' of run {run_id}."
        assert proc.stdout.readline().split() == ["success", "21"]
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ended = nbflow("resume", run_id, "approve", cwd=tmp_path, env=env)
    assert ended.returncode == 2
    assert ended.stderr.startswith(f"nbflow: error: Run '{run_id}' has ended (success)")


def test_nbflow_resume_of_an_unknown_run_is_a_usage_error(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / ".nbflow").mkdir()
    open_store(tmp_path / ".nbflow")
    from nbflow.store.history import open_history

    open_history(tmp_path / ".nbflow")
    out = nbflow("resume", "nope", "approve", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert out.stderr.startswith("nbflow: error: No run 'nope' in the history")


def test_resume_waits_for_the_run_and_says_so_when_it_does_not_come(tmp_path):
    from nbflow.store.inbox import Inbox

    inbox = Inbox(tmp_path, "silent")
    inbox.sync(["approve"])  # listed, but nothing reads the requests
    began = time.monotonic()
    assert request_resume(tmp_path, "silent", "approve", timeout=0.3) is False
    assert time.monotonic() - began >= 0.3
    assert inbox.sync(["approve"]) == ["approve"]  # the request stayed
    inbox.close()
    assert os.path.exists(tmp_path / "history.sqlite")
