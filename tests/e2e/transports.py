"""One device registering with a real in-process devprov server (tests/mqtt/conftest.py
LocalServer) over each of DPS's three device transports, as an SDK does, each ending in one
:class:`Result` so that the same scenario can be compared across them
(tests/e2e/test_one_decision_path.py).

- HTTPS: ``PUT .../register`` then ``GET .../operations/{operationId}`` until decided.
- MQTT: CONNECT (user name and SAS token as password), SUBSCRIBE, register, poll.
- AMQP: the AMQP header (X.509) or SASL PLAIN (SAS token), a receiver then a sender link at
  ``{idScope}/registrations/{registrationId}``, register and poll messages (docs/amqp.md).

A refusal is a :class:`Result` too: the DPS error code the transport carried back, when it
carries one (an MQTT CONNACK carries none).
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devprov.amqp.application import Message
from devprov.amqp.frames import Attach, Rejected
from devprov.core.sas import build_sas_token
from tests.amqp.client import AmqpClient
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.mqtt.conftest import LocalServer

API = "api-version=2019-03-31"
POLLS = 20  # devprov decides during the register: one poll is the rule, this the limit


@dataclass(frozen=True)
class Credentials:
    """What the device proves itself with: a chain and key (X.509), or a SAS token."""

    registration_id: str
    chain: Path | None = None
    key: Path | None = None
    sas_token: str | None = None

    def context(self, ca_file: Path) -> ssl.SSLContext:
        return tls_context(ca_file, self.chain, self.key)


@dataclass(frozen=True)
class Result:
    """How a registration ended: ``status`` is the final operation's status (``assigned``,
    ``disabled``, ``failed``) with its ``state``, or ``refused`` with ``error_code``, DPS's code
    when the transport carried one back."""

    status: str
    state: dict[str, Any] | None = None
    error_code: int | None = None


Register = Callable[[LocalServer, Credentials], Result]


def _final(answer: dict[str, Any], poll: Callable[[str], dict[str, Any]]) -> Result:
    """Poll a register's answer until it is decided."""
    for _ in range(POLLS):
        if answer.get("status") != "assigning":
            return Result(answer["status"], answer.get("registrationState"))
        answer = poll(answer["operationId"])
    raise AssertionError(f"still assigning after {POLLS} polls: {answer}")


def over_https(server: LocalServer, device: Credentials) -> Result:
    rid = device.registration_id
    base = f"https://localhost:{server.https_port}/{server.scope}/registrations/{rid}"
    headers = {"Authorization": device.sas_token} if device.sas_token else {}
    with httpx.Client(verify=device.context(server.ca_file), headers=headers) as client:
        first = client.put(f"{base}/register?{API}", json={"registrationId": rid})
        if first.status_code >= 400:
            return Result("refused", error_code=first.json()["errorCode"])

        def poll(operation_id: str) -> dict[str, Any]:
            answer = client.get(f"{base}/operations/{operation_id}?{API}")
            answer.raise_for_status()
            return dict(answer.json())

        return _final(first.json(), poll)


def over_mqtt(server: LocalServer, device: Credentials) -> Result:
    rid = device.registration_id
    with RawClient(server.mqtt_port, device.context(server.ca_file)) as client:
        connack = client.connect(server.scope, rid, password=device.sas_token)
        if connack.return_code != 0:
            return Result("refused")
        client.subscribe()
        first = client.register(rid)
        if status(first) >= 400:
            return Result("refused", error_code=body(first)["errorCode"])
        return _final(body(first), lambda operation_id: body(client.poll(operation_id)))


def over_amqp(server: LocalServer, device: Credentials) -> Result:
    rid = device.registration_id
    address = f"{server.scope}/registrations/{rid}"
    sasl = None if device.sas_token is None else ("PLAIN", address, device.sas_token)
    context = device.context(server.ca_file)
    with AmqpClient.connect("localhost", server.amqp_port, context, sasl=sasl) as client:
        client.open()
        client.begin()
        for attach in (client.attach_receiver, client.attach_sender):
            assert isinstance(attach(address, {"com.microsoft:api-version": "2019-03-31"}), Attach)

        def ask(properties: dict[str, Any], data: bytes) -> dict[str, Any] | Rejected:
            correlation = str(uuid.uuid4())
            message = Message(data, properties, correlation_id=correlation)
            outcome = client.send(message, address=address)
            if isinstance(outcome, Rejected):
                return outcome
            answer = client.receive()
            assert answer.correlation_id == correlation
            return dict(json.loads(answer.body))

        register = {"iotdps-operation-type": "iotdps-register", "iotdps-forceRegistration": False}
        first = ask(register, json.dumps({"registrationId": rid}).encode())
        if isinstance(first, Rejected):
            assert first.error is not None and first.error.description is not None
            return Result("refused", error_code=json.loads(first.error.description)["errorCode"])

        def poll(operation_id: str) -> dict[str, Any]:
            properties = {
                "iotdps-operation-type": "iotdps-get-operationstatus",
                "iotdps-operation-id": operation_id,
            }
            answer = ask(properties, b"")
            assert isinstance(answer, dict), answer
            return answer

        return _final(first, poll)


TRANSPORTS: dict[str, Register] = {"https": over_https, "mqtt": over_mqtt, "amqp": over_amqp}


def sas_token_for(server: LocalServer, registration_id: str, key: str, lifetime: int) -> str:
    """A device SAS token for ``registration_id``, valid for ``lifetime`` seconds from now (in
    the past when negative)."""
    resource = f"{server.scope}/registrations/{registration_id}"
    return build_sas_token(key, resource, int(time.time()) + lifetime, None)
