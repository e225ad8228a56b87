"""A register whose custom allocation webhook is slower than the register's wait
(``devprov serve --register-wait``), against a real in-process server (tests/mqtt/conftest.py
LocalServer) and a real webhook server (tests/webhook.py), over HTTPS, MQTT and AMQP.

A webhook that answers within the wait gives the outcome in the register's answer (200); one
held past it gives 202 ``assigning`` with the operation id and a retry-after, the polls read
``assigning`` until the webhook answers, then the outcome, under the same operation id, stored
once. A webhook that fails slowly is polled ``failed`` with DPS's error. A client that leaves
during the wait does not lose the registration, and ``--always-poll`` answers as before.

The wait is set short (the held webhook, not a clock, decides the order) or long (a webhook on
loopback answering at once), never raced.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from devprov.amqp.application import Message
from devprov.amqp.frames import Attach
from devprov.cli.main import main
from devprov.core.sas import derive_device_key
from devprov.service.device_answer import RETRY_AFTER_SECONDS
from tests.amqp.client import AmqpClient
from tests.e2e.transports import API, sas_token_for
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.mqtt.conftest import LocalServer, start_local_server, stop_local_server
from tests.webhook import Webhook, allocation_webhook

HUB = "hub-slow.azure-devices.net"
SHORT_WAIT = 0.1  # the webhook is held past it
LONG_WAIT = 20.0  # a webhook on loopback that answers at once is well within it
POLLS = 50  # at 0.1 s apart: the held webhook, once released, answers long before


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None


@dataclass(frozen=True)
class Device:
    """One device's connection: its register and its polls."""

    register: Callable[[], Answer]
    poll: Callable[[str], Answer]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    local = start_local_server(tmp_path_factory.mktemp("slow-webhook") / "data")
    try:
        assert local.cli("hub", "add", HUB) == 0
        yield local
    finally:
        stop_local_server(local)


@pytest.fixture(autouse=True)
def settings(server: LocalServer) -> Iterator[None]:
    yield
    server.container.register_wait = LONG_WAIT
    server.container.always_poll = False


def hooked_group(server: LocalServer, hook: Webhook) -> str:
    """A symmetric-key group whose allocation is ``hook``; its key, its own, so that the test's
    devices attest with this group and not an earlier test's (whose webhook is gone)."""
    key = base64.b64encode(os.urandom(32)).decode()
    create = ["enrollment-group", "create", f"g-{uuid.uuid4().hex[:8]}", "--primary-key", key]
    assert server.cli(*create, "--allocation-policy", "custom", "--webhook-url", hook.url) == 0
    return key


def token(server: LocalServer, rid: str, key: str) -> str:
    return sas_token_for(server, rid, derive_device_key(key, rid), 600)


@contextmanager
def over_https(server: LocalServer, rid: str, key: str) -> Iterator[Device]:
    base = f"https://localhost:{server.https_port}/{server.scope}/registrations/{rid}"
    context = tls_context(server.ca_file)
    headers = {"Authorization": token(server, rid, key)}
    with httpx.Client(verify=context, headers=headers, timeout=60) as client:

        def answer(response: httpx.Response) -> Answer:
            return Answer(
                response.status_code, response.json(), response.headers.get("retry-after")
            )

        def register() -> Answer:
            return answer(client.put(f"{base}/register?{API}", json={"registrationId": rid}))

        def poll(operation_id: str) -> Answer:
            return answer(client.get(f"{base}/operations/{operation_id}?{API}"))

        yield Device(register, poll)


@contextmanager
def over_mqtt(server: LocalServer, rid: str, key: str) -> Iterator[Device]:
    with RawClient(server.mqtt_port, tls_context(server.ca_file)) as client:
        assert client.connect(server.scope, rid, password=token(server, rid, key)).return_code == 0
        client.subscribe()

        def answer(message: Any) -> Answer:
            query = urllib.parse.parse_qs(message.topic.split("?", 1)[1])
            return Answer(status(message), body(message), query.get("retry-after", [None])[0])

        yield Device(lambda: answer(client.register(rid)), lambda op: answer(client.poll(op)))


@contextmanager
def over_amqp(server: LocalServer, rid: str, key: str) -> Iterator[Device]:
    address = f"{server.scope}/registrations/{rid}"
    sasl = ("PLAIN", address, token(server, rid, key))
    context = tls_context(server.ca_file)
    with AmqpClient.connect("localhost", server.amqp_port, context, sasl=sasl) as client:
        client.open()
        client.begin()
        for attach in (client.attach_receiver, client.attach_sender):
            assert isinstance(attach(address, {"com.microsoft:api-version": "2019-03-31"}), Attach)

        def ask(properties: dict[str, Any], data: bytes) -> Answer:
            correlation = str(uuid.uuid4())
            client.send(Message(data, properties, correlation_id=correlation), address=address)
            reply = client.receive()
            assert reply.correlation_id == correlation
            found = reply.application_properties
            retry = found.get("retry-after")
            document = json.loads(reply.body)
            # AMQP carries the operation's status, not an HTTP one (docs/amqp.md#messages).
            assert found["iotdps-status"] == document["status"]
            code = 202 if document["status"] == "assigning" else 200
            return Answer(code, document, None if retry is None else str(retry))

        def register() -> Answer:
            properties = {"iotdps-operation-type": "iotdps-register"}
            return ask(properties, json.dumps({"registrationId": rid}).encode())

        def poll(operation_id: str) -> Answer:
            properties = {
                "iotdps-operation-type": "iotdps-get-operationstatus",
                "iotdps-operation-id": operation_id,
            }
            return ask(properties, b"")

        yield Device(register, poll)


