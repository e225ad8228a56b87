"""DPS's AMQP refusals against a real container: the attach of an address DPS does not serve or
of a SASL user name for another device (devprov.amqp.dps.DpsApplication.attach), and every
failed attestation, which rejects the request (docs/amqp.md#when-a-device-is-refused), with DPS's
error body as the description, the log line and the audit row."""

from __future__ import annotations

import json
import logging

import pytest

from devprov.amqp.application import LinkRequest, Reject, Role, SaslIdentity
from devprov.amqp.dps import NOT_FOUND, UNAUTHORIZED, DpsApplication
from devprov.bootstrap import Container
from devprov.service.model import Outcome
from devprov.transport.stream import Peer
from tests import factory as f
from tests.amqp.dps_device import (
    API_VERSION,
    GROUP_KEY,
    Session,
    address,
    described,
    key_group,
    plain,
    register_message,
    run,
    scope,
    x509_group,
    x509_peer,
)


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
def test_request_refusals(
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
        registration_id = "x" * 200
        target = f"{scope(container)}/registrations/{registration_id}"
    session = Session(container, peer, sasl, target)
    assert session.attach() == [None, None]
    outcome = session.send(register_message(registration_id))
    assert isinstance(outcome, Reject), outcome
    error = outcome.error
    assert error.condition == condition
    body = described(error)
    assert body["errorCode"] == number
    if message is not None:
        assert body["message"] == message
    assert not error.info  # nothing to retry
    assert container.registration_states.find("default", registration_id) is None


def test_a_failed_attestation_is_audited(container: Container) -> None:
    root = f.root("Stranger")
    stranger = f.device(root, "amqp-stranger")
    target = address(container, "amqp-stranger")
    session = Session(container, x509_peer(stranger, transport="websocket"), SaslIdentity(), target)
    assert session.attach() == [None, None]
    outcome = session.send(register_message("amqp-stranger"))
    assert isinstance(outcome, Reject) and outcome.error.condition == UNAUTHORIZED
    (event,) = container.audit.events(registration_id="amqp-stranger")
    assert (event.action, event.outcome) == ("register", Outcome.FAILED)
    assert event.reason and event.actor.endswith("from 192.0.2.7")


def test_a_refused_device_is_attested_again_on_its_next_request(container: Container, pki) -> None:
    root, inter, leaf = pki
    x509_group(container, root, verified=False)
    session = Session(
        container, x509_peer(leaf, inter), SaslIdentity(), address(container, "amqp-device")
    )
    assert session.attach() == [None, None]
    refused = session.send(register_message("amqp-device"))
    assert isinstance(refused, Reject) and refused.error.condition == UNAUTHORIZED
    # The operator proves possession of the root: the device is now trusted.
    coded = container.registry.generate_code("default", "root", if_match="*", actor="t")
    proof = f.verification(root, coded.codes.current or "", now=f.NOW)
    container.registry.verify("default", "root", f.pem(proof), if_match=coded.etag, actor="t")
    assert json.loads(session.registered("amqp-device").body)["status"] == "assigned"
