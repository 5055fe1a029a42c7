"""A real JupyterLab server (with Notebook 7) on 127.0.0.1, driven by Playwright in
Debian's Chromium. Everything the server and its kernels write stays in a temp dir."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Lab:
    """A running server: its URL, token and the folder notebooks are served from."""

    def __init__(self, url: str, token: str, root: Path) -> None:
        self.url = url
        self.token = token
        self.root = root

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        path = self.root / name
        nbformat.write(nb, path)
        return path

    def lab_url(self, name: str) -> str:
        # reset: a fresh workspace, so notebooks of earlier tests are not open behind it
        return f"{self.url}lab/tree/{name}?reset&token={self.token}"

    def notebook7_url(self, name: str) -> str:
        return f"{self.url}notebooks/{name}?token={self.token}"


@contextlib.contextmanager
def serve_lab(base: Path, python: str) -> Iterator[Lab]:
    """Run ``python -m jupyterlab`` (that environment's JupyterLab, extensions and
    kernel) on 127.0.0.1 with a token, every config and data dir under ``base``."""
    root = base / "notebooks"
    root.mkdir()
    env = dict(os.environ)
    for key, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
        ("NBFLOW_HOME", "nbflow-store"),
    ]:
        env[key] = str(base / sub)
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("JUPYTER_PATH", None)
    env.pop("VIRTUAL_ENV", None)
    # The news and update toast would cover the screenshots.
    settings = base / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = _free_port()
    token = secrets.token_hex(16)
    log = open(base / "server.log", "w")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(
        [
            python,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log.close()
                raise RuntimeError(
                    f"jupyter lab did not start: {(base / 'server.log').read_text()[-3000:]}"
                ) from None
            time.sleep(0.3)
    try:
        yield Lab(url, token, root)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab from the environment the tests run in."""
    with serve_lab(tmp_path_factory.mktemp("lab"), sys.executable) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed
    return report


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    if getattr(request.node, "failed_call", False):  # what the page showed when it failed
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"))
    context.close()


@pytest.fixture
def shot():
    """Save a screenshot of the page (or of one element) under tests/browser/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)

    def save(target, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        target.screenshot(path=str(path))
        return path

    return save


# -- driving JupyterLab ------------------------------------------------------------


def idle(page) -> None:
    """Wait until the status bar says the kernel is idle."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
        ".some(e => /Idle/.test(e.textContent))",
        timeout=60_000,
    )


def open_notebook(page, url: str) -> None:
    """Open a notebook and wait for its cells and an idle kernel (a cell run sent
    before can be dropped)."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    idle(page)
    page.wait_for_timeout(1000)


def palette(page, label: str) -> None:
    """Run a command by its label from JupyterLab's command palette."""
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+Shift+C")
    search = page.locator(".lm-CommandPalette-input")
    search.wait_for(timeout=10_000)
    search.fill(label)
    item = page.locator(".lm-CommandPalette-item", has_text=label).first
    item.wait_for(timeout=10_000)
    item.click()
