"""Registrations that make the device a client of a real Mosquitto, end to end: a real in-process
devprov server (HTTPS and MQTT) with a hub of kind mosquitto linked through the CLI, the real
adapter (devprov.hub.mosquitto) and a real broker with the dynamic-security plugin
(tests/hub/mosquitto.py). A symmetric-key device and an X.509 group device register with devprov,
then use their own topics on the broker and no other device's; after their group is disabled the
symmetric-key device is refused at login and the X.509 device keeps no topic (Mosquitto 2.0
cannot refuse a certificate login: docs/hubs-mosquitto.md#disable-and-delete); a device that
never registered is refused at login (symmetric key) or on every topic (X.509)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.core.sas import derive_device_key
from tests import factory
from tests.hub.mosquitto import (
    ADMIN,
    MISSING,
    SKIP_REASON,
    Broker,
    Device,
    password_device,
    running_broker,
    x509_device,
)
from tests.hub.test_mosquitto import REFUSED, assert_own_topics_only
from tests.mqtt.conftest import LocalServer, start_local_server, stop_local_server
from tests.registering import (
    group_key,
    key_over_https,
    key_over_mqtt,
    x509_over_https,
    x509_over_mqtt,
)

HUB = "broker.test"
GROUP = "keys"
NOT_AUTHORIZED = 5  # CONNACK return code of MQTT 3.1.1


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalServer, Broker, factory.Ca]]:
    if MISSING:
        pytest.skip(SKIP_REASON)
    root = tmp_path_factory.mktemp("mosquitto-hub")
    ca = factory.root("Fleet CA")
    (root / "broker").mkdir()
    with running_broker(root / "broker", ca) as broker:
        server = start_local_server(root / "data")
        try:
            (root / "ca.pem").write_bytes(ca.pem)
            (root / "admin-password").write_text(broker.admin_password + "\n")
            assert (
                server.cli(
                    "certificate",
                    "upload",
                    "fleet-ca",
                    "--cert",
                    str(root / "ca.pem"),
                    "--verified",
                )
                == 0
            )
            assert server.cli("enrollment-group", "create", "fleet", "--ca-name", "fleet-ca") == 0
            assert server.cli("enrollment-group", "create", "keys", "--symmetric-key") == 0
            assert (
                server.cli(
                    "hub",
                    "add",
                    HUB,
                    "--kind",
                    "mosquitto",
                    "--broker",
                    f"127.0.0.1:{broker.admin_port}",
                    "--tls",
                    "--ca-file",
                    str(broker.server_ca),
                    "--username",
                    ADMIN,
                    "--password-file",
                    str(root / "admin-password"),
                )
                == 0
            )
            yield server, broker, ca
        finally:
            stop_local_server(server)


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    opened: list[Device] = []
    yield opened
    for device in opened:
        device.close()


def login(
    broker: Broker, devices: list[Device], device_id: str, password: str
) -> tuple[Device, int]:
    device = password_device(device_id, password)
    devices.append(device)
    return device, device.connect(broker.password_port)


@pytest.mark.parametrize("transport", [key_over_https, key_over_mqtt], ids=["https", "mqtt"])
def test_registered_symmetric_key_devices_use_their_own_topics_only(
    world, capsys, devices: list[Device], transport, request: pytest.FixtureRequest
) -> None:
    server, broker, _ = world
    first, second = (f"sensor-{n}-{request.node.callspec.id}" for n in (1, 2))
    for device in (first, second):
        operation = transport(server, capsys, GROUP, device)
        assert operation["status"] == "assigned", operation
        assert operation["registrationState"]["assignedHub"] == HUB
    key = group_key(server, GROUP)
    a, code_a = login(broker, devices, first, derive_device_key(key, first))
    b, code_b = login(broker, devices, second, derive_device_key(key, second))
    assert (code_a, code_b) == (0, 0)
    assert_own_topics_only(a, first, b, second)
    (event,) = [
        e for e in server.container.audit.events(registration_id=first) if e.action == "register"
    ]
    assert event.reason is not None and event.reason.endswith(
        f"client created in {HUB} with authentication sas (topics devices/{first}/#)"
    )


@pytest.mark.parametrize("transport", [x509_over_https, x509_over_mqtt], ids=["https", "mqtt"])
def test_an_x509_group_device_registers_then_uses_its_own_topics(
    world, capsys, devices: list[Device], tmp_path: Path, transport, request: pytest.FixtureRequest
) -> None:
    server, broker, ca = world
    name = f"camera-{request.node.callspec.id}"
    issued = factory.device(ca, name)
    chain, key = tmp_path / "chain.pem", tmp_path / f"{name}.key"
    chain.write_bytes(issued.pem + ca.pem)
    key.write_bytes(issued.key_pem())
    operation = transport(server, capsys, name, chain, key)
    assert operation["status"] == "assigned", operation
    camera = x509_device(ca, name, broker.directory, broker.server_ca)
    devices.append(camera)
    assert camera.connect(broker.x509_port) == 0
    assert camera.subscribe(f"devices/{name}/#") == 1
    assert camera.subscribe("devices/sensor-1-https/#") == REFUSED
    (event,) = [
        e for e in server.container.audit.events(registration_id=name) if e.action == "register"
    ]
    assert event.reason is not None and event.reason.endswith(
        f"client created in {HUB} with authentication certificateAuthority (topics devices/{name}/#)"
    )


def test_a_device_that_never_registered_is_refused(world, devices: list[Device]) -> None:
    server, broker, _ = world
    stranger = "never-registered"
    _, code = login(
        broker, devices, stranger, derive_device_key(group_key(server, GROUP), stranger)
    )
    assert code == NOT_AUTHORIZED


def test_an_x509_device_that_never_registered_reaches_nothing(world, devices: list[Device]) -> None:
    """Mosquitto 2.0 connects any certificate from the listener's CA (it does not ask the plugin
    about certificate logins), so the refusal is on every topic instead of at login."""
    _, broker, ca = world
    stranger = x509_device(ca, "camera-never-registered", broker.directory, broker.server_ca)
    devices.append(stranger)
    assert stranger.connect(broker.x509_port) == 0
    assert stranger.subscribe("devices/camera-never-registered/#") == REFUSED
    assert stranger.subscribe("#") == REFUSED


def test_disabling_the_group_cuts_its_devices_off(world, capsys, devices: list[Device]) -> None:
    """Runs last in this module: it disables both groups."""
    server, broker, ca = world
    device = "sensor-late"
    assert key_over_https(server, capsys, GROUP, device)["status"] == "assigned"
    password = derive_device_key(group_key(server, GROUP), device)
    _, code = login(broker, devices, device, password)
    assert code == 0
    assert server.cli("enrollment-group", "update", "keys", "--disabled") == 0
    _, code = login(broker, devices, device, password)
    assert code == NOT_AUTHORIZED
    assert server.cli("enrollment-group", "update", "fleet", "--disabled") == 0
    camera = x509_device(ca, "camera-https", broker.directory, broker.server_ca)
    devices.append(camera)
    camera.connect(broker.x509_port)  # Mosquitto 2.0 lets a certificate in; its role is gone
    assert camera.subscribe("devices/camera-https/#") == REFUSED
