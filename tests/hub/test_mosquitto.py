"""MosquittoDynamicSecurity against a real Mosquitto 2 with the dynamic-security plugin: what it
makes lets a device use its own topics and no other device's, and disable, delete and failures
behave as docs/hubs-mosquitto.md says."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.hub.control import ControlSession
from devprov.hub.mosquitto import MosquittoDynamicSecurity, device_topic, parse_settings
from devprov.service.hub_identity import (
    DeviceAuthentication,
    DeviceAuthKind,
    DeviceIdentity,
    HubConnection,
    HubKind,
    HubRefusedError,
    HubUnreachableError,
    InvalidHubSettingsError,
)
from tests import factory
from tests.hub.mosquitto import (
    ADMIN,
    MISSING,
    SKIP_REASON,
    Broker,
    Device,
    needs_mosquitto,
    password_device,
    running_broker,
    x509_device,
)
from tests.instances import free_port

NOT_AUTHORISED = 5  # CONNACK return code (MQTT 3.1.1 section 3.2.2.3)
REFUSED = 128  # SUBACK failure (MQTT 3.1.1 section 3.9.3)


@pytest.fixture(scope="module")
def device_ca() -> factory.Ca:
    return factory.root("Device CA")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, device_ca: factory.Ca) -> Iterator[Broker]:
    if MISSING:
        pytest.skip(SKIP_REASON)
    with running_broker(tmp_path_factory.mktemp("mosquitto"), device_ca) as running:
        yield running


@pytest.fixture
def hubs() -> MosquittoDynamicSecurity:
    return MosquittoDynamicSecurity()


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    opened: list[Device] = []
    yield opened
    for device in opened:
        device.close()


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def sas(device_id: str, key: str, *, enabled: bool = True) -> DeviceIdentity:
    authentication = DeviceAuthentication(DeviceAuthKind.SAS, primary_key=key, secondary_key=key)
    return DeviceIdentity(device_id, device_id, authentication, enabled=enabled)


def x509(device_id: str) -> DeviceIdentity:
    authentication = DeviceAuthentication(DeviceAuthKind.CERTIFICATE_AUTHORITY)
    return DeviceIdentity(device_id, device_id, authentication)


def unique(name: str) -> str:
    return f"{name}-{os.urandom(3).hex()}"


def connect_sas(broker: Broker, devices: list[Device], device_id: str, key: str) -> Device:
    device = password_device(device_id, key)
    devices.append(device)
    assert device.connect(broker.password_port) == 0
    return device


def connect_x509(broker: Broker, devices: list[Device], ca: factory.Ca, device_id: str) -> Device:
    device = x509_device(ca, device_id, broker.directory, broker.server_ca)
    devices.append(device)
    assert device.connect(broker.x509_port) == 0
    return device


def sas_connack(broker: Broker, devices: list[Device], device_id: str, key: str) -> int:
    device = password_device(device_id, key)
    devices.append(device)
    return device.connect(broker.password_port)


def assert_own_topics_only(device: Device, device_id: str, other: Device, other_id: str) -> None:
    """``device`` publishes and subscribes on its own topics and on none of ``other``'s."""
    own = f"devices/{device_id}/telemetry"
    assert device.subscribe(f"devices/{device_id}/#") == 1
    device.publish(own, b"mine")
    assert device.received_until(b"mine") == [b"mine"]
    assert device.subscribe(f"devices/{other_id}/#") == REFUSED
    assert other.subscribe(f"devices/{other_id}/#") == 1
    # The broker takes a publish it may not deliver and drops it: the other device, subscribed
    # on its topic, sees its own marker (queued after the PUBACK) and nothing before it.
    device.publish(f"devices/{other_id}/telemetry", b"intruder")
    other.publish(f"devices/{other_id}/telemetry", b"marker")
    assert other.received_until(b"marker") == [b"marker"]


@needs_mosquitto
def test_an_x509_device_uses_its_own_topics_and_no_others(
    broker: Broker,
    hubs: MosquittoDynamicSecurity,
    devices: list[Device],
    device_ca: factory.Ca,
) -> None:
    first, second = unique("x509-a"), unique("x509-b")
    said = hubs.put(broker.hub(), x509(first))
    assert said == (
        f"client created in broker.test with authentication certificateAuthority "
        f"(topics devices/{first}/#)"
    )
    hubs.put(broker.hub(), x509(second))
    device = connect_x509(broker, devices, device_ca, first)
    other = connect_x509(broker, devices, device_ca, second)
    assert_own_topics_only(device, first, other, second)
    assert_own_topics_only(other, second, device, first)


@needs_mosquitto
def test_a_symmetric_key_device_logs_in_with_its_primary_key(
    broker: Broker, hubs: MosquittoDynamicSecurity, devices: list[Device]
) -> None:
    first, second = unique("sas-a"), unique("sas-b")
    first_key, second_key = new_key(), new_key()
    said = hubs.put(broker.hub(), sas(first, first_key))
    assert (
        said == f"client created in broker.test with authentication sas (topics devices/{first}/#)"
    )
    hubs.put(broker.hub(), sas(second, second_key))
    # the reject twin: another key, or another device's key, is not the password
    assert sas_connack(broker, devices, first, new_key()) == NOT_AUTHORISED
    assert sas_connack(broker, devices, first, second_key) == NOT_AUTHORISED
    device = connect_sas(broker, devices, first, first_key)
    other = connect_sas(broker, devices, second, second_key)
    assert_own_topics_only(device, first, other, second)


