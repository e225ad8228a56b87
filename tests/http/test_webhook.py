"""The custom allocation webhook client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devprov.http.webhook import (
    MAX_WEBHOOK_RESPONSE_BYTES,
    HttpAllocationWebhook,
    WebhookFailedError,
)

RECEIVED: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RECEIVED.append({"path": self.path, "body": body, "type": self.headers["Content-Type"]})
        behaviour = self.path.strip("/").split("?")[0]
        if behaviour == "slow":
            time.sleep(1.0)
        status, payload = {
            "ok": (200, json.dumps({"iotHubHostName": "hub-a"}).encode()),
            "error": (500, b"{}"),
            "garbage": (200, b"not json"),
            "huge": (200, b'{"x": "' + b"a" * MAX_WEBHOOK_RESPONSE_BYTES + b'"}'),
            "slow": (200, b"{}"),
        }[behaviour]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the timeout case hangs up on purpose; the server's broken pipe is expected


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_posts_json_and_returns_the_answer(base_url: str) -> None:
    RECEIVED.clear()
    answer = HttpAllocationWebhook().call(
        f"{base_url}/ok?code=secret", {"deviceRuntimeContext": {"registrationId": "d1"}}
    )
    assert answer == {"iotHubHostName": "hub-a"}
    (request,) = RECEIVED
    assert request["path"] == "/ok?code=secret" and request["type"] == "application/json"
    assert request["body"] == {"deviceRuntimeContext": {"registrationId": "d1"}}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("error", "answered 500", id="fail/status"),
        pytest.param("garbage", "invalid JSON", id="fail/not-json"),
        pytest.param("huge", "too large", id="fail/too-large"),
        pytest.param("slow", "failed", id="fail/timeout"),
    ],
)
def test_failures_are_devprov_errors(base_url: str, path: str, message: str) -> None:
    with pytest.raises(WebhookFailedError, match=message):
        HttpAllocationWebhook(timeout=0.3).call(f"{base_url}/{path}", {})


def test_unreachable_webhook() -> None:
    with pytest.raises(WebhookFailedError):
        HttpAllocationWebhook(timeout=1).call("http://127.0.0.1:9/nothing", {})
