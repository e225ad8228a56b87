"""A failing custom allocation webhook whose URL carries a key and a password: the device gets
DPS's generic error, and every place an operator reads (the registration state through the
service API, the audit trail, the log) shows the URL with its key and userinfo redacted.

Before this was fixed the whole URL reached all of them, the device included.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.http.app import build_app
from devprov.http.webhook import HttpAllocationWebhook

HUB = "hub-secret.azure-devices.net"
GROUP_KEY = base64.b64encode(b"s" * 32).decode()
KEY = "fUnCtIoNkEy-SECRET"
PASSWORD = "pAsSwOrD-SECRET"
API = "api-version=2021-10-01"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        path = self.path.strip("/").split("?")[0]
        if path == "slow":
            time.sleep(1.0)
        status, headers = {
            "fail": (500, {}),
            "slow": (200, {}),
            "redirect": (302, {"Location": f"https://elsewhere.test/fn?code={KEY}"}),
        }[path]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the timeout case hangs up on purpose


@pytest.fixture(scope="module")
def webhook_port() -> Iterator[int]:
    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = open_container(tmp_path / "data", initialize=True)
    c.hubs.add("default", HUB, weight=1, apply_allocation_policy=True, actor="test")
    c.webhook = HttpAllocationWebhook(timeout=0.3)
    yield c
    c.engine.dispose()


def service(c: Container) -> dict[str, str]:
    key = c.directory.policies("default")[0].primary_key
    token = build_sas_token(key, "testserver", int(time.time()) + 600, "provisioningserviceowner")
    return {"Authorization": token}


def device(c: Container, registration_id: str) -> dict[str, str]:
    scope = c.directory.get("default").id_scope
    key = derive_device_key(GROUP_KEY, registration_id)
    resource = f"{scope}/registrations/{registration_id}"
    return {"Authorization": build_sas_token(key, resource, int(time.time()) + 600, "registration")}


def _url(authority: str, path: str) -> str:
    return f"http://fn-user:{PASSWORD}@{authority}/{path}?code={KEY}&clientId=default"


CASES = [
    pytest.param("{local}", "fail", 503430, "answered 500", id="webhook-answers-500"),
    pytest.param("127.0.0.1:9", "unreachable", 503430, "failed: ", id="webhook-unreachable"),
    pytest.param("{local}", "slow", 503430, "0.3 s deadline", id="webhook-too-slow"),
    pytest.param("{local}", "redirect", 503430, "devprov does not follow", id="webhook-redirects"),
    pytest.param("169.254.169.254", "meta-data", 403430, "was not called", id="webhook-refused"),
]


@pytest.mark.parametrize(("authority", "path", "stored_code", "reason"), CASES)
def test_a_failed_webhook_leaks_no_secret(
    container: Container,
    webhook_port: int,
    caplog: pytest.LogCaptureFixture,
    authority: str,
    path: str,
    stored_code: int,
    reason: str,
) -> None:
    url = _url(authority.format(local=f"127.0.0.1:{webhook_port}"), path)
    shown = f"http://<redacted>@{authority.format(local=f'127.0.0.1:{webhook_port}')}/{path}"
    shown += "?<redacted>"
    group = {
        "enrollmentGroupId": "hooked",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}},
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"},
    }
    scope = container.directory.get("default").id_scope
    with TestClient(build_app(container)) as client:
        put = client.put("/enrollmentGroups/hooked", json=group, headers=service(container))
        assert put.status_code == 200, put.text
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            registered = client.put(
                f"/{scope}/registrations/dev-1/register?{API}",
                json={"registrationId": "dev-1"},
                headers=device(container, "dev-1"),
            )
            operation = registered.json()["operationId"]
            polled = client.get(
                f"/{scope}/registrations/dev-1/operations/{operation}?{API}",
                headers=device(container, "dev-1"),
            )
            looked_up = client.post(
                f"/{scope}/registrations/dev-1?{API}",
                json={"registrationId": "dev-1"},
                headers=device(container, "dev-1"),
            )
            state = client.get(f"/registrations/dev-1?{API}", headers=service(container))
            queried = client.post(f"/registrations/hooked/query?{API}", headers=service(container))
        logged = [record.getMessage() for record in caplog.records]

    # The device: DPS's generic answer, in the register's answer (its outcome), in the operation
    # status, which is the same, and in the status lookup.
    assert registered.status_code == 200 and registered.json()["status"] == "failed"
    assert polled.status_code == 200 and polled.json() == registered.json()
    for answer in (registered.json()["registrationState"], looked_up.json()):
        assert answer["errorCode"] == 400207
        assert answer["errorMessage"] == "Custom allocation failed"

    # The operator: the precise reason, with the URL redacted, in the registration state...
    assert state.status_code == 200
    record = state.json()
    assert record["errorCode"] == stored_code and reason in record["errorMessage"]
    assert shown in record["errorMessage"]
    assert queried.json()[0]["errorMessage"] == record["errorMessage"]
    # ... the audit trail ...
    events = container.audit.events(registration_id="dev-1")
    (event,) = [e for e in events if e.action == "register"]
    assert event.reason and shown in event.reason and reason in event.reason
    # ... and the log.
    assert any(shown in line and reason in line for line in logged), logged

    everything = [
        registered.text,
        polled.text,
        looked_up.text,
        state.text,
        queried.text,
        *(json.dumps(e.reason) for e in events),
        *logged,
    ]
    for secret in (KEY, PASSWORD):
        assert not [text for text in everything if secret in text]