@needs_mosquitto
def test_a_device_never_put_is_refused(
    broker: Broker, devices: list[Device], device_ca: factory.Ca
) -> None:
    stranger = unique("stranger")
    assert sas_connack(broker, devices, stranger, new_key()) == NOT_AUTHORISED
    # Mosquitto 2.0 does not ask the plugin about a certificate login: the stranger is connected
    # and may use no topic, its own included (docs/hubs-mosquitto.md#disable-and-delete).
    device = connect_x509(broker, devices, device_ca, stranger)
    assert device.subscribe(f"devices/{stranger}/#") == REFUSED


@needs_mosquitto
def test_putting_twice_is_idempotent_and_a_new_key_replaces_the_old(
    broker: Broker, hubs: MosquittoDynamicSecurity, devices: list[Device]
) -> None:
    device_id, old, new = unique("again"), new_key(), new_key()
    hubs.put(broker.hub(), sas(device_id, old))
    said = hubs.put(broker.hub(), sas(device_id, old))
    assert said.startswith("client updated in broker.test with authentication sas")
    connect_sas(broker, devices, device_id, old)
    hubs.put(broker.hub(), sas(device_id, new))
    assert sas_connack(broker, devices, device_id, old) == NOT_AUTHORISED
    device = connect_sas(broker, devices, device_id, new)
    assert device.subscribe(f"devices/{device_id}/#") == 1


@needs_mosquitto
def test_a_symmetric_key_device_disabled_or_deleted_is_refused_and_comes_back_when_put(
    broker: Broker, hubs: MosquittoDynamicSecurity, devices: list[Device]
) -> None:
    device_id, key = unique("switch"), new_key()
    hubs.put(broker.hub(), sas(device_id, key))
    connect_sas(broker, devices, device_id, key)
    said = hubs.disable(broker.hub(), device_id)
    assert said == f"client {device_id} disabled in broker.test (and its topics withdrawn)"
    assert sas_connack(broker, devices, device_id, key) == NOT_AUTHORISED
    hubs.put(broker.hub(), sas(device_id, key))
    connect_sas(broker, devices, device_id, key)
    assert hubs.delete(broker.hub(), device_id) == f"client {device_id} deleted from broker.test"
    assert sas_connack(broker, devices, device_id, key) == NOT_AUTHORISED
    # both are idempotent
    assert hubs.delete(broker.hub(), device_id).endswith("nothing to delete")
    assert hubs.disable(broker.hub(), device_id).endswith("nothing to disable")
    hubs.put(broker.hub(), sas(device_id, key))
    connect_sas(broker, devices, device_id, key)


@needs_mosquitto
def test_an_identity_put_disabled_cannot_log_in(
    broker: Broker, hubs: MosquittoDynamicSecurity, devices: list[Device]
) -> None:
    device_id, key = unique("off"), new_key()
    said = hubs.put(broker.hub(), sas(device_id, key, enabled=False))
    assert said.endswith(f"(topics devices/{device_id}/#, disabled)")
    assert sas_connack(broker, devices, device_id, key) == NOT_AUTHORISED
    hubs.put(broker.hub(), sas(device_id, key))
    connect_sas(broker, devices, device_id, key)


@needs_mosquitto
def test_an_x509_device_disabled_or_deleted_loses_its_topics(
    broker: Broker,
    hubs: MosquittoDynamicSecurity,
    devices: list[Device],
    device_ca: factory.Ca,
) -> None:
    device_id = unique("x509-switch")
    hubs.put(broker.hub(), x509(device_id))
    assert (
        connect_x509(broker, devices, device_ca, device_id).subscribe(f"devices/{device_id}/#") == 1
    )
    hubs.disable(broker.hub(), device_id)
    device = connect_x509(broker, devices, device_ca, device_id)
    assert device.subscribe(f"devices/{device_id}/#") == REFUSED
    hubs.put(broker.hub(), x509(device_id))
    assert (
        connect_x509(broker, devices, device_ca, device_id).subscribe(f"devices/{device_id}/#") == 1
    )
    hubs.delete(broker.hub(), device_id)
    device = connect_x509(broker, devices, device_ca, device_id)
    assert device.subscribe(f"devices/{device_id}/#") == REFUSED


@needs_mosquitto
def test_a_client_devprov_did_not_make_is_left_alone(
    broker: Broker, hubs: MosquittoDynamicSecurity, devices: list[Device]
) -> None:
    # the admin's own client: a device named like it must not take it over or lock it out
    for call in (
        lambda: hubs.put(broker.hub(), sas(ADMIN, new_key())),
        lambda: hubs.disable(broker.hub(), ADMIN),
        lambda: hubs.delete(broker.hub(), ADMIN),
    ):
        with pytest.raises(HubRefusedError) as refused:
            call()
        assert refused.value.message == (
            f"client {ADMIN} exists in broker.test and devprov did not make it: left as it is"
        )
    # the twin: the admin still logs in and administers
    device_id = unique("after-admin")
    assert hubs.put(broker.hub(), sas(device_id, new_key())).startswith("client created")


