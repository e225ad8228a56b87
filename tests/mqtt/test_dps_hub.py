"""Registrations that create the device in a hub of another kind, over both device transports
of a real in-process server (HTTPS through `devprov device register`, MQTT with a raw client):
the identity asked for, a failing hub answered in DPS's error shape, and a retry that completes
it. The hub is a recording HubIdentities (tests/hubs.py): what reaches a real IoT Hub contract
server and a real Mosquitto is tested in tests/hub/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.core.sas import derive_device_key
from devprov.service.hub_identity import DeviceAuthKind, HubUnreachableError
from devprov.service.model import Outcome
from tests import registering
from tests.hubs import RecordingHubs
from tests.mqtt.conftest import LocalServer, start_local_server, stop_local_server

HUB = "hub-rec.azure-devices.net"
SECRET = "c2VjcmV0LW9mLXRoZS1yZWdpc3RyeS1wb2xpY3k="
GROUP = "hub-keys"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    root = tmp_path_factory.mktemp("hub-wiring")
    server = start_local_server(root / "data")
    try:
        connection = root / "connection-string"
        connection.write_text(
            f"HostName={HUB};SharedAccessKeyName=registryReadWrite;SharedAccessKey={SECRET}\n"
        )
        add = ["hub", "add", HUB, "--kind", "azure-iothub"]
        assert server.cli(*add, "--connection-string-file", str(connection)) == 0
        assert server.cli("enrollment-group", "create", GROUP, "--symmetric-key") == 0
        yield server
    finally:
        stop_local_server(server)


@pytest.fixture
def hubs(server: LocalServer) -> RecordingHubs:
    recording = RecordingHubs()
    server.container.hub_identities = recording
    return recording


def group_key(server: LocalServer) -> str:
    return registering.group_key(server, GROUP)


def over_https(server: LocalServer, capsys, registration_id: str) -> dict:
    """The final operation `devprov device register` (the HTTPS device API) prints."""
    return dict(registering.key_over_https(server, capsys, GROUP, registration_id))


def over_mqtt(server: LocalServer, capsys, registration_id: str) -> dict:
    """The outcome a raw MQTT client is answered its register with."""
    return dict(registering.key_over_mqtt(server, capsys, GROUP, registration_id))


@pytest.fixture(params=[over_https, over_mqtt], ids=["https", "mqtt"])
def register(request: pytest.FixtureRequest, server: LocalServer, capsys):
    return lambda registration_id: request.param(server, capsys, registration_id)


def test_an_assignment_creates_the_identity_in_the_hub(
    server: LocalServer, hubs: RecordingHubs, register, request: pytest.FixtureRequest
) -> None:
    device = f"hub-dev-{request.node.callspec.id}"
    operation = register(device)
    assert operation["status"] == "assigned", operation
    assert operation["registrationState"]["assignedHub"] == HUB
    (put,) = hubs.of("put")
    assert put.hub.host_name == HUB and put.device_id == device
    auth = put.identity.authentication
    assert auth.kind is DeviceAuthKind.SAS
    assert auth.primary_key == derive_device_key(group_key(server), device)
    (event,) = [
        e for e in server.container.audit.events(registration_id=device) if e.action == "register"
    ]
    assert event.reason is not None and event.reason.endswith(
        f"identity created in {HUB} with authentication sas"
    )


def test_a_failing_hub_fails_the_registration_until_it_recovers(
    server: LocalServer, hubs: RecordingHubs, register, request: pytest.FixtureRequest
) -> None:
    device = f"hub-down-{request.node.callspec.id}"
    reason = f"{HUB} did not answer PUT /devices/{device}: connection refused"
    hubs.failure = HubUnreachableError(reason)
    operation = register(device)
    assert operation["status"] == "failed", operation
    shown = operation["registrationState"]
    assert (shown["errorCode"], shown["errorMessage"]) == (
        503110,
        "The device could not be created in its IoT hub",
    )
    assert "assignedHub" not in shown or shown["assignedHub"] is None
    stored = server.container.registration_states.get("default", device)
    assert stored.assigned_hub is None and stored.error_code == 503110
    failed = [
        e.reason or ""
        for e in server.container.audit.events(registration_id=device)
        if e.action == "register" and e.outcome is Outcome.FAILED
    ]
    assert any(reason in r for r in failed)
    hubs.failure = None
    again = register(device)
    assert again["status"] == "assigned" and again["registrationState"]["assignedHub"] == HUB
    assert [c.device_id for c in hubs.of("put")] == [device, device]


def test_the_secret_is_never_printed_or_logged(
    server: LocalServer, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    capsys.readouterr()
    assert server.cli("hub", "list") == 0
    assert server.cli("hub", "show", HUB) == 0
    assert server.cli("hub", "list", "--json") == 0
    printed = capsys.readouterr().out
    assert "stored (policy registryReadWrite)" in printed and "azure-iothub" in printed
    assert SECRET not in printed
    audit = [str(e) for e in server.container.audit.events(limit=1000)]
    assert any("kind azure-iothub" in e for e in audit)
    assert not any(SECRET in e for e in audit)
    assert SECRET not in caplog.text


def test_a_connection_string_read_from_a_missing_file_links_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    add = ["hub", "add", "other.azure-devices.net", "--kind", "azure-iothub"]
    assert server.cli(*add, "--connection-string-file", str(tmp_path / "absent")) != 0
    assert server.cli(*add) != 0  # the kind needs its connection string
    linked = [h.host_name for h in server.container.hubs.all("default")]
    assert "other.azure-devices.net" not in linked


# --- disabling and deleting ------------------------------------------------------------------

MOSQUITTO = "broker.example"


@pytest.fixture(scope="module")
def broker_hub(server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Mosquitto hub, picked only by the enrollments that name it."""
    password = tmp_path_factory.mktemp("broker") / "password"
    password.write_text("admin-password-not-to-print\n")
    add = ["hub", "add", MOSQUITTO, "--kind", "mosquitto", "--broker", "127.0.0.1:1883"]
    extra = ["--no-tls", "--username", "admin", "--password-file", str(password)]
    assert server.cli(*add, *extra, "--no-allocation") == 0
    return MOSQUITTO


