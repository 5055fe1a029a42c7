"""The webhook notifier, against a real HTTP server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from nbflow import Flow, NbflowError, task
from nbflow.notify import webhook


@pytest.fixture
def server():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/hook", received
    httpd.shutdown()


def test_webhook_posts_a_json_summary_of_a_failed_task_and_of_the_flow(server):
    url, received = server

    @task(cache=False, on_failure=webhook(url))
    def explode():
        raise ValueError("boom")

    with Flow("notify-demo", on_failure=webhook(url)) as flow:
        explode()
    run = flow.run(executor="sequential")
    assert not run.ok
    kinds = {body["kind"]: body for _, body in received}
    assert {ctype for ctype, _ in received} == {"application/json"}
    assert kinds["task"]["task"] == "explode"
    assert kinds["task"]["error"] == "ValueError: boom"
    assert kinds["task"]["state"] == "failed"
    assert kinds["flow"]["flow"] == "notify-demo"
    assert kinds["flow"]["state"] == "failed"
    assert kinds["flow"]["failed"][0]["task"] == "explode"


def test_webhook_that_cannot_connect_does_not_change_the_run(caplog):
    @task(cache=False, on_success=webhook("http://127.0.0.1:9/nothing-listens", timeout=1))
    def fine():
        return 7

    with Flow("notify-down") as flow:
        node = fine()
    run = flow.run(executor="sequential")
    assert run.ok and run.result(node) == 7
    assert "webhook" in caplog.text


def test_webhook_rejects_a_url_that_is_not_http():
    with pytest.raises(NbflowError, match="needs an http:// or https:// URL"):
        webhook("ftp://example.org")
