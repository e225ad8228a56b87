"""DPS's device API over AMQP, as the engine asks it (devprov.amqp.dps.DpsApplication) of a real
container (a real SQLite file, certificates from tests/factory.py): devices attached and
assigned, the register and operation status messages, the replies' properties, the refused
requests and DPS's error conditions. The attach's refusals are test_dps_attach.py's."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from devprov.amqp.application import AmqpError, Message, Reject, Reply, SaslIdentity
from devprov.amqp.dps import (
    ARGUMENT_ERROR,
    INTERNAL_ERROR,
    NOT_FOUND,
    THROTTLED,
    UNAUTHORIZED,
    amqp_error,
)
from devprov.bootstrap import Container
from devprov.core.error import StorageOverloadedError, StorageUnavailableError
from devprov.device_request import DeviceAnswer
from devprov.service.device_answer import UNAVAILABLE_RETRY_AFTER_SECONDS
from devprov.transport.stream import Peer
from tests.amqp.dps_device import (
    HUB,
    Session,
    address,
    described,
    key_group,
    plain,
    poll_message,
    register_message,
    x509_group,
    x509_peer,
)

# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tls", "websocket"])
def test_x509_group_device_is_assigned(container: Container, pki, transport: str) -> None:
    root, inter, leaf = pki
    x509_group(container, root)
    peer = x509_peer(leaf, inter, transport=transport)
    # rhea sends no SASL layer for an X.509 device: no mechanism at all.
    session = Session(container, peer, SaslIdentity(), address(container, "amqp-device"))
    assert session.attach() == [None, None]
    final = session.registered("amqp-device")
    body = json.loads(final.body)
    assert body["status"] == "assigned"
    state = body["registrationState"]
    assert (state["deviceId"], state["assignedHub"]) == ("amqp-device", HUB)
    assert final.application_properties == {
        "iotdps-status": "assigned",
        "iotdps-operation-id": body["operationId"],
    }
    assert final.content_type == "application/json"
    # A device that polls anyway reads the same outcome.
    polled = session.polled(body["operationId"])
    assert json.loads(polled.body) == body
    assert polled.application_properties == final.application_properties
    # The registrations metric names what carried the registration.
    protocol = {"tls": "amqp", "websocket": "amqp-ws"}[transport]
    page = container.metrics.render()[0].decode()
    assert f'protocol="{protocol}"' in page
    assert 'devprov_request_duration_seconds_count{api="amqp",status="2xx"} 2.0' in page


def test_symmetric_key_device_with_a_payload(container: Container) -> None:
    key_group(container)
    peer = Peer(("192.0.2.8", 50001))
    session = Session(
        container, peer, plain(container, "amqp-sensor"), address(container, "amqp-sensor")
    )
    assert session.attach() == [None, None]
    final = session.registered("amqp-sensor", payload={"modelId": "dtmi:test:x;1"}, force=True)
    body = json.loads(final.body)
    assert body["status"] == "assigned"
    assert body["registrationState"]["deviceId"] == "amqp-sensor"


def test_the_address_of_the_c_sdk_names_the_host_too(container: Container) -> None:
    key_group(container)
    target = f"amqps://localhost/{address(container, 'amqp-c')}"
    session = Session(container, Peer(None), plain(container, "amqp-c"), target)
    assert session.attach() == [None, None]
    assert json.loads(session.registered("amqp-c").body)["status"] == "assigned"


def test_attach_attests_nothing(container: Container, pki, monkeypatch) -> None:
    """The requests attest the device (as over HTTPS); the attach only reads the address."""
    root, inter, leaf = pki
    x509_group(container, root)
    calls: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(args[1])

    monkeypatch.setattr(container.devices, "authenticate", counted)
    session = Session(container, x509_peer(leaf, inter), SaslIdentity(), "")
    session.target = address(container, "amqp-device")
    assert session.attach() == [None, None]
    assert json.loads(session.registered("amqp-device").body)["status"] == "assigned"
    assert calls == []


def test_disabled_enrollment_is_answered_disabled(container: Container, pki) -> None:
    root, inter, leaf = pki
    x509_group(container, root, provisioningStatus="disabled")
    session = Session(container, x509_peer(leaf, inter), SaslIdentity(), "")
    session.target = address(container, "amqp-device")
    assert session.attach() == [None, None]
    final = session.registered("amqp-device")
    assert json.loads(final.body)["status"] == "disabled"
    assert final.application_properties["iotdps-status"] == "disabled"


def test_always_poll_answers_assigning_and_the_poll_the_outcome(container: Container) -> None:
    """``devprov serve --always-poll``: DPS's own sequence, a register answered ``assigning``
    with a poll delay, then the outcome at the poll."""
    container.always_poll = True
    key_group(container)
    target = address(container, "amqp-poller")
    session = Session(
        container, Peer(("192.0.2.8", 50002)), plain(container, "amqp-poller"), target
    )
    assert session.attach() == [None, None]
    operation_id = session.assigning("amqp-poller")
    final = session.polled(operation_id)
    body = json.loads(final.body)
    assert (body["operationId"], body["status"]) == (operation_id, "assigned")
    assert body["registrationState"]["deviceId"] == "amqp-poller"
    assert final.application_properties == {
        "iotdps-status": "assigned",
        "iotdps-operation-id": operation_id,
    }


# --- requests refused -------------------------------------------------------------------------


def attached(c: Container) -> Session:
    key_group(c)
    session = Session(
        c, Peer(("192.0.2.10", 2)), plain(c, "amqp-sensor"), address(c, "amqp-sensor")
    )
    assert session.attach() == [None, None]
    return session


def rejected(outcome: Reply | Reject) -> AmqpError:
    assert isinstance(outcome, Reject), outcome
    return outcome.error


def test_an_unknown_operation_is_an_argument_error(container: Container, caplog) -> None:
    session = attached(container)
    message = Message(application_properties={"iotdps-operation-type": "iotdps-get-registration"})
    with caplog.at_level(logging.INFO, logger="devprov.refusal"):
        error = rejected(session.send(message))
    assert error.condition == ARGUMENT_ERROR
    assert described(error)["errorCode"] == 400460
    assert any("iotdps-get-registration" in r.getMessage() for r in caplog.records)
    # The connection still serves.
    assert json.loads(session.registered("amqp-sensor").body)["status"] == "assigned"


@pytest.mark.parametrize("where", ["unattached link", "message to another device"])
def test_a_message_for_another_address_is_an_argument_error(
    container: Container, where: str
) -> None:
    session = attached(container)
    other = address(container, "someone-else")
    message = register_message("amqp-sensor")
    if where == "unattached link":
        outcome = session.send(message, target=other)
    else:
        outcome = session.send(Message(message.body, message.application_properties, to=other))
    error = rejected(outcome)
    assert error.condition == ARGUMENT_ERROR
    assert described(error)["errorCode"] == 400460


def test_request_errors_are_rejected_with_dps_bodies(container: Container) -> None:
    session = attached(container)
    bad = rejected(
        session.send(Message(b"{not json", register_message("x").application_properties))
    )
    assert (bad.condition, described(bad)["errorCode"]) == (ARGUMENT_ERROR, 400001)
    other = rejected(session.send(register_message("someone-else")))
    assert other.condition == ARGUMENT_ERROR
    unknown = poll_message("4.0000000000000000.00000000-0000-0000-0000-000000000000")
    missing = rejected(session.send(unknown))
    assert (missing.condition, described(missing)["errorCode"]) == (NOT_FOUND, 404204)
    no_id = Message(application_properties={"iotdps-operation-type": "iotdps-get-operationstatus"})
    assert rejected(session.send(no_id)).condition == ARGUMENT_ERROR


def test_an_overloaded_storage_pool_is_throttled_with_a_retry_delay(
    container: Container, monkeypatch
) -> None:
    session = attached(container)

    async def overloaded(*args: Any, **kwargs: Any) -> Any:
        raise StorageOverloadedError("every storage slot is taken")  # a fault, simulated

    monkeypatch.setattr(container.storage, "run", overloaded)
    error = rejected(session.send(register_message("amqp-sensor")))
    assert error.condition == THROTTLED
    assert error.info == {"retry-after": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
    assert described(error)["errorCode"] == StorageOverloadedError.number


# --- the condition table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "condition"),
    [
        (400, ARGUMENT_ERROR),
        (401, UNAUTHORIZED),
        (403, UNAUTHORIZED),
        (404, NOT_FOUND),
        (412, "com.microsoft:precondition-failed"),
        (413, "amqp:link:message-size-exceeded"),
        (429, THROTTLED),
        (500, INTERNAL_ERROR),
        (503, INTERNAL_ERROR),
    ],
)
def test_conditions_by_status(status: int, condition: str) -> None:
    error = StorageUnavailableError("down")
    body = {"errorCode": status * 1000, "trackingId": "t", "message": "m", "timestampUtc": "x"}
    retry = 5 if status == 503 else None
    answer = DeviceAnswer(status, body, retry, "t", error)
    amqp = amqp_error(answer)
    assert amqp.condition == condition
    assert json.loads(amqp.description or "") == body
    assert amqp.info == ({"retry-after": "5"} if retry else {})