def grouped_devices(server: LocalServer, capsys, group: str, hub: str, ids: list[str]) -> str:
    create = ["enrollment-group", "create", group, "--symmetric-key"]
    assert server.cli(*create, "--allocation-policy", "static", "--hub", hub) == 0
    key = registering.group_key(server, group)
    for device in ids:
        capsys.readouterr()
        assert server.cli("device", "register", device, "--group-key", key) == 0
    return key


def hub_events(server: LocalServer, registration_id: str) -> list[str]:
    return [
        f"{e.action} {e.outcome.value} {e.reason}"
        for e in server.container.audit.events(registration_id=registration_id)
        if e.action.startswith("hub.")
    ]


def test_disabling_a_group_disables_its_devices_in_their_hubs(
    server: LocalServer, hubs: RecordingHubs, broker_hub: str, capsys
) -> None:
    grouped_devices(server, capsys, "to-disable", broker_hub, ["dis-1", "dis-2"])
    assert server.cli("enrollment-group", "update", "to-disable", "--enabled") == 0
    assert hubs.of("disable") == []  # an enabled group stays enabled: nothing to do
    assert server.cli("enrollment-group", "update", "to-disable", "--disabled") == 0
    assert sorted((c.hub.host_name, c.device_id) for c in hubs.of("disable")) == [
        (broker_hub, "dis-1"),
        (broker_hub, "dis-2"),
    ]
    assert hub_events(server, "dis-1") == [
        f"hub.disable succeeded enrollment group 'to-disable' disabled: "
        f"identity disabled in {broker_hub}"
    ]
    # Re-enabling does not re-enable: the device registering again does (its put).
    assert server.cli("enrollment-group", "update", "to-disable", "--enabled") == 0
    assert [c.action for c in hubs.calls].count("put") == 2


def test_a_failed_disable_is_audited_per_device(
    server: LocalServer, hubs: RecordingHubs, broker_hub: str, capsys
) -> None:
    grouped_devices(server, capsys, "unreachable", broker_hub, ["unr-1"])
    hubs.failure = HubUnreachableError(f"{broker_hub}:1883 refused the connection")
    assert server.cli("enrollment-group", "update", "unreachable", "--disabled") == 0
    assert hub_events(server, "unr-1") == [
        f"hub.disable failed enrollment group 'unreachable' disabled: "
        f"{broker_hub}:1883 refused the connection"
    ]


def test_deleting_a_group_removes_mosquitto_clients_and_disables_iot_hub_identities(
    server: LocalServer, hubs: RecordingHubs, broker_hub: str, capsys
) -> None:
    grouped_devices(server, capsys, "gone-mq", broker_hub, ["gone-1"])
    grouped_devices(server, capsys, "gone-az", HUB, ["gone-2"])
    assert server.cli("enrollment-group", "delete", "gone-mq") == 0
    assert server.cli("enrollment-group", "delete", "gone-az") == 0
    assert [(c.action, c.device_id) for c in hubs.calls if c.action != "put"] == [
        ("delete", "gone-1"),
        ("disable", "gone-2"),
    ]


def test_deleting_a_registration_follows_the_hub_kind(
    server: LocalServer, hubs: RecordingHubs, broker_hub: str, capsys
) -> None:
    grouped_devices(server, capsys, "forget-mq", broker_hub, ["fmq-1"])
    grouped_devices(server, capsys, "forget-az", HUB, ["faz-1", "faz-2"])
    assert server.cli("registration", "delete", "fmq-1") == 0
    assert server.cli("registration", "delete", "faz-1") == 0  # the identity stays in IoT Hub
    assert server.cli("registration", "delete", "faz-2", "--delete-identity") == 0
    assert [(c.action, c.device_id) for c in hubs.calls if c.action != "put"] == [
        ("delete", "fmq-1"),
        ("delete", "faz-2"),
    ]
    assert hub_events(server, "faz-2") == [
        f"hub.delete succeeded registration 'faz-2' deleted: identity deleted from {HUB}"
    ]


def test_a_hub_of_kind_none_is_never_asked(
    server: LocalServer, hubs: RecordingHubs, capsys
) -> None:
    assert server.cli("hub", "add", "plain.azure-devices.net", "--no-allocation") == 0
    grouped_devices(server, capsys, "plain", "plain.azure-devices.net", ["plain-1"])
    assert server.cli("enrollment-group", "update", "plain", "--disabled") == 0
    assert server.cli("registration", "delete", "plain-1", "--delete-identity") == 0
    assert hubs.calls == []


def test_the_broker_password_is_never_printed(
    server: LocalServer, broker_hub: str, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    capsys.readouterr()
    assert server.cli("hub", "show", broker_hub) == 0
    assert server.cli("hub", "list", "--json") == 0
    printed = capsys.readouterr().out
    assert "password:    stored" in printed and "admin" in printed
    audit = [str(e) for e in server.container.audit.events(limit=1000)]
    for where in (printed, caplog.text, *audit):
        assert "admin-password-not-to-print" not in where