@needs_mosquitto
def test_a_command_the_plugin_refuses_is_quoted(broker: Broker) -> None:
    settings = parse_settings(broker.hub())
    session = ControlSession(
        broker="broker.test",
        host=settings.host,
        port=settings.port,
        tls=True,
        ca_file=settings.ca_file,
        username=ADMIN,
        password=broker.admin_password,
        connect_timeout=10,
        command_timeout=10,
    )
    nobody = unique("nobody")
    with session:
        with pytest.raises(HubRefusedError) as refused:
            session.run({"command": "addClientRole", "username": nobody, "rolename": "x"})
        assert (
            refused.value.message == f"broker.test refused addClientRole {nobody}: Client not found"
        )
        # the twin: the same answer, when tolerated, is returned
        answer = session.run({"command": "getClient", "username": nobody}, "Client not found")
        assert answer["error"] == "Client not found"


@needs_mosquitto
def test_a_wrong_admin_password_is_a_refusal_that_does_not_quote_it(
    broker: Broker, hubs: MosquittoDynamicSecurity
) -> None:
    wrong = new_key()
    with pytest.raises(HubRefusedError) as refused:
        hubs.put(broker.hub(password=wrong), sas(unique("wrong"), new_key()))
    assert refused.value.message == (
        f"broker.test (127.0.0.1:{broker.admin_port}) refused the admin login as user 'admin': "
        "Connection Refused: not authorised."
    )
    assert wrong not in refused.value.message


@needs_mosquitto
def test_a_broker_that_does_not_listen_is_unreachable(
    broker: Broker, hubs: MosquittoDynamicSecurity
) -> None:
    port = free_port()
    with pytest.raises(HubUnreachableError) as unreachable:
        hubs.put(broker.hub(broker=f"127.0.0.1:{port}"), sas(unique("nowhere"), new_key()))
    assert unreachable.value.message.startswith(f"cannot reach broker.test (127.0.0.1:{port}): ")


@needs_mosquitto
def test_a_broker_whose_certificate_is_not_trusted_is_unreachable(
    broker: Broker, hubs: MosquittoDynamicSecurity, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(factory.root("Someone Else").pem)
    with pytest.raises(HubUnreachableError) as unreachable:
        hubs.put(broker.hub(ca_file=str(other)), sas(unique("untrusted"), new_key()))
    assert "TLS failed: CERTIFICATE_VERIFY_FAILED" in unreachable.value.message


@pytest.mark.parametrize(
    ("device_id", "topic"),
    [
        pytest.param("dev-1", "devices/dev-1/#", id="ok/plain"),
        pytest.param("a.b_c:d", "devices/a.b_c:d/#", id="ok/dps-characters"),
        pytest.param("a+b", None, id="fail/single-level-wildcard"),
        pytest.param("a#", None, id="fail/multi-level-wildcard"),
        pytest.param("a/b", None, id="fail/level-separator"),
    ],
)
def test_device_topic_refuses_ids_that_would_widen_it(device_id: str, topic: str | None) -> None:
    if topic is not None:
        assert device_topic("devices/{device_id}/#", device_id) == topic
    else:
        with pytest.raises(HubRefusedError, match="would widen its topics"):
            device_topic("devices/{device_id}/#", device_id)


SECRET = "s3cret-admin-password"
GOOD = {"broker": "mqtt.example:8883", "tls": "true", "username": "a", "password": SECRET}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        pytest.param(GOOD, None, id="ok/minimal"),
        pytest.param({**GOOD, "broker": "[::1]:8883"}, None, id="ok/ipv6"),
        pytest.param({**GOOD, "topic_pattern": "fleet/{device_id}"}, None, id="ok/pattern"),
        pytest.param(
            {**GOOD, "broker": "mqtt.example"}, "broker must be host:port", id="fail/no-port"
        ),
        pytest.param({**GOOD, "broker": "h:70000"}, "broker must be host:port", id="fail/port"),
        pytest.param({**GOOD, "tls": "yes"}, "tls must be true or false", id="fail/tls"),
        pytest.param({**GOOD, "password": ""}, "password is missing", id="fail/password"),
        pytest.param(
            {**GOOD, "topic_pattern": "fleet/#"}, "must hold {device_id}", id="fail/pattern"
        ),
        pytest.param(
            {**GOOD, "topic_pattern": "{hub}/{device_id}"}, "no other field", id="fail/field"
        ),
    ],
)
def test_settings_are_checked(settings: dict[str, str], problem: str | None) -> None:
    hub = HubConnection(HubKind.MOSQUITTO, "broker.test", settings)
    if problem is None:
        assert parse_settings(hub).username == "a"
    else:
        with pytest.raises(InvalidHubSettingsError) as invalid:
            parse_settings(hub)
        assert problem in invalid.value.message
        assert SECRET not in invalid.value.message
