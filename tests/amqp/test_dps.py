"""DPS's device API over AMQP, as the engine asks it (devprov.amqp.dps.DpsApplication) of a real
container (a real SQLite file, certificates from tests/factory.py): the attach of a link and every
refusal of it, the register and operation status messages, the replies' properties and DPS's
error conditions, and what the log and the audit trail record."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devprov.amqp.application import (
    AmqpError,
    LinkRequest,
    Message,
    Reject,
    Reply,
    Role,
    SaslIdentity,
)
from devprov.amqp.dps import (
    ARGUMENT_ERROR,
    INTERNAL_ERROR,
    NOT_FOUND,
    THROTTLED,
    UNAUTHORIZED,
    DpsApplication,
    amqp_error,
)
from devprov.bootstrap import Container, open_container
from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import StorageOverloadedError, StorageUnavailableError
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.device_request import DeviceAnswer
from devprov.service.device_answer import RETRY_AFTER_SECONDS, UNAVAILABLE_RETRY_AFTER_SECONDS
from devprov.service.model import Outcome
from devprov.transport.stream import Peer
from tests import factory as f

T = TypeVar("T")

HUB = "hub-amqp.azure-devices.net"
GROUP_KEY = base64.b64encode(b"k" * 32).decode()
API_VERSION = {"com.microsoft:api-version": "2019-03-31"}


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = open_container(tmp_path / "data", initialize=True)
    c.hubs.add("default", HUB, actor="test")
    yield c
    c.storage.shutdown()
    c.engine.dispose()


@pytest.fixture
def pki() -> tuple[f.Ca, f.Ca, f.Ca]:
    root = f.root("AMQP Root")
    inter = f.intermediate(root, "AMQP Intermediate")
    return root, inter, f.device(inter, "amqp-device")


def run(awaitable: Awaitable[T]) -> T:
    async def wait() -> T:
        return await awaitable

    return asyncio.run(wait())


def scope(c: Container) -> str:
    return c.directory.get("default").id_scope


def address(c: Container, registration_id: str) -> str:
    return f"{scope(c)}/registrations/{registration_id}"


def group(c: Container, group_id: str, attestation: dict[str, Any], **extra: Any) -> None:
    document = {"enrollmentGroupId": group_id, "attestation": attestation, **extra}
    c.enrollments.create_or_update(
        "default", EnrollmentKind.GROUP, group_id, document, if_match=None, actor="test"
    )


def x509_group(c: Container, root: f.Ca, *, verified: bool = True, **extra: Any) -> None:
    c.registry.upload("default", "root", root.pem, is_verified=verified, if_match=None, actor="t")
    group(c, "amqp-x509", {"type": "x509", "x509": {"caReferences": {"primary": "root"}}}, **extra)


def key_group(c: Container) -> None:
    attestation = {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}}
    group(c, "amqp-keys", attestation)


def plain(c: Container, registration_id: str, key: str | None = None) -> SaslIdentity:
    """SASL PLAIN as Node's SDK sends it: the address as user name, a SAS token as password."""
    key = key or derive_device_key(GROUP_KEY, registration_id)
    resource = address(c, registration_id)
    token = build_sas_token(key, resource, int(time.time()) + 600, None)
    return SaslIdentity("PLAIN", username=resource, password=token, hostname="localhost")


def x509_peer(*cas: f.Ca, transport: str = "tls") -> Peer:
    return Peer(("192.0.2.7", 50000), tuple(ca.der for ca in cas), transport)


def links(target: str) -> list[LinkRequest]:
    """The two links Node's SDK attaches: its receiver, then its sender, at one address."""
    return [
        LinkRequest(target, Role.RECEIVER, "receiver-1", API_VERSION),
        LinkRequest(target, Role.SENDER, "sender-1", API_VERSION),
    ]


