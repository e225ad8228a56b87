"""SIGTERM while a registration is in flight: the server stops accepting, the registration
finishes (its custom allocation webhook answers after the signal), the device is answered its
assignment, and the assignment is in the database once the server has exited. A registration
answered 202 assigning before the signal (its webhook slower than --register-wait) is settled
too before the server exits, under the operation id the device was given."""

from __future__ import annotations

import base64
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.sas import build_sas_token, derive_device_key
from tests.e2e.test_refusal_storage import scope_of
from tests.server import ServerProcess, running_server
from tests.webhook import allocation_webhook

pytestmark = pytest.mark.e2e

HUB = "hub-graceful.azure-devices.net"
GROUP_KEY = base64.b64encode(b"s" * 32).decode()


@contextmanager
def held_webhook() -> Iterator[tuple[int, threading.Event, threading.Event]]:
    """A webhook that answers only once released: (port, asked, release)."""
    release = threading.Event()
    with allocation_webhook(HUB, release=release) as webhook:
        yield webhook.port, webhook.asked, release


def listening(server: ServerProcess) -> bool:
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the connection reached the backlog of a listener that then closed.
        return False
    return True


def _register(server: ServerProcess, port: int, rid: str) -> httpx.Response:
    """A custom allocation group whose webhook is on ``port``, and ``rid`` registering in it."""
    args = server.cli_args()
    assert main(["hub", "add", HUB, *args]) == 0
    create = ["enrollment-group", "create", "held", "--primary-key", GROUP_KEY]
    custom = ["--allocation-policy", "custom", "--webhook-url", f"http://127.0.0.1:{port}/a"]
    assert main([*create, *custom, *args]) == 0
    scope = scope_of(server.data_dir)
    key = derive_device_key(GROUP_KEY, rid)
    token = build_sas_token(key, f"{scope}/registrations/{rid}", int(time.time()) + 600)
    context = ssl.create_default_context(cafile=str(server.ca_file))
    with httpx.Client(base_url=server.url, verify=context, timeout=60) as device:
        return device.put(
            f"/{scope}/registrations/{rid}/register?api-version=2021-06-01",
            json={"registrationId": rid},
            headers={"Authorization": token},
        )


def _stop_then_release(server: ServerProcess, release: threading.Event) -> None:
    """SIGTERM; once the listener is gone, the webhook answers; the server exits 0."""
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while listening(server):  # the signal is handled once the listener is gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    release.set()
    assert server.process.wait(timeout=30) == 0


def test_a_registration_in_flight_at_sigterm_completes_and_is_stored(tmp_path: Path) -> None:
    # A wait far longer than the test: the register is still waiting when the signal comes.
    wait = ["--register-wait", "20"]
    with (
        held_webhook() as (port, asked, release),
        running_server(tmp_path / "data", *wait) as server,
    ):
        answers: list[httpx.Response] = []
        device = threading.Thread(
            target=lambda: answers.append(_register(server, port, "in-flight"))
        )
        device.start()
        assert asked.wait(30), "the registration never reached its webhook"
        _stop_then_release(server, release)
        device.join(30)
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "assigned"
    answered = answer.json()["registrationState"]
    c = open_container(tmp_path / "data")
    try:
        state = c.registration_states.get("default", "in-flight")
    finally:
        c.engine.dispose()
    assert state.status.value == "assigned" and state.assigned_hub == HUB
    assert (answered["assignedHub"], answered["deviceId"]) == (HUB, state.device_id)


def test_a_registration_answered_assigning_at_sigterm_is_settled_before_the_exit(
    tmp_path: Path,
) -> None:
    wait = ["--register-wait", "0.1"]  # the webhook is held past it
    with (
        held_webhook() as (port, asked, release),
        running_server(tmp_path / "data", *wait) as server,
    ):
        answer = _register(server, port, "pending")
        assert answer.status_code == 202, answer.text
        operation_id = answer.json()["operationId"]
        assert asked.wait(30), "the registration never reached its webhook"
        _stop_then_release(server, release)
    c = open_container(tmp_path / "data")
    try:
        state = c.registration_states.get("default", "pending")
        with c.engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT id, status FROM operations WHERE registration_id = 'pending'"
            ).all()
    finally:
        c.engine.dispose()
    assert [tuple(row) for row in rows] == [(operation_id, "assigned")]
    assert state.status.value == "assigned" and state.assigned_hub == HUB
