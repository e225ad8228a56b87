"""One decision path for DPS's three device transports: the same scenario table, run over HTTPS,
MQTT and AMQP against one real in-process server (tests/e2e/transports.py), ends the same way on
each: the same status, the same registration state (the device's own names aside), the same DPS
error code where the transport carries one, and the same audit row.

The transports only frame requests; the use cases decide (devprov.device_request,
devprov.service.device). Where a transport refuses earlier than the others (MQTT's CONNECT
authenticates, so its refusal is a CONNACK with no error body) the audit row still says the same:
the same outcome, the same DPS error code and the same reason.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devprov.cli.main import main
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import derive_device_key
from devprov.service.model import Outcome
from tests import factory as f
from tests.e2e.transports import TRANSPORTS, Credentials, Result, sas_token_for
from tests.mqtt.conftest import LocalServer, start_local_server, stop_local_server

HUB = "hub-one-path.azure-devices.net"
GROUP_KEY = base64.b64encode(b"g" * 32).decode()
ENROLLMENT_KEY = base64.b64encode(b"e" * 32).decode()
OFF_KEY = base64.b64encode(b"o" * 32).decode()  # the disabled group's
# The fields of a registration state that name the device, its certificate or the moment, not
# the decision.
VOLATILE = {
    *("registrationId", "deviceId", "etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc"),
    *("sha1Thumbprint", "sha256Thumbprint", "serialNumber", "notBeforeUtc", "notAfterUtc"),
}
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")


@dataclass(frozen=True)
class World:
    server: LocalServer
    directory: Path
    root: f.Ca
    intermediate: f.Ca
    unproven: f.Ca


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("one-path")
    server = start_local_server(directory / "data")
    try:
        root = f.root("One Path Root")
        intermediate = f.intermediate(root, "One Path Intermediate")
        unproven = f.root("One Path Unproven Root")
        registry, enrollments = server.container.registry, server.container.enrollments
        registry.upload("default", "root", root.pem, is_verified=True, if_match=None, actor="t")
        registry.upload(
            "default", "unproven", unproven.pem, is_verified=False, if_match=None, actor="t"
        )
        assert server.cli("hub", "add", HUB) == 0
        groups: dict[str, dict[str, Any]] = {
            "x509": {"type": "x509", "x509": {"caReferences": {"primary": "root"}}},
            "unproven": {"type": "x509", "x509": {"caReferences": {"primary": "unproven"}}},
            "keys": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}},
            "keys-off": {"type": "symmetricKey", "symmetricKey": {"primaryKey": OFF_KEY}},
        }
        for group_id, attestation in groups.items():
            document = {"enrollmentGroupId": group_id, "attestation": attestation}
            if group_id == "keys-off":
                document["provisioningStatus"] = "disabled"
            enrollments.create_or_update(
                "default", EnrollmentKind.GROUP, group_id, document, if_match=None, actor="t"
            )
        yield World(server, directory, root, intermediate, unproven)
    finally:
        stop_local_server(server)


# --- how each scenario's device comes to be -----------------------------------------------------


def _files(world: World, name: str, leaf: f.Ca, *chain: f.Ca) -> Credentials:
    cert, key = world.directory / f"{name}.pem", world.directory / f"{name}.key"
    cert.write_bytes(leaf.pem + b"".join(ca.pem for ca in chain))
    key.write_bytes(leaf.key_pem())
    return Credentials(name, chain=cert, key=key)


def group_device(world: World, name: str) -> Credentials:
    return _files(world, name, f.device(world.intermediate, name), world.intermediate)


def stranger_device(world: World, name: str) -> Credentials:
    stranger = f.intermediate(f.root("One Path Root"), "One Path Intermediate")  # look-alikes
    return _files(world, name, f.device(stranger, name), stranger)


def unproven_device(world: World, name: str) -> Credentials:
    return _files(world, name, f.device(world.unproven, name))


def self_signed_device(world: World, name: str, *, enabled: bool = True) -> Credentials:
    out = world.directory / f"self-signed-{name}"
    assert main(["ca", "device", name, "--self-signed", "--dir", str(out)]) == 0
    cert = out / f"{name}.pem"
    individual(world, name, {"type": "x509", "x509": {"clientCertificates": {"primary": {
        "certificate": cert.read_text()}}}}, enabled=enabled)  # fmt: skip
    return Credentials(name, chain=cert, key=out / f"{name}.key")


def individual(world: World, name: str, attestation: dict[str, Any], *, enabled: bool) -> None:
    document = {
        "registrationId": name,
        "attestation": attestation,
        "provisioningStatus": "enabled" if enabled else "disabled",
    }
    world.server.container.enrollments.create_or_update(
        "default", EnrollmentKind.INDIVIDUAL, name, document, if_match=None, actor="t"
    )


def key_device(group_key: str = GROUP_KEY, *, lifetime: int = 600) -> Callable[..., Credentials]:
    def make(world: World, name: str) -> Credentials:
        key = derive_device_key(group_key, name)
        return Credentials(name, sas_token=sas_token_for(world.server, name, key, lifetime))

    return make


def individual_key_device(world: World, name: str) -> Credentials:
    attestation = {"type": "symmetricKey", "symmetricKey": {"primaryKey": ENROLLMENT_KEY}}
    individual(world, name, attestation, enabled=True)
    token = sas_token_for(world.server, name, ENROLLMENT_KEY, 600)
    return Credentials(name, sas_token=token)


def disabled_self_signed_device(world: World, name: str) -> Credentials:
    return self_signed_device(world, name, enabled=False)


# (scenario, how its device comes to be, the expected status, the expected DPS error code)
SCENARIOS: list[tuple[str, Callable[[World, str], Credentials], str, int | None]] = [
    ("x509-group", group_device, "assigned", None),
    ("self-signed", self_signed_device, "assigned", None),
    ("key-group", key_device(), "assigned", None),
    ("key-individual", individual_key_device, "assigned", None),
    ("unknown-certificate", stranger_device, "refused", 401002),
    ("unverified-ca", unproven_device, "refused", 401002),
    ("wrong-key", key_device(ENROLLMENT_KEY), "refused", 401000),
    ("expired-token", key_device(lifetime=-60), "refused", 401000),
    ("disabled-group", key_device(OFF_KEY), "disabled", None),
    ("disabled-individual", disabled_self_signed_device, "disabled", None),
]


def comparable(result: Result, name: str) -> dict[str, Any]:
    """A result with the device's own names, its certificate's and the moment taken out."""
    return {"status": result.status, "state": _without(result.state or {}, name)}


def _without(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, name) for k, v in value.items() if k not in VOLATILE}
    return value.replace(name, "<device>") if isinstance(value, str) else value


def audit_row(world: World, name: str) -> tuple[str, str | None, str | None]:
    """The newest audit row of the device: its outcome, DPS error code and reason."""
    events = world.server.container.audit.events(registration_id=name)
    assert events, f"no audit row for {name}"
    event = events[0]
    reason = (
        MOMENT.sub("<moment>", event.reason.replace(name, "<device>")) if event.reason else None
    )
    return str(event.outcome.value), event.error_code, reason


@pytest.mark.parametrize(
    ("scenario", "make", "expected", "error_code"),
    SCENARIOS,
    ids=[s[0] for s in SCENARIOS],
)
def test_every_transport_decides_alike(
    world: World,
    scenario: str,
    make: Callable[[World, str], Credentials],
    expected: str,
    error_code: int | None,
) -> None:
    results, rows = {}, {}
    for transport, register in TRANSPORTS.items():
        name = f"{scenario}-{transport}"
        result = register(world.server, make(world, name))
        assert result.status == expected, (transport, result)
        if result.error_code is not None or transport != "mqtt":  # a CONNACK carries no code
            assert result.error_code == error_code, (transport, result)
        results[transport] = comparable(result, name)
        rows[transport] = audit_row(world, name)
    assert results["mqtt"] == results["https"] == results["amqp"]
    assert rows["mqtt"] == rows["https"] == rows["amqp"], rows
    if expected == "refused":
        assert rows["https"][0] == Outcome.FAILED.value