def register_message(registration_id: str, payload: Any = None, *, force: bool = False) -> Message:
    body: dict[str, Any] = {"registrationId": registration_id}
    if payload is not None:
        body["payload"] = payload
    return Message(
        body=json.dumps(body).encode(),
        application_properties={
            "iotdps-operation-type": "iotdps-register",
            "iotdps-forceRegistration": force,
        },
        correlation_id=str(uuid.uuid4()),
    )


def poll_message(operation_id: str) -> Message:
    return Message(
        application_properties={
            "iotdps-operation-type": "iotdps-get-operationstatus",
            "iotdps-operation-id": operation_id,
        },
        correlation_id=str(uuid.uuid4()),
    )


def reply(outcome: Reply | Reject) -> Message:
    assert isinstance(outcome, Reply), outcome
    assert outcome.message is not None
    return outcome.message


def described(error: AmqpError | None) -> dict[str, Any]:
    """DPS's error body, which an AMQP error carries as its description."""
    assert error is not None and error.description is not None
    body: dict[str, Any] = json.loads(error.description)
    assert set(body) == {"errorCode", "trackingId", "message", "timestampUtc"}
    return body


class Session:
    """One AMQP connection's application, driven as the engine drives it."""

    def __init__(self, c: Container, peer: Peer, sasl: SaslIdentity, target: str) -> None:
        self.app = DpsApplication(c, peer)
        self.sasl, self.target = sasl, target

    def attach(self) -> list[AmqpError | None]:
        return [run(self.app.attach(self.sasl, link)) for link in links(self.target)]

    def send(self, message: Message, target: str | None = None) -> Reply | Reject:
        return run(self.app.request(self.sasl, target or self.target, message))

    def registered(self, registration_id: str, **kwargs: Any) -> Message:
        """Register, then poll the operation: the final reply."""
        message = register_message(registration_id, **kwargs)
        first = reply(self.send(message))
        assert first.correlation_id == message.correlation_id
        body = json.loads(first.body)
        assert body["status"] == "assigning"
        assert first.application_properties == {
            "iotdps-status": "assigning",
            "iotdps-operation-id": body["operationId"],
            "retry-after": str(RETRY_AFTER_SECONDS),
        }
        return reply(self.send(poll_message(body["operationId"])))


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


def test_one_authentication_per_address(container: Container, pki, monkeypatch) -> None:
    root, inter, leaf = pki
    x509_group(container, root)
    calls: list[str] = []
    authenticate = container.devices.authenticate

    def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(args[1])
        authenticate(*args, **kwargs)

    monkeypatch.setattr(container.devices, "authenticate", counted)
    session = Session(container, x509_peer(leaf, inter), SaslIdentity(), "")
    session.target = address(container, "amqp-device")
    assert session.attach() == [None, None]
    assert calls == ["amqp-device"]


def test_disabled_enrollment_is_answered_disabled(container: Container, pki) -> None:
    root, inter, leaf = pki
    x509_group(container, root, provisioningStatus="disabled")
    session = Session(container, x509_peer(leaf, inter), SaslIdentity(), "")
    session.target = address(container, "amqp-device")
    assert session.attach() == [None, None]
    final = session.registered("amqp-device")
    assert json.loads(final.body)["status"] == "disabled"
    assert final.application_properties["iotdps-status"] == "disabled"


# --- attach refused ---------------------------------------------------------------------------


def test_an_address_dps_does_not_serve_is_not_found(container: Container, caplog) -> None:
    app = DpsApplication(container, Peer(("192.0.2.9", 1)))
    link = LinkRequest(f"{scope(container)}/devices/x", Role.SENDER, "s", API_VERSION)
    with caplog.at_level(logging.INFO, logger="devprov.refusal"):
        error = run(app.attach(SaslIdentity(), link))
    assert error is not None and error.condition == NOT_FOUND
    body = described(error)
    assert body["errorCode"] == 404460
    assert "{idScope}/registrations/{registrationId}" in body["message"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"ATTACH {scope(container)}/devices/x -> AmqpAddressNotFound")
    assert "(from 192.0.2.9, AMQP, tracking " + body["trackingId"] + ")" in line


