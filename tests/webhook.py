"""A real custom allocation webhook for tests: a local HTTP server that records each request DPS
sends it and answers with a hub (and, if given, a payload for the device)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Webhook:
    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)  # the request bodies, in order
    asked: threading.Event = field(default_factory=threading.Event)  # set by the first request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/allocate"


@contextmanager
def allocation_webhook(
    hub: str,
    payload: dict[str, Any] | None = None,
    *,
    release: threading.Event | None = None,
    status: int = 200,
) -> Iterator[Webhook]:
    """With ``release``, each request is answered only once it is set (at most 30 s): a
    registration held at its webhook. ``status`` is the answer's (a failing webhook: 500)."""
    answer: dict[str, Any] = {"iotHubHostName": hub}
    if payload is not None:
        answer["payload"] = payload
    body = json.dumps(answer).encode()
    seen: list[dict[str, Any]] = []
    asked = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            asked.set()
            if release is not None:
                release.wait(30)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(int(server.server_address[1]), seen, asked)
    finally:
        if release is not None:
            release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
