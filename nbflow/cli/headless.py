"""A notebook executed headless with a real kernel (nbclient), followed through the history.

The kernel runs in the notebook's folder, so its ``%%task`` cells use the store beside
the notebook, exactly as in JupyterLab. Each task cell execution is a flow run that
the kernel records in the run history; this process polls that history (about ten
times a second) for the runs of its kernel and shows their tasks. Cells run in order
and an error does not stop the notebook (independent cells still run), as
``allow_errors`` does in nbclient.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbflow import settings
from nbflow.cli.progress import Board, clean
from nbflow.cli.source import UsageError, is_injected, is_task_cell
from nbflow.store.history import History

POLL = 0.1  # seconds between two reads of the history
GRACE = 15.0  # seconds an interrupted cell gets to end before the kernel is shut down


@dataclass
class NotebookOutcome:
    """What an execution left: the runs its kernel recorded and the cells that raised."""

    run_ids: list[str] = field(default_factory=list)
    raised: list[tuple[str, str]] = field(default_factory=list)  # (cell label, error)
    interrupted: bool = False
    timed_out: bool = False
    died: str | None = None  # the cell during which the kernel died


class NotebookExecution:
    """Execute ``book`` (already read, parameters injected) in a kernel started in
    ``folder`` with ``env``; ``tick`` is called after each poll of the history."""

    def __init__(
        self,
        book: Any,
        folder: pathlib.Path,
        env: dict[str, str],
        history: History,
        board: Board,
        tick: Callable[[], None],
        timeout: float | None = None,
    ) -> None:
        self.book = book
        self.folder = folder
        self.env = env
        self.history = history
        self.board = board
        self.tick = tick
        self.timeout = timeout
        self.outcome = NotebookOutcome()
        self._since = time.time() - 1.0
        self._after = 0
        self._pid: int | None = None
        self._interrupt_at: float | None = None
        self._runs: dict[str, None] = {}
        # The kernel's error replies by cell index: a cell rejected by a magic (a UsageError,
        # `%%task` without `%load_ext nbflow`) fails with no error output, only a reply.
        self._replies: dict[int, tuple[str, str]] = {}

    def execute(self) -> NotebookOutcome:
        """Run every cell; on SIGINT interrupt the kernel, then shut it down."""
        asyncio.run(self._drive())
        return self.outcome

    async def _drive(self) -> None:
        import nbclient
        from jupyter_client.kernelspec import NoSuchKernel
        from jupyter_client.manager import AsyncKernelManager
        from nbclient.exceptions import DeadKernelError

        # IPC sockets in a private folder: nothing listens on TCP, and the kernel has no
        # reason to warn that its traffic is unencrypted.
        sockets = tempfile.mkdtemp(prefix="nbflow-kernel-")
        km = AsyncKernelManager(
            kernel_name=self.book.metadata.get("kernelspec", {}).get("name", "python3"),
            transport="ipc",
            ip=os.path.join(sockets, "kernel"),
        )
        client = nbclient.NotebookClient(
            self.book,
            km=km,
            timeout=None,
            allow_errors=True,
            store_widget_state=True,
            resources={"metadata": {"path": str(self.folder)}},
            on_cell_error=self._on_cell_error,
        )
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {"env": self.env, "cwd": str(self.folder)}
        die_with_us = _die_with_parent()
        if die_with_us is not None:
            options["preexec_fn"] = die_with_us  # reaches the kernel's Popen
        try:
            setup = client.async_setup_kernel(**options)
            await setup.__aenter__()
        except NoSuchKernel as exc:
            shutil.rmtree(sockets, ignore_errors=True)
            raise UsageError(
                f"The notebook asks for the kernel '{exc.name}', which is not installed here. "
                "Install it, or change the notebook's kernel."
            ) from None
        except BaseException:
            shutil.rmtree(sockets, ignore_errors=True)
            raise
        if getattr(client, "_async_cleanup_kernel_future", None) is not None:
            self.outcome.interrupted = True  # Ctrl-C while the kernel started: nbclient stops it
        try:
            # nbclient's own SIGINT handler shuts the kernel down at once; interrupt it first.
            loop.add_signal_handler(signal.SIGINT, lambda: self._interrupt(client, loop))
            provisioner = getattr(client.km, "provisioner", None)
            process = getattr(provisioner, "process", None)
            self._pid = getattr(process, "pid", None)
            started = time.time()
            labels = _labels(self.book)
            for index, cell in enumerate(self.book.cells):
                if self.outcome.interrupted or self.outcome.timed_out:
                    break
                if cell.cell_type != "code":
                    continue
                if is_task_cell(cell):
                    self.board.note = f"running {labels[index]}: {_first_line(cell)}"
                else:
                    self.board.note = f"running {labels[index]}"
                count = client.code_cells_executed + 1
                job = asyncio.ensure_future(client.async_execute_cell(cell, index, count))
                while not job.done():
                    await asyncio.wait({job}, timeout=POLL)
                    self._poll()
                    if (
                        self.timeout is not None
                        and not self._interrupt_at
                        and time.time() - started > self.timeout
                    ):
                        self.outcome.timed_out = True
                        self._interrupt(client, loop)
                    if self._interrupt_at and time.time() - self._interrupt_at > GRACE:
                        job.cancel()
                        break
                if job.done() and not job.cancelled():
                    try:
                        job.result()
                    except DeadKernelError:
                        self.outcome.died = labels[index]
                        self.board.say(f"the kernel died while running {labels[index]}")
                        break
                self._note_errors(index, cell, labels[index])
            self.board.note = ""
            if self.outcome.interrupted or self.outcome.timed_out:
                # Let the interrupted task record its cancellation before the shutdown.
                await self._settle()
            if not self.outcome.died:
                client.set_widgets_metadata()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            try:
                await setup.__aexit__(None, None, None)
                # The kernel manager is ours (IPC), so nbclient leaves its shutdown to us.
                if client.kc is not None:
                    client.kc.stop_channels()
                if km.has_kernel:
                    await km.shutdown_kernel(now=bool(self.outcome.died))
            finally:
                shutil.rmtree(sockets, ignore_errors=True)
            self._poll()

    def _interrupt(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        if self._interrupt_at is not None:
            return
        self._interrupt_at = time.time()
        if not self.outcome.timed_out:
            self.outcome.interrupted = True
        self.board.say("interrupting the kernel")
        if self._pid is not None and os.name == "posix":
            # The kernel alone: jupyter_client signals its whole process group, and the
            # run's worker processes would each fail their task before the kernel could
            # cancel the run (which terminates them).
            os.kill(self._pid, signal.SIGINT)
        else:
            loop.create_task(_ensure(client.km.interrupt_kernel()))

    async def _settle(self) -> None:
        deadline = time.time() + GRACE
        while time.time() < deadline:
            if not any(run["state"] == "running" for run in self._poll()):
                return
            await asyncio.sleep(POLL)

    def _poll(self) -> list[dict[str, Any]]:
        """Show what the kernel recorded since the last poll; its runs, as recorded."""
        runs: list[dict[str, Any]] = []
        if self._pid is not None:
            runs, tasks = self.history.activity(self._pid, self._since, self._after)
            for run in runs:
                if run["id"] not in self._runs:
                    self._runs[run["id"]] = None
                    self.outcome.run_ids.append(run["id"])
                    if "flow '" not in self.board.title:
                        self.board.title += f", flow '{run['flow']}'"
            for row in tasks:
                self._after = max(self._after, row["rowid"])
                self.board.on_history_row(row)
        self.tick()
        return runs

    def _on_cell_error(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        content = execute_reply.get("content", {})
        self._replies[cell_index] = (content.get("ename", "Error"), content.get("evalue", ""))

    def _note_errors(self, index: int, cell: Any, label: str) -> None:
        errors = [
            (out.get("ename", "Error"), out.get("evalue", ""))
            for out in cell.get("outputs", [])
            if out.get("output_type") == "error"
        ]
        reply = self._replies.pop(index, None)
        if not errors and reply is not None:
            errors = [reply]
        for ename, evalue in errors:
            text = clean(f"{ename}: {evalue}")
            if is_task_cell(cell) and "`%%task` not found" in evalue:
                text += " Add a cell with %load_ext nbflow before the first %%task cell."
            self.outcome.raised.append((label + (" (%%task)" if is_task_cell(cell) else ""), text))
            self.board.say(f"{label} raised {text}")


PR_SET_PDEATHSIG = 1  # prctl(2) option


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, what the kernel process runs before it starts: have the system kill it
    when this command dies. Killed with SIGKILL, the command cannot shut its kernel
    down, and the orphaned kernel would finish the cell it runs (a %flow run: the whole
    notebook) with no one following it. Elsewhere, None.

    The signal follows the thread that starts the kernel: this command's main thread,
    which runs the event loop (``asyncio.run``) until the command ends."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here: nothing to load after fork
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the command died before the request took effect
            os._exit(1)

    return preexec


async def _ensure(result: Any) -> None:
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        await result


def _labels(book: Any) -> dict[int, str]:
    """``cell N`` numbered as in the source notebook (an injected cell has no number)."""
    labels: dict[int, str] = {}
    number = 0
    for index, cell in enumerate(book.cells):
        if is_injected(cell):
            labels[index] = "the injected parameters cell"
            continue
        number += 1
        labels[index] = f"cell {number}"
    return labels


def _first_line(cell: Any) -> str:
    return clean(cell.source.lstrip().splitlines()[0])[:60]


def kernel_env(path: pathlib.Path, extra: dict[str, str]) -> dict[str, str]:
    """The kernel's environment: ours, plus the notebook's path for its flow's name."""
    env = dict(os.environ)
    env.update(settings.environment(notebook=str(path.resolve())))
    env.update(extra)
    return env