TRANSPORTS = {"https": over_https, "mqtt": over_mqtt, "amqp": over_amqp}


def operations_of(server: LocalServer, rid: str) -> list[tuple[str, str]]:
    """The stored operations of a device: (id, status)."""
    query = text("SELECT id, status FROM operations WHERE registration_id = :rid")
    with server.container.engine.connect() as connection:
        return [(row[0], row[1]) for row in connection.execute(query, {"rid": rid})]


def settled(device: Device, operation_id: str) -> Answer:
    """Poll until the operation is no longer assigning."""
    for _ in range(POLLS):
        answer = device.poll(operation_id)
        if answer.body["status"] != "assigning":
            return answer
        time.sleep(0.1)
    raise AssertionError(f"operation {operation_id} still assigning after {POLLS} polls")


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_webhook_within_the_wait_is_answered_with_the_outcome(
    server: LocalServer, transport: str
) -> None:
    server.container.register_wait = LONG_WAIT
    rid = f"fast-{transport}"
    with allocation_webhook(HUB) as hook:
        key = hooked_group(server, hook)
        with TRANSPORTS[transport](server, rid, key) as device:
            first = device.register()
    assert (first.status, first.retry_after) == (200, None), first
    assert first.body["status"] == "assigned", first.body
    assert first.body["registrationState"]["assignedHub"] == HUB
    assert operations_of(server, rid) == [(first.body["operationId"], "assigned")]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize(
    ("webhook_status", "outcome"),
    [pytest.param(200, "assigned", id="assigned"), pytest.param(500, "failed", id="failed")],
)
def test_a_webhook_slower_than_the_wait_is_polled_to_its_outcome(
    server: LocalServer, transport: str, webhook_status: int, outcome: str
) -> None:
    server.container.register_wait = SHORT_WAIT
    rid = f"slow-{outcome}-{transport}"
    release = threading.Event()
    with allocation_webhook(HUB, release=release, status=webhook_status) as hook:
        key = hooked_group(server, hook)
        with TRANSPORTS[transport](server, rid, key) as device:
            first = device.register()
            assert first.status == 202, first
            assert first.retry_after == str(RETRY_AFTER_SECONDS)
            operation_id = first.body["operationId"]
            assert first.body == {"operationId": operation_id, "status": "assigning"}
            assert operations_of(server, rid) == [(operation_id, "assigning")]
            meanwhile = device.poll(operation_id)
            assert (meanwhile.status, meanwhile.body) == (202, first.body)
            assert meanwhile.retry_after == str(RETRY_AFTER_SECONDS)
            release.set()
            final = settled(device, operation_id)
    assert (final.status, final.retry_after) == (200, None), final
    assert (final.body["operationId"], final.body["status"]) == (operation_id, outcome)
    state = final.body["registrationState"]
    if outcome == "assigned":
        assert state["assignedHub"] == HUB
    else:  # DPS's answer to a device whose webhook failed (docs/dps-wire.md)
        assert (state["errorCode"], state["errorMessage"]) == (400207, "Custom allocation failed")
    assert operations_of(server, rid) == [(operation_id, outcome)]  # one row, settled


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_always_poll_is_answered_assigning_and_the_first_poll_reads_the_outcome(
    server: LocalServer, transport: str
) -> None:
    server.container.always_poll = True
    server.container.register_wait = LONG_WAIT
    rid = f"always-{transport}"
    with allocation_webhook(HUB) as hook:
        key = hooked_group(server, hook)
        with TRANSPORTS[transport](server, rid, key) as device:
            first = device.register()
            assert (first.status, first.retry_after) == (202, str(RETRY_AFTER_SECONDS)), first
            assert first.body["status"] == "assigning"
            polled = device.poll(first.body["operationId"])
    assert polled.status == 200
    assert (polled.body["operationId"], polled.body["status"]) == (
        first.body["operationId"],
        "assigned",
    )


def test_a_client_that_leaves_during_the_wait_does_not_lose_its_registration(
    server: LocalServer,
) -> None:
    server.container.register_wait = LONG_WAIT
    rid = "leaves-early"
    release = threading.Event()
    with allocation_webhook(HUB, release=release) as hook:
        key = hooked_group(server, hook)
        request = (
            f"PUT /{server.scope}/registrations/{rid}/register?{API} HTTP/1.1\r\n"
            f"Host: localhost\r\nAuthorization: {token(server, rid, key)}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        context = tls_context(server.ca_file)
        with (
            socket.create_connection(("127.0.0.1", server.https_port)) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(request.encode())
            assert hook.asked.wait(30), "the registration never reached its webhook"
        # The client is gone; the webhook answers now.
        release.set()
        for _ in range(POLLS):
            stored = operations_of(server, rid)
            if stored and stored[0][1] != "assigning":
                break
            time.sleep(0.1)
    assert [status for _, status in stored] == ["assigned"]
    state = server.container.registration_states.get("default", rid)
    assert state.status.value == "assigned" and state.assigned_hub == HUB


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("-1", id="fail/negative"),
        pytest.param("21", id="fail/past-20"),
        pytest.param("soon", id="fail/not-a-number"),
    ],
)
def test_register_wait_takes_seconds_from_0_to_20(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--data-dir", str(tmp_path / "data"), "--register-wait", value])
    assert exited.value.code == 2
    assert f"{value} is not a number of seconds from 0 to 20" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
