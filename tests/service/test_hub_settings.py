"""The settings each hub kind takes (service.hub_settings) and HubDirectory.add keeping them."""

from __future__ import annotations

import pytest

from devprov.service.hub_identity import HubKind, InvalidHubSettingsError
from devprov.service.hub_settings import shown_settings, validate_settings

HUB = "hub-k.azure-devices.net"
KEY = "c2VjcmV0LWtleS1vZi10aGUtcG9saWN5"
CONNECTION = f"HostName={HUB};SharedAccessKeyName=registryReadWrite;SharedAccessKey={KEY}"
BROKER = {"broker": "127.0.0.1:8883", "tls": "true", "username": "admin", "password": "pw"}


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        pytest.param(HubKind.NONE, {}, id="ok/none"),
        pytest.param(HubKind.AZURE_IOTHUB, {"connection_string": CONNECTION}, id="ok/azure"),
        pytest.param(
            HubKind.AZURE_IOTHUB,
            {"connection_string": CONNECTION.replace(HUB, HUB.upper())},
            id="ok/azure-host-ignoring-case",
        ),
        pytest.param(
            HubKind.AZURE_IOTHUB,
            {
                "connection_string": CONNECTION.replace(HUB, "elsewhere.example"),
                "endpoint": "https://127.0.0.1:4443",
                "api_version": "2021-04-12",
                "ca_file": "/tmp/ca.pem",
            },
            id="ok/azure-endpoint-overrides-host",
        ),
        pytest.param(HubKind.MOSQUITTO, BROKER, id="ok/mosquitto"),
        pytest.param(
            HubKind.MOSQUITTO,
            {"broker": "[::1]:1883", "tls": "false", "topic_pattern": "t/{device_id}/#"},
            id="ok/mosquitto-ipv6-pattern",
        ),
    ],
)
def test_accepted_settings(kind: HubKind, settings: dict[str, str]) -> None:
    assert validate_settings(kind, HUB, settings) == settings


@pytest.mark.parametrize(
    ("kind", "settings", "named"),
    [
        pytest.param(HubKind.NONE, {"broker": "h:1"}, "broker", id="fail/none-takes-nothing"),
        pytest.param(HubKind.AZURE_IOTHUB, {}, "connection_string", id="fail/azure-missing"),
        pytest.param(
            HubKind.AZURE_IOTHUB,
            {"connection_string": CONNECTION, "broker": "h:1"},
            "broker",
            id="fail/azure-unknown-key",
        ),
        pytest.param(
            HubKind.AZURE_IOTHUB,
            {"connection_string": CONNECTION.replace(HUB, "other.azure-devices.net")},
            "other.azure-devices.net",
            id="fail/azure-other-host",
        ),
        pytest.param(
            HubKind.AZURE_IOTHUB,
            {"connection_string": f"HostName={HUB};SharedAccessKeyName=p"},
            "SharedAccessKey",
            id="fail/azure-no-key",
        ),
        pytest.param(
            HubKind.AZURE_IOTHUB,
            {"connection_string": CONNECTION, "endpoint": "http://127.0.0.1:80"},
            "endpoint",
            id="fail/azure-endpoint-not-https",
        ),
        pytest.param(
            HubKind.AZURE_IOTHUB,
            {"connection_string": CONNECTION, "api_version": "latest"},
            "api_version",
            id="fail/azure-api-version",
        ),
        pytest.param(HubKind.MOSQUITTO, {"tls": "true"}, "broker", id="fail/mosquitto-no-broker"),
        pytest.param(
            HubKind.MOSQUITTO, {**BROKER, "broker": "localhost"}, "host:port", id="fail/no-port"
        ),
        pytest.param(
            HubKind.MOSQUITTO, {**BROKER, "broker": "h:70000"}, "host:port", id="fail/bad-port"
        ),
        pytest.param(HubKind.MOSQUITTO, {**BROKER, "tls": "yes"}, "tls", id="fail/tls-word"),
        pytest.param(
            HubKind.MOSQUITTO,
            {"broker": "h:1", "tls": "false", "username": "admin"},
            "password",
            id="fail/username-without-password",
        ),
        pytest.param(
            HubKind.MOSQUITTO,
            {**BROKER, "topic_pattern": "devices/#"},
            "{device_id}",
            id="fail/pattern-shared-by-every-device",
        ),
    ],
)
def test_refused_settings_name_what_is_wrong(
    kind: HubKind, settings: dict[str, str], named: str
) -> None:
    with pytest.raises(InvalidHubSettingsError) as refused:
        validate_settings(kind, HUB, settings)
    assert named in refused.value.message
    assert KEY not in refused.value.message


def test_shown_settings_never_show_a_secret() -> None:
    azure = dict(shown_settings(HubKind.AZURE_IOTHUB, {"connection_string": CONNECTION}))
    assert azure["connection string"] == "stored (policy registryReadWrite)"
    mosquitto = dict(shown_settings(HubKind.MOSQUITTO, BROKER))
    assert (mosquitto["password"], mosquitto["username"]) == ("stored", "admin")
    assert mosquitto["topic pattern"].startswith("devices/{device_id}/#")
    assert KEY not in str(azure) and "pw" not in mosquitto.values()


def test_add_keeps_kind_and_settings_when_only_the_weight_changes(world) -> None:
    world.hubs.add(
        "default",
        HUB,
        kind=HubKind.AZURE_IOTHUB,
        settings={"connection_string": CONNECTION},
        actor="t",
    )
    changed = world.hubs.add("default", HUB, weight=4, actor="t")
    assert (changed.kind, dict(changed.settings), changed.weight) == (
        HubKind.AZURE_IOTHUB,
        {"connection_string": CONNECTION},
        4,
    )
    back = world.hubs.add("default", HUB, weight=4, kind=HubKind.NONE, actor="t")
    assert (back.kind, dict(back.settings)) == (HubKind.NONE, {})
    reasons = [e.reason or "" for e in world.audit.events() if e.action.startswith("hub.")]
    assert any("kind azure-iothub" in r for r in reasons)
    assert not any(KEY in r for r in reasons)


def test_add_refuses_bad_settings_and_links_nothing(world) -> None:
    with pytest.raises(InvalidHubSettingsError):
        world.hubs.add("default", HUB, kind=HubKind.AZURE_IOTHUB, settings={}, actor="t")
    assert HUB not in [h.host_name for h in world.hubs.all("default")]