def test_a_user_name_for_another_device_is_unauthorized(container: Container, caplog) -> None:
    key_group(container)
    sasl = plain(container, "amqp-sensor")
    app = DpsApplication(container, Peer(("192.0.2.9", 1)))
    link = LinkRequest(address(container, "someone-else"), Role.RECEIVER, "r", API_VERSION)
    with caplog.at_level(logging.INFO, logger="devprov.refusal"):
        error = run(app.attach(sasl, link))
    assert error is not None and error.condition == UNAUTHORIZED
    assert described(error) | {"trackingId": "", "timestampUtc": ""} == {
        "errorCode": 401460,
        "message": "Unauthorized",
        "trackingId": "",
        "timestampUtc": "",
    }
    assert any("AmqpIdentityMismatch" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("case", "condition", "number", "message"),
    [
        ("wrong key", UNAUTHORIZED, 401000, "Unauthorized"),
        ("no credentials", UNAUTHORIZED, 401000, "Unauthorized"),
        ("unknown certificate", UNAUTHORIZED, 401002, "Invalid certificate"),
        ("unverified CA", UNAUTHORIZED, 401002, "Invalid certificate"),
        ("unknown scope", NOT_FOUND, 404101, None),
        # DPS documents no answer for an id it would not accept: a failed attestation's.
        ("malformed registration id", UNAUTHORIZED, 401002, "Invalid certificate"),
    ],
)
def test_attach_refusals(
    container: Container, pki, case: str, condition: str, number: int, message: str | None
) -> None:
    root, inter, leaf = pki
    key_group(container)
    x509_group(container, root, verified=case != "unverified CA")
    registration_id = "amqp-device"
    target = address(container, registration_id)
    peer, sasl = x509_peer(leaf, inter), SaslIdentity()
    if case == "wrong key":
        peer, sasl = Peer(None), plain(container, "amqp-sensor", key=GROUP_KEY)
        registration_id, target = "amqp-sensor", address(container, "amqp-sensor")
    elif case == "no credentials":
        peer = Peer(None)
    elif case == "unknown certificate":
        stranger = f.device(f.root("Stranger"), "amqp-device")
        peer = x509_peer(stranger)
    elif case == "unknown scope":
        target = f"0ne00000000/registrations/{registration_id}"
    elif case == "malformed registration id":
        target = f"{scope(container)}/registrations/{'x' * 200}"
    error = run(DpsApplication(container, peer).attach(sasl, links(target)[0]))
    assert error is not None and error.condition == condition
    body = described(error)
    assert body["errorCode"] == number
    if message is not None:
        assert body["message"] == message
    assert not error.info  # nothing to retry


def test_a_failed_attestation_is_audited(container: Container) -> None:
    root = f.root("Stranger")
    stranger = f.device(root, "amqp-stranger")
    app = DpsApplication(container, x509_peer(stranger, transport="websocket"))
    error = run(app.attach(SaslIdentity(), links(address(container, "amqp-stranger"))[0]))
    assert error is not None and error.condition == UNAUTHORIZED
    (event,) = container.audit.events(registration_id="amqp-stranger")
    assert (event.action, event.outcome) == ("connect", Outcome.FAILED)
    assert event.reason and event.actor.endswith("from 192.0.2.7")


def test_a_refused_address_is_asked_again_on_the_next_attach(container: Container, pki) -> None:
    root, inter, leaf = pki
    x509_group(container, root, verified=False)
    session = Session(
        container, x509_peer(leaf, inter), SaslIdentity(), address(container, "amqp-device")
    )
    assert [e and e.condition for e in session.attach()] == [UNAUTHORIZED, UNAUTHORIZED]
    # The operator proves possession of the root: the device is now trusted.
    coded = container.registry.generate_code("default", "root", if_match="*", actor="t")
    proof = f.verification(root, coded.codes.current or "", now=f.NOW)
    container.registry.verify("default", "root", f.pem(proof), if_match=coded.etag, actor="t")
    assert session.attach() == [None, None]


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
