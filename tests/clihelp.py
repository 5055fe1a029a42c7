"""Helpers of the command-line tests: the real console script, in a subprocess."""

import os
import pathlib
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time

NBFLOW = pathlib.Path(sys.executable).with_name("nbflow")
# Anything but newline: escape sequences, carriage returns, tabs, backspaces.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def cli_env(tmp_path, home=None, **extra):
    """Our environment without the test's private store (a kernel would otherwise use
    it instead of the store beside the notebook), Jupyter's files kept in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"}
    jupyter = tmp_path / "jupyter"
    for sub in ("config", "data", "runtime", "ipython"):
        (jupyter / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_DATA_DIR=str(jupyter / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        IPYTHONDIR=str(jupyter / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    if home is not None:
        env["NBFLOW_HOME"] = str(home)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def nbflow(*args, cwd, env, timeout=180):
    """Run ``nbflow ARGS`` to its end; the completed process (text output)."""
    return subprocess.run(
        [str(NBFLOW), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args, cwd, env):
    """``nbflow ARGS`` started, not waited for."""
    return subprocess.Popen(
        [str(NBFLOW), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(check, timeout=60.0, what="the condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def interrupt(proc, timeout=60):
    """SIGINT to the process (as Ctrl-C would), then its output and exit status."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by its parent yet) no longer runs.
    stat = pathlib.Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def history_rows(home, sql, args=()):
    """Rows of the run history at ``home`` (read directly, as another program would)."""
    with sqlite3.connect(str(home / "history.sqlite")) as conn:
        return conn.execute(sql, args).fetchall()


def task_states(home, run_id):
    rows = history_rows(
        home, "SELECT name, state FROM task_rows WHERE run_id = ? AND mapped = 0", (run_id,)
    )
    return dict(rows)


def latest_runs(home, count=1):
    return history_rows(
        home, "SELECT id, flow, state FROM runs ORDER BY start DESC LIMIT ?", (count,)
    )


def in_terminal(*args, cwd, env, timeout=120):
    """Run ``nbflow ARGS`` on a pseudo-terminal; its exit status and all it drew."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(NBFLOW), *map(str, args)],
        cwd=cwd,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    deadline = time.time() + timeout
    # poll, not select: a long test session may hold more than 1024 descriptors.
    poller = select.poll()
    poller.register(leader, select.POLLIN)
    while time.time() < deadline:
        ready = poller.poll(1000)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not data:
            break
        chunks.append(data)
    status = proc.wait(timeout=30)
    os.close(leader)
    return status, b"".join(chunks).decode(errors="replace")
