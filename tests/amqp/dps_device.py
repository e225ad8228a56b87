"""What the AMQP DPS application's tests share: a container on a fresh data directory, a PKI
from tests/factory.py, enrollments, the SASL identities and messages Node's SDK sends, and a
:class:`Session` that drives a ``DpsApplication`` as the AMQP engine does."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from devprov.amqp.application import (
    AmqpError,
    LinkRequest,
    Message,
    Reject,
    Reply,
    Role,
    SaslIdentity,
)
from devprov.amqp.dps import DpsApplication
from devprov.bootstrap import Container, open_container
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.service.device_answer import RETRY_AFTER_SECONDS
from devprov.transport.stream import Peer
from tests import factory as f

T = TypeVar("T")

HUB = "hub-amqp.azure-devices.net"
GROUP_KEY = base64.b64encode(b"k" * 32).decode()
API_VERSION = {"com.microsoft:api-version": "2019-03-31"}


@contextmanager
def opened(directory: Path) -> Iterator[Container]:
    """A new data directory's container, with one linked hub."""
    c = open_container(directory / "data", initialize=True)
    c.hubs.add("default", HUB, actor="test")
    try:
        yield c
    finally:
        c.storage.shutdown()
        c.engine.dispose()


def demo_pki() -> tuple[f.Ca, f.Ca, f.Ca]:
    """A root, an intermediate and the device ``amqp-device``."""
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
        """Register a device whose registration is decided during the call: the reply is its
        outcome, the final RegistrationOperationStatus, with nothing to poll."""
        message = register_message(registration_id, **kwargs)
        answer = reply(self.send(message))
        assert answer.correlation_id == message.correlation_id
        body = json.loads(answer.body)
        assert body["status"] != "assigning", body
        assert answer.application_properties == {
            "iotdps-status": body["status"],
            "iotdps-operation-id": body["operationId"],
        }
        return answer

    def assigning(self, registration_id: str, **kwargs: Any) -> str:
        """Register with ``always_poll``: the reply is DPS's ``assigning`` and a poll delay; the
        operation id to poll."""
        message = register_message(registration_id, **kwargs)
        first = reply(self.send(message))
        assert first.correlation_id == message.correlation_id
        body = json.loads(first.body)
        assert body == {"operationId": body["operationId"], "status": "assigning"}
        assert first.application_properties == {
            "iotdps-status": "assigning",
            "iotdps-operation-id": body["operationId"],
            "retry-after": str(RETRY_AFTER_SECONDS),
        }
        operation_id: str = body["operationId"]
        return operation_id

    def polled(self, operation_id: str) -> Message:
        """Poll an operation: the reply."""
        return reply(self.send(poll_message(operation_id)))
